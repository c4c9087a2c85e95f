#include "kintsugi/service/session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/pool/pool.hpp"

namespace kintsugi {

std::filesystem::path state_path_for(const JobConfig& job, const std::string& flag) {
  return flag.empty() ? job.output.state : std::filesystem::absolute(flag);
}

std::vector<NamedPath> job_input_files(const JobConfig& job) {
  std::vector<NamedPath> inputs;
  if (!job.file.empty()) inputs.push_back({"job file", job.file});
  for (const auto& t : job.tasks)
    if (!t.file.empty())
      for (const std::string& split : {t.split, std::string("validation"), std::string("test")})
        inputs.push_back({"task file", t.file_for(split)});
  return inputs;
}

std::optional<StateLock> claim_state(const JobConfig& job, const std::filesystem::path& path,
                                     std::string_view verb) {
  std::optional<StateLock> lock;
  run_on_root(MPI_COMM_WORLD, [&] {
    std::vector<NamedPath> inputs = job_input_files(job);
    if (job.pool.base) inputs.push_back({"base checkpoint", *job.pool.base});
    for (const auto& c : job.pool.checkpoints) inputs.push_back({"checkpoint", c});
    check_output_apart("--state", path, inputs);
    lock.emplace(StateLock::acquire(path, verb));
  });
  return lock;
}

RunState open_state(const std::filesystem::path& path, const Runtime& rt, StateUse use) {
  const std::vector<std::string>& fingerprints = rt.checkpoint_fingerprints();
  const auto names = rt.checkpoint_names();
  const bool exists = std::filesystem::exists(path);
  if (use == StateUse::Resume && !exists)
    throw_input("{}: no state to resume (run without --resume to start a search)", path.string());
  if (!exists) {
    RunState s;
    s.meta = make_meta(rt.job(), names, fingerprints);
    for (const auto& kv : rt.task_data_fingerprints()) s.meta.settings.push_back(kv);
    s.evals.dims = 0;
    s.evals.n_weights = rt.num_weights();
    s.evals.n_tasks = rt.job().tasks.size();
    s.baselines.n_weights = rt.num_weights();
    s.baselines.n_tasks = rt.job().tasks.size();
    s.test.n_tasks = rt.job().tasks.size();
    s.validation.n_tasks = rt.job().tasks.size();
    check_state_writable(path, s);
    return s;
  }
  RunState s = load_state(path);
  check_resume_compatible(path, s, rt.job(), names, fingerprints, rt.task_data_fingerprints());
  // A state from before task data fingerprints records them from now on.
  const bool has_data =
      std::any_of(s.meta.settings.begin(), s.meta.settings.end(),
                  [](const auto& kv) { return kv.first.rfind(kTaskDataKeyPrefix, 0) == 0; });
  if (!has_data)
    for (const auto& kv : rt.task_data_fingerprints()) s.meta.settings.push_back(kv);
  if (use == StateUse::NewSearch && (s.evals.size() > 0 || !s.optimizer.strings.empty()))
    throw_input(
        "{}: already holds a search ({} evaluations): pass --resume to continue it, or choose "
        "another --state",
        path.string(), s.evals.size());
  s.meta.run_status = "running";
  check_state_writable(path, s);
  return s;
}

std::optional<std::vector<Scored>> score_test(Coordinator& co, Runtime& rt,
                                              const std::vector<ModelRequest>& models,
                                              bool abandonable) {
  if (rt.has_test_split()) return co.score(models, "test", abandonable);
  Scored missing;
  missing.scores.assign(rt.job().tasks.size(), std::nan(""));
  return std::vector<Scored>(models.size(), missing);
}

std::vector<double> table_row(const std::vector<double>& table, size_t r, size_t width) {
  KS_CHECK(table.size() >= (r + 1) * width, "table row out of range");
  return std::vector<double>(table.begin() + static_cast<long>(r * width),
                             table.begin() + static_cast<long>((r + 1) * width));
}

std::vector<double> one_hot_weights(const Runtime& rt, size_t i) {
  const size_t n = rt.num_checkpoints();
  std::vector<double> w(rt.num_weights(), 0.0);
  for (size_t g = 0; g < w.size() / n; ++g) w[g * n + i] = 1.0;
  return w;
}

namespace {

// Row of baseline `name` with the checkpoint recipe, or -1.
long checkpoint_row(const RunState& s, const std::string& name) {
  for (size_t b = 0; b < s.baselines.size(); ++b)
    if (s.baselines.names[b] == name && s.baselines.recipes[b] == kCheckpointRecipe)
      return static_cast<long>(b);
  return -1;
}

}  // namespace

Eigen::MatrixXd checkpoint_scores(const RunState& state, const Runtime& rt) {
  const auto names = rt.checkpoint_names();
  const size_t k = rt.job().tasks.size();
  const auto hib = rt.higher_is_better();
  Eigen::MatrixXd m(static_cast<Eigen::Index>(names.size()), static_cast<Eigen::Index>(k));
  for (size_t i = 0; i < names.size(); ++i) {
    const long b = checkpoint_row(state, names[i]);
    KS_CHECK(b >= 0, "checkpoint " + names[i] + " has no baseline row");
    const auto oriented =
        search::orient_scores(table_row(state.baselines.scores, static_cast<size_t>(b), k), hib);
    for (size_t j = 0; j < k; ++j)
      m(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = oriented[j];
  }
  return m;
}

search::Objective build_objective(const RunState& state, const Runtime& rt) {
  return search::Objective::build(rt.job().objective, rt.task_names(),
                                  checkpoint_scores(state, rt));
}

double objective_of(const search::Objective& obj, const Runtime& rt, const Scored& s,
                    double penalty) {
  if (!s.ok) return penalty;
  // Missing scores (no test split) give no objective.
  for (double v : s.scores)
    if (!std::isfinite(v)) return std::nan("");
  return obj(search::orient_scores(s.scores, rt.higher_is_better()));
}

double failure_penalty(const RunState& state) {
  double worst = std::numeric_limits<double>::infinity();
  for (size_t b = 0; b < state.baselines.size(); ++b)
    if (state.baselines.recipes[b] == kCheckpointRecipe &&
        std::isfinite(state.baselines.objective[b]))
      worst = std::min(worst, state.baselines.objective[b]);
  return std::isfinite(worst) ? worst - 1.0 : -1.0;
}

void ensure_checkpoint_baselines(Coordinator& co, Runtime& rt, RunState& state,
                                 const std::filesystem::path& path) {
  const auto names = rt.checkpoint_names();
  bool all = true;
  for (const auto& n : names) all = all && checkpoint_row(state, n) >= 0;
  if (all) return;
  const bool validation = rt.has_validation_split();
  spdlog::info("scoring the {} checkpoints alone (search{} and test splits)", names.size(),
               validation ? ", validation" : "");
  std::vector<ModelRequest> models;
  for (size_t i = 0; i < names.size(); ++i) models.push_back({one_hot_weights(rt, i), {}});
  const auto search = co.score(models, "search", false).value();
  const auto test = score_test(co, rt, models, false).value();
  const auto valid = validation ? co.score(models, "validation", false).value()
                                : std::vector<Scored>(names.size());
  for (size_t i = 0; i < names.size(); ++i)
    if (!search[i].ok || !test[i].ok)
      throw_runtime("checkpoint {} could not be scored: {}", names[i],
                    search[i].ok ? test[i].error : search[i].error);
  // The objective needs the pool's own scores first (chebyshev's ideal and nadir).
  RunState with_rows = state;
  for (size_t i = 0; i < names.size(); ++i) {
    if (checkpoint_row(with_rows, names[i]) >= 0) continue;
    with_rows.baselines.append(names[i], kCheckpointRecipe, one_hot_weights(rt, i),
                               search[i].scores, test[i].scores, 0.0, 0.0, test[i].examples);
  }
  const auto obj = build_objective(with_rows, rt);
  for (size_t b = 0; b < with_rows.baselines.size(); ++b) {
    if (with_rows.baselines.recipes[b] != kCheckpointRecipe) continue;
    const size_t k = rt.job().tasks.size();
    auto row = [&](const std::vector<double>& v) { return table_row(v, b, k); };
    auto objective = [&](const std::vector<double>& scores) {
      Scored sc;
      sc.scores = scores;
      return objective_of(obj, rt, sc, 0.0);
    };
    with_rows.baselines.objective[b] = objective(row(with_rows.baselines.scores));
    with_rows.baselines.test_objective[b] = objective(row(with_rows.baselines.test_scores));
    // The validation split (the job has one): every checkpoint, as a
    // reference the returned merge is compared with there.
    const auto it = std::find(names.begin(), names.end(), with_rows.baselines.names[b]);
    if (validation && it != names.end()) {
      const Scored& v = valid[static_cast<size_t>(it - names.begin())];
      if (v.ok) with_rows.baselines.set_validation(b, v.scores, objective(v.scores));
    }
  }
  state = std::move(with_rows);
  save_state(path, state);
}

}  // namespace kintsugi
