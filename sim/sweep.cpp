#include "sim/sweep.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <exception>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/statistics.h"
#include "sim/parallel.h"

namespace moesim {
namespace {

// CSV field: quoted when it holds a comma, quote or line break.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string join_csv(std::span<const std::string> fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) line += ',';
    line += csv_field(fields[i]);
  }
  return line;
}

// Splits one CSV line (RFC 4180 quoting, no line breaks inside fields).
std::vector<std::string> split_csv(const std::string& line, const std::string& where) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  if (quoted) throw SweepError(where + ": unterminated quoted field");
  return fields;
}

int64_t parse_index(const std::string& text, const std::string& where, const char* field) {
  int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v < 0) {
    throw SweepError(where + ": field '" + field + "': expected an integer >= 0, got '" + text +
                     "'");
  }
  return v;
}

}  // namespace

std::string format_double(double value) {
  char buf[64];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, ptr);
}

std::vector<SweepPoint> sweep_points(std::span<const SweepAxis> axes) {
  int64_t total = 1;
  for (const SweepAxis& a : axes) {
    if (a.values.empty()) throw SweepError("sweep axis '" + a.name + "' has no values");
    total *= static_cast<int64_t>(a.values.size());
  }
  std::vector<SweepPoint> points(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) {
    SweepPoint& p = points[static_cast<size_t>(i)];
    p.index = i;
    p.axis_values.resize(axes.size());
    int64_t rest = i;
    for (size_t a = axes.size(); a-- > 0;) {
      const auto n = static_cast<int64_t>(axes[a].values.size());
      p.axis_values[a] = {axes[a].name, axes[a].values[static_cast<size_t>(rest % n)]};
      rest /= n;
    }
  }
  return points;
}

SweepShard parse_shard(std::string_view text) {
  const auto bad = [&] {
    return SweepError("--shard '" + std::string(text) +
                      "': expected I/N with integers 1 <= I <= N, e.g. 2/8");
  };
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) throw bad();
  SweepShard s;
  const char* b = text.data();
  const char* e = b + text.size();
  auto r1 = std::from_chars(b, b + slash, s.index);
  auto r2 = std::from_chars(b + slash + 1, e, s.count);
  if (r1.ec != std::errc() || r1.ptr != b + slash || r2.ec != std::errc() || r2.ptr != e ||
      s.count < 1 || s.index < 1 || s.index > s.count) {
    throw bad();
  }
  return s;
}

std::string_view sweep_metric_name(SweepMetric metric) {
  return kSweepMetricNames[static_cast<size_t>(metric)];
}

SweepMetrics sweep_metrics(const SimulationResult& result) {
  SweepMetrics m;
  auto set = [&m](SweepMetric metric, std::optional<double> value) {
    m.values[static_cast<size_t>(metric)] = value;
  };
  const SampleSet steps(result.step_time_us);
  set(SweepMetric::kStepTimeMeanUs, steps.mean());
  set(SweepMetric::kStepTimeP50Us, steps.p50());
  set(SweepMetric::kStepTimeP99Us, steps.p99());
  if (steps.size() > 1) set(SweepMetric::kStepTimeStddevUs, steps.stddev());
  // 0 for a quantity without samples (no all-to-all, no experts).
  const auto mean = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : SampleSet(v).mean();
  };
  const auto p99 = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : SampleSet(v).p99();
  };
  set(SweepMetric::kDispatchMeanUs, mean(result.dispatch_us));
  set(SweepMetric::kDispatchP99Us, p99(result.dispatch_us));
  set(SweepMetric::kCombineMeanUs, mean(result.combine_us));
  set(SweepMetric::kCombineP99Us, p99(result.combine_us));
  set(SweepMetric::kExpertComputeMeanUs, mean(result.expert_compute_us));
  set(SweepMetric::kDroppedTokenFraction, result.dropped_token_fraction);
  set(SweepMetric::kExpertMaxOverMean, result.expert_max_over_mean);
  set(SweepMetric::kGpuMaxOverMean, result.gpu_max_over_mean);
  set(SweepMetric::kIdleFraction, result.idle_fraction);
  set(SweepMetric::kTokensPerSPerGpu, result.tokens_per_s_per_gpu);
  return m;
}

SweepRow sweep_row(const SweepPoint& point, const SimulationResult& result) {
  SweepRow row;
  row.point = point.index;
  for (const auto& [name, value] : point.axis_values) row.axis_values.push_back(value);
  row.metrics = sweep_metrics(result);
  return row;
}

std::vector<SweepRow> run_sweep(std::string_view scenario_text, std::string_view file_name,
                                const SweepOptions& options) {
  const Scenario base = parse_scenario(scenario_text, file_name);
  std::vector<SweepPoint> mine;
  for (SweepPoint& p : sweep_points(base.sweep)) {
    if (options.shard.holds(p.index)) mine.push_back(std::move(p));
  }
  std::vector<SweepRow> rows(mine.size());
  std::atomic<int64_t> done{0};
  std::mutex progress_mutex;
  parallel_for(static_cast<int64_t>(mine.size()), options.threads, [&](int64_t i, int32_t) {
    try {
      const Scenario s = parse_scenario_at(scenario_text, file_name, mine[i].axis_values);
      SimulationOptions sim;
      sim.threads = 1;
      rows[i] = sweep_row(mine[i], simulate(s, sim));
    } catch (const std::exception& e) {
      std::string where = "sweep point " + std::to_string(mine[i].index) + " (";
      for (size_t a = 0; a < mine[i].axis_values.size(); ++a) {
        where +=
            (a ? ", " : "") + mine[i].axis_values[a].first + "=" + mine[i].axis_values[a].second;
      }
      throw SweepError(where + "): " + e.what());
    }
    if (options.progress) {
      const std::lock_guard lock(progress_mutex);
      options.progress(++done, static_cast<int64_t>(mine.size()));
    }
  });
  return rows;
}

std::vector<std::string> sweep_csv_header(std::span<const std::string> axis_names) {
  std::vector<std::string> h = {"point", "points"};
  h.insert(h.end(), axis_names.begin(), axis_names.end());
  for (std::string_view c : kSweepMetricNames) h.emplace_back(c);
  return h;
}

void write_sweep_csv(std::ostream& out, std::span<const std::string> axis_names,
                     int64_t total_points, std::span<const SweepRow> rows) {
  out << join_csv(sweep_csv_header(axis_names)) << "\n";
  for (const SweepRow& r : rows) {
    std::vector<std::string> f = {std::to_string(r.point), std::to_string(total_points)};
    f.insert(f.end(), r.axis_values.begin(), r.axis_values.end());
    for (const std::optional<double>& v : r.metrics.values) {
      f.push_back(v ? format_double(*v) : "");
    }
    out << join_csv(f) << "\n";
  }
}

SweepCsv read_sweep_csv(std::istream& in, const std::string& name) {
  SweepCsv csv;
  std::string line;
  int64_t line_no = 0;
  size_t columns = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = name + ":" + std::to_string(line_no);
    if (line.empty()) throw SweepError(where + ": blank line");
    const std::vector<std::string> fields = split_csv(line, where);
    if (line_no == 1) {
      if (fields.size() < 2 + kSweepMetricCount || fields[0] != "point" || fields[1] != "points") {
        throw SweepError(where +
                         ": not a moesim sweep CSV (expected a header starting "
                         "'point,points,')");
      }
      csv.header = line;
      columns = fields.size();
      continue;
    }
    if (fields.size() != columns) {
      throw SweepError(where + ": " + std::to_string(fields.size()) + " fields, the header has " +
                       std::to_string(columns));
    }
    const int64_t point = parse_index(fields[0], where, "point");
    const int64_t total = parse_index(fields[1], where, "points");
    if (csv.rows.empty()) {
      csv.total_points = total;
    } else if (total != csv.total_points) {
      throw SweepError(where + ": field 'points': " + std::to_string(total) +
                       ", earlier rows say " + std::to_string(csv.total_points));
    }
    if (point >= total) {
      throw SweepError(where + ": point " + std::to_string(point) + " is not below points " +
                       std::to_string(total));
    }
    csv.rows.emplace_back(point, line);
  }
  if (line_no == 0) throw SweepError(name + ": empty file (expected a sweep CSV header)");
  return csv;
}

void merge_sweep_csv(std::span<const std::pair<std::string, SweepCsv>> shards, std::ostream& out) {
  if (shards.empty()) throw SweepError("merge: no shard files given");
  const std::string& header = shards[0].second.header;
  int64_t total = -1;
  std::string total_from;
  for (const auto& [name, csv] : shards) {
    if (csv.header != header) {
      throw SweepError("merge: the header of " + name + " differs from " + shards[0].first +
                       ":\n  " + csv.header + "\n  " + header);
    }
    if (csv.rows.empty()) continue;
    if (total < 0) {
      total = csv.total_points;
      total_from = name;
    } else if (csv.total_points != total) {
      throw SweepError("merge: " + name + " is from a sweep of " +
                       std::to_string(csv.total_points) + " points, " + total_from + " of " +
                       std::to_string(total));
    }
  }
  if (total < 0) throw SweepError("merge: the shard files hold no rows");
  std::vector<const std::string*> line_of(static_cast<size_t>(total), nullptr);
  std::vector<const std::string*> file_of(static_cast<size_t>(total), nullptr);
  for (const auto& [name, csv] : shards) {
    for (const auto& [point, line] : csv.rows) {
      if (line_of[point]) {
        throw SweepError("merge: point " + std::to_string(point) + " appears twice (in " +
                         *file_of[point] + " and " + name + ")");
      }
      line_of[point] = &line;
      file_of[point] = &name;
    }
  }
  std::string missing;
  int64_t missing_count = 0;
  for (int64_t p = 0; p < total; ++p) {
    if (line_of[p]) continue;
    if (++missing_count <= 20) missing += (missing.empty() ? "" : ", ") + std::to_string(p);
  }
  if (missing_count > 0) {
    throw SweepError("merge: " + std::to_string(missing_count) + " of " + std::to_string(total) +
                     " points missing: " + missing + (missing_count > 20 ? ", ..." : "") +
                     " (a shard not run or not given?)");
  }
  out << header << "\n";
  for (const std::string* line : line_of) out << *line << "\n";
}

}  // namespace moesim
