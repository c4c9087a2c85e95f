// Catch2 main that brings MPI up first, so [mpi] tests can run under mpirun.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "kintsugi/dist/mpi.hpp"

int main(int argc, char** argv) {
  kintsugi::MpiSession mpi(&argc, &argv);
  const int rc = Catch::Session().run(argc, argv);
  // With several ranks a failure on one must fail the whole run.
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
