#include "models/trace/import_common.h"

#include <algorithm>
#include <fstream>
#include <limits>

#include "models/trace/trace_writer.h"

namespace moesim {

namespace {

// Fills everything but the writing; shared by both overloads.
ImportResult plan(const ImportedRouting& routing, const ImportOptions& options,
                  std::vector<int64_t>& batch_tokens) {
  const std::string& in = routing.input;
  ImportResult result;
  if (routing.expert_ids.empty()) throw TraceError(in + ": no routing rows");
  if (routing.top_k <= 0) throw TraceError(in + ": top_k unknown or not positive");
  if (options.tokens_per_batch < 0) {
    throw TraceError(in + ": tokens_per_batch must be >= 0, got " +
                     std::to_string(options.tokens_per_batch));
  }
  const auto layers = static_cast<int32_t>(routing.expert_ids.size());
  const size_t pairs = routing.expert_ids[0].size();
  int32_t max_id = -1;
  for (int32_t l = 0; l < layers; ++l) {
    const auto& ids = routing.expert_ids[l];
    if (ids.size() != pairs) {
      throw TraceError(in + ": layer " + std::to_string(l) + " has " +
                       std::to_string(ids.size() / routing.top_k) + " tokens, layer 0 has " +
                       std::to_string(pairs / routing.top_k) +
                       "; every layer must route the same tokens");
    }
    for (int32_t id : ids) {
      if (id < 0) {
        throw TraceError(in + ": layer " + std::to_string(l) + ": negative expert id " +
                         std::to_string(id));
      }
      max_id = std::max(max_id, id);
    }
  }
  const bool has_weights = !routing.weights.empty() && !routing.weights[0].empty();
  for (int32_t l = 0; l < layers; ++l) {
    const size_t w =
        l < static_cast<int32_t>(routing.weights.size()) ? routing.weights[l].size() : 0;
    if (w != (has_weights ? pairs : 0)) {
      throw TraceError(in + ": layer " + std::to_string(l) + " has " + std::to_string(w) +
                       " weights for " + std::to_string(pairs) +
                       " expert ids; weights must be given for all rows or none");
    }
  }
  int32_t experts = routing.experts;
  if (options.experts > 0) {
    if (experts > 0 && experts != options.experts) {
      throw TraceError(in + ": the input says " + std::to_string(experts) +
                       " experts, the option says " + std::to_string(options.experts));
    }
    experts = options.experts;
  }
  if (experts <= 0) {
    experts = max_id + 1;
    result.warnings.push_back(
        in + ": expert count not given; inferred as max id + 1 = " + std::to_string(experts) +
        " (pass the model's expert count if some never received a token)");
  }
  if (max_id >= experts) {
    throw TraceError(in + ": expert id " + std::to_string(max_id) + " is out of range [0, " +
                     std::to_string(experts) + ")");
  }
  const auto tokens = static_cast<int64_t>(pairs / routing.top_k);
  int32_t header_tokens = 0;
  batch_tokens.clear();
  if (!routing.batch_tokens.empty()) {
    if (options.tokens_per_batch > 0) {
      throw TraceError(in + ": the input numbers its batches; tokens_per_batch " +
                       std::to_string(options.tokens_per_batch) + " would contradict it");
    }
    batch_tokens = routing.batch_tokens;
    const int64_t first = batch_tokens[0];
    const bool uniform = std::all_of(batch_tokens.begin(), batch_tokens.end(),
                                     [&](int64_t t) { return t == first; });
    header_tokens = uniform ? static_cast<int32_t>(first) : 0;
  } else if (options.tokens_per_batch > 0) {
    for (int64_t t = 0; t < tokens; t += options.tokens_per_batch) {
      batch_tokens.push_back(std::min<int64_t>(options.tokens_per_batch, tokens - t));
    }
    header_tokens = options.tokens_per_batch;
  } else {
    batch_tokens.push_back(tokens);
    header_tokens = static_cast<int32_t>(tokens);
  }
  for (int64_t t : batch_tokens) {
    if (t > std::numeric_limits<int32_t>::max()) {
      throw TraceError(in + ": a batch of " + std::to_string(t) +
                       " tokens is too large; set tokens_per_batch");
    }
  }
  TraceHeader& h = result.header;
  h.layers = layers;
  h.experts = experts;
  h.top_k = routing.top_k;
  h.tokens_per_batch = header_tokens;
  h.has_weights = has_weights;
  h.source = routing.source;
  if (!options.source.empty()) h.source += (h.source.empty() ? "" : "; ") + options.source;
  h.source += (h.source.empty() ? "" : "; ") + std::string("imported from ") + in;
  result.batches = static_cast<int64_t>(batch_tokens.size());
  result.records = result.batches * layers;
  result.tokens_per_layer = tokens;
  return result;
}

void write_records(const ImportedRouting& routing, const std::vector<int64_t>& batch_tokens,
                   TraceWriter& writer) {
  const size_t k = static_cast<size_t>(routing.top_k);
  const bool has_weights = writer.header().has_weights;
  TraceRecord record;
  size_t first = 0;
  for (size_t b = 0; b < batch_tokens.size(); ++b) {
    const auto n = static_cast<size_t>(batch_tokens[b]);
    for (size_t l = 0; l < routing.expert_ids.size(); ++l) {
      record.batch = static_cast<int64_t>(b);
      record.layer = static_cast<int32_t>(l);
      record.tokens = static_cast<int32_t>(n);
      const auto& ids = routing.expert_ids[l];
      record.expert_ids.assign(ids.begin() + first * k, ids.begin() + (first + n) * k);
      if (has_weights) {
        const auto& w = routing.weights[l];
        record.weights.assign(w.begin() + first * k, w.begin() + (first + n) * k);
      }
      writer.append(record);
    }
    first += n;
  }
  writer.close();
}

}  // namespace

ImportResult write_imported(const ImportedRouting& routing, const ImportOptions& options,
                            std::ostream& out, const std::string& out_name) {
  std::vector<int64_t> batch_tokens;
  ImportResult result = plan(routing, options, batch_tokens);
  TraceWriter writer(out, result.header, out_name);
  write_records(routing, batch_tokens, writer);
  return result;
}

ImportResult write_imported(const ImportedRouting& routing, const ImportOptions& options,
                            const std::filesystem::path& out) {
  std::vector<int64_t> batch_tokens;
  ImportResult result = plan(routing, options, batch_tokens);
  TraceWriter writer(out, result.header);
  write_records(routing, batch_tokens, writer);
  return result;
}

}  // namespace moesim
