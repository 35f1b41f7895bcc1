// Which OpenBLAS kernel family runs the gate GEMMs, and a fitter one when OpenBLAS, not knowing
// a CPU newer than itself, fell back to kernels that leave the CPU's vector units unused.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace moesim {

// The vector instructions a CPU (and its operating system) supports, as far as the choice of
// BLAS kernels goes.
struct CpuVectorFeatures {
  bool avx2_fma = false;
  bool avx512 = false;  // F, CD, BW, DQ and VL: what OpenBLAS's SkylakeX kernels use
};

CpuVectorFeatures this_cpu_features();

// The core name OpenBLAS chose (openblas_get_corename), e.g. "Cooperlake" or "Prescott".
std::string blas_core_name();

// The OPENBLAS_CORETYPE to ask for instead of `chosen_core`, or none when the choice already
// uses the CPU's widest vectors that matter here. Only a pre-AVX2 choice on a CPU with AVX2 is
// replaced: a known CPU's own choice (e.g. "Zen" on an AVX-512 AMD part) is OpenBLAS's call.
std::optional<std::string> fitter_blas_core(std::string_view chosen_core, CpuVectorFeatures cpu);

// For a program's main(): when OPENBLAS_CORETYPE is unset and fitter_blas_core names a better
// family for this CPU, sets it and re-executes the program with the same arguments (OpenBLAS
// reads the variable only when it is loaded). Returns only if nothing was to be done or the
// re-execution failed, so a run is never stopped by it. On Debian 12's OpenBLAS 0.3.21 an Intel
// Emerald Rapids CPU gets "Prescott" (SSE3) kernels, four times slower on DeepSeek-V3's gate.
void reexec_with_fitter_blas_core(char** argv);

// For a program's main(), before any routing: every gate GEMM runs on its caller's thread.
// Results depend on it: OpenBLAS's threaded sgemm splits a product differently and rounds some
// logits differently, which moves near-tied routing decisions (the 5-layer cut of the 256-GPU
// step: 381,892 rate recomputations with a 2-thread OpenBLAS, 381,884 with one). moesim's
// results are those of one BLAS thread per routing thread, whatever the core count.
void run_gemms_on_calling_thread();

}  // namespace moesim
