// `kintsugi eval JOB.yaml`: scores checkpoints (default: the job's pool) or one
// in-memory linear merge of the pool (--weights) on the job's tasks with the
// builtin evaluator. Under mpirun, P / T groups score different models.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/eval/builtin_evaluator.hpp"
#include "kintsugi/eval/eval_groups.hpp"
#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "kintsugi/service/runtime.hpp"

namespace kintsugi::cli {

namespace {

struct EvalArgs {
  std::string job;
  std::vector<std::string> checkpoints;
  std::string weights;
  std::string split = "search";
  bool json = false;
  std::string samples;
};

std::vector<float> parse_weights(const std::string& text) {
  std::vector<float> w;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const float v = std::stof(item, &used);
      if (used != item.size() || !std::isfinite(v)) throw std::invalid_argument(item);
      w.push_back(v);
    } catch (const std::exception&) {
      throw_input("--weights: '{}' is not a number", item);
    }
  }
  if (w.empty()) throw_input("--weights: no values");
  return w;
}

void check_args(const EvalArgs& a) {
  if (a.split != "search" && a.split != "validation" && a.split != "test")
    throw_input("--split: '{}' is not search, validation or test", a.split);
  if (!a.weights.empty() && !a.checkpoints.empty())
    throw_input("--weights merges the job's pool; it cannot be combined with --checkpoint");
}

// What to score: checkpoints by path (default: the job's pool), or one merge
// of the pool with `weights`.
struct Models {
  std::vector<std::filesystem::path> paths;
  std::vector<float> weights;
  size_t count() const { return weights.empty() ? paths.size() : 1; }
};

Models models_to_score(const EvalArgs& a, const JobConfig& job) {
  Models m;
  for (const auto& c : a.checkpoints) m.paths.emplace_back(c);
  if (!a.weights.empty()) {
    m.weights = parse_weights(a.weights);
  } else if (m.paths.empty()) {
    m.paths = job.pool.checkpoints;
  }
  return m;
}

// One model in memory: this rank's shard of it, its tokenizer and its name.
struct LoadedModel {
  std::string name;
  std::unique_ptr<ModelShard> shard;
  std::unique_ptr<Tokenizer> tok;
  std::vector<int32_t> eos_ids;
};

LoadedModel load_checkpoint(const std::filesystem::path& path, const EvalGroups& groups) {
  const HfCheckpoint ck = HfCheckpoint::open(path);
  LoadedModel m;
  m.name = ck.name();
  m.shard = std::make_unique<ModelShard>(load_model_shard(ck, groups.tp_rank, groups.tp_size));
  m.tok = std::make_unique<Tokenizer>(load_tokenizer(ck));
  m.eos_ids = load_eos_ids(ck);
  return m;
}

// The linear merge of the job's pool, as the service builds a candidate:
// the pool checked compatible, the weights mapped as the job's search maps them.
LoadedModel load_merge(const JobConfig& job, const std::vector<float>& weights,
                       const EvalGroups& groups) {
  const std::vector<HfCheckpoint> pool = open_compatible_pool(job);
  const auto vocab = pool_vocab(job, pool);
  const VocabPlan* v = vocab ? &*vocab : nullptr;
  const PoolShards ps = load_pool_shards(pool, groups, v);
  const MergeWeights mw = merge_weights_for(
      job.search, pool.size(), static_cast<size_t>(ps.config().num_layers), weights, "--weights");
  LoadedModel m;
  m.shard = std::make_unique<ModelShard>(ps.config(), groups.tp_rank, groups.tp_size);
  merge_into(*m.shard, ps, mw);
  m.name = fmt::format("merge[{}]", fmt::join(weights, ","));
  m.tok = std::make_unique<Tokenizer>(pool_tokenizer(pool, v));
  m.eos_ids = load_eos_ids(vocab_source(pool, v));
  return m;
}

// Scores this group's models; the group leader's results, one JSON object a
// line ({index, model, tasks, samples}); empty on the other ranks.
std::string score_group_models(const JobConfig& job, const Models& models,
                               const std::vector<EvalTask>& tasks, const EvalOptions& opt,
                               const EvalGroups& groups) {
  std::string mine;
  for (size_t m = 0; m < models.count(); ++m) {
    if (!groups.owns(m)) continue;
    const auto t0 = std::chrono::steady_clock::now();
    const LoadedModel model = models.weights.empty() ? load_checkpoint(models.paths[m], groups)
                                                     : load_merge(job, models.weights, groups);
    EvalOptions model_opt = opt;
    model_opt.eos_ids = model.eos_ids;
    const auto results = evaluate_model(groups.comm, *model.shard, *model.tok, tasks, model_opt);
    spdlog::info("{}: {} tasks scored in {:.2f} s (group {}, T = {})", model.name, results.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 groups.group, groups.tp_size);
    if (groups.tp_rank != 0) continue;
    nlohmann::json j;
    j["index"] = m;
    j["model"] = model.name;
    j["tasks"] = nlohmann::json::object();
    j["samples"] = nlohmann::json::array();
    for (const auto& r : results) {
      j["tasks"][r.task] = r.metrics;
      for (auto s : r.samples) {
        s["model"] = model.name;
        j["samples"].push_back(std::move(s));
      }
    }
    mine += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  return mine;
}

// Every group's results on rank 0, in model order (empty elsewhere).
std::vector<nlohmann::json> gather_results(const std::string& mine, size_t num_models) {
  const auto gathered = gather_strings(mine, MPI_COMM_WORLD);
  std::vector<nlohmann::json> models;
  if (world_rank() != 0) return models;
  models.resize(num_models);
  for (const auto& s : gathered) {
    std::stringstream ss(s);
    std::string line;
    while (std::getline(ss, line)) {
      auto j = nlohmann::json::parse(line);
      const size_t index = j["index"].get<size_t>();
      models[index] = std::move(j);
    }
  }
  return models;
}

// One JSON line per example, published atomically; a folder that cannot
// take the file is bad input (exit 2), like any unwritable output path.
void write_samples(const std::string& path, const std::vector<nlohmann::json>& models) {
  std::string lines;
  for (const auto& m : models)
    for (const auto& s : m["samples"])
      lines += s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const auto dir = std::filesystem::absolute(path).parent_path();
  if (!std::filesystem::is_directory(dir))
    throw_input("--samples: cannot write {}: no folder {}", path, dir.string());
  write_file_atomic(path, lines);
}

// The table (model, task, primary metric, value, its standard error:
// eval/uncertainty.hpp) and, with --json, a summary line.
// A score that is not a number (JSON null: NaN log-probabilities) prints as
// "nan"; the command then fails (exit 1) naming the first such score.
void print_results(const JobConfig& job, const std::vector<nlohmann::json>& models, bool json) {
  print_out("{:<28} {:<20} {:<14} {:>10} {:>10}\n", "model", "task", "metric", "value", "stderr");
  nlohmann::json summary;
  summary["results"] = nlohmann::json::array();
  std::string not_a_number;
  for (const auto& m : models) {
    nlohmann::json tasks_json = nlohmann::json::object();
    const std::string name = m["model"].get<std::string>();
    for (const auto& t : job.tasks) {
      const std::string metric = t.primary_metric();
      const auto& v = m["tasks"][t.name][metric];
      const double x = v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
      const auto& se = m["tasks"][t.name][metric + "_stderr"];
      print_out("{:<28} {:<20} {:<14} {:>10.4f} {:>10}\n", name, t.name, metric, x,
                se.is_number() ? fmt::format("{:.4f}", se.get<double>()) : std::string("-"));
      if (!std::isfinite(x) && not_a_number.empty())
        not_a_number = fmt::format("{}: task {}: {} is not a number", name, t.name, metric);
      tasks_json[t.name] = m["tasks"][t.name];
    }
    summary["results"].push_back({{"model", m["model"]}, {"tasks", tasks_json}});
  }
  if (json) print_out("{}\n", summary.dump());
  std::fflush(stdout);
  if (!not_a_number.empty())
    throw_runtime(
        "{} (the model's log-probabilities are NaN: its weights hold NaN or infinite values)",
        not_a_number);
}

int run_eval(const EvalArgs& a) {
  check_args(a);
  const JobConfig job = load_job(a.job);
  if (job.evaluator.kind != "builtin")
    throw_input("{}: evaluator.kind '{}': kintsugi eval runs the builtin evaluator", a.job,
                job.evaluator.kind);
  EvalGroups groups(static_cast<int>(job.parallel.tensor_parallel));
  std::vector<EvalTask> tasks;
  for (const auto& t : job.tasks) tasks.push_back(load_task(t, a.split));
  const Models to_score = models_to_score(a, job);
  EvalOptions opt;
  opt.batch_size = job.evaluator.batch_size;
  opt.keep_samples = !a.samples.empty();

  const std::string mine = score_group_models(job, to_score, tasks, opt, groups);
  const std::vector<nlohmann::json> models = gather_results(mine, to_score.count());
  if (world_rank() != 0) return kExitOk;
  if (!a.samples.empty()) write_samples(a.samples, models);
  print_results(job, models, a.json);
  return kExitOk;
}

VerbRegistration reg{
    {"eval", "Score checkpoints, or a merge of the pool, on the job's tasks", 30,
     [](CLI::App& sub) {
       auto a = std::make_shared<EvalArgs>();
       sub.add_option("job", a->job, "Job file (YAML)")->required();
       sub.add_option("--checkpoint", a->checkpoints,
                      "Checkpoint folder to score (repeatable; default: the pool)");
       sub.add_option("--weights", a->weights,
                      "Score the linear merge of the pool with these weights "
                      "(w1,w2,...; or layer_groups x N values)");
       sub.add_option("--split", a->split, "Task split: search, validation or test")
           ->capture_default_str();
       sub.add_flag("--json", a->json, "Print a JSON summary as the last line");
       sub.add_option("--samples", a->samples, "Write one JSON line per example to this file");
       return std::function<int()>([a] { return run_eval(*a); });
     },
     // Run alone (an external scorer's command, a quick check) it starts no
     // MPI: no singleton start-up, and no Open MPI inside a scorer's process.
     Verb::Mpi::UnderLauncher}};

}  // namespace
}  // namespace kintsugi::cli
