// One writer per state: the lock file beside the state, its holder named.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/state/state_lock.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

// Tries the lock in a child process (a lock held by this process must refuse
// another process, whatever the lock's kind). The child's exit code: 0 it got
// the lock, 3 refused with a message naming `pid`, 4 refused otherwise.
int lock_in_child(const fs::path& state, pid_t holder) {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      StateLock l = StateLock::acquire(state, "optimize");
      ::_exit(0);
    } catch (const InputError& e) {
      const std::string m = e.what();
      const bool named = m.find(fmt::format("pid {} on host ", holder)) != std::string::npos &&
                         m.find("in use by another run") != std::string::npos &&
                         m.find("kintsugi baselines") != std::string::npos;
      ::_exit(named ? 3 : 4);
    } catch (...) {
      ::_exit(5);
    }
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("state lock: one holder at a time, named to the second", "[state]") {
  test::TempDir tmp;
  const fs::path state = tmp / "run.h5";
  CHECK(lock_path_of(state) == tmp / "run.h5.lock");
  {
    StateLock held = StateLock::acquire(state, "baselines");
    CHECK(held.path() == tmp / "run.h5.lock");
    const std::string text = test::slurp(tmp / "run.h5.lock");
    CHECK(text.rfind(fmt::format("pid {} on host ", ::getpid()), 0) == 0);
    CHECK(text.find("kintsugi baselines") != std::string::npos);
    CHECK(lock_in_child(state, ::getpid()) == 3);
    CHECK(lock_in_child(state, ::getpid()) == 3);  // still held
    CHECK_FALSE(fs::exists(state));                // the lock never creates the state
  }
  // Released: the next run takes it, and the holder's line was cleared.
  CHECK(test::slurp(tmp / "run.h5.lock").empty());
  CHECK(lock_in_child(state, ::getpid()) == 0);
  StateLock again = StateLock::acquire(state, "optimize");
  CHECK(test::slurp(tmp / "run.h5.lock").find("kintsugi optimize") != std::string::npos);
}

TEST_CASE("state lock: a process that dies releases it", "[state]") {
  test::TempDir tmp;
  const fs::path state = tmp / "run.h5";
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    StateLock l = StateLock::acquire(state, "baselines");
    [[maybe_unused]] const ssize_t w = ::write(ready[1], "x", 1);
    ::pause();  // killed below
    ::_exit(0);
  }
  char c;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  CHECK_THROWS_WITH(StateLock::acquire(state, "optimize"),
                    Catch::Contains(fmt::format("pid {} on host", child)));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  StateLock mine = StateLock::acquire(state, "optimize");  // SIGKILL released it
  CHECK(test::slurp(tmp / "run.h5.lock").rfind(fmt::format("pid {} ", ::getpid()), 0) == 0);
}

TEST_CASE("state lock: beside the state's target, and never through a link", "[state]") {
  test::TempDir tmp;
  fs::create_directories(tmp / "real");
  fs::create_symlink(tmp / "real/run.h5", tmp / "link.h5");
  {
    StateLock l = StateLock::acquire(tmp / "link.h5", "optimize");
    CHECK(l.path() == tmp / "real/run.h5.lock");
    CHECK_FALSE(fs::exists(tmp / "link.h5.lock"));
    // Two spellings of one state share one lock.
    CHECK(lock_in_child(tmp / "real/run.h5", ::getpid()) == 4);  // refused (verb differs)
  }
  // A lock file that is a symbolic link or not a file is refused, untouched.
  std::ofstream(tmp / "victim") << "keep";
  fs::create_symlink(tmp / "victim", tmp / "s.h5.lock");
  CHECK_THROWS_AS(StateLock::acquire(tmp / "s.h5", "optimize"), InputError);
  CHECK(test::slurp(tmp / "victim") == "keep");
  fs::create_directories(tmp / "d.h5.lock");
  CHECK_THROWS_AS(StateLock::acquire(tmp / "d.h5", "optimize"), InputError);
  CHECK_THROWS_WITH(StateLock::acquire(tmp / "no/such/dir/s.h5", "optimize"),
                    Catch::Contains("cannot create the state's lock file"));
}
