// Expert offloading: the cache policies and the decode pipeline against hand-worked sequences
// and closed forms.
#include <catch2/catch.hpp>
#include <stdexcept>
#include <vector>

#include "models/gpu/gpu_model.h"
#include "models/moe/expert_cache.h"
#include "models/network/network_model.h"
#include "models/router/router.h"
#include "sim/cost_model.h"
#include "sim/executor.h"
#include "sim/offload.h"
#include "tests/offload/fixtures.h"
#include "topologies/builders.h"

namespace moesim {
namespace {

// Replays fixed per-layer expert sequences, top-1 (one token per entry).
class SequenceSource final : public RoutingSource {
 public:
  SequenceSource(int32_t experts, std::vector<std::vector<int32_t>> per_layer)
      : experts_(experts), per_layer_(std::move(per_layer)) {}
  int32_t experts() const override { return experts_; }
  int32_t top_k() const override { return 1; }
  void route(const RoutingRequest& request, RoutingDecision& out) override {
    const auto& seq = per_layer_.at(static_cast<size_t>(request.layer));
    out.reset(static_cast<int32_t>(seq.size()), experts_, 1);
    for (size_t t = 0; t < seq.size(); ++t) {
      out.expert_ids[t] = seq[t];
      ++out.tokens_per_expert[static_cast<size_t>(seq[t])];
    }
  }

 private:
  int32_t experts_;
  std::vector<std::vector<int32_t>> per_layer_;
};

// Four experts, top-1.
ModelSpec tiny_model(int32_t layers) {
  return test::small_offload_model(layers, 4, 1);
}

using test::lru_offload_config;

// Sequence 0,0,0,1,2,0 through a 2-expert cache preloaded with {0, 1}:
// LRU: hits at tokens 0-3; token 4 (expert 2) evicts 0 (last used at token 2, before 1 at 3);
//      token 5 (expert 0) misses. 4 hits, 2 misses.
// LFU: token 4 evicts 1 (1 use against 0's 3); token 5 hits. 5 hits, 1 miss.
const std::vector<int32_t> kSequence = {0, 0, 0, 1, 2, 0};

TEST_CASE("expert cache: LRU and LFU on a hand-worked sequence") {
  for (const auto& [policy, misses] :
       {std::pair{CachePolicy::kLru, 2}, std::pair{CachePolicy::kLfu, 1}}) {
    ExpertCache cache(policy, 2);
    cache.preload(0);
    cache.preload(1);
    int32_t miss = 0;
    for (int32_t e : kSequence) {
      cache.record_use(e);
      if (!cache.contains(e)) {
        ++miss;
        cache.insert(e, std::vector<int32_t>{e});
      }
    }
    CHECK(miss == misses);
  }
  ExpertCache stat(CachePolicy::kStatic, 1);
  stat.preload(3);
  CHECK_FALSE(stat.insert(2, {}).has_value());
  CHECK(stat.contains(3));
  CHECK_FALSE(stat.contains(2));
  ExpertCache pinned(CachePolicy::kLru, 1);
  pinned.preload(0);
  CHECK_THROWS_AS(pinned.insert(1, std::vector<int32_t>{0}), std::logic_error);
}

TEST_CASE("offload: hits, misses and copy time of the hand-worked sequence") {
  const ModelSpec model = tiny_model(1);
  const GpuSpec gpu = *find_gpu_preset("h100-sxm");
  const GpuModel g(gpu);
  // One token's compute, independent of the cache: attention (projections and KV read), the
  // gate, one expert, the LM head; the KV read grows with the context, so sum per token.
  // One-row products stream their bf16 weights (2 bytes each) at the achieved HBM rate.
  const Time attn_w = g.memory_time(Bytes(2 * model.attention_params())) + g.launch() * 2;
  const Time expert = g.memory_time(Bytes(2 * model.expert_params())) + g.launch() * 2;
  const Time gate = g.memory_time(Bytes(2 * 4 * 256)) + g.launch();
  const Time lm = g.memory_time(Bytes(2 * 1000 * 256)) + g.launch();
  const Time fixed = attn_w + expert + gate + lm;
  Time compute = Time::zero();
  for (int t = 0; t < 6; ++t) {
    compute += fixed + g.attention_decode(1, 16 + t, attention_shape(model, 1, true), Dtype::kBf16);
  }
  // 3 weight matrices of 256 x 1024 in bf16 over PCIe 4.0 x16 at 0.9 x 31.5 GB/s.
  const Bytes expert_bytes(3 * 256 * 1024 * 2);
  const Time copy = transfer_time(expert_bytes, Bandwidth::gigabytes_per_s(31.5 * 0.9));

  for (const auto& [policy, misses] :
       {std::pair{CachePolicy::kLru, 2}, std::pair{CachePolicy::kLfu, 1}}) {
    SequenceSource source(4, {kSequence});
    OffloadConfig config = lru_offload_config(2, 6);
    config.policy = policy;
    const OffloadResult r = simulate_offload(model, gpu, config, source, 1);
    REQUIRE(r.tokens == 6);
    CHECK(r.misses_per_layer[0] == misses);
    CHECK(r.hits_per_layer[0] == 6 - misses);
    CHECK(r.expert_bytes == expert_bytes);
    CHECK(r.link_bytes == expert_bytes * misses);
    // Each miss waits for its whole copy: the link is idle when the gate decides.
    CHECK(r.copy_stall == copy * misses);
    CHECK(r.total == compute + copy * misses);
    CHECK(r.compute_busy == compute);
  }
}

TEST_CASE("offload: serial copies and the host's overhead on the hand-worked sequence") {
  // One layer, host overhead 1 ms per layer (far above the GPU's work): each token costs the
  // overhead (its gate is known only then), a miss's whole copy on the compute stream, the
  // expert and the LM head; the GPU waits for the host for the rest of the overhead.
  const ModelSpec model = tiny_model(1);
  const GpuSpec gpu = *find_gpu_preset("h100-sxm");
  const GpuModel g(gpu);
  const Time overhead = Time::ms(1);
  const Time attn_w = g.memory_time(Bytes(2 * model.attention_params())) + g.launch() * 2;
  const Time expert = g.memory_time(Bytes(2 * model.expert_params())) + g.launch() * 2;
  const Time gate = g.memory_time(Bytes(2 * 4 * 256)) + g.launch();
  const Time lm = g.memory_time(Bytes(2 * 1000 * 256)) + g.launch();
  const Time copy =
      transfer_time(Bytes(3 * 256 * 1024 * 2), Bandwidth::gigabytes_per_s(31.5 * 0.9));
  Time busy = Time::zero();
  Time waiting = Time::zero();
  for (int t = 0; t < 6; ++t) {
    const Time attn =
        attn_w + g.attention_decode(1, 16 + t, attention_shape(model, 1, true), Dtype::kBf16);
    busy += attn + gate + expert + lm;
    waiting += overhead - attn - gate;
  }
  for (const CopyOverlap overlap : {CopyOverlap::kSerial, CopyOverlap::kCopyStream}) {
    // With one layer nothing follows a copy but its expert, so both overlaps give the same.
    SequenceSource source(4, {kSequence});
    OffloadConfig config = lru_offload_config(2, 6);
    config.copy_overlap = overlap;
    config.host_overhead_per_layer = overhead;
    const OffloadResult r = simulate_offload(model, gpu, config, source, 1);
    CHECK(r.misses_per_layer[0] == 2);
    CHECK(r.compute_busy == busy);
    CHECK(r.host_stall == waiting);
    CHECK(r.copy_stall == copy * 2);
    CHECK(r.total == (overhead + expert + lm) * 6 + copy * 2);
    CHECK(r.total == r.compute_busy + r.copy_stall + r.host_stall);
    CHECK(r.bound() == "host overhead");
  }
}

TEST_CASE("offload: serial prefetch copies run while the host issues the next layer") {
  // Layer 0 always picks expert 0 (resident), layer 1 cycles 1, 2, 3 through a 1-expert cache.
  // Without prefetch layer 1 waits for each copy on the compute stream; a perfect guess queues
  // it behind layer 0's expert, where it runs during layer 1's host overhead (1 ms, longer than
  // the copy), so it costs nothing.
  const ModelSpec model = tiny_model(2);
  const GpuSpec gpu = *find_gpu_preset("h100-sxm");
  const GpuModel g(gpu);
  const Time overhead = Time::ms(1);
  const Time expert = g.memory_time(Bytes(2 * model.expert_params())) + g.launch() * 2;
  const Time lm = g.memory_time(Bytes(2 * 1000 * 256)) + g.launch();
  const Time copy =
      transfer_time(Bytes(3 * 256 * 1024 * 2), Bandwidth::gigabytes_per_s(31.5 * 0.9));
  REQUIRE(copy < overhead);
  const std::vector<std::vector<int32_t>> seqs = {{0, 0, 0, 0, 0, 0}, {1, 2, 3, 1, 2, 3}};
  OffloadConfig config = lru_offload_config(1, 6);
  config.copy_overlap = CopyOverlap::kSerial;
  config.host_overhead_per_layer = overhead;
  SequenceSource a(4, seqs);
  const OffloadResult demand = simulate_offload(model, gpu, config, a, 1);
  CHECK(demand.misses_per_layer[1] == 6);
  CHECK(demand.total == (overhead * 2 + expert * 2 + lm) * 6 + copy * 6);
  config.prefetch = true;
  config.prefetch_accuracy = 1.0;
  SequenceSource b(4, seqs);
  const OffloadResult pre = simulate_offload(model, gpu, config, b, 1);
  CHECK(pre.misses_per_layer[1] == 0);
  CHECK(pre.prefetch_used == 6);
  CHECK(pre.link_bytes == demand.link_bytes);
  CHECK(pre.total == (overhead * 2 + expert * 2 + lm) * 6);
  CHECK(pre.total == pre.compute_busy + pre.copy_stall + pre.host_stall);
}

TEST_CASE("offload: a CPU faster than the copy computes the misses instead (Fiddler)") {
  const ModelSpec model = tiny_model(1);
  const GpuSpec gpu = *find_gpu_preset("h100-sxm");
  const GpuModel g(gpu);
  CpuSpec cpu;
  cpu.name = "fast";
  cpu.peak_flops_fp32 = 1e15;
  cpu.memory_bandwidth = Bandwidth::gigabytes_per_s(1000.0);
  // One row through 3 x 256 x 1024 bf16 weights: 1.5 MiB at 700 GB/s (compute 1.6 us is less).
  const Time cpu_time = transfer_time(Bytes(3 * 256 * 1024 * 2), Bandwidth::gigabytes_per_s(700));
  CHECK(cpu.one_row(3 * 256 * 1024, Bytes(3 * 256 * 1024 * 2)) == cpu_time);
  SequenceSource source(4, {kSequence});
  OffloadConfig config = lru_offload_config(2, 6);
  const OffloadResult copied = simulate_offload(model, gpu, config, source, 1);
  config.cpu = cpu;
  const OffloadResult r = simulate_offload(model, gpu, config, source, 1);
  const Time expert = g.memory_time(Bytes(2 * model.expert_params())) + g.launch() * 2;
  // Token 4's miss (expert 2) runs on the CPU and is not cached, so token 5's expert 0 stays
  // resident and hits: one miss, computed on the CPU in place of the GPU's expert kernel.
  CHECK(copied.misses_per_layer[0] == 2);
  CHECK(r.misses_per_layer[0] == 1);
  CHECK(r.cpu_computed == 1);
  CHECK(r.link_bytes == Bytes(0));
  CHECK(r.total == copied.total - copied.expert_copy_time * 2 - expert + cpu_time);
}

TEST_CASE("offload: a cache holding every expert equals the non-offloaded run") {
  // Two MoE layers, top-2 of 4 experts, routed by the router model: with all 4 experts cached
  // nothing crosses the host link and each token costs exactly its compute.
  ModelSpec model = tiny_model(2);
  model.top_k = 2;
  RouterSpec spec;
  spec.experts = 4;
  spec.top_k = 2;
  spec.layers = 2;
  spec.tokens.hidden = 256;
  spec.seed = 7;
  Router router(spec);
  const GpuSpec gpu = *find_gpu_preset("l4");
  OffloadConfig config = lru_offload_config(4, 20);
  config.prefetch = true;
  config.prefetch_accuracy = 0.5;
  const OffloadResult r = simulate_offload(model, gpu, config, router, 1);
  CHECK(r.link_bytes == Bytes(0));
  CHECK(r.copy_stall == Time::zero());
  CHECK(r.hit_rate() == 1.0);
  CHECK(r.total == r.compute_busy);
  // And against a closed form: per token 2 layers x (attention + gate + 2 experts) + LM head.
  const GpuModel g(gpu);
  // One-row products stream their bf16 weights (2 bytes each) at the achieved HBM rate.
  const Time attn_w = g.memory_time(Bytes(2 * model.attention_params())) + g.launch() * 2;
  const Time expert = g.memory_time(Bytes(2 * model.expert_params())) + g.launch() * 2;
  const Time gate = g.memory_time(Bytes(2 * 4 * 256)) + g.launch();
  const Time lm = g.memory_time(Bytes(2 * 1000 * 256)) + g.launch();
  Time expected = Time::zero();
  for (int t = 0; t < 20; ++t) {
    const Time attn =
        attn_w + g.attention_decode(1, 16 + t, attention_shape(model, 1, true), Dtype::kBf16);
    expected += (attn + gate + expert * 2) * 2 + lm;
  }
  CHECK(r.total == expected);
}

TEST_CASE("offload: perfect prefetch hides copies that fit behind compute") {
  // Two layers alternating experts so the per-layer LRU of 1 misses every time; a perfect guess
  // for layer 1 is issued at layer 0's gate, so layer 1's copy starts earlier than a demand one.
  const ModelSpec model = tiny_model(2);
  const GpuSpec gpu = *find_gpu_preset("h100-sxm");
  const std::vector<int32_t> seq = {1, 2, 3, 1, 2, 3};
  OffloadConfig config = lru_offload_config(1, 6);
  SequenceSource a(4, {seq, seq});
  const OffloadResult demand = simulate_offload(model, gpu, config, a, 1);
  config.prefetch = true;
  config.prefetch_accuracy = 1.0;
  SequenceSource b(4, {seq, seq});
  const OffloadResult pre = simulate_offload(model, gpu, config, b, 1);
  CHECK(demand.misses_per_layer[1] == 6);
  CHECK(pre.misses_per_layer[1] == 0);
  CHECK(pre.prefetch_copies == 6);
  CHECK(pre.prefetch_used == 6);
  CHECK(pre.total < demand.total);
  CHECK(pre.link_bytes == demand.link_bytes);
}

TEST_CASE("offload: the executor plays the run's operation graph to the same end") {
  // The recurrence against the event-driven executor on the graph it writes out: copies on
  // GPU 0's comm stream (or its compute stream, SERIAL), the host on "GPU" 1. Two MoE layers of
  // top-2 among 4 experts, a 2-expert LRU cache, wrong prefetch guesses half the time, so copies
  // queue behind each other, prefetches and the host's issue.
  ModelSpec model = tiny_model(2);
  model.top_k = 2;
  const GpuSpec gpu = *find_gpu_preset("l4");
  for (const CopyOverlap overlap : {CopyOverlap::kCopyStream, CopyOverlap::kSerial}) {
    for (const Time overhead : {Time::zero(), Time::us(30), Time::ms(1)}) {
      for (const bool prefetch : {false, true}) {
        INFO("serial " << (overlap == CopyOverlap::kSerial) << " overhead " << overhead.to_us()
                       << " us, prefetch " << prefetch);
        RouterSpec spec;
        spec.experts = 4;
        spec.top_k = 2;
        spec.layers = 2;
        spec.tokens.hidden = 256;
        spec.seed = 3;
        Router router(spec);
        OffloadConfig config = lru_offload_config(2, 24);
        config.copy_overlap = overlap;
        config.host_overhead_per_layer = overhead;
        config.prefetch = prefetch;
        config.prefetch_accuracy = 0.5;
        OpGraph graph(2);
        const OffloadResult r = simulate_offload(model, gpu, config, router, 1, &graph);
        REQUIRE(r.misses_per_layer[0] + r.misses_per_layer[1] > 0);
        graph.finish();
        Engine engine;
        const Topology topology =
            build_nvswitch_node({2, Bandwidth::gigabytes_per_s(100.0), Time::ns(500)});
        NetworkModel network(engine, topology);
        const GpuModel g(gpu);
        CostModel cost(network, g);
        Executor executor(engine, cost);
        const Execution x = executor.run(graph);
        CHECK(x.end - x.start == r.total);
      }
    }
  }
}

TEST_CASE("offload: bad configurations name the field") {
  const ModelSpec model = tiny_model(1);
  const GpuSpec gpu = *find_gpu_preset("h100-sxm");
  SequenceSource source(4, {kSequence});
  OffloadConfig config = lru_offload_config(0, 6);
  CHECK_THROWS_WITH(simulate_offload(model, gpu, config, source, 1),
                    Catch::Contains("offload.cache_experts"));
  config = lru_offload_config(2, 0);
  CHECK_THROWS_WITH(simulate_offload(model, gpu, config, source, 1),
                    Catch::Contains("offload.decode_tokens"));
}

TEST_CASE("host links and weight precisions from their data sheets") {
  CHECK(find_host_link_preset("pcie3-x16")->nominal.gigabytes_per_second() == Approx(15.75));
  CHECK(find_host_link_preset("pcie5-x16")->nominal.gigabytes_per_second() == Approx(63.0));
  CHECK(find_host_link_preset("nvlink-c2c")->nominal.gigabytes_per_second() == Approx(450.0));
  // 3-bit, groups of 64 with 4 bytes each: 3.5 bits per weight.
  CHECK(weight_precision_from_name("int3")->bytes_for(6400) == Bytes(2400 + 400));
  CHECK(weight_precision_from_name("int4")->bytes_for(65) == Bytes(33 + 8));
  // Mixtral-offloading's experts: 2 bits and an 8-bit scale and zero per 16 weights, 3 bits.
  CHECK(weight_precision_from_name("int2-g16")->bytes_for(1600) == Bytes(400 + 200));
  CHECK_FALSE(weight_precision_from_name("int5").has_value());
}

}  // namespace
}  // namespace moesim
