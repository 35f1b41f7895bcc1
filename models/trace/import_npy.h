// Imports top-k expert indices saved as NumPy .npy arrays (tokens x k, int32 or int64, one
// file per MoE layer, as a forward hook on a PyTorch MoE model saves them) into a routing trace.
#pragma once

#include <cstdint>
#include <filesystem>
#include <istream>
#include <span>
#include <string>
#include <vector>

#include "models/trace/import_common.h"

namespace moesim {

// A 2-D integer array from a .npy file (format versions 1.0 to 3.0): little-endian int32
// ('<i4') or int64 ('<i8'), C order. Values are narrowed to int32 and must fit.
struct NpyIndexArray {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int32_t> values;  // row-major
};

// Throws TraceError naming `name` for anything else: bad magic, other dtype or order, not 2-D,
// data shorter or longer than the shape says.
NpyIndexArray read_npy_indices(std::istream& in, const std::string& name);

// Files layer_<L>.npy in `folder` (L = 0..n-1, all present; other files are not looked at).
std::vector<std::filesystem::path> npy_layer_files(const std::filesystem::path& folder);

// File i holds MoE layer i; every file must have the same shape (tokens x top_k).
ImportedRouting read_npy_layers(std::span<const std::filesystem::path> files);

ImportResult import_npy(std::span<const std::filesystem::path> files, const ImportOptions& options,
                        const std::filesystem::path& trace);

}  // namespace moesim
