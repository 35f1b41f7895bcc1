// The OpenBLAS kernel choice: which families are replaced on which CPUs (hand-worked cases),
// and that the moesim command really runs on the fitter family when one exists.
#include "models/router/blas_kernels.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "tests/commands/commands_test_util.h"

namespace moesim {
namespace {

constexpr CpuVectorFeatures kSse{false, false};
constexpr CpuVectorFeatures kAvx2{true, false};
constexpr CpuVectorFeatures kAvx512{true, true};

TEST_CASE("a pre-AVX2 OpenBLAS choice on a wider CPU is replaced by the widest family",
          "[router][blas]") {
  // Emerald Rapids under OpenBLAS 0.3.21: unknown model, "Prescott" fallback.
  CHECK(fitter_blas_core("Prescott", kAvx512) == "SkylakeX");
  CHECK(fitter_blas_core("Nehalem", kAvx512) == "SkylakeX");
  CHECK(fitter_blas_core("Sandybridge", kAvx2) == "Haswell");
  // Nothing better to run on.
  CHECK_FALSE(fitter_blas_core("Prescott", kSse));
  // OpenBLAS knew the CPU: its choice stands, even where wider vectors exist.
  CHECK_FALSE(fitter_blas_core("Haswell", kAvx512));
  CHECK_FALSE(fitter_blas_core("Zen", kAvx512));
  CHECK_FALSE(fitter_blas_core("SkylakeX", kAvx512));
  CHECK_FALSE(fitter_blas_core("Cooperlake", kAvx512));
  CHECK_FALSE(fitter_blas_core("", kAvx512));
}

TEST_CASE("this CPU's features are consistent", "[router][blas]") {
  const CpuVectorFeatures cpu = this_cpu_features();
  if (cpu.avx512) CHECK(cpu.avx2_fma);  // every AVX-512 x86 CPU has AVX2 and FMA
  CHECK_FALSE(blas_core_name().empty());
}

// This test process keeps OpenBLAS's own choice; the command must end up on the fitter one,
// unless OPENBLAS_CORETYPE is set, which it leaves alone.
TEST_CASE("moesim run reports the kernels it ran on, the fitter ones when there are",
          "[router][blas]") {
  const test::ScratchDir dir("blas_kernels_test");
  std::ofstream(dir / "tiny.pbtxt") << test::tiny_scenario(
      "ep: 8", "kind: PREFILL tokens_per_gpu: 64 sequence_length: 64 steps: 1");
  const std::string own = blas_core_name();
  const bool user_set = std::getenv("OPENBLAS_CORETYPE") != nullptr;
  const std::string expected =
      user_set ? own : fitter_blas_core(own, this_cpu_features()).value_or(own);
  const std::string command = std::string(MOESIM_BUILD_DIR) + "/cli/moesim run " +
                              (dir / "tiny.pbtxt").string() + " --format json --no-progress";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(command.c_str(), "r"), ::pclose);
  REQUIRE(pipe != nullptr);
  std::string out;
  char buffer[4096];
  while (const size_t n = std::fread(buffer, 1, sizeof buffer, pipe.get())) out.append(buffer, n);
  INFO(out);
  CHECK(out.find("\"blas_core\": \"" + expected + "\"") != std::string::npos);
}

}  // namespace
}  // namespace moesim
