// Tests of the model presets against their published parameter counts, and of the per-token
// message sizes and layer layout the step uses.
#include <catch2/catch.hpp>

#include "models/moe/model_spec.h"

namespace moesim {
namespace {

const ModelSpec& preset(std::string_view name) {
  const ModelSpec* m = find_model_preset(name);
  REQUIRE(m != nullptr);
  return *m;
}

TEST_CASE("Model presets match their published total and active parameter counts", "[moe]") {
  struct Published {
    std::string_view name;
    double total;
    double active;
    double unit;  // the last digit the figures are given to
  };
  // Mixtral paper (46.7B / 12.9B); Mistral's 8x22B release (141B / 39B); DeepSeek-V3 report
  // (671B / 37B, without the MTP module); Qwen3 model cards (30.5B / 3.3B, 235B / 22B);
  // Databricks' DBRX announcement (132B / 36B). Tolerance: half a unit of the last published
  // digit, plus 1% for what the counts here leave out or count differently (norms, biases,
  // whether the input embedding counts as active).
  const Published published[] = {
      {"mixtral-8x7b", 46.7e9, 12.9e9, 0.1e9}, {"mixtral-8x22b", 141e9, 39e9, 1e9},
      {"deepseek-v3", 671e9, 37e9, 1e9},       {"qwen3-30b-a3b", 30.5e9, 3.3e9, 0.1e9},
      {"qwen3-235b-a22b", 235e9, 22e9, 1e9},   {"dbrx", 132e9, 36e9, 1e9}};
  for (const Published& p : published) {
    INFO(p.name);
    const ModelSpec& m = preset(p.name);
    CHECK(static_cast<double>(m.total_params()) ==
          Approx(p.total).epsilon(0.5 * p.unit / p.total + 0.01));
    CHECK(static_cast<double>(m.active_params()) ==
          Approx(p.active).epsilon(0.5 * p.unit / p.active + 0.01));
  }
}

TEST_CASE("Dense presets match their published parameter counts", "[moe]") {
  struct Published {
    std::string_view name;
    double total;
    double unit;  // the last digit the figure is given to
  };
  // Llama-2-13B and -70B: the parameters their checkpoints hold, 13,015,864,320 and
  // 68,976,648,192 (HF model pages; the Llama 2 paper, Touvron et al. 2023, rounds to 13B and
  // 70B); Llama-3.1-70B: 70.6B (model card); Llama-3.1-405B: 405B (Llama 3 Herd paper, Dubey et
  // al. 2024; a name that truncates, so a whole unit of slack); Qwen2.5-72B: 72.7B (model card
  // and Qwen2.5 technical report). Tolerance: half a unit of the last published digit plus 0.1%
  // for the norms and biases the counts leave out.
  const Published published[] = {{"llama-2-13b", 13'015'864'320.0, 1.0},
                                 {"llama-2-70b", 68'976'648'192.0, 1.0},
                                 {"llama-3.1-70b", 70.6e9, 0.1e9},
                                 {"llama-3.1-405b", 405e9, 2e9},  // names 405.8B truncated
                                 {"qwen2.5-72b", 72.7e9, 0.1e9}};
  for (const Published& p : published) {
    INFO(p.name);
    const ModelSpec& m = preset(p.name);
    CHECK(m.is_dense());
    CHECK(m.moe_layer_count() == 0);
    CHECK(m.moe_layer_indices().empty());
    CHECK(static_cast<double>(m.total_params()) ==
          Approx(p.total).epsilon(0.5 * p.unit / p.total + 0.001));
    // A dense model's every weight is active.
    CHECK(m.active_params() == m.total_params());
  }
  // Qwen2.5-72B's model card: 70.0B without the embeddings. 0.4%: the card's count of the
  // non-embedding weights is 0.3% under 80 layers of the config's shapes (70.21B).
  const ModelSpec& qwen = preset("qwen2.5-72b");
  CHECK(static_cast<double>(qwen.total_params() - qwen.embedding_params()) ==
        Approx(70.0e9).epsilon(0.004));
}

TEST_CASE("Llama-2-70B's parameters by hand: the checkpoint less its RMSNorm weights", "[moe]") {
  const ModelSpec& m = preset("llama-2-70b");
  // Per layer: q and o 8192 x 8192 each, k and v 8192 x (8 KV heads x 128) each, SwiGLU's three
  // 8192 x 28672 matrices; the untied embedding and LM head, 32000 x 8192 each.
  const int64_t attention = 2 * 8192LL * 8192 + 2 * 8192LL * 1024;
  const int64_t ffn = 3 * 8192LL * 28672;
  CHECK(m.attention_params() == attention);
  CHECK(m.dense_ffn_params() == ffn);
  CHECK(m.total_params() == 80 * (attention + ffn) + 2 * 32000LL * 8192);
  // The checkpoint adds two RMSNorm vectors per layer and the final one: (2 x 80 + 1) x 8192.
  CHECK(m.total_params() + (2 * 80 + 1) * 8192LL == 68'976'648'192LL);
  // What a token multiplies by: all but the input embedding.
  CHECK(m.active_matmul_params() == m.total_params() - 32000LL * 8192);
}

TEST_CASE("Mixtral-8x7B's pairings: Llama-2-13B has about its active parameters", "[moe]") {
  // The Mixtral paper (Jiang et al. 2024) compares Mixtral-8x7B (12.9B active, 46.7B total)
  // with Llama 2 70B on quality; at equal active size the dense peer is Llama-2-13B (13.0B).
  const ModelSpec& mixtral = preset("mixtral-8x7b");
  const ModelSpec& llama13 = preset("llama-2-13b");
  const ModelSpec& llama70 = preset("llama-2-70b");
  CHECK(static_cast<double>(mixtral.active_params()) ==
        Approx(static_cast<double>(llama13.active_params())).epsilon(0.02));
  CHECK(mixtral.total_params() < llama70.total_params());
  CHECK(mixtral.total_params() > 3 * llama13.total_params());
}

TEST_CASE("Mixtral-8x7B's parameter pieces, by hand", "[moe]") {
  const ModelSpec& m = preset("mixtral-8x7b");
  // q and o: 4096 x 4096 each; k and v: 4096 x (8 heads x 128) each.
  CHECK(m.attention_params() == 2 * 4096LL * 4096 + 2 * 4096LL * 1024);
  CHECK(m.expert_params() == 3LL * 4096 * 14336);
  CHECK(m.gate_params() == 4096LL * 8);
  CHECK(m.kv_cache_elements_per_token() == 2 * 8 * 128);
  CHECK(m.dispatch_bytes_per_token() == Bytes(4096 * 2));
  CHECK(m.moe_layer_count() == 32);
}

TEST_CASE("DeepSeek-V3: dense first layers, MLA, FP8 dispatch with scales", "[moe]") {
  const ModelSpec& m = preset("deepseek-v3");
  const std::vector<int32_t> moe = m.moe_layer_indices();
  REQUIRE(moe.size() == 58);
  CHECK(moe.front() == 3);
  CHECK(moe.back() == 60);
  CHECK_FALSE(m.is_moe_layer(2));
  CHECK(m.is_moe_layer(3));
  // 7168 FP8 bytes plus one 4-byte scale per 128 elements (56 scales).
  CHECK(m.dispatch_bytes_per_token() == Bytes(7168 + 56 * 4));
  CHECK(m.combine_bytes_per_token() == Bytes(7168 * 2));
  // MLA caches the 512-wide latent and the 64-wide RoPE key per token and layer.
  CHECK(m.kv_cache_elements_per_token() == 576);
  CHECK(m.attention == AttentionKind::kMla);
  CHECK(m.qk_head_dim() == 192);
}

TEST_CASE("Switch-Base-128 has experts on every other layer", "[moe]") {
  const ModelSpec& m = preset("switch-base-128");
  const std::vector<int32_t> moe = m.moe_layer_indices();
  REQUIRE(moe.size() == 12);
  for (size_t i = 0; i < moe.size(); ++i) CHECK(moe[i] == static_cast<int32_t>(2 * i + 1));
  CHECK(m.expert_params() == 2LL * 768 * 3072);  // ReLU FFN: two matrices
  CHECK_FALSE(m.normalize_topk);
}

TEST_CASE("Element formats count one scale per started block", "[moe]") {
  const ElementFormat fp8{Dtype::kFp8, 4, 128};
  CHECK(fp8.bytes_for(128) == Bytes(132));
  CHECK(fp8.bytes_for(129) == Bytes(129 + 8));
  CHECK(fp8.bytes_for(0) == Bytes(0));
  const ElementFormat bf16{};
  CHECK(bf16.bytes_for(1000) == Bytes(2000));
}

TEST_CASE("Preset names are the ones users type", "[moe]") {
  for (std::string_view name : {"mixtral-8x7b", "mixtral-8x22b", "deepseek-v3", "qwen3-30b-a3b",
                                "qwen3-235b-a22b", "dbrx", "switch-base-128", "llama-2-13b",
                                "llama-2-70b", "llama-3.1-70b", "llama-3.1-405b", "qwen2.5-72b"}) {
    CHECK(find_model_preset(name) != nullptr);
  }
  CHECK(find_model_preset("Mixtral-8x7B") == nullptr);
  CHECK(model_presets().size() == 12);
}

}  // namespace
}  // namespace moesim
