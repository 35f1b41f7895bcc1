// Host-link presets (data sheets), weight precisions and the expert cache's policies.
#include "models/moe/expert_cache.h"

#include <algorithm>
#include <array>
#include <stdexcept>

namespace moesim {

namespace {

// Per-direction data rates after line encoding: PCIe 3.0 x16 8 GT/s x 16 lanes x 128/130 =
// 15.75 GB/s; 4.0 doubles it (31.5), 5.0 again (63.0) (PCI-SIG base specifications). NVLink-C2C:
// 900 GB/s total, 450 GB/s each way (NVIDIA Grace Hopper superchip data sheet). Efficiencies
// are the project's link efficiencies (topologies/presets.cpp): PCIe 0.90 for TLP overhead,
// NVLink 0.80; a pinned cudaMemcpy host-to-device on PCIe 4.0 x16 reaches about 25-26 GB/s
// (0.80-0.83), so 0.90 is the optimistic end.
constexpr double kPcieEfficiency = 0.90;
constexpr double kNvlinkC2cEfficiency = 0.80;

HostLink link(const char* name, double gb_per_s, double efficiency) {
  return HostLink{name, Bandwidth::gigabytes_per_s(gb_per_s), efficiency};
}

}  // namespace

std::span<const HostLink> host_link_presets() {
  static const std::array<HostLink, 4> presets = {
      link("pcie3-x16", 15.75, kPcieEfficiency),
      link("pcie4-x16", 31.5, kPcieEfficiency),
      link("pcie5-x16", 63.0, kPcieEfficiency),
      link("nvlink-c2c", 450.0, kNvlinkC2cEfficiency),
  };
  return presets;
}

const HostLink* find_host_link_preset(std::string_view name) {
  for (const HostLink& l : host_link_presets()) {
    if (l.name == name) return &l;
  }
  return nullptr;
}

Bytes WeightPrecision::bytes_for(int64_t params) const {
  const int64_t data = (params * bits + 7) / 8;
  const int64_t groups = group_size > 0 ? (params + group_size - 1) / group_size : 0;
  return Bytes(data + groups * group_meta_bytes);
}

std::optional<WeightPrecision> weight_precision_from_name(std::string_view name) {
  // Integer formats: HQQ-style groups of 64 weights with an fp16 scale and an fp16 zero point
  // (4 bytes per 64 weights, 0.5 bit per weight), as Mixtral-offloading's default grouping.
  if (name == "bf16") return WeightPrecision{"bf16", 16, 0, 0};
  if (name == "fp16") return WeightPrecision{"fp16", 16, 0, 0};
  if (name == "fp8") return WeightPrecision{"fp8", 8, 0, 0};
  if (name == "int4") return WeightPrecision{"int4", 4, 64, 4};
  if (name == "int3") return WeightPrecision{"int3", 3, 64, 4};
  if (name == "int2") return WeightPrecision{"int2", 2, 64, 4};
  // Mixtral-offloading's demo model (ffn_config nbits=2, group_size=16, quant_zero and
  // quant_scale: 8-bit zero and scale per group of 16). HQQ's second-level fp16 scale and zero
  // of those 8-bit values (one pair per 128 groups, 0.03 bit per weight) are left out.
  if (name == "int2-g16") return WeightPrecision{"int2-g16", 2, 16, 2};
  return std::nullopt;
}

Time CpuSpec::one_row(int64_t params, Bytes bytes) const {
  const double compute_s =
      2.0 * static_cast<double>(params) / (peak_flops_fp32 * compute_efficiency);
  const Time compute = Time::ps(static_cast<int64_t>(compute_s * 1e12) + 1);
  const Time memory = transfer_time(bytes, memory_bandwidth * memory_efficiency);
  return compute > memory ? compute : memory;
}

namespace {

// Uncalibrated, from data sheets; efficiencies assumed: STREAM-like kernels reach about 70% of
// nominal DRAM bandwidth, and a one-row product (GEMV) half the vector peak.
// - AMD Ryzen 9 5950X: 16 cores, 3.4 GHz base, two 256-bit FMA units per core: 16 x 3.4e9 x 32
//   FP32 FLOPs = 1.74 TFLOP/s; dual-channel DDR4-3200, 51.2 GB/s.
// - AMD EPYC 9654: 96 cores, 2.4 GHz base, AVX-512 on 256-bit units (32 FP32 FLOPs per cycle):
//   7.37 TFLOP/s; 12 channels of DDR5-4800, 460.8 GB/s.
CpuSpec cpu(const char* name, double tflops, double gb_per_s) {
  CpuSpec c;
  c.name = name;
  c.description = "uncalibrated: data sheet";
  c.peak_flops_fp32 = tflops * 1e12;
  c.memory_bandwidth = Bandwidth::gigabytes_per_s(gb_per_s);
  return c;
}

}  // namespace

std::span<const CpuSpec> cpu_presets() {
  static const std::array<CpuSpec, 2> presets = {cpu("ryzen9-5950x", 1.74, 51.2),
                                                 cpu("epyc-9654", 7.37, 460.8)};
  return presets;
}

const CpuSpec* find_cpu_preset(std::string_view name) {
  for (const CpuSpec& c : cpu_presets()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string_view copy_overlap_name(CopyOverlap o) {
  return o == CopyOverlap::kSerial ? "serial" : "copy_stream";
}

std::string_view prefetch_guess_name(PrefetchGuess g) {
  return g == PrefetchGuess::kGate ? "gate" : "accuracy_parameter";
}

std::string_view cache_policy_name(CachePolicy p) {
  switch (p) {
    case CachePolicy::kLru:
      return "lru";
    case CachePolicy::kLfu:
      return "lfu";
    case CachePolicy::kStatic:
      return "static";
  }
  return "?";
}

ExpertCache::ExpertCache(CachePolicy policy, int32_t capacity)
    : policy_(policy), capacity_(capacity) {
  if (capacity < 0) throw std::invalid_argument("expert cache: capacity must be >= 0");
  keys_.reserve(static_cast<size_t>(capacity));
}

bool ExpertCache::contains(int32_t key) const {
  return std::find(keys_.begin(), keys_.end(), key) != keys_.end();
}

ExpertCache::Use& ExpertCache::use_of(int32_t key) {
  for (auto& [k, u] : uses_) {
    if (k == key) return u;
  }
  uses_.push_back({key, Use{}});
  return uses_.back().second;
}

const ExpertCache::Use* ExpertCache::find_use(int32_t key) const {
  for (const auto& [k, u] : uses_) {
    if (k == key) return &u;
  }
  return nullptr;
}

void ExpertCache::record_use(int32_t key) {
  Use& u = use_of(key);
  u.last = clock_++;
  ++u.count;
}

std::optional<int32_t> ExpertCache::insert(int32_t key, std::span<const int32_t> pinned) {
  if (policy_ == CachePolicy::kStatic || capacity_ == 0 || contains(key)) return std::nullopt;
  if (static_cast<int32_t>(keys_.size()) < capacity_) {
    keys_.push_back(key);
    return std::nullopt;
  }
  // The victim: lowest (count, last) for LFU, lowest last for LRU, among unpinned keys.
  int64_t best = -1;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (std::find(pinned.begin(), pinned.end(), keys_[i]) != pinned.end()) continue;
    if (best < 0) {
      best = static_cast<int64_t>(i);
      continue;
    }
    const Use* a = find_use(keys_[i]);
    const Use* b = find_use(keys_[static_cast<size_t>(best)]);
    const Use none{};
    const Use& ua = a ? *a : none;
    const Use& ub = b ? *b : none;
    const bool better = policy_ == CachePolicy::kLfu
                            ? (ua.count < ub.count || (ua.count == ub.count && ua.last < ub.last))
                            : ua.last < ub.last;
    if (better) best = static_cast<int64_t>(i);
  }
  if (best < 0) throw std::logic_error("expert cache: every resident expert is pinned");
  const int32_t victim = keys_[static_cast<size_t>(best)];
  keys_[static_cast<size_t>(best)] = key;
  return victim;
}

void ExpertCache::preload(int32_t key) {
  if (contains(key) || capacity_ == 0) return;
  if (static_cast<int32_t>(keys_.size()) < capacity_) {
    keys_.push_back(key);
    return;
  }
  const CachePolicy saved = policy_;
  if (policy_ == CachePolicy::kStatic) policy_ = CachePolicy::kLru;
  insert(key, {});
  policy_ = saved;
}

}  // namespace moesim
