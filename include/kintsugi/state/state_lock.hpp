#pragma once
// One writer per state. `optimize` and `baselines` hold an exclusive advisory
// lock on "<state>.lock" (beside the state, after following a symbolic link
// at the state's path) for their whole run; the file holds who took it (pid,
// host, when, verb). A second run is refused with that line (InputError, exit
// 2). The lock is an open-file-description lock (fcntl F_OFD_SETLK; classic
// POSIX F_SETLK on kernels without it): the kernel drops it when the process
// ends, SIGKILL included, and NFS (NLM or NFSv4) and Lustre mounted with
// `flock` carry it between nodes. The lock file is left in place after the
// run (removing it would let a third run lock a file a second run has just
// opened); its text is cleared when the lock is released.
#include <filesystem>
#include <string>
#include <string_view>

namespace kintsugi {

// "<state>.lock", beside the file a write to `state` lands on.
std::filesystem::path lock_path_of(const std::filesystem::path& state);

class StateLock {
 public:
  // Takes the lock or throws: InputError "STATE: in use by another run (pid P
  // on host H, since T, kintsugi VERB) ..." when another process holds it, or
  // when the lock file cannot be created or is not a regular file;
  // InputError also when the filesystem refuses locks (ENOLCK, ENOSYS,
  // EOPNOTSUPP: e.g. Lustre mounted without flock). `verb` is recorded.
  static StateLock acquire(const std::filesystem::path& state, std::string_view verb);
  StateLock(StateLock&& other) noexcept;
  StateLock& operator=(StateLock&&) = delete;
  StateLock(const StateLock&) = delete;
  ~StateLock();  // clears the holder text and releases the lock
  const std::filesystem::path& path() const { return path_; }

 private:
  StateLock(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace kintsugi
