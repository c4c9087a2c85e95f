#include "kintsugi/service/baselines.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <numeric>

#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/merge/recipe.hpp"
#include "kintsugi/pool/vocab.hpp"
#include "kintsugi/service/export.hpp"
#include "kintsugi/service/session.hpp"
#include "kintsugi/service/stop_signal.hpp"

namespace kintsugi {

std::vector<RecipeBaseline> recipe_baseline_grid() {
  // Task vectors are summed with weight 1 each and scaled by lambda, as in
  // Ilharco et al. (task arithmetic) and Yadav et al. (TIES); DARE-TIES as in
  // Yu et al. Small on purpose: every point is one merge and two scorings.
  return {
      {"task_arithmetic_l0.1", "task_arithmetic", 0.1, 1.0},
      {"task_arithmetic_l0.2", "task_arithmetic", 0.2, 1.0},
      {"task_arithmetic_l0.3", "task_arithmetic", 0.3, 1.0},
      {"task_arithmetic_l0.5", "task_arithmetic", 0.5, 1.0},
      {"task_arithmetic_l1", "task_arithmetic", 1.0, 1.0},
      {"ties_d0.2_l0.5", "ties", 0.5, 0.2},
      {"ties_d0.2_l1", "ties", 1.0, 0.2},
      {"ties_d0.5_l0.5", "ties", 0.5, 0.5},
      {"ties_d0.5_l1", "ties", 1.0, 0.5},
      {"dare_ties_d0.3_l0.5", "dare_ties", 0.5, 0.3},
      {"dare_ties_d0.3_l1", "dare_ties", 1.0, 0.3},
      {"dare_ties_d0.5_l0.5", "dare_ties", 0.5, 0.5},
      {"dare_ties_d0.5_l1", "dare_ties", 1.0, 0.5},
  };
}

namespace {

std::string recipe_text(const RecipeBaseline& b, const Runtime& rt) {
  RecipeToWrite r;
  r.comment = "kintsugi baseline " + b.name;
  r.merge_method = b.method;
  r.base_model = rt.job().pool.base->string();
  r.parameters = {{"lambda", b.lambda}};
  r.tokenizer_source = recipe_tokenizer_source(rt.job().pool, true);
  if (b.method != "task_arithmetic") r.parameters.emplace_back("density", b.density);
  for (const auto& c : rt.checkpoints()) r.models.push_back({c.path().string(), {{"", 1.0}}});
  return emit_recipe(r);
}

// With pool.tokenizer_source, a task-vector recipe reconciles pool.base's
// vocabulary too (as mergekit, the base first), and its output is scored
// with the pool's tokenizer: it must come out with the pool's token ids.
// True when every checkpoint's rows land at the same ids in both plans.
bool baseline_vocab_matches(const Runtime& rt) {
  const VocabPlan* pool_plan = rt.vocab();
  if (!pool_plan) return true;
  const PoolConfig& pool = rt.job().pool;
  const HfCheckpoint base = HfCheckpoint::open(*pool.base);
  std::vector<const HfCheckpoint*> members{&base};
  for (const auto& c : rt.checkpoints()) members.push_back(&c);
  check_pool_compatible_vocab(members);
  VocabSpec spec;
  spec.where = pool.tokenizer_where;
  spec.source =
      pool.tokenizer_source == "union" ? VocabSpec::Source::Union : VocabSpec::Source::Model;
  spec.model = 1 + (pool.tokenizer_source == "model" ? pool.tokenizer_model : 0);
  const VocabPlan p = plan_vocab(members, spec);
  if (p.vocab != pool_plan->vocab || p.rows != pool_plan->rows) return false;
  for (size_t i = 0; i < rt.checkpoints().size(); ++i)
    if (p.perm[i + 1] != pool_plan->perm[i]) return false;
  return true;
}

std::vector<double> uniform_over(const Runtime& rt, const std::vector<size_t>& members) {
  const size_t n = rt.num_checkpoints();
  std::vector<double> w(rt.num_weights(), 0.0);
  for (size_t g = 0; g < w.size() / n; ++g)
    for (size_t i : members) w[g * n + i] = 1.0 / static_cast<double>(members.size());
  return w;
}

class BaselineTable {
 public:
  BaselineTable(RunState& state, Runtime& rt, const search::Objective& obj, double penalty)
      : state_(state), rt_(rt), obj_(obj), penalty_(penalty) {}

  void add(const std::string& name, const std::string& recipe, const std::vector<double>& weights,
           const Scored& search, const Scored& test, const Scored* validation = nullptr) {
    if (!search.ok) spdlog::warn("baseline {} failed on the search split: {}", name, search.error);
    state_.baselines.append(name, recipe, weights, search.scores, test.scores,
                            objective_of(obj_, rt_, search, penalty_),
                            test.ok ? objective_of(obj_, rt_, test, penalty_) : std::nan(""),
                            test.ok ? test.examples : std::vector<ExampleScores>{});
    if (validation && validation->ok)
      state_.baselines.set_validation(state_.baselines.size() - 1, validation->scores,
                                      objective_of(obj_, rt_, *validation, penalty_));
    spdlog::info("baseline {}: objective {:.4f} (test {:.4f})", name,
                 state_.baselines.objective.back(), state_.baselines.test_objective.back());
  }

 private:
  RunState& state_;
  Runtime& rt_;
  const search::Objective& obj_;
  double penalty_;
};

int coordinate(Runtime& rt, const BaselinesOptions& o) {
  const auto path = state_path_for(rt.job(), o.state);
  RunState state = open_state(path, rt, StateUse::Baselines);
  Coordinator co(rt, nullptr);
  ensure_checkpoint_baselines(co, rt, state, path);
  const auto obj = build_objective(state, rt);
  const double penalty = failure_penalty(state);

  // Recompute everything but the checkpoints' own rows.
  Baselines kept;
  kept.n_weights = state.baselines.n_weights;
  kept.n_tasks = state.baselines.n_tasks;
  const size_t k = state.baselines.n_tasks, w = state.baselines.n_weights;
  std::vector<double> ckpt_objective;
  for (size_t b = 0; b < state.baselines.size(); ++b) {
    if (state.baselines.recipes[b] != kCheckpointRecipe) continue;
    kept.append(state.baselines.names[b], state.baselines.recipes[b],
                table_row(state.baselines.weights, b, w), table_row(state.baselines.scores, b, k),
                table_row(state.baselines.test_scores, b, k), state.baselines.objective[b],
                state.baselines.test_objective[b], state.baselines.test_examples.row(b));
    kept.set_validation(kept.size() - 1, table_row(state.baselines.validation_scores, b, k),
                        state.baselines.validation_objective[b]);
    ckpt_objective.push_back(state.baselines.objective[b]);
  }
  state.baselines = kept;
  BaselineTable table(state, rt, obj, penalty);
  const size_t n = rt.num_checkpoints();
  // With a validation split every reference is scored there too (the
  // returned merge is compared with them on it; docs/service.md).
  const bool validation = rt.has_validation_split();
  auto score_validation = [&](const std::vector<ModelRequest>& models) {
    return validation ? co.score(models, "validation", false).value()
                      : std::vector<Scored>(models.size());
  };

  // Uniform soup.
  {
    std::vector<size_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    const auto wts = uniform_over(rt, all);
    const auto s = co.score({{wts, {}}}, "search", false).value();
    const auto t = score_test(co, rt, {{wts, {}}}, false).value();
    const auto v = score_validation({{wts, {}}});
    table.add("uniform_soup", "linear: every checkpoint, weight 1/N", wts, s[0], t[0],
              validation ? &v[0] : nullptr);
  }

  // Greedy soup: checkpoints by decreasing objective; each joins the soup
  // (uniform average) when that improves the objective on the search split.
  {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return ckpt_objective[a] > ckpt_objective[b]; });
    std::vector<size_t> soup{order[0]};
    double best = ckpt_objective[order[0]];
    Scored best_scores;
    best_scores.scores = table_row(state.baselines.scores, order[0], k);
    for (size_t j = 1; j < n; ++j) {
      auto trial = soup;
      trial.push_back(order[j]);
      const auto s = co.score({{uniform_over(rt, trial), {}}}, "search", false).value()[0];
      const double v = objective_of(obj, rt, s, penalty);
      if (s.ok && v > best) {
        soup = trial;
        best = v;
        best_scores = s;
      }
    }
    std::string members;
    for (size_t i : soup) members += (members.empty() ? "" : ", ") + rt.checkpoint_names()[i];
    const auto wts = uniform_over(rt, soup);
    const auto t = score_test(co, rt, {{wts, {}}}, false).value()[0];
    const auto v = score_validation({{wts, {}}});
    table.add("greedy_soup", "linear: uniform average of " + members, wts, best_scores, t,
              validation ? &v[0] : nullptr);
  }

  // Task-vector recipes, merged to disk by the merge engine and scored from there.
  if (!rt.job().pool.base) {
    spdlog::warn("pool.base is not set: skipping task arithmetic, TIES and DARE-TIES");
  } else if (!baseline_vocab_matches(rt)) {
    spdlog::warn(
        "pool.base's vocabulary reconciled with the pool's (pool.tokenizer_source {}) gives other "
        "token ids than the pool's own: skipping task arithmetic, TIES and DARE-TIES",
        rt.job().pool.tokenizer_source);
  } else {
    // A folder of this run's own beside the state (never someone else's).
    const auto tmp = unique_dir_beside(resolve_write_target(path), "baselines");
    struct RemoveAtEnd {
      std::filesystem::path dir;
      ~RemoveAtEnd() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    } remove_at_end{tmp};
    const auto grid = recipe_baseline_grid();
    std::vector<ModelRequest> folders;
    std::vector<std::string> texts;
    for (const auto& b : grid) {
      texts.push_back(recipe_text(b, rt));
      const auto recipe_path = tmp / (b.name + ".yaml");
      co.merge(texts.back(), recipe_path, tmp / b.name, rt.job().search.seed);
      folders.push_back({{}, tmp / b.name});
    }
    const auto s = co.score(folders, "search", false).value();
    const auto t = score_test(co, rt, folders, false).value();
    const auto v = score_validation(folders);
    const std::vector<double> ones(w, 1.0);
    for (size_t i = 0; i < grid.size(); ++i)
      table.add(grid[i].name, texts[i], ones, s[i], t[i], validation ? &v[i] : nullptr);
  }
  state.meta.run_status = "finished";
  save_state(path, state);
  co.finish();
  spdlog::info("{} baselines saved to {}", state.baselines.size(), path.string());
  return kExitOk;
}

}  // namespace

int run_baselines(const BaselinesOptions& o) {
  JobConfig job = load_job(o.job);
  // One writer per state, for the whole run (released when this returns).
  const auto lock = claim_state(job, state_path_for(job, o.state), "baselines");
  Runtime rt(std::move(job));
  if (world_rank() != 0) {
    serve(rt);
    return kExitOk;
  }
  return coordinate(rt, o);
}

}  // namespace kintsugi
