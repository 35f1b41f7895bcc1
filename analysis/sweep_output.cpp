#include "analysis/sweep_output.h"

#include <algorithm>
#include <charconv>
#include <iomanip>
#include <sstream>

#include "analysis/text_format.h"

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

std::vector<std::string> sweep_csv_header(std::span<const std::string> axis_names) {
  std::vector<std::string> h = {"point", "points"};
  h.insert(h.end(), axis_names.begin(), axis_names.end());
  for (std::string_view c : kSweepMetricNames) h.emplace_back(c);
  return h;
}

std::string sweep_csv_header_line(std::span<const std::string> axis_names) {
  return join_csv(sweep_csv_header(axis_names));
}

std::string sweep_csv_row_line(const SweepRow& row, int64_t total_points) {
  std::vector<std::string> f = {std::to_string(row.point), std::to_string(total_points)};
  f.insert(f.end(), row.axis_values.begin(), row.axis_values.end());
  for (const std::optional<double>& v : row.metrics.values) {
    f.push_back(v ? format_double(*v) : "");
  }
  return join_csv(f);
}

void write_sweep_csv(std::ostream& out, std::span<const std::string> axis_names,
                     int64_t total_points, std::span<const SweepRow> rows) {
  out << sweep_csv_header_line(axis_names) << "\n";
  for (const SweepRow& r : rows) out << sweep_csv_row_line(r, total_points) << "\n";
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

SweepResume read_sweep_resume(const std::string& text, const std::string& name,
                              std::span<const std::string> axis_names, int64_t total_points,
                              std::span<const SweepPoint> points) {
  SweepResume resume;
  const size_t last_break = text.rfind('\n');
  if (last_break == std::string::npos) return resume;  // not even a whole header: start afresh
  resume.complete_text = text.substr(0, last_break + 1);
  std::istringstream in(resume.complete_text);
  const SweepCsv csv = read_sweep_csv(in, name);
  const std::vector<std::string> expected = sweep_csv_header(axis_names);
  if (csv.header != join_csv(expected)) {
    const std::vector<std::string> found = split_csv(csv.header, name + ":1");
    const auto axes_of = [](const std::vector<std::string>& header) {
      std::string list;
      for (size_t i = 2; i + kSweepMetricCount < header.size(); ++i) {
        list += (list.empty() ? "" : ", ") + header[i];
      }
      return "[" + list + "]";
    };
    const auto metrics_of = [](const std::vector<std::string>& header) {
      return std::vector<std::string>(
          header.end() - static_cast<std::ptrdiff_t>(std::min(header.size(), kSweepMetricCount)),
          header.end());
    };
    std::string what;
    if (axes_of(found) != axes_of(expected)) {
      what = "its axes are " + axes_of(found) + ", this sweep's " + axes_of(expected);
    } else if (metrics_of(found) != metrics_of(expected)) {
      what = "its metric columns differ from this moesim's (" + csv.header + ")";
    } else {
      what = "its header differs: " + csv.header;
    }
    throw SweepError("--resume: " + name + " is not from this sweep: " + what);
  }
  if (!csv.rows.empty() && csv.total_points != total_points) {
    throw SweepError("--resume: " + name + " is from a sweep of " +
                     std::to_string(csv.total_points) + " points, this one has " +
                     std::to_string(total_points));
  }
  if (csv.rows.size() > points.size()) {
    throw SweepError("--resume: " + name + " holds " + std::to_string(csv.rows.size()) +
                     " rows, this sweep (shard) has " + std::to_string(points.size()) + " points");
  }
  const size_t axes = axis_names.size();
  for (size_t i = 0; i < csv.rows.size(); ++i) {
    const auto& [point, line] = csv.rows[i];
    const std::string where = name + ":" + std::to_string(i + 2);
    if (point != points[i].index) {
      throw SweepError("--resume: " + where + ": point " + std::to_string(point) +
                       " where this sweep's point " + std::to_string(points[i].index) +
                       " comes next (rows must be the sweep's first points in order)");
    }
    const std::vector<std::string> fields = split_csv(line, where);
    SweepRow row;
    row.point = point;
    for (size_t a = 0; a < axes; ++a) {
      const std::string& value = fields[2 + a];
      if (value != points[i].axis_values[a].second) {
        throw SweepError("--resume: " + where + ": point " + std::to_string(point) + " has " +
                         axis_names[a] + "=" + value + ", this sweep " +
                         points[i].axis_values[a].second);
      }
      row.axis_values.push_back(value);
    }
    for (size_t m = 0; m < kSweepMetricCount; ++m) {
      const std::string& value = fields[2 + axes + m];
      if (value.empty()) continue;
      double v = 0.0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || ptr != value.data() + value.size()) {
        throw SweepError("--resume: " + where + ": " + std::string(kSweepMetricNames[m]) +
                         ": not a number: '" + value + "'");
      }
      row.metrics.values[m] = v;
    }
    resume.rows.push_back(std::move(row));
  }
  return resume;
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

void print_sweep_table(std::ostream& out, const std::vector<std::string>& axes,
                       const std::vector<SweepRow>& rows) {
  std::vector<std::string> head = {"point"};
  head.insert(head.end(), axes.begin(), axes.end());
  for (const char* h : {"step p50 ms", "step p99 ms", "dispatch ms", "combine ms", "dropped",
                        "expert max/mean", "GPU max/mean", "idle", "tok/s/GPU"}) {
    head.emplace_back(h);
  }
  std::vector<std::vector<std::string>> cells;
  for (const SweepRow& r : rows) {
    const SweepMetrics& m = r.metrics;
    std::vector<std::string> c = {std::to_string(r.point)};
    c.insert(c.end(), r.axis_values.begin(), r.axis_values.end());
    for (const std::string& v :
         {fixed(m[SweepMetric::kStepTimeP50Us] / 1e3, 3),
          fixed(m[SweepMetric::kStepTimeP99Us] / 1e3, 3),
          fixed(m[SweepMetric::kDispatchMeanUs] / 1e3, 3),
          fixed(m[SweepMetric::kCombineMeanUs] / 1e3, 3),
          fixed(100 * m[SweepMetric::kDroppedTokenFraction], 2) + "%",
          fixed(m[SweepMetric::kExpertMaxOverMean], 3), fixed(m[SweepMetric::kGpuMaxOverMean], 3),
          fixed(100 * m[SweepMetric::kIdleFraction], 1) + "%",
          fixed(m[SweepMetric::kTokensPerSPerGpu], 0)}) {
      c.push_back(v);
    }
    cells.push_back(std::move(c));
  }
  std::vector<size_t> width(head.size());
  for (size_t i = 0; i < head.size(); ++i) width[i] = head[i].size();
  for (const auto& c : cells) {
    for (size_t i = 0; i < c.size(); ++i) width[i] = std::max(width[i], c[i].size());
  }
  auto line = [&](const std::vector<std::string>& c) {
    for (size_t i = 0; i < c.size(); ++i) {
      out << (i ? "  " : "") << std::setw(static_cast<int>(width[i])) << c[i];
    }
    out << "\n";
  };
  line(head);
  for (const auto& c : cells) line(c);
}

}  // namespace moesim
