// `kintsugi bench merge|eval|optimizer …`: throughput and search-efficiency
// harnesses. Each one lives in src/cli/bench_<name>.cpp.
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/common/process.hpp"

namespace kintsugi::cli {

std::vector<Bench>& bench_registry() {
  static std::vector<Bench> benches;
  return benches;
}

std::string peer_output(const std::string& cmd, const std::string& what) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  if (!p) throw_runtime("bench: cannot start {}", what);
  std::string out;
  char buf[1 << 16];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p.get())) > 0;) out.append(buf, n);
  const int status = pclose(p.release());
  if (status != 0 || out.empty()) throw_runtime("bench: {} failed (status {})", what, status);
  return out;
}

PeerSession::PeerSession(const std::string& cmd, std::string what) : what_(std::move(what)) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw_runtime("bench: cannot start {}: socketpair: {}", what_, std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], 0);  // dup2 clears close-on-exec
  posix_spawn_file_actions_adddup2(&actions, sv[1], 1);
  std::string sh = "/bin/sh", dash_c = "-c", command = cmd;
  char* argv[] = {sh.data(), dash_c.data(), command.data(), nullptr};
  pid_t pid = 0;
  const int rc = spawn_clean(&pid, "/bin/sh", &actions, argv, environ, false);
  posix_spawn_file_actions_destroy(&actions);
  ::close(sv[1]);
  if (rc != 0) {
    ::close(sv[0]);
    throw_runtime("bench: cannot start {}: {}", what_, std::strerror(rc));
  }
  fd_ = sv[0];
  pid_ = pid;
}

PeerSession::~PeerSession() {
  if (fd_ >= 0) ::close(fd_);
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    wait_for(pid_);
  }
}

std::string PeerSession::reap() {
  ::close(fd_);
  fd_ = -1;
  const int status = wait_for(pid_);
  pid_ = -1;
  if (WIFEXITED(status))
    return WEXITSTATUS(status) == 0 ? "" : fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("signal {}", WTERMSIG(status));
  return "an unknown status";
}

void PeerSession::failed(const std::string& how) {
  const std::string end = reap();
  throw_runtime("bench: {} {} ({})", what_, how, end.empty() ? "exit status 0" : end);
}

std::string PeerSession::read_line() {
  for (;;) {
    const size_t nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    char buf[1 << 16];
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) failed(pending_.empty() ? "ended without answering" : "ended in mid-answer");
    pending_.append(buf, static_cast<size_t>(n));
  }
}

std::string PeerSession::ask(const std::string& line) {
  const std::string msg = line + "\n";
  for (size_t done = 0; done < msg.size();) {
    // MSG_NOSIGNAL: a peer that died is an error here, not a SIGPIPE.
    const ssize_t n = ::send(fd_, msg.data() + done, msg.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) failed("ended without answering");  // it closed its end: it exited
    done += static_cast<size_t>(n);
  }
  return read_line();
}

std::string PeerSession::finish() {
  ::shutdown(fd_, SHUT_WR);
  std::string out = std::move(pending_);
  pending_.clear();
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  const std::string end = reap();
  if (!end.empty() || out.empty())
    throw_runtime("bench: {} failed ({})", what_, end.empty() ? "it printed nothing" : end);
  return out;
}

namespace {

VerbRegistration bench_verb{
    {"bench", "Measure merge throughput, evaluation speed, optimizer efficiency", 80,
     [](CLI::App& sub) {
       sub.require_subcommand(1);
       auto chosen = std::make_shared<std::function<int()>>();
       auto& benches = bench_registry();
       std::sort(benches.begin(), benches.end(),
                 [](const Bench& a, const Bench& b) { return a.name < b.name; });
       for (auto& b : benches) {
         CLI::App* s = sub.add_subcommand(b.name, b.help);
         auto act = std::make_shared<std::function<int()>>(b.setup(*s));
         s->callback([act, chosen] { *chosen = *act; });
       }
       return std::function<int()>([chosen] { return (*chosen)(); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
