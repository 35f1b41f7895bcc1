// Readers for the two tensor file formats a router's inputs come in: NumPy .npy (hidden states,
// gate matrices) and .safetensors checkpoints (a trained router's gate by tensor name).
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

namespace moesim {

// A dense row-major tensor converted to fp32.
struct FloatTensor {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// The header of a .npy stream (format versions 1.0, 2.0 and 3.0): the dtype string as NumPy
// writes it ("<f4", "<i8", ...), the order and the shape. Leaves `in` at the first data byte.
// Throws std::runtime_error "<name>: <problem>" (bad magic, unsupported version, truncated or
// malformed header). Every .npy reader in moesim goes through it.
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};
NpyHeader read_npy_header(std::istream& in, const std::string& name);

// Reads a .npy file (format versions 1.0, 2.0 and 3.0) holding little-endian float32 ('<f4') or
// float16 ('<f2') in C order. Throws std::runtime_error naming the file and the problem (bad
// magic, unsupported version or dtype, Fortran order, malformed header, truncated or
// over-long data).
FloatTensor load_npy(const std::string& path);

// Reads one tensor of a .safetensors file: an 8-byte little-endian header length, a JSON header
// mapping names to {dtype, shape, data_offsets}, then the data. F32, F16 and BF16 are converted
// to fp32. Throws std::runtime_error naming the file and the problem (missing tensor,
// unsupported dtype, malformed header, offsets outside the file or disagreeing with the shape).
FloatTensor load_safetensors(const std::string& path, const std::string& tensor_name);

// IEEE binary16 and bfloat16 bit patterns to float.
float half_to_float(uint16_t bits);
float bfloat16_to_float(uint16_t bits);

}  // namespace moesim
