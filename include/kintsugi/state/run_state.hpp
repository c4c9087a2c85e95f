#pragma once
// The run state: everything `optimize --resume`, `report` and `export` need,
// saved as one HDF5 file after every generation (layout in docs/state.md; plain
// datasets that h5py reads with no kintsugi installed). Only rank 0 saves.
//
// Every save rewrites the whole file through atomic_replace (write <state>.tmp,
// fsync, rename; the previous state kept as <state>.prev): "appending" a
// generation means appending rows to RunState::evals and saving again. A state
// is small (E x (D + W + K) numbers), so rewriting it costs nothing next to one
// evaluation.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kintsugi/common/record.hpp"
#include "kintsugi/eval/uncertainty.hpp"

namespace kintsugi {

struct JobConfig;

inline constexpr int64_t kStateFormatVersion = 2;  // 2: fixed-length strings, HDF5 1.10 format

// 64-bit FNV-1a of `text`, as 16 lowercase hex digits (the config_hash).
std::string fnv1a64_hex(std::string_view text);

struct StateMeta {
  int64_t format_version = kStateFormatVersion;
  std::string kintsugi_version;  // of the writer
  std::string config;            // the job file's YAML text
  std::string config_hash;       // fnv1a64_hex(config)
  uint64_t seed = 0;             // search.seed
  std::string created;           // when the run started, UTC "YYYY-MM-DDTHH:MM:SSZ"
  std::string job_file;          // the job file's absolute path (export finds the pool through it)
  std::vector<std::string> pool_names;         // N checkpoints, in pool order
  std::vector<std::string> pool_fingerprints;  // N, from the pool module
  std::vector<std::string> task_names;         // K tasks, in job order
  // The settings a resumed run must share with the run that wrote the state
  // (resume_settings()): key -> value text, e.g. {"search.sigma0", "0.3"}.
  std::vector<std::pair<std::string, std::string>> settings;
  // How the last run on this state ended, for wrappers that cannot trust an
  // exit code (mpirun's own code after SIGTERM): "running" (saved mid-run; a
  // run killed outright leaves it), "stopped by signal N" (a stop saved the
  // state), "finished"; "" in states written before it was recorded.
  std::string run_status = "running";
};

enum class EvalStatus : int64_t { Ok = 0, Failed = 1 };

// Every evaluation, one row each, in the order they were told to the optimizer.
struct EvalTable {
  size_t dims = 0;                    // D: search-space dimensions (the candidate z)
  size_t n_weights = 0;               // W = N x G merge weights (G layer groups)
  size_t n_tasks = 0;                 // K
  std::vector<double> z;              // E x D, row-major
  std::vector<double> weights;        // E x W, row-major
  std::vector<double> scores;         // E x K, row-major (NaN where not scored)
  std::vector<double> objective;      // E
  std::vector<int64_t> status;        // E: EvalStatus
  std::vector<std::string> error;     // E: "" when ok
  std::vector<int64_t> generation;    // E
  std::vector<double> seconds;        // E: wall time of the evaluation
  std::vector<double> merge_seconds;  // E: of which merging (and writing the candidate)
  std::vector<double> score_seconds;  // E: of which scoring (NaN in states that predate them)
  // E: with search.rescore_top, the objective on the first pass (search.first_pass examples)
  // of an evaluation then re-scored on every search example (`objective` and
  // `scores` are the re-scored ones); NaN for every other evaluation.
  std::vector<double> first_pass_objective;

  size_t size() const { return objective.size(); }
  void append(std::span<const double> z_row, std::span<const double> w_row,
              std::span<const double> score_row, double objective_value, EvalStatus st,
              std::string error_text, int64_t generation_index, double secs,
              double merge_secs = std::nan(""), double score_secs = std::nan(""),
              double first_pass = std::nan(""));
  bool rescored(size_t e) const { return std::isfinite(first_pass_objective[e]); }
  void truncate(size_t e);  // keep the first e rows
  void check() const;       // RuntimeError when the columns disagree in length
};

// Per-example results of a table's rows on the test split (ExampleScores,
// eval/uncertainty.hpp, flattened): task k has counts[k] examples, X =
// sum_k counts[k] columns, task by task; weights are 1 where the metric has
// none. Rows without them (an external scorer, a failed model) are NaN. Empty
// in states written before kintsugi recorded them: the report then has no
// intervals to give.
struct ExampleTable {
  std::vector<int64_t> counts;      // K (empty: none recorded)
  std::vector<int64_t> transforms;  // K: ExampleScores::Transform
  std::vector<double> values;       // rows x X
  std::vector<double> weights;      // rows x X

  bool empty() const { return counts.empty(); }
  size_t columns() const;
  // Appends the row after `rows_before` rows; the first results fix the
  // layout (earlier rows become NaN). `row` empty: a NaN row (nothing while
  // the table is empty). RuntimeError when the layout differs.
  void append(size_t rows_before, const std::vector<ExampleScores>& row);
  // Row r as K ExampleScores; empty when none are recorded or the row is NaN.
  std::vector<ExampleScores> row(size_t r) const;
  void check(size_t rows) const;  // RuntimeError when the columns disagree
};

// Scores of the standard recipes (and of every checkpoint alone).
struct Baselines {
  size_t n_weights = 0;                // W
  size_t n_tasks = 0;                  // K
  std::vector<std::string> names;      // B, e.g. "ckpt-03", "uniform_soup", "ties_l0.5_d0.2"
  std::vector<std::string> recipes;    // B: how it was made, human-readable
  std::vector<double> weights;         // B x W: the per-checkpoint weights used
  std::vector<double> scores;          // B x K: search split
  std::vector<double> test_scores;     // B x K: test split (NaN when not scored)
  std::vector<double> objective;       // B: search split
  std::vector<double> test_objective;  // B: test split (NaN when not scored)
  ExampleTable test_examples;          // B rows
  // B x K and B: the validation split, where the job has one (NaN elsewhere,
  // and in states written before references were scored there).
  std::vector<double> validation_scores;
  std::vector<double> validation_objective;

  size_t size() const { return names.size(); }
  void append(std::string name, std::string recipe, std::span<const double> w_row,
              std::span<const double> score_row, std::span<const double> test_row,
              double objective_value, double test_objective_value,
              const std::vector<ExampleScores>& test_example_row = {});
  // Row b's validation scores and objective (append() leaves them NaN).
  void set_validation(size_t b, std::span<const double> score_row, double objective_value);
  void check() const;
};

// Held-out scores of chosen evaluations on one split: the test split (the
// best, the Pareto set), or the validation split (the candidates the returned
// merge is chosen among).
struct TestScores {
  size_t n_tasks = 0;
  std::vector<int64_t> eval_index;  // M indices into the evaluations
  std::vector<double> scores;       // M x K
  std::vector<double> objective;    // M
  ExampleTable examples;            // M rows
  size_t size() const { return eval_index.size(); }
  // The row holding evaluation e, or -1 when e was not scored on this split.
  int64_t row_of(int64_t e) const {
    for (size_t i = 0; i < eval_index.size(); ++i)
      if (eval_index[i] == e) return static_cast<int64_t>(i);
    return -1;
  }
  void check() const;
};

struct RunState {
  StateMeta meta;
  EvalTable evals;
  Record optimizer;  // the optimizer's own state, saved and restored by it
  Baselines baselines;
  std::vector<int64_t> pareto;  // indices into evals of the current Pareto set
  TestScores test;
  // Scores on the validation split of the best candidates on search (empty
  // without a validation split, or before the search ends).
  TestScores validation;
};

// The returned merge (export's default, the test scoring's first pick, the
// report's best): with validation scores, the validated evaluation with the
// highest validation objective (the first on ties); else the evaluation with
// the highest search objective among those that succeeded; -1 if none.
int64_t best_evaluation(const RunState& state);
// What the search maximizes for evaluation e: its objective, less
// search.uniform_penalty (from the state's settings; 0 when absent) times the
// weights' distance from the uniform soup (search::uniform_distance).
double search_fitness(const RunState& state, size_t e);
// The evaluation with the highest search fitness among those that succeeded
// (with search.rescore_top, among the re-scored ones: their scores cover every
// search example, the others' only the first pass).
int64_t best_on_search(const RunState& state);
// Whether evaluation e may be returned or validated: it succeeded and, when
// the search re-scored its generations' best, it is one of those.
bool selectable(const RunState& state, size_t e);

// Writes `state` to `path` atomically (see io/atomic_file.hpp). RuntimeError on I/O
// failure; the previous state stays in place.
void save_state(const std::filesystem::path& path, const RunState& state);
// Writes `state` as a save would, to a temporary file beside `path` that is
// then removed: a folder that cannot take a save (read-only, full, over
// quota) fails here, with the save's one-line RuntimeError, before a run
// spends time on evaluations it could not record.
void check_state_writable(const std::filesystem::path& path, const RunState& state);

// Reads a state. InputError naming the file (and the object) when it is missing,
// not HDF5, corrupt, of another format_version, or inconsistent.
RunState load_state(const std::filesystem::path& path);

// A new state's meta for `job` (config text and hash, seed, created = now,
// settings = resume_settings(job)).
StateMeta make_meta(const JobConfig& job, std::vector<std::string> pool_names,
                    std::vector<std::string> pool_fingerprints);

// The job settings that must not change across a resume: everything that
// changes candidates or scores (search settings but the budget, objective,
// tasks and their evaluation options, evaluator kind and batch size,
// tensor_parallel). Values are written exactly (shortest round-trip numbers).
std::vector<std::pair<std::string, std::string>> resume_settings(const JobConfig& job);

// The settings keys of task data fingerprints start with this prefix.
inline constexpr std::string_view kTaskDataKeyPrefix = "data.";

// What the job's task files hold, as settings pairs stored beside
// resume_settings(): "data.tasks.<name>.<split>" -> "xxh64:<16 hex> <size>
// bytes", XXH64 (seed 0) of the file's bytes, for each task's search split,
// its validation split (a file of its own) and its test split, for each file
// that exists (a missing one is the task
// loader's error). Empty for tasks scored by an
// external command (they have no files). InputError naming a file that
// cannot be read.
std::vector<std::pair<std::string, std::string>> task_data_fingerprints(const JobConfig& job);

// Refuses (InputError "STATE: cannot resume: ...") a state whose pool
// fingerprints, tasks, settings or task data (`task_data`, from
// task_data_fingerprints(); compared only when the state records task data:
// states written before kintsugi recorded it are accepted with a warning)
// differ from the job's. `state_path` names the state in the message.
void check_resume_compatible(
    const std::filesystem::path& state_path, const RunState& state, const JobConfig& job,
    const std::vector<std::string>& pool_names, const std::vector<std::string>& pool_fingerprints,
    const std::vector<std::pair<std::string, std::string>>& task_data = {});

}  // namespace kintsugi
