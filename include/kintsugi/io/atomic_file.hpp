#pragma once
// The one way kintsugi publishes an output (a state file, a safetensors
// shard, a merged folder, a samples file): write it completely under a
// temporary name, fsync it, rename it over the target, fsync the folder.
// A reader sees the old target or the new one, never half of one, and a crash
// after publish() returns cannot lose it.
//
// atomic_replace() adds, for the run state, a kept previous version:
//   1. `write` fills "<target>.tmp-XXXXXX", a new file of this call's own
//      (random suffix, created with O_EXCL: never someone else's file);
//   2. the temporary file is fsynced;
//   3. with keep_previous, the current <target> (if any) is hard-linked under
//      a fresh "<target>.prev.tmp-XXXXXX" and renamed over "<target>.prev" (a
//      copy is made where hard links are not supported), so .prev is always a
//      complete file;
//   4. the temporary file is renamed over <target>, and the folder is fsynced.
// At every instant <target> is complete (old or new) once it has existed, and
// <target>.prev is complete (the state before the last save, or equal to
// <target> while a save is between steps 3 and 4). A crash (SIGKILL) at any
// point never loses the last good state (it may leave a ".tmp-XXXXXX" file).
// A <target> that is a symbolic link is written through: the file it points
// to is replaced (its temporary files and .prev lie beside that file), the
// link stays.
//
// Outputs never touch what the run did not create: unique_dir_beside() makes
// the temporary and backup folders of merged outputs (mkdtemp, never a fixed
// name that could be someone's folder), and check_output_apart() refuses an
// output that is, contains or lies inside one of the run's inputs.
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kintsugi {

enum class KeepPrevious { No, Yes };

void atomic_replace(const std::filesystem::path& target,
                    const std::function<void(const std::filesystem::path& tmp)>& write,
                    KeepPrevious keep = KeepPrevious::No);
// atomic_replace() of a file holding `bytes`.
void write_file_atomic(const std::filesystem::path& target, std::string_view bytes,
                       KeepPrevious keep = KeepPrevious::No);

// Makes the complete file or folder `tmp` the `target`: fsyncs `tmp` (a
// folder: the folder itself; its files are fsynced by whoever wrote them),
// renames it over `target`, fsyncs the parent folder. RuntimeError naming
// the paths on failure.
void publish(const std::filesystem::path& tmp, const std::filesystem::path& target);
// Writes `bytes` to a new file at `path` and fsyncs it (no rename: for files
// inside a folder that is published as a whole).
void write_file_synced(const std::filesystem::path& path, std::string_view bytes);
// Like publish(), but never replaces an existing `target` (renameat2
// RENAME_NOREPLACE; where the filesystem lacks it, a check just before the
// rename): RuntimeError when `target` appeared meanwhile.
void publish_new(const std::filesystem::path& tmp, const std::filesystem::path& target);
// fsync of a file or a folder (folders: EINVAL/EROFS/ENOTSUP are tolerated,
// since some filesystems refuse it and their renames are atomic anyway).
void fsync_path(const std::filesystem::path& p, bool directory);

// A new, empty folder "<target>.<tag>-XXXXXX" in target's folder, created by
// this call (mkdtemp: the name is unique and was free). RuntimeError naming the
// path when it cannot be created.
std::filesystem::path unique_dir_beside(const std::filesystem::path& target, std::string_view tag);

// `p` with symbolic links in its last component followed (a relative link is
// read against the link's folder), up to 40 of them; `p` itself when it is not
// a link. What a write to `p` lands on. InputError for a link loop.
std::filesystem::path resolve_write_target(const std::filesystem::path& p);

// An input a run reads, for check_output_apart(): what it is ("checkpoint",
// "job file", ...) and its path.
struct NamedPath {
  std::string what;
  std::filesystem::path path;
};
// Throws InputError (one line naming both paths) when `output` is, contains
// or lies inside one of `inputs` (compared by device and inode along both
// paths, after resolving symbolic links, so bind mounts, hard links and
// "dir/../dir" spellings are caught too). Inputs that do not exist are skipped.
// `what` names the output, e.g. "--out".
void check_output_apart(std::string_view what, const std::filesystem::path& output,
                        const std::vector<NamedPath>& inputs);

// A new, empty file "<target>.<tag>-XXXXXX" in target's folder, created by
// this call (O_EXCL, mode 0644 less the umask). RuntimeError naming the path
// when it cannot be created.
std::filesystem::path create_unique_file(const std::filesystem::path& target, std::string_view tag);
std::filesystem::path prev_path_of(const std::filesystem::path& target);  // <target>.prev

}  // namespace kintsugi
