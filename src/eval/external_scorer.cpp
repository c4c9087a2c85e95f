// Running the external scorer under its guard, and reading its scores.
#include "kintsugi/eval/external_scorer.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <thread>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/process.hpp"

extern char** environ;

namespace kintsugi {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

int open_log(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw_runtime("{}: cannot create the scorer's log: {}", path.string(), strerror(errno));
  return fd;
}

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// Whether the guard (pid) has ended; leaves it a zombie, so its pid, which
// is also the process group's id, cannot be reused while we signal the group.
bool ended(pid_t pid) {
  siginfo_t info{};
  info.si_pid = 0;
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return true;
  return info.si_pid == pid;
}

// SIGTERM to the group, SIGKILL after `grace_s` if anything is left.
void terminate_group(pid_t pid, double grace_s) {
  kill(-pid, SIGTERM);
  const auto t0 = Clock::now();
  while (!ended(pid) && since(t0) < grace_s) sleep_ms(20);
  kill(-pid, SIGKILL);
}

// A metric value that is no number, as the file writes it ("N/A", null, ...).
std::string value_text(const json& v) {
  return v.dump();
}

std::string keys_of(const json& obj) {
  std::string out;
  for (auto it = obj.begin(); it != obj.end(); ++it) out += (out.empty() ? "" : ", ") + it.key();
  return out.empty() ? "none" : out;
}

// tasks[task][metric] of each wanted score; `where` names the source.
std::vector<double> pick_scores(const json& tasks, const std::vector<WantedScore>& wanted,
                                const std::string& where) {
  if (!tasks.is_object()) throw_runtime("{}: the results are not a JSON object of tasks", where);
  std::vector<double> out;
  for (const auto& w : wanted) {
    if (!tasks.contains(w.task))
      throw_runtime("{}: no results for task '{}' (it has: {})", where, w.task, keys_of(tasks));
    const json& t = tasks[w.task];
    if (!t.is_object() || !t.contains(w.metric))
      throw_runtime("{}: task '{}' has no metric '{}' (it has: {})", where, w.task, w.metric,
                    t.is_object() ? keys_of(t) : std::string("no metrics"));
    const json& v = t[w.metric];
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      throw_runtime("{}: task '{}' metric '{}' is {}, not a finite number", where, w.task, w.metric,
                    value_text(v));
    out.push_back(v.get<double>());
  }
  return out;
}

json parse_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_runtime("{}: cannot read the scorer's results", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) throw_runtime("{}: not valid JSON", path.string());
  return j;
}

// lm-eval writes OUTPUT/<model name, sanitized>/results_<timestamp>.json.
std::vector<double> read_lm_eval(const fs::path& output_dir,
                                 const std::vector<WantedScore>& wanted) {
  std::error_code ec;
  fs::path newest;
  fs::file_time_type newest_time{};
  for (fs::recursive_directory_iterator it(output_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!it->is_regular_file() || name.rfind("results_", 0) != 0 ||
        it->path().extension() != ".json")
      continue;
    const auto t = it->last_write_time();
    if (newest.empty() || t > newest_time || (t == newest_time && it->path() > newest)) {
      newest = it->path();
      newest_time = t;
    }
  }
  if (newest.empty())
    throw_runtime("{}: no results_*.json anywhere under it (the scorer wrote no lm-eval results)",
                  output_dir.string());
  const json j = parse_json_file(newest);
  if (!j.is_object() || !j.contains("results"))
    throw_runtime("{}: no \"results\" object (not an lm-eval results file)", newest.string());
  return pick_scores(j["results"], wanted, newest.string());
}

// `kintsugi eval --json`: the summary is the last JSON line of stdout.
std::vector<double> read_kintsugi(const fs::path& stdout_path,
                                  const std::vector<WantedScore>& wanted) {
  std::ifstream in(stdout_path, std::ios::binary);
  if (!in) throw_runtime("{}: cannot read the scorer's output", stdout_path.string());
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    const json j = json::parse(*it, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("results")) continue;
    const json& r = j["results"];
    if (!r.is_array() || r.empty() || !r[0].is_object() || !r[0].contains("tasks"))
      throw_runtime("{}: the JSON summary holds no model's tasks", stdout_path.string());
    return pick_scores(r[0]["tasks"], wanted, stdout_path.string());
  }
  throw_runtime("{}: no JSON line with \"results\" (was `kintsugi eval` run with --json?)",
                stdout_path.string());
}

std::vector<double> read_json(const fs::path& output_dir, const std::vector<WantedScore>& wanted) {
  const fs::path path = output_dir / "scores.json";
  if (!fs::exists(path)) throw_runtime("{}: the scorer did not write it", path.string());
  return pick_scores(parse_json_file(path), wanted, path.string());
}

bool dropped_variable(std::string_view name) {
  for (std::string_view prefix : {"OMPI_", "PMIX_", "PMI_", "OPAL_", "SLURM_STEP_"})
    if (name.substr(0, prefix.size()) == prefix) return true;
  for (std::string_view exact :
       {"SLURM_PROCID", "SLURM_LOCALID", "SLURM_TASK_PID", "SLURM_GTIDS", "SLURM_STEPID",
        "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_CPU_BIND", "SLURM_CPU_BIND_LIST",
        "SLURM_CPU_BIND_TYPE", "SLURM_CPU_BIND_VERBOSE", "SLURM_SRUN_COMM_HOST",
        "SLURM_SRUN_COMM_PORT", "CUDA_VISIBLE_DEVICES"})
    if (name == exact) return true;
  return false;
}

}  // namespace

std::string ScorerExit::describe(double timeout_s) const {
  switch (how) {
    case How::Exited:
      return fmt::format("exit {}", code);
    case How::Signaled:
      return fmt::format("killed by signal {} ({})", code, strsignal(code));
    case How::TimedOut:
      return fmt::format("timed out after {} s (evaluator.timeout_s)", timeout_s);
    case How::Stopped:
      return "stopped by a signal to kintsugi";
  }
  return "?";
}

std::vector<std::string> scorer_environment(const std::map<std::string, std::string>& extra,
                                            const std::string& gpus, bool set_gpus) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    if (name == "CUDA_VISIBLE_DEVICES" && !set_gpus) {
      env.emplace_back(entry);
      continue;
    }
    if (dropped_variable(name) || extra.count(std::string(name))) continue;
    env.emplace_back(entry);
  }
  if (set_gpus) env.push_back("CUDA_VISIBLE_DEVICES=" + gpus);
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

ScorerExit run_scorer(const ScorerRun& r) {
  KS_CHECK(!r.argv.empty(), "a scorer needs a program");
  std::vector<std::string> args = {r.guard.string(), kScorerGuardVerb, std::to_string(getpid()),
                                   "--"};
  args.insert(args.end(), r.argv.begin(), r.argv.end());
  const int out = open_log(r.stdout_path);
  int err = -1;
  try {
    err = open_log(r.stderr_path);
  } catch (...) {
    ::close(out);
    throw;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out, 1);
  posix_spawn_file_actions_adddup2(&actions, err, 2);
  auto argv = c_strings(args);
  auto envp = c_strings(r.env);
  pid_t pid = 0;
  const auto t0 = Clock::now();
  // In its own process group (id = its pid), so that its children go with it.
  const int rc = spawn_clean(&pid, r.guard.c_str(), &actions, argv.data(), envp.data(), true);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out);
  ::close(err);
  if (rc != 0) throw_runtime("cannot start {}: {}", r.guard.string(), strerror(rc));

  ScorerExit result;
  while (!ended(pid)) {
    if (r.stop && r.stop->load()) {
      result.how = ScorerExit::How::Stopped;
      terminate_group(pid, r.grace_s);
      break;
    }
    if (since(t0) > r.timeout_s) {
      result.how = ScorerExit::How::TimedOut;
      terminate_group(pid, r.grace_s);
      break;
    }
    sleep_ms(20);
  }
  // Whatever the scorer left running in its group goes with it.
  kill(-pid, SIGKILL);
  const int status = wait_for(pid);
  result.seconds = since(t0);
  if (result.how == ScorerExit::How::Exited) {
    if (WIFEXITED(status)) {
      result.code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      result.how = ScorerExit::How::Signaled;
      result.code = WTERMSIG(status);
    }
  }
  return result;
}

int scorer_guard_main(int argc, char** argv) {
  if (argc < 5 || std::strcmp(argv[3], "--") != 0) {
    std::fprintf(stderr, "usage: kintsugi %s PARENT_PID -- PROGRAM [ARGS...]\n", kScorerGuardVerb);
    return 127;
  }
  const pid_t parent = static_cast<pid_t>(std::atol(argv[2]));
  // The group's SIGTERM is for the scorer; the guard stays to report its end.
  signal(SIGTERM, SIG_IGN);
  const pid_t child = fork();
  if (child == 0) {
    signal(SIGTERM, SIG_DFL);
    execvp(argv[4], argv + 4);
    std::fprintf(stderr, "kintsugi: cannot run the scorer %s: %s\n", argv[4], strerror(errno));
    _exit(127);
  }
  if (child < 0) {
    std::fprintf(stderr, "kintsugi: cannot start the scorer: %s\n", strerror(errno));
    return 127;
  }
  int status = 0;
  while (true) {
    const pid_t w = waitpid(child, &status, WNOHANG);
    if (w == child) break;
    if (w < 0 && errno != EINTR) return 127;
    if (getppid() != parent) {
      // kintsugi is gone (killed): so is everything it started.
      kill(-getpgrp(), SIGTERM);
      for (int i = 0; i < 100 && waitpid(child, &status, WNOHANG) == 0; ++i) sleep_ms(100);
      kill(-getpgrp(), SIGKILL);
    }
    sleep_ms(50);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  const int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  raise(sig);
  return 128 + sig;
}

std::string file_tail(const fs::path& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const auto size = static_cast<size_t>(in.tellg());
  const size_t n = std::min(size, max_bytes);
  in.seekg(static_cast<std::streamoff>(size - n));
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  return text;
}

std::vector<double> read_scores(const std::string& results, const fs::path& output_dir,
                                const fs::path& stdout_path,
                                const std::vector<WantedScore>& wanted) {
  if (results == "lm_eval") return read_lm_eval(output_dir, wanted);
  if (results == "kintsugi") return read_kintsugi(stdout_path, wanted);
  if (results == "json") return read_json(output_dir, wanted);
  throw_runtime("evaluator.results '{}' is not lm_eval, kintsugi or json", results);
}

}  // namespace kintsugi
