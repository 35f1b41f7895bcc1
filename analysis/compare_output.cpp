#include "analysis/compare_output.h"

#include <cstdio>
#include <iomanip>
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

}  // namespace

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
  auto name = [&](const Ref& r) {
    return (comparisons.size() > 1 ? r.cluster->label + " " : std::string()) +
           plan_label(r.plan->plan);
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

void print_compare_table(std::ostream& out, const Scenario& scenario,
                         std::span<const ClusterComparison> comparisons) {
  out << "moesim compare: " << scenario.name << " (" << scenario.model.name << ", "
      << workload_kind_name(scenario.workload.kind) << ")\n";
  const std::vector<std::string> head = {"#",          "cluster",  "plan",    "p50 ms",
                                         "p99 ms",     "a2a ms",   "TP ms",   "compute ms",
                                         "grad/pp ms", "idle ms",  "mem GiB", "w/g/opt/act/kv GiB",
                                         "fits",       "tok/s/GPU"};
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
    }
  }
  std::vector<size_t> width(head.size());
  for (size_t i = 0; i < head.size(); ++i) width[i] = head[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t i = 0; i < r.size(); ++i) {
      const bool left = i == 1 || i == 2 || i == 11 || i == 12;
      out << (i ? "  " : "") << (left ? std::left : std::right) << std::setw(int(width[i])) << r[i];
    }
    out << std::right << "\n";
  };
  line(head);
  for (const auto& r : rows) line(r);
  out << "Times are per step, per GPU averaged over GPUs (a2a: dispatch + combine; idle: waiting "
         "for slower peers). Memory: the fullest GPU.\n";
  out << compare_verdict(comparisons) << "\n";
}

void write_compare_json(std::ostream& out, const Scenario& scenario,
                        std::span<const ClusterComparison> comparisons) {
  auto num = [](double v) { return std::isfinite(v) ? format_double(v) : std::string("null"); };
  out << "{\"scenario\": " << json_string(scenario.name) << ", \"clusters\": [";
  for (size_t c = 0; c < comparisons.size(); ++c) {
    const ClusterComparison& cc = comparisons[c];
    out << (c ? ", " : "") << "{\"cluster\": " << json_string(cc.label)
        << ", \"gpus\": " << cc.cluster.gpu_count
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
  out << "], \"verdict\": " << json_string(compare_verdict(comparisons)) << "}\n";
}

void write_compare_csv(std::ostream& out, std::span<const ClusterComparison> comparisons) {
  out << "cluster,gpus,gpu,rank,tp,ep,dp,pp,step_p50_us,step_p99_us,alltoall_us,"
         "tp_collective_us,compute_us,other_us,idle_us,expert_max_over_mean,"
         "dropped_token_fraction,tokens_per_s_per_gpu,weights_bytes,gradients_bytes,"
         "optimizer_bytes,activations_bytes,kv_cache_bytes,total_bytes,hbm_bytes,fits\n";
  for (const ClusterComparison& cc : comparisons) {
    int rank = 0;
    for (const PlanOutcome& p : cc.plans) {
      const MemoryPerGpu& m = p.memory;
      out << cc.label << "," << cc.cluster.gpu_count << "," << cc.cluster.gpu.name << "," << ++rank
          << "," << p.plan.tp << "," << p.plan.ep << "," << p.plan.dp << "," << p.plan.pp << ","
          << format_double(p.step_p50_us) << "," << format_double(p.step_p99_us) << ","
          << format_double(p.alltoall_us) << "," << format_double(p.tp_collective_us) << ","
          << format_double(p.compute_us) << "," << format_double(p.other_us) << ","
          << format_double(p.idle_us) << "," << format_double(p.result.expert_max_over_mean) << ","
          << format_double(p.result.dropped_token_fraction) << ","
          << format_double(p.result.tokens_per_s_per_gpu) << "," << m.weights.count() << ","
          << m.gradients.count() << "," << m.optimizer_state.count() << "," << m.activations.count()
          << "," << m.kv_cache.count() << "," << m.total().count() << "," << m.capacity.count()
          << "," << (m.fits() ? 1 : 0) << "\n";
    }
  }
}

}  // namespace moesim
