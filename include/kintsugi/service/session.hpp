#pragma once
// The pieces optimize and baselines share on rank 0: opening or creating the
// run state, the pool's own scores (every checkpoint alone, stored as the
// first baselines), and the objective built from them.
#include <Eigen/Dense>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/search/objective.hpp"
#include "kintsugi/service/runtime.hpp"
#include "kintsugi/service/work.hpp"
#include "kintsugi/state/run_state.hpp"
#include "kintsugi/state/state_lock.hpp"

namespace kintsugi {

// The state file: --state, else the job's output.state.
std::filesystem::path state_path_for(const JobConfig& job, const std::string& flag);

// The files a run reads that no output of it may land on: the job file and
// each task's search, validation and test files (check_output_apart skips
// those that do not exist).
std::vector<NamedPath> job_input_files(const JobConfig& job);

// Collective over MPI_COMM_WORLD, before the pool is loaded: rank 0 checks
// that the state at `path` is not one of the job's inputs (the job file, a
// checkpoint, a task file; nor inside a checkpoint's folder) and takes the
// state's lock (state/state_lock.hpp) for `verb`. InputError on every rank
// otherwise. The lock (held by rank 0 only) lasts as long as the result.
std::optional<StateLock> claim_state(const JobConfig& job, const std::filesystem::path& path,
                                     std::string_view verb);

// How an existing state file is treated.
enum class StateUse {
  Resume,     // must exist (a state with baselines only starts the search)
  NewSearch,  // may exist with baselines only; a state holding evaluations is refused
  Baselines,  // may exist with anything; baselines are (re)computed
};

// Rank 0. Loads the state at `path` (refusing one made for another pool, other
// tasks or other search settings) or makes a new one.
RunState open_state(const std::filesystem::path& path, const Runtime& rt, StateUse use);

// Scores every checkpoint alone on both splits unless the state already has
// them (baselines named after the checkpoints, recipe "checkpoint"), then saves.
void ensure_checkpoint_baselines(Coordinator& co, Runtime& rt, RunState& state,
                                 const std::filesystem::path& path);

// N × K oriented (higher is better) scores of the checkpoints on the search split.
Eigen::MatrixXd checkpoint_scores(const RunState& state, const Runtime& rt);

search::Objective build_objective(const RunState& state, const Runtime& rt);

// The objective of a scored model; `penalty` when it failed, NaN when a score
// is missing (a split the tasks do not have).
double objective_of(const search::Objective& obj, const Runtime& rt, const Scored& s,
                    double penalty);

// The value a failed evaluation gets: the worst checkpoint's objective minus 1
// (finite, below every real model of the pool, and the same on every resume).
double failure_penalty(const RunState& state);

// Scores on the test split, or results of NaN scores when the tasks have none.
std::optional<std::vector<Scored>> score_test(Coordinator& co, Runtime& rt,
                                              const std::vector<ModelRequest>& models,
                                              bool abandonable);

// Row r of a row-major table of `width` columns (state arrays such as
// /evals/scores), as its own vector.
std::vector<double> table_row(const std::vector<double>& table, size_t r, size_t width);

// Weights that select checkpoint i alone (in every layer group).
std::vector<double> one_hot_weights(const Runtime& rt, size_t i);

inline constexpr const char* kCheckpointRecipe = "checkpoint";

}  // namespace kintsugi
