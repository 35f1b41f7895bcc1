// The network tiers a run can use, the one rule that picks one when a scenario or command leaves
// it out, and the one place a tier becomes a network: the exact max-min model (the reference)
// or the fast tier (models/network/fast_network.h).
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "core/engine.h"
#include "models/network/flow_network.h"
#include "topologies/topology.h"

namespace moesim {

class NetworkModel;
class FastNetwork;

// "exact" / "fast", for reports and the command line.
std::string_view network_tier_name(NetworkTier tier);
// The inverse of network_tier_name; nullopt for anything else.
std::optional<NetworkTier> parse_network_tier(std::string_view name);

// The default: exact below this many GPUs, fast from it on. The exact tier is the reference
// and still affordable for a 256-GPU step (minutes); the fast tier is within 1.2% on the error
// suite's exchanges (worst case, 128 GPUs) and 0.02% on that step (bench/README.md, "Network
// tiers" and "Step simulation"), so it is the default where the exact tier takes many minutes
// or does not finish (a Zipf all-to-all among 512 GPUs: hours).
inline constexpr int kFastTierFromGpus = 512;
NetworkTier default_network_tier(int gpus);
// The tier a run uses: the requested one, else exact with a completion tolerance (which only
// the exact tier takes), else the default for its GPU count.
NetworkTier choose_network_tier(std::optional<NetworkTier> requested, int gpus,
                                double completion_tolerance = 0.0);

// The network of options.tier on an engine and topology (both must outlive it).
class TieredNetwork {
 public:
  TieredNetwork(Engine& engine, const Topology& topology, const NetworkOptions& options);
  ~TieredNetwork();
  TieredNetwork(const TieredNetwork&) = delete;
  TieredNetwork& operator=(const TieredNetwork&) = delete;
  FlowNetwork& get() { return *network_; }
  NetworkTier tier() const { return tier_; }

 private:
  NetworkTier tier_;
  std::unique_ptr<NetworkModel> exact_;
  std::unique_ptr<FastNetwork> fast_;
  FlowNetwork* network_ = nullptr;
};

}  // namespace moesim
