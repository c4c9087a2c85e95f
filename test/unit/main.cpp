// MPI for the unit tests, so [mpi] tests can run under mpirun. The runner is
// Catch2's own main from Debian's prebuilt libCatch2WithMain (compiling
// Catch2's implementation took 17 s of each of CI's two builds); this
// listener brings MPI up before the first test and down after the last.
// Catch2's listener interface is only declared with external interfaces on,
// so this file skips the precompiled catch.hpp (test/CMakeLists.txt).
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>
#include <memory>

#include "kintsugi/dist/mpi.hpp"

#if defined(KINTSUGI_LEAK_CHECK)
#include <sanitizer/lsan_interface.h>
#endif

namespace {

struct MpiListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;

  void testRunStarting(const Catch::TestRunInfo& info) override {
    TestEventListenerBase::testRunStarting(info);
    // MPI_Init accepts null arguments; mpirun passes the ranks none of its own.
    mpi = std::make_unique<kintsugi::MpiSession>(nullptr, nullptr);
  }

  void testRunEnded(const Catch::TestRunStats& stats) override {
    TestEventListenerBase::testRunEnded(stats);
#if defined(KINTSUGI_LEAK_CHECK)
    // The leak check runs here, after the last test and before MPI_Finalize:
    // every test's memory is released by now, while Open MPI's long-lived
    // allocations are still reachable from its loaded components (after
    // MPI_Finalize unloads them, matching them to suppressions needs ASan's
    // slow full unwinder on every allocation). Not at exit either, where
    // LeakSanitizer's tracer can crash on a thread being torn down
    // (google/sanitizers#1353). A leak ends the process with LeakSanitizer's
    // exit code; the check at exit is then skipped.
    __lsan_do_leak_check();
#endif
    // Every rank runs the same tests, so each reaches this point; mpirun's
    // exit code is non-zero when any rank's is.
    mpi.reset();
  }

  std::unique_ptr<kintsugi::MpiSession> mpi;
};

}  // namespace

CATCH_REGISTER_LISTENER(MpiListener)
