// The state's lock file: fcntl locks, the holder's text inside.
#include "kintsugi/state/state_lock.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/system.hpp"
#include "kintsugi/io/atomic_file.hpp"

namespace kintsugi {

namespace fs = std::filesystem;

namespace {

// The holder's line, as it wrote it (empty while it has not written it yet).
std::string holder_text(int fd) {
  char buf[512];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return {};
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

int try_lock(int fd) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
#ifdef F_OFD_SETLK
  if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return 0;
  if (errno != EINVAL) return -1;
  fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
#endif
  return ::fcntl(fd, F_SETLK, &fl);
}

}  // namespace

fs::path lock_path_of(const fs::path& state) {
  return fs::path(resolve_write_target(state).string() + ".lock");
}

StateLock StateLock::acquire(const fs::path& state, std::string_view verb) {
  const fs::path lock = lock_path_of(state);
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    const int err = errno;
    if (err == ELOOP)
      throw_input("{}: the state's lock file is a symbolic link; remove it", lock.string());
    throw_input("{}: cannot create the state's lock file: {} (is the state's folder writable?)",
                lock.string(), std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw_input("{}: the state's lock file is not a regular file", lock.string());
  }
  if (try_lock(fd) != 0) {
    const int err = errno;
    const std::string holder = holder_text(fd);
    ::close(fd);
    if (err == EACCES || err == EAGAIN)
      throw_input(
          "{}: in use by another run ({}; lock {}): one optimize or baselines per state at a "
          "time; wait for it to end or pass another --state",
          state.string(), holder.empty() ? "its holder has not recorded itself yet" : holder,
          lock.string());
    throw_input(
        "{}: the filesystem refused a lock on {}: {} (on Lustre, mount with -o flock; see "
        "docs/operations.md)",
        state.string(), lock.string(), std::strerror(err));
  }
  const std::string text = fmt::format("pid {} on host {}, since {}, kintsugi {}\n", ::getpid(),
                                       host_name(), now_utc(), verb);
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno;
    ::close(fd);
    throw_runtime("{}: cannot write the state's lock file: {}", lock.string(), std::strerror(err));
  }
  return StateLock(fd, lock);
}

StateLock::StateLock(StateLock&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
}

StateLock::~StateLock() {
  if (fd_ < 0) return;
  // Still holding the lock: no other run reads a half-cleared text. A failure
  // here only leaves a stale line, which the next holder overwrites.
  [[maybe_unused]] const int rc = ::ftruncate(fd_, 0);
  ::close(fd_);
}

}  // namespace kintsugi
