#include "kintsugi/common/process.hpp"

#include <sys/wait.h>

#include <cerrno>
#include <csignal>

namespace kintsugi {

int spawn_clean(pid_t* pid, const char* path, const posix_spawn_file_actions_t* actions,
                char* const argv[], char* const envp[], bool own_group) {
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (own_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  const int rc = posix_spawn(pid, path, actions, &attr, argv, envp);
  posix_spawnattr_destroy(&attr);
  return rc;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace kintsugi
