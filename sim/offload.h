// Decoding one sequence on one GPU with its experts offloaded to host memory: per token and
// layer, attention and expert compute on the GPU, missed experts copied over the host link.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/units.h"
#include "models/gpu/gpu_spec.h"
#include "models/moe/expert_cache.h"
#include "models/moe/model_spec.h"
#include "models/router/routing_decision.h"
#include "sim/offload_routing.h"
#include "sim/op_graph.h"

namespace moesim {

// The timing is a closed-form two-stream pipeline, not the operation graph: with one GPU and
// one sequence every kernel depends on the one before (attention -> gate -> experts -> next
// layer), so the only concurrency is the copy stream beside the compute stream, and a
// recurrence over (compute clock, link clock) plays it exactly with no engine. Per token, per
// layer: attention (projections at attention precision, KV read), the gate (this is when the
// layer's experts are known), then each missed expert is queued on the host link (FIFO, one copy
// at a time, starting no earlier than the gate) and, with prefetch, the next MoE layer's guessed
// experts after them; the experts run one by one in order of arrival, each when its copy has
// landed. With a CPU (OffloadConfig::cpu) a miss is instead computed there, on one CPU
// stream from the gate on, when that ends before the copy would land plus the GPU's expert
// time; its output then joins the GPU's (activations of a few KB, not counted). Then the LM
// head. A hit is an expert resident (or already on its way from a prefetch)
// when its layer's gate is known.
//
// The host. A third clock plays the CPU that issues the work (OffloadConfig::
// host_overhead_per_layer): a layer's kernels end no earlier than the host has spent its
// overhead on them, and the host waits for each MoE layer's gate (it reads the routing back to
// pick the experts) and for each token's output. With eager PyTorch this fixed cost, not the
// GPU, sets the token time of small-batch decode; zero is an engine whose host keeps ahead.
//
// Copy overlap (OffloadConfig::copy_overlap). COPY_STREAM is the above: copies on their own
// stream beside everything. SERIAL plays Mixtral-offloading's implementation: a demand copy
// runs on the compute stream just before its expert and nothing overlaps it; prefetch copies
// are queued on the same stream behind the layer's experts, without a wait, so they run while
// the host issues the next layer (that gap is what their speculative loading fills).
//
// Why a recurrence and not the operation graph (sim/op_graph.h, sim/executor.h). For one
// sequence on one GPU the graph is a chain: each kernel consumes the previous one's output, a
// copy depends only on its layer's gate (or, prefetched, the previous gate) and the copy
// stream's order, and an expert on its own copy. The resources are the compute stream, the copy
// stream (the host link, which nothing else uses here) and the host thread, each FIFO; the
// executor would start each operation at the max of its dependencies' ends and its resource's
// free time, which is exactly what the clocks here compute, so the two give the same times.
// What the recurrence cannot express, and the graph could: several sequences or GPUs sharing
// one host link or host memory (PCIe switch, a root port, DRAM read by copies and CPU experts
// at once), a batch whose tokens share copies, copies that slow the kernels beside them (HBM
// writes), a demand copy overtaking queued prefetches, and device-to-host traffic.
//
// Prefetch guesses. Mixtral-offloading guesses the next layer's experts by applying the next
// layer's gate to this layer's hidden state. With a hidden-state token source and a residual
// stream (OffloadConfig::residual_similarity, sim/offload_routing.h) moesim does the same
// (PrefetchGuess::kGate): the guess is the top-k of MoE layer m+1's gate on layer m's hidden
// state, and how often it is right follows from the router. A logit-space source has no hidden
// state, a trace records choices only, and without a residual stream each layer's tokens are
// drawn on their own (the guess would carry no information), so these use `prefetch_accuracy`
// (PrefetchGuess::kAccuracy): each of the next layer's chosen experts is guessed with that
// probability, else a uniformly drawn expert it did not choose is guessed in its place. Either
// way the result counts the share of the next layer's chosen experts the guess included.
//
// Tokens: MoE layer m's choices for decode token t are row t of one routing request of
// decode_tokens tokens (layer m, micro-batch 0, rank 0), so the router's sequence model
// (sequence_correlation, offset_correlation) sets how much consecutive tokens share experts.
struct OffloadResult {
  int32_t tokens = 0;
  std::vector<Time> token_latency;  // per decode token
  Time total;
  Time compute_busy;  // GPU kernels
  Time copy_stall;    // compute stream waiting for an expert's copy
  Time cpu_stall;     // compute stream waiting for experts computed on the CPU
  Time host_stall;    // compute stream waiting for the host to issue work
  Time link_busy;     // host link copying
  Bytes link_bytes;
  std::vector<int64_t> hits_per_layer;  // per MoE layer
  std::vector<int64_t> misses_per_layer;
  int64_t prefetch_copies = 0;
  int64_t prefetch_used = 0;  // prefetched experts used before being evicted
  int64_t cpu_computed = 0;   // misses computed on the CPU instead of copied (Fiddler)
  PrefetchGuess prefetch_guess = PrefetchGuess::kAccuracy;
  // With prefetch: the next MoE layer's chosen experts, over tokens and layers, and how many of
  // them the guess included.
  int64_t guess_targets = 0;
  int64_t guess_hits = 0;
  // With a residual stream: the mean cosine of consecutive MoE layers' hidden states, as drawn.
  std::optional<double> residual_cosine;
  Bytes expert_bytes;       // one expert at the expert precision
  Time expert_copy_time;    // one expert over the host link
  Bytes gpu_memory;         // resident weights + cache + KV cache
  int32_t cache_slots = 0;  // experts cached in all

  double tokens_per_s() const;
  double hit_rate() const;  // over all MoE layers
  // guess_hits / guess_targets: the prefetch guess's measured accuracy (0 without prefetch).
  double guess_accuracy() const;
  // The largest of compute_busy ("GPU compute"), copy_stall ("host link"), cpu_stall ("host
  // CPU") and host_stall ("host overhead"); the four add up to `total`.
  std::string bound() const;
};

// Throws std::invalid_argument naming the offload field at fault (cache too small for top-k,
// not fitting in the GPU's memory, no tokens).
//
// With `graph` (an empty OpGraph of 2 GPUs, not finished), the run is also written out as the
// operation graph the recurrence plays, every op a fixed-time kernel: GPU 0's compute stream
// holds the kernels (and SERIAL's copies), its comm stream the copy stream, GPU 1's compute
// stream the host thread (host_overhead_per_layer per layer); a kernel group ends no earlier
// than a zero-time op waiting for its host op, copies wait for their gate, experts for their
// copies, the host for each gate read back (and SERIAL's experts) and each token. The order of
// experts on the compute stream (as their copies land) is the recurrence's. Played by the
// executor (sim/executor.h) it ends at `total` (tested). Not with a CPU (OffloadConfig::cpu).
//
// The routing: with OffloadConfig::residual_similarity, a residual stream through the router
// (`routing` must then be a Router with a hidden-state source), else each layer on its own.
OffloadResult simulate_offload(const ModelSpec& model, const GpuSpec& gpu,
                               const OffloadConfig& config, RoutingSource& routing, uint64_t seed,
                               OpGraph* graph = nullptr);
// The same on routing already made (sim/offload_routing.h); PrefetchGuess::kGate needs its
// guesses.
OffloadResult simulate_offload(const ModelSpec& model, const GpuSpec& gpu,
                               const OffloadConfig& config, const OffloadRouting& routing,
                               uint64_t seed, OpGraph* graph = nullptr);

}  // namespace moesim
