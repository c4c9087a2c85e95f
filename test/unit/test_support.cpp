#include "test_support.hpp"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <sstream>
#include <stdexcept>

namespace kintsugi::test {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          ("kintsugi-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path source_dir() {
  return KINTSUGI_SOURCE_DIR;
}

std::filesystem::path fixtures_dir() {
  return KINTSUGI_FIXTURES_DIR;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::filesystem::path& p, const std::string& text) {
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

// The CLI's own leak check runs at exit, after MPI_Finalize has unloaded
// Open MPI's components: their allocations, which live until exit, are
// matched to the suppressions (test/lsan-openmpi.supp) only through full
// stacks that reach MPI_Init. The test binary itself checks before
// MPI_Finalize (unit/main.cpp) and keeps ASan's fast unwinder (5x faster on
// allocation-heavy tests).
#if defined(KINTSUGI_TEST_ASAN)
constexpr const char* kChildEnv = "ASAN_OPTIONS=fast_unwind_on_malloc=0 ";
#else
constexpr const char* kChildEnv = "";
#endif

CommandResult run_kintsugi(const std::string& args) {
  TempDir tmp;
  const auto out = tmp / "stdout", err = tmp / "stderr";
  // fmt, not a chain of operator+: GCC 12 at -O2 warns falsely (-Warray-bounds)
  // inside libstdc++ on that chain.
  const std::string cmd = fmt::format("{}{} {} >{} 2>{} </dev/null", kChildEnv, KINTSUGI_BINARY,
                                      args, out.string(), err.string());
  // Run through sh so that a signal shows as 128+N in the shell's status.
  const int status = std::system(cmd.c_str());
  CommandResult r{-1, 0, slurp(out), slurp(err)};
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    if (code > 128) {
      r.signal = code - 128;
    } else {
      r.exit_code = code;
    }
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
  return r;
}

std::vector<CommandResult> run_kintsugi_each(const std::vector<std::string>& args, size_t at_once) {
  std::vector<CommandResult> results;
  for (size_t first = 0; first < args.size(); first += at_once) {
    std::vector<std::future<CommandResult>> running;
    for (size_t i = first; i < std::min(args.size(), first + at_once); ++i)
      running.push_back(std::async(std::launch::async, run_kintsugi, args[i]));
    for (auto& r : running) results.push_back(r.get());
  }
  return results;
}

}  // namespace kintsugi::test
