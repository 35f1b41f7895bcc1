#include "analysis/compare_output.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "analysis/json_text.h"
#include "analysis/text_format.h"

namespace moesim {
namespace {

double gib(Bytes b) {
  return static_cast<double>(b.count()) / double(1LL << 30);
}

// Whether the comparisons hold more than one model (then rows and verdicts name the model).
bool several_models(std::span<const ClusterComparison> comparisons) {
  for (const ClusterComparison& c : comparisons) {
    if (c.model.name != comparisons.front().model.name) return true;
  }
  return false;
}

bool several_clusters(std::span<const ClusterComparison> comparisons) {
  for (const ClusterComparison& c : comparisons) {
    if (c.label != comparisons.front().label) return true;
  }
  return false;
}

std::string model_kind(const ModelSpec& m) {
  if (m.is_dense()) return "dense";
  return "MoE " + std::to_string(m.routed_experts) + "x top-" + std::to_string(m.top_k);
}

std::string billions(int64_t params) {
  return fixed(static_cast<double>(params) / 1e9, 1);
}

std::string signed_ms(double us) {
  return (us >= 0 ? "+" : "-") + fixed(std::abs(us) / 1e3, 3) + " ms";
}

}  // namespace

double usd_per_million_tokens(double gpu_hour_usd, double tokens_per_s_per_gpu) {
  if (!(tokens_per_s_per_gpu > 0.0)) return std::numeric_limits<double>::infinity();
  return gpu_hour_usd / 3600.0 / tokens_per_s_per_gpu * 1e6;
}

ModelOutcome model_outcome(const ClusterComparison& comparison, WorkloadKind kind,
                           std::optional<double> gpu_hour_usd) {
  ModelOutcome o;
  o.comparison = &comparison;
  for (const PlanOutcome& p : comparison.plans) {  // ranked by step p50 already
    if (o.best == nullptr) o.best = &p;
    if (p.memory.fits()) {
      o.best = &p;
      o.fits = true;
      break;
    }
  }
  const ModelSpec& m = comparison.model;
  const double passes = kind == WorkloadKind::kTraining ? 3.0 : 1.0;
  o.gflop_per_token = 2.0 * passes * static_cast<double>(m.active_matmul_params()) / 1e9;
  o.weights = m.weights.bytes_for(m.total_params());
  if (gpu_hour_usd && o.best != nullptr) {
    o.usd_per_million_tokens =
        usd_per_million_tokens(*gpu_hour_usd, o.best->result.tokens_per_s_per_gpu);
  }
  return o;
}

std::string model_verdict(std::span<const ClusterComparison> comparisons, WorkloadKind kind,
                          std::optional<double> gpu_hour_usd) {
  std::vector<std::string> clusters;
  for (const ClusterComparison& c : comparisons) {
    if (std::find(clusters.begin(), clusters.end(), c.label) == clusters.end()) {
      clusters.push_back(c.label);
    }
  }
  std::string v;
  for (const std::string& label : clusters) {
    std::vector<ModelOutcome> outs;
    for (const ClusterComparison& c : comparisons) {
      if (c.label == label && !c.plans.empty())
        outs.push_back(model_outcome(c, kind, gpu_hour_usd));
    }
    if (outs.empty()) continue;
    // A model that fits beats one that does not; then the most tokens/s per GPU.
    std::stable_sort(outs.begin(), outs.end(), [](const ModelOutcome& a, const ModelOutcome& b) {
      if (a.fits != b.fits) return a.fits;
      return a.best->result.tokens_per_s_per_gpu > b.best->result.tokens_per_s_per_gpu;
    });
    const ModelOutcome& w = outs.front();
    const ModelSpec& wm = w.comparison->model;
    const double w_tps = w.best->result.tokens_per_s_per_gpu;
    if (!v.empty()) v += "\n";
    v += std::string(workload_kind_name(kind)) + (clusters.size() > 1 ? " on " + label : "") +
         ": " + wm.name + " wins with " + fixed(w_tps, 0) + " tokens/s per GPU (" +
         plan_label(w.best->plan) + ")";
    if (w.usd_per_million_tokens) {
      v += ", $" + fixed(*w.usd_per_million_tokens, 3) + " per million tokens";
    }
    if (!w.fits) v += ", though no model has a plan that fits in HBM";
    for (size_t i = 1; i < outs.size(); ++i) {
      const ModelOutcome& l = outs[i];
      const ModelSpec& lm = l.comparison->model;
      const PlanOutcome& lp = *l.best;
      const PlanOutcome& wp = *w.best;
      const double l_tps = lp.result.tokens_per_s_per_gpu;
      v += "; " + (l_tps > 0 ? fixed(w_tps / l_tps, 2) + "x " : std::string("ahead of ")) +
           lm.name + "'s " + fixed(l_tps, 0) + " (" + plan_label(lp.plan) + ")";
      if (!l.fits) {
        v += ", which fits in no plan (fullest GPU " + fixed(gib(lp.memory.total()), 1) +
             " GiB > " + fixed(gib(lp.memory.capacity), 0) + " GiB)";
      } else if (&l.comparison->plans.front() != l.best) {
        // Memory for weights: its fastest plan does not fit, so it runs a sharded one.
        const PlanOutcome& fastest = l.comparison->plans.front();
        v += ", whose faster " + plan_label(fastest.plan) + " (" +
             fixed(fastest.result.tokens_per_s_per_gpu, 0) + ") does not fit in HBM (" +
             fixed(gib(fastest.memory.total()), 1) + " GiB)";
      }
      // Why: where the loser's step time goes beyond the winner's, largest difference first.
      // The workload and cluster are the same, so each step carries the same tokens per GPU.
      struct Term {
        double delta_us;
        std::string text;
      };
      std::vector<Term> terms = {
          {lp.compute_us - wp.compute_us,
           "compute " + signed_ms(lp.compute_us - wp.compute_us) + " (" +
               fixed(l.gflop_per_token, 1) + " vs " + fixed(w.gflop_per_token, 1) +
               " GFLOP per token; weights per GPU " + fixed(gib(lp.memory.weights), 1) + " vs " +
               fixed(gib(wp.memory.weights), 1) + " GiB" +
               (lp.memory.kv_cache.count() + wp.memory.kv_cache.count() > 0
                    ? ", KV cache " + fixed(gib(lp.memory.kv_cache), 1) + " vs " +
                          fixed(gib(wp.memory.kv_cache), 1) + " GiB"
                    : std::string()) +
               ")"},
          {lp.alltoall_us - wp.alltoall_us,
           "all-to-all " + signed_ms(lp.alltoall_us - wp.alltoall_us)},
          {lp.tp_collective_us - wp.tp_collective_us,
           "TP collectives " + signed_ms(lp.tp_collective_us - wp.tp_collective_us)},
          {lp.idle_us - wp.idle_us,
           "idle (waiting for slower peers) " + signed_ms(lp.idle_us - wp.idle_us)},
          {lp.other_us - wp.other_us,
           "gradient and pipeline transfers " + signed_ms(lp.other_us - wp.other_us)}};
      std::stable_sort(terms.begin(), terms.end(), [](const Term& a, const Term& b) {
        return std::abs(a.delta_us) > std::abs(b.delta_us);
      });
      std::string why;
      for (const Term& t : terms) {
        // Differences under 1% of the loser's step say nothing about why it is slower.
        if (std::abs(t.delta_us) < 0.01 * lp.step_p50_us) continue;
        why += (why.empty() ? "" : ", ") + t.text;
      }
      if (!why.empty()) v += ": per step, " + lm.name + " spends " + why;
    }
  }
  return v;
}

std::string compare_verdict(std::span<const ClusterComparison> comparisons) {
  struct Ref {
    const ClusterComparison* cluster;
    const PlanOutcome* plan;
  };
  std::vector<Ref> fitting;
  std::vector<Ref> all;
  for (const ClusterComparison& c : comparisons) {
    for (const PlanOutcome& p : c.plans) {
      all.push_back({&c, &p});
      if (p.memory.fits()) fitting.push_back({&c, &p});
    }
  }
  auto by_p50 = [](const Ref& a, const Ref& b) {
    return a.plan->step_p50_us < b.plan->step_p50_us;
  };
  std::stable_sort(fitting.begin(), fitting.end(), by_p50);
  std::stable_sort(all.begin(), all.end(), by_p50);
  const bool models = several_models(comparisons);
  const bool clusters = several_clusters(comparisons);
  auto name = [&](const Ref& r) {
    return (models ? r.cluster->model.name + " " : std::string()) +
           (clusters ? r.cluster->label + " " : std::string()) + plan_label(r.plan->plan);
  };
  if (fitting.empty()) {
    return "no plan fits in HBM; fastest ignoring memory: " + name(all[0]) + " at " +
           fixed(all[0].plan->step_p50_us / 1000.0, 3) + " ms per step (p50)";
  }
  const Ref& best = fitting[0];
  std::string v = "fastest plan that fits: " + name(best) + " at " +
                  fixed(best.plan->step_p50_us / 1000.0, 3) + " ms per step (p50), " +
                  fixed(best.plan->result.tokens_per_s_per_gpu, 0) + " tokens/s per GPU";
  if (fitting.size() > 1) {
    const Ref& second = fitting[1];
    v += "; " + fixed(second.plan->step_p50_us / best.plan->step_p50_us, 2) +
         "x faster than the next, " + name(second);
  }
  if (all[0].plan != best.plan) {
    v += " (" + name(all[0]) + " is faster but does not fit in HBM)";
  }
  return v;
}

namespace {

// Columns padded to their widest cell; the columns named in `left` align left.
void print_columns(std::ostream& out, const std::vector<std::string>& head,
                   const std::vector<std::vector<std::string>>& rows,
                   const std::vector<std::string>& left) {
  std::vector<size_t> width(head.size());
  for (size_t i = 0; i < head.size(); ++i) width[i] = head[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size(); ++i) {
      const bool l = std::find(left.begin(), left.end(), head[i]) != left.end();
      out << (i ? "  " : "") << (l ? std::left : std::right) << std::setw(int(width[i])) << r[i];
    }
    out << std::right << "\n";
  };
  line(head);
  for (const auto& r : rows) line(r);
}

}  // namespace

void print_compare_table(std::ostream& out, const Scenario& scenario,
                         std::span<const ClusterComparison> comparisons,
                         std::optional<double> gpu_hour_usd) {
  const bool models = several_models(comparisons);
  std::string model_names;
  for (const ClusterComparison& c : comparisons) {
    if (model_names.find(c.model.name) == std::string::npos) {
      model_names += (model_names.empty() ? "" : " vs ") + c.model.name;
    }
  }
  out << "moesim compare: " << scenario.name << " ("
      << (comparisons.empty() ? scenario.model.name : model_names) << ", "
      << workload_kind_name(scenario.workload.kind) << ")\n";
  std::vector<std::string> head = {"#",          "cluster",  "plan",    "p50 ms",
                                   "p99 ms",     "a2a ms",   "TP ms",   "compute ms",
                                   "grad/pp ms", "idle ms",  "mem GiB", "w/g/opt/act/kv GiB",
                                   "fits",       "tok/s/GPU"};
  if (models) head.insert(head.begin() + 1, "model");
  std::vector<std::vector<std::string>> rows;
  for (const ClusterComparison& c : comparisons) {
    int rank = 0;
    for (const PlanOutcome& p : c.plans) {
      const MemoryPerGpu& m = p.memory;
      rows.push_back(
          {std::to_string(++rank),
           c.label + " (" + std::to_string(c.cluster.gpu_count) + "x " + c.cluster.gpu.name + ")",
           plan_label(p.plan), fixed(p.step_p50_us / 1e3, 3), fixed(p.step_p99_us / 1e3, 3),
           fixed(p.alltoall_us / 1e3, 3), fixed(p.tp_collective_us / 1e3, 3),
           fixed(p.compute_us / 1e3, 3), fixed(p.other_us / 1e3, 3), fixed(p.idle_us / 1e3, 3),
           fixed(gib(m.total()), 1),
           fixed(gib(m.weights), 1) + "/" + fixed(gib(m.gradients), 1) + "/" +
               fixed(gib(m.optimizer_state), 1) + "/" + fixed(gib(m.activations), 1) + "/" +
               fixed(gib(m.kv_cache), 1),
           m.fits() ? "yes" : "NO (>" + fixed(gib(m.capacity), 0) + ")",
           fixed(p.result.tokens_per_s_per_gpu, 0)});
      if (models) rows.back().insert(rows.back().begin() + 1, c.model.name);
    }
  }
  print_columns(out, head, rows, {"model", "cluster", "plan", "w/g/opt/act/kv GiB", "fits"});
  out << "Times are per step, per GPU averaged over GPUs (a2a: dispatch + combine; idle: waiting "
         "for slower peers). Memory: the fullest GPU.\n";
  if (!models) out << compare_verdict(comparisons) << "\n";
  if (!models && !gpu_hour_usd) return;

  // Each model's best plan (with several models, or to show one's cost): what the buying
  // question reads.
  const bool clusters = several_clusters(comparisons);
  std::vector<std::string> mhead = {"model",       "kind",      "total B", "active B",  "GFLOP/tok",
                                    "weights GiB", "best plan", "fits",    "tok/s/GPU", "mem GiB"};
  if (clusters) mhead.insert(mhead.begin() + 1, "cluster");
  if (gpu_hour_usd) mhead.push_back("$/M tok");
  std::vector<std::vector<std::string>> mrows;
  for (const ClusterComparison& c : comparisons) {
    if (c.plans.empty()) continue;
    const ModelOutcome o = model_outcome(c, scenario.workload.kind, gpu_hour_usd);
    std::vector<std::string> r = {c.model.name,
                                  model_kind(c.model),
                                  billions(c.model.total_params()),
                                  billions(c.model.active_params()),
                                  fixed(o.gflop_per_token, 1),
                                  fixed(gib(o.weights), 1),
                                  plan_label(o.best->plan),
                                  o.fits ? "yes" : "NO",
                                  fixed(o.best->result.tokens_per_s_per_gpu, 0),
                                  fixed(gib(o.best->memory.total()), 1)};
    if (clusters) r.insert(r.begin() + 1, c.label);
    if (o.usd_per_million_tokens) r.push_back(fixed(*o.usd_per_million_tokens, 3));
    mrows.push_back(std::move(r));
  }
  out << "\n";
  print_columns(out, mhead, mrows, {"model", "cluster", "kind", "best plan", "fits"});
  out << "Best plan: the fastest (step p50) that fits in HBM. GFLOP/tok: 2 x active weights a "
         "token multiplies by"
      << (scenario.workload.kind == WorkloadKind::kTraining ? ", x3 for training" : "")
      << " (attention scores excluded). Weights: the whole model.";
  if (gpu_hour_usd) {
    out << " $/M tok: at $" << fixed(*gpu_hour_usd, 2) << " per GPU-hour.";
  }
  out << "\n";
  if (models) out << model_verdict(comparisons, scenario.workload.kind, gpu_hour_usd) << "\n";
}

void write_compare_json(std::ostream& out, const Scenario& scenario,
                        std::span<const ClusterComparison> comparisons,
                        std::optional<double> gpu_hour_usd) {
  auto num = [](double v) { return std::isfinite(v) ? format_double(v) : std::string("null"); };
  out << "{\"scenario\": " << json_string(scenario.name) << ", \"clusters\": [";
  for (size_t c = 0; c < comparisons.size(); ++c) {
    const ClusterComparison& cc = comparisons[c];
    out << (c ? ", " : "") << "{\"model\": " << json_string(cc.model.name)
        << ", \"cluster\": " << json_string(cc.label) << ", \"gpus\": " << cc.cluster.gpu_count
        << ", \"gpu\": " << json_string(cc.cluster.gpu.name)
        << ", \"tokens_per_gpu\": " << cc.tokens_per_gpu << ", \"plans\": [";
    for (size_t i = 0; i < cc.plans.size(); ++i) {
      const PlanOutcome& p = cc.plans[i];
      const MemoryPerGpu& m = p.memory;
      out << (i ? ", " : "") << "{\"rank\": " << i + 1 << ", \"tp\": " << p.plan.tp
          << ", \"ep\": " << p.plan.ep << ", \"dp\": " << p.plan.dp << ", \"pp\": " << p.plan.pp
          << ", \"step_p50_us\": " << num(p.step_p50_us)
          << ", \"step_p99_us\": " << num(p.step_p99_us)
          << ", \"alltoall_us\": " << num(p.alltoall_us)
          << ", \"tp_collective_us\": " << num(p.tp_collective_us)
          << ", \"compute_us\": " << num(p.compute_us) << ", \"other_us\": " << num(p.other_us)
          << ", \"idle_us\": " << num(p.idle_us)
          << ", \"expert_max_over_mean\": " << num(p.result.expert_max_over_mean)
          << ", \"dropped_token_fraction\": " << num(p.result.dropped_token_fraction)
          << ", \"tokens_per_s_per_gpu\": " << num(p.result.tokens_per_s_per_gpu)
          << ", \"memory_bytes\": {\"weights\": " << m.weights.count()
          << ", \"gradients\": " << m.gradients.count()
          << ", \"optimizer_state\": " << m.optimizer_state.count()
          << ", \"activations\": " << m.activations.count()
          << ", \"kv_cache\": " << m.kv_cache.count() << ", \"total\": " << m.total().count()
          << ", \"capacity\": " << m.capacity.count()
          << ", \"fits\": " << (m.fits() ? "true" : "false") << "}}";
    }
    out << "]}";
  }
  out << "], \"models\": [";
  bool first = true;
  for (const ClusterComparison& cc : comparisons) {
    if (cc.plans.empty()) continue;
    const ModelOutcome o = model_outcome(cc, scenario.workload.kind, gpu_hour_usd);
    const ModelSpec& m = cc.model;
    out << (first ? "" : ", ") << "{\"model\": " << json_string(m.name)
        << ", \"cluster\": " << json_string(cc.label)
        << ", \"dense\": " << (m.is_dense() ? "true" : "false")
        << ", \"total_params\": " << m.total_params()
        << ", \"active_params\": " << m.active_params()
        << ", \"gflop_per_token\": " << num(o.gflop_per_token)
        << ", \"weights_bytes\": " << o.weights.count()
        << ", \"best_plan\": {\"tp\": " << o.best->plan.tp << ", \"ep\": " << o.best->plan.ep
        << ", \"dp\": " << o.best->plan.dp << ", \"pp\": " << o.best->plan.pp
        << "}, \"fits\": " << (o.fits ? "true" : "false")
        << ", \"tokens_per_s_per_gpu\": " << num(o.best->result.tokens_per_s_per_gpu)
        << ", \"memory_bytes\": " << o.best->memory.total().count()
        << ", \"usd_per_million_tokens\": "
        << (o.usd_per_million_tokens ? num(*o.usd_per_million_tokens) : std::string("null")) << "}";
    first = false;
  }
  out << "]";
  if (gpu_hour_usd) out << ", \"gpu_hour_usd\": " << num(*gpu_hour_usd);
  out << ", \"verdict\": " << json_string(compare_verdict(comparisons));
  if (several_models(comparisons)) {
    out << ", \"model_verdict\": "
        << json_string(model_verdict(comparisons, scenario.workload.kind, gpu_hour_usd));
  }
  out << "}\n";
}

void write_compare_csv(std::ostream& out, std::span<const ClusterComparison> comparisons,
                       std::optional<double> gpu_hour_usd) {
  out << "model,cluster,gpus,gpu,rank,tp,ep,dp,pp,step_p50_us,step_p99_us,alltoall_us,"
         "tp_collective_us,compute_us,other_us,idle_us,expert_max_over_mean,"
         "dropped_token_fraction,tokens_per_s_per_gpu,weights_bytes,gradients_bytes,"
         "optimizer_bytes,activations_bytes,kv_cache_bytes,total_bytes,hbm_bytes,fits,"
         "usd_per_million_tokens\n";
  for (const ClusterComparison& cc : comparisons) {
    int rank = 0;
    for (const PlanOutcome& p : cc.plans) {
      const MemoryPerGpu& m = p.memory;
      out << cc.model.name << "," << cc.label << "," << cc.cluster.gpu_count << ","
          << cc.cluster.gpu.name << "," << ++rank << "," << p.plan.tp << "," << p.plan.ep << ","
          << p.plan.dp << "," << p.plan.pp << "," << format_double(p.step_p50_us) << ","
          << format_double(p.step_p99_us) << "," << format_double(p.alltoall_us) << ","
          << format_double(p.tp_collective_us) << "," << format_double(p.compute_us) << ","
          << format_double(p.other_us) << "," << format_double(p.idle_us) << ","
          << format_double(p.result.expert_max_over_mean) << ","
          << format_double(p.result.dropped_token_fraction) << ","
          << format_double(p.result.tokens_per_s_per_gpu) << "," << m.weights.count() << ","
          << m.gradients.count() << "," << m.optimizer_state.count() << "," << m.activations.count()
          << "," << m.kv_cache.count() << "," << m.total().count() << "," << m.capacity.count()
          << "," << (m.fits() ? 1 : 0) << ","
          << (gpu_hour_usd ? format_double(usd_per_million_tokens(*gpu_hour_usd,
                                                                  p.result.tokens_per_s_per_gpu))
                           : std::string())
          << "\n";
    }
  }
}

}  // namespace moesim
