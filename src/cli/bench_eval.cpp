// `kintsugi bench eval`: the builtin evaluator's speed on one checkpoint:
// prefill and decode tokens/s for T = 1 and 2 (as many ranks as the world
// has), the share of wall time in matrix products, and the time to score the
// checkpoint on a job's tasks (all search splits). With --torch SCRIPT
// (tools/torch_eval_bench.py) the same prompts run through a PyTorch forward
// pass of the same checkpoint in the same invocation, single-threaded like a
// rank, and the ratios are printed. Like `bench merge` it checks its own
// results: the task scores must agree exactly at every T measured (the group
// size changes only the order of the all-reduce sums), and PyTorch's
// log-probabilities after the prompts must match kintsugi's within 1e-3, else
// exit 1.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/common/median.hpp"
#include "kintsugi/common/system.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/eval/builtin_evaluator.hpp"
#include "kintsugi/kernels/eval_kernels.hpp"
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
  std::string torch;                        // the PyTorch peer's script; empty: not run
  std::string python = "/usr/bin/python3";  // Debian's, which has python3-torch
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
  // Seconds of each repetition's prefill and decode, in order.
  std::vector<double> prefill_each, decode_each;
  std::vector<TaskResult> scores;
  // From the first repeat: greedy tokens [batch][decode + 1] and the
  // log-probabilities after the prompt [batch * vocabulary].
  std::vector<std::vector<int32_t>> greedy;
  std::vector<double> first_logprobs;
};

// The benchmark's prompts: BOS, then random lowercase letters.
std::vector<std::vector<int32_t>> make_prompts(const BenchEvalArgs& a, int64_t bos) {
  std::mt19937 rng(1);
  std::vector<std::vector<int32_t>> prompts(a.batch);
  for (auto& p : prompts) {
    p.push_back(static_cast<int32_t>(std::max<int64_t>(bos, 0)));
    while (p.size() < a.prompt) p.push_back(static_cast<int32_t>('a' + rng() % 26));
  }
  return prompts;
}

// log p(v | prompt) for every vocabulary entry v after each prompt.
std::vector<double> all_log_probs(const Transformer& m, size_t rows) {
  const auto V = static_cast<size_t>(m.config().vocab_size);
  std::vector<int32_t> row_of(rows * V), targets(rows * V);
  for (size_t r = 0; r < rows; ++r)
    for (size_t v = 0; v < V; ++v) {
      row_of[r * V + v] = static_cast<int32_t>(r);
      targets[r * V + v] = static_cast<int32_t>(v);
    }
  std::vector<double> out(rows * V);
  m.log_probs(row_of, targets, out);
  return out;
}

// `after_repeat`, when set, runs after each repetition, outside its timed
// regions (the PyTorch peer's repetition of the pair).
Row bench_one(const BenchEvalArgs& a, const HfCheckpoint& ck, MPI_Comm comm, int T, int rank,
              const std::vector<EvalTask>& tasks, const std::vector<std::vector<int32_t>>& prompts,
              const std::function<void()>& after_repeat) {
  const ModelShard shard = load_model_shard(ck, rank, T);
  Transformer m(shard, comm);
  std::vector<std::vector<int32_t>> greedy(a.batch);
  std::vector<double> first_logprobs;
  // Each phase's time per repetition; the rates are of the median one (the
  // PyTorch peer reports the same): a shared host's other work slows some
  // repetitions, and PyTorch's own times spread by +-20 % (27-40 ms for one
  // prefill here), so means made the ratio swing by a third within minutes.
  std::vector<double> prefill_each, decode_each;
  double mm = 0, wall = 0;
  std::vector<SeqCache> caches;
  std::vector<ForwardRequest> reqs;
  // Fresh caches and one request per prompt: its first `len` tokens, logits
  // of the last.
  auto prefill_requests = [&](size_t len) {
    caches.clear();
    reqs.clear();
    caches.reserve(a.batch);
    for (size_t b = 0; b < a.batch; ++b) {
      caches.push_back(m.new_cache());
      reqs.push_back({&caches.back(),
                      std::span<const int32_t>(prompts[b]).first(len),
                      {static_cast<int32_t>(len - 1)}});
    }
  };
  prefill_requests(2);  // warm-up, untimed (as the PyTorch peer does): first-call allocations
  m.forward(reqs);
  for (size_t r = 0; r < a.repeats; ++r) {
    prefill_requests(a.prompt);
    MPI_CHECK(MPI_Barrier(comm));
    reset_matmul_seconds();
    const double t0 = steady_seconds();
    m.forward(reqs);
    std::vector<int32_t> next(a.batch);
    m.argmax(next);
    const double t1 = steady_seconds();
    if (r == 0) {  // outside the timed regions
      first_logprobs = all_log_probs(m, a.batch);
      for (size_t b = 0; b < a.batch; ++b) greedy[b].push_back(next[b]);
    }
    const double t1b = steady_seconds();
    for (size_t s = 0; s < a.decode; ++s) {
      for (size_t b = 0; b < a.batch; ++b)
        reqs[b] = {&caches[b], std::span<const int32_t>(&next[b], 1), {0}};
      m.forward(reqs);
      m.argmax(next);
      if (r == 0)
        for (size_t b = 0; b < a.batch; ++b) greedy[b].push_back(next[b]);
    }
    const double t2 = steady_seconds();
    prefill_each.push_back(t1 - t0);
    decode_each.push_back(t2 - t1b);
    mm += matmul_seconds();
    wall += (t1 - t0) + (t2 - t1b);
    if (after_repeat) after_repeat();
  }
  Row row{T,
          static_cast<double>(a.batch * a.prompt) / median_of(prefill_each),
          static_cast<double>(a.batch * a.decode) / median_of(decode_each),
          mm / wall,
          -1,
          -1,
          std::move(prefill_each),  // after the medians above: braces evaluate in order
          std::move(decode_each),
          {},
          std::move(greedy),
          std::move(first_logprobs)};
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

struct TorchRun {
  std::string version;
  double prefill_tps = 0, decode_tps = 0;
  // Medians over the alternated pairs of kintsugi's rate over PyTorch's.
  double prefill_ratio = 0, decode_ratio = 0;
  size_t pairs = 0;
  double max_logprob_diff = 0;
  size_t greedy_same = 0, greedy_total = 0;
};

// The PyTorch peer on the same checkpoint and prompts (rank 0 alone), run as
// a session (tools/torch_eval_bench.py --serve): it loads and warms up before
// kintsugi's T = 1 repetitions start, then runs one repetition after each of
// kintsugi's, so each pair sees the same moment of the host.
class TorchPeer {
 public:
  TorchPeer(const BenchEvalArgs& a, const std::vector<std::vector<int32_t>>& prompts)
      : script_(a.torch), prompts_file_{write_prompts(prompts)}, session_(command(a), a.torch) {
    const std::string hello = session_.read_line();
    if (!answer_with(hello, {"ready"}))
      throw_runtime("bench eval: {} --serve began with \"{}\", not its ready line", script_,
                    hello.substr(0, 200));
  }

  // One repetition of the peer's, after one of kintsugi's.
  void repeat() {
    const std::string line = session_.ask("repeat");
    const auto j = answer_with(line, {"prefill_s", "decode_s"});
    if (!j || !(*j)["prefill_s"].is_number() || !(*j)["decode_s"].is_number())
      throw_runtime("bench eval: {} answered \"{}\" to a repetition", script_, line.substr(0, 200));
    const double p = (*j)["prefill_s"].get<double>(), d = (*j)["decode_s"].get<double>();
    if (!(p > 0) || !(d > 0))
      throw_runtime("bench eval: {} timed a repetition at {} s and {} s", script_, p, d);
    prefill_s_.push_back(p);
    decode_s_.push_back(d);
  }

  // Ends the session; checks the peer's model against kintsugi's T = 1 row:
  // the log-probabilities after the prompts must agree within 1e-3 (both
  // compute in fp32; only the order of the sums differs), else exit 1. Greedy
  // tokens are counted, not required equal: a near tie may flip one and the
  // continuation with it.
  TorchRun finish(const BenchEvalArgs& a, const Row& ours) {
    const auto j = nlohmann::json::parse(session_.finish());
    TorchRun t;
    t.version = j.at("torch").get<std::string>();
    t.prefill_tps = j.at("prefill_tokens_per_s").get<double>();
    t.decode_tps = j.at("decode_tokens_per_s").get<double>();
    t.pairs = std::min(prefill_s_.size(), ours.prefill_each.size());
    if (t.pairs == 0 || ours.decode_each.size() < t.pairs)
      throw_runtime("bench eval: {} ran {} repetitions beside kintsugi's {}", script_,
                    prefill_s_.size(), ours.prefill_each.size());
    std::vector<double> prefill, decode;
    for (size_t r = 0; r < t.pairs; ++r) {
      prefill.push_back(prefill_s_[r] / ours.prefill_each[r]);
      decode.push_back(decode_s_[r] / ours.decode_each[r]);
    }
    t.prefill_ratio = median_of(prefill);
    t.decode_ratio = median_of(decode);
    const auto lp = j.at("prefill_logprobs").get<std::vector<std::vector<double>>>();
    const auto greedy = j.at("greedy_tokens").get<std::vector<std::vector<int32_t>>>();
    const size_t V = ours.first_logprobs.size() / a.batch;
    if (lp.size() != a.batch || greedy.size() != a.batch)
      throw_runtime("bench eval: {} answered for {} sequences, not {}", script_, lp.size(),
                    a.batch);
    for (size_t b = 0; b < a.batch; ++b) {
      if (lp[b].size() != V)
        throw_runtime("bench eval: {}: {} log-probabilities per sequence, the model has {}",
                      script_, lp[b].size(), V);
      for (size_t v = 0; v < V; ++v) {
        const double d = std::abs(lp[b][v] - ours.first_logprobs[b * V + v]);
        if (!(d <= 1e-3))
          throw_runtime(
              "bench eval: sequence {}, token {}: log p = {:.6f} from kintsugi, {:.6f} from {}: "
              "the two forward passes disagree",
              b, v, ours.first_logprobs[b * V + v], lp[b][v], script_);
        t.max_logprob_diff = std::max(t.max_logprob_diff, d);
      }
      for (size_t s = 0; s < ours.greedy[b].size() && s < greedy[b].size(); ++s)
        t.greedy_same += ours.greedy[b][s] == greedy[b][s] ? 1 : 0;
      t.greedy_total += ours.greedy[b].size();
    }
    return t;
  }

 private:
  // `line` as a JSON object when it is one with every key of `keys`.
  static std::optional<nlohmann::json> answer_with(const std::string& line,
                                                   std::initializer_list<const char*> keys) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    for (const char* k : keys)
      if (!j.contains(k)) return std::nullopt;
    return j;
  }
  static std::string write_prompts(const std::vector<std::vector<int32_t>>& prompts) {
    char tmpl[] = "/tmp/kintsugi-bench-prompts-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) throw_runtime("bench eval: cannot create a temporary file in /tmp");
    close(fd);
    std::ofstream f(tmpl);
    f << nlohmann::json(prompts).dump();
    if (!f.flush()) {
      std::filesystem::remove(tmpl);
      throw_runtime("bench eval: cannot write {}", tmpl);
    }
    return tmpl;
  }
  std::string command(const BenchEvalArgs& a) const {
    return "OMP_NUM_THREADS=1 exec " + shell_quote(a.python) + " " + shell_quote(a.torch) +
           " --checkpoint " + shell_quote(a.checkpoint) + " --prompts " +
           shell_quote(prompts_file_.path) + " --decode " + std::to_string(a.decode) + " --serve";
  }
  struct Removed {  // the prompts file, removed after the session ends
    std::string path;
    ~Removed() { std::filesystem::remove(path); }
  };
  std::string script_;
  Removed prompts_file_;
  PeerSession session_;
  std::vector<double> prefill_s_, decode_s_;
};

int run_bench_eval(const BenchEvalArgs& a) {
  if (!a.torch.empty() && !std::filesystem::is_regular_file(a.torch))
    throw_input("--torch {}: no such file (tools/torch_eval_bench.py in the repository)", a.torch);
  if (!std::filesystem::is_regular_file(a.job)) throw_input("--job {}: no such file", a.job);
  const HfCheckpoint ck = HfCheckpoint::open(a.checkpoint);
  std::vector<EvalTask> tasks;
  const JobConfig job = load_job(a.job);
  for (const auto& t : job.tasks) tasks.push_back(load_task(t, "search"));
  if (std::none_of(a.tp.begin(), a.tp.end(), [](int T) { return T >= 1 && T <= world_size(); }))
    throw_input("--tp: no group size fits in {} rank(s)", world_size());
  const auto prompts = make_prompts(a, model_config_of(ck).bos_token_id);
  if (!a.torch.empty() && std::find(a.tp.begin(), a.tp.end(), 1) == a.tp.end())
    throw_input("--torch needs T = 1 among --tp");
  // Rank 0 runs the PyTorch peer beside its T = 1 repetitions.
  std::unique_ptr<TorchPeer> peer;
  if (!a.torch.empty() && world_rank() == 0) peer = std::make_unique<TorchPeer>(a, prompts);
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
      std::function<void()> pair;
      if (peer && T == 1) pair = [&peer] { peer->repeat(); };
      rows.push_back(bench_one(a, ck, comm, T, world_rank(), tasks, prompts, pair));
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
  print_out("CPU: {}; evaluator kernels: {}\n", cpu_model(), eval_kernels_isa());
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
  nlohmann::json out{{"bench", "eval"},
                     {"cpu_model", cpu_model()},
                     {"eval_kernels", eval_kernels_isa()},
                     {"results", j},
                     {"scores", scores}};
  const auto one = std::find_if(rows.begin(), rows.end(), [](const Row& r) { return r.T == 1; });
  if (peer) {
    const TorchRun t = peer->finish(a, *one);
    peer.reset();
    print_out("PyTorch {} ({}, 1 thread): prefill {:.0f} tok/s, decode {:.0f} tok/s\n", t.version,
              a.torch, t.prefill_tps, t.decode_tps);
    print_out(
        "kintsugi T = 1 / PyTorch: prefill {:.2f}x, decode {:.2f}x (medians of {} alternated "
        "pairs)\n",
        t.prefill_ratio, t.decode_ratio, t.pairs);
    print_out(
        "same model: log-probabilities after the prompts within {:.1e}; greedy tokens {} of {} "
        "identical\n",
        t.max_logprob_diff, t.greedy_same, t.greedy_total);
    out["torch"] = {{"script", a.torch},
                    {"version", t.version},
                    {"prefill_tokens_per_s", t.prefill_tps},
                    {"decode_tokens_per_s", t.decode_tps},
                    {"prefill_ratio", t.prefill_ratio},
                    {"decode_ratio", t.decode_ratio},
                    {"pairs", t.pairs},
                    {"max_logprob_difference", t.max_logprob_diff},
                    {"greedy_identical", t.greedy_same},
                    {"greedy_total", t.greedy_total}};
  }
  if (a.json) print_out("{}\n", out.dump());
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
       sub.add_option("--repeats", a->repeats, "Repetitions (the median one is reported)")
           ->capture_default_str()
           ->check(CLI::Range(1, 1000));
       sub.add_option("--tp", a->tp, "Group sizes to measure")->capture_default_str();
       sub.add_option("--torch", a->torch,
                      "Also run this PyTorch peer (tools/torch_eval_bench.py) on the same "
                      "prompts and print the ratios");
       sub.add_option("--python", a->python, "The Python that runs --torch (with torch installed)")
           ->capture_default_str();
       sub.add_flag("--json", a->json, "Print a JSON line at the end");
       return std::function<int()>([a] { return run_bench_eval(*a); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
