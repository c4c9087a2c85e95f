#include "kintsugi/service/work.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/eval/builtin_evaluator.hpp"
#include "kintsugi/merge/engine.hpp"
#include "kintsugi/merge/recipe.hpp"
#include "kintsugi/service/command_scoring.hpp"

namespace kintsugi {

namespace {

using nlohmann::json;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Scores one model on this rank's group with the builtin evaluator. Every
// rank of the group gets the same result; a failure (an exception, a score
// that is not finite) is recorded.
Scored score_builtin(Runtime& rt, const json& model, const std::string& split) {
  Scored s;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    std::unique_ptr<ModelShard> loaded;
    const ModelShard* shard = nullptr;
    if (model.contains("folder")) {
      const HfCheckpoint ck = HfCheckpoint::open(model["folder"].get<std::string>());
      loaded = std::make_unique<ModelShard>(
          load_model_shard(ck, rt.groups().tp_rank, rt.groups().tp_size));
      shard = loaded.get();
    } else {
      const auto w = model["weights"].get<std::vector<double>>();
      merge_into(rt.scratch(), rt.pool(), rt.merge_weights(w));
      shard = &rt.scratch();
    }
    s.merge_seconds = seconds_since(t0);
    EvalOptions opt;
    opt.batch_size = rt.job().evaluator.batch_size;
    opt.eos_ids = rt.eos_ids();
    const auto results =
        evaluate_model(rt.groups().comm, *shard, rt.tokenizer(), rt.tasks(split), opt);
    for (const auto& r : results) {
      if (!std::isfinite(r.score)) throw_runtime("task {}: {} is {}", r.task, r.metric, r.score);
      s.scores.push_back(r.score);
      s.examples.push_back(r.examples);
    }
  } catch (const std::exception& e) {
    s.ok = false;
    s.error = e.what();
    s.scores.assign(rt.job().tasks.size(), std::nan(""));
    s.examples.clear();
  }
  s.seconds = seconds_since(t0);
  s.score_seconds = s.seconds - s.merge_seconds;
  return s;
}

// One model on this rank's group, by the job's evaluator.
Scored score_one(Runtime& rt, const json& model, const std::string& split) {
  CommandScoring* command = rt.command_scoring();
  if (!command) return score_builtin(rt, model, split);
  const std::filesystem::path folder =
      model.contains("folder") ? model["folder"].get<std::string>() : std::string();
  const std::vector<double> weights = model.contains("weights")
                                          ? model["weights"].get<std::vector<double>>()
                                          : std::vector<double>();
  if (!weights.empty()) rt.merge_weights(weights);  // the count is checked before any write
  return command->score(weights, folder, split);
}

json numbers(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(std::isfinite(x) ? json(x) : json(nullptr));
  return a;
}

std::vector<double> from_numbers(const json& a) {
  std::vector<double> v;
  for (const auto& x : a) v.push_back(x.is_null() ? std::nan("") : x.get<double>());
  return v;
}

json to_json(const Scored& s) {
  json examples = json::array();
  for (const auto& e : s.examples)
    examples.push_back({{"transform", static_cast<int>(e.transform)},
                        {"value", numbers(e.value)},
                        {"weight", numbers(e.weight)}});
  return json{{"scores", numbers(s.scores)},
              {"examples", examples},
              {"ok", s.ok},
              {"error", s.error},
              {"seconds", s.seconds},
              {"merge_seconds", s.merge_seconds},
              {"score_seconds", s.score_seconds},
              {"stopped", s.stopped}};
}

Scored from_json(const json& j) {
  Scored s;
  s.scores = from_numbers(j["scores"]);
  for (const auto& e : j["examples"]) {
    ExampleScores x;
    x.transform = static_cast<ExampleScores::Transform>(e["transform"].get<int>());
    x.value = from_numbers(e["value"]);
    x.weight = from_numbers(e["weight"]);
    s.examples.push_back(std::move(x));
  }
  s.ok = j["ok"].get<bool>();
  s.error = j["error"].get<std::string>();
  s.seconds = j["seconds"].get<double>();
  s.merge_seconds = j["merge_seconds"].get<double>();
  s.score_seconds = j["score_seconds"].get<double>();
  s.stopped = j["stopped"].get<bool>();
  return s;
}

// The score command on every rank. Returns results on rank 0 (empty elsewhere),
// nullopt everywhere when rank 0 abandoned it: a stop signal between rounds
// of an abandonable scoring, or a scorer that a stop signal ended.
std::optional<std::vector<Scored>> run_score(Runtime& rt, const json& cmd,
                                             const std::atomic<bool>* stop) {
  const auto& models = cmd["models"];
  const std::string split = cmd["split"].get<std::string>();
  const bool abandonable = cmd["abandonable"].get<bool>();
  const size_t n = models.size();
  const size_t groups = static_cast<size_t>(rt.groups().num_groups);
  std::vector<Scored> results(world_rank() == 0 ? n : 0);
  for (size_t first = 0; first < n; first += groups) {
    // A round: group g scores model first + g.
    const size_t mine = first + static_cast<size_t>(rt.groups().group);
    std::string text;
    if (mine < n) {
      Scored s = score_one(rt, models[mine], split);
      // The state keeps per-example results of held-out splits only; a
      // search candidate's would cross the ranks for nothing.
      if (split == "search" || split == kFirstPassSplit) s.examples.clear();
      if (rt.groups().tp_rank == 0) text = json{{"index", mine}, {"result", to_json(s)}}.dump();
    }
    // An external scorer may run for hours: the groups that finish first
    // wait for the others without spinning.
    if (rt.command_scoring()) sleeping_barrier(MPI_COMM_WORLD);
    const auto gathered = gather_strings(text, MPI_COMM_WORLD);
    bool stopped = false;
    if (world_rank() == 0)
      for (const auto& g : gathered) {
        if (g.empty()) continue;
        const json j = json::parse(g);
        results[j["index"].get<size_t>()] = from_json(j["result"]);
        stopped = stopped || results[j["index"].get<size_t>()].stopped;
      }
    const bool more = first + groups < n;
    const bool requested = world_rank() == 0 && stop && stop->load() && abandonable && more;
    if (broadcast_flag(stopped || requested, MPI_COMM_WORLD)) return std::nullopt;
  }
  return results;
}

void run_merge_command(const json& cmd) {
  const Recipe recipe =
      parse_recipe(cmd["recipe"].get<std::string>(), cmd["recipe_path"].get<std::string>());
  MergeOptions opt;
  opt.out_dir = cmd["out"].get<std::string>();
  opt.seed = cmd["seed"].get<uint64_t>();
  opt.overwrite = true;
  opt.progress = false;
  run_merge(recipe, opt, MPI_COMM_WORLD);
}

}  // namespace

Coordinator::Coordinator(Runtime& runtime, const std::atomic<bool>* stop)
    : runtime_(runtime), stop_(stop) {
  KS_CHECK(world_rank() == 0, "the coordinator runs on rank 0");
}

Coordinator::~Coordinator() {
  // Workers must never wait forever for a coordinator that left early (an
  // exception on rank 0 aborts the job in main(); this covers normal exits).
  if (!finished_) {
    try {
      finish();
    } catch (...) {
    }
  }
}

std::optional<std::vector<Scored>> Coordinator::score(const std::vector<ModelRequest>& models,
                                                      const std::string& split, bool abandonable) {
  // A candidate with a weight that is not finite is a failed candidate, never
  // merged or scored (and JSON, which carries the request, has no NaN).
  std::vector<Scored> out(models.size());
  std::vector<size_t> sent;
  json list = json::array();
  for (size_t i = 0; i < models.size(); ++i) {
    const auto& m = models[i];
    const auto bad = std::find_if(m.weights.begin(), m.weights.end(),
                                  [](double v) { return !std::isfinite(v); });
    if (!m.folder.empty()) {
      list.push_back({{"folder", m.folder.string()}});
    } else if (bad == m.weights.end()) {
      list.push_back({{"weights", m.weights}});
    } else {
      out[i].ok = false;
      out[i].error =
          fmt::format("merge weight {} of the candidate is {}", bad - m.weights.begin(), *bad);
      out[i].scores.assign(runtime_.job().tasks.size(), std::nan(""));
      continue;
    }
    sent.push_back(i);
  }
  if (sent.empty()) return out;
  const json cmd{{"op", "score"}, {"split", split}, {"abandonable", abandonable}, {"models", list}};
  broadcast_string(cmd.dump(), MPI_COMM_WORLD);
  auto results = run_score(runtime_, cmd, stop_);
  if (!results && !abandonable)
    throw StopRequested(
        "a stop signal ended the scorers while the checkpoints or baselines were being scored");
  if (!results) return std::nullopt;
  for (size_t k = 0; k < sent.size(); ++k) out[sent[k]] = std::move((*results)[k]);
  return out;
}

void Coordinator::merge(const std::string& recipe_text, const std::filesystem::path& recipe_path,
                        const std::filesystem::path& out_dir, uint64_t seed) {
  const json cmd{{"op", "merge"},
                 {"recipe", recipe_text},
                 {"recipe_path", recipe_path.string()},
                 {"out", out_dir.string()},
                 {"seed", seed}};
  broadcast_string(cmd.dump(), MPI_COMM_WORLD);
  run_merge_command(cmd);
}

void Coordinator::finish() {
  finished_ = true;
  broadcast_string(json{{"op", "finish"}}.dump(), MPI_COMM_WORLD);
}

void serve(Runtime& runtime) {
  KS_CHECK(world_rank() != 0, "rank 0 coordinates; it does not serve");
  while (true) {
    const json cmd = json::parse(broadcast_string("", MPI_COMM_WORLD));
    const std::string op = cmd["op"].get<std::string>();
    if (op == "finish") return;
    if (op == "score")
      run_score(runtime, cmd, nullptr);
    else if (op == "merge")
      run_merge_command(cmd);
    else
      throw_runtime("unknown coordinator command '{}'", op);
  }
}

}  // namespace kintsugi
