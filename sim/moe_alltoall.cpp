#include "sim/moe_alltoall.h"

namespace moesim {
namespace {

constexpr int kStageShift = 31;

}  // namespace

void MoeAllToAll::start(const MoeLayerTraffic& traffic, Bytes bytes_per_token, bool combine,
                        const std::vector<int32_t>& members, AllToAllListener& listener,
                        uint64_t tag) {
  const auto index = static_cast<uint32_t>(exchanges_.size());
  exchanges_.push_back(Exchange{});
  Exchange& x = exchanges_.back();
  x.listener = &listener;
  x.tag = tag;
  x.members = members;
  x.member_index.assign(static_cast<size_t>(network_.topology().gpu_count()), -1);
  for (size_t i = 0; i < members.size(); ++i) x.member_index[members[i]] = static_cast<int32_t>(i);
  x.first_due.assign(members.size(), 0);
  x.open.assign(members.size(), 0);
  x.second_by_source.resize(members.size());
  x.members_left = static_cast<int32_t>(members.size());

  const int64_t per_token = bytes_per_token.count();
  auto bytes_of = [per_token](const TokenTransfer& t) { return t.tokens * per_token; };
  if (!combine) {
    for (const TokenTransfer& t : traffic.stage1)
      x.first.push_back({t.src_gpu, t.dst_gpu, bytes_of(t)});
    for (const TokenTransfer& t : traffic.stage2)
      x.second.push_back({t.src_gpu, t.dst_gpu, bytes_of(t)});
  } else {
    // Stage 2 reversed goes first (experts' outputs back to the relay, reduced there); the
    // network part of stage 1 reversed waits for the relay's reductions. Transfers of stage 1
    // that have no stage-2 counterpart at their destination go at once.
    std::vector<uint8_t> is_relay(static_cast<size_t>(network_.topology().gpu_count()), 0);
    for (const TokenTransfer& t : traffic.stage2) {
      x.first.push_back({t.dst_gpu, t.src_gpu, bytes_of(t)});
      is_relay[t.src_gpu] = 1;
    }
    for (const TokenTransfer& t : traffic.stage1) {
      (is_relay[t.dst_gpu] ? x.second : x.first).push_back({t.dst_gpu, t.src_gpu, bytes_of(t)});
    }
  }
  auto member = [&x](int32_t gpu) { return x.member_index[gpu]; };
  for (const Transfer& t : x.first) {
    ++x.open[member(t.src)];
    ++x.open[member(t.dst)];
  }
  for (uint32_t i = 0; i < x.second.size(); ++i) {
    const Transfer& t = x.second[i];
    ++x.open[member(t.src)];
    ++x.open[member(t.dst)];
    x.second_by_source[member(t.src)].push_back(i);
  }
  // A second-stage source waits for every first-stage transfer into it.
  for (const Transfer& t : x.first) {
    if (!x.second_by_source[member(t.dst)].empty()) ++x.first_due[member(t.dst)];
  }
  for (uint32_t i = 0; i < x.first.size(); ++i) launch(index, i, false);
  for (size_t m = 0; m < x.members.size(); ++m) {
    if (x.first_due[m] == 0 && !x.second_by_source[m].empty()) {
      for (uint32_t i : x.second_by_source[m]) launch(index, i, true);
    }
  }
  for (size_t m = 0; m < x.members.size(); ++m) {
    if (x.open[m] == 0) flow_finished(index, x.members[m]);
  }
}

void MoeAllToAll::launch(uint32_t exchange, uint32_t transfer_index, bool second_stage) {
  const Exchange& x = exchanges_[exchange];
  const Transfer& t = second_stage ? x.second[transfer_index] : x.first[transfer_index];
  const uint64_t tag =
      (uint64_t{exchange} << 32) | (uint64_t{second_stage} << kStageShift) | transfer_index;
  const FlowId id = network_.start_flow(t.src, t.dst, Bytes(t.bytes), this, tag);
  if (network_.flow_kind(id) == LinkKind::kNetwork) {
    bytes_.network += t.bytes;
  } else {
    bytes_.nvlink += t.bytes;
  }
}

void MoeAllToAll::on_flow_done(FlowId, uint64_t tag) {
  const auto exchange = static_cast<uint32_t>(tag >> 32);
  const bool second_stage = ((tag >> kStageShift) & 1u) != 0;
  const auto index = static_cast<uint32_t>(tag & ((uint64_t{1} << kStageShift) - 1));
  const Exchange& x = exchanges_[exchange];
  const Transfer t = second_stage ? x.second[index] : x.first[index];
  if (!second_stage) first_stage_arrival(exchange, t.dst);
  flow_finished(exchange, t.src);
  flow_finished(exchange, t.dst);
}

void MoeAllToAll::first_stage_arrival(uint32_t exchange, int32_t relay) {
  Exchange& x = exchanges_[exchange];
  const int32_t m = x.member_index[relay];
  if (x.second_by_source[m].empty()) return;
  if (--x.first_due[m] == 0) {
    for (uint32_t i : x.second_by_source[m]) launch(exchange, i, true);
  }
}

void MoeAllToAll::flow_finished(uint32_t exchange, int32_t gpu) {
  Exchange& x = exchanges_[exchange];
  const int32_t m = x.member_index[gpu];
  // open reaches zero exactly once per member: at start for idle members, else at its last flow.
  if (x.open[m] > 0 && --x.open[m] > 0) return;
  if (x.open[m] < 0) return;
  x.open[m] = -1;
  --x.members_left;
  x.listener->on_gpu_done(x.tag, gpu);
}

void MoeAllToAll::clear_finished() {
  bool all_done = true;
  for (const Exchange& x : exchanges_) all_done = all_done && x.members_left == 0;
  if (all_done) exchanges_.clear();
}

}  // namespace moesim
