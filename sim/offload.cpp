// The decode-with-offloading pipeline of sim/offload.h: caches, copies and the two clocks.
#include "sim/offload.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "core/random.h"
#include "models/gpu/gpu_model.h"
#include "models/router/router.h"

namespace moesim {

double OffloadResult::tokens_per_s() const {
  return total > Time::zero() ? tokens / total.to_s() : 0.0;
}

double OffloadResult::hit_rate() const {
  const int64_t h = std::accumulate(hits_per_layer.begin(), hits_per_layer.end(), int64_t{0});
  const int64_t m = std::accumulate(misses_per_layer.begin(), misses_per_layer.end(), int64_t{0});
  return h + m > 0 ? static_cast<double>(h) / static_cast<double>(h + m) : 0.0;
}

double OffloadResult::guess_accuracy() const {
  return guess_targets > 0 ? static_cast<double>(guess_hits) / static_cast<double>(guess_targets)
                           : 0.0;
}

std::string OffloadResult::bound() const {
  // The largest of the four parts the compute stream's time splits into.
  const Time most = std::max({compute_busy, copy_stall, cpu_stall, host_stall});
  if (most == copy_stall) return "host link";
  if (most == cpu_stall) return "host CPU";
  if (most == host_stall) return "host overhead";
  return "GPU compute";
}

namespace {

// A weight-streaming kernel group over `params` weights stored in `precision` for one token:
// the time to read its packed weights at the achieved HBM rate, plus `launches` launches. One
// row makes these GEMVs, which the tile-efficiency curve eff(m) (tensor-core GEMMs) does not
// describe: at 2 FLOPs per weight and >= 0.25 bytes per weight they sit far below every preset's
// ridge point even on CUDA cores (RTX 3060: 12.7 TFLOP/s FP32 over 360 GB/s, 35 FLOP/byte), so
// decode kernels (HQQ's, GPTQ's, cuBLAS GEMV) are bandwidth-bound. Dequantisation is free.
Time one_row_weights(const GpuModel& gpu, int64_t params, const WeightPrecision& precision,
                     int32_t launches) {
  return gpu.memory_time(precision.bytes_for(params)) + gpu.launch() * launches;
}

}  // namespace

OffloadResult simulate_offload(const ModelSpec& model, const GpuSpec& gpu_spec,
                               const OffloadConfig& config, RoutingSource& routing, uint64_t seed,
                               OpGraph* graph) {
  const int32_t n_moe = model.moe_layer_count();
  if (config.decode_tokens < 1) {
    throw std::invalid_argument("offload.decode_tokens: expected >= 1");
  }
  if (n_moe < 1) throw std::invalid_argument("offload: the model has no MoE layer");
  if (!config.residual_similarity) {
    return simulate_offload(model, gpu_spec, config,
                            route_independent_layers(routing, n_moe, config.decode_tokens), seed,
                            graph);
  }
  auto* router = dynamic_cast<Router*>(&routing);
  if (router == nullptr) {
    throw std::invalid_argument(
        "offload.residual_similarity: needs the router model's hidden states, not a trace");
  }
  return simulate_offload(
      model, gpu_spec, config,
      route_residual_stream(*router, n_moe, config.decode_tokens, *config.residual_similarity),
      seed, graph);
}

OffloadResult simulate_offload(const ModelSpec& model, const GpuSpec& gpu_spec,
                               const OffloadConfig& config, const OffloadRouting& routing,
                               uint64_t seed, OpGraph* graph) {
  const int32_t n_moe = model.moe_layer_count();
  const int32_t experts = model.routed_experts;
  const int32_t k = model.top_k;
  if (config.decode_tokens < 1) {
    throw std::invalid_argument("offload.decode_tokens: expected >= 1");
  }
  if (n_moe < 1) throw std::invalid_argument("offload: the model has no MoE layer");
  const bool shared = config.scope == CacheScope::kShared;
  const int32_t pinned_need = shared && config.prefetch ? 2 * k : k;
  if (config.policy != CachePolicy::kStatic && config.cache_experts < pinned_need) {
    throw std::invalid_argument(
        "offload.cache_experts: expected >= " + std::to_string(pinned_need) + " (top-k" +
        (pinned_need > k ? " of this layer and the next" : "") + " must fit), got " +
        std::to_string(config.cache_experts));
  }
  const int32_t cache_limit = shared ? n_moe * experts : experts;
  if (config.cache_experts < 0 || config.cache_experts > cache_limit) {
    throw std::invalid_argument("offload.cache_experts: expected 0.." +
                                std::to_string(cache_limit) + ", got " +
                                std::to_string(config.cache_experts));
  }
  if (config.cpu && config.copy_overlap == CopyOverlap::kSerial) {
    throw std::invalid_argument("offload.cpu: expected copy_overlap COPY_STREAM (not SERIAL)");
  }
  if (graph != nullptr && (config.cpu || graph->gpus() < 2 || graph->op_count() > 0)) {
    throw std::invalid_argument(
        "offload: the operation graph needs an empty graph of 2 GPUs and no offload.cpu");
  }
  if (config.host_overhead_per_layer < Time::zero()) {
    throw std::invalid_argument("offload.host_overhead_per_layer: expected >= 0");
  }
  if (config.prefetch && (config.prefetch_accuracy < 0.0 || config.prefetch_accuracy > 1.0)) {
    throw std::invalid_argument("offload.prefetch_accuracy: expected in [0, 1]");
  }
  const bool gate_guess = config.prefetch && config.prefetch_guess == PrefetchGuess::kGate;
  if (routing.chosen.size() != static_cast<size_t>(n_moe) ||
      (gate_guess && routing.guessed.size() != static_cast<size_t>(n_moe))) {
    throw std::invalid_argument("offload: routing for " + std::to_string(n_moe) +
                                " MoE layers expected");
  }
  if (gate_guess) {
    for (int32_t m = 1; m < n_moe; ++m) {
      if (routing.guessed[static_cast<size_t>(m)].tokens < 1) {
        throw std::invalid_argument(
            "offload.prefetch_guess: GATE needs the gate's guesses, from a residual stream "
            "(offload.residual_similarity)");
      }
    }
  }

  OffloadResult r;
  const GpuModel gpu(gpu_spec);
  r.expert_bytes = config.expert_precision.bytes_for(model.expert_params());
  r.expert_copy_time = transfer_time(r.expert_bytes, config.host_link.achieved());
  r.cache_slots = shared ? config.cache_experts : config.cache_experts * n_moe;

  // GPU memory: resident non-expert weights, shared experts, the cache, the KV cache.
  const int64_t kv_elements = model.kv_cache_elements_per_token() * model.layers *
                              (static_cast<int64_t>(config.context_length) + config.decode_tokens);
  const int64_t dense_layers = model.layers - n_moe;
  r.gpu_memory = config.attention_precision.bytes_for(model.attention_params()) * model.layers +
                 config.attention_precision.bytes_for(model.dense_ffn_params()) * dense_layers +
                 config.expert_precision.bytes_for(model.expert_params()) *
                     (static_cast<int64_t>(model.shared_experts) * n_moe) +
                 Bytes(2 * (model.gate_params() * n_moe + model.embedding_params())) +
                 r.expert_bytes * r.cache_slots + Bytes(2 * kv_elements);
  if (r.gpu_memory > gpu_spec.hbm_capacity) {
    throw std::invalid_argument("offload.cache_experts: " + std::to_string(r.cache_slots) +
                                " cached experts of " + std::to_string(r.expert_bytes.count()) +
                                " bytes with the resident weights and KV cache need " +
                                std::to_string(r.gpu_memory.count()) +
                                " bytes, more than the GPU's " +
                                std::to_string(gpu_spec.hbm_capacity.count()));
  }

  // Routing: per MoE layer, the whole decoded sequence's choices (sim/offload_routing.h).
  const std::vector<RoutingDecision>& decisions = routing.chosen;
  int32_t tokens = config.decode_tokens;
  for (int32_t m = 0; m < n_moe; ++m) {
    tokens = std::min(tokens, decisions[static_cast<size_t>(m)].tokens);
    if (gate_guess && m > 0)
      tokens = std::min(tokens, routing.guessed[static_cast<size_t>(m)].tokens);
  }
  r.tokens = tokens;
  r.prefetch_guess = config.prefetch_guess;
  if (routing.similarity) r.residual_cosine = routing.mean_cosine;
  auto chosen = [&](int32_t m, int32_t t, std::vector<int32_t>& out) {
    out.clear();
    const RoutingDecision& d = decisions[static_cast<size_t>(m)];
    const auto ids = d.experts_of(t);
    for (size_t s = 0; s < ids.size(); ++s) {
      const size_t pair = static_cast<size_t>(t) * d.slots_per_token + s;
      if (ids[s] == kNoExpert || (!d.dropped.empty() && d.dropped[pair])) continue;
      if (std::find(out.begin(), out.end(), ids[s]) == out.end()) out.push_back(ids[s]);
    }
  };

  // Caches and their initial contents: a static cache holds the most used experts of the run
  // (an oracle popularity, the best a static set can do); LRU and LFU start with the lowest
  // expert indices, as a server loading the model would.
  const int32_t n_caches = shared ? 1 : n_moe;
  std::vector<ExpertCache> caches;
  caches.reserve(static_cast<size_t>(n_caches));
  for (int32_t c = 0; c < n_caches; ++c) caches.emplace_back(config.policy, config.cache_experts);
  auto key_of = [&](int32_t m, int32_t e) { return shared ? m * experts + e : e; };
  auto cache_of = [&](int32_t m) -> ExpertCache& {
    return caches[static_cast<size_t>(shared ? 0 : m)];
  };
  std::vector<int32_t> order;
  if (config.policy == CachePolicy::kStatic) {
    std::vector<int64_t> count(static_cast<size_t>(n_moe) * experts, 0);
    std::vector<int32_t> ids;
    for (int32_t m = 0; m < n_moe; ++m) {
      for (int32_t t = 0; t < tokens; ++t) {
        chosen(m, t, ids);
        for (int32_t e : ids) ++count[static_cast<size_t>(m) * experts + e];
      }
    }
    for (int32_t c = 0; c < n_caches; ++c) {
      order.clear();
      const int32_t first = shared ? 0 : c;
      const int32_t last = shared ? n_moe : c + 1;
      for (int32_t m = first; m < last; ++m) {
        for (int32_t e = 0; e < experts; ++e) order.push_back(m * experts + e);
      }
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return count[static_cast<size_t>(a)] > count[static_cast<size_t>(b)];
      });
      const size_t take = std::min(order.size(), static_cast<size_t>(config.cache_experts));
      for (size_t i = 0; i < take; ++i) {
        const int32_t m = order[i] / experts;
        caches[static_cast<size_t>(c)].preload(key_of(m, order[i] % experts));
      }
    }
  } else {
    for (int32_t e = 0; e < experts; ++e) {
      for (int32_t m = 0; m < n_moe; ++m) {
        ExpertCache& cache = cache_of(m);
        if (static_cast<int32_t>(cache.resident().size()) < cache.capacity()) {
          cache.preload(key_of(m, e));
        }
      }
    }
  }

  // Kernel times that do not change from token to token.
  const Time attention_weights =
      one_row_weights(gpu, model.attention_params(), config.attention_precision, 2);
  const Time dense_ffn =
      one_row_weights(gpu, model.dense_ffn_params(), config.attention_precision, 2);
  const Time expert_time = one_row_weights(gpu, model.expert_params(), config.expert_precision, 2);
  const WeightPrecision bf16{"bf16", 16, 0, 0};
  const Time gate_time =
      one_row_weights(gpu, static_cast<int64_t>(experts) * model.hidden_size, bf16, 1);
  const Time lm_head =
      one_row_weights(gpu, static_cast<int64_t>(model.vocab_size) * model.hidden_size, bf16, 1);
  const AttentionShape shape = attention_shape(model, 1, true);

  const size_t n_keys = static_cast<size_t>(n_moe) * experts;
  std::vector<Time> ready(n_keys, Time::zero());      // when a resident expert's copy lands
  std::vector<uint8_t> prefetched_unused(n_keys, 0);  // brought by a prefetch, not used yet
  auto slot = [&](int32_t m, int32_t e) { return static_cast<size_t>(m) * experts + e; };
  r.hits_per_layer.assign(static_cast<size_t>(n_moe), 0);
  r.misses_per_layer.assign(static_cast<size_t>(n_moe), 0);
  RandomStream guess_stream(seed, "offload.prefetch");

  Time compute = Time::zero();  // compute stream's clock
  Time link = Time::zero();     // when the host link is next free
  std::vector<int32_t> need, need_keys, next, guesses, pinned;
  // GPU experts' copies landing, with the copy op each waits for (graph only).
  std::vector<std::pair<Time, OpId>> arrivals;
  std::vector<OpId> ready_op(graph != nullptr ? n_keys : 0, kNone);  // the copy behind ready
  Time cpu_clock = Time::zero();
  Time cpu_done = Time::zero();  // this layer's CPU-computed experts end
  const Time cpu_expert =
      config.cpu ? config.cpu->one_row(model.expert_params(), r.expert_bytes) : Time::zero();
  auto copy = [&](Time not_before) {
    const Time start = std::max(link, not_before);
    link = start + r.expert_copy_time;
    r.link_busy += r.expert_copy_time;
    r.link_bytes += r.expert_bytes;
    return link;
  };
  auto on_evict = [&](std::optional<int32_t> victim, int32_t m) {
    if (!victim) return;
    const int32_t vm = shared ? *victim / experts : m;
    const int32_t ve = shared ? *victim % experts : *victim;
    prefetched_unused[slot(vm, ve)] = 0;
  };

  // The host's clock: when it has issued everything so far. It pays host_overhead_per_layer
  // per layer, reads back each MoE layer's choice (waiting for the gate) and each token's
  // output; a kernel cannot end before the host has issued it.
  Time host = Time::zero();
  const Time host_layer = config.host_overhead_per_layer;
  const bool serial = config.copy_overlap == CopyOverlap::kSerial;
  // The compute stream runs `work` from `compute` on, ending no earlier than the host's issue.
  // The graph (when asked for): GPU 0's compute stream runs the kernels and its comm stream the
  // copies; "GPU" 1's compute stream is the host thread. host_sync: what the host's next op
  // waits for (the gate read back, the last expert in SERIAL, the token's output).
  OpId host_sync = kNone;
  OpId last_op = kNone;  // the compute stream's latest op
  auto add_op = [&](int32_t on, Stream stream, Phase phase, Time t, OpId after) {
    if (graph == nullptr) return kNone;
    Op op;
    op.gpu = on;
    op.stream = stream;
    op.phase = phase;
    op.kernel = KernelKind::kFixed;
    op.fixed_time = t;
    const OpId id = after == kNone ? graph->add_kernel(op) : graph->add_kernel(op, {&after, 1});
    if (on == 0 && stream == Stream::kCompute) last_op = id;
    return id;
  };
  auto issue_and_run = [&](Time work, Phase phase) {
    // Work, then a zero-time op that waits for the host's issue: ends at max(both).
    const OpId issued = add_op(1, Stream::kCompute, Phase::kIdle, host_layer, host_sync);
    add_op(0, Stream::kCompute, phase, work, kNone);
    add_op(0, Stream::kCompute, phase, Time::zero(), issued);
    host += host_layer;
    r.compute_busy += work;
    const Time gpu_end = compute + work;
    if (host > gpu_end) {
      r.host_stall += host - gpu_end;
      compute = host;
    } else {
      compute = gpu_end;
    }
  };

  for (int32_t t = 0; t < tokens; ++t) {
    const Time token_start = compute;
    int32_t m = 0;
    for (int32_t layer = 0; layer < model.layers; ++layer) {
      const Time attention =
          attention_weights + gpu.attention_decode(1,
                                                   static_cast<int64_t>(config.context_length) + t,
                                                   shape, Dtype::kBf16);
      if (!model.is_moe_layer(layer)) {
        issue_and_run(attention + dense_ffn, Phase::kDenseFfn);
        continue;
      }
      issue_and_run(attention + gate_time, Phase::kAttention);
      const Time gate_done = compute;
      host = gate_done;  // the host reads the layer's choice back
      const OpId gate_op = last_op;
      host_sync = gate_op;
      ExpertCache& cache = cache_of(m);
      chosen(m, t, need);
      need_keys.clear();
      for (int32_t e : need) need_keys.push_back(key_of(m, e));
      arrivals.clear();
      cpu_done = Time::zero();
      for (size_t i = 0; i < need.size(); ++i) {
        const int32_t e = need[i];
        cache.record_use(need_keys[i]);
        if (cache.contains(need_keys[i])) {
          ++r.hits_per_layer[static_cast<size_t>(m)];
          if (prefetched_unused[slot(m, e)]) {
            ++r.prefetch_used;
            prefetched_unused[slot(m, e)] = 0;
          }
          arrivals.emplace_back(
              std::max(ready[slot(m, e)], gate_done),
              graph != nullptr && ready[slot(m, e)] > gate_done ? ready_op[slot(m, e)] : kNone);
        } else {
          ++r.misses_per_layer[static_cast<size_t>(m)];
          if (config.cpu) {
            const Time cpu_end = std::max(cpu_clock, gate_done) + cpu_expert;
            const Time gpu_end = std::max(link, gate_done) + r.expert_copy_time + expert_time;
            if (cpu_end < gpu_end) {
              cpu_clock = cpu_end;
              cpu_done = std::max(cpu_done, cpu_end);
              ++r.cpu_computed;
              continue;
            }
          }
          on_evict(cache.insert(need_keys[i], need_keys), m);
          if (serial) {
            // On the compute stream, in the experts' order, waited for: copy, then the expert.
            arrivals.emplace_back(Time::max(), kNone);
            ready[slot(m, e)] = Time::zero();
            continue;
          }
          const Time landed = copy(gate_done);
          const OpId c = add_op(0, Stream::kComm, Phase::kDispatch, r.expert_copy_time, gate_op);
          arrivals.emplace_back(landed, c);
          ready[slot(m, e)] = landed;
          if (graph != nullptr) ready_op[slot(m, e)] = c;
        }
      }
      if (serial) {
        // Every expert in order on the one stream; a miss (Time::max()) copies first.
        for (const auto& [a, unused] : arrivals) {
          if (a == Time::max()) {
            compute = copy(compute);
            r.copy_stall += r.expert_copy_time;
            add_op(0, Stream::kCompute, Phase::kDispatch, r.expert_copy_time, kNone);
          }
          compute += expert_time;
          r.compute_busy += expert_time;
          add_op(0, Stream::kCompute, Phase::kExpertCompute, expert_time, kNone);
        }
        host = compute;  // the host waited for each expert
        host_sync = last_op;
      }
      // Speculative loading of the next MoE layer's guessed experts, behind this layer's copies
      // (own stream) or behind its experts on the compute stream (serial).
      if (config.prefetch && m + 1 < n_moe) {
        chosen(m + 1, t, next);
        guesses.clear();
        if (gate_guess) {
          // The gate's top-k on this layer's hidden state, as the router chose them (a pair the
          // batch's capacity would drop is still a guess: capacity is not the gate's).
          for (const int32_t g : routing.guessed[static_cast<size_t>(m + 1)].experts_of(t)) {
            if (g != kNoExpert && std::find(guesses.begin(), guesses.end(), g) == guesses.end()) {
              guesses.push_back(g);
            }
          }
        }
        // Otherwise the accuracy parameter: each chosen expert, or in its place one not chosen.
        for (int32_t e : next) {
          if (gate_guess) break;
          int32_t g = e;
          if (guess_stream.uniform01() >= config.prefetch_accuracy &&
              experts > static_cast<int32_t>(next.size())) {
            do {
              g = static_cast<int32_t>(guess_stream.below(static_cast<uint64_t>(experts)));
            } while (std::find(next.begin(), next.end(), g) != next.end() ||
                     std::find(guesses.begin(), guesses.end(), g) != guesses.end());
          }
          if (std::find(guesses.begin(), guesses.end(), g) == guesses.end()) guesses.push_back(g);
        }
        r.guess_targets += static_cast<int64_t>(next.size());
        for (const int32_t e : next) {
          if (std::find(guesses.begin(), guesses.end(), e) != guesses.end()) ++r.guess_hits;
        }
        ExpertCache& next_cache = cache_of(m + 1);
        pinned.clear();
        if (shared) pinned = need_keys;
        for (int32_t g : guesses) pinned.push_back(key_of(m + 1, g));
        for (int32_t g : guesses) {
          const int32_t key = key_of(m + 1, g);
          if (next_cache.contains(key) || config.policy == CachePolicy::kStatic) continue;
          Time landed;
          OpId c = kNone;
          if (serial) {
            // Queued without a wait: the stream copies while the host issues the next layer.
            compute = copy(compute);
            r.copy_stall += r.expert_copy_time;
            landed = compute;
            add_op(0, Stream::kCompute, Phase::kDispatch, r.expert_copy_time, kNone);
          } else {
            landed = copy(gate_done);
            c = add_op(0, Stream::kComm, Phase::kDispatch, r.expert_copy_time, gate_op);
          }
          if (graph != nullptr) ready_op[slot(m + 1, g)] = c;
          ++r.prefetch_copies;
          on_evict(next_cache.insert(key, pinned), m + 1);
          ready[slot(m + 1, g)] = landed;
          prefetched_unused[slot(m + 1, g)] = 1;
        }
      }
      if (!serial) {
        // Experts run as their copies land (the engine's choice of order, which a static graph
        // takes from here).
        std::sort(arrivals.begin(), arrivals.end());
        for (const auto& [a, c] : arrivals) {
          if (a > compute) {
            r.copy_stall += a - compute;
            compute = a;
          }
          compute += expert_time;
          r.compute_busy += expert_time;
          add_op(0, Stream::kCompute, Phase::kExpertCompute, expert_time, c);
        }
        if (cpu_done > compute) {
          r.cpu_stall += cpu_done - compute;
          compute = cpu_done;
        }
      }
      for (int32_t s = 0; s < model.shared_experts; ++s) {
        compute += expert_time;
        r.compute_busy += expert_time;
        add_op(0, Stream::kCompute, Phase::kDenseFfn, expert_time, kNone);
      }
      ++m;
    }
    compute += lm_head;
    r.compute_busy += lm_head;
    host = std::max(host, compute);  // the host reads the token back before the next
    host_sync = add_op(0, Stream::kCompute, Phase::kAttention, lm_head, kNone);
    r.token_latency.push_back(compute - token_start);
  }
  r.total = compute;
  return r;
}

}  // namespace moesim
