// main() of the benchmark programs that run gate GEMMs: OpenBLAS kernels that fit the CPU, as
// the moesim command picks them, and their name in the benchmark context (`blas_core`).
#pragma once

#include <benchmark/benchmark.h>

#include "models/router/blas_kernels.h"

namespace moesim {

inline int run_benchmarks_on_fitting_blas(int argc, char** argv) {
  reexec_with_fitter_blas_core(argv);
  // As moesim does, so that the benchmarks simulate what `moesim run` does.
  run_gemms_on_calling_thread();
  benchmark::AddCustomContext("blas_core", blas_core_name());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace moesim
