#include "models/network/network_tier.h"

#include <stdexcept>

#include "models/network/fast_network.h"
#include "models/network/network_model.h"

namespace moesim {

std::string_view network_tier_name(NetworkTier tier) {
  return tier == NetworkTier::kFast ? "fast" : "exact";
}

std::optional<NetworkTier> parse_network_tier(std::string_view name) {
  if (name == "exact") return NetworkTier::kExact;
  if (name == "fast") return NetworkTier::kFast;
  return std::nullopt;
}

NetworkTier default_network_tier(int gpus) {
  return gpus >= kFastTierFromGpus ? NetworkTier::kFast : NetworkTier::kExact;
}

NetworkTier choose_network_tier(std::optional<NetworkTier> requested, int gpus,
                                double completion_tolerance) {
  if (requested.has_value()) return *requested;
  if (completion_tolerance > 0.0) return NetworkTier::kExact;
  return default_network_tier(gpus);
}

TieredNetwork::TieredNetwork(Engine& engine, const Topology& topology,
                             const NetworkOptions& options)
    : tier_(options.tier) {
  if (tier_ == NetworkTier::kFast) {
    if (options.completion_tolerance != 0.0) {
      throw std::invalid_argument(
          "the fast network tier takes no completion tolerance (it applies to the exact tier)");
    }
    fast_ = std::make_unique<FastNetwork>(engine, topology, options);
    network_ = fast_.get();
  } else {
    exact_ = std::make_unique<NetworkModel>(engine, topology, options);
    network_ = exact_.get();
  }
}

TieredNetwork::~TieredNetwork() = default;

}  // namespace moesim
