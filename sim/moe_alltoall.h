// Plays one MoE dispatch or combine (a MoeLayerTraffic) as flows on the NetworkModel, stage by
// stage, and tells its listener as each GPU finishes sending and receiving.
#pragma once

#include <cstdint>
#include <vector>

#include "models/network/network_model.h"
#include "sim/moe_traffic.h"

namespace moesim {

class AllToAllListener {
 public:
  // `gpu` has received everything bound for it and sent everything it had to send.
  virtual void on_gpu_done(uint64_t exchange_tag, int32_t gpu) = 0;

 protected:
  ~AllToAllListener() = default;
};

// Bytes carried by the exchanges, per link kind, for achieved-bandwidth figures.
struct ExchangeBytes {
  int64_t nvlink = 0;
  int64_t network = 0;
};

// Runs any number of exchanges at once on one NetworkModel. Dispatch plays stage 1, then each
// relay forwards its stage-2 transfers once all of its stage-1 arrivals are in (no chunked
// pipelining: a relay forwards a whole stage, an upper bound on DeepEP's chunked overlap).
// Combine plays the reverse: stage-2 transfers back to their relays, then the relays' reduced
// results over the network.
class MoeAllToAll final : public FlowObserver {
 public:
  explicit MoeAllToAll(NetworkModel& network) : network_(network) {}

  // `members`: every GPU of the exchange (each is told once when done, even with no traffic).
  void start(const MoeLayerTraffic& traffic, Bytes bytes_per_token, bool combine,
             const std::vector<int32_t>& members, AllToAllListener& listener, uint64_t tag);
  // Drops finished exchanges' bookkeeping (call between steps).
  void clear_finished();
  const ExchangeBytes& bytes() const { return bytes_; }

  void on_flow_done(FlowId id, uint64_t tag) override;

 private:
  struct Transfer {
    int32_t src, dst;
    int64_t bytes;
  };
  struct Exchange {
    AllToAllListener* listener;
    uint64_t tag;
    std::vector<Transfer> first;   // start at once
    std::vector<Transfer> second;  // leave their source when its first-stage arrivals are in
    // Per member GPU: first-stage arrivals still due, and flows (in or out) still open.
    std::vector<int32_t> members;
    std::vector<int32_t> member_index;  // by global GPU, -1 when not a member
    std::vector<int32_t> first_due;
    std::vector<int32_t> open;
    std::vector<std::vector<uint32_t>> second_by_source;
    int32_t members_left = 0;
  };
  void launch(uint32_t exchange, uint32_t transfer_index, bool second_stage);
  void flow_finished(uint32_t exchange, int32_t gpu);
  void first_stage_arrival(uint32_t exchange, int32_t relay);

  NetworkModel& network_;
  std::vector<Exchange> exchanges_;
  ExchangeBytes bytes_;
};

}  // namespace moesim
