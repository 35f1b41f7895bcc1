#include "models/trace/import_npy.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <regex>

#include "models/router/tensor_file.h"

namespace moesim {

NpyIndexArray read_npy_indices(std::istream& in, const std::string& name) {
  NpyHeader header;
  try {
    header = read_npy_header(in, name);
  } catch (const std::runtime_error& e) {
    throw TraceError(e.what());
  }
  size_t item_bytes = 0;
  if (header.descr == "<i4") {
    item_bytes = 4;
  } else if (header.descr == "<i8") {
    item_bytes = 8;
  } else {
    throw TraceError(name + ": npy dtype '" + header.descr +
                     "' (expected '<i4' or '<i8': little-endian int32 or int64)");
  }
  if (header.fortran_order) {
    throw TraceError(name + ": npy array in Fortran order (expected C order)");
  }
  std::string shape = "(";
  for (size_t i = 0; i < header.shape.size(); ++i) {
    shape += (i ? ", " : "") + std::to_string(header.shape[i]);
  }
  shape += header.shape.size() == 1 ? ",)" : ")";
  if (header.shape.size() != 2) {
    throw TraceError(name + ": npy shape " + shape + " (expected 2-D: tokens x top_k)");
  }
  NpyIndexArray out;
  out.rows = header.shape[0];
  out.cols = header.shape[1];
  if (out.rows < 0 || out.cols < 0 || (out.cols > 0 && out.rows > (int64_t{1} << 48) / out.cols)) {
    throw TraceError(name + ": npy shape " + shape + " is implausibly large");
  }
  if (std::endian::native != std::endian::little) {
    throw TraceError(name + ": reading .npy needs a little-endian machine");
  }
  const int64_t count = out.rows * out.cols;
  // Read in chunks so a shape larger than the file fails on the data, not on an allocation.
  out.values.reserve(static_cast<size_t>(std::min<int64_t>(count, 1 << 20)));
  std::vector<char> chunk(item_bytes * 4096);
  for (int64_t done = 0; done < count;) {
    const int64_t n = std::min<int64_t>(4096, count - done);
    if (!in.read(chunk.data(), static_cast<std::streamsize>(n * item_bytes))) {
      throw TraceError(
          name + ": npy data ends after " +
          std::to_string(done + in.gcount() / static_cast<std::streamsize>(item_bytes)) + " of " +
          std::to_string(count) + " values (shape " + shape + ")");
    }
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = 0;
      if (item_bytes == 4) {
        int32_t v32 = 0;
        std::memcpy(&v32, chunk.data() + i * 4, 4);
        v = v32;
      } else {
        std::memcpy(&v, chunk.data() + i * 8, 8);
      }
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
        throw TraceError(name + ": value " + std::to_string(v) + " at row " +
                         std::to_string((done + i) / std::max<int64_t>(out.cols, 1)) +
                         " does not fit an int32 expert id");
      }
      out.values.push_back(static_cast<int32_t>(v));
    }
    done += n;
  }
  if (in.peek() != std::char_traits<char>::eof()) {
    throw TraceError(name + ": npy file has data beyond its shape " + shape);
  }
  return out;
}

std::vector<std::filesystem::path> npy_layer_files(const std::filesystem::path& folder) {
  std::error_code ec;
  std::filesystem::directory_iterator it(folder, ec);
  if (ec) throw TraceError(folder.string() + ": cannot list the folder: " + ec.message());
  const std::regex pattern(R"(layer_(\d{1,6})\.npy)");
  std::map<int64_t, std::filesystem::path> by_layer;
  for (const auto& entry : it) {
    const std::string file = entry.path().filename().string();
    std::smatch m;
    if (!std::regex_match(file, m, pattern)) continue;
    const int64_t layer = std::stoll(m[1].str());
    if (!by_layer.emplace(layer, entry.path()).second) {
      throw TraceError(folder.string() + ": two files for layer " + std::to_string(layer));
    }
  }
  if (by_layer.empty()) throw TraceError(folder.string() + ": no layer_<L>.npy files");
  std::vector<std::filesystem::path> files;
  for (const auto& [layer, path] : by_layer) {
    if (layer != static_cast<int64_t>(files.size())) {
      throw TraceError(folder.string() + ": layer_" + std::to_string(files.size()) +
                       ".npy is missing (layers must be 0.." + std::to_string(by_layer.size() - 1) +
                       ")");
    }
    files.push_back(path);
  }
  return files;
}

ImportedRouting read_npy_layers(std::span<const std::filesystem::path> files) {
  ImportedRouting out;
  if (files.empty()) throw TraceError("npy import: no files given");
  out.input =
      files[0].string() + (files.size() > 1 ? " .. " + files.back().filename().string() : "");
  int64_t rows = -1;
  for (size_t l = 0; l < files.size(); ++l) {
    const std::string name = files[l].string();
    std::ifstream in(files[l], std::ios::binary);
    if (!in) throw TraceError(name + ": cannot open for reading");
    NpyIndexArray a = read_npy_indices(in, name);
    if (a.cols <= 0) throw TraceError(name + ": shape has 0 columns (top_k must be >= 1)");
    if (l == 0) {
      rows = a.rows;
      out.top_k = static_cast<int32_t>(a.cols);
    } else if (a.rows != rows || a.cols != out.top_k) {
      throw TraceError(name + ": shape (" + std::to_string(a.rows) + ", " + std::to_string(a.cols) +
                       ") differs from layer 0's (" + std::to_string(rows) + ", " +
                       std::to_string(out.top_k) + ")");
    }
    for (size_t i = 0; i < a.values.size(); ++i) {
      if (a.values[i] < 0) {
        throw TraceError(name + ": row " + std::to_string(i / a.cols) + ": negative expert id " +
                         std::to_string(a.values[i]));
      }
    }
    out.expert_ids.push_back(std::move(a.values));
    out.weights.emplace_back();
  }
  return out;
}

ImportResult import_npy(std::span<const std::filesystem::path> files, const ImportOptions& options,
                        const std::filesystem::path& trace) {
  return write_imported(read_npy_layers(files), options, trace);
}

}  // namespace moesim
