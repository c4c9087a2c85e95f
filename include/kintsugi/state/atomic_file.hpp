#pragma once
// Atomic replacement of a file, keeping the previous version:
//   1. `write` fills "<target>.tmp" (any half-written leftover is overwritten);
//   2. the temporary file is fsynced;
//   3. the current <target> (if any) is hard-linked as "<target>.prev.tmp" and
//      renamed over "<target>.prev" (a copy is made where hard links are not
//      supported), so .prev is always a complete file;
//   4. "<target>.tmp" is renamed over <target>, and the folder is fsynced.
// At every instant <target> is complete (old or new) once it has existed, and
// <target>.prev is complete (the state before the last save, or equal to
// <target> while a save is between steps 3 and 4). A crash (SIGKILL) at any
// point never loses the last good state.
#include <filesystem>
#include <functional>

namespace kintsugi {

void atomic_replace(const std::filesystem::path& target,
                    const std::function<void(const std::filesystem::path& tmp)>& write);

std::filesystem::path tmp_path_of(const std::filesystem::path& target);   // <target>.tmp
std::filesystem::path prev_path_of(const std::filesystem::path& target);  // <target>.prev

}  // namespace kintsugi
