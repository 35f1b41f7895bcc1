// Helpers shared by the trace tests: a scratch folder per test and small trace builders.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "models/trace/trace_format.h"

#include "tests/scratch_dir.h"

namespace moesim::test {

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace moesim::test
