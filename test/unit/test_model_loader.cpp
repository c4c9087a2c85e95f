// Loading a rank's shard from an HF folder, and merging pool shards in memory.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "test_eval_naive.hpp"
#include "test_support.hpp"

using namespace kintsugi;

TEST_CASE("load_model_shard reads this rank's rows and columns", "[eval][model]") {
  test::TempDir tmp;
  const auto cj = test::tiny_config_json();
  const ModelConfig c = ModelConfig::from_json(cj, "cfg");
  const auto w = test::write_checkpoint(tmp / "a", cj, test::random_weights(c, 3));
  const HfCheckpoint ck = HfCheckpoint::open(tmp / "a");
  for (int size : {1, 2, 4})
    for (int rank = 0; rank < size; ++rank) {
      const ModelShard got = load_model_shard(ck, rank, size);
      const ModelShard want = shard_from_full(
          c, rank, size, [&](const std::string& n) { return std::span<const float>(w.at(n)); });
      REQUIRE(got.num_tensors() == want.num_tensors());
      for (size_t t = 0; t < got.num_tensors(); ++t) {
        const auto a = got.tensor(t), b = want.tensor(t);
        REQUIRE(a.size() == b.size());
        CHECK(std::equal(a.begin(), a.end(), b.begin()));
      }
    }
  // Column slices by hand: rank 1 of 2 holds o_proj columns 8..15 of every row.
  const ModelShard r1 = load_model_shard(ck, 1, 2);
  const auto o = r1.tensor("model.layers.1.self_attn.o_proj.weight");
  const auto& full = w.at("model.layers.1.self_attn.o_proj.weight");
  CHECK(o[0] == full[8]);
  CHECK(o[7] == full[15]);
  CHECK(o[8] == full[16 + 8]);
  CHECK(o[8 * 16 - 1] == full[16 * 16 - 1]);
}

TEST_CASE("load_model_shard names the checkpoint and tensor on bad input", "[eval][model]") {
  test::TempDir tmp;
  auto cj = test::tiny_config_json();
  const ModelConfig c = ModelConfig::from_json(cj, "cfg");
  test::write_checkpoint(tmp / "a", cj, test::random_weights(c, 3),
                         "model.layers.1.mlp.up_proj.weight");
  REQUIRE_THROWS_WITH(load_model_shard(HfCheckpoint::open(tmp / "a"), 0, 1),
                      Catch::Contains("a: tensor model.layers.1.mlp.up_proj.weight is missing"));
  test::write_checkpoint(tmp / "b", cj, test::random_weights(c, 3));
  cj["intermediate_size"] = 20;
  std::ofstream(tmp / "b" / "config.json") << cj.dump();
  REQUIRE_THROWS_WITH(
      load_model_shard(HfCheckpoint::open(tmp / "b"), 0, 1),
      Catch::Contains("mlp.gate_proj.weight: shape [24, 16] but config.json implies [20, 16]"));
}

TEST_CASE("pool shards merged in memory equal the weighted sum of the checkpoints",
          "[eval][model]") {
  test::TempDir tmp;
  const auto cj = test::tiny_config_json();
  const ModelConfig c = ModelConfig::from_json(cj, "cfg");
  const auto wa = test::write_checkpoint(tmp / "a", cj, test::random_weights(c, 3));
  const auto wb = test::write_checkpoint(tmp / "b", cj, test::random_weights(c, 4));
  const HfCheckpoint a = HfCheckpoint::open(tmp / "a"), b = HfCheckpoint::open(tmp / "b");
  for (int size : {1, 2}) {
    for (int rank = 0; rank < size; ++rank) {
      const PoolShards pool = PoolShards::load({&a, &b}, rank, size);
      CHECK(pool.num_checkpoints() == 2);
      CHECK(pool.dtype(0) == DType::BF16);
      ModelShard m(c, rank, size);

      const std::vector<float> w{0.25f, 0.75f};
      merge_into(m, pool, MergeWeights::per_checkpoint(w, 2));
      test::Weights mixed;
      for (const auto& [name, va] : wa) {
        std::vector<float> v(va.size());
        for (size_t i = 0; i < v.size(); ++i) v[i] = 0.25f * va[i] + 0.75f * wb.at(name)[i];
        mixed[name] = v;
      }
      const ModelShard want = shard_from_full(
          c, rank, size, [&](const std::string& n) { return std::span<const float>(mixed.at(n)); });
      for (size_t t = 0; t < m.num_tensors(); ++t)
        for (size_t i = 0; i < m.tensor(t).size(); ++i)
          REQUIRE(m.tensor(t)[i] == Approx(want.tensor(t)[i]).margin(1e-6));

      // Two layer groups: layer 0 and the embeddings from a, layer 1 and the head from b.
      const std::vector<float> g{1.0f, 0.0f, 0.0f, 1.0f};
      merge_into(m, pool, MergeWeights::per_layer_group(g, 2, 2, 2));
      const ModelShard sa = load_model_shard(a, rank, size), sb = load_model_shard(b, rank, size);
      const auto& ts = m.plan().tensors();
      for (size_t t = 0; t < ts.size(); ++t) {
        const bool from_a =
            ts[t].layer ? *ts[t].layer == 0 : ts[t].name == "model.embed_tokens.weight";
        const std::span<const float> x = m.tensor(t), y = (from_a ? sa : sb).tensor(t);
        CHECK(std::equal(x.begin(), x.end(), y.begin()));
      }
    }
  }
  const PoolShards pool = PoolShards::load({&a, &b}, 0, 1);
  ModelShard m(c, 0, 1);
  const std::vector<float> three{0.2f, 0.3f, 0.5f};
  REQUIRE_THROWS_AS(merge_into(m, pool, MergeWeights::per_checkpoint(three, 2)), InputError);
}
