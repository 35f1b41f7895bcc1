// The one Catch2 main shared by every test executable: gate GEMMs on the calling thread, as in
// moesim, so that tests route exactly as the command does on any core count.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "models/router/blas_kernels.h"

int main(int argc, char** argv) {
  moesim::run_gemms_on_calling_thread();
  return Catch::Session().run(argc, argv);
}
