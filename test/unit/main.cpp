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

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

int main(int argc, char** argv) {
  int worst = 0;
  {
    kintsugi::MpiSession mpi(&argc, &argv);
    const int rc = Catch::Session().run(argc, argv);
    // With several ranks a failure on one must fail the whole run.
    worst = rc;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  }
#if defined(__SANITIZE_ADDRESS__)
  // The leak check runs here, with MPI finalized and the worker threads idle,
  // not during exit-time teardown, where LeakSanitizer's tracer can crash on a
  // thread being torn down (google/sanitizers#1353). A leak ends the process
  // with LeakSanitizer's exit code; the check at exit is then skipped.
  __lsan_do_leak_check();
#endif
  return worst;
}
