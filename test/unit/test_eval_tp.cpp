// Tensor parallelism: T = 1, 2 and 4 (as many as divide the world) give the
// naive reference's log-probabilities and the same task scores. Run under
// mpirun (test/eval.cmake).
#include <catch2/catch.hpp>
#include <numeric>

#include "kintsugi/config/job.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/eval/builtin_evaluator.hpp"
#include "kintsugi/model/transformer.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "test_eval_demo.hpp"
#include "test_eval_naive.hpp"

using namespace kintsugi;

namespace {

struct Group {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  explicit Group(int T) {
    MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, world_rank() / T, world_rank(), &comm));
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
  }
  ~Group() { MPI_Comm_free(&comm); }
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
};

std::vector<int> tp_sizes() {
  std::vector<int> ts;
  for (int T : {1, 2, 4})
    if (world_size() % T == 0) ts.push_back(T);
  return ts;
}

nlohmann::json byte_model_config() {
  auto j = test::tiny_config_json();
  j["vocab_size"] = 258;
  j["bos_token_id"] = 256;
  j["eos_token_id"] = 257;
  j["hidden_size"] = 32;
  j["intermediate_size"] = 40;  // 10 features per rank at T = 4
  j["head_dim"] = 8;
  return j;
}

}  // namespace

TEST_CASE("tensor-parallel forward matches the naive reference for T = 1, 2, 4", "[mpi][eval]") {
  const ModelConfig c = ModelConfig::from_json(test::tiny_config_json(), "tiny");
  const auto w = test::random_weights(c, 21);
  std::vector<int32_t> toks{35, 3, 17, 8, 8, 30, 1, 0, 22, 14, 5};
  const auto ref = test::naive_log_probs(c, w, toks);
  for (int T : tp_sizes()) {
    Group g(T);
    const ModelShard shard = shard_from_full(
        c, g.rank, T, [&](const std::string& n) { return std::span<const float>(w.at(n)); });
    Transformer m(shard, g.comm);
    // Prefill 6 tokens, then continue 5 more from a shared prefix.
    auto root = std::make_shared<SeqCache>(m.new_cache());
    std::vector<ForwardRequest> req{
        {root.get(), std::span<const int32_t>(toks).first(6), {0, 1, 2, 3, 4, 5}}};
    m.forward(req);
    std::vector<int32_t> targets(toks.begin() + 1, toks.begin() + 7);
    std::vector<double> lp(6);
    m.log_probs({}, targets, lp);
    SeqCache cont = m.continue_from(root, 6);
    req = {{&cont, std::span<const int32_t>(toks).subspan(6, 4), {0, 1, 2, 3}}};
    m.forward(req);
    std::vector<int32_t> t2(toks.begin() + 7, toks.end());
    std::vector<double> lp2(4);
    m.log_probs({}, t2, lp2);
    lp.insert(lp.end(), lp2.begin(), lp2.end());
    double worst = 0;
    for (size_t i = 0; i + 1 < toks.size(); ++i)
      worst = std::max(worst, std::abs(lp[i] - ref[i][static_cast<size_t>(toks[i + 1])]));
    INFO("T = " << T);
    CHECK(worst < 1e-4);
    std::vector<int32_t> best(4);
    m.argmax(best);
    for (size_t i = 0; i < 4; ++i) {
      const auto& r = ref[6 + i];
      CHECK(best[i] == static_cast<int32_t>(std::max_element(r.begin(), r.end()) - r.begin()));
    }
  }
}

TEST_CASE("task scores do not depend on T", "[mpi][eval]") {
  const ModelConfig c = ModelConfig::from_json(byte_model_config(), "byte");
  const auto w = test::random_weights(c, 5);
  const Tokenizer tok = Tokenizer::from_json(test::byte_level_tokenizer_json(), "tok");
  std::vector<EvalTask> tasks(3);
  tasks[0].config.name = "gen";
  tasks[0].config.kind = TaskKind::Generate;
  tasks[0].config.max_new_tokens = 6;
  tasks[0].config.stop = {"\n", "e"};
  tasks[1].config.name = "mc";
  tasks[1].config.kind = TaskKind::Choice;
  tasks[2].config.name = "ppl";
  tasks[2].config.kind = TaskKind::Perplexity;
  const std::vector<std::string> words{"apple", "pear", "fig", "banana split", "kiwi", "x"};
  for (size_t i = 0; i < 7; ++i) {
    Example e;
    e.context = "Q" + std::to_string(i) + ": " + words[i % words.size()] + " ->";
    e.target = words[(i + 1) % words.size()];
    tasks[0].examples.push_back(e);
    e.choices = {" " + words[i % 6], " " + words[(i + 2) % 6], words[(i + 3) % 6]};
    e.label = i % 3;
    tasks[1].examples.push_back(e);
    Example p;
    p.text = "the " + words[i % 6] + " and the " + words[(i + 4) % 6];
    tasks[2].examples.push_back(p);
  }
  std::vector<std::vector<TaskResult>> all;
  for (int T : tp_sizes()) {
    Group g(T);
    const ModelShard shard = shard_from_full(
        c, g.rank, T, [&](const std::string& n) { return std::span<const float>(w.at(n)); });
    EvalOptions opt;
    opt.batch_size = 3;  // several batches, one ragged
    opt.keep_samples = true;
    all.push_back(evaluate_model(g.comm, shard, tok, tasks, opt));
  }
  const auto& base = all[0];
  REQUIRE(base.size() == 3);
  // Perplexity of the T = 1 run against the naive reference, by hand.
  {
    double nll = 0;
    size_t bytes = 0;
    for (const auto& e : tasks[2].examples) {
      std::vector<int32_t> ids{256};
      for (unsigned char ch : e.text) ids.push_back(ch);
      const auto ref = test::naive_log_probs(c, w, ids);
      for (size_t i = 0; i + 1 < ids.size(); ++i) nll -= ref[i][static_cast<size_t>(ids[i + 1])];
      bytes += e.text.size();
    }
    CHECK(base[2].score == Approx(nll / std::log(2.0) / static_cast<double>(bytes)).epsilon(1e-5));
  }
  for (size_t k = 1; k < all.size(); ++k) {
    INFO("T index " << k);
    for (size_t t = 0; t < 3; ++t) {
      CHECK(all[k][t].metrics.at(base[t].metric) ==
            Approx(base[t].score).margin(t == 2 ? 1e-5 : 0));
      REQUIRE(all[k][t].samples.size() == base[t].samples.size());
      for (size_t i = 0; i < base[t].samples.size(); ++i) {
        const auto& a = all[k][t].samples[i];
        const auto& b = base[t].samples[i];
        if (t == 0) CHECK(a["output"] == b["output"]);
        if (t == 1)
          for (size_t ci = 0; ci < 3; ++ci)
            CHECK(a["loglikelihoods"][ci].get<double>() ==
                  Approx(b["loglikelihoods"][ci].get<double>()).margin(1e-4));
        if (t == 2) CHECK(a["nll"].get<double>() == Approx(b["nll"].get<double>()).margin(1e-4));
      }
    }
  }
}

TEST_CASE("demo tasks: T = 1, 2, 4 give the same scores, log-likelihoods within 1e-4",
          "[mpi][eval][demo]") {
  const auto dir = test::eval_demo_dir();
  INFO((dir / "job.yaml").string() << " (the committed demo pool)");
  REQUIRE(std::filesystem::exists(dir / "job.yaml"));
  const JobConfig job = load_job(dir / "job.yaml");
  std::vector<EvalTask> tasks;
  for (const auto& t : job.tasks) tasks.push_back(load_task(t, "search"));
  std::vector<HfCheckpoint> pool;
  std::vector<const HfCheckpoint*> ptrs;
  for (const auto& p : job.pool.checkpoints) pool.push_back(HfCheckpoint::open(p));
  for (const auto& ck : pool) ptrs.push_back(&ck);
  const Tokenizer tok = Tokenizer::load(pool[0].path());
  const std::vector<float> uniform(pool.size(), 1.0f / static_cast<float>(pool.size()));
  // [T][model: first checkpoint, uniform merge][task]
  std::vector<std::vector<std::vector<TaskResult>>> all;
  for (int T : tp_sizes()) {
    Group g(T);
    EvalOptions opt;
    // Large batches: fewer forward passes, so fewer all-reduces (an
    // oversubscribed machine makes each one slow). Scores do not depend on it.
    opt.batch_size = 64;
    opt.keep_samples = true;
    std::vector<std::vector<TaskResult>> per_model;
    const ModelShard first = load_model_shard(pool[0], g.rank, T);
    per_model.push_back(evaluate_model(g.comm, first, tok, tasks, opt));
    const PoolShards ps = PoolShards::load(ptrs, g.rank, T);
    ModelShard merged(ps.config(), g.rank, T);
    merge_into(merged, ps,
               MergeWeights::per_checkpoint(uniform, static_cast<size_t>(ps.config().num_layers)));
    per_model.push_back(evaluate_model(g.comm, merged, tok, tasks, opt));
    all.push_back(std::move(per_model));
  }
  for (size_t k = 1; k < all.size(); ++k)
    for (size_t m = 0; m < 2; ++m)
      for (size_t t = 0; t < tasks.size(); ++t) {
        const auto& a = all[k][m][t];
        const auto& b = all[0][m][t];
        INFO("T index " << k << ", model " << m << ", task " << b.task);
        CHECK(a.metrics == b.metrics);
        for (size_t i = 0; i < b.samples.size(); ++i) {
          if (b.samples[i].contains("output"))
            CHECK(a.samples[i]["output"] == b.samples[i]["output"]);
          if (b.samples[i].contains("loglikelihoods"))
            for (size_t ci = 0; ci < b.samples[i]["loglikelihoods"].size(); ++ci)
              CHECK(std::abs(a.samples[i]["loglikelihoods"][ci].get<double>() -
                             b.samples[i]["loglikelihoods"][ci].get<double>()) < 1e-4);
        }
      }
}
