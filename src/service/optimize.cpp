#include "kintsugi/service/optimize.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/search/optimizer.hpp"
#include "kintsugi/search/parameterization.hpp"
#include "kintsugi/search/pareto.hpp"
#include "kintsugi/search/uniform_distance.hpp"
#include "kintsugi/service/report_html.hpp"
#include "kintsugi/service/session.hpp"
#include "kintsugi/service/stop_signal.hpp"

namespace kintsugi {

namespace {

std::map<std::string, double> parse_preference(const std::string& text) {
  std::map<std::string, double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) throw_input("--preference: '{}' is not task=value", item);
    const std::string task = item.substr(0, eq);
    try {
      size_t used = 0;
      const std::string v = item.substr(eq + 1);
      out[task] = std::stod(v, &used);
      if (used != v.size()) throw std::invalid_argument(v);
    } catch (const std::exception&) {
      throw_input("--preference: '{}' is not a number", item.substr(eq + 1));
    }
  }
  return out;
}

JobConfig job_with_overrides(const OptimizeOptions& o) {
  JobConfig job = load_job(o.job);
  if (o.seed) job.search.seed = *o.seed;
  if (o.budget) {
    if (*o.budget == 0) throw_input("--budget must be at least 1");
    job.search.budget = *o.budget;
  }
  if (!o.preference.empty()) {
    if (job.objective.kind != "chebyshev")
      throw_input("--preference needs objective.kind chebyshev (the job has '{}')",
                  job.objective.kind);
    const auto pref = parse_preference(o.preference);
    for (const auto& [task, v] : pref) {
      const bool known =
          std::any_of(job.tasks.begin(), job.tasks.end(),
                      [&name = task](const TaskConfig& t) { return t.name == name; });
      if (!known) throw_input("--preference: no task named '{}'", task);
      if (!(v >= 0) || !std::isfinite(v))
        throw_input("--preference: {} for {} must be >= 0", v, task);
    }
    job.objective.preference = pref;
  }
  return job;
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 90) return fmt::format("{:.0f}s", s);
  if (s < 5400) return fmt::format("{:.1f}min", s / 60);
  return fmt::format("{:.1f}h", s / 3600);
}

// What the search's steps on rank 0 share.
struct SearchRun {
  Runtime& rt;
  Coordinator& co;
  RunState& state;
  const std::filesystem::path& path;
  const search::Objective& objective;
  double penalty;              // the objective value of a failed evaluation
  std::filesystem::path html;  // --html: the page rewritten after each save ("" = none)
};

// Saves the state, then rewrites the --html page from it. A page that cannot
// be written is a warning: the search and its state go on.
void save(SearchRun& run) {
  save_state(run.path, run.state);
  if (run.html.empty()) return;
  try {
    write_report_html(run.html, run.state);
  } catch (const std::exception& e) {
    spdlog::warn("--html: {}", e.what());
  }
}

// A new search's optimizer, or a resumed search's saved one with the job's
// budget (--budget may extend a finished search). A state stopped before its
// first generation was saved holds no optimizer yet: resuming it starts the
// search.
std::unique_ptr<search::Optimizer> start_optimizer(const SearchRun& run, bool resume,
                                                   const search::Parameterization& param) {
  const JobConfig& job = run.rt.job();
  std::unique_ptr<search::Optimizer> opt;
  if (resume && !run.state.optimizer.strings.empty()) {
    try {
      opt = search::load_optimizer(run.state.optimizer);
    } catch (const InputError& e) {  // the optimizer's checks know no file name
      throw_input("{}: {}", run.path.string(), e.what());
    }
    opt->extend_budget(job.search.budget);
    spdlog::info("resuming {} at generation {} ({} evaluations done)", run.path.string(),
                 opt->generation(), opt->evaluations());
  } else {
    opt = search::make_optimizer(search::OptimizerOptions::from_config(job.search),
                                 param.initial_point());
    run.state.evals.dims = param.dimension();
  }
  KS_CHECK(static_cast<size_t>(opt->dimension()) == param.dimension(), "optimizer dimension");
  return opt;
}

// The Pareto front of the state's selectable evaluations so far (those that
// succeeded; with search.rescore_top, the re-scored ones: the front compares
// scores on the same examples).
search::ParetoArchive pareto_of(const RunState& state, const Runtime& rt) {
  search::ParetoArchive archive(rt.job().tasks.size());
  const auto hib = rt.higher_is_better();
  const size_t k = rt.job().tasks.size();
  for (size_t e = 0; e < state.evals.size(); ++e) {
    if (!selectable(state, e)) continue;
    archive.add(static_cast<int64_t>(e),
                search::orient_scores(table_row(state.evals.scores, e, k), hib));
  }
  return archive;
}

// Appends a scored generation to the state's evaluations and its successes
// to the archive, tells the optimizer the objective values and saves the
// state (a resume continues after this generation). Raises `best`.
void record_generation(SearchRun& run, search::Optimizer& opt, search::ParetoArchive& archive,
                       const std::vector<Eigen::VectorXd>& zs,
                       const std::vector<std::vector<double>>& weights,
                       const std::vector<Scored>& scored, const std::vector<double>& first_pass,
                       double& best) {
  const auto hib = run.rt.higher_is_better();
  std::vector<double> values;
  const int64_t gen = opt.generation();
  for (size_t c = 0; c < zs.size(); ++c) {
    const Scored& s = scored[c];
    const double v = objective_of(run.objective, run.rt, s, run.penalty);
    const std::vector<double> zrow(zs[c].data(), zs[c].data() + zs[c].size());
    run.state.evals.append(zrow, weights[c], s.scores, v,
                           s.ok ? EvalStatus::Ok : EvalStatus::Failed, s.error, gen, s.seconds,
                           s.merge_seconds, s.score_seconds, first_pass[c]);
    // The optimizer maximizes the fitness (search.uniform_penalty pulls it
    // toward the uniform soup); the state records the objective itself.
    values.push_back(s.ok ? search_fitness(run.state, run.state.evals.size() - 1) : v);
    if (s.ok) {
      if (selectable(run.state, run.state.evals.size() - 1)) {
        archive.add(static_cast<int64_t>(run.state.evals.size() - 1),
                    search::orient_scores(s.scores, hib));
        best = std::max(best, v);
      }
    } else {
      spdlog::warn("generation {} candidate {} failed: {}", gen, c, s.error);
    }
  }
  opt.tell(values);
  run.state.optimizer = opt.save();
  run.state.pareto = archive.indices();
  save(run);
}

// search.rescore_top: the generation's fittest candidates (on the first pass,
// search.first_pass examples per task) scored again on every search example; their
// new scores replace the first pass's in `scored`, and `first_pass` gets
// their first-pass objective (NaN for the rest). False when a stop signal
// abandoned the re-scoring (the generation is then not recorded).
bool rescore_fittest(SearchRun& run, const std::vector<std::vector<double>>& weights,
                     std::vector<Scored>& scored, std::vector<double>& first_pass) {
  const size_t top = run.rt.job().search.rescore_top;
  first_pass.assign(scored.size(), std::nan(""));
  if (top == 0) return true;
  const double lambda = run.rt.job().search.uniform_penalty;
  std::vector<size_t> ok;
  std::vector<double> objective(scored.size()), fitness(scored.size());
  for (size_t c = 0; c < scored.size(); ++c) {
    if (!scored[c].ok) continue;
    ok.push_back(c);
    objective[c] = objective_of(run.objective, run.rt, scored[c], run.penalty);
    fitness[c] =
        objective[c] - lambda * search::uniform_distance(weights[c], run.rt.num_checkpoints());
  }
  // Stable: among equal fitness the earlier candidate first.
  std::stable_sort(ok.begin(), ok.end(),
                   [&](size_t a, size_t b) { return fitness[a] > fitness[b]; });
  ok.resize(std::min(top, ok.size()));
  std::vector<ModelRequest> models;
  for (size_t c : ok) models.push_back({weights[c], {}});
  const auto again = run.co.score(models, "search", true);
  if (!again) return false;
  for (size_t i = 0; i < ok.size(); ++i) {
    const size_t c = ok[i];
    Scored s = (*again)[i];
    s.seconds += scored[c].seconds;
    s.merge_seconds += scored[c].merge_seconds;
    s.score_seconds += scored[c].score_seconds;
    first_pass[c] = objective[c];
    if (!s.ok) s.error = "re-scoring on every search example: " + s.error;
    scored[c] = std::move(s);
  }
  if (!ok.empty()) {
    double before = 0, after = 0;
    size_t n = 0;
    for (size_t c : ok)
      if (scored[c].ok) {
        before += first_pass[c];
        after += objective_of(run.objective, run.rt, scored[c], run.penalty);
        ++n;
      }
    if (n > 0)
      spdlog::info(
          "re-scored the {} fittest on every search example: mean objective {:.4f} -> {:.4f}", n,
          before / static_cast<double>(n), after / static_cast<double>(n));
  }
  return true;
}

// Generations until the optimizer is done (true) or a stop signal arrives
// (false: the generation in flight is abandoned, the state holds the last
// finished one).
bool run_generations(SearchRun& run, search::Optimizer& opt, const search::Parameterization& param,
                     search::ParetoArchive& archive, const std::atomic<bool>& stop, double& best) {
  const size_t budget = run.rt.job().search.budget;
  const auto t_start = std::chrono::steady_clock::now();
  size_t evaluated_here = 0;
  while (!opt.done()) {
    if (stop.load()) break;
    const auto zs = opt.ask();
    std::vector<ModelRequest> models;
    std::vector<std::vector<double>> weights;
    for (const auto& z : zs) {
      weights.push_back(param.weights(z));
      models.push_back({weights.back(), {}});
    }
    const auto t0 = std::chrono::steady_clock::now();
    const bool rescore = run.rt.job().search.rescore_top > 0;
    auto scored = run.co.score(models, rescore ? kFirstPassSplit : "search", true);
    if (!scored) break;
    std::vector<double> first_pass;
    if (!rescore_fittest(run, weights, *scored, first_pass)) break;
    const int64_t gen = opt.generation();
    record_generation(run, opt, archive, zs, weights, *scored, first_pass, best);

    evaluated_here += zs.size();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    const double per = elapsed / static_cast<double>(evaluated_here);
    const double left = static_cast<double>(budget) - static_cast<double>(opt.evaluations());
    spdlog::info(
        "generation {}: {}/{} evaluations, best objective {:.4f}, {:.2f} s/candidate "
        "({:.1f} s this generation), ~{} left",
        gen, opt.evaluations(), budget, best, per,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
        fmt_duration(std::max(0.0, left) * per));
  }
  return opt.done();
}

// The evaluations of `chosen` that `table` has no row for yet.
std::vector<int64_t> not_scored_in(const TestScores& table, const std::vector<int64_t>& chosen) {
  std::vector<int64_t> todo;
  for (int64_t e : chosen)
    if (table.row_of(e) < 0) todo.push_back(e);
  return todo;
}

// With a validation split: the candidates the returned merge is chosen among,
// the `top` fittest on search among the selectable ones (the re-scored ones
// with search.rescore_top) and the Pareto set, less those already scored on
// validation (a resumed run scores only the rest).
std::vector<int64_t> validation_candidates(const RunState& state, size_t top) {
  std::vector<int64_t> ok;
  for (size_t e = 0; e < state.evals.size(); ++e)
    if (selectable(state, e)) ok.push_back(static_cast<int64_t>(e));
  std::vector<double> fitness(state.evals.size());
  for (int64_t e : ok)
    fitness[static_cast<size_t>(e)] = search_fitness(state, static_cast<size_t>(e));
  // Stable: among equal fitness the earlier evaluation first.
  std::stable_sort(ok.begin(), ok.end(), [&](int64_t a, int64_t b) {
    return fitness[static_cast<size_t>(a)] > fitness[static_cast<size_t>(b)];
  });
  std::vector<int64_t> chosen(ok.begin(),
                              ok.begin() + static_cast<std::ptrdiff_t>(std::min(top, ok.size())));
  for (int64_t e : state.pareto)
    if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) chosen.push_back(e);
  return not_scored_in(state.validation, chosen);
}

// The evaluations that get held-out scores: the best one and the best Pareto
// members (test_top in all), less those already scored on the test split.
std::vector<int64_t> test_candidates(const RunState& state, size_t test_top) {
  std::vector<int64_t> chosen;
  if (const int64_t best = best_evaluation(state); best >= 0) chosen.push_back(best);
  auto front = state.pareto;
  std::sort(front.begin(), front.end(), [&](int64_t a, int64_t b) {
    return state.evals.objective[static_cast<size_t>(a)] >
           state.evals.objective[static_cast<size_t>(b)];
  });
  for (int64_t e : front)
    if (chosen.size() < test_top && std::find(chosen.begin(), chosen.end(), e) == chosen.end())
      chosen.push_back(e);
  return not_scored_in(state.test, chosen);
}

// Scores the evaluations `todo` on a held-out split ("validation" or
// "test") into `table` and saves the state; false when a stop signal arrived
// first (nothing recorded: a resumed run scores them again).
bool score_held_out(SearchRun& run, const std::vector<int64_t>& todo, const std::string& split,
                    TestScores& table) {
  RunState& state = run.state;
  spdlog::info("scoring {} evaluations on the {} split", todo.size(), split);
  std::vector<ModelRequest> models;
  const size_t w = state.evals.n_weights;
  for (int64_t e : todo)
    models.push_back({table_row(state.evals.weights, static_cast<size_t>(e), w), {}});
  const auto scored = split == "test" ? score_test(run.co, run.rt, models, true)
                                      : run.co.score(models, split, true);
  if (!scored) return false;
  for (size_t i = 0; i < todo.size(); ++i) {
    const Scored& s = (*scored)[i];
    table.eval_index.push_back(todo[i]);
    table.scores.insert(table.scores.end(), s.scores.begin(), s.scores.end());
    table.examples.append(table.eval_index.size() - 1,
                          s.ok ? s.examples : std::vector<ExampleScores>{});
    table.objective.push_back(s.ok ? objective_of(run.objective, run.rt, s, run.penalty)
                                   : std::nan(""));
  }
  save(run);
  return true;
}

// Saves the state with how this run ended (StateMeta::run_status).
void record_run_status(SearchRun& run, const std::string& status) {
  run.state.meta.run_status = status;
  save(run);
}

// Rank 0: the search itself.
int coordinate(Runtime& rt, const OptimizeOptions& o, const std::atomic<bool>& stop) {
  const JobConfig& job = rt.job();
  const auto path = state_path_for(job, o.state);
  RunState state = open_state(path, rt, o.resume ? StateUse::Resume : StateUse::NewSearch);
  Coordinator co(rt, &stop);
  ensure_checkpoint_baselines(co, rt, state, path);
  const auto objective = build_objective(state, rt);
  SearchRun run{rt, co, state, path, objective, failure_penalty(state), o.html};

  const auto param = search::Parameterization::from_config(job.search, rt.num_checkpoints());
  const auto opt = start_optimizer(run, o.resume, param);
  search::ParetoArchive archive = pareto_of(state, rt);
  double best = -std::numeric_limits<double>::infinity();
  for (size_t e = 0; e < state.evals.size(); ++e)
    if (selectable(state, e)) best = std::max(best, state.evals.objective[e]);
  if (!run_generations(run, *opt, param, archive, stop, best)) {
    record_run_status(run, fmt::format("stopped by signal {}", stop_signal_number()));
    spdlog::warn("stopped by signal {}: state saved at {} ({} evaluations); resume with --resume",
                 stop_signal_number(), path.string(), state.evals.size());
    return kExitStopped;
  }
  spdlog::info("search finished ({}): {} evaluations, best objective {:.4f}", opt->stop_reason(),
               state.evals.size(), best);

  // The returned merge: chosen on the validation split when there is one
  // (best_evaluation reads it), so that the search's winner's curse does not
  // decide; test is scored after, for the report only.
  if (rt.has_validation_split()) {
    const auto candidates = validation_candidates(state, o.validation_top);
    if (!candidates.empty() && !score_held_out(run, candidates, "validation", state.validation)) {
      record_run_status(run, fmt::format("stopped by signal {}", stop_signal_number()));
      spdlog::warn("stopped by signal during validation scoring; state saved; resume to finish");
      return kExitStopped;
    }
    const int64_t chosen = best_evaluation(state), on_search = best_on_search(state);
    spdlog::info("validation: evaluation {} is the best of {} candidates{}", chosen,
                 state.validation.size(),
                 chosen == on_search ? " (also the best on search)"
                                     : fmt::format(" (the best on search was {})", on_search));
  }
  const auto todo = test_candidates(state, o.test_top);
  if (!todo.empty() && rt.has_test_split() && !score_held_out(run, todo, "test", state.test)) {
    record_run_status(run, fmt::format("stopped by signal {}", stop_signal_number()));
    spdlog::warn("stopped by signal during test scoring; state saved; resume to finish");
    return kExitStopped;
  }
  record_run_status(run, "finished");
  co.finish();
  return kExitOk;
}

}  // namespace

int run_optimize(const OptimizeOptions& o) {
  const auto& stop = install_stop_handlers();
  JobConfig job = job_with_overrides(o);
  // A page that could never be written is refused before any work (on every
  // rank: they all exit 2 together).
  if (!o.html.empty()) {
    const auto state = state_path_for(job, o.state);
    auto inputs = job_input_files(job);
    inputs.push_back({"state", state});
    inputs.push_back({"previous state", prev_path_of(state)});
    check_report_html_target(o.html, inputs);
  }
  // One writer per state, for the whole run (released when this returns).
  const auto lock = claim_state(job, state_path_for(job, o.state), "optimize");
  Runtime rt(std::move(job));
  if (world_rank() != 0) {
    serve(rt);
    return kExitOk;
  }
  try {
    return coordinate(rt, o, stop);
  } catch (const StopRequested& e) {
    spdlog::warn(
        "stopped by signal {}: {}; the state holds what finished before; resume with "
        "--resume",
        stop_signal_number(), e.what());
    return kExitStopped;
  }
}

}  // namespace kintsugi
