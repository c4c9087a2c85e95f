// The evaluator's forward pass against the naive double-precision reference in
// test_eval_naive.hpp, on tiny random configs (one rank; the tensor-parallel
// versions are in test_eval_tp.cpp).
#include <catch2/catch.hpp>
#include <numeric>

#include "kintsugi/common/error.hpp"
#include "kintsugi/model/transformer.hpp"
#include "test_eval_naive.hpp"

using namespace kintsugi;
using kintsugi::test::naive_log_probs;
using kintsugi::test::random_weights;
using kintsugi::test::tiny_config_json;

namespace {

ModelShard full_shard(const ModelConfig& c, const test::Weights& w, int rank = 0, int size = 1) {
  return shard_from_full(c, rank, size,
                         [&](const std::string& n) -> std::span<const float> { return w.at(n); });
}

// Every log-probability of the first `rows` scored rows (all vocabulary entries).
std::vector<std::vector<double>> all_log_probs(const Transformer& m, size_t rows) {
  const int32_t V = static_cast<int32_t>(m.config().vocab_size);
  std::vector<int32_t> row_of, targets;
  for (size_t r = 0; r < rows; ++r)
    for (int32_t t = 0; t < V; ++t) {
      row_of.push_back(static_cast<int32_t>(r));
      targets.push_back(t);
    }
  std::vector<double> lp(targets.size());
  m.log_probs(row_of, targets, lp);
  std::vector<std::vector<double>> out(rows);
  for (size_t r = 0; r < rows; ++r)
    out[r].assign(lp.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(V)),
                  lp.begin() + static_cast<std::ptrdiff_t>((r + 1) * static_cast<size_t>(V)));
  return out;
}

// One prefill of `toks` into `cache` with every position scored, and the
// log-probabilities of every row.
std::vector<std::vector<double>> every_row_log_probs(Transformer& m, SeqCache& cache,
                                                     std::span<const int32_t> toks) {
  std::vector<ForwardRequest> req{{&cache, toks, {}}};
  req[0].logits_at.resize(toks.size());
  std::iota(req[0].logits_at.begin(), req[0].logits_at.end(), 0);
  m.forward(req);
  return all_log_probs(m, toks.size());
}

void require_close(const std::vector<double>& a, const std::vector<double>& b, double tol) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  CHECK(worst < tol);
}

std::vector<int32_t> some_tokens(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return t;
}

void check_against_naive(const ModelConfig& c, uint32_t seed) {
  const auto w = random_weights(c, seed);
  ModelShard shard = full_shard(c, w);
  Transformer m(shard, MPI_COMM_SELF);
  const auto toks = some_tokens(13, static_cast<int32_t>(c.vocab_size), seed + 1);
  const auto ref = naive_log_probs(c, w, toks);

  SECTION("one prefill of the whole sequence") {
    SeqCache cache = m.new_cache();
    const auto lp = every_row_log_probs(m, cache, toks);
    for (size_t t = 0; t < toks.size(); ++t) require_close(lp[t], ref[t], 1e-4);
    CHECK(cache.length() == toks.size());
  }
  SECTION("prefill then one token at a time through the KV cache") {
    SeqCache cache = m.new_cache();
    std::vector<ForwardRequest> req{{&cache, std::span<const int32_t>(toks).first(5), {4}}};
    m.forward(req);
    require_close(all_log_probs(m, 1)[0], ref[4], 1e-4);
    for (size_t t = 5; t < toks.size(); ++t) {
      req = {{&cache, std::span<const int32_t>(toks).subspan(t, 1), {0}}};
      m.forward(req);
      require_close(all_log_probs(m, 1)[0], ref[t], 1e-4);
    }
  }
  SECTION("ragged batch with a shared prefix") {
    // Sequence A: toks; sequence B: a different prefix; then two continuations of
    // A's first 6 positions sharing its cache.
    const auto other = some_tokens(7, static_cast<int32_t>(c.vocab_size), seed + 2);
    const auto ref_b = naive_log_probs(c, w, other);
    auto root = std::make_shared<SeqCache>(m.new_cache());
    SeqCache b = m.new_cache();
    std::vector<ForwardRequest> req{{root.get(), std::span<const int32_t>(toks).first(6), {5, 2}},
                                    {&b, other, {0, 6}}};
    m.forward(req);
    const auto lp = all_log_probs(m, 4);
    require_close(lp[0], ref[5], 1e-4);
    require_close(lp[1], ref[2], 1e-4);
    require_close(lp[2], ref_b[0], 1e-4);
    require_close(lp[3], ref_b[6], 1e-4);
    // Continuation 1 = toks[6..]; continuation 2 = other tokens after toks[0..4).
    std::vector<int32_t> alt(toks.begin(), toks.begin() + 4);
    const auto tail = some_tokens(3, static_cast<int32_t>(c.vocab_size), seed + 3);
    alt.insert(alt.end(), tail.begin(), tail.end());
    const auto ref_alt = naive_log_probs(c, w, alt);
    SeqCache c1 = m.continue_from(root, 6), c2 = m.continue_from(root, 4);
    req = {{&c1, std::span<const int32_t>(toks).subspan(6), {0, 6}}, {&c2, tail, {0, 1, 2}}};
    m.forward(req);
    const auto lp2 = all_log_probs(m, 5);
    require_close(lp2[0], ref[6], 1e-4);
    require_close(lp2[1], ref[12], 1e-4);
    require_close(lp2[2], ref_alt[4], 1e-4);
    require_close(lp2[3], ref_alt[5], 1e-4);
    require_close(lp2[4], ref_alt[6], 1e-4);
  }
  SECTION("a subset of rows, repeated and out of order, has the bits of scoring every row") {
    // The last layer runs its second half on the scored rows alone: the same
    // bits as when every row is scored, also with more scored rows than tokens.
    SeqCache all = m.new_cache();
    const auto every = every_row_log_probs(m, all, toks);
    std::vector<int32_t> some{12, 3, 3, 0, 7};
    while (some.size() <= toks.size()) some.push_back(static_cast<int32_t>(some.size() % 5));
    SeqCache part = m.new_cache();
    std::vector<ForwardRequest> req{{&part, toks, some}};
    m.forward(req);
    const auto lp = all_log_probs(m, some.size());
    for (size_t o = 0; o < some.size(); ++o) CHECK(lp[o] == every[static_cast<size_t>(some[o])]);
    CHECK(part.k == all.k);
    CHECK(part.v == all.v);
  }
  SECTION("a batch of subsets, one after a shared prefix, has the bits of scoring every row") {
    // Three requests in one batch (one scoring nothing, one continuing a
    // cached prefix), against each scored on every row in its own batch.
    const auto other = some_tokens(9, static_cast<int32_t>(c.vocab_size), seed + 4);
    auto root = std::make_shared<SeqCache>(m.new_cache());
    std::vector<ForwardRequest> pre{{root.get(), std::span<const int32_t>(toks).first(5), {}}};
    m.forward(pre);
    SeqCache a_all = m.new_cache(), b_all = m.new_cache(), c_all = m.continue_from(root, 5);
    const auto a_every = every_row_log_probs(m, a_all, other);
    every_row_log_probs(m, b_all, toks);
    const auto c_every = every_row_log_probs(m, c_all, std::span<const int32_t>(toks).subspan(5));
    SeqCache a = m.new_cache(), b = m.new_cache(), cc = m.continue_from(root, 5);
    std::vector<ForwardRequest> req{{&a, other, {8, 0, 8}},
                                    {&b, toks, {}},
                                    {&cc, std::span<const int32_t>(toks).subspan(5), {7, 2}}};
    m.forward(req);
    const auto lp = all_log_probs(m, 5);
    CHECK(lp[0] == a_every[8]);
    CHECK(lp[1] == a_every[0]);
    CHECK(lp[2] == a_every[8]);
    CHECK(lp[3] == c_every[7]);
    CHECK(lp[4] == c_every[2]);
    CHECK(a.k == a_all.k);
    CHECK(b.v == b_all.v);
    CHECK(cc.k == c_all.k);
  }
  SECTION("greedy argmax is the reference's most likely token") {
    SeqCache cache = m.new_cache();
    std::vector<ForwardRequest> req{{&cache, toks, {3, 12}}};
    m.forward(req);
    std::vector<int32_t> best(2);
    m.argmax(best);
    CHECK(best[0] ==
          static_cast<int32_t>(std::max_element(ref[3].begin(), ref[3].end()) - ref[3].begin()));
    CHECK(best[1] ==
          static_cast<int32_t>(std::max_element(ref[12].begin(), ref[12].end()) - ref[12].begin()));
  }
}

}  // namespace

TEST_CASE("forward pass matches a naive reference: Qwen2, GQA, biases, tied embeddings",
          "[eval][model]") {
  const ModelConfig c = ModelConfig::from_json(tiny_config_json(), "tiny");
  REQUIRE(c.qkv_bias);
  REQUIRE(c.tie_word_embeddings);
  REQUIRE(c.num_kv_heads < c.num_heads);
  check_against_naive(c, 7);
}

TEST_CASE(
    "forward pass matches a naive reference: Llama, llama3 RoPE scaling, untied, attention bias",
    "[eval][model]") {
  auto j = tiny_config_json();
  j["architectures"] = {"LlamaForCausalLM"};
  j["tie_word_embeddings"] = false;
  j["attention_bias"] = true;
  j["num_key_value_heads"] = 4;
  j["rope_theta"] = 500.0;
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 64}};
  const ModelConfig c = ModelConfig::from_json(j, "tiny");
  REQUIRE(c.o_bias);
  check_against_naive(c, 11);
}

TEST_CASE("forward pass matches a naive reference: Mistral sliding window, linear RoPE scaling",
          "[eval][model]") {
  auto j = tiny_config_json();
  j["architectures"] = {"MistralForCausalLM"};
  j["sliding_window"] = 4;
  j["num_key_value_heads"] = 1;
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  const ModelConfig c = ModelConfig::from_json(j, "tiny");
  REQUIRE_FALSE(c.qkv_bias);
  check_against_naive(c, 13);
}

TEST_CASE("transformers 5 configs: rope_parameters give the same RoPE as rope_theta/rope_scaling",
          "[eval][model]") {
  // transformers >= 5 writes rope_theta inside rope_parameters; before the
  // change it was silently ignored (rope_theta defaulted to 10000).
  auto v4 = tiny_config_json();
  v4["architectures"] = {"LlamaForCausalLM"};
  v4["rope_theta"] = 500000.0;
  v4["rope_scaling"] = {{"rope_type", "llama3"},
                        {"factor", 8.0},
                        {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 64}};
  auto v5 = v4;
  v5.erase("rope_theta");
  v5.erase("rope_scaling");
  v5["rope_parameters"] = v4["rope_scaling"];
  v5["rope_parameters"]["rope_theta"] = 500000.0;
  const ModelConfig a = ModelConfig::from_json(v4, "v4"), b = ModelConfig::from_json(v5, "v5");
  CHECK(b.rope_theta == 500000.0);
  CHECK(b.rope_scaling.kind == RopeScaling::Kind::Llama3);
  CHECK(b.rope_scaling.factor == a.rope_scaling.factor);
  CHECK(b.rope_scaling.low_freq_factor == a.rope_scaling.low_freq_factor);
  CHECK(b.rope_scaling.high_freq_factor == a.rope_scaling.high_freq_factor);
  CHECK(b.rope_scaling.original_max_position_embeddings == 64.0);
  // Both forms at once, agreeing (a config written for both versions).
  auto both = v5;
  both["rope_theta"] = 500000.0;
  both["rope_scaling"] = v4["rope_scaling"];
  CHECK(ModelConfig::from_json(both, "both").rope_theta == 500000.0);
  auto plain = tiny_config_json();
  plain.erase("rope_theta");
  plain["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  const ModelConfig p = ModelConfig::from_json(plain, "plain");
  CHECK(p.rope_theta == 1e6);
  CHECK(p.rope_scaling.kind == RopeScaling::Kind::None);

  auto bad = [](nlohmann::json j, const std::string& what) {
    REQUIRE_THROWS_WITH(ModelConfig::from_json(j, "x/config.json"),
                        Catch::Contains("x/config.json") && Catch::Contains(what));
  };
  auto j = plain;
  j["rope_parameters"].erase("rope_theta");
  bad(j, "rope_parameters");
  j = plain;
  j["rope_theta"] = 10000.0;
  bad(j, "disagree");
  j = both;
  j["rope_scaling"]["factor"] = 4.0;
  bad(j, "rope_scaling.factor");
  j = plain;
  j["rope_parameters"]["rope_type"] = "yarn";
  bad(j, "rope_parameters type 'yarn'");
  j = plain;  // Qwen2: per-layer sliding windows are not implemented
  j["layer_types"] = {"full_attention", "sliding_attention"};
  bad(j, "layer_types");
  j["layer_types"] = {"full_attention", "full_attention"};
  CHECK_NOTHROW(ModelConfig::from_json(j, "x/config.json"));
}

TEST_CASE("unsupported model options are clear input errors", "[eval][model]") {
  auto bad = [](const std::string& key, const nlohmann::json& value, const std::string& what) {
    auto j = tiny_config_json();
    if (value.is_null())
      j.erase(key);
    else
      j[key] = value;
    REQUIRE_THROWS_WITH(ModelConfig::from_json(j, "x/config.json"),
                        Catch::Contains("x/config.json") && Catch::Contains(what));
  };
  bad("architectures", {"GPT2LMHeadModel"}, "GPT2LMHeadModel");
  bad("rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}, "yarn");
  bad("hidden_act", "gelu", "gelu");
  bad("mlp_bias", true, "mlp_bias");
  bad("num_key_value_heads", 3, "num_key_value_heads");
  bad("hidden_size", nullptr, "hidden_size");
  bad("use_sliding_window", true, "use_sliding_window");
  const ModelConfig c = ModelConfig::from_json(tiny_config_json(), "tiny");
  REQUIRE_THROWS_AS(TpPlan(c, 3), InputError);  // 4 heads
  REQUIRE_THROWS_WITH(TpPlan(c, 8), Catch::Contains("num_attention_heads"));
}

TEST_CASE("tensor-parallel plan slices", "[eval][model]") {
  const ModelConfig c = ModelConfig::from_json(tiny_config_json(), "tiny");
  // 4 query heads of 4, 2 KV heads, 24 ffn features, vocabulary 37.
  const TpPlan p2(c, 2), p4(c, 4);
  const TpTensor q{"model.layers.0.self_attn.q_proj.weight", {16, 16}, 0};
  const TpTensor k{"model.layers.0.self_attn.k_proj.weight", {8, 16}, 0};
  const TpTensor o{"model.layers.0.self_attn.o_proj.weight", {16, 16}, 0};
  const TpTensor dn{"model.layers.0.mlp.down_proj.weight", {16, 24}, 0};
  const TpTensor e{"model.embed_tokens.weight", {37, 16}, std::nullopt};
  const TpTensor nrm{"model.norm.weight", {16}, std::nullopt};
  auto is = [](TpSlice s, TpSplit k2, int64_t b, int64_t e2) {
    return s.split == k2 && s.begin == b && s.end == e2;
  };
  CHECK(is(p2.slice(q, 1), TpSplit::Rows, 8, 16));
  CHECK(is(p2.slice(k, 1), TpSplit::Rows, 4, 8));
  CHECK(is(p2.slice(o, 0), TpSplit::Cols, 0, 8));
  CHECK(is(p2.slice(dn, 1), TpSplit::Cols, 12, 24));
  CHECK(is(p2.slice(e, 0), TpSplit::Rows, 0, 18));
  CHECK(is(p2.slice(e, 1), TpSplit::Rows, 18, 37));
  CHECK(is(p2.slice(nrm, 1), TpSplit::Replicated, 0, 16));
  // T = 4 > 2 KV heads: ranks 0,1 hold KV head 0, ranks 2,3 KV head 1.
  CHECK(is(p4.slice(k, 1), TpSplit::Rows, 0, 4));
  CHECK(is(p4.slice(k, 2), TpSplit::Rows, 4, 8));
  CHECK(is(p4.slice(q, 3), TpSplit::Rows, 12, 16));
}
