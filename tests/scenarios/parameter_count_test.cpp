// Parameters per GPU (models/moe/parameter_count.h) against a hand count of a small model, at
// one pipeline stage and at two, with TP 2; and memory per GPU reading the same count.
#include <catch2/catch.hpp>

#include "models/moe/parameter_count.h"
#include "sim/memory.h"

namespace moesim {
namespace {

// 4 layers (layer 0 dense, 1-3 MoE), hidden 16, GQA 4 heads / 2 KV heads of 4, SwiGLU FFNs,
// dense FFN 32, 8 routed experts of FFN 8 plus 1 shared, vocab 100, untied.
ModelSpec small_model() {
  ModelSpec m;
  m.name = "small";
  m.layers = 4;
  m.dense_layers = 1;
  m.hidden_size = 16;
  m.attention_heads = 4;
  m.kv_heads = 2;
  m.head_dim = 4;
  m.dense_ffn_size = 32;
  m.expert_ffn_size = 8;
  m.routed_experts = 8;
  m.shared_experts = 1;
  m.top_k = 2;
  m.vocab_size = 100;
  return m;
}

// By hand: attention 2*16*4*4 (q, o) + 2*16*2*4 (k, v) = 768; dense FFN 3*16*32 = 1536; an
// expert 3*16*8 = 384; the gate 16*8 = 128; a vocabulary table 100*16 = 1600. At TP 2 each is
// halved except the gate (replicated); at EP 2 an EP rank holds 4 routed experts per layer.
constexpr int64_t kAttention = 768 / 2;
constexpr int64_t kDenseFfn = 1536 / 2;
constexpr int64_t kGate = 128;
constexpr int64_t kShared = 384 / 2;
constexpr int64_t kRouted = 4 * 384 / 2;
constexpr int64_t kTable = 1600 / 2;

TEST_CASE("Parameters per GPU at one pipeline stage, TP 2: both tables, whole gates", "[moe]") {
  const ModelSpec m = small_model();
  ParallelPlan plan;
  plan.tp = 2;
  plan.ep = 2;
  const GpuParameterCount c = gpu_parameter_count(m, plan, 0, 0, 4, 4);
  // 4 attentions, 1 dense FFN, 3 gates and shared experts, embedding and LM head.
  CHECK(c.dense == 4 * kAttention + kDenseFfn + 3 * (kGate + kShared) + 2 * kTable);
  CHECK(c.dense == 4864);
  CHECK(c.routed_experts == 3 * kRouted);
  CHECK(c.routed_experts == 2304);
  CHECK(c.total() == 7168);

  // Memory per GPU counts the same parameters (one stage: every GPU alike).
  Workload w;
  w.tokens_per_gpu = 8;
  const MemoryPerGpu mem = memory_per_gpu(m, plan, w, 8, Bytes(int64_t{1} << 30));
  CHECK(mem.params == 7168);
  CHECK(mem.weights == Bytes(7168 * 2));
}

TEST_CASE("Parameters per GPU at two pipeline stages, TP 2: a table at each end", "[moe]") {
  const ModelSpec m = small_model();
  ParallelPlan plan;
  plan.tp = 2;
  plan.ep = 2;
  plan.pp = 2;
  // Stage 0: layers 0 (dense) and 1 (MoE), the embedding.
  const GpuParameterCount first = gpu_parameter_count(m, plan, 0, 0, 2, 4);
  CHECK(first.dense == 2 * kAttention + kDenseFfn + kGate + kShared + kTable);
  CHECK(first.dense == 2656);
  CHECK(first.routed_experts == 768);
  // Stage 1: layers 2 and 3 (MoE), the LM head.
  const GpuParameterCount last = gpu_parameter_count(m, plan, 1, 2, 4, 4);
  CHECK(last.dense == 2 * kAttention + 2 * (kGate + kShared) + kTable);
  CHECK(last.dense == 2208);
  CHECK(last.routed_experts == 1536);
  // Together the two stages hold what one stage holds.
  CHECK(first.total() + last.total() == 7168);

  CHECK_THROWS_AS(gpu_parameter_count(m, plan, 2, 0, 2, 4), std::invalid_argument);
}

}  // namespace
}  // namespace moesim
