#pragma once
// Errors and exit codes. Two kinds of failure reach the user:
//   InputError   -> exit 2: bad input or usage (a config, a checkpoint, a flag).
//   RuntimeError -> exit 1: anything else that went wrong while running.
// Messages are one line and name the file, key or tensor and what is wrong.
#include <fmt/format.h>

#include <cerrno>
#include <stdexcept>
#include <string>

namespace kintsugi {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitInput = 2;

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void throw_input(fmt::format_string<Args...> f, Args&&... args) {
  throw InputError(fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void throw_runtime(fmt::format_string<Args...> f, Args&&... args) {
  throw RuntimeError(fmt::format(f, std::forward<Args>(args)...));
}

// Whether an errno from a file operation blames the path the user gave (no
// such file, not a folder, a file in the way, no permission, read-only, too
// long, a symlink loop): an InputError, exit 2. Others (a full disk, an I/O
// error) are RuntimeErrors, exit 1.
inline bool is_path_errno(int err) {
  return err == ENOENT || err == ENOTDIR || err == EISDIR || err == EACCES || err == EPERM ||
         err == EEXIST || err == ENAMETOOLONG || err == ELOOP || err == EROFS;
}

}  // namespace kintsugi

// An internal invariant; failure is a bug, reported with file and line.
#define KS_CHECK(cond, msg)                                                              \
  do {                                                                                   \
    if (!(cond))                                                                         \
      throw ::kintsugi::RuntimeError(                                                    \
          ::fmt::format("{}:{}: check failed: {}: {}", __FILE__, __LINE__, #cond, msg)); \
  } while (0)
