// Imports a JSON Lines routing log (one object per token and layer, as vLLM route loggers
// write them) into a routing trace.
#pragma once

#include <filesystem>
#include <istream>
#include <string>

#include "models/trace/import_common.h"

namespace moesim {

// Format, one JSON object per line, no blank lines:
// - optional first line {"type": "meta", ...}: "top_k" (integer) and "num_experts" (integer)
//   are used; other string values (model_id, device, ...) go into the source description;
//   anything else in it is skipped.
// - every other line is a route row, "type": "route" or no type:
//   "layer" (integer >= 0), "token" or "token_idx" (integer >= 0: checked, not used for
//   placement, since servers restart it per forward pass; tokens keep the file's order within
//   a layer), "topk_ids" (top_k integers), optional "topk_weights" (as many numbers; all rows
//   or none), optional "batch" (integer >= 0; all rows or none; non-decreasing within a layer;
//   batches are the runs of equal values and must hold the same tokens in every layer),
//   optional "req_id" (string or integer: accepted, not used). Any other key is an error.
// top_k comes from the meta line, else from the first row; every row must have that many ids.
// Layers must be 0..L-1, every one present. Errors name the file, line and field.
ImportedRouting read_jsonl(std::istream& in, const std::string& name);

ImportResult import_jsonl(const std::filesystem::path& jsonl, const ImportOptions& options,
                          const std::filesystem::path& trace);

}  // namespace moesim
