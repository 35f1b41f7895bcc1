#include "sim/group_collectives.h"

#include <stdexcept>

namespace moesim {

void GroupCollectives::start(GroupOp op, const std::vector<int32_t>& members, Bytes bytes,
                             AllToAllListener& listener, uint64_t tag) {
  const auto n = static_cast<int32_t>(members.size());
  if (n < 2) throw std::invalid_argument("GroupCollectives: a group needs two members");
  Ring r{&listener,
         tag,
         members,
         bytes,
         0,
         std::vector<int32_t>(n, 0),
         std::vector<int32_t>(n, 0),
         std::vector<int32_t>(n, 0),
         n};
  switch (op) {
    case GroupOp::kAllGather:
    case GroupOp::kReduceScatter:
      r.steps = n - 1;
      break;
    case GroupOp::kAllReduce:
      r.steps = 2 * (n - 1);
      r.chunk = Bytes((bytes.count() + n - 1) / n);
      break;
    case GroupOp::kSendRecv:
      if (n != 2) throw std::invalid_argument("GroupCollectives: send/receive needs two members");
      r.steps = 1;
      break;
  }
  const auto index = static_cast<uint32_t>(rings_.size());
  rings_.push_back(std::move(r));
  if (op == GroupOp::kSendRecv) {
    // Only the sender sends; the receiver expects one arrival and sends nothing.
    Ring& ring = rings_.back();
    ring.issued[1] = ring.steps;
    ring.sent[1] = ring.steps;
    ring.received[0] = ring.steps;
    send(index, 0);
    return;
  }
  for (int32_t i = 0; i < n; ++i) send(index, i);
}

void GroupCollectives::send(uint32_t ring, int32_t member) {
  Ring& r = rings_[ring];
  const auto n = static_cast<int32_t>(r.members.size());
  const int32_t to = (member + 1) % n;
  ++r.issued[member];
  network_.start_flow(r.members[member], r.members[to], r.chunk, this,
                      (uint64_t{ring} << 32) | static_cast<uint32_t>(member));
}

void GroupCollectives::on_flow_done(FlowId, uint64_t tag) {
  const auto ring = static_cast<uint32_t>(tag >> 32);
  const auto member = static_cast<int32_t>(tag & 0xffffffffu);
  Ring& r = rings_[ring];
  const auto n = static_cast<int32_t>(r.members.size());
  const int32_t to = (member + 1) % n;
  ++r.sent[member];
  ++r.received[to];
  // The receiver forwards what it got (or its reduction) in its next step.
  if (r.issued[to] < r.steps && r.received[to] >= r.issued[to]) send(ring, to);
  check_done(ring, member);
  if (to != member) check_done(ring, to);
}

void GroupCollectives::check_done(uint32_t ring, int32_t member) {
  Ring& r = rings_[ring];
  if (r.sent[member] == r.steps && r.received[member] == r.steps) {
    r.sent[member] = r.steps + 1;  // told once
    --r.left;
    r.listener->on_gpu_done(r.tag, r.members[member]);
  }
}

void GroupCollectives::clear_finished() {
  for (const Ring& r : rings_) {
    if (r.left > 0) return;
  }
  rings_.clear();
}

}  // namespace moesim
