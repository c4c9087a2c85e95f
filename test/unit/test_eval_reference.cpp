// The evaluator's log-probabilities against examples/demo/reference_logprobs.json,
// computed by PyTorch (tools/make_pool.py) from the same bf16 weights.
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <memory>

#include "kintsugi/model/transformer.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "test_eval_demo.hpp"

using namespace kintsugi;

namespace {

// Σ log p(continuation byte | <bos> + context + previous bytes).
double continuation_logprob(Transformer& m, int32_t bos, const std::string& context,
                            const std::string& continuation) {
  std::vector<int32_t> ids{bos};
  for (unsigned char ch : context) ids.push_back(ch);
  const size_t first = ids.size();
  for (unsigned char ch : continuation) ids.push_back(ch);
  SeqCache cache = m.new_cache();
  std::vector<ForwardRequest> req{
      {&cache, std::span<const int32_t>(ids).first(ids.size() - 1), {}}};
  std::vector<int32_t> targets;
  for (size_t i = first; i < ids.size(); ++i) {
    req[0].logits_at.push_back(static_cast<int32_t>(i - 1));
    targets.push_back(ids[i]);
  }
  m.forward(req);
  std::vector<double> lp(targets.size());
  m.log_probs({}, targets, lp);
  double s = 0;
  for (double x : lp) s += x;
  return s;
}

}  // namespace

TEST_CASE("log-probabilities match the PyTorch reference within 1e-3", "[eval][demo]") {
  const auto dir = test::eval_demo_dir();
  const auto ref_path = dir / "reference_logprobs.json";
  INFO(ref_path.string() << " (the committed demo pool)");
  REQUIRE(std::filesystem::exists(ref_path));
  std::ifstream in(ref_path);
  const auto ref = nlohmann::json::parse(in);
  REQUIRE(ref["dtype"] == "float32");
  const int32_t bos = ref["bos_token_id"].get<int32_t>();
  REQUIRE(ref["entries"].size() > 0);
  std::map<std::string, std::unique_ptr<ModelShard>> shards;
  double worst = 0;
  for (const auto& e : ref["entries"]) {
    const std::string name = e["checkpoint"].get<std::string>();
    auto& shard = shards[name];
    if (!shard)
      shard = std::make_unique<ModelShard>(
          load_model_shard(HfCheckpoint::open(dir / "pool" / name), 0, 1));
    Transformer m(*shard, MPI_COMM_SELF);
    const double got = continuation_logprob(m, bos, e["context"].get<std::string>(),
                                            e["continuation"].get<std::string>());
    const double want = e["logprob"].get<double>();
    INFO(name << ": " << e["context"] << " + " << e["continuation"]);
    CHECK(std::abs(got - want) < 1e-3);
    worst = std::max(worst, std::abs(got - want));
  }
  WARN("reference log-probs: " << ref["entries"].size() << " entries, largest difference "
                               << worst);
}
