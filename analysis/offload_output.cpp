// Table and JSON of an offloaded decode run.
#include "analysis/offload_output.h"

#include <cstdio>
#include <string>
#include <vector>

#include "analysis/json_text.h"
#include "core/statistics.h"

namespace moesim {

namespace {

struct Figures {
  SampleSet latency_ms;
  double per_token_bytes = 0.0;
  double stall_fraction = 0.0;
  double host_stall_fraction = 0.0;
  double link_utilisation = 0.0;
  std::vector<double> layer_hit_rate;
};

Figures figures(const OffloadResult& r) {
  Figures f;
  for (const Time t : r.token_latency) f.latency_ms.add(t.to_ms());
  const double total = r.total.to_s();
  f.per_token_bytes = static_cast<double>(r.link_bytes.count()) / r.tokens;
  f.stall_fraction = total > 0 ? r.copy_stall.to_s() / total : 0.0;
  f.host_stall_fraction = total > 0 ? r.host_stall.to_s() / total : 0.0;
  f.link_utilisation = total > 0 ? r.link_busy.to_s() / total : 0.0;
  for (size_t m = 0; m < r.hits_per_layer.size(); ++m) {
    const auto all = r.hits_per_layer[m] + r.misses_per_layer[m];
    f.layer_hit_rate.push_back(all > 0 ? static_cast<double>(r.hits_per_layer[m]) / all : 0.0);
  }
  return f;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

// Why a run's prefetch guess is the accuracy parameter and not the router's gate.
std::string why_no_gate(const Scenario& s) {
  if (s.router.source == TokenSourceKind::kLogitSpace) {
    return "logit-space tokens have no hidden state";
  }
  if (!s.offload->residual_similarity) {
    return "layers draw tokens independently without residual_similarity";
  }
  return "prefetch_guess ACCURACY";
}

}  // namespace

void print_offload_table(std::ostream& out, const Scenario& s, const OffloadResult& r) {
  const OffloadConfig& c = *s.offload;
  const Figures f = figures(r);
  auto share = [&](Time t) { return r.total > Time::zero() ? t.to_s() / r.total.to_s() : 0.0; };
  out << "scenario        " << s.name << " (decode with offloaded experts, one sequence)\n"
      << "gpu             " << s.cluster.gpu.name
      << (s.cluster.gpu.description.empty() ? "" : " (" + s.cluster.gpu.description + ")")
      << "; one GPU of the cluster's type (topology and parallelism not used)\n"
      << "host link       " << c.host_link.name << ", "
      << fmt("%.2f", c.host_link.achieved().gigabytes_per_second()) << " GB/s achieved\n"
      << "experts         " << c.expert_precision.name << ", "
      << fmt("%.1f", r.expert_bytes.count() / 1e6) << " MB each, "
      << fmt("%.2f", r.expert_copy_time.to_ms()) << " ms to copy; attention "
      << c.attention_precision.name << "\n"
      << "cache           " << cache_policy_name(c.policy) << ", " << c.cache_experts
      << (c.scope == CacheScope::kShared ? " experts shared by all layers" : " experts per layer")
      << " (" << r.cache_slots << " in all); GPU memory " << fmt("%.2f", r.gpu_memory.count() / 1e9)
      << " of " << fmt("%.2f", s.cluster.gpu.hbm_capacity.count() / 1e9) << " GB\n";
  if (c.prefetch) {
    out << "prefetch        next layer's experts, ";
    if (c.prefetch_guess == PrefetchGuess::kGate) {
      out << "guessed by its gate on this layer's hidden state";
    } else {
      out << "accuracy parameter " << fmt("%.2f", c.prefetch_accuracy)
          << " (not the router's gate: " << why_no_gate(s) << ")";
    }
    out << "; measured accuracy " << fmt("%.1f", 100.0 * r.guess_accuracy()) << "%; "
        << r.prefetch_copies << " copies, " << r.prefetch_used << " used\n";
  } else {
    out << "prefetch        off\n";
  }
  if (c.residual_similarity) {
    out << "residual stream each token's hidden state carried through the MoE layers, deviations "
           "from the mean correlated "
        << fmt("%.3g", *c.residual_similarity) << " layer to layer (cosine of consecutive states "
        << fmt("%.3f", r.residual_cosine.value_or(0.0)) << ")\n";
  }
  if (c.copy_overlap == CopyOverlap::kSerial || c.host_overhead_per_layer > Time::zero()) {
    out << "execution       "
        << (c.copy_overlap == CopyOverlap::kSerial
                ? "serial copies (demand copies on the compute stream, waited for)"
                : "copies on their own stream")
        << "; host overhead " << fmt("%.2f", c.host_overhead_per_layer.to_ms())
        << " ms per layer\n";
  }
  if (c.cpu) {
    out << "cpu             " << c.cpu->name << " (" << c.cpu->description
        << "): " << r.cpu_computed << " missed experts computed there instead of copied\n";
  }
  out << "tokens          " << r.tokens << " decoded after " << c.context_length << " of context\n"
      << "decode          " << fmt("%.2f", r.tokens_per_s()) << " tokens/s\n"
      << "token latency   mean " << fmt("%.1f", f.latency_ms.mean()) << " ms, p50 "
      << fmt("%.1f", f.latency_ms.p50()) << " ms, p99 " << fmt("%.1f", f.latency_ms.p99())
      << " ms\n"
      << "hit rate        " << fmt("%.1f", 100.0 * r.hit_rate()) << "% overall; per layer";
  for (double h : f.layer_hit_rate) out << " " << fmt("%.0f", 100.0 * h);
  out << "\n"
      << "host link       " << fmt("%.1f", f.per_token_bytes / 1e6) << " MB per token, busy "
      << fmt("%.0f", 100.0 * f.link_utilisation) << "% of the time\n"
      << "bound           " << r.bound() << ": of the token time the GPU computes "
      << fmt("%.0f", 100.0 * share(r.compute_busy)) << "%, waits for copies "
      << fmt("%.0f", 100.0 * f.stall_fraction) << "%";
  if (c.host_overhead_per_layer > Time::zero()) {
    out << ", for the host to issue work " << fmt("%.0f", 100.0 * f.host_stall_fraction) << "%";
  }
  if (c.cpu) out << ", for CPU-computed experts " << fmt("%.0f", 100.0 * share(r.cpu_stall)) << "%";
  out << "\n";
}

void write_offload_json(std::ostream& out, const Scenario& s, const OffloadResult& r) {
  const OffloadConfig& c = *s.offload;
  const Figures f = figures(r);
  out << "{\"scenario\": " << json_string(s.name)
      << ", \"gpu\": " << json_string(s.cluster.gpu.name)
      << ", \"host_link\": " << json_string(c.host_link.name) << ", \"host_link_gbytes_per_s\": "
      << json_number(c.host_link.achieved().gigabytes_per_second())
      << ", \"expert_precision\": " << json_string(c.expert_precision.name)
      << ", \"attention_precision\": " << json_string(c.attention_precision.name)
      << ", \"expert_bytes\": " << r.expert_bytes.count()
      << ", \"policy\": " << json_string(cache_policy_name(c.policy))
      << ", \"scope\": " << json_string(c.scope == CacheScope::kShared ? "shared" : "per_layer")
      << ", \"cache_experts\": " << c.cache_experts
      << ", \"gpu_memory_bytes\": " << r.gpu_memory.count() << ", \"tokens\": " << r.tokens
      << ", \"tokens_per_s\": " << json_number(r.tokens_per_s())
      << ", \"token_latency_ms\": {\"mean\": " << json_number(f.latency_ms.mean())
      << ", \"p50\": " << json_number(f.latency_ms.p50())
      << ", \"p99\": " << json_number(f.latency_ms.p99()) << "}"
      << ", \"hit_rate\": " << json_number(r.hit_rate()) << ", \"hit_rate_per_layer\": [";
  for (size_t i = 0; i < f.layer_hit_rate.size(); ++i) {
    out << (i ? ", " : "") << json_number(f.layer_hit_rate[i]);
  }
  out << "], \"host_link_bytes_per_token\": " << json_number(f.per_token_bytes)
      << ", \"host_link_utilisation\": " << json_number(f.link_utilisation)
      << ", \"copy_stall_fraction\": " << json_number(f.stall_fraction)
      << ", \"bound\": " << json_string(r.bound())
      << ", \"prefetch\": {\"enabled\": " << (c.prefetch ? "true" : "false") << ", \"guess\": "
      << json_string(c.prefetch ? std::string(prefetch_guess_name(c.prefetch_guess)) : "none")
      << ", \"accuracy\": "
      << (c.prefetch && c.prefetch_guess == PrefetchGuess::kAccuracy
              ? json_number(c.prefetch_accuracy)
              : std::string("null"))
      << ", \"measured_accuracy\": "
      << (c.prefetch ? json_number(r.guess_accuracy()) : std::string("null"))
      << ", \"why_not_gate\": "
      << (c.prefetch && c.prefetch_guess == PrefetchGuess::kAccuracy ? json_string(why_no_gate(s))
                                                                     : std::string("null"))

      << ", \"copies\": " << r.prefetch_copies << ", \"used\": " << r.prefetch_used
      << "}, \"cpu\": " << json_string(c.cpu ? c.cpu->name : "")
      << ", \"cpu_computed\": " << r.cpu_computed << ", \"residual_similarity\": "
      << (c.residual_similarity ? json_number(*c.residual_similarity) : std::string("null"))
      << ", \"residual_cosine\": "
      << (r.residual_cosine ? json_number(*r.residual_cosine) : std::string("null"))
      << ", \"copy_overlap\": " << json_string(copy_overlap_name(c.copy_overlap))
      << ", \"host_overhead_per_layer_ms\": " << json_number(c.host_overhead_per_layer.to_ms())
      << ", \"host_stall_fraction\": " << json_number(f.host_stall_fraction)
      << ", \"cpu_stall_fraction\": "
      << json_number(r.total > Time::zero() ? r.cpu_stall.to_s() / r.total.to_s() : 0.0)
      << ", \"compute_fraction\": "
      << json_number(r.total > Time::zero() ? r.compute_busy.to_s() / r.total.to_s() : 0.0)
      << "}\n";
}

}  // namespace moesim
