// What the trace importers share: their options, the routing log they collect in memory, and
// the step that cuts it into batches and writes it as a trace.
#pragma once

#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "models/trace/trace_format.h"

namespace moesim {

struct ImportOptions {
  // Routed experts. 0: from the input's metadata, else inferred as max id + 1 (with a warning,
  // since experts that never received a token are then missing).
  int32_t experts = 0;
  // Consecutive tokens of a layer per batch (the last batch may be shorter). 0: all tokens of a
  // layer form one batch, unless the input numbers its batches itself.
  int32_t tokens_per_batch = 0;
  // Free text added to the header's source description.
  std::string source;
};

// A whole routing log in memory, as an importer collects it: per layer, per token (in the
// input's order) top_k expert ids and optionally as many weights.
struct ImportedRouting {
  std::string input;   // the input's name, for messages and the header's source
  std::string source;  // what the input says of itself (model id, server, ...)
  int32_t top_k = 0;
  int32_t experts = 0;                           // 0 when the input does not say
  std::vector<std::vector<int32_t>> expert_ids;  // [layer][token * top_k + slot]
  std::vector<std::vector<float>> weights;       // [layer][...]; all empty when none logged
  // Tokens per batch when the input numbers its batches (the same in every layer); else empty.
  std::vector<int64_t> batch_tokens;
};

struct ImportResult {
  TraceHeader header;
  int64_t batches = 0;
  int64_t records = 0;
  int64_t tokens_per_layer = 0;
  std::vector<std::string> warnings;  // for the caller to show, e.g. an inferred expert count
};

// Resolves the expert count, cuts each layer into batches and writes the trace. Throws
// TraceError naming the input for an inconsistent log (layers with different token counts,
// an id out of range, options that contradict the input).
ImportResult write_imported(const ImportedRouting& routing, const ImportOptions& options,
                            std::ostream& out, const std::string& out_name);
ImportResult write_imported(const ImportedRouting& routing, const ImportOptions& options,
                            const std::filesystem::path& out);

}  // namespace moesim
