#include "kintsugi/state/atomic_file.hpp"

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

namespace {

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) throw_runtime("{}: cannot open to fsync: {}", p.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some filesystems refuse fsync on folders; the rename is still atomic there.
  if (rc != 0 && !(directory && (err == EINVAL || err == EROFS || err == ENOTSUP)))
    throw_runtime("{}: fsync failed: {}", p.string(), std::strerror(err));
}

void rename_over(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw_runtime("cannot rename {} to {}: {}", from.string(), to.string(), std::strerror(errno));
}

// Makes <target>.prev a complete copy of the current <target>, atomically.
void keep_previous(const fs::path& target) {
  const fs::path prev = prev_path_of(target);
  const fs::path prev_tmp(prev.string() + ".tmp");
  ::unlink(prev_tmp.c_str());
  if (::link(target.c_str(), prev_tmp.c_str()) != 0) {
    if (errno == ENOENT) return;  // no previous state yet
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

void atomic_replace(const fs::path& target, const std::function<void(const fs::path& tmp)>& write) {
  const fs::path tmp = tmp_path_of(target);
  ::unlink(tmp.c_str());
  try {
    write(tmp);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_path(tmp, false);
  keep_previous(target);
  rename_over(tmp, target);
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  fsync_path(dir, true);
}

}  // namespace kintsugi
