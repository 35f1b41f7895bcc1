#include "sim/executor.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace moesim {

Executor::Executor(Engine& engine, CostModel& cost)
    : engine_(engine), cost_(cost), speed_under_comm_(1.0 - cost.options().comm_sm_fraction) {}

Execution Executor::run(const OpGraph& graph, const CollectiveProgress& progress) {
  if (!graph.finished()) throw std::logic_error("Executor: the graph is not finished");
  graph_ = &graph;
  progress_ = &progress;
  const auto ops = static_cast<size_t>(graph.op_count());
  const auto gpus = static_cast<size_t>(graph.gpus());
  x_ = Execution{};
  x_.op_start.assign(ops, Time::zero());
  x_.op_end.assign(ops, Time::zero());
  x_.collective_launch.assign(static_cast<size_t>(graph.collective_count()), Time::zero());
  x_.collective_finish.assign(static_cast<size_t>(graph.collective_count()), Time::zero());
  x_.finish_order.reserve(static_cast<size_t>(graph.collective_count()));
  x_.gpu_phase_time.assign(gpus, {});
  x_.gpu_hidden_time.assign(gpus, {});
  waiting_for_.resize(ops);
  for (OpId op = 0; op < graph.op_count(); ++op) {
    waiting_for_[static_cast<size_t>(op)] = graph.dependency_count(op);
  }
  collectives_.assign(static_cast<size_t>(graph.collective_count()), CollectiveState{});
  kernels_.assign(ops, KernelState{});
  comm_in_flight_.assign(gpus, 0);
  running_kernels_.resize(gpus);
  for (auto& r : running_kernels_) r.clear();
  ops_ended_ = 0;

  x_.start = engine_.now();
  for (OpId root : graph.roots()) start(root);
  engine_.run();
  if (ops_ended_ != graph.op_count()) {
    throw std::logic_error("Executor: the graph deadlocked with " +
                           std::to_string(graph.op_count() - ops_ended_) + " of " +
                           std::to_string(graph.op_count()) + " ops not ended");
  }
  x_.end = engine_.now();
  book_hidden_time();
  graph_ = nullptr;
  progress_ = nullptr;
  return std::move(x_);
}

bool is_communication_phase(Phase phase) {
  switch (phase) {
    case Phase::kTpCollective:
    case Phase::kDispatch:
    case Phase::kCombine:
    case Phase::kPipeline:
    case Phase::kGradientSync:
    case Phase::kIdle:
      return true;
    default:
      return false;
  }
}

// Each member booked [start, launch) as idle and [launch, end) to its collective's phase, the
// launch clamped to its op (a posted send books nothing; a receiver whose data was in before it
// arrived neither). The compute stream's kernels of a GPU run one at a time in op order, so
// their intervals are sorted and disjoint: a member's overlap with them is a binary search and
// a walk over the kernels it overlaps.
void Executor::book_hidden_time() {
  const auto gpus = static_cast<size_t>(graph_->gpus());
  std::vector<std::vector<std::pair<Time, Time>>> busy(gpus);
  for (OpId id = 0; id < graph_->op_count(); ++id) {
    const Op& op = graph_->op(id);
    const Time s = x_.op_start[static_cast<size_t>(id)], e = x_.op_end[static_cast<size_t>(id)];
    if (op.is_kernel && op.stream == Stream::kCompute && e > s) {
      busy[static_cast<size_t>(op.gpu)].emplace_back(s, e);
    }
  }
  auto overlap = [](const std::vector<std::pair<Time, Time>>& intervals, Time lo, Time hi) {
    Time sum = Time::zero();
    if (hi <= lo) return sum;
    auto it =
        std::lower_bound(intervals.begin(), intervals.end(), lo,
                         [](const std::pair<Time, Time>& k, Time t) { return k.second <= t; });
    for (; it != intervals.end() && it->first < hi; ++it) {
      sum += std::min(hi, it->second) - std::max(lo, it->first);
    }
    return sum;
  };
  for (OpId id = 0; id < graph_->op_count(); ++id) {
    const Op& op = graph_->op(id);
    if (op.is_kernel) continue;
    const auto& intervals = busy[static_cast<size_t>(op.gpu)];
    if (intervals.empty()) continue;
    const Time s = x_.op_start[static_cast<size_t>(id)], e = x_.op_end[static_cast<size_t>(id)];
    const Time launch = std::clamp(x_.collective_launch[static_cast<size_t>(op.collective)], s, e);
    auto& hidden = x_.gpu_hidden_time[static_cast<size_t>(op.gpu)];
    hidden[static_cast<size_t>(Phase::kIdle)] += overlap(intervals, s, launch);
    hidden[static_cast<size_t>(graph_->collective(op.collective).phase)] +=
        overlap(intervals, launch, e);
  }
}

Time Executor::slowed_time(Time work) const {
  return Time::ps(
      static_cast<int64_t>(std::ceil(static_cast<double>(work.count_ps()) / speed_under_comm_)));
}

void Executor::start(OpId id) {
  const Op& op = graph_->op(id);
  const Time now = engine_.now();
  x_.op_start[static_cast<size_t>(id)] = now;
  if (op.is_kernel) {
    const Time work = cost_.kernel_time(op);
    KernelState& k = kernels_[static_cast<size_t>(id)];
    k.work_left = work;
    k.rated_at = now;
    k.slowed = comm_in_flight_[static_cast<size_t>(op.gpu)] > 0 && speed_under_comm_ < 1.0;
    k.end_event = engine_.schedule_after(k.slowed ? slowed_time(work) : work, *this,
                                         static_cast<uint64_t>(id));
    running_kernels_[static_cast<size_t>(op.gpu)].push_back(id);
    return;
  }
  const Collective& c = graph_->collective(op.collective);
  if (cost_.holds_sms(c)) comm_begins(op.gpu);
  CollectiveState& state = collectives_[static_cast<size_t>(op.collective)];
  if (c.kind == CollectiveKind::kSendRecv) {
    if (op.gpu == c.members[0]) {
      x_.collective_launch[static_cast<size_t>(op.collective)] = now;
      cost_.launch(c, *this, static_cast<uint64_t>(op.collective));
      finish(id);
    } else if (state.delivered) {
      finish(id);
    } else {
      state.receiver_waiting = true;
    }
    return;
  }
  if (++state.arrived == static_cast<int32_t>(c.members.size())) launch(op.collective);
}

void Executor::launch(CollectiveIdx index) {
  const Collective& c = graph_->collective(index);
  const Time now = engine_.now();
  x_.collective_launch[static_cast<size_t>(index)] = now;
  for (size_t i = 0; i < c.members.size(); ++i) {
    book(c.members[i], Phase::kIdle, now - x_.op_start[static_cast<size_t>(c.member_ops[i])]);
  }
  cost_.launch(c, *this, static_cast<uint64_t>(index));
}

void Executor::finish(OpId id) {
  const Op& op = graph_->op(id);
  const Time now = engine_.now();
  x_.op_end[static_cast<size_t>(id)] = now;
  ++ops_ended_;
  if (op.is_kernel) {
    book(op.gpu, op.phase, now - x_.op_start[static_cast<size_t>(id)]);
    auto& running = running_kernels_[static_cast<size_t>(op.gpu)];
    running.erase(std::find(running.begin(), running.end(), id));
  } else if (cost_.holds_sms(graph_->collective(op.collective))) {
    comm_ends(op.gpu);
  }
  for (OpId next : graph_->dependents(id)) {
    if (--waiting_for_[static_cast<size_t>(next)] == 0) start(next);
  }
}

void Executor::on_event(uint64_t tag) {
  finish(static_cast<OpId>(tag));
}

void Executor::on_collective_done(CollectiveId, uint64_t tag, const CollectiveResult& result) {
  const auto index = static_cast<CollectiveIdx>(tag);
  const Collective& c = graph_->collective(index);
  cost_.on_result(c, result);
  if (c.kind == CollectiveKind::kSendRecv) {
    delivered(index);
    return;
  }
  const Time now = engine_.now();
  report_finished(index);
  const Time took = now - x_.collective_launch[static_cast<size_t>(index)];
  for (size_t i = 0; i < c.members.size(); ++i) {
    book(c.members[i], c.phase, took);
    finish(c.member_ops[i]);
  }
}

// The data is in: a receiver already waiting idled until the send was posted and then waited
// on the transfer.
void Executor::delivered(CollectiveIdx index) {
  const Collective& c = graph_->collective(index);
  CollectiveState& state = collectives_[static_cast<size_t>(index)];
  state.delivered = true;
  report_finished(index);
  if (!state.receiver_waiting) return;
  const OpId receiver = c.member_ops[1];
  const Time arrival = x_.op_start[static_cast<size_t>(receiver)];
  const Time waited_from = std::max(arrival, x_.collective_launch[static_cast<size_t>(index)]);
  book(c.members[1], Phase::kIdle, waited_from - arrival);
  book(c.members[1], c.phase, engine_.now() - waited_from);
  finish(receiver);
}

void Executor::report_finished(CollectiveIdx index) {
  x_.collective_finish[static_cast<size_t>(index)] = engine_.now();
  x_.finish_order.push_back(index);
  if (*progress_) {
    (*progress_)(static_cast<int32_t>(x_.finish_order.size()), graph_->collective_count());
  }
}

void Executor::comm_begins(int32_t gpu) {
  if (++comm_in_flight_[static_cast<size_t>(gpu)] == 1) retime_kernels(gpu);
}

void Executor::comm_ends(int32_t gpu) {
  if (--comm_in_flight_[static_cast<size_t>(gpu)] == 0) retime_kernels(gpu);
}

void Executor::retime_kernels(int32_t gpu) {
  if (speed_under_comm_ >= 1.0) return;
  const bool slowed = comm_in_flight_[static_cast<size_t>(gpu)] > 0;
  const Time now = engine_.now();
  for (OpId id : running_kernels_[static_cast<size_t>(gpu)]) {
    KernelState& k = kernels_[static_cast<size_t>(id)];
    if (k.slowed == slowed) continue;
    const Time elapsed = now - k.rated_at;
    const Time done =
        k.slowed
            ? Time::ps(std::llround(static_cast<double>(elapsed.count_ps()) * speed_under_comm_))
            : elapsed;
    k.work_left = std::max(Time::zero(), k.work_left - done);
    k.rated_at = now;
    k.slowed = slowed;
    engine_.cancel(k.end_event);
    k.end_event = engine_.schedule_after(slowed ? slowed_time(k.work_left) : k.work_left, *this,
                                         static_cast<uint64_t>(id));
  }
}

}  // namespace moesim
