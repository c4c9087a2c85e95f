#pragma once
// The external scorer of evaluator.kind: command (docs/evaluator.md): a
// program (lm-evaluation-harness on vLLM, kintsugi eval, anything) run once
// per candidate, and the three ways its scores are read.
//
// The program runs under a guard: a copy of the kintsugi executable started as
// `kintsugi __scorer-guard PARENT_PID -- ARGV...` in a new process group. The
// guard starts ARGV in that group and, if kintsugi dies (even by SIGKILL),
// terminates the whole group, so no scorer outlives the search that started
// it. kintsugi itself sends the group SIGTERM, then SIGKILL after a grace
// period, on a timeout or a stop signal.
#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace kintsugi {

struct ScorerRun {
  std::vector<std::string> argv;            // the command, placeholders expanded
  std::vector<std::string> env;             // NAME=value, the whole environment
  std::filesystem::path stdout_path;        // created (truncated)
  std::filesystem::path stderr_path;        // created (truncated)
  double timeout_s = 3600;                  // then SIGTERM to the group
  double grace_s = 10;                      // from SIGTERM to SIGKILL
  const std::atomic<bool>* stop = nullptr;  // when set: terminate, report Stopped
  std::filesystem::path guard;              // an executable with __scorer-guard
};

struct ScorerExit {
  enum class How { Exited, Signaled, TimedOut, Stopped };
  How how = How::Exited;
  int code = 0;  // the exit status (Exited) or the signal (Signaled)
  double seconds = 0;
  bool ok() const { return how == How::Exited && code == 0; }
  // "exit 1", "killed by signal 9", "timed out after 30 s", "stopped by a signal".
  std::string describe(double timeout_s) const;
};

// Runs the scorer to its end (or timeout, or stop). RuntimeError when it
// cannot be started at all (the guard or the log files).
ScorerExit run_scorer(const ScorerRun& run);

// The guard's own main: argv = {exe, "__scorer-guard", PARENT_PID, "--", ARGV...}.
inline constexpr const char* kScorerGuardVerb = "__scorer-guard";
int scorer_guard_main(int argc, char** argv);

// The scorer's environment: this process's, less the MPI launcher's and
// Slurm's per-task variables (OMPI_*, PMIX_*, PMI_*, OPAL_*, SLURM_PROCID,
// SLURM_LOCALID, SLURM_NODEID, SLURM_NTASKS, SLURM_NPROCS, SLURM_STEP_*, ...: a
// scorer that is itself an MPI or Slurm-aware program must not take itself
// for a rank of kintsugi's job), with CUDA_VISIBLE_DEVICES = `gpus` when
// `set_gpus`, and `extra` (evaluator.env) last.
std::vector<std::string> scorer_environment(const std::map<std::string, std::string>& extra,
                                            const std::string& gpus, bool set_gpus);

// The last `max_bytes` of a file (a log's tail for a failure reason), "" when unreadable.
std::string file_tail(const std::filesystem::path& path, size_t max_bytes = 2000);

// One score the job asks for: the external task name and the metric key.
struct WantedScore {
  std::string task;
  std::string metric;
};

// The scores, in `wanted` order, from the scorer's results (evaluator.results):
//   lm_eval:  the newest results_*.json anywhere under `output_dir`,
//             results.<task>.<metric> ("acc,none")
//   kintsugi: the last line of `stdout_path` that is a JSON object with
//             "results" (kintsugi eval --json): results[0].tasks.<task>.<metric>
//   json:     output_dir/scores.json = {task: {metric: value}}
// RuntimeError naming the file and what is wrong (no results file, not JSON,
// a task or metric missing, a value that is not a finite number).
std::vector<double> read_scores(const std::string& results, const std::filesystem::path& output_dir,
                                const std::filesystem::path& stdout_path,
                                const std::vector<WantedScore>& wanted);

}  // namespace kintsugi
