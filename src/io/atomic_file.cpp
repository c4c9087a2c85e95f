// Publishing outputs: temporary name, fsync, rename, fsync of the folder.
#include "kintsugi/io/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

namespace fs = std::filesystem;

fs::path tmp_path_of(const fs::path& target) {
  return fs::path(target.string() + ".tmp");
}
fs::path prev_path_of(const fs::path& target) {
  return fs::path(target.string() + ".prev");
}

void fsync_path(const fs::path& p, bool directory) {
  const fs::path q = p.empty() ? fs::path(".") : p;
  const int fd =
      ::open(q.c_str(), directory ? (O_RDONLY | O_DIRECTORY | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC));
  if (fd < 0) throw_runtime("{}: cannot open to fsync: {}", q.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !(directory && (err == EINVAL || err == EROFS || err == ENOTSUP)))
    throw_runtime("{}: fsync failed: {}", q.string(), std::strerror(err));
}

namespace {

void rename_over(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw_runtime("cannot rename {} to {}: {}", from.string(), to.string(), std::strerror(errno));
}

fs::path parent_of(const fs::path& p) {
  const fs::path dir = p.parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

// Makes <target>.prev a complete copy of the current <target>, atomically.
void keep_previous(const fs::path& target) {
  const fs::path prev = prev_path_of(target);
  const fs::path prev_tmp(prev.string() + ".tmp");
  ::unlink(prev_tmp.c_str());
  if (::link(target.c_str(), prev_tmp.c_str()) != 0) {
    if (errno == ENOENT) return;  // no previous version yet
    // No hard links here (some network filesystems): copy, then fsync.
    std::error_code ec;
    fs::copy_file(target, prev_tmp, fs::copy_options::overwrite_existing, ec);
    if (ec)
      throw_runtime("cannot copy {} to {}: {}", target.string(), prev_tmp.string(), ec.message());
    fsync_path(prev_tmp, false);
  }
  rename_over(prev_tmp, prev);
}

}  // namespace

void publish(const fs::path& tmp, const fs::path& target) {
  fsync_path(tmp, fs::is_directory(tmp));
  rename_over(tmp, target);
  fsync_path(parent_of(target), true);
}

void write_file_synced(const fs::path& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_runtime("{}: cannot create: {}", path.string(), std::strerror(errno));
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t w = ::write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      const int err = errno;
      ::close(fd);
      throw_runtime("{}: write failed: {}", path.string(), std::strerror(err));
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  if (::close(fd) != 0 || rc != 0)
    throw_runtime("{}: fsync/close failed: {}", path.string(),
                  std::strerror(rc != 0 ? err : errno));
}

void atomic_replace(const fs::path& target, const std::function<void(const fs::path& tmp)>& write,
                    KeepPrevious keep) {
  const fs::path tmp = tmp_path_of(target);
  ::unlink(tmp.c_str());
  try {
    write(tmp);
    fsync_path(tmp, false);
    if (keep == KeepPrevious::Yes) keep_previous(target);
    rename_over(tmp, target);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_path(parent_of(target), true);
}

void write_file_atomic(const fs::path& target, std::string_view bytes) {
  atomic_replace(target, [&](const fs::path& tmp) { write_file_synced(tmp, bytes); });
}

}  // namespace kintsugi
