#pragma once
// The job file (JOB.yaml) that eval, baselines, optimize and report read.
// Every key, its type and default is documented in docs/config.md. Paths in
// the file are relative to the job file's folder and are made absolute here.
// Unknown keys and wrong types are InputErrors naming file:line and the key.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kintsugi {

struct PoolConfig {
  std::vector<std::filesystem::path> checkpoints;  // pool.checkpoints (at least 1)
  std::optional<std::filesystem::path> base;       // pool.base (task-vector methods)
  // pool.tokenizer_source: checkpoints whose vocabularies differ (added
  // tokens) are reconciled as mergekit's tokenizer_source does: "base" (the
  // first checkpoint's vocabulary), "union", or "model" (that of checkpoint
  // tokenizer_model). Empty: every checkpoint must have the same vocabulary.
  std::string tokenizer_source;
  size_t tokenizer_model = 0;
  std::string tokenizer_where;  // "file:line" for messages
};

enum class TaskKind { Generate, Choice, Perplexity };
std::string_view task_kind_name(TaskKind kind);  // "generate", "choice", "perplexity"

// A task kind's metric when the job names none: exact_match, acc, bits_per_byte.
std::string_view default_metric(TaskKind kind);
// The one rule for a score's direction, used by the search, baselines and the
// report alike: every metric is higher-is-better but bits_per_byte.
bool metric_higher_is_better(std::string_view metric);

struct TaskConfig {
  std::string name;  // tasks[i].name, unique
  // evaluator.kind command: the external task name handed to the scorer in
  // {tasks} (default: name); it may hold "{split}". Empty for the builtin.
  std::string task;
  // tasks[i].file: a path that may hold "{split}", replaced by the split name
  // (e.g. tasks/addition.{split}.jsonl). Kept unexpanded and absolute here.
  std::string file;
  TaskKind kind = TaskKind::Generate;
  // generate: exact_match; choice: acc | acc_norm; perplexity: bits_per_byte.
  // Default: exact_match / acc / bits_per_byte.
  std::string metric;
  std::string split = "search";  // split the search optimizes on
  size_t limit = 0;              // first `limit` examples; 0 = all
  // generate only
  size_t max_new_tokens = 32;
  std::vector<std::string> stop = {"\n"};
  std::string regex;         // optional: exact_match on the first capture group (or whole match)
  bool ignore_case = false;  // normalization before exact_match (whitespace is always stripped)

  std::filesystem::path file_for(const std::string& split_name) const;
  // The metric the task reports as its score: `metric`, or the kind's default.
  std::string primary_metric() const;
  // tasks[i].higher_is_better (command tasks), else the metric's own direction.
  std::optional<bool> higher_is_better_setting;
  bool higher_is_better() const {
    return higher_is_better_setting ? *higher_is_better_setting
                                    : metric_higher_is_better(primary_metric());
  }
  // The external task name for a split ({split} in `task` replaced).
  std::string external_name(const std::string& split_name) const;
};

// The placeholders of evaluator.command, each replaced by its value in every
// argument: {model} {output} {tasks} {gpus} {num_gpus} {seed} {split}.
inline constexpr std::string_view kCommandPlaceholders[] = {"model",    "output", "tasks", "gpus",
                                                            "num_gpus", "seed",   "split"};

// `text` with every {name} replaced by values.at(name); "{{name}}" is the
// literal text "{name}". Every other brace stays as written (JSON arguments,
// ${VAR}), except one that looks like a placeholder ({lowercase_identifier})
// but is not one of `values`: an InputError naming it (a typo must not reach
// the scorer).
std::string expand_placeholders(std::string_view text,
                                const std::map<std::string, std::string>& values);

struct EvaluatorConfig {
  std::string kind = "builtin";  // builtin | command
  size_t batch_size = 16;        // sequences per forward pass (builtin)
  // kind command (docs/config.md, docs/evaluator.md): the scorer's argv with
  // placeholders, run once per candidate by its group's leader.
  std::vector<std::string> command;
  std::string results = "lm_eval";         // lm_eval | kintsugi | json: how scores are read
  std::filesystem::path scratch;           // where candidates are written; empty: the default
  std::string dtype;                       // bfloat16 | float16 | float32; empty: the pool's
  double timeout_s = 3600;                 // per candidate
  std::map<std::string, std::string> env;  // extra environment of the scorer
  std::string keep = "failed";             // failed | all | none: candidate folders kept
};

struct SearchConfig {
  std::string method = "cmaes";              // cmaes | random
  std::string parameterization = "simplex";  // simplex | nonnegative | free
  std::string granularity = "checkpoint";    // checkpoint | layer_group
  size_t layer_groups = 1;                   // with granularity: layer_group
  size_t budget = 300;                       // evaluations
  size_t population = 0;                     // 0 = CMA-ES default 4 + floor(3 ln n)
  double sigma0 = 0.3;
  uint64_t seed = 0;
  bool active = false;          // active CMA (negative weights)
  size_t restarts = 0;          // IPOP restarts allowed
  std::optional<double> lower;  // box bounds on each weight (smooth transform)
  std::optional<double> upper;
  // Against overfitting the search split: the search maximizes objective -
  // uniform_penalty * d(w), d the normalized squared distance of the weights
  // from the uniform soup (search::uniform_distance); 0 = off.
  double uniform_penalty = 0.0;
  // More examples for promising candidates: each generation is first scored
  // on the first `first_pass` search examples of every task, then its
  // rescore_top fittest candidates on the whole search split, and those
  // scores are what the optimizer ranks them by; 0 = off (every candidate
  // on the whole split). Needs the builtin evaluator.
  size_t rescore_top = 0;
  size_t first_pass = 0;  // examples per task of the first pass (with rescore_top)
};

struct ObjectiveConfig {
  std::string kind = "mean";                 // mean | weighted | chebyshev | constrained
  std::map<std::string, double> weights;     // weighted: task -> weight
  std::map<std::string, double> preference;  // chebyshev: task -> preference
  double chebyshev_rho = 1e-3;               // augmentation term
  std::string maximize;                      // constrained: the task maximized
  std::map<std::string, double> floors;      // constrained: task -> minimum score
  double penalty = 10.0;                     // constrained: per unit below a floor
};

struct ParallelConfig {
  size_t tensor_parallel = 1;  // T; must divide the number of MPI ranks
};

struct OutputConfig {
  std::filesystem::path state = "kintsugi-state.h5";  // relative to the job file
  std::filesystem::path dir = "kintsugi-out";
};

struct JobConfig {
  std::filesystem::path file;  // the job file itself (absolute; empty from parse_job)
  std::string yaml_text;       // its text, stored in the state
  PoolConfig pool;
  std::vector<TaskConfig> tasks;
  EvaluatorConfig evaluator;
  SearchConfig search;
  ObjectiveConfig objective;
  ParallelConfig parallel;
  OutputConfig output;
};

// Reads and validates a job file. Throws InputError "FILE:LINE: key: problem".
JobConfig load_job(const std::filesystem::path& path);
// Same, from text (`origin` names it in errors; relative paths resolve against `base_dir`).
JobConfig parse_job(const std::string& yaml_text, const std::string& origin,
                    const std::filesystem::path& base_dir);

}  // namespace kintsugi
