// Imports a CSV routing log (one row per token and layer) into a routing trace.
#pragma once

#include <filesystem>
#include <istream>
#include <string>

#include "models/trace/import_common.h"

namespace moesim {

// Format: a header line naming the columns, in any order: layer, token, expert_ids and
// optionally weights; no other column. Then one row per (layer, token):
// - layer: integer >= 0; layers must be 0..L-1, all present.
// - token: integer >= 0, the token's index within its layer; each layer must hold tokens
//   0..N-1 exactly once (rows may come in any order) and every layer the same N.
// - expert_ids: the token's top_k expert ids, integers separated by single spaces or by ';'
//   (not both), e.g. "3 17" or "3;17". Every row has the same count, which is top_k.
// - weights: as many floats, separated the same way (when the header has this column, every
//   row fills it).
// Fields are separated by ',' and may be wrapped in double quotes (no quotes or commas inside).
// Lines may end in "\r\n". No blank lines. Errors name the file, line and column.
ImportedRouting read_csv(std::istream& in, const std::string& name);

ImportResult import_csv(const std::filesystem::path& csv, const ImportOptions& options,
                        const std::filesystem::path& trace);

}  // namespace moesim
