#pragma once
// Starting and reaping child processes (an external scorer's guard, a
// benchmark's peer), with what every caller needs alike.
#include <spawn.h>
#include <sys/types.h>

namespace kintsugi {

// posix_spawn of `path` with `actions`, the child starting with every signal
// at its default and none blocked, so that kintsugi's handlers and MPI's
// masks stay here; in a process group of its own (id = its pid) when
// `own_group`. Returns posix_spawn's result (0, or an errno value).
int spawn_clean(pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                char* const argv[], char* const envp[], bool own_group);

// waitpid(pid, 0) until it is not interrupted; the wait status.
int wait_for(pid_t pid);

}  // namespace kintsugi
