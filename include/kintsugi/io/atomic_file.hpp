#pragma once
// The one way kintsugi publishes an output (a state file, a safetensors
// shard, a merged folder, a samples file): write it completely under a
// temporary name, fsync it, rename it over the target, fsync the folder.
// A reader sees the old target or the new one, never half of one, and a crash
// after publish() returns cannot lose it.
//
// atomic_replace() adds, for the run state, a kept previous version:
//   1. `write` fills "<target>.tmp" (any half-written leftover is overwritten);
//   2. the temporary file is fsynced;
//   3. with keep_previous, the current <target> (if any) is hard-linked as
//      "<target>.prev.tmp" and renamed over "<target>.prev" (a copy is made
//      where hard links are not supported), so .prev is always a complete file;
//   4. "<target>.tmp" is renamed over <target>, and the folder is fsynced.
// At every instant <target> is complete (old or new) once it has existed, and
// <target>.prev is complete (the state before the last save, or equal to
// <target> while a save is between steps 3 and 4). A crash (SIGKILL) at any
// point never loses the last good state.
#include <filesystem>
#include <functional>
#include <string_view>

namespace kintsugi {

enum class KeepPrevious { No, Yes };

void atomic_replace(const std::filesystem::path& target,
                    const std::function<void(const std::filesystem::path& tmp)>& write,
                    KeepPrevious keep = KeepPrevious::No);
// atomic_replace() of a file holding `bytes`.
void write_file_atomic(const std::filesystem::path& target, std::string_view bytes);

// Makes the complete file or folder `tmp` the `target`: fsyncs `tmp` (a
// folder: the folder itself; its files are fsynced by whoever wrote them),
// renames it over `target`, fsyncs the parent folder. RuntimeError naming
// the paths on failure.
void publish(const std::filesystem::path& tmp, const std::filesystem::path& target);
// Writes `bytes` to a new file at `path` and fsyncs it (no rename: for files
// inside a folder that is published as a whole).
void write_file_synced(const std::filesystem::path& path, std::string_view bytes);
// fsync of a file or a folder (folders: EINVAL/EROFS/ENOTSUP are tolerated,
// since some filesystems refuse it and their renames are atomic anyway).
void fsync_path(const std::filesystem::path& p, bool directory);

std::filesystem::path tmp_path_of(const std::filesystem::path& target);   // <target>.tmp
std::filesystem::path prev_path_of(const std::filesystem::path& target);  // <target>.prev

}  // namespace kintsugi
