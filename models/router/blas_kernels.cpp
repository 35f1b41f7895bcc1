#include "models/router/blas_kernels.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>

extern "C" char* openblas_get_corename(void);
extern "C" void openblas_set_num_threads(int threads);

namespace moesim {

CpuVectorFeatures this_cpu_features() {
  CpuVectorFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  f.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  f.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
#endif
  return f;
}

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name == nullptr ? std::string() : std::string(name);
}

std::optional<std::string> fitter_blas_core(std::string_view chosen_core, CpuVectorFeatures cpu) {
  // OpenBLAS's x86 families without AVX2 kernels; "Prescott" is also what it falls back to
  // for a CPU it cannot place.
  constexpr std::array<std::string_view, 7> kPreAvx2 = {
      "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge", "Atom"};
  if (std::ranges::find(kPreAvx2, chosen_core) == kPreAvx2.end()) return std::nullopt;
  // Not "Cooperlake" on AVX-512 BF16 parts: its single-precision kernels are SkylakeX's, and
  // OpenBLAS 0.3.21 does not take that name in OPENBLAS_CORETYPE.
  if (cpu.avx512) return "SkylakeX";
  if (cpu.avx2_fma) return "Haswell";
  return std::nullopt;
}

void reexec_with_fitter_blas_core(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's (or a re-run's) choice
  const auto core = fitter_blas_core(blas_core_name(), this_cpu_features());
  if (!core) return;
  if (::setenv("OPENBLAS_CORETYPE", core->c_str(), 1) != 0) return;
  ::execv("/proc/self/exe", argv);
  // Not re-executed (no /proc, say): carry on with the kernels OpenBLAS chose.
  ::unsetenv("OPENBLAS_CORETYPE");
}

void run_gemms_on_calling_thread() {
  openblas_set_num_threads(1);
}

}  // namespace moesim
