#include "models/router/tensor_file.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace moesim {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw std::runtime_error(path + ": " + problem);
}

std::ifstream open_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open file");
  return in;
}

uint64_t file_size(std::ifstream& in) {
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(0, std::ios::beg);
  return size;
}

uint64_t little_endian(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

enum class DType { kF32, kF16, kBF16 };
int item_bytes(DType d) {
  return d == DType::kF32 ? 4 : 2;
}

void convert(const unsigned char* raw, DType dtype, std::vector<float>& out) {
  for (size_t i = 0; i < out.size(); ++i) {
    if (dtype == DType::kF32) {
      out[i] = std::bit_cast<float>(static_cast<uint32_t>(little_endian(raw + 4 * i, 4)));
    } else {
      const auto bits = static_cast<uint16_t>(little_endian(raw + 2 * i, 2));
      out[i] = dtype == DType::kF16 ? half_to_float(bits) : bfloat16_to_float(bits);
    }
  }
}

// Element count of a shape, or an error when it overflows.
uint64_t element_count(const std::string& path, const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (const int64_t d : shape) {
    if (d < 0) fail(path, "negative dimension in shape");
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / 8 / static_cast<uint64_t>(d)) {
      fail(path, "shape too large");
    }
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

// ---- .npy header: a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False,
// 'shape': (3, 4), }
class PyDictParser {
 public:
  PyDictParser(const std::string& path, std::string_view text) : path_(path), s_(text) {}

  void parse(std::string& descr, bool& fortran_order, std::vector<int64_t>& shape) {
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') {
        ++i_;
        break;
      }
      const std::string key = parse_string();
      expect(':');
      if (key == "descr") {
        if (have_descr) error("duplicate key 'descr'");
        descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        if (have_order) error("duplicate key 'fortran_order'");
        fortran_order = parse_bool();
        have_order = true;
      } else if (key == "shape") {
        if (have_shape) error("duplicate key 'shape'");
        shape = parse_tuple();
        have_shape = true;
      } else {
        error("unexpected key '" + key + "' (expected descr, fortran_order, shape)");
      }
      skip_space();
      if (peek() == ',') {
        ++i_;
      } else if (peek() != '}') {
        error("expected ',' or '}'");
      }
    }
    skip_space();
    if (i_ != s_.size()) error("text after the header dict");
    if (!have_descr) error("missing key 'descr'");
    if (!have_order) error("missing key 'fortran_order'");
    if (!have_shape) error("missing key 'shape'");
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(path_, "npy header, at character " + std::to_string(i_) + ": " + what);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t')) ++i_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string parse_string() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') error("expected a quoted string");
    const size_t start = ++i_;
    while (i_ < s_.size() && s_[i_] != quote) ++i_;
    if (i_ >= s_.size()) error("unterminated string");
    return std::string(s_.substr(start, i_++ - start));
  }
  bool parse_bool() {
    skip_space();
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    error("expected True or False");
  }
  std::vector<int64_t> parse_tuple() {
    expect('(');
    std::vector<int64_t> dims;
    for (;;) {
      skip_space();
      if (peek() == ')') {
        ++i_;
        return dims;
      }
      if (peek() < '0' || peek() > '9') error("expected a non-negative integer in shape");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) error("dimension too large");
        v = v * 10 + (s_[i_++] - '0');
      }
      dims.push_back(v);
      skip_space();
      if (peek() == ',') {
        ++i_;
      } else if (peek() != ')') {
        error("expected ',' or ')' in shape");
      }
    }
  }

  const std::string& path_;
  std::string_view s_;
  size_t i_ = 0;
};

// ---- .safetensors header: a small JSON subset parser (objects, arrays, strings, integers).
struct Json {
  enum class Kind { kObject, kArray, kString, kInteger } kind = Kind::kString;
  std::map<std::string, std::unique_ptr<Json>> object;
  std::vector<std::unique_ptr<Json>> array;
  std::string text;
  int64_t integer = 0;
};

class JsonParser {
 public:
  JsonParser(const std::string& path, std::string_view text) : path_(path), s_(text) {}
  std::unique_ptr<Json> parse_document() {
    auto v = parse_value(0);
    skip_space();
    if (i_ != s_.size()) error("text after the JSON header");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) const {
    fail(path_, "safetensors header, at byte " + std::to_string(i_) + ": " + what);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++i_;
  }
  std::unique_ptr<Json> parse_value(int depth) {
    if (depth > 8) error("nesting too deep");
    skip_space();
    auto v = std::make_unique<Json>();
    const char c = peek();
    if (c == '{') {
      v->kind = Json::Kind::kObject;
      ++i_;
      skip_space();
      if (peek() == '}') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_space();
        std::string key = parse_string();
        expect(':');
        if (v->object.count(key)) error("duplicate key \"" + key + "\"");
        v->object.emplace(std::move(key), parse_value(depth + 1));
        skip_space();
        if (peek() == ',') {
          ++i_;
        } else if (peek() == '}') {
          ++i_;
          return v;
        } else {
          error("expected ',' or '}'");
        }
      }
    }
    if (c == '[') {
      v->kind = Json::Kind::kArray;
      ++i_;
      skip_space();
      if (peek() == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        v->array.push_back(parse_value(depth + 1));
        skip_space();
        if (peek() == ',') {
          ++i_;
        } else if (peek() == ']') {
          ++i_;
          return v;
        } else {
          error("expected ',' or ']'");
        }
      }
    }
    if (c == '"') {
      v->kind = Json::Kind::kString;
      v->text = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v->kind = Json::Kind::kInteger;
      const bool negative = c == '-';
      if (negative) ++i_;
      if (peek() < '0' || peek() > '9') error("expected digits");
      int64_t n = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (n > (std::numeric_limits<int64_t>::max() - 9) / 10) error("integer too large");
        n = n * 10 + (s_[i_++] - '0');
      }
      if (peek() == '.' || peek() == 'e' || peek() == 'E') error("expected an integer");
      v->integer = negative ? -n : n;
      return v;
    }
    error("expected an object, array, string or integer");
  }
  std::string parse_string() {
    if (peek() != '"') error("expected a string");
    ++i_;
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) error("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error("control character in string");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (i_ >= s_.size()) error("unterminated escape");
      const char e = s_[i_++];
      switch (e) {
        case '"':
          out.push_back('"');
          break;
        case '\\':
          out.push_back('\\');
          break;
        case '/':
          out.push_back('/');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          // Names in checkpoints are ASCII; other code points are kept as UTF-8.
          if (i_ + 4 > s_.size()) error("short \\u escape");
          unsigned code = 0;
          for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            code <<= 4;
            if (h >= '0' && h <= '9')
              code |= h - '0';
            else if (h >= 'a' && h <= 'f')
              code |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F')
              code |= h - 'A' + 10;
            else
              error("bad hex digit in \\u escape");
          }
          if (code < 0x80) {
            out.push_back(static_cast<char>(code));
          } else if (code < 0x800) {
            out.push_back(static_cast<char>(0xc0 | (code >> 6)));
            out.push_back(static_cast<char>(0x80 | (code & 0x3f)));
          } else {
            out.push_back(static_cast<char>(0xe0 | (code >> 12)));
            out.push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
            out.push_back(static_cast<char>(0x80 | (code & 0x3f)));
          }
          break;
        }
        default:
          error(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  const std::string& path_;
  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {
      // Subnormal: normalise.
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mantissa & 0x3ff) << 13;
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | mantissa << 13;
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  return std::bit_cast<float>(bits);
}

float bfloat16_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

NpyHeader read_npy_header(std::istream& in, const std::string& name) {
  unsigned char preamble[12];
  if (!in.read(reinterpret_cast<char*>(preamble), 8)) fail(name, "too short for a .npy file");
  if (std::memcmp(preamble, "\x93NUMPY", 6) != 0) fail(name, "bad magic (not a .npy file)");
  const int major = preamble[6];
  const int minor = preamble[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
    fail(name, "unsupported .npy version " + std::to_string(major) + "." + std::to_string(minor));
  }
  const int length_bytes = major == 1 ? 2 : 4;
  if (!in.read(reinterpret_cast<char*>(preamble + 8), length_bytes)) {
    fail(name, "truncated header length");
  }
  const uint64_t header_length = little_endian(preamble + 8, length_bytes);
  // NumPy pads headers to 64 bytes; anything near this bound is not a .npy header.
  if (header_length > (uint64_t{1} << 20)) {
    fail(name, "npy header of " + std::to_string(header_length) + " bytes is implausible");
  }
  std::string header(header_length, '\0');
  if (!in.read(header.data(), static_cast<std::streamsize>(header_length))) {
    fail(name, "truncated header");
  }
  if (header.empty() || header.back() != '\n') fail(name, "npy header does not end in a newline");
  NpyHeader h;
  PyDictParser(name, std::string_view(header).substr(0, header.size() - 1))
      .parse(h.descr, h.fortran_order, h.shape);
  return h;
}

FloatTensor load_npy(const std::string& path) {
  std::ifstream in = open_binary(path);
  const uint64_t size = file_size(in);
  if (size < 10) fail(path, "too short for a .npy file");
  const NpyHeader header = read_npy_header(in, path);
  const auto data_start = static_cast<uint64_t>(in.tellg());
  const std::string& descr = header.descr;
  const bool fortran_order = header.fortran_order;
  FloatTensor tensor;
  tensor.shape = header.shape;
  DType dtype;
  if (descr == "<f4") {
    dtype = DType::kF32;
  } else if (descr == "<f2") {
    dtype = DType::kF16;
  } else {
    fail(path, "unsupported dtype '" + descr + "' (expected '<f4' or '<f2')");
  }
  if (fortran_order) fail(path, "Fortran-order arrays are not supported (save in C order)");
  const uint64_t count = element_count(path, tensor.shape);
  const uint64_t data_bytes = count * item_bytes(dtype);
  if (size - data_start < data_bytes) {
    fail(path, "truncated data: " + std::to_string(size - data_start) + " bytes for " +
                   std::to_string(data_bytes) + " expected");
  }
  if (size - data_start > data_bytes) {
    fail(path, std::to_string(size - data_start - data_bytes) + " bytes after the data");
  }
  std::vector<unsigned char> raw(data_bytes);
  in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(data_bytes));
  if (!in) fail(path, "read error in data");
  tensor.values.resize(count);
  convert(raw.data(), dtype, tensor.values);
  return tensor;
}

FloatTensor load_safetensors(const std::string& path, const std::string& tensor_name) {
  std::ifstream in = open_binary(path);
  const uint64_t size = file_size(in);
  unsigned char length_bytes[8];
  if (size < 8 || !in.read(reinterpret_cast<char*>(length_bytes), 8)) {
    fail(path, "too short for a .safetensors file");
  }
  const uint64_t header_length = little_endian(length_bytes, 8);
  if (header_length > size - 8) fail(path, "header length runs past the end of the file");
  if (header_length > (uint64_t{100} << 20)) fail(path, "header larger than 100 MB");
  std::string header(header_length, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_length));
  const auto root = JsonParser(path, header).parse_document();
  if (root->kind != Json::Kind::kObject) fail(path, "header is not a JSON object");
  const auto found = root->object.find(tensor_name);
  if (found == root->object.end() || tensor_name == "__metadata__") {
    fail(path, "no tensor named '" + tensor_name + "'");
  }
  const Json& entry = *found->second;
  const std::string where = "tensor '" + tensor_name + "': ";
  if (entry.kind != Json::Kind::kObject) fail(path, where + "entry is not an object");
  const auto field = [&](const char* name, Json::Kind kind) -> const Json& {
    const auto it = entry.object.find(name);
    if (it == entry.object.end()) fail(path, where + "missing field '" + name + "'");
    if (it->second->kind != kind) fail(path, where + "field '" + name + "' has the wrong type");
    return *it->second;
  };
  const std::string& dtype_name = field("dtype", Json::Kind::kString).text;
  DType dtype;
  if (dtype_name == "F32") {
    dtype = DType::kF32;
  } else if (dtype_name == "F16") {
    dtype = DType::kF16;
  } else if (dtype_name == "BF16") {
    dtype = DType::kBF16;
  } else {
    fail(path, where + "unsupported dtype '" + dtype_name + "' (expected F32, F16 or BF16)");
  }
  FloatTensor tensor;
  for (const auto& d : field("shape", Json::Kind::kArray).array) {
    if (d->kind != Json::Kind::kInteger) fail(path, where + "shape holds a non-integer");
    tensor.shape.push_back(d->integer);
  }
  const auto& offsets = field("data_offsets", Json::Kind::kArray).array;
  if (offsets.size() != 2 || offsets[0]->kind != Json::Kind::kInteger ||
      offsets[1]->kind != Json::Kind::kInteger) {
    fail(path, where + "data_offsets must be two integers");
  }
  const int64_t begin = offsets[0]->integer;
  const int64_t end = offsets[1]->integer;
  const uint64_t data_size = size - 8 - header_length;
  if (begin < 0 || end < begin || static_cast<uint64_t>(end) > data_size) {
    fail(path, where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] outside the " + std::to_string(data_size) + "-byte data section");
  }
  const uint64_t count = element_count(path, tensor.shape);
  if (static_cast<uint64_t>(end - begin) != count * item_bytes(dtype)) {
    fail(path, where + "data_offsets span " + std::to_string(end - begin) +
                   " bytes but the shape and dtype need " +
                   std::to_string(count * item_bytes(dtype)));
  }
  std::vector<unsigned char> raw(static_cast<size_t>(end - begin));
  in.seekg(static_cast<std::streamoff>(8 + header_length + begin));
  in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
  if (!in) fail(path, where + "read error in data");
  tensor.values.resize(count);
  convert(raw.data(), dtype, tensor.values);
  return tensor;
}

}  // namespace moesim
