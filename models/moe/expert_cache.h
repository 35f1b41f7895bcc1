// Expert offloading for serving on few GPUs: the experts live in host memory and a GPU-side
// cache (LRU, LFU or a static popular set) holds some; the host link and quantised expert sizes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/units.h"

namespace moesim {

// The link between host memory and the GPU that a missed expert is copied over.
struct HostLink {
  std::string name;
  Bandwidth nominal;  // per direction (host to device)
  double efficiency = 1.0;
  Bandwidth achieved() const { return nominal * efficiency; }
};

// The built-in host links: pcie3-x16, pcie4-x16, pcie5-x16, nvlink-c2c.
std::span<const HostLink> host_link_presets();
const HostLink* find_host_link_preset(std::string_view name);

// How an expert's (or attention's) weights are stored: `bits` per weight plus, for the integer
// formats, one `group_meta_bytes` record (scale and zero point) per `group_size` weights.
struct WeightPrecision {
  std::string name;  // "bf16", "fp16", "fp8", "int4", "int3", "int2"
  int32_t bits = 16;
  int32_t group_size = 0;  // 0: no per-group metadata
  int32_t group_meta_bytes = 0;

  // Bytes of `params` weights, counting one metadata record per started group.
  Bytes bytes_for(int64_t params) const;
};
// "bf16", "fp16", "fp8", "int4", "int3", "int2" (integer formats with an fp16 scale and zero per
// 64 weights, HQQ's default grouping), "int2-g16" (2 bits in groups of 16 with an 8-bit scale
// and zero: HQQ with quant_scale and quant_zero, the expert format of Mixtral-offloading's
// released model, 3 bits per weight in all); nullopt for anything else.
std::optional<WeightPrecision> weight_precision_from_name(std::string_view name);

enum class CachePolicy : uint8_t {
  kLru,     // evict the least recently used expert
  kLfu,     // evict the least frequently used (uses counted since the run began; ties: LRU)
  kStatic,  // a fixed set of the most popular experts; misses are copied but never cached
};
std::string_view cache_policy_name(CachePolicy p);

// One cache of experts, keyed by an int32 (an expert index, or layer * experts + expert for a
// cache shared across layers). Capacity is small (a few to a few hundred experts): lookups and
// evictions scan the resident list, O(capacity), which is cheaper than a hash map at that size.
class ExpertCache {
 public:
  ExpertCache(CachePolicy policy, int32_t capacity);

  CachePolicy policy() const { return policy_; }
  int32_t capacity() const { return capacity_; }
  std::span<const int32_t> resident() const { return keys_; }
  bool contains(int32_t key) const;

  // Records a use of `key` (resident or not): its recency and, for LFU, its count.
  void record_use(int32_t key);
  // Makes `key` resident. When full, evicts the policy's victim among keys not in `pinned`
  // and returns it (nullopt when nothing was evicted). A static cache never admits: returns
  // nullopt and leaves the set unchanged. Throws std::logic_error when every resident key is
  // pinned.
  std::optional<int32_t> insert(int32_t key, std::span<const int32_t> pinned);
  // Places `key` without a use (the initial load, or a static set), evicting as insert() does.
  void preload(int32_t key);

 private:
  struct Use {
    int64_t last = -1;
    int64_t count = 0;
  };
  Use& use_of(int32_t key);
  const Use* find_use(int32_t key) const;

  CachePolicy policy_;
  int32_t capacity_;
  int64_t clock_ = 0;
  std::vector<int32_t> keys_;                  // resident keys
  std::vector<std::pair<int32_t, Use>> uses_;  // every key ever used, unsorted
};

// A host CPU as a roofline, for computing a missed expert where its weights are (Fiddler,
// Kamahori et al. 2024) instead of copying them: max(FLOPs / (peak * compute efficiency),
// bytes / (memory bandwidth * memory efficiency)).
struct CpuSpec {
  std::string name;
  std::string description;
  double peak_flops_fp32 = 0.0;  // vector FMA peak, all cores
  Bandwidth memory_bandwidth;    // DRAM, nominal
  double compute_efficiency = 0.5;
  double memory_efficiency = 0.7;
  // One token through `params` weights stored in `bytes`: 2 FLOPs per weight.
  Time one_row(int64_t params, Bytes bytes) const;
};
// The built-in CPUs: ryzen9-5950x (a desktop beside a consumer GPU), epyc-9654 (a server).
std::span<const CpuSpec> cpu_presets();
const CpuSpec* find_cpu_preset(std::string_view name);

enum class CacheScope : uint8_t { kPerLayer, kShared };

// Whether a missed expert's copy overlaps the work around it.
enum class CopyOverlap : uint8_t {
  // Copies on their own stream: they run beside the GPU's kernels and the host's work, and an
  // expert's kernels wait only for its own copy (what the issue asks of a serving engine).
  kCopyStream,
  // Demand copies on the compute stream and waited for before the expert runs: Mixtral-offloading
  // copies on the current CUDA stream and its Python loop over experts reads data-dependent
  // results (which experts have tokens) between them, so nothing overlaps a demand copy.
  // Prefetch copies are queued behind the layer's experts without a wait and so run while the
  // host issues the next layer.
  kSerial,
};
std::string_view copy_overlap_name(CopyOverlap o);

// Where the speculative prefetch's guess of the next MoE layer's experts comes from.
enum class PrefetchGuess : uint8_t {
  // OffloadConfig::prefetch_accuracy: each of the next layer's chosen experts is guessed with
  // that probability. For sources with no hidden state to apply a gate to (logit-space tokens,
  // traces) and for hidden states drawn per layer with no residual stream.
  kAccuracy,
  // The router itself, as Mixtral-offloading does: the top-k of the next MoE layer's gate
  // applied to this layer's hidden state, the tokens carried through the layers as a residual
  // stream (OffloadConfig::residual_similarity). Hidden-state token sources only.
  kGate,
};
std::string_view prefetch_guess_name(PrefetchGuess g);

// Everything the decode-with-offloading model needs beyond the model, GPU and routing source.
struct OffloadConfig {
  HostLink host_link;
  WeightPrecision expert_precision;     // routed experts, resident or copied
  WeightPrecision attention_precision;  // attention projections (always resident)
  CachePolicy policy = CachePolicy::kLru;
  CacheScope scope = CacheScope::kPerLayer;
  // Experts the GPU keeps: per MoE layer (kPerLayer) or in all (kShared).
  int32_t cache_experts = 0;
  // Speculative loading of the next MoE layer's likely experts while this layer computes.
  bool prefetch = false;
  // Probability that each of the next layer's chosen experts is among the guesses (the others
  // are guessed at random among the rest). With PrefetchGuess::kAccuracy: see sim/offload.h.
  double prefetch_accuracy = 0.0;
  PrefetchGuess prefetch_guess = PrefetchGuess::kAccuracy;
  // Set: each decoded token is one residual stream through the MoE layers, h_{m+1} = h_m +
  // delta_m, whose deviations from the mean hidden state correlate this much from one MoE layer
  // to the next (sim/offload_routing.h, with the published figures it is set from); unset:
  // every MoE layer draws its tokens on its own. Hidden-state token sources only.
  std::optional<double> residual_similarity;
  // Set: a missed expert is computed on this CPU when that ends before its copy would land and
  // be computed on the GPU (Fiddler); it is then not cached.
  std::optional<CpuSpec> cpu;
  CopyOverlap copy_overlap = CopyOverlap::kCopyStream;
  // Host (CPU) time the serving framework spends on each layer beyond the GPU's work: Python
  // dispatch of its operations, kernel launches, cache bookkeeping and reading back the router's
  // choice. The layer's gate result is known no earlier than this after the host began issuing
  // the layer, and the host reads it back (a synchronisation) before issuing the experts. Zero:
  // an engine whose host keeps ahead of the GPU (CUDA graphs, C++). See sim/offload.h.
  Time host_overhead_per_layer;
  int32_t decode_tokens = 0;   // tokens generated, one sequence
  int32_t context_length = 0;  // prompt tokens already in the KV cache before the first
};

}  // namespace moesim
