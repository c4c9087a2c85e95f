#include "kintsugi/service/report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "kintsugi/config/job.hpp"
#include "kintsugi/eval/uncertainty.hpp"
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
std::vector<double> mean_coefficients(const RunState& s) {
  const std::map<std::string, std::string> settings(s.meta.settings.begin(), s.meta.settings.end());
  const auto kind = settings.find("objective.kind");
  const size_t k = s.meta.task_names.size();
  if (kind == settings.end() || kind->second == "mean") return std::vector<double>(k, 1.0);
  if (kind->second != "weighted") return {};
  try {  // the job's own weights, from the job text the state keeps
    const JobConfig job = parse_job(s.meta.config, s.meta.job_file, ".");
    std::vector<double> c;
    for (const auto& t : s.meta.task_names) {
      const auto it = job.objective.weights.find(t);
      c.push_back(it == job.objective.weights.end() ? 0.0 : it->second);
    }
    return c;
  } catch (const std::exception&) {
    return {};
  }
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
json comparisons(const RunState& s, int64_t best) {
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
  const auto coef = mean_coefficients(s);
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

}  // namespace

std::string run_status_text(const RunState& s) {
  return s.meta.run_status.empty() ? "unknown" : s.meta.run_status;
}

json report_json(const RunState& s) {
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
  out["comparisons"] = comparisons(s, best);
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
    for (size_t i = 0; i < w.size(); ++i) {
      const std::string nm = names.empty() ? std::to_string(i) : names[i % names.size()];
      const std::string grp =
          w.size() > names.size() ? fmt::format(" (group {})", i / names.size()) : "";
      out += fmt::format("  {:<{}} {:>8}\n", fmt::format("{}{}", nm, grp), width + 6, cell(w[i]));
    }
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
  std::string out = "kind,name,split,objective";
  for (const auto& t : s.meta.task_names) {
    out.push_back(',');
    out += csv_field(t);
  }
  out += "\n";
  auto csv_num = [](const json& v) {
    return v.is_null() ? std::string() : fmt::format("{}", v.get<double>());
  };
  auto rows = [&](const std::string& kind, const json& e) {
    for (const char* split : {"search", "test"}) {
      const std::string name = e["name"].get<std::string>();
      out +=
          fmt::format("{},{},{},{}", kind, csv_field(name), split, csv_num(e["objective"][split]));
      for (const auto& t : s.meta.task_names)
        out += fmt::format(",{}", csv_num(e["scores"][t][split]));
      out += "\n";
    }
  };
  for (const auto& e : r["checkpoints"]) rows("checkpoint", e);
  for (const auto& e : r["baselines"]) rows("baseline", e);
  if (!r["best"].is_null()) rows("best", r["best"]);
  for (const auto& e : r["pareto"]) rows("pareto", e);
  return out;
}

}  // namespace kintsugi
