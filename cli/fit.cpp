// `moesim fit TRACE --out FILE`: fits the synthetic token model to a routing trace or log and
// writes the router block a scenario takes, with the fitted statistics beside the trace's.
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/options.h"
#include "models/router/token_model_fit.h"
#include "models/trace/trace_sample.h"

namespace moesim::cli {
namespace {

namespace po = boost::program_options;

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string signed_percent(double fraction) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%+.1f%%", 100.0 * fraction);
  return buf;
}

// Mean of the load curve's first n entries: the n hottest experts' load over the mean.
double top_mean(const RoutingStatistics& s, size_t n) {
  n = std::min(n, s.load_curve.size());
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += s.load_curve[i];
  return n ? sum / static_cast<double>(n) : 0.0;
}

// One table: each statistic of the trace (or held-out part), the synthetic routing and the
// difference.
void print_comparison(std::ostream& out, const std::string& title, const RoutingStatistics& real,
                      const RoutingStatistics& model) {
  const StatisticsError e = statistics_error(model, real);
  out << title << " (" << real.tokens_per_batch << " tokens per batch; trace " << real.batches
      << " batch-layers, synthetic " << model.batches << ")\n";
  out << "  statistic                       trace   synthetic   difference\n";
  const auto row = [&out](const std::string& name, double r, double m, const std::string& diff) {
    std::string padded = name;
    padded.resize(28, ' ');
    out << "  " << padded << std::string(8 - std::min<size_t>(8, fixed(r, 3).size()), ' ')
        << fixed(r, 3) << std::string(12 - std::min<size_t>(12, fixed(m, 3).size()), ' ')
        << fixed(m, 3) << "   " << diff << "\n";
  };
  row("max/mean, mean over batches", real.max_over_mean.mean, model.max_over_mean.mean,
      signed_percent(e.max_over_mean));
  row("max/mean, stddev", real.max_over_mean.stddev, model.max_over_mean.stddev,
      signed_percent(e.max_over_mean_stddev));
  row("max/mean, p90", real.max_over_mean.p90, model.max_over_mean.p90,
      signed_percent((model.max_over_mean.p90 - real.max_over_mean.p90) / real.max_over_mean.p90));
  const size_t E = real.load_curve.size();
  for (const size_t n : {size_t{2}, E / 8, E / 2}) {
    if (n < 2 || n > E) continue;
    const double r = top_mean(real, n);
    const double m = top_mean(model, n);
    row("hottest " + std::to_string(n) + " experts / mean", r, m, signed_percent((m - r) / r));
  }
  row("load curve, mean |difference|", 0.0, e.load_curve,
      fixed(100.0 * e.load_curve, 1) + "% of the mean load");
  row("co-selection (top-E pair share)", real.pair_top_share, model.pair_top_share,
      signed_percent(e.pair_top_share));
  row("following (shared with prev.)", real.follow_fraction, model.follow_fraction,
      signed_percent(e.follow_fraction));
}

std::string text_literal(const std::string& s) {
  std::string q = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += (c == '\n' ? ' ' : c);
  }
  return q + "\"";
}

}  // namespace

int fit_command(int argc, char** argv) {
  std::string input;
  std::string out_path;
  std::string input_format;
  int32_t experts = 0;
  int32_t tokens_per_batch = 0;
  int64_t skip_identical_runs = 0;
  double hold_out = 0.0;
  uint64_t seed = 1;
  int32_t evaluations = 200;
  po::options_description opts(
      "moesim fit TRACE --out FILE [options]\n\n"
      "Fits the synthetic token model (router clusters, zipf_exponent, spread, isotropic_scale,\n"
      "sequence_correlation, offset_correlation) to TRACE (a moesim trace, or a CSV, JSON Lines\n"
      "or .npy log as `moesim import` reads) so that synthetic routing reproduces its sorted\n"
      "per-expert load curve, max/mean per batch and its spread, co-selection of expert pairs\n"
      "and how much a token's experts follow its predecessor's. Writes a `router { ... }` block\n"
      "for a scenario and prints the fitted statistics against the trace's");
  opts.add_options()("help,h", "show this help")(
      "out", po::value(&out_path), "the file to write the router block to (required)")(
      "input-format", po::value(&input_format),
      "trace, csv, jsonl or npy (default: from the extension; others are traces)")(
      "experts", po::value(&experts)->default_value(0),
      "routed experts of a log (0: the log's own, else max id + 1)")(
      "tokens-per-batch", po::value(&tokens_per_batch)->default_value(0),
      "batch the statistics are taken at (0: the trace's own, when it has two or more)")(
      "skip-identical-runs", po::value(&skip_identical_runs)->default_value(0),
      "leave out runs of at least this many consecutive tokens routed identically (a server's "
      "start-up profiling batch); 0: keep all")(
      "hold-out", po::value(&hold_out)->default_value(0.0),
      "fraction of the tokens, at the end, kept out of the fit and compared at 1x, 4x and 16x "
      "the batch")("seed", po::value(&seed)->default_value(1), "seed of the synthetic draws")(
      "evaluations", po::value(&evaluations)->default_value(200),
      "synthetic routings tried per (cluster count, offset rank): (4, 16, 64) x (2, 16)");
  po::options_description hidden;
  hidden.add_options()("input", po::value(&input));
  po::positional_options_description positional;
  positional.add("input", 1);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, hidden, positional, vm)) return 0;
  if (input.empty()) throw std::invalid_argument("usage: moesim fit TRACE --out FILE");
  if (out_path.empty()) throw std::invalid_argument("--out FILE is required");
  if (experts < 0 || tokens_per_batch < 0 || skip_identical_runs < 0) {
    throw std::invalid_argument(
        "--experts, --tokens-per-batch and --skip-identical-runs must be "
        ">= 0");
  }
  if (!(hold_out >= 0.0 && hold_out < 1.0)) {
    throw std::invalid_argument("--hold-out must be in [0, 1)");
  }
  if (evaluations < 7) throw std::invalid_argument("--evaluations must be at least 7");

  std::vector<std::string> warnings;
  const TraceSample loaded =
      load_trace_sample(input, routing_log_format(input, input_format), experts, warnings);
  for (const std::string& w : warnings) std::cerr << "moesim fit: warning: " << w << "\n";
  RoutingSample sample = loaded.sample;
  if (sample.top_k > 64) {
    throw std::invalid_argument(input + ": top-" + std::to_string(sample.top_k) +
                                "; the router model takes at most top-64");
  }
  const int64_t probe = skip_identical_runs > 0 ? skip_identical_runs : 256;
  const std::vector<IdenticalRun> runs = identical_runs(sample, probe);
  if (skip_identical_runs > 0) {
    for (const IdenticalRun& r : runs) {
      std::cerr << "moesim fit: note: left out tokens " << r.first_token << " to "
                << r.first_token + r.tokens - 1 << " (" << r.tokens
                << " consecutive identical routings)\n";
    }
    sample = without_runs(sample, runs);
  } else if (!runs.empty()) {
    std::cerr << "moesim fit: warning: " << runs.size() << " run(s) of " << probe
              << " or more consecutive identical routings, the first at token "
              << runs[0].first_token << " (" << runs[0].tokens
              << " tokens): a server's start-up profiling batch? --skip-identical-runs " << probe
              << " leaves them out\n";
  }
  if (tokens_per_batch == 0) {
    if (loaded.trace_batches < 2 || loaded.header.tokens_per_batch <= 0) {
      throw std::invalid_argument(input +
                                  ": the trace is one batch (or batches of varying "
                                  "size); give --tokens-per-batch");
    }
    tokens_per_batch = loaded.header.tokens_per_batch;
  }
  const auto held =
      static_cast<int64_t>(std::floor(hold_out * static_cast<double>(sample.tokens())));
  const int64_t fit_tokens = sample.tokens() - held;
  const RoutingSample fit_part = sample.slice(0, fit_tokens);

  TokenModelFitOptions options;
  options.tokens_per_batch = tokens_per_batch;
  options.seed = seed;
  options.evaluations_per_count = evaluations;
  const TokenModelFit fit = fit_token_model(fit_part, options);
  const TokenModel& m = fit.model;

  std::string fitted_to = input + ": " + std::to_string(fit_tokens) + " tokens";
  if (held > 0) fitted_to += " (the first " + fixed(100.0 * (1.0 - hold_out), 0) + "%)";
  fitted_to += " in batches of " + std::to_string(tokens_per_batch) + ", " +
               std::to_string(sample.layers()) + " MoE layer(s), top-" +
               std::to_string(sample.top_k) + " of " + std::to_string(sample.experts) +
               " experts; fit loss " + fixed(fit.loss, 4);
  std::ofstream out(out_path);
  if (!out) throw std::runtime_error("cannot write " + out_path);
  out << "# Token model fitted by `moesim fit` to " << input << ".\n"
      << "# Scenario files have no include: paste this block into a scenario (in place of its\n"
      << "# router block, or merge the fields into it). Keep the model's expert count and top-k\n"
      << "# (" << sample.experts << ", top-" << sample.top_k
      << ") for the fitted statistics to hold; the gate is random (no gate_weights_file).\n"
      << "router {\n"
      << "  clusters: " << m.clusters << "\n"
      << "  zipf_exponent: " << fixed(m.popularity_exponent, 4) << "\n"
      << "  centre_scale: " << fixed(m.centre_scale, 4) << "\n"
      << "  common_centre_scale: " << fixed(m.common_scale, 4) << "\n"
      << "  spread: " << fixed(m.offset_scale, 4) << "\n"
      << "  rank: " << m.offset_rank << "\n"
      << "  isotropic_scale: " << fixed(m.isotropic_scale, 4) << "\n"
      << "  sequence_correlation: " << fixed(m.stay_probability, 4) << "\n"
      << "  offset_correlation: " << fixed(m.offset_correlation, 4) << "\n"
      << "  token_model_fitted_to: " << text_literal(fitted_to) << "\n"
      << "}\n";
  if (!out) throw std::runtime_error("cannot write " + out_path);

  std::cout << "fitted " << input << " (" << fit_tokens << " tokens, " << sample.layers()
            << " MoE layer(s), top-" << sample.top_k << " of " << sample.experts << " experts) in "
            << fit.evaluations << " synthetic routings: clusters " << m.clusters
            << ", zipf_exponent " << fixed(m.popularity_exponent, 3) << ", spread "
            << fixed(m.offset_scale, 3) << ", isotropic_scale " << fixed(m.isotropic_scale, 3)
            << ", sequence_correlation " << fixed(m.stay_probability, 3) << ", offset_correlation "
            << fixed(m.offset_correlation, 3) << ", common_centre_scale "
            << fixed(m.common_scale, 3) << "; wrote " << out_path << "\n\n";
  print_comparison(std::cout, "fitted part", fit.trace, fit.fitted);
  for (size_t i = 0; i < fit.trace_larger.size(); ++i) {
    std::cout << "\n";
    print_comparison(std::cout,
                     "fitted part at " +
                         std::to_string(fit.trace_larger[i].tokens_per_batch / tokens_per_batch) +
                         "x the batch",
                     fit.trace_larger[i], fit.fitted_larger[i]);
  }
  if (held > 0) {
    const RoutingSample held_part = sample.slice(fit_tokens, sample.tokens());
    // A fresh seed: the held-out comparison must not rest on the draws the fit tuned to.
    for (const int32_t scale : {1, 4, 16}) {
      const int32_t batch = tokens_per_batch * scale;
      if (held_part.tokens() < batch) {
        std::cout << "\nheld-out part at " << scale << "x: " << held_part.tokens()
                  << " tokens hold no batch of " << batch << "\n";
        continue;
      }
      const RoutingStatistics real = routing_statistics(held_part, batch);
      const int64_t batches = std::max<int64_t>(32, held_part.tokens() / batch);
      const RoutingSample synthetic = synthesize_routing(m, sample.experts, sample.top_k,
                                                         sample.layers(), batch, batches, seed + 1);
      std::cout << "\n";
      print_comparison(std::cout, "held-out part at " + std::to_string(scale) + "x the batch", real,
                       routing_statistics(synthetic, batch));
    }
  }
  return 0;
}

}  // namespace moesim::cli
