// `kintsugi bench eval`: the builtin evaluator's speed on one checkpoint:
// prefill and decode tokens/s for T = 1 and 2 (as many ranks as the world
// has), the share of wall time in matrix products, and the time to score the
// checkpoint on a job's tasks (all search splits). Like `bench merge` it checks
// its own results: the task scores must agree exactly at every T measured (the
// group size changes only the order of the all-reduce sums), else exit 1.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/eval/builtin_evaluator.hpp"
#include "kintsugi/model/blas.hpp"
#include "kintsugi/model/transformer.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "kintsugi/service/runtime.hpp"

namespace kintsugi::cli {

namespace {

struct BenchEvalArgs {
  std::string checkpoint = "examples/demo/pool/base";
  std::string job = "examples/demo/job.yaml";
  size_t batch = 16;
  size_t prompt = 64;
  size_t decode = 32;
  size_t repeats = 3;
  std::vector<int> tp = {1, 2};
  bool json = false;
};

// CPU seconds of this process (user + system): robust on a shared machine.
double cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct Row {
  int T;
  double prefill_tps, decode_tps, matmul_share, score_s, score_cpu_s;
  std::vector<TaskResult> scores;
};

Row bench_one(const BenchEvalArgs& a, const HfCheckpoint& ck, MPI_Comm comm, int T, int rank,
              const std::vector<EvalTask>& tasks) {
  const ModelShard shard = load_model_shard(ck, rank, T);
  Transformer m(shard, comm);
  std::mt19937 rng(1);
  std::vector<std::vector<int32_t>> prompts(a.batch);
  for (auto& p : prompts) {
    p.push_back(static_cast<int32_t>(std::max<int64_t>(shard.config().bos_token_id, 0)));
    while (p.size() < a.prompt) p.push_back(static_cast<int32_t>('a' + rng() % 26));
  }
  double prefill_s = 0, decode_s = 0, mm = 0, wall = 0;
  std::vector<float> logits;
  for (size_t r = 0; r < a.repeats; ++r) {
    std::vector<SeqCache> caches;
    std::vector<ForwardRequest> reqs;
    caches.reserve(a.batch);
    for (size_t b = 0; b < a.batch; ++b) {
      caches.push_back(m.new_cache());
      reqs.push_back({&caches.back(), prompts[b], {static_cast<int32_t>(a.prompt - 1)}});
    }
    MPI_CHECK(MPI_Barrier(comm));
    reset_matmul_seconds();
    const double t0 = steady_seconds();
    m.forward(reqs, logits);
    std::vector<int32_t> next(a.batch);
    m.argmax(logits.data(), a.batch, next);
    const double t1 = steady_seconds();
    for (size_t s = 0; s < a.decode; ++s) {
      for (size_t b = 0; b < a.batch; ++b)
        reqs[b] = {&caches[b], std::span<const int32_t>(&next[b], 1), {0}};
      m.forward(reqs, logits);
      m.argmax(logits.data(), a.batch, next);
    }
    const double t2 = steady_seconds();
    prefill_s += t1 - t0;
    decode_s += t2 - t1;
    mm += matmul_seconds();
    wall += t2 - t0;
  }
  Row row{T,
          static_cast<double>(a.batch * a.prompt * a.repeats) / prefill_s,
          static_cast<double>(a.batch * a.decode * a.repeats) / decode_s,
          mm / wall,
          -1,
          -1,
          {}};
  const Tokenizer tok = load_tokenizer(ck);
  EvalOptions opt;
  opt.eos_ids = load_eos_ids(ck);
  MPI_CHECK(MPI_Barrier(comm));
  const double t0 = steady_seconds(), c0 = cpu_s();
  row.scores = evaluate_model(comm, shard, tok, tasks, opt);
  row.score_s = steady_seconds() - t0;
  row.score_cpu_s = cpu_s() - c0;
  return row;
}

int run_bench_eval(const BenchEvalArgs& a) {
  set_blas_threads(1);
  if (!std::filesystem::is_regular_file(a.job)) throw_input("--job {}: no such file", a.job);
  const HfCheckpoint ck = HfCheckpoint::open(a.checkpoint);
  std::vector<EvalTask> tasks;
  const JobConfig job = load_job(a.job);
  for (const auto& t : job.tasks) tasks.push_back(load_task(t, "search"));
  if (std::none_of(a.tp.begin(), a.tp.end(), [](int T) { return T >= 1 && T <= world_size(); }))
    throw_input("--tp: no group size fits in {} rank(s)", world_size());
  std::vector<Row> rows;
  for (int T : a.tp) {
    if (T < 1) throw_input("--tp: {} is not a group size", T);
    if (T > world_size()) {
      if (world_rank() == 0) spdlog::warn("T = {} skipped: run under mpirun -np {} or more", T, T);
      continue;
    }
    MPI_Comm comm;
    const bool in = world_rank() < T;
    MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, in ? 0 : MPI_UNDEFINED, world_rank(), &comm));
    if (in) {
      rows.push_back(bench_one(a, ck, comm, T, world_rank(), tasks));
      MPI_Comm_free(&comm);
    }
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  }
  if (world_rank() != 0) return kExitOk;
  // Rank 0 is in every group, so it holds every row's scores.
  for (const auto& r : rows)
    for (size_t t = 0; t < r.scores.size(); ++t)
      if (r.scores[t].metrics != rows.front().scores[t].metrics)
        throw_runtime("bench eval: task {}: T = {} and T = {} give different scores",
                      r.scores[t].task, rows.front().T, r.T);
  print_out("checkpoint {}: batch {}, prompt {} tokens, {} decode steps, {} repeats\n",
            ck.path().string(), a.batch, a.prompt, a.decode, a.repeats);
  print_out("{:>3} {:>16} {:>16} {:>14} {:>18} {:>16}\n", "T", "prefill tok/s", "decode tok/s",
            "matmul share", "score search (s)", "(CPU s, rank 0)");
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : rows) {
    print_out("{:>3} {:>16.0f} {:>16.0f} {:>13.1f}% {:>18} {:>16}\n", r.T, r.prefill_tps,
              r.decode_tps, 100 * r.matmul_share, fmt::format("{:.3f}", r.score_s),
              fmt::format("{:.3f}", r.score_cpu_s));
    j.push_back({{"tensor_parallel", r.T},
                 {"prefill_tokens_per_s", r.prefill_tps},
                 {"decode_tokens_per_s", r.decode_tps},
                 {"matmul_share", r.matmul_share},
                 {"score_search_s", r.score_s},
                 {"score_search_cpu_s", r.score_cpu_s}});
  }
  nlohmann::json scores = nlohmann::json::object();
  for (const auto& t : rows.front().scores) scores[t.task] = t.metrics;
  std::vector<int> measured;
  for (const auto& r : rows) measured.push_back(r.T);
  print_out("scores agree at every T measured (T = {})\n", fmt::join(measured, ", "));
  if (a.json)
    print_out("{}\n", nlohmann::json{{"bench", "eval"}, {"results", j}, {"scores", scores}}.dump());
  return kExitOk;
}

BenchRegistration eval_bench{
    {"eval", "Evaluator speed: prefill/decode tokens/s for T = 1, 2; matmul share",
     [](CLI::App& sub) {
       auto a = std::make_shared<BenchEvalArgs>();
       sub.add_option("--checkpoint", a->checkpoint, "Checkpoint folder")->capture_default_str();
       sub.add_option("--job", a->job, "Job whose search splits are scored (must exist)")
           ->capture_default_str();
       sub.add_option("--batch", a->batch, "Sequences per forward pass")
           ->capture_default_str()
           ->check(CLI::Range(1, 4096));
       sub.add_option("--prompt", a->prompt, "Prompt length in tokens")
           ->capture_default_str()
           ->check(CLI::Range(2, 1 << 20));
       sub.add_option("--decode", a->decode, "Decode steps")
           ->capture_default_str()
           ->check(CLI::Range(1, 1 << 20));
       sub.add_option("--repeats", a->repeats, "Repetitions")
           ->capture_default_str()
           ->check(CLI::Range(1, 1000));
       sub.add_option("--tp", a->tp, "Group sizes to measure")->capture_default_str();
       sub.add_flag("--json", a->json, "Print a JSON line at the end");
       return std::function<int()>([a] { return run_bench_eval(*a); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
