// Catch2 main that brings MPI up first, so [mpi] tests can run under mpirun.
#define CATCH_CONFIG_RUNNER
// GCC 12 with -fsanitize=address,undefined reports a false -Wmaybe-uninitialized
// inside std::regex, which Catch2's implementation uses; the warning is off for
// this include only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <catch2/catch.hpp>
#pragma GCC diagnostic pop

#include "kintsugi/dist/mpi.hpp"

int main(int argc, char** argv) {
  kintsugi::MpiSession mpi(&argc, &argv);
  const int rc = Catch::Session().run(argc, argv);
  // With several ranks a failure on one must fail the whole run.
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
