#include "models/trace/import_csv.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <limits>

namespace moesim {

namespace {

struct Row {
  int64_t layer;
  int64_t token;
  int64_t line;
  size_t first;  // index of its first id in the flat arrays
};

std::string_view unquote(std::string_view field) {
  if (field.size() >= 2 && field.front() == '"' && field.back() == '"') {
    return field.substr(1, field.size() - 2);
  }
  return field;
}

// Splits a list field on ' ' or ';' (whichever it uses); an empty part is an error.
bool split_list(std::string_view field, std::vector<std::string_view>& parts) {
  parts.clear();
  const bool has_space = field.find(' ') != std::string_view::npos;
  const bool has_semi = field.find(';') != std::string_view::npos;
  if (has_space && has_semi) return false;
  const char sep = has_semi ? ';' : ' ';
  size_t start = 0;
  for (;;) {
    const size_t end = field.find(sep, start);
    const std::string_view part =
        field.substr(start, end == std::string_view::npos ? end : end - start);
    if (part.empty()) return false;
    parts.push_back(part);
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

template <typename T>
bool parse_exact(std::string_view s, T& out) {
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, out);
  return !s.empty() && ec == std::errc() && ptr == end;
}

}  // namespace

ImportedRouting read_csv(std::istream& in, const std::string& name) {
  ImportedRouting out;
  out.input = name;
  std::string text;
  int64_t line = 1;
  auto fail = [&](const std::string& column, const std::string& what) -> void {
    throw TraceError(name + ":" + std::to_string(line) + ": column \"" + column + "\": " + what);
  };
  if (!std::getline(in, text)) throw TraceError(name + ": empty file, expected a header line");
  if (!text.empty() && text.back() == '\r') text.pop_back();
  std::vector<std::string> columns;
  int col_layer = -1, col_token = -1, col_ids = -1, col_weights = -1;
  {
    size_t start = 0;
    for (;;) {
      const size_t end = text.find(',', start);
      columns.emplace_back(unquote(std::string_view(text).substr(
          start, end == std::string::npos ? std::string::npos : end - start)));
      const int index = static_cast<int>(columns.size()) - 1;
      const std::string& c = columns.back();
      int* slot = c == "layer"        ? &col_layer
                  : c == "token"      ? &col_token
                  : c == "expert_ids" ? &col_ids
                  : c == "weights"    ? &col_weights
                                      : nullptr;
      if (slot == nullptr) {
        fail(c, "unknown column (expected layer, token, expert_ids and optionally weights)");
      }
      if (*slot >= 0) fail(c, "given twice");
      *slot = index;
      if (end == std::string::npos) break;
      start = end + 1;
    }
    if (col_layer < 0) fail("layer", "missing from the header");
    if (col_token < 0) fail("token", "missing from the header");
    if (col_ids < 0) fail("expert_ids", "missing from the header");
  }
  std::vector<Row> rows;
  std::vector<int32_t> ids;
  std::vector<float> weights;
  std::vector<std::string_view> fields(columns.size());
  std::vector<std::string_view> parts;
  while (std::getline(in, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.empty()) fail(columns[0], "empty line");
    const std::string_view row(text);
    size_t start = 0;
    for (size_t c = 0; c < columns.size(); ++c) {
      const size_t end = row.find(',', start);
      if (end == std::string_view::npos && c + 1 < columns.size()) {
        fail(columns[c + 1], "missing (the row has " + std::to_string(c + 1) + " of " +
                                 std::to_string(columns.size()) + " fields)");
      }
      if (end != std::string_view::npos && c + 1 == columns.size()) {
        fail(columns[c], "extra fields after the last column");
      }
      fields[c] = unquote(row.substr(start, end == std::string_view::npos ? end : end - start));
      start = end + 1;
    }
    Row r{0, 0, line, ids.size()};
    if (!parse_exact(fields[col_layer], r.layer) || r.layer < 0 ||
        r.layer >= int64_t{kTraceMaxLayers}) {
      fail("layer", "\"" + std::string(fields[col_layer]) + "\" is not a layer (integer in [0, " +
                        std::to_string(int64_t{kTraceMaxLayers}) + "))");
    }
    if (!parse_exact(fields[col_token], r.token) || r.token < 0) {
      fail("token",
           "\"" + std::string(fields[col_token]) + "\" is not a token index (integer >= 0)");
    }
    if (!split_list(fields[col_ids], parts)) {
      fail("expert_ids", "\"" + std::string(fields[col_ids]) +
                             "\" is not a list of ids separated by single spaces or by ';'");
    }
    if (out.top_k == 0) out.top_k = static_cast<int32_t>(parts.size());
    if (parts.size() != static_cast<size_t>(out.top_k)) {
      fail("expert_ids", std::to_string(parts.size()) + " ids, but the first row has " +
                             std::to_string(out.top_k) + " (top_k)");
    }
    for (std::string_view p : parts) {
      int32_t id = 0;
      if (!parse_exact(p, id) || id < 0) {
        fail("expert_ids", "\"" + std::string(p) + "\" is not an expert id (integer >= 0)");
      }
      ids.push_back(id);
    }
    if (col_weights >= 0) {
      if (!split_list(fields[col_weights], parts) ||
          parts.size() != static_cast<size_t>(out.top_k)) {
        fail("weights", "\"" + std::string(fields[col_weights]) + "\" is not " +
                            std::to_string(out.top_k) + " floats separated by spaces or ';'");
      }
      for (std::string_view p : parts) {
        float w = 0;
        if (!parse_exact(p, w)) fail("weights", "\"" + std::string(p) + "\" is not a float");
        weights.push_back(w);
      }
    }
    rows.push_back(r);
  }
  if (in.bad()) throw TraceError(name + ": read failed");
  if (rows.empty()) throw TraceError(name + ": no rows after the header");
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.layer != b.layer ? a.layer < b.layer : a.token < b.token;
  });
  const size_t k = static_cast<size_t>(out.top_k);
  out.expert_ids.resize(rows.back().layer + 1);
  out.weights.resize(rows.back().layer + 1);
  int64_t layer = -1, expect_token = 0;
  for (const Row& r : rows) {
    if (r.layer != layer) {
      if (r.layer != layer + 1) {
        throw TraceError(name + ": layer " + std::to_string(layer + 1) +
                         " has no rows; layers must be 0.." + std::to_string(rows.back().layer) +
                         ", all present");
      }
      layer = r.layer;
      expect_token = 0;
    }
    if (r.token != expect_token) {
      throw TraceError(name + ":" + std::to_string(r.line) + ": column \"token\": layer " +
                       std::to_string(layer) + " " +
                       (r.token < expect_token ? "repeats token " + std::to_string(r.token)
                                               : "lacks token " + std::to_string(expect_token)) +
                       "; each layer must hold tokens 0..N-1 exactly once");
    }
    ++expect_token;
    auto& dst = out.expert_ids[layer];
    dst.insert(dst.end(), ids.begin() + r.first, ids.begin() + r.first + k);
    if (col_weights >= 0) {
      auto& w = out.weights[layer];
      w.insert(w.end(), weights.begin() + r.first, weights.begin() + r.first + k);
    }
  }
  return out;
}

ImportResult import_csv(const std::filesystem::path& csv, const ImportOptions& options,
                        const std::filesystem::path& trace) {
  std::ifstream in(csv);
  if (!in) throw TraceError(csv.string() + ": cannot open for reading");
  return write_imported(read_csv(in, csv.string()), options, trace);
}

}  // namespace moesim
