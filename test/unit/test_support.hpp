#pragma once
// Helpers shared by the unit tests: temporary folders, paths to sources and
// fixtures, running the CLI.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

// KINTSUGI_TEST_ASAN: this build runs under AddressSanitizer (GCC defines
// __SANITIZE_ADDRESS__; clang 14 answers only __has_feature).
#if defined(__SANITIZE_ADDRESS__)
#define KINTSUGI_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KINTSUGI_TEST_ASAN 1
#endif
#endif

namespace kintsugi::test {

// A fresh folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

std::filesystem::path source_dir();
// A file's bytes ("" when it cannot be read).
std::string slurp(const std::filesystem::path& p);
// Writes `text` to `p` (binary), creating its folders.
void write_file(const std::filesystem::path& p, const std::string& text);
// test/data/fixtures in the checkout (real files written by other tools).
std::filesystem::path fixtures_dir();

struct CommandResult {
  int exit_code;  // -1 when killed by a signal
  int signal;     // the signal, or 0
  std::string out, err;
};
// Runs the kintsugi binary with `args` (a shell-quoted string), capturing output.
CommandResult run_kintsugi(const std::string& args);
// run_kintsugi for each element of `args`, up to `at_once` processes at a time
// (a run mostly waits on its start-up: MPI's, and the sanitizers' in that
// build); the results in the order of `args`. Check them in the caller's
// thread: Catch2's assertions are not thread-safe.
std::vector<CommandResult> run_kintsugi_each(const std::vector<std::string>& args,
                                             size_t at_once = 8);

// Runs `cmd` with sh (a reference script: h5py checks, Python references);
// stdout and stderr together.
struct ShellResult {
  int status;          // exit code, or -1
  std::string output;  // stdout and stderr together
};

inline ShellResult run_shell(const std::string& cmd) {
  ShellResult r{-1, ""};
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  if (st >= 0 && (st & 0x7f) == 0) r.status = (st >> 8) & 0xff;
  return r;
}

}  // namespace kintsugi::test
