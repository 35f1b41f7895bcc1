#include "analysis/html_report.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "analysis/exchange_output.h"
#include "analysis/text_format.h"
#include "core/statistics.h"
#include "sim/executor.h"

namespace moesim {
namespace {

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// One colour per phase, Okabe-Ito; the two that repeat a hue are hatched.
struct PhaseStyle {
  const char* color;
  bool patterned;
};
constexpr PhaseStyle kPhaseStyles[kPhaseCount] = {
    {"#0072B2", false},  // attention
    {"#56B4E9", false},  // dense_ffn
    {"#CC79A7", false},  // tp_collective
    {"#E69F00", false},  // dispatch
    {"#009E73", false},  // expert_compute
    {"#D55E00", false},  // combine
    {"#F0E442", false},  // pipeline
    {"#000000", false},  // gradient_sync
    {"#56B4E9", true},   // optimizer
    {"#999999", false},  // idle
};

// The inline style and the broken-image check: after load, every <img> that failed is marked
// and counted on <body> (data-images-checked, data-broken-images), for a headless browser test.
constexpr const char* kStyle = R"(<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.note { background: #fff8e1; border-left: 4px solid #E69F00; padding: 0.4em 0.8em; }
.broken { color: #D55E00; font-weight: bold; }
code { background: #f4f4f4; padding: 0 0.2em; }
</style>
)";
constexpr const char* kImageCheck = R"(<script>
window.addEventListener('load', function () {
  var images = document.querySelectorAll('img');
  var broken = 0;
  images.forEach(function (img) {
    if (img.complete && img.naturalWidth === 0) {
      broken++;
      img.setAttribute('data-broken', 'true');
      var p = document.createElement('p');
      p.className = 'broken';
      p.textContent = 'figure failed to load: ' + img.getAttribute('src');
      img.insertAdjacentElement('afterend', p);
    }
  });
  document.body.setAttribute('data-images-checked', String(images.length));
  document.body.setAttribute('data-broken-images', String(broken));
});
</script>
)";

bool parse_double(const std::string& text, double& value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return ec == std::errc() && ptr == end && std::isfinite(value);
}

// A CSV cell as the page shows it: numbers to a readable precision (the CSV keeps them all).
std::string display(const std::string& cell) {
  double v = 0.0;
  if (!parse_double(cell, v) || v == std::floor(v)) return cell;
  char buf[64];
  if (std::abs(v) >= 1000.0) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (std::abs(v) >= 1.0) {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  }
  return buf;
}

// Builds index.html while rendering figures into the report folder.
class Page {
 public:
  Page(const std::filesystem::path& dir, std::string title, const ReportOptions& options)
      : dir_(dir), title_(std::move(title)), options_(options) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec || !std::filesystem::is_directory(dir_)) {
      throw ReportError("cannot create report folder " + dir_.string() + ": " + ec.message());
    }
  }

  std::ostringstream& html() { return body_; }

  void section(const std::string& heading) { body_ << "<h2>" << html_escape(heading) << "</h2>\n"; }
  void note(const std::string& text) {
    body_ << "<p class=\"note\">" << html_escape(text) << "</p>\n";
  }

  void figure(const Figure& figure) {
    const std::string warnings = render_figure(dir_, figure, options_.gnuplot);
    if (!warnings.empty()) output_.warnings.push_back(figure.stem + ": " + warnings);
    const std::string svg = figure.stem + ".svg";
    output_.figures.push_back(svg);
    body_ << "<figure id=\"" << html_escape(figure.stem) << "\">\n<img src=\"" << html_escape(svg)
          << "\" alt=\"" << html_escape(figure.title) << "\">\n<figcaption>"
          << html_escape(figure.caption) << " Data:";
    for (const auto& [name, table] : figure.data) {
      output_.csv_files.push_back(name);
      body_ << " <a href=\"" << html_escape(name) << "\">" << html_escape(name) << "</a>";
    }
    body_ << "; script: <a href=\"" << html_escape(figure.stem) << ".gp\">"
          << html_escape(figure.stem) << ".gp</a>.</figcaption>\n</figure>\n";
  }

  // A table shown on the page and written as CSV beside it.
  void table(const std::string& csv_name, const CsvTable& table,
             const std::vector<std::string>& display_header) {
    write_csv(dir_ / csv_name, table);
    output_.csv_files.push_back(csv_name);
    body_ << "<table>\n<tr>";
    for (const std::string& h : display_header) body_ << "<th>" << html_escape(h) << "</th>";
    body_ << "</tr>\n";
    for (const auto& row : table.rows) {
      body_ << "<tr>";
      for (const std::string& cell : row) body_ << "<td>" << html_escape(display(cell)) << "</td>";
      body_ << "</tr>\n";
    }
    body_ << "</table>\n<p>Data: <a href=\"" << html_escape(csv_name) << "\">"
          << html_escape(csv_name) << "</a></p>\n";
  }

  ReportOutput finish() {
    const std::filesystem::path index = dir_ / "index.html";
    std::ofstream out(index, std::ios::binary);
    out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        << "<title>" << html_escape(title_) << "</title>\n"
        << kStyle << kImageCheck << "</head>\n<body>\n<h1>" << html_escape(title_) << "</h1>\n"
        << body_.str()
        << "<h2>Re-rendering</h2>\n<p>Every figure is drawn by gnuplot from the CSV beside it; "
           "to redraw after editing a script: <code>cd "
        << html_escape(dir_.string())
        << " &amp;&amp; for f in *.gp; do gnuplot \"$f\"; done</code>.</p>\n"
        << "</body>\n</html>\n";
    out.close();
    if (!out) throw ReportError("cannot write " + index.string());
    output_.index_html = index;
    return output_;
  }

 private:
  std::filesystem::path dir_;
  std::string title_;
  ReportOptions options_;
  std::ostringstream body_;
  ReportOutput output_;
};

std::vector<double> mean_phase_us(const SimulationResult& r) {
  std::vector<double> mean(kPhaseCount, 0.0);
  for (const auto& g : r.gpu_phase_us) {
    for (int p = 0; p < kPhaseCount; ++p) mean[p] += g[p];
  }
  for (double& v : mean) v /= static_cast<double>(std::max<size_t>(1, r.gpu_phase_us.size()));
  return mean;
}

std::vector<std::string> phase_columns(const std::string& first) {
  std::vector<std::string> header = {first};
  for (int p = 0; p < kPhaseCount; ++p) {
    header.push_back(std::string(phase_name(static_cast<Phase>(p))) + "_us");
  }
  return header;
}

// Stacked series for the phases with time somewhere in the table (columns 1..kPhaseCount).
std::vector<BarSeries> phase_series(const CsvTable& table) {
  std::vector<BarSeries> series;
  for (int p = 0; p < kPhaseCount; ++p) {
    const size_t column = static_cast<size_t>(p) + 1;
    const bool used = std::any_of(table.rows.begin(), table.rows.end(), [&](const auto& row) {
      return std::strtod(row[column].c_str(), nullptr) > 0.0;
    });
    if (!used) continue;
    series.push_back(BarSeries{column, phase_name(static_cast<Phase>(p)), kPhaseStyles[p].color,
                               kPhaseStyles[p].patterned});
  }
  return series;
}

// Per GPU and communication phase (idle included), the time exposed and the time hidden behind
// the GPU's computation: columns gpu, then <phase>_exposed_us and <phase>_hidden_us per phase;
// the last row is the mean over GPUs. A result without hidden times has everything exposed.
CsvTable communication_table(const SimulationResult& r, std::vector<BarSeries>& series) {
  std::vector<int> phases;
  CsvTable table{{"gpu"}, {}};
  for (int p = 0; p < kPhaseCount; ++p) {
    if (!is_communication_phase(static_cast<Phase>(p))) continue;
    phases.push_back(p);
    table.header.push_back(std::string(phase_name(static_cast<Phase>(p))) + "_exposed_us");
    table.header.push_back(std::string(phase_name(static_cast<Phase>(p))) + "_hidden_us");
  }
  const size_t gpus = r.gpu_phase_us.size();
  std::vector<double> mean(2 * phases.size(), 0.0);
  for (size_t g = 0; g < gpus; ++g) {
    std::vector<std::string> row = {std::to_string(g)};
    for (size_t i = 0; i < phases.size(); ++i) {
      const auto p = static_cast<size_t>(phases[i]);
      const double hidden = g < r.gpu_hidden_us.size() ? r.gpu_hidden_us[g][p] : 0.0;
      const double exposed = std::max(0.0, r.gpu_phase_us[g][p] - hidden);
      mean[2 * i] += exposed / static_cast<double>(gpus);
      mean[2 * i + 1] += hidden / static_cast<double>(gpus);
      row.push_back(csv_number(exposed));
      row.push_back(csv_number(hidden));
    }
    table.rows.push_back(std::move(row));
  }
  std::vector<std::string> mean_row = {"mean"};
  for (double v : mean) mean_row.push_back(csv_number(v));
  table.rows.push_back(std::move(mean_row));
  // Exposed in the phase's colour, hidden hatched in it; only series with time somewhere.
  for (size_t column = 1; column < table.header.size(); ++column) {
    const bool used = std::any_of(table.rows.begin(), table.rows.end(), [&](const auto& row) {
      return std::strtod(row[column].c_str(), nullptr) > 0.0;
    });
    if (!used) continue;
    const int p = phases[(column - 1) / 2];
    const bool hidden = (column - 1) % 2 == 1;
    series.push_back(BarSeries{
        column,
        std::string(phase_name(static_cast<Phase>(p))) + (hidden ? " (hidden)" : " (exposed)"),
        kPhaseStyles[p].color, hidden});
  }
  return table;
}

// The unit for a phase chart: by its tallest stacked bar (microseconds).
TimeUnit phase_unit(const CsvTable& table) {
  double tallest = 0.0;
  for (const auto& row : table.rows) {
    double sum = 0.0;
    for (size_t c = 1; c < row.size(); ++c) sum += std::strtod(row[c].c_str(), nullptr);
    tallest = std::max(tallest, sum);
  }
  return time_unit_for(tallest);
}

struct Quantity {
  const char* name;  // CSV and file name
  const char* label;
  const std::vector<double>* samples;
};

void summary_row(CsvTable& table, const Quantity& q) {
  if (q.samples->empty()) {
    table.rows.push_back({q.name, "0", "", "", "", "", "", ""});
    return;
  }
  const Summary s = SampleSet(*q.samples).summary();
  table.rows.push_back({q.name, std::to_string(s.count), csv_number(s.mean), csv_number(s.p50),
                        csv_number(s.p99), csv_number(s.stddev.value_or(0.0)), csv_number(s.min),
                        csv_number(s.max)});
}

// "step_time_p99_us" -> "step time p99 (us)"; "tokens_per_s_per_gpu" -> "tokens per s per gpu".
std::string metric_label(const std::string& name) {
  std::string base = name;
  std::string unit;
  for (const char* suffix : {"_us", "_fraction", "_bytes", "_gbps"}) {
    const std::string s = suffix;
    if (base.size() > s.size() && base.compare(base.size() - s.size(), s.size(), s) == 0) {
      base.resize(base.size() - s.size());
      unit = s.substr(1);
      if (unit == "fraction") base += " fraction";
      break;
    }
  }
  std::replace(base.begin(), base.end(), '_', ' ');
  if (unit == "us" || unit == "bytes" || unit == "gbps") base += " (" + unit + ")";
  if (unit == "fraction") base += " (0 to 1)";
  if (name.find("max_over_mean") != std::string::npos) base += " (ratio)";
  if (name.find("per_s") != std::string::npos) base += " (tokens/s)";
  return base;
}

// A load ratio per exchange (mean, p50, p99, max), then the ratio of the totals.
std::string load_summary(const std::vector<double>& per_exchange, const char* summed_name,
                         double summed) {
  std::string out = "-";
  if (!per_exchange.empty()) {
    const SampleSet s(per_exchange);
    out = fixed(s.mean(), 3) + " per exchange (p50 " + fixed(s.p50(), 3) + ", p99 " +
          fixed(s.p99(), 3) + ", max " + fixed(s.max(), 3) + ")";
  }
  return out + "; " + summed_name + " " + fixed(summed, 3);
}

std::string file_safe(const std::string& text) {
  std::string out;
  for (char c : text) {
    out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  }
  return out;
}

// Straggler attribution (analysis/exchange_output.h): exchange time against imbalance, coloured
// by the all-to-all's share of it, and the slowest exchanges.
void write_straggler_section(Page& page, std::span<const ExchangeRecord> exchanges) {
  page.section("Stragglers");
  if (exchanges.empty()) {
    page.note("No all-to-all exchange in this plan: no straggler to attribute.");
    return;
  }
  auto row_of = [](const ExchangeRecord& e) {
    std::vector<std::string> row;
    for (size_t f = 0; f < kExchangeFieldCount; ++f) {
      row.push_back(csv_number(exchange_field(e, static_cast<ExchangeField>(f))));
    }
    return row;
  };
  CsvTable all{{}, {}};
  for (const ExchangeFieldName& f : kExchangeFields) all.header.emplace_back(f.key);
  all.header.emplace_back("alltoall_fraction");
  double longest_us = 0.0;
  for (const ExchangeRecord& e : exchanges) {
    std::vector<std::string> row = row_of(e);
    const double time_us = exchange_field(e, ExchangeField::kTimeUs);
    const double alltoall_us = exchange_field(e, ExchangeField::kAllToAllUs);
    row.push_back(csv_number(time_us > 0 ? alltoall_us / time_us : 0.0));
    all.rows.push_back(std::move(row));
    longest_us = std::max(longest_us, time_us);
  }
  page.html() << "<p>Each forward exchange (step, micro-batch, MoE layer, replica) waits for the "
                 "last GPU to reach its combine. That GPU computed the most rows of its replica "
                 "in "
              << straggler_was_busiest(exchanges) << " of " << exchanges.size()
              << " exchanges.</p>\n";
  const TimeUnit unit = time_unit_for(longest_us);
  page.figure(scatter_figure(ScatterChart{
      "exchange_time_vs_imbalance", "Exchange time against GPU load imbalance",
      "One point per forward exchange: its busiest GPU's expert rows over the mean over the "
      "replica's GPUs (x) against its time from dispatch start to combine end (y), coloured by "
      "the share of that time in the dispatch and combine all-to-alls. Slow exchanges with a "
      "low share were slowed by overload, slow ones with a high share by the network.",
      all, static_cast<size_t>(ExchangeField::kGpuMaxOverMean),
      static_cast<size_t>(ExchangeField::kTimeUs), kExchangeFieldCount, unit.scale,
      "GPU load max/mean (ratio)", std::string("exchange time (") + unit.name + ")",
      "all-to-all share of the exchange time"}));
  CsvTable slowest{{}, {}};
  std::vector<std::string> labels;
  for (const ExchangeFieldName& f : kExchangeFields) {
    slowest.header.emplace_back(f.key);
    labels.emplace_back(f.label);
  }
  for (size_t i : slowest_exchanges(exchanges, kSlowestExchangesShown)) {
    slowest.rows.push_back(row_of(exchanges[i]));
  }
  auto label = [](ExchangeField f) { return std::string(exchange_field_name(f).label); };
  page.html() << "<p>The slowest exchanges (" << label(ExchangeField::kStragglerGpu)
              << ": the combine's last arrival; " << label(ExchangeField::kStragglerExpert)
              << ": its local expert with the most rows).</p>\n";
  page.table("slowest_exchanges.csv", slowest, labels);
}

}  // namespace

ReportOutput write_run_report(const std::filesystem::path& dir, const Scenario& scenario,
                              const SimulationResult& r, const ReportOptions& options) {
  Page page(dir, "moesim run: " + scenario.name, options);
  auto& html = page.html();
  const std::string steps =
      std::to_string(r.measured_steps) + " measured step" + (r.measured_steps == 1 ? "" : "s");
  html << "<p>" << html_escape(scenario.description) << "</p>\n<p>Model "
       << html_escape(scenario.model.name) << ", " << workload_kind_name(scenario.workload.kind)
       << ", " << r.gpus << " GPUs (" << html_escape(scenario.cluster.gpu.name) << "), "
       << plan_label(scenario.parallel) << ", " << scenario.workload.tokens_per_gpu
       << " tokens/GPU x " << scenario.workload.micro_batches << " micro-batches, "
       << html_escape(steps) << ", " << to_string(r.dispatch_algorithm) << " all-to-all.</p>\n";

  // Summary table.
  const Quantity quantities[] = {{"step", "step", &r.step_time_us},
                                 {"dispatch", "dispatch (forward)", &r.dispatch_us},
                                 {"combine", "combine (forward)", &r.combine_us},
                                 {"expert_compute", "expert compute", &r.expert_compute_us},
                                 {"attention", "attention", &r.attention_us}};
  page.section("Summary");
  CsvTable summary{
      {"quantity", "count", "mean_us", "p50_us", "p99_us", "stddev_us", "min_us", "max_us"}, {}};
  for (const Quantity& q : quantities) summary_row(summary, q);
  page.table("latency_summary.csv", summary,
             {"quantity", "samples", "mean (us)", "p50 (us)", "p99 (us)", "stddev (us)", "min (us)",
              "max (us)"});
  html << "<table>\n"
       << "<tr><td>idle fraction</td><td>" << fixed(r.idle_fraction, 3) << "</td></tr>\n"
       << "<tr><td>dropped token fraction</td><td>" << fixed(r.dropped_token_fraction, 4) << " ("
       << r.dropped_pairs << " of " << r.routed_pairs << " token-expert pairs)</td></tr>\n"
       << "<tr><td>expert load max/mean</td><td>"
       << load_summary(r.exchange_expert_max_over_mean, "summed over layers",
                       r.expert_summed_over_layers_max_over_mean)
       << "</td></tr>\n"
       << "<tr><td>GPU load max/mean</td><td>"
       << load_summary(r.exchange_gpu_max_over_mean, "summed over the step",
                       r.gpu_summed_over_step_max_over_mean)
       << "</td></tr>\n"
       << "<tr><td>all-to-all per GPU</td><td>" << fixed(r.alltoall_gbps_per_gpu, 1)
       << " GB/s (NVLink " << fixed(r.alltoall_nvlink_gbps_per_gpu, 1) << ", network "
       << fixed(r.alltoall_network_gbps_per_gpu, 1) << ")</td></tr>\n"
       << "<tr><td>throughput</td><td>" << fixed(r.tokens_per_s_per_gpu, 0)
       << " tokens/s per GPU</td></tr>\n</table>\n";

  // Where the time goes.
  page.section("Where the step's time goes");
  if (r.gpu_phase_us.empty()) {
    page.note("No per-GPU phase times in this result.");
  } else {
    CsvTable phases{phase_columns("gpu"), {}};
    for (size_t g = 0; g < r.gpu_phase_us.size(); ++g) {
      std::vector<std::string> row = {std::to_string(g)};
      for (double v : r.gpu_phase_us[g]) row.push_back(csv_number(v));
      phases.rows.push_back(std::move(row));
    }
    std::vector<std::string> mean_row = {"mean"};
    for (double v : mean_phase_us(r)) mean_row.push_back(csv_number(v));
    phases.rows.push_back(std::move(mean_row));
    std::vector<BarSeries> series = phase_series(phases);
    if (series.empty()) {
      page.note("Every phase time is zero.");
    } else {
      const TimeUnit unit = phase_unit(phases);
      page.figure(bar_figure(BarChart{
          "phase_time_by_gpu", "Time per step by phase, per GPU",
          "Each GPU's time per step (mean over " + steps +
              ") split by phase; idle is waiting for peers at a collective. The last bar is the "
              "mean over GPUs. The CSV is in microseconds.",
          phases, series, true, "GPU", std::string("time per step (") + unit.name + ")",
          unit.scale}));
    }
    std::vector<BarSeries> comm_series;
    const CsvTable comm = communication_table(r, comm_series);
    if (!comm_series.empty()) {
      const TimeUnit unit = phase_unit(comm);
      page.figure(bar_figure(BarChart{
          "communication_by_gpu", "Communication per GPU: exposed and hidden",
          "Each GPU's communication and idle time per step (mean over " + steps +
              "), split into the part hidden behind the GPU's computation (hatched: a kernel "
              "ran on its compute stream meanwhile) and the part exposed, which lengthens the "
              "step. The last bar is the mean over GPUs. The CSV is in microseconds.",
          comm, comm_series, true, "GPU", std::string("time per step (") + unit.name + ")",
          unit.scale}));
    }
  }

  // Which experts are hot.
  page.section("Expert load");
  const auto& by_layer = r.tokens_per_expert_by_layer;
  if (by_layer.empty() || by_layer.front().empty()) {
    page.note("No MoE layers: no expert load to show.");
  } else {
    CsvTable cells{{"expert", "moe_layer", "tokens"}, {}};
    CsvTable load{{"moe_layer", "max_tokens", "mean_tokens", "max_over_mean"}, {}};
    for (size_t layer = 0; layer < by_layer.size(); ++layer) {
      const auto& counts = by_layer[layer];
      for (size_t e = 0; e < counts.size(); ++e) {
        cells.rows.push_back({std::to_string(e), std::to_string(layer), std::to_string(counts[e])});
      }
      const double total =
          static_cast<double>(std::accumulate(counts.begin(), counts.end(), int64_t{0}));
      const double mean = total / static_cast<double>(counts.size());
      const int64_t max = *std::max_element(counts.begin(), counts.end());
      load.rows.push_back({std::to_string(layer), std::to_string(max), csv_number(mean),
                           csv_number(mean > 0 ? static_cast<double>(max) / mean : 0.0)});
    }
    page.figure(heat_map_figure(HeatMap{
        "tokens_per_expert", "Tokens per routed expert and MoE layer",
        "Token-expert pairs kept per routed expert (columns) in each MoE layer (rows), summed "
        "over " +
            steps + ", micro-batches and data-parallel replicas.",
        cells, 1.0, "routed expert", "MoE layer", "tokens over " + steps}));
    page.figure(line_figure(LineChart{
        "expert_load_by_layer",
        "Hottest expert's load over the mean, per MoE layer",
        "Tokens of the busiest expert divided by the mean over experts, per MoE layer (1 is "
        "perfect balance).",
        load,
        false,
        {3},
        "MoE layer",
        "max / mean tokens per expert (ratio)"}));
  }
  if (!r.gpu_tokens.empty()) {
    CsvTable rows{{"gpu", "expert_rows"}, {}};
    for (size_t g = 0; g < r.gpu_tokens.size(); ++g) {
      rows.rows.push_back({std::to_string(g), std::to_string(r.gpu_tokens[g])});
    }
    page.figure(bar_figure(
        BarChart{"expert_rows_by_gpu",
                 "Expert rows computed per GPU",
                 "Token rows each GPU's experts computed in forward MoE layers over " + steps + ".",
                 rows,
                 {BarSeries{1, "expert rows", "#009E73", false}},
                 false,
                 "GPU",
                 "expert rows over " + steps}));
  }

  write_straggler_section(page, r.exchanges);

  // Traffic.
  page.section("Dispatch traffic");
  const size_t gpus = static_cast<size_t>(std::max(0, r.gpus));
  if (r.dispatch_matrix_bytes.empty()) {
    page.note(
        "The dispatch traffic matrix was not kept for this run "
        "(SimulationOptions::keep_traffic_matrix).");
  } else if (r.dispatch_matrix_bytes.size() != gpus * gpus) {
    throw ReportError("dispatch_matrix_bytes has " +
                      std::to_string(r.dispatch_matrix_bytes.size()) + " entries, expected " +
                      std::to_string(gpus * gpus) + " for " + std::to_string(gpus) + " GPUs");
  } else {
    CsvTable matrix{{"dst_gpu", "src_gpu", "bytes"}, {}};
    for (size_t src = 0; src < gpus; ++src) {
      for (size_t dst = 0; dst < gpus; ++dst) {
        matrix.rows.push_back({std::to_string(dst), std::to_string(src),
                               std::to_string(r.dispatch_matrix_bytes[src * gpus + dst])});
      }
    }
    page.figure(heat_map_figure(HeatMap{
        "dispatch_matrix", "Dispatch traffic from GPU to GPU",
        "Bytes each GPU (row) sends to each GPU (column) in forward dispatch, per step (the CSV "
        "holds the sum over " +
            steps + "); combine mirrors it.",
        matrix, 1e6 * std::max(1, r.measured_steps), "destination GPU", "source GPU",
        "MB per step (10^6 bytes)"}));
  }

  // Distributions.
  page.section("Latency distributions");
  for (const Quantity& q : {quantities[0], quantities[1], quantities[2]}) {
    if (q.samples->empty()) {
      page.note(std::string("No ") + q.label + " samples (no all-to-all in this plan).");
      continue;
    }
    const std::string what = q.name == std::string("step") ? "one sample per measured step"
                                                           : "one sample per forward exchange "
                                                             "(micro-batch, MoE layer, replica)";
    const TimeUnit unit = time_unit_for(*std::max_element(q.samples->begin(), q.samples->end()));
    page.figure(distribution_figure(
        Distribution{std::string("latency_") + q.name, std::string(q.label) + " time",
                     "Histogram and empirical CDF of " + std::string(q.label) + " time, " + what +
                         "; dashed lines mark p50 and p99.",
                     std::string(q.label) + " time", "us", unit.scale, unit.name},
        *q.samples));
  }
  return page.finish();
}

SweepReportTable sweep_report_table(std::span<const std::string> axis_names,
                                    std::span<const SweepRow> rows) {
  SweepReportTable table;
  table.axis_names.assign(axis_names.begin(), axis_names.end());
  for (std::string_view name : kSweepMetricNames) table.metric_names.emplace_back(name);
  for (const SweepRow& r : rows) {
    SweepReportRow row{r.axis_values, {}};
    for (size_t m = 0; m < kSweepMetricCount; ++m) {
      row.metrics.push_back(r.metrics[static_cast<SweepMetric>(m)]);
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

ReportOutput write_sweep_report(const std::filesystem::path& dir, const Scenario& scenario,
                                const SweepReportTable& t, const ReportOptions& options) {
  const size_t axes = t.axis_names.size();
  const size_t metrics = t.metric_names.size();
  if (axes == 0) throw ReportError("sweep report: no sweep axes");
  if (metrics == 0) throw ReportError("sweep report: no metrics");
  std::map<std::vector<std::string>, size_t> seen;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const SweepReportRow& row = t.rows[i];
    if (row.axis_values.size() != axes || row.metrics.size() != metrics) {
      throw ReportError("sweep report: row " + std::to_string(i) + " has " +
                        std::to_string(row.axis_values.size()) + " axis values and " +
                        std::to_string(row.metrics.size()) + " metrics, expected " +
                        std::to_string(axes) + " and " + std::to_string(metrics));
    }
    if (!seen.emplace(row.axis_values, i).second) {
      throw ReportError("sweep report: rows " + std::to_string(seen[row.axis_values]) + " and " +
                        std::to_string(i) + " are the same point");
    }
  }
  if (t.rows.empty()) throw ReportError("sweep report: no points");

  Page page(dir, "moesim sweep: " + scenario.name, options);
  auto& html = page.html();
  html << "<p>" << html_escape(scenario.description) << "</p>\n<p>" << t.rows.size()
       << " points over ";
  for (size_t a = 0; a < axes; ++a) html << (a ? ", " : "") << html_escape(t.axis_names[a]);
  html << "; model " << html_escape(scenario.model.name) << ", "
       << workload_kind_name(scenario.workload.kind) << ".</p>\n";

  page.section("Every point");
  CsvTable all{{"point"}, {}};
  for (const auto& a : t.axis_names) all.header.push_back(a);
  for (const auto& m : t.metric_names) all.header.push_back(m);
  for (size_t i = 0; i < t.rows.size(); ++i) {
    std::vector<std::string> row = {std::to_string(i)};
    for (const auto& v : t.rows[i].axis_values) row.push_back(v);
    for (double v : t.rows[i].metrics) row.push_back(csv_number(v));
    all.rows.push_back(std::move(row));
  }
  page.table("sweep.csv", all, all.header);

  for (size_t a = 0; a < axes; ++a) {
    // The axis's values and the other axes' combinations, in order of appearance.
    std::vector<std::string> xs;
    std::vector<std::string> series;
    for (const auto& row : t.rows) {
      const std::string& x = row.axis_values[a];
      if (std::find(xs.begin(), xs.end(), x) == xs.end()) xs.push_back(x);
      std::string key;
      for (size_t b = 0; b < axes; ++b) {
        if (b == a) continue;
        key += (key.empty() ? "" : " ") + t.axis_names[b] + "=" + row.axis_values[b];
      }
      if (std::find(series.begin(), series.end(), key) == series.end()) series.push_back(key);
    }
    std::vector<double> numeric(xs.size());
    bool to_scale = true;
    for (size_t i = 0; i < xs.size() && to_scale; ++i) {
      to_scale = parse_double(xs[i], numeric[i]) && (i == 0 || numeric[i] > numeric[i - 1]);
    }
    page.section("Against " + t.axis_names[a]);
    for (size_t m = 0; m < metrics; ++m) {
      const std::string label = metric_label(t.metric_names[m]);
      CsvTable table{{t.axis_names[a]}, {}};
      for (const std::string& s : series) table.header.push_back(s.empty() ? label : s);
      for (const std::string& x : xs) table.rows.push_back({x});
      for (auto& row : table.rows) row.resize(series.size() + 1);
      for (const auto& row : t.rows) {
        const size_t xi =
            static_cast<size_t>(std::find(xs.begin(), xs.end(), row.axis_values[a]) - xs.begin());
        std::string key;
        for (size_t b = 0; b < axes; ++b) {
          if (b == a) continue;
          key += (key.empty() ? "" : " ") + t.axis_names[b] + "=" + row.axis_values[b];
        }
        const size_t si =
            static_cast<size_t>(std::find(series.begin(), series.end(), key) - series.begin());
        table.rows[xi][si + 1] = csv_number(row.metrics[m]);
      }
      page.figure(line_figure(
          LineChart{"sweep_" + file_safe(t.metric_names[m]) + "_vs_" + file_safe(t.axis_names[a]),
                    label + " against " + t.axis_names[a],
                    label + " at each value of " + t.axis_names[a] +
                        (series.size() > 1 ? ", one line per combination of the other axes." : "."),
                    table,
                    !to_scale,
                    {},
                    t.axis_names[a],
                    label}));
    }
  }
  return page.finish();
}

ReportOutput write_compare_report(const std::filesystem::path& dir, const Scenario& scenario,
                                  std::span<const ComparePlanEntry> plans,
                                  const ReportOptions& options) {
  if (plans.empty()) throw ReportError("compare report: no plans");
  Page page(dir, "moesim compare: " + scenario.name, options);
  auto& html = page.html();
  html << "<p>" << html_escape(scenario.description) << "</p>\n<p>" << plans.size()
       << " plans of model " << html_escape(scenario.model.name) << ", "
       << workload_kind_name(scenario.workload.kind) << ", in the order given.</p>\n";

  const bool several_clusters =
      std::any_of(plans.begin(), plans.end(),
                  [&](const ComparePlanEntry& p) { return p.cluster != plans[0].cluster; });
  auto label = [&](const ComparePlanEntry& p) {
    return several_clusters ? p.cluster + " / " + p.plan : p.plan;
  };

  // The sweep's metrics (sim/sweep.h), named as the sweep CSV names them.
  constexpr SweepMetric kTableMetrics[] = {
      SweepMetric::kStepTimeMeanUs,       SweepMetric::kStepTimeP50Us,
      SweepMetric::kStepTimeP99Us,        SweepMetric::kDispatchMeanUs,
      SweepMetric::kCombineMeanUs,        SweepMetric::kIdleFraction,
      SweepMetric::kDroppedTokenFraction, SweepMetric::kExpertMaxOverMean,
      SweepMetric::kTokensPerSPerGpu};
  auto name = [](SweepMetric m) { return std::string(sweep_metric_name(m)); };
  CsvTable table{{"cluster", "plan"}, {}};
  for (SweepMetric m : kTableMetrics) table.header.push_back(name(m));
  for (const char* c : {"memory_bytes_per_gpu", "hbm_bytes_per_gpu", "fits_hbm"}) {
    table.header.emplace_back(c);
  }
  CsvTable phases{phase_columns("plan"), {}};
  CsvTable step{{"plan", name(SweepMetric::kStepTimeP50Us), name(SweepMetric::kStepTimeP99Us)}, {}};
  CsvTable throughput{{"plan", name(SweepMetric::kTokensPerSPerGpu)}, {}};
  CsvTable memory{{"plan", "memory_gb_per_gpu", "hbm_gb_per_gpu"}, {}};
  bool any_memory = false;
  for (const ComparePlanEntry& p : plans) {
    const SweepMetrics v = sweep_metrics(p.result);
    const std::string fits = p.memory_bytes_per_gpu && p.hbm_bytes_per_gpu
                                 ? (*p.memory_bytes_per_gpu <= *p.hbm_bytes_per_gpu ? "yes" : "no")
                                 : "";
    std::vector<std::string> cells = {p.cluster, p.plan};
    for (SweepMetric m : kTableMetrics) cells.push_back(csv_number(v[m]));
    cells.push_back(p.memory_bytes_per_gpu ? csv_number(*p.memory_bytes_per_gpu) : "");
    cells.push_back(p.hbm_bytes_per_gpu ? csv_number(*p.hbm_bytes_per_gpu) : "");
    cells.push_back(fits);
    table.rows.push_back(std::move(cells));
    std::vector<std::string> row = {label(p)};
    for (double t : mean_phase_us(p.result)) row.push_back(csv_number(t));
    phases.rows.push_back(std::move(row));
    step.rows.push_back({label(p), csv_number(v[SweepMetric::kStepTimeP50Us]),
                         csv_number(v[SweepMetric::kStepTimeP99Us])});
    throughput.rows.push_back({label(p), csv_number(p.result.tokens_per_s_per_gpu)});
    if (p.memory_bytes_per_gpu) any_memory = true;
    memory.rows.push_back({label(p),
                           p.memory_bytes_per_gpu ? csv_number(*p.memory_bytes_per_gpu / 1e9) : "0",
                           p.hbm_bytes_per_gpu ? csv_number(*p.hbm_bytes_per_gpu / 1e9) : "0"});
  }
  page.section("Plans");
  page.table("compare.csv", table, table.header);

  page.section("Side by side");
  const std::vector<BarSeries> series = phase_series(phases);
  if (!series.empty()) {
    const TimeUnit unit = phase_unit(phases);
    page.figure(bar_figure(BarChart{
        "compare_phase_time", "Time per step by phase, per plan",
        "Mean over GPUs of each phase's time per step; idle is waiting for peers. The CSV is in "
        "microseconds.",
        phases, series, true, "plan", std::string("time per step (") + unit.name + ")",
        unit.scale}));
  }
  double slowest_p99 = 0.0;
  for (const auto& row : step.rows) {
    slowest_p99 = std::max(slowest_p99, std::strtod(row[2].c_str(), nullptr));
  }
  const TimeUnit step_unit = time_unit_for(slowest_p99);
  page.figure(bar_figure(
      BarChart{"compare_step_time",
               "Step time per plan",
               "Median and 99th percentile of the step time (the CSV is in microseconds).",
               step,
               {BarSeries{1, "p50", "#0072B2", false}, BarSeries{2, "p99", "#D55E00", false}},
               false,
               "plan",
               std::string("step time (") + step_unit.name + ")",
               step_unit.scale}));
  page.figure(bar_figure(BarChart{"compare_throughput",
                                  "Throughput per plan",
                                  "Tokens processed per second per GPU.",
                                  throughput,
                                  {BarSeries{1, "tokens/s per GPU", "#009E73", false}},
                                  false,
                                  "plan",
                                  "tokens per second per GPU"}));
  if (any_memory) {
    page.figure(bar_figure(BarChart{
        "compare_memory",
        "Memory per GPU against HBM",
        "Memory each plan needs per GPU next to the GPU's HBM; a plan whose need exceeds its HBM "
        "does not fit.",
        memory,
        {BarSeries{1, "needed", "#E69F00", false}, BarSeries{2, "HBM", "#56B4E9", true}},
        false,
        "plan",
        "GB per GPU (10^9 bytes)"}));
  }
  return page.finish();
}

}  // namespace moesim
