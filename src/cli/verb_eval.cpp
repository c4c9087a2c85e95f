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
#include "kintsugi/model/blas.hpp"
#include "kintsugi/pool/shard_loader.hpp"

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

ByteTokenizer tokenizer_of(const HfCheckpoint& ck) {
  const auto p = ck.path() / "tokenizer.json";
  if (!std::filesystem::exists(p)) throw_input("{}: no tokenizer.json", ck.path().string());
  return ByteTokenizer::load(p);
}

int run_eval(const EvalArgs& a) {
  if (a.split != "search" && a.split != "test")
    throw_input("--split: '{}' is not search or test", a.split);
  if (!a.weights.empty() && !a.checkpoints.empty())
    throw_input("--weights merges the job's pool; it cannot be combined with --checkpoint");
  const JobConfig job = load_job(a.job);
  if (job.evaluator.kind != "builtin")
    throw_input("{}: evaluator.kind '{}': kintsugi eval runs the builtin evaluator", a.job,
                job.evaluator.kind);
  set_blas_threads(1);
  EvalGroups groups(static_cast<int>(job.parallel.tensor_parallel));

  std::vector<EvalTask> tasks;
  for (const auto& t : job.tasks) tasks.push_back(load_task(t, a.split));

  // The models: checkpoints by path, or one merge of the pool.
  std::vector<std::filesystem::path> paths;
  for (const auto& c : a.checkpoints) paths.emplace_back(c);
  std::vector<float> weights;
  if (!a.weights.empty()) {
    weights = parse_weights(a.weights);
  } else if (paths.empty()) {
    paths = job.pool.checkpoints;
  }
  const size_t num_models = weights.empty() ? paths.size() : 1;

  EvalOptions opt;
  opt.batch_size = job.evaluator.batch_size;
  opt.keep_samples = !a.samples.empty();
  std::string mine;  // this group's results, one JSON object a line (leader only)
  for (size_t m = 0; m < num_models; ++m) {
    if (!groups.owns(m)) continue;
    const auto t0 = std::chrono::steady_clock::now();
    std::string name;
    std::unique_ptr<ModelShard> shard;
    std::unique_ptr<ByteTokenizer> tok;
    if (weights.empty()) {
      const HfCheckpoint ck = HfCheckpoint::open(paths[m]);
      name = ck.name();
      shard = std::make_unique<ModelShard>(load_model_shard(ck, groups.tp_rank, groups.tp_size));
      tok = std::make_unique<ByteTokenizer>(tokenizer_of(ck));
    } else {
      std::vector<HfCheckpoint> pool;
      std::vector<const HfCheckpoint*> ptrs;
      for (const auto& p : job.pool.checkpoints) pool.push_back(HfCheckpoint::open(p));
      for (const auto& ck : pool) ptrs.push_back(&ck);
      const PoolShards ps = PoolShards::load(ptrs, groups.tp_rank, groups.tp_size);
      const size_t N = pool.size(), L = static_cast<size_t>(ps.config().num_layers);
      MergeWeights mw;
      if (weights.size() == N) {
        mw = MergeWeights::per_checkpoint(weights, L);
      } else if (job.search.granularity == "layer_group" &&
                 weights.size() == job.search.layer_groups * N) {
        mw = MergeWeights::per_layer_group(weights, job.search.layer_groups, N, L);
      } else {
        throw_input("--weights: {} values for a pool of {} checkpoints", weights.size(), N);
      }
      shard = std::make_unique<ModelShard>(ps.config(), groups.tp_rank, groups.tp_size);
      merge_into(*shard, ps, mw);
      name = fmt::format("merge[{}]", fmt::join(weights, ","));
      tok = std::make_unique<ByteTokenizer>(tokenizer_of(pool[0]));
    }
    const auto results = evaluate_model(groups.comm, *shard, *tok, tasks, opt);
    spdlog::info("{}: {} tasks scored in {:.2f} s (group {}, T = {})", name, results.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 groups.group, groups.tp_size);
    if (groups.tp_rank != 0) continue;
    nlohmann::json j;
    j["index"] = m;
    j["model"] = name;
    j["tasks"] = nlohmann::json::object();
    j["samples"] = nlohmann::json::array();
    for (const auto& r : results) {
      j["tasks"][r.task] = r.metrics;
      for (auto s : r.samples) {
        s["model"] = name;
        j["samples"].push_back(std::move(s));
      }
    }
    mine += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }

  const auto gathered = gather_strings(mine, MPI_COMM_WORLD);
  if (world_rank() != 0) return kExitOk;
  std::vector<nlohmann::json> models(num_models);
  for (const auto& s : gathered) {
    std::stringstream ss(s);
    std::string line;
    while (std::getline(ss, line)) {
      auto j = nlohmann::json::parse(line);
      const size_t index = j["index"].get<size_t>();
      models[index] = std::move(j);
    }
  }
  if (!a.samples.empty()) {
    std::string lines;
    for (const auto& m : models)
      for (const auto& s : m["samples"])
        lines += s.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    write_file_atomic(a.samples, lines);
  }
  fmt::print("{:<28} {:<20} {:<14} {:>10}\n", "model", "task", "metric", "value");
  nlohmann::json summary;
  summary["results"] = nlohmann::json::array();
  for (const auto& m : models) {
    nlohmann::json tasks_json = nlohmann::json::object();
    for (const auto& t : job.tasks) {
      const std::string metric = t.primary_metric();
      fmt::print("{:<28} {:<20} {:<14} {:>10.4f}\n", m["model"].get<std::string>(), t.name, metric,
                 m["tasks"][t.name][metric].get<double>());
      tasks_json[t.name] = m["tasks"][t.name];
    }
    summary["results"].push_back({{"model", m["model"]}, {"tasks", tasks_json}});
  }
  if (a.json) fmt::print("{}\n", summary.dump());
  std::fflush(stdout);
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
       sub.add_option("--split", a->split, "Task split: search or test")->capture_default_str();
       sub.add_flag("--json", a->json, "Print a JSON summary as the last line");
       sub.add_option("--samples", a->samples, "Write one JSON line per example to this file");
       return std::function<int()>([a] { return run_eval(*a); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
