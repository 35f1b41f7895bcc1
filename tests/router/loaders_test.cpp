// The .npy and .safetensors readers on small files written here, byte by byte, and every bad-file
// case they must name.
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

#include "models/router/tensor_file.h"

namespace moesim {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("moesim_router_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le(uint64_t v, int bytes) {
  std::string s;
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

std::string f32_bytes(const std::vector<float>& v) {
  std::string s;
  for (const float x : v) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    s += le(bits, 4);
  }
  return s;
}

// A version-1.0 .npy file with the header padded to a multiple of 64 bytes, as numpy writes it.
std::string npy(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string s = "\x93NUMPY";
  s.push_back(static_cast<char>(major));
  s.push_back('\0');
  s += le(header.size(), major == 1 ? 2 : 4);
  return s + header + data;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string safetensors(const std::string& json, const std::string& data) {
  return le(json.size(), 8) + json + data;
}

}  // namespace

TEST_CASE("npy reader reads float32 and float16, versions 1 and 2", "[router]") {
  const std::string path = temp_path("ok.npy");
  write_file(path, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                       f32_bytes({1, 2, 3, 4, 5, -6.5f})));
  FloatTensor t = load_npy(path);
  CHECK(t.shape == std::vector<int64_t>{2, 3});
  CHECK(t.values == std::vector<float>{1, 2, 3, 4, 5, -6.5f});

  // float16: 1.0 = 0x3c00, -2.0 = 0xc000, 1/3 ~ 0x3555 = 0.333251953125, 2^-24 = 0x0001.
  write_file(path, npy("{'descr': '<f2', 'fortran_order': False, 'shape': (4,), }",
                       le(0x3c00, 2) + le(0xc000, 2) + le(0x3555, 2) + le(0x0001, 2), 2));
  t = load_npy(path);
  CHECK(t.shape == std::vector<int64_t>{4});
  CHECK(t.values == std::vector<float>{1.0f, -2.0f, 0.333251953125f, std::ldexp(1.0f, -24)});
  std::remove(path.c_str());
}

TEST_CASE("npy reader names each bad file", "[router]") {
  const std::string path = temp_path("bad.npy");
  const std::string good_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
  const auto check = [&](const std::string& bytes, const std::string& problem) {
    write_file(path, bytes);
    const std::string e = error_of([&] { load_npy(path); });
    INFO(e);
    CHECK(e.find(path) != std::string::npos);
    CHECK(e.find(problem) != std::string::npos);
  };
  std::string bad_magic = npy(good_dict, f32_bytes({1, 2, 3, 4}));
  bad_magic[1] = 'X';
  check(bad_magic, "bad magic");
  std::string bad_version = npy(good_dict, f32_bytes({1, 2, 3, 4}));
  bad_version[6] = 4;
  check(bad_version, "unsupported .npy version 4.0");
  check(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }",
            f32_bytes({1, 2, 3, 4, 5, 6, 7, 8})),
        "unsupported dtype '<f8'");
  check(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f32_bytes({1, 2, 3, 4})),
        "Fortran-order");
  check(npy(good_dict, f32_bytes({1, 2, 3})), "truncated data");
  check(npy(good_dict, f32_bytes({1, 2, 3, 4, 5})), "bytes after the data");
  check(npy("{'descr': '<f4', 'fortran_order': False, }", ""), "missing key 'shape'");
  check(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", ""),
        "expected a non-negative integer in shape");
  check(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'extra': 1, }",
            f32_bytes({1, 2, 3, 4})),
        "unexpected key 'extra'");
  check(std::string("\x93NUMPY\x01\x00\x50\x00{'descr'", 17), "truncated header");
  check("\x93NU", "too short");
  CHECK(error_of([] { load_npy("/nonexistent/moesim.npy"); }).find("cannot open") !=
        std::string::npos);
  std::remove(path.c_str());
}

TEST_CASE("safetensors reader reads F32, F16 and BF16 tensors by name", "[router]") {
  const std::string path = temp_path("ok.safetensors");
  const std::string json =
      "{\"__metadata__\": {\"format\": \"pt\"}, "
      "\"a\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}, "
      "\"b\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [16, 22]}, "
      "\"c\\u002ehalf\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [22, 24]}}";
  // bf16 of 1.0 = 0x3f80, -3.0 = 0xc040, 0.5 = 0x3f00; f16 0.5 = 0x3800.
  const std::string data =
      f32_bytes({1.5f, -2, 3, 4}) + le(0x3f80, 2) + le(0xc040, 2) + le(0x3f00, 2) + le(0x3800, 2);
  write_file(path, safetensors(json, data));
  FloatTensor a = load_safetensors(path, "a");
  CHECK(a.shape == std::vector<int64_t>{2, 2});
  CHECK(a.values == std::vector<float>{1.5f, -2, 3, 4});
  FloatTensor b = load_safetensors(path, "b");
  CHECK(b.values == std::vector<float>{1.0f, -3.0f, 0.5f});
  FloatTensor c = load_safetensors(path, "c.half");
  CHECK(c.values == std::vector<float>{0.5f});
  std::remove(path.c_str());
}

TEST_CASE("safetensors reader names each bad file", "[router]") {
  const std::string path = temp_path("bad.safetensors");
  const auto check = [&](const std::string& bytes, const std::string& tensor,
                         const std::string& problem) {
    write_file(path, bytes);
    const std::string e = error_of([&] { load_safetensors(path, tensor); });
    INFO(e);
    CHECK(e.find(path) != std::string::npos);
    CHECK(e.find(problem) != std::string::npos);
  };
  const std::string ok_json =
      "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
  check(safetensors(ok_json, f32_bytes({1, 2})), "missing", "no tensor named 'missing'");
  check(safetensors("{\"w\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}",
                    f32_bytes({1, 2})),
        "w", "unsupported dtype 'I64'");
  check(safetensors(ok_json, f32_bytes({1})), "w", "outside the 4-byte data section");
  check(safetensors("{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
                    f32_bytes({1, 2})),
        "w", "need 12");
  check(safetensors("{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", f32_bytes({1, 2})), "w",
        "missing field 'data_offsets'");
  check(safetensors("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]",
                    f32_bytes({1, 2})),
        "w", "expected ',' or '}'");
  check(le(1000, 8) + "{}", "w", "header length runs past the end");
  check("abc", "w", "too short");
  std::remove(path.c_str());
}

}  // namespace moesim
