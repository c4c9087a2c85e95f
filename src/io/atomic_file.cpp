// Publishing outputs: temporary name, fsync, rename, fsync of the folder.
#include "kintsugi/io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

namespace fs = std::filesystem;

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

// "<base>.<tag>-XXXXXX" with six random letters and digits.
std::string random_name(const fs::path& base, std::string_view tag) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  std::string name = base.string() + "." + std::string(tag) + "-";
  for (int i = 0; i < 6; ++i) name += kChars[gen() % (sizeof(kChars) - 1)];
  return name;
}

// Makes <target>.prev a complete copy of the current <target>, atomically,
// through a link (or copy) under a fresh name of this call's own.
void keep_previous(const fs::path& target) {
  const fs::path prev = prev_path_of(target);
  fs::path prev_tmp;
  for (int attempt = 0;; ++attempt) {
    prev_tmp = random_name(prev, "tmp");
    if (::link(target.c_str(), prev_tmp.c_str()) == 0) break;
    if (errno == ENOENT) return;  // no previous version yet
    if (errno == EEXIST && attempt < 100) continue;
    // No hard links here (some network filesystems): copy into a new file of
    // our own, then fsync.
    prev_tmp = create_unique_file(prev, "tmp");
    std::error_code ec;
    fs::copy_file(target, prev_tmp, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      ::unlink(prev_tmp.c_str());
      throw_runtime("cannot copy {} to {}: {}", target.string(), prev_tmp.string(), ec.message());
    }
    fsync_path(prev_tmp, false);
    break;
  }
  rename_over(prev_tmp, prev);
}

}  // namespace

fs::path create_unique_file(const fs::path& target, std::string_view tag) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string name = random_name(target, tag);
    // O_EXCL: the name was free and the file is this call's; 0644 less the umask.
    const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::close(fd);
      return fs::path(name);
    }
    if (errno != EEXIST) break;
  }
  throw_runtime("{}: cannot create a temporary file beside it: {}", target.string(),
                std::strerror(errno));
}

fs::path unique_dir_beside(const fs::path& target, std::string_view tag) {
  std::string name = target.string();
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  name += fmt::format(".{}-XXXXXX", tag);
  if (::mkdtemp(name.data()) == nullptr)
    throw_runtime("{}: cannot create a temporary folder beside it: {}", target.string(),
                  std::strerror(errno));
  return fs::path(name);
}

fs::path resolve_write_target(const fs::path& p) {
  fs::path q = p;
  for (int i = 0; i < 40; ++i) {
    std::error_code ec;
    const auto st = fs::symlink_status(q, ec);
    if (ec || !fs::is_symlink(st)) return q;
    const fs::path to = fs::read_symlink(q, ec);
    if (ec) throw_runtime("{}: cannot read the symbolic link: {}", q.string(), ec.message());
    q = to.is_absolute() ? to : q.parent_path() / to;
  }
  throw_input("{}: too many levels of symbolic links", p.string());
}

namespace {

struct FileId {
  dev_t dev;
  ino_t ino;
  bool operator==(const FileId& o) const { return dev == o.dev && ino == o.ino; }
};

std::optional<FileId> id_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

// Absolute, symbolic links resolved as far as the path exists, no trailing "/".
fs::path resolved(const fs::path& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  if (ec) a = p;
  fs::path c = fs::weakly_canonical(a, ec);
  fs::path r = ec ? a.lexically_normal() : c;
  if (!r.has_filename() && r.has_parent_path() && r != r.root_path()) r = r.parent_path();
  return r;
}

// The ids of the existing proper ancestors of `p`, innermost first.
std::vector<FileId> ancestor_ids(const fs::path& p) {
  std::vector<FileId> out;
  for (fs::path q = p; q.has_relative_path();) {
    q = q.parent_path();
    if (auto id = id_of(q)) out.push_back(*id);
  }
  return out;
}

bool holds(const std::vector<FileId>& ids, const FileId& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

void check_output_apart(std::string_view what, const fs::path& output,
                        const std::vector<NamedPath>& inputs) {
  const fs::path out = resolved(output);
  const auto out_id = id_of(out);
  const auto out_up = ancestor_ids(out);
  for (const auto& in : inputs) {
    if (in.path.empty()) continue;
    const fs::path ip = resolved(in.path);
    const auto in_id = id_of(ip);
    if (!in_id) continue;
    const char* how = nullptr;
    if ((out_id && *out_id == *in_id) || (!out_id && out == ip))
      how = "is";
    else if (out_id && holds(ancestor_ids(ip), *out_id))
      how = "contains";
    else if (holds(out_up, *in_id))
      how = "lies inside";
    if (how)
      throw_input("{} {}: {} the {} {}; refusing to write over an input", what, output.string(),
                  how, in.what, in.path.string());
  }
}

void publish_new(const fs::path& tmp, const fs::path& target) {
  fsync_path(tmp, fs::is_directory(tmp));
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    if (err == EEXIST)
      throw_runtime("{}: appeared while the output was being written; nothing was replaced",
                    target.string());
    if (err != EINVAL && err != ENOSYS)
      throw_runtime("cannot rename {} to {}: {}", tmp.string(), target.string(),
                    std::strerror(err));
    // A filesystem without RENAME_NOREPLACE: check, then rename.
    std::error_code ec;
    if (fs::exists(fs::symlink_status(target, ec)))
      throw_runtime("{}: appeared while the output was being written; nothing was replaced",
                    target.string());
    rename_over(tmp, target);
  }
  fsync_path(parent_of(target), true);
}

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

void atomic_replace(const fs::path& link_or_target,
                    const std::function<void(const fs::path& tmp)>& write, KeepPrevious keep) {
  // A symbolic link is written through: its target is replaced, the link kept.
  const fs::path target = resolve_write_target(link_or_target);
  const fs::path tmp = create_unique_file(target, "tmp");
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

void write_file_atomic(const fs::path& target, std::string_view bytes, KeepPrevious keep) {
  atomic_replace(
      target, [&](const fs::path& tmp) { write_file_synced(tmp, bytes); }, keep);
}

}  // namespace kintsugi
