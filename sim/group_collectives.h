// Ring collectives over a group of GPUs (all-gather, reduce-scatter, all-reduce) and pipeline
// send/receive, played as flows on the NetworkModel for the step driver.
#pragma once

#include <cstdint>
#include <vector>

#include "models/network/network_model.h"
#include "sim/moe_alltoall.h"

namespace moesim {

enum class GroupOp : uint8_t { kAllGather, kReduceScatter, kAllReduce, kSendRecv };

// Ring algorithms as NCCL runs them: all-gather and reduce-scatter take n-1 steps of one chunk
// (`bytes` is the chunk: each member's share), all-reduce 2(n-1) steps of bytes/n; a member
// sends step k+1 once it has received step k. Send/receive is one flow members[0] -> members[1].
class GroupCollectives final : public FlowObserver {
 public:
  explicit GroupCollectives(NetworkModel& network) : network_(network) {}

  void start(GroupOp op, const std::vector<int32_t>& members, Bytes bytes,
             AllToAllListener& listener, uint64_t tag);
  void on_flow_done(FlowId id, uint64_t tag) override;
  // Drops finished collectives' bookkeeping (call between steps).
  void clear_finished();

 private:
  struct Ring {
    AllToAllListener* listener;
    uint64_t tag;
    std::vector<int32_t> members;
    Bytes chunk;
    int32_t steps;
    std::vector<int32_t> issued, sent, received;
    int32_t left;
  };
  void send(uint32_t ring, int32_t member);
  void check_done(uint32_t ring, int32_t member);

  NetworkModel& network_;
  std::vector<Ring> rings_;
};

}  // namespace moesim
