// The executor: plays an operation graph (sim/op_graph.h) on the Engine, asking the cost model
// (sim/cost_model.h) how long each op takes; it decides when each op starts and ends, and books
// every GPU's time to phases and idle.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/engine.h"
#include "models/network/collectives.h"
#include "sim/cost_model.h"
#include "sim/op_graph.h"

namespace moesim {

// Told (collectives finished, collectives in the graph) each time a collective ends; from
// inside the engine's events.
using CollectiveProgress = std::function<void(int32_t, int32_t)>;

// What a played graph did.
struct Execution {
  Time start, end;
  std::vector<Time> op_start, op_end;                      // [op]; a member's start is its arrival
  std::vector<Time> collective_launch, collective_finish;  // [collective]
  std::vector<CollectiveIdx> finish_order;                 // collectives as they ended
  std::vector<std::array<Time, kPhaseCount>> gpu_phase_time;  // [gpu][phase]
  // [gpu][phase]: of the time a GPU's collective members booked to the phase (idle included),
  // how much passed while a kernel ran on the GPU's compute stream, so hidden behind it. The
  // rest of the phase's time is exposed. Kernels book nothing here.
  std::vector<std::array<Time, kPhaseCount>> gpu_hidden_time;
};

// Whether a phase is booked by collective members (communication, or idle at a collective)
// rather than by kernels: the phases that can be hidden behind computation.
bool is_communication_phase(Phase phase);

// Rules of play:
// - An op starts once every op it depends on has ended (a stream's previous op included, so a
//   stream runs one op at a time, in order).
// - A kernel runs for the cost model's kernel_time, booked to its phase.
// - A collective member arrives when its op starts; the collective launches when its last
//   member arrives, and every member ends when its transfers all arrived (NCCL's semantics: the
//   call returns on a rank once the collective is complete there; the model's transfers end
//   together). A member's wait from arrival to launch is booked as idle, launch to end to the
//   collective's phase.
// - A send/receive (members {sender, receiver}) is posted: the sender's op launches the transfer
//   and ends at once; the receiver's op ends when the data is in (at once if it already is),
//   its wait for the sender to post booked as idle and the rest to the collective's phase.
// - SM sharing: while a member op of a collective that holds SMs (CostModel::holds_sms) is in
//   flight on a GPU (arrival to end), every kernel running on that GPU progresses at
//   (1 - comm_sm_fraction) of its full speed: its remaining work W (in full-speed ps) takes
//   ceil(W / (1 - fraction)) ps. When the first such member of a GPU arrives or the last one
//   ends, the GPU's running kernels are re-timed from the work they have left. The
//   approximation: the communication kernels take a fixed share of the SMs however many are in
//   flight (DeepSeek-V3 dedicates a fixed set of SMs to them), a kernel slows in proportion to
//   the SMs it loses (no memory-bandwidth contention), and the communication is not slowed by
//   the kernels. A schedule that never has a kernel running beside a member in flight on a GPU
//   is unaffected. The kernel's phase gets its stretched time.
// - Hidden and exposed: a member's booked time (idle, then its phase) counts as hidden where a
//   kernel ran on its GPU's compute stream at the same time (Execution::gpu_hidden_time).
// Costs: run() is O(ops log ops + dependencies + collective members) besides the cost model's and
// the engine's work; re-timing is O(kernels running on the GPU) when it happens.
class Executor final : public EventHandler, public CollectiveObserver {
 public:
  // Both must outlive the executor; the cost model's network must run on `engine`.
  Executor(Engine& engine, CostModel& cost);

  // Plays a finished graph from now() until every op ended (the engine runs empty). Throws
  // std::logic_error if some op can never start (a dependency cycle through collectives).
  // `progress`, when set, hears of every collective that ends.
  Execution run(const OpGraph& graph, const CollectiveProgress& progress = {});

  void on_event(uint64_t tag) override;
  void on_collective_done(CollectiveId id, uint64_t tag, const CollectiveResult& result) override;

 private:
  struct CollectiveState {
    int32_t arrived = 0;
    bool delivered = false;         // send/receive: the data is in
    bool receiver_waiting = false;  // send/receive: the receiver's op started before that
  };
  // Per running kernel: the engine event that ends it and how its progress is counted.
  struct KernelState {
    EventId end_event;
    Time work_left;  // full-speed ps left at rated_at
    Time rated_at;
    bool slowed = false;
  };

  void start(OpId op);
  void finish(OpId op);
  void launch(CollectiveIdx c);
  void delivered(CollectiveIdx c);
  void report_finished(CollectiveIdx c);
  void comm_begins(int32_t gpu);
  void comm_ends(int32_t gpu);
  void retime_kernels(int32_t gpu);
  void book_hidden_time();
  Time slowed_time(Time work) const;
  void book(int32_t gpu, Phase phase, Time t) {
    x_.gpu_phase_time[static_cast<size_t>(gpu)][static_cast<size_t>(phase)] += t;
  }

  Engine& engine_;
  CostModel& cost_;
  double speed_under_comm_;  // 1 - comm_sm_fraction

  // Per run.
  const OpGraph* graph_ = nullptr;
  const CollectiveProgress* progress_ = nullptr;
  Execution x_;
  std::vector<int32_t> waiting_for_;  // [op] dependencies not yet ended
  std::vector<CollectiveState> collectives_;
  std::vector<KernelState> kernels_;                // [op], kernels only
  std::vector<int32_t> comm_in_flight_;             // [gpu] SM-holding members in flight
  std::vector<std::vector<OpId>> running_kernels_;  // [gpu]
  int32_t ops_ended_ = 0;
};

}  // namespace moesim
