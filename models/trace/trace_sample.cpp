#include "models/trace/trace_sample.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "models/trace/import_common.h"
#include "models/trace/import_csv.h"
#include "models/trace/import_jsonl.h"
#include "models/trace/import_npy.h"

namespace moesim {

TraceSample read_trace_sample(TraceReader& reader) {
  TraceSample out;
  out.header = reader.header();
  const TraceHeader& h = out.header;
  out.sample.experts = h.experts;
  out.sample.top_k = h.top_k;
  out.sample.ids.resize(h.layers);
  TraceRecord record;
  while (reader.next(record)) {
    if (record.counts_only()) {
      throw TraceError(reader.name() + ": record " + std::to_string(reader.record_index()) +
                       " holds only per-expert counts; the statistics need each token's experts");
    }
    if (record.layer == 0) {
      ++out.trace_batches;
      out.sample.sequence_start.push_back(1);
      out.sample.sequence_start.resize(out.sample.sequence_start.size() + record.tokens - 1, 0);
    }
    auto& ids = out.sample.ids[record.layer];
    ids.insert(ids.end(), record.expert_ids.begin(), record.expert_ids.end());
  }
  if (out.trace_batches == 0) throw TraceError(reader.name() + ": the trace holds no batch");
  return out;
}

TraceSample read_trace_sample(const std::filesystem::path& trace) {
  TraceReader reader(trace);
  return read_trace_sample(reader);
}

RoutingLogFormat routing_log_format(const std::filesystem::path& input, const std::string& given) {
  if (given == "trace") return RoutingLogFormat::kTrace;
  if (given == "csv") return RoutingLogFormat::kCsv;
  if (given == "jsonl") return RoutingLogFormat::kJsonl;
  if (given == "npy") return RoutingLogFormat::kNpy;
  if (!given.empty()) {
    throw std::invalid_argument("input format must be trace, csv, jsonl or npy, not '" + given +
                                "'");
  }
  const std::string ext = input.extension().string();
  if (ext == ".csv") return RoutingLogFormat::kCsv;
  if (ext == ".jsonl") return RoutingLogFormat::kJsonl;
  if (ext == ".npy" || std::filesystem::is_directory(input)) return RoutingLogFormat::kNpy;
  return RoutingLogFormat::kTrace;
}

TraceSample load_trace_sample(const std::filesystem::path& input, RoutingLogFormat format,
                              int32_t experts, std::vector<std::string>& warnings) {
  if (format == RoutingLogFormat::kTrace) {
    if (experts > 0) {
      throw std::invalid_argument(
          "the expert count is read from the trace's header; give it "
          "only for a log to import");
    }
    return read_trace_sample(input);
  }
  ImportedRouting routing;
  if (format == RoutingLogFormat::kNpy) {
    const std::vector<std::filesystem::path> files =
        std::filesystem::is_directory(input) ? npy_layer_files(input)
                                             : std::vector<std::filesystem::path>{input};
    routing = read_npy_layers(files);
  } else {
    std::ifstream in(input);
    if (!in) throw TraceError(input.string() + ": cannot open");
    routing = format == RoutingLogFormat::kCsv ? read_csv(in, input.string())
                                               : read_jsonl(in, input.string());
  }
  ImportOptions options;
  options.experts = experts;
  auto bytes = std::make_unique<std::stringstream>();
  const ImportResult imported = write_imported(routing, options, *bytes, input.string());
  warnings.insert(warnings.end(), imported.warnings.begin(), imported.warnings.end());
  TraceReader reader(std::move(bytes), input.string());
  return read_trace_sample(reader);
}

std::vector<IdenticalRun> identical_runs(const RoutingSample& sample, int64_t min_run) {
  std::vector<IdenticalRun> runs;
  const int64_t T = sample.tokens();
  const int32_t k = sample.top_k;
  const auto same_as_previous = [&](int64_t t) {
    for (const auto& layer : sample.ids) {
      if (!std::equal(layer.begin() + t * k, layer.begin() + (t + 1) * k,
                      layer.begin() + (t - 1) * k)) {
        return false;
      }
    }
    return true;
  };
  int64_t first = 0;
  for (int64_t t = 1; t <= T; ++t) {
    if (t < T && same_as_previous(t)) continue;
    if (t - first >= min_run) runs.push_back({first, t - first});
    first = t;
  }
  return runs;
}

RoutingSample without_runs(const RoutingSample& sample, const std::vector<IdenticalRun>& runs) {
  RoutingSample out;
  out.experts = sample.experts;
  out.top_k = sample.top_k;
  out.ids.resize(sample.ids.size());
  const int64_t T = sample.tokens();
  const int32_t k = sample.top_k;
  size_t next_run = 0;
  bool after_gap = false;
  for (int64_t t = 0; t < T; ++t) {
    if (next_run < runs.size() && t >= runs[next_run].first_token) {
      if (t < runs[next_run].first_token + runs[next_run].tokens) {
        after_gap = true;
        continue;
      }
      ++next_run;
      --t;  // look at this token again against the next run
      continue;
    }
    for (size_t l = 0; l < sample.ids.size(); ++l) {
      out.ids[l].insert(out.ids[l].end(), sample.ids[l].begin() + t * k,
                        sample.ids[l].begin() + (t + 1) * k);
    }
    const bool starts =
        after_gap || (!sample.sequence_start.empty() && sample.sequence_start[t] != 0);
    out.sequence_start.push_back(starts ? 1 : 0);
    after_gap = false;
  }
  return out;
}

}  // namespace moesim
