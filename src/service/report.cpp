#include "kintsugi/service/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "kintsugi/config/job.hpp"
#include "kintsugi/eval/uncertainty.hpp"
#include "kintsugi/search/parameterization.hpp"
#include "kintsugi/search/pareto.hpp"
#include "kintsugi/service/export.hpp"
#include "kintsugi/service/session.hpp"

namespace kintsugi {

namespace {

using nlohmann::json;

json number(double v) {
  return std::isfinite(v) ? json(v) : json(nullptr);
}

std::vector<double> row(const std::vector<double>& v, size_t r, size_t width) {
  if (v.size() < (r + 1) * width) return std::vector<double>(width, std::nan(""));
  return std::vector<double>(v.begin() + static_cast<long>(r * width),
                             v.begin() + static_cast<long>((r + 1) * width));
}

// Each task's direction from its metric, which the state keeps among the
// job's settings ("tasks.<name>.metric").
std::vector<bool> higher_is_better(const RunState& s) {
  const std::map<std::string, std::string> settings(s.meta.settings.begin(), s.meta.settings.end());
  std::vector<bool> h;
  for (const auto& t : s.meta.task_names) {
    const auto it = settings.find(fmt::format("tasks.{}.metric", t));
    h.push_back(it == settings.end() || metric_higher_is_better(it->second));
  }
  return h;
}

// The job as the state recorded it (its text), relative paths resolved
// against the job file's folder; nullopt when the text no longer parses
// (a state written by another version).
std::optional<JobConfig> job_of(const RunState& s) {
  try {
    return parse_job(s.meta.config, s.meta.job_file,
                     std::filesystem::path(s.meta.job_file).parent_path());
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

json entry(const RunState& s, const std::string& name, const std::vector<double>& weights,
           const std::vector<double>& search, const std::vector<double>& test, double obj,
           double test_obj, const std::vector<ExampleScores>& test_examples = {}) {
  json scores = json::object();
  for (size_t k = 0; k < s.meta.task_names.size(); ++k) {
    scores[s.meta.task_names[k]] = {{"search", number(search[k])}, {"test", number(test[k])}};
    if (k < test_examples.size())
      scores[s.meta.task_names[k]]["test_stderr"] = number(standard_error(test_examples[k]));
  }
  json w = json::array();
  for (double v : weights) w.push_back(number(v));
  return {{"name", name},
          {"weights", w},
          {"scores", scores},
          {"objective", {{"search", number(obj)}, {"test", number(test_obj)}}}};
}

// Test-split scores of evaluation e, if it was scored there.
std::pair<std::vector<double>, double> test_of(const RunState& s, int64_t e) {
  if (const int64_t i = s.test.row_of(e); i >= 0)
    return {row(s.test.scores, static_cast<size_t>(i), s.test.n_tasks),
            s.test.objective[static_cast<size_t>(i)]};
  return {std::vector<double>(s.meta.task_names.size(), std::nan("")), std::nan("")};
}

// Per-example test results of evaluation e (empty when it has none).
std::vector<ExampleScores> test_examples_of(const RunState& s, int64_t e) {
  const int64_t i = s.test.row_of(e);
  return i >= 0 ? s.test.examples.row(static_cast<size_t>(i)) : std::vector<ExampleScores>{};
}

// The objective's task coefficients when it is a (weighted) mean of task
// scores; empty for chebyshev and constrained, which are not.
std::vector<double> mean_coefficients(const RunState& s, const std::optional<JobConfig>& job) {
  const std::map<std::string, std::string> settings(s.meta.settings.begin(), s.meta.settings.end());
  const auto kind = settings.find("objective.kind");
  const size_t k = s.meta.task_names.size();
  if (kind == settings.end() || kind->second == "mean") return std::vector<double>(k, 1.0);
  if (kind->second != "weighted") return {};
  if (!job) return {};  // the job's own weights, from the job text the state keeps
  std::vector<double> c;
  for (const auto& t : s.meta.task_names) {
    const auto it = job->objective.weights.find(t);
    c.push_back(it == job->objective.weights.end() ? 0.0 : it->second);
  }
  return c;
}

json interval_json(const PairedInterval& p, double scale, const std::string& unit) {
  return {{"difference", number(scale * p.difference)},
          {"low", number(scale * p.low)},
          {"high", number(scale * p.high)},
          {"significant", std::isfinite(p.difference) && p.significant()},
          {"unit", unit},
          {"examples", p.examples}};
}

// The returned merge against the references a user would otherwise take, on
// the test split: the best checkpoint and the best recipe by the search
// objective, and uniform soup. Paired bootstrap over the test examples
// (eval/uncertainty.hpp); differences oriented so that positive means the
// merge is better, in points for proportions (x 100).
json comparisons(const RunState& s, int64_t best, const std::optional<JobConfig>& job) {
  json out = json::array();
  const auto merged = best >= 0 ? test_examples_of(s, best) : std::vector<ExampleScores>{};
  if (merged.empty()) return out;
  const auto hib = higher_is_better(s);
  const size_t K = s.meta.task_names.size();
  int64_t best_ckpt = -1, best_recipe = -1, uniform = -1;
  for (size_t b = 0; b < s.baselines.size(); ++b) {
    const bool ckpt = s.baselines.recipes[b] == kCheckpointRecipe;
    int64_t& slot = ckpt ? best_ckpt : best_recipe;
    const double o = s.baselines.objective[b];
    if (std::isfinite(o) && (slot < 0 || o > s.baselines.objective[static_cast<size_t>(slot)]))
      slot = static_cast<int64_t>(b);
    if (s.baselines.names[b] == "uniform_soup") uniform = static_cast<int64_t>(b);
  }
  const auto coef = mean_coefficients(s, job);
  const bool all_points = std::all_of(merged.begin(), merged.end(), [](const ExampleScores& e) {
    return e.transform == ExampleScores::Transform::Mean;
  });
  for (auto [role, b] :
       {std::pair{"best_checkpoint", best_ckpt}, std::pair{"best_recipe", best_recipe},
        std::pair{"uniform_soup", uniform}}) {
    if (b < 0) continue;
    const auto ref = s.baselines.test_examples.row(static_cast<size_t>(b));
    if (ref.size() != K) continue;
    json c{{"role", role},
           {"reference", s.baselines.names[static_cast<size_t>(b)]},
           {"split", "test"},
           {"resamples", kBootstrapResamples}};
    json tasks = json::object();
    for (size_t k = 0; k < K; ++k) {
      const bool points = merged[k].transform == ExampleScores::Transform::Mean;
      const PairedInterval p = paired_bootstrap(merged[k], ref[k], kBootstrapResamples, 0, hib[k]);
      tasks[s.meta.task_names[k]] =
          interval_json(p, points ? 100.0 : 1.0, points ? "points" : "metric units, oriented");
    }
    c["tasks"] = tasks;
    c["objective"] = nullptr;
    if (!coef.empty()) {
      const PairedInterval p = paired_bootstrap_mean(merged, ref, coef, hib);
      c["objective"] = interval_json(p, all_points ? 100.0 : 1.0,
                                     all_points ? "points" : "mixed units, oriented");
    }
    out.push_back(c);
  }
  return out;
}

// The label of merge weight i of `count` (N checkpoints x G layer groups,
// group-major): the checkpoint's name, with "(group G)" when there are groups.
std::string weight_label(const std::vector<std::string>& names, size_t i, size_t count) {
  const std::string nm = names.empty() ? std::to_string(i) : names[i % names.size()];
  return count > names.size() ? fmt::format("{} (group {})", nm, i / names.size()) : nm;
}

// Bytes of the pool's weight files, when the checkpoints are readable from
// here (a report copied off the cluster has no pool beside it: null).
json pool_bytes(const JobConfig& job) {
  std::error_code ec;
  uintmax_t total = 0;
  for (const auto& c : job.pool.checkpoints) {
    if (!std::filesystem::is_directory(c, ec)) return nullptr;
    for (const auto& f : std::filesystem::directory_iterator(c, ec))
      if (f.path().extension() == ".safetensors") total += f.file_size(ec);
    if (ec) return nullptr;
  }
  return total;
}

// The run's settings: what the report's summary names.
json run_json(const RunState& s, const std::optional<JobConfig>& job) {
  const auto hib = higher_is_better(s);
  json h = json::object();
  for (size_t k = 0; k < s.meta.task_names.size(); ++k) h[s.meta.task_names[k]] = bool(hib[k]);
  json r{{"job_file", s.meta.job_file},
         {"created", s.meta.created},
         {"kintsugi_version", s.meta.kintsugi_version},
         {"seed", s.meta.seed},
         {"pool_checkpoints", s.meta.pool_names.size()},
         {"tasks", s.meta.task_names},
         {"higher_is_better", h},
         {"method", nullptr},
         {"budget", nullptr},
         {"population", nullptr},
         {"parameterization", nullptr},
         {"granularity", nullptr},
         {"layer_groups", 1},
         {"objective", nullptr},
         {"pool_bytes", nullptr}};
  if (job) {
    const auto& se = job->search;
    r["method"] = se.method;
    r["budget"] = se.budget;
    r["population"] = se.population > 0 ? json(se.population) : json(nullptr);
    r["parameterization"] = se.parameterization;
    r["granularity"] = se.granularity;
    r["layer_groups"] = se.granularity == "layer_group" ? se.layer_groups : 1;
    r["objective"] = job->objective.kind;
    r["pool_bytes"] = pool_bytes(*job);
  }
  return r;
}

// Every evaluation: what the progress, trade-off and timing plots draw.
json evaluations_json(const RunState& s) {
  const size_t k = s.meta.task_names.size();
  std::vector<bool> front(s.evals.size(), false);
  for (int64_t e : s.pareto)
    if (e >= 0 && static_cast<size_t>(e) < front.size()) front[static_cast<size_t>(e)] = true;
  json out = json::array();
  for (size_t e = 0; e < s.evals.size(); ++e) {
    const bool ok = s.evals.status[e] == static_cast<int64_t>(EvalStatus::Ok);
    json scores = json::object();
    const auto sc = row(s.evals.scores, e, k);
    for (size_t j = 0; j < k; ++j) scores[s.meta.task_names[j]] = number(sc[j]);
    out.push_back({{"index", e},
                   {"generation", s.evals.generation[e]},
                   {"ok", ok},
                   {"error", s.evals.error[e]},
                   {"objective", ok ? number(s.evals.objective[e]) : json(nullptr)},
                   {"scores", scores},
                   {"seconds", number(s.evals.seconds[e])},
                   {"merge_seconds", number(s.evals.merge_seconds[e])},
                   {"score_seconds", number(s.evals.score_seconds[e])},
                   {"first_pass_objective", number(s.evals.first_pass_objective[e])},
                   {"pareto", bool(front[e])}});
  }
  return out;
}

// search.rescore_top: how many evaluations were re-scored on every search
// example, and their mean objective before and after (the first pass's
// winner's curse, measured); null when the search did not re-score.
json rescoring_json(const RunState& s) {
  std::optional<size_t> top;
  for (const auto& [key, v] : s.meta.settings)
    if (key == "search.rescore_top") top = std::strtoull(v.c_str(), nullptr, 10);
  if (!top) return nullptr;
  size_t n = 0;
  double before = 0, after = 0;
  for (size_t e = 0; e < s.evals.size(); ++e)
    if (s.evals.rescored(e) && s.evals.status[e] == static_cast<int64_t>(EvalStatus::Ok)) {
      ++n;
      before += s.evals.first_pass_objective[e];
      after += s.evals.objective[e];
    }
  const double d = static_cast<double>(std::max<size_t>(n, 1));
  return {{"top", *top},
          {"evaluations", n},
          {"mean_first_pass_objective", n ? number(before / d) : json(nullptr)},
          {"mean_objective", n ? number(after / d) : json(nullptr)}};
}

// CMA-ES's step size and distribution mean (as merge weights) after each
// generation, from the optimizer's histories (search/cmaes.hpp), beside the
// best objective so far; empty for random search and for states written
// before the histories were kept.
json generations_json(const RunState& s, const std::optional<JobConfig>& job) {
  json out = json::array();
  const auto sig = s.optimizer.reals.find("sigma_history");
  const auto mean = s.optimizer.reals.find("mean_history");
  if (sig == s.optimizer.reals.end() || mean == s.optimizer.reals.end() || !job) return out;
  std::optional<search::Parameterization> param;
  try {
    param.emplace(search::Parameterization::from_config(job->search, s.meta.pool_names.size()));
  } catch (const std::exception&) {
  }
  const size_t g_count = sig->second.size();
  const size_t d = g_count > 0 ? mean->second.size() / g_count : 0;
  double best = -std::numeric_limits<double>::infinity();
  size_t e = 0;
  for (size_t g = 0; g < g_count; ++g) {
    for (; e < s.evals.size() && s.evals.generation[e] <= static_cast<int64_t>(g); ++e)
      if (selectable(s, e)) best = std::max(best, s.evals.objective[e]);
    json w = nullptr;
    if (param && param->dimension() == d) {
      Eigen::VectorXd z(static_cast<Eigen::Index>(d));
      for (size_t i = 0; i < d; ++i) z[static_cast<Eigen::Index>(i)] = mean->second[g * d + i];
      w = json::array();
      for (double v : param->weights(z)) w.push_back(number(v));
    }
    out.push_back({{"generation", g},
                   {"sigma", number(sig->second[g])},
                   {"mean_weights", w},
                   {"best_so_far", number(best)}});
  }
  return out;
}

}  // namespace

std::string run_status_text(const RunState& s) {
  return s.meta.run_status.empty() ? "unknown" : s.meta.run_status;
}

json report_json(const RunState& s) {
  const auto job = job_of(s);
  const size_t k = s.meta.task_names.size(), w = s.baselines.n_weights;
  json out;
  out["checkpoints"] = json::array();
  out["baselines"] = json::array();
  for (size_t b = 0; b < s.baselines.size(); ++b) {
    json e = entry(s, s.baselines.names[b], row(s.baselines.weights, b, w),
                   row(s.baselines.scores, b, k), row(s.baselines.test_scores, b, k),
                   s.baselines.objective[b], s.baselines.test_objective[b],
                   s.baselines.test_examples.row(b));
    const bool ckpt = s.baselines.recipes[b] == kCheckpointRecipe;
    if (!ckpt) e["recipe"] = s.baselines.recipes[b];
    // The validation split's scores, where the references were scored there.
    const auto v = row(s.baselines.validation_scores, b, k);
    if (std::any_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); })) {
      for (size_t j = 0; j < k; ++j) e["scores"][s.meta.task_names[j]]["validation"] = number(v[j]);
      e["objective"]["validation"] = number(s.baselines.validation_objective[b]);
    }
    out[ckpt ? "checkpoints" : "baselines"].push_back(e);
  }
  const int64_t best = best_evaluation(s);
  const size_t ew = s.evals.n_weights;
  out["best"] = nullptr;
  if (best >= 0) {
    const auto [test, test_obj] = test_of(s, best);
    const auto b = static_cast<size_t>(best);
    json e = entry(s, fmt::format("optimized (evaluation {})", best), row(s.evals.weights, b, ew),
                   row(s.evals.scores, b, k), test, s.evals.objective[b], test_obj,
                   test_examples_of(s, best));
    e["evaluation"] = best;
    e["generation"] = s.evals.generation[b];
    size_t nonzero = 0;
    for (double v : row(s.evals.weights, b, ew)) nonzero += std::fabs(v) > 1e-3 ? 1 : 0;
    e["nonzero_weights"] = nonzero;
    out["best"] = e;
  }
  // Which split chose the returned merge: the validation split when the job
  // has one (the best there among the candidates scored on it), else the
  // search split, in-sample, with its score biased upward.
  if (s.validation.size() > 0 && best >= 0) {
    out["selection"] = {{"split", "validation"},
                        {"in_sample", false},
                        {"candidates", s.validation.size()},
                        {"chosen", best},
                        {"best_on_search", best_on_search(s)}};
    if (const int64_t i = s.validation.row_of(best); i >= 0) {
      const auto v = row(s.validation.scores, static_cast<size_t>(i), k);
      for (size_t j = 0; j < k; ++j)
        out["best"]["scores"][s.meta.task_names[j]]["validation"] = number(v[j]);
      out["best"]["objective"]["validation"] =
          number(s.validation.objective[static_cast<size_t>(i)]);
    }
  } else {
    out["selection"] = {{"split", "search"}, {"in_sample", true}};
  }
  out["selection"]["rescoring"] = rescoring_json(s);
  out["comparisons"] = comparisons(s, best, job);
  // Pareto front over the search split, and its hypervolume against the
  // worst checkpoint score of each task (oriented: higher is better).
  const auto hib = higher_is_better(s);
  std::vector<double> ref(k, std::numeric_limits<double>::infinity());
  for (size_t b = 0; b < s.baselines.size(); ++b)
    if (s.baselines.recipes[b] == kCheckpointRecipe) {
      const auto o = search::orient_scores(row(s.baselines.scores, b, k), hib);
      for (size_t j = 0; j < k; ++j) ref[j] = std::min(ref[j], o[j]);
    }
  std::vector<std::vector<double>> points;
  out["pareto"] = json::array();
  for (int64_t e : s.pareto) {
    const auto sc = row(s.evals.scores, static_cast<size_t>(e), k);
    points.push_back(search::orient_scores(sc, hib));
    const auto [test, test_obj] = test_of(s, e);
    json p =
        entry(s, fmt::format("evaluation {}", e), row(s.evals.weights, static_cast<size_t>(e), ew),
              sc, test, s.evals.objective[static_cast<size_t>(e)], test_obj);
    p["evaluation"] = e;
    out["pareto"].push_back(p);
  }
  const bool ref_ok =
      std::all_of(ref.begin(), ref.end(), [](double v) { return std::isfinite(v); });
  out["hypervolume"] =
      ref_ok && !points.empty() ? number(search::hypervolume(points, ref)) : json(nullptr);
  json r = json::array();
  for (double v : ref) r.push_back(number(v));
  out["hypervolume_reference"] = r;
  // Tasks on which no front member beats the reference: any one of them makes
  // the hypervolume 0 (e.g. a task every checkpoint and merge scores the same
  // on), which the text report names rather than leave a bare 0.
  json flat = json::array();
  if (ref_ok && !points.empty())
    for (size_t j = 0; j < k; ++j)
      if (std::none_of(points.begin(), points.end(),
                       [&](const std::vector<double>& p) { return p[j] > ref[j]; }))
        flat.push_back(s.meta.task_names[j]);
  out["hypervolume_flat_tasks"] = flat;
  size_t failed = 0;
  for (auto st : s.evals.status) failed += st != 0 ? 1 : 0;
  auto it = s.optimizer.strings.find("stop_reason");
  // Where an evaluation's time goes: merging (and writing the candidate, for
  // a command evaluator) against scoring. States from before these columns: null.
  double total = 0, merge = 0, score = 0;
  bool timed = s.evals.size() > 0;
  for (size_t e = 0; e < s.evals.size(); ++e) {
    total += s.evals.seconds[e];
    merge += s.evals.merge_seconds[e];
    score += s.evals.score_seconds[e];
    timed =
        timed && std::isfinite(s.evals.merge_seconds[e]) && std::isfinite(s.evals.score_seconds[e]);
  }
  out["search"] = {{"evaluations", s.evals.size()},
                   {"failed", failed},
                   {"seconds", number(total)},
                   {"merge_seconds", timed ? number(merge) : json(nullptr)},
                   {"score_seconds", timed ? number(score) : json(nullptr)},
                   {"generations", s.evals.generation.empty() ? 0 : s.evals.generation.back() + 1},
                   {"stop_reason", it == s.optimizer.strings.end() ? "" : it->second},
                   {"run_status", run_status_text(s)},
                   {"tasks", s.meta.task_names},
                   {"checkpoint_names", s.meta.pool_names}};
  out["run"] = run_json(s, job);
  out["evaluations"] = evaluations_json(s);
  out["generations"] = generations_json(s, job);
  return out;
}

namespace {

std::string cell(const json& v) {
  return v.is_null() ? "-" : fmt::format("{:.4f}", v.get<double>());
}

std::string signed_cell(const json& v) {
  return v.is_null() ? "-" : fmt::format("{:+.2f}", v.get<double>() + 0.0);  // no "-0.00"
}

// The held-out comparisons as text (report_json's "comparisons").
std::string comparisons_text(const json& r, const std::vector<std::string>& tasks, bool has_test) {
  std::string out;
  if (r["best"].is_null()) return out;
  const auto& sel = r["selection"];
  if (sel["in_sample"].get<bool>())
    out +=
        "\nselection: in-sample: the optimized merge is the best evaluation on the search split\n"
        "  (the job has no validation split), so its search scores are biased upward;\n"
        "  the test split is the honest figure.\n";
  else
    out += fmt::format(
        "\nselection: on the validation split: of {} candidates (the best on search and the\n"
        "  Pareto set), evaluation {} scored best there{};\n  test was not used to choose.\n",
        sel["candidates"].get<size_t>(), sel["chosen"].get<int64_t>(),
        sel["chosen"] == sel["best_on_search"]
            ? std::string(" (also the best on search)")
            : fmt::format(" (the best on search was evaluation {})",
                          sel["best_on_search"].get<int64_t>()));
  if (const auto& rs = sel["rescoring"]; !rs.is_null() && rs["evaluations"].get<size_t>() > 0)
    out += fmt::format(
        "re-scoring: the {} fittest of each generation were scored again on every search\n"
        "  example ({} evaluations; only they can be returned or on the Pareto front):\n"
        "  their mean objective went from {:.4f} on the first pass to {:.4f}.\n",
        rs["top"].get<size_t>(), rs["evaluations"].get<size_t>(),
        rs["mean_first_pass_objective"].get<double>(), rs["mean_objective"].get<double>());
  if (!has_test) return out;
  if (r["comparisons"].empty()) {
    out +=
        "held-out comparisons: not available (this state has no per-example test results: "
        "written by an older kintsugi, or scored by an external command)\n";
    return out;
  }
  out += fmt::format(
      "\nheld-out comparisons (test split): optimized minus reference, + is better;\n"
      "  [95% paired bootstrap interval over the test examples, {} resamples]; * significant\n",
      kBootstrapResamples);
  const std::map<std::string, std::string> roles{
      {"best_checkpoint", "the best checkpoint on search"},
      {"best_recipe", "the best recipe on search"},
      {"uniform_soup", "uniform soup"}};
  auto line = [](const std::string& what, const json& i) {
    if (i["difference"].is_null()) return fmt::format("    {:<18} -\n", what);
    return fmt::format("    {:<18} {:>7} [{}, {}] {}{}\n", what.substr(0, 18),
                       signed_cell(i["difference"]), signed_cell(i["low"]), signed_cell(i["high"]),
                       i["unit"].get<std::string>(), i["significant"].get<bool>() ? " *" : "");
  };
  for (const auto& c : r["comparisons"]) {
    const std::string ref = c["reference"].get<std::string>();
    const std::string role = roles.at(c["role"].get<std::string>());
    std::string verdict = "no comparison of the objective (it is not a mean of task scores)";
    if (!c["objective"].is_null() && !c["objective"]["difference"].is_null()) {
      const auto& o = c["objective"];
      verdict = !o["significant"].get<bool>()       ? "not distinguishable on test"
                : o["difference"].get<double>() > 0 ? "better on test (significant)"
                                                    : "worse on test (significant)";
    }
    out += fmt::format("  vs {} ({}): {}\n", role, ref, verdict);
    if (!c["objective"].is_null()) out += line("objective", c["objective"]);
    for (const auto& t : tasks) out += line(t, c["tasks"][t]);
  }
  return out;
}

}  // namespace

std::string report_text(const RunState& s) {
  const json r = report_json(s);
  const auto& tasks = s.meta.task_names;
  std::string out;
  const auto& se = r["search"];
  out += fmt::format("search: {} evaluations ({} failed), {} generations{}; last run: {}\n\n",
                     se["evaluations"].get<size_t>(), se["failed"].get<size_t>(),
                     se["generations"].get<int64_t>(),
                     se["stop_reason"].get<std::string>().empty()
                         ? ""
                         : fmt::format(", stopped by {}", se["stop_reason"].get<std::string>()),
                     se["run_status"].get<std::string>());
  if (!se["merge_seconds"].is_null() && se["seconds"].get<double>() > 0) {
    const double total = se["seconds"].get<double>();
    out.insert(out.size() - 1,
               fmt::format("time: {:.1f} s in evaluations: merging and writing {:.1f}%, scorer "
                           "{:.1f}%\n",
                           total, 100 * se["merge_seconds"].get<double>() / total,
                           100 * se["score_seconds"].get<double>() / total));
  }
  // The name column fits the longest name (checkpoint folders can be long),
  // within limits that keep a row readable; the CSV and JSON keep every name whole.
  size_t width = 34;
  for (const char* list : {"checkpoints", "baselines"})
    for (const auto& e : r[list]) width = std::max(width, e["name"].get<std::string>().size());
  if (!r["best"].is_null()) width = std::max(width, r["best"]["name"].get<std::string>().size());
  width = std::min<size_t>(width, 80);
  std::string head = fmt::format("{:<{}} {:>17}", "model", width, "objective");
  std::string sub = fmt::format("{:<{}} {:>8} {:>8}", "", width, "search", "test");
  for (const auto& t : tasks) {
    head += fmt::format(" {:>17}", t.substr(0, 17));
    sub += fmt::format(" {:>8} {:>8}", "search", "test");
  }
  out += fmt::format("{}\n{}\n", head, sub);
  auto line = [&](const json& e) {
    std::string l =
        fmt::format("{:<{}} {:>8} {:>8}", e["name"].get<std::string>().substr(0, width), width,
                    cell(e["objective"]["search"]), cell(e["objective"]["test"]));
    for (const auto& t : tasks)
      l +=
          fmt::format(" {:>8} {:>8}", cell(e["scores"][t]["search"]), cell(e["scores"][t]["test"]));
    l += '\n';
    return l;
  };
  out += "-- checkpoints\n";
  for (const auto& e : r["checkpoints"]) out += line(e);
  out += "-- baselines\n";
  for (const auto& e : r["baselines"]) out += line(e);
  if (!r["best"].is_null()) {
    out += "-- optimized\n";
    out += line(r["best"]);
    out += fmt::format("\noptimized weights ({} of {} above 1e-3):\n",
                       r["best"]["nonzero_weights"].get<size_t>(), r["best"]["weights"].size());
    const auto& names = s.meta.pool_names;
    const auto& w = r["best"]["weights"];
    for (size_t i = 0; i < w.size(); ++i)
      out +=
          fmt::format("  {:<{}} {:>8}\n", weight_label(names, i, w.size()), width + 6, cell(w[i]));
  }
  bool has_test = false;
  if (!r["best"].is_null())
    for (const auto& t : tasks) has_test = has_test || !r["best"]["scores"][t]["test"].is_null();
  out += comparisons_text(r, tasks, has_test);
  std::string flat;
  for (const auto& t : r["hypervolume_flat_tasks"])
    flat += fmt::format("{}{}", flat.empty() ? "" : ", ", t.get<std::string>());
  out += fmt::format(
      "\nPareto front (search split): {} evaluations, hypervolume {} (reference: the worst "
      "checkpoint score of each task{})\n",
      r["pareto"].size(),
      // a volume in five dimensions is often far below 1e-4
      r["hypervolume"].is_null() ? std::string("-")
                                 : fmt::format("{:.3g}", r["hypervolume"].get<double>()),
      flat.empty() ? "" : fmt::format("; no front member beats it on {}", flat));
  return out;
}

namespace {
// One CSV field as RFC 4180 writes it: quoted when it holds a comma, a double
// quote, a line break or edge spaces, with its quotes doubled.
std::string csv_field(const std::string& v) {
  const bool quote = v.find_first_of(",\"\r\n") != std::string::npos ||
                     (!v.empty() && (v.front() == ' ' || v.back() == ' '));
  if (!quote) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}
}  // namespace

std::string report_csv(const RunState& s) {
  const json r = report_json(s);
  const auto& tasks = s.meta.task_names;
  // Long format: every number the JSON (and the HTML page) holds, one row per
  // model and split, per evaluation, per weight, per generation; the
  // trailing columns serve the rows that need them and are empty elsewhere.
  std::string out = "kind,name,split,objective";
  for (const auto& t : tasks) {
    out.push_back(',');
    out += csv_field(t);
  }
  out += ",generation,status,seconds,merge_seconds,score_seconds,value\n";
  auto num = [](const json& v) {
    return v.is_null() ? std::string() : fmt::format("{}", v.get<double>());
  };
  // One row: the task columns from `scores` (task -> number; null: none).
  auto line = [&](const std::string& kind, const std::string& name, const std::string& split,
                  const json& objective, const json& scores, const std::string& tail = ",,,,,") {
    out += fmt::format("{},{},{},{}", kind, csv_field(name), split, num(objective));
    for (const auto& t : tasks) {
      out.push_back(',');
      if (scores.is_object() && scores.contains(t)) out += num(scores[t]);
    }
    out += fmt::format(",{}\n", tail);
  };
  auto rows = [&](const std::string& kind, const json& e) {
    for (const char* split : {"search", "validation", "test", "test_stderr"}) {
      const std::string key = split == std::string("test_stderr") ? "test" : split;
      json scores = json::object();
      bool any = false;
      for (const auto& t : tasks)
        if (e["scores"][t].contains(split)) {
          scores[t] = e["scores"][t][split];
          any = true;
        }
      const bool extra = split == std::string("validation") || split == std::string("test_stderr");
      if (extra && !any) continue;
      line(kind, e["name"].get<std::string>(), split,
           split == std::string("test_stderr") ? json(nullptr) : e["objective"].value(key, json()),
           scores);
    }
  };
  for (const auto& e : r["checkpoints"]) rows("checkpoint", e);
  for (const auto& e : r["baselines"]) rows("baseline", e);
  if (!r["best"].is_null()) rows("best", r["best"]);
  for (const auto& e : r["pareto"]) rows("pareto", e);
  for (const auto& e : r["evaluations"])
    line("evaluation", fmt::format("evaluation {}", e["index"].get<int64_t>()), "search",
         e["objective"], e["scores"],
         fmt::format("{},{},{},{},{},", e["generation"].get<int64_t>(),
                     e["ok"].get<bool>() ? "ok" : "failed", num(e["seconds"]),
                     num(e["merge_seconds"]), num(e["score_seconds"])));
  const auto& names = s.meta.pool_names;
  if (!r["best"].is_null()) {
    const auto& w = r["best"]["weights"];
    for (size_t i = 0; i < w.size(); ++i)
      line("weight", weight_label(names, i, w.size()), "", nullptr, nullptr,
           fmt::format(",,,,,{}", num(w[i])));
  }
  for (const auto& g : r["generations"]) {
    const int64_t gen = g["generation"].get<int64_t>();
    line("sigma", fmt::format("generation {}", gen), "", nullptr, nullptr,
         fmt::format("{},,,,,{}", gen, num(g["sigma"])));
    line("best_so_far", fmt::format("generation {}", gen), "search", nullptr, nullptr,
         fmt::format("{},,,,,{}", gen, num(g["best_so_far"])));
    if (!g["mean_weights"].is_null())
      for (size_t i = 0; i < g["mean_weights"].size(); ++i)
        line("mean_weight", weight_label(names, i, g["mean_weights"].size()), "", nullptr, nullptr,
             fmt::format("{},,,,,{}", gen, num(g["mean_weights"][i])));
  }
  // The held-out comparisons: difference and interval ends, objective and tasks.
  for (const auto& c : r["comparisons"])
    for (const char* part : {"difference", "low", "high"}) {
      json scores = json::object();
      for (const auto& t : tasks) scores[t] = c["tasks"][t][part];
      line(fmt::format("comparison_{}", part),
           fmt::format("{} ({})", c["role"].get<std::string>(), c["reference"].get<std::string>()),
           c["split"].get<std::string>(),
           c["objective"].is_null() ? json(nullptr) : c["objective"][part], scores);
    }
  json ref = json::object();
  for (size_t k = 0; k < tasks.size(); ++k) ref[tasks[k]] = r["hypervolume_reference"][k];
  line("hypervolume", "Pareto front", "search", nullptr, ref,
       fmt::format(",,,,,{}", num(r["hypervolume"])));
  return out;
}

}  // namespace kintsugi
