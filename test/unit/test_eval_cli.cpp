// `kintsugi eval` end to end on a generated two-checkpoint pool.
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "test_eval_naive.hpp"
#include "test_support.hpp"

using namespace kintsugi;

namespace {

nlohmann::json byte_config() {
  auto j = test::tiny_config_json();
  j["vocab_size"] = 258;
  j["bos_token_id"] = 256;
  j["eos_token_id"] = 257;
  return j;
}

struct Fixture {
  test::TempDir tmp;
  ModelConfig config = ModelConfig::from_json(byte_config(), "cfg");
  test::Weights wa, wb;
  Fixture() {
    wa = test::write_checkpoint(tmp / "pool" / "a", byte_config(), test::random_weights(config, 1));
    wb = test::write_checkpoint(tmp / "pool" / "b", byte_config(), test::random_weights(config, 2));
    for (const char* m : {"a", "b"})
      std::ofstream(tmp / "pool" / m / "tokenizer.json")
          << test::byte_level_tokenizer_json().dump();
    std::filesystem::create_directories(tmp / "tasks");
    std::ofstream(tmp / "tasks" / "mc.search.jsonl")
        << "{\"context\": \"x=\", \"choices\": [\"ab\", \"c\"], \"label\": 0}\n"
        << "{\"context\": \"y=\", \"choices\": [\"q\", \"rs\", \"t\"], \"label\": 2, \"id\": "
           "\"two\"}\n";
    std::ofstream(tmp / "tasks" / "mc.test.jsonl")
        << "{\"context\": \"z=\", \"choices\": [\"a\", \"b\"], \"label\": 1}\n";
    std::ofstream(tmp / "tasks" / "gen.search.jsonl")
        << "{\"context\": \"1+1=\", \"target\": \"2\"}\n{\"context\": \"\", \"target\": \"x\"}\n";
    std::ofstream(tmp / "tasks" / "txt.search.jsonl") << "{\"text\": \"hello world\"}\n";
    write_job("");
  }
  void write_job(const std::string& extra) {
    std::ofstream(tmp / "job.yaml")
        << "pool:\n  checkpoints: [pool/a, pool/b]\n"
           "tasks:\n"
           "  - {name: mc, file: \"tasks/mc.{split}.jsonl\", kind: choice, metric: acc_norm}\n"
           "  - {name: gen, file: \"tasks/gen.{split}.jsonl\", kind: generate, max_new_tokens: 4}\n"
           "  - {name: txt, file: \"tasks/txt.{split}.jsonl\", kind: perplexity}\n"
        << extra;
  }
  std::string job() const { return (tmp / "job.yaml").string(); }
};

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

nlohmann::json last_line_json(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return nlohmann::json::parse(s.substr(s.rfind('\n') + 1));
}

// Naive Σ log p(cont | <bos> + ctx) for checkpoint weights w.
double naive_loglik(const ModelConfig& c, const test::Weights& w, const std::string& ctx,
                    const std::string& cont) {
  std::vector<int32_t> ids{256};
  for (unsigned char ch : ctx) ids.push_back(ch);
  const size_t first = ids.size();
  for (unsigned char ch : cont) ids.push_back(ch);
  const auto lp = test::naive_log_probs(c, w, ids);
  double s = 0;
  for (size_t i = first; i < ids.size(); ++i) s += lp[i - 1][static_cast<size_t>(ids[i])];
  return s;
}

}  // namespace

TEST_CASE("kintsugi eval scores the pool: table, --json, --samples", "[eval][cli]") {
  Fixture f;
  const auto samples = f.tmp / "s.jsonl";
  const auto r = test::run_kintsugi("eval " + f.job() + " --json --samples " + samples.string());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("acc_norm") != std::string::npos);
  const auto j = last_line_json(r.out);
  REQUIRE(j["results"].size() == 2);
  CHECK(j["results"][0]["model"] == "a");
  CHECK(j["results"][1]["model"] == "b");
  for (const auto& m : j["results"]) {
    CHECK(m["tasks"]["mc"].contains("acc"));
    CHECK(m["tasks"]["mc"].contains("acc_norm"));
    CHECK(m["tasks"]["gen"].contains("exact_match"));
    CHECK(m["tasks"]["txt"]["bits_per_byte"].get<double>() > 0);
  }
  const auto lines = read_jsonl(samples);
  REQUIRE(lines.size() == 2 * (2 + 2 + 1));
  // Model a's choice log-likelihoods against the naive reference.
  const auto& s0 = lines[0];
  CHECK(s0["model"] == "a");
  CHECK(s0["task"] == "mc");
  CHECK(s0["loglikelihoods"][0].get<double>() ==
        Approx(naive_loglik(f.config, f.wa, "x=", "ab")).margin(1e-4));
  CHECK(s0["loglikelihoods"][1].get<double>() ==
        Approx(naive_loglik(f.config, f.wa, "x=", "c")).margin(1e-4));
  CHECK(lines[1]["id"] == "two");
  // acc_norm from the per-byte log-likelihoods, by hand.
  double acc_norm = 0;
  for (int i = 0; i < 2; ++i) {
    const auto& ll = lines[static_cast<size_t>(i)]["loglikelihoods"];
    const std::vector<std::string> ch =
        i == 0 ? std::vector<std::string>{"ab", "c"} : std::vector<std::string>{"q", "rs", "t"};
    size_t best = 0;
    for (size_t k = 1; k < ch.size(); ++k)
      if (ll[k].get<double>() / static_cast<double>(ch[k].size()) >
          ll[best].get<double>() / static_cast<double>(ch[best].size()))
        best = k;
    acc_norm += best == (i == 0 ? 0u : 2u) ? 0.5 : 0.0;
  }
  CHECK(j["results"][0]["tasks"]["mc"]["acc_norm"].get<double>() == Approx(acc_norm));
  CHECK(lines[2]["task"] == "gen");
  CHECK(lines[2].contains("output"));
  CHECK(lines[4]["task"] == "txt");
  const double nll = -naive_loglik(f.config, f.wa, "", "hello world");
  CHECK(lines[4]["nll"].get<double>() == Approx(nll).margin(1e-4));
  CHECK(j["results"][0]["tasks"]["txt"]["bits_per_byte"].get<double>() ==
        Approx(nll / std::log(2.0) / 11).epsilon(1e-5));
}

TEST_CASE("kintsugi eval --weights merges the pool in memory", "[eval][cli]") {
  Fixture f;
  auto r = test::run_kintsugi("eval " + f.job() + " --weights 0,1 --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto merged = last_line_json(r.out)["results"];
  REQUIRE(merged.size() == 1);
  CHECK(merged[0]["model"] == "merge[0,1]");
  r = test::run_kintsugi("eval " + f.job() + " --checkpoint " + (f.tmp / "pool" / "b").string() +
                         " --json");
  REQUIRE(r.exit_code == 0);
  const auto b = last_line_json(r.out)["results"];
  CHECK(b[0]["model"] == "b");
  CHECK(merged[0]["tasks"] == b[0]["tasks"]);

  // A half-half merge, checked through its perplexity against the naive model
  // on the hand-merged weights.
  r = test::run_kintsugi("eval " + f.job() + " --weights 0.5,0.5 --json");
  REQUIRE(r.exit_code == 0);
  test::Weights half;
  for (const auto& [n, va] : f.wa) {
    std::vector<float> v(va.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.5f * va[i] + 0.5f * f.wb.at(n)[i];
    half[n] = v;
  }
  const double nll = -naive_loglik(f.config, half, "", "hello world");
  CHECK(last_line_json(r.out)["results"][0]["tasks"]["txt"]["bits_per_byte"].get<double>() ==
        Approx(nll / std::log(2.0) / 11).epsilon(1e-5));
  // --split test reads the other files.
  r = test::run_kintsugi("eval " + f.job() + " --split test --checkpoint " +
                         (f.tmp / "pool" / "a").string());
  CHECK(r.exit_code == 2);  // gen.test.jsonl does not exist
  CHECK(r.err.find("gen.test.jsonl: cannot open") != std::string::npos);
}

TEST_CASE("kintsugi eval --weights refuses an incompatible pool as the service does",
          "[eval][cli]") {
  Fixture f;
  // b in fp32: it loads and merges (as fp32) like the bf16 a, but the pool's
  // checkpoints must agree on dtypes.
  const TpPlan plan(f.config, 1);
  std::vector<TensorData> tensors;
  for (const auto& t : plan.tensors()) {
    const auto& v = f.wb.at(t.name);
    TensorData td;
    td.spec = {t.name, DType::F32, t.shape};
    td.bytes.resize(v.size() * sizeof(float));
    std::memcpy(td.bytes.data(), v.data(), td.bytes.size());
    tensors.push_back(std::move(td));
  }
  write_safetensors(f.tmp / "pool" / "b" / "model.safetensors", tensors);
  auto r =
      test::run_kintsugi("eval " + f.job() + " --checkpoint " + (f.tmp / "pool" / "b").string());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);  // a valid checkpoint on its own

  r = test::run_kintsugi("eval " + f.job() + " --weights 0.5,0.5");
  CHECK(r.exit_code == 2);
  CHECK(r.signal == 0);
  const auto at = r.err.find("kintsugi: error: incompatible pool: ");
  REQUIRE(at != std::string::npos);
  const std::string line = r.err.substr(at, r.err.find('\n', at) - at);
  CHECK(line.find("pool/b: tensor ") != std::string::npos);
  CHECK(line.find(": dtype F32 here, BF16 in ") != std::string::npos);
}

TEST_CASE("kintsugi eval: bad input is exit 2 with a one-line message", "[eval][cli]") {
  Fixture f;
  std::ofstream(f.tmp / "tasks" / "txt.search.jsonl") << "{\"text\": \"ok\"}\n{\"text\": 5}\n";
  auto r = test::run_kintsugi("eval " + f.job());
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("txt.search.jsonl:2: key 'text' must be a string") != std::string::npos);
  std::ofstream(f.tmp / "tasks" / "txt.search.jsonl") << "{\"text\": \"ok\"}\n";

  r = test::run_kintsugi("eval " + f.job() + " --weights 1,2,3");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--weights: 3 values for a pool of 2 checkpoints") != std::string::npos);
  r = test::run_kintsugi("eval " + f.job() + " --weights 1,x");
  CHECK(r.exit_code == 2);
  r = test::run_kintsugi("eval " + f.job() + " --split train");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--split") != std::string::npos);

  std::ofstream(f.tmp / "pool" / "a" / "generation_config.json") << R"({"eos_token_id": [2, "x"]})";
  r = test::run_kintsugi("eval " + f.job());
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("generation_config.json: eos_token_id must be a token id or a list of them") !=
        std::string::npos);
  std::ofstream(f.tmp / "pool" / "a" / "generation_config.json") << "{not json";
  r = test::run_kintsugi("eval " + f.job());
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("generation_config.json: not a valid JSON object") != std::string::npos);
  std::filesystem::remove(f.tmp / "pool" / "a" / "generation_config.json");

  std::filesystem::remove(f.tmp / "pool" / "b" / "tokenizer.json");
  r = test::run_kintsugi("eval " + f.job());
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("no tokenizer.json") != std::string::npos);

  auto cfg = byte_config();
  cfg["architectures"] = {"GPTNeoXForCausalLM"};
  std::ofstream(f.tmp / "pool" / "a" / "config.json") << cfg.dump();
  r = test::run_kintsugi("eval " + f.job());
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("GPTNeoXForCausalLM") != std::string::npos);
  CHECK(r.signal == 0);

  f.write_job("parallel: {tensor_parallel: 3}\n");
  r = test::run_kintsugi("eval " + f.job());
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("tensor_parallel 3") != std::string::npos);
}
