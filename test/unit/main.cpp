// Catch2 main that brings MPI up first, so [mpi] tests can run under mpirun.
#define CATCH_CONFIG_RUNNER
// Compiled without sanitizer instrumentation (test/CMakeLists.txt), so GCC's
// false -Wmaybe-uninitialized inside Catch2's std::regex under ASan does not
// arise here.
#include <catch2/catch.hpp>

#include "kintsugi/dist/mpi.hpp"

#if defined(KINTSUGI_LEAK_CHECK)
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
#if defined(KINTSUGI_LEAK_CHECK)
  // The leak check runs here, with MPI finalized and the worker threads idle,
  // not during exit-time teardown, where LeakSanitizer's tracer can crash on a
  // thread being torn down (google/sanitizers#1353). A leak ends the process
  // with LeakSanitizer's exit code; the check at exit is then skipped.
  __lsan_do_leak_check();
#endif
  return worst;
}
