// `kintsugi bench tokenize`: single-thread encoding speed (tokens/s) of
// kintsugi's tokenizer and of Hugging Face's Rust one (its Node binding,
// tools/hf-reference/bench.js, run in the same invocation on the same corpus),
// after checking both give the same ids; the ratio is kintsugi / HF.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/io/jsonl_texts.hpp"
#include "kintsugi/tokenizer/tokenizer.hpp"

namespace kintsugi::cli {
namespace {
namespace fs = std::filesystem;

struct TokenizeBenchArgs {
  std::string tokenizer;
  std::string corpus = "test/data/tokenizer/corpus.jsonl";
  std::string hf_script = "tools/hf-reference/bench.js";
  int repeat = 5;
  bool json = false;
};

struct Run {
  double seconds = 0;
  size_t tokens = 0;
  std::vector<std::vector<int32_t>> ids;
};

// Best of `repeat` passes after a warm-up pass, as bench.js times HF.
Run time_kintsugi(const Tokenizer& tok, const std::vector<std::string>& texts, int repeat) {
  Run r;
  for (const auto& t : texts) r.ids.push_back(tok.encode(t, false));
  r.seconds = 1e300;
  for (int k = 0; k < repeat; ++k) {
    size_t n = 0;
    const double t0 = steady_seconds();
    for (const auto& t : texts) n += tok.encode(t, false).size();
    r.seconds = std::min(r.seconds, steady_seconds() - t0);
    r.tokens = n;
  }
  return r;
}

Run time_hf(const TokenizeBenchArgs& a, const std::string& tokenizer_json) {
  if (!fs::exists(a.hf_script))
    throw_input(
        "{}: not found (run from the repository root, or pass --hf-script; "
        "scripts/install-deps.sh installs its packages)",
        a.hf_script);
  const std::string cmd = "TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 node " +
                          shell_quote(a.hf_script) + " " + shell_quote(tokenizer_json) + " " +
                          shell_quote(a.corpus) + " " + std::to_string(a.repeat);
  const auto j = nlohmann::json::parse(peer_output(cmd, a.hf_script));
  Run r;
  r.seconds = j.at("seconds").get<double>();
  r.tokens = j.at("tokens").get<size_t>();
  r.ids = j.at("ids").get<std::vector<std::vector<int32_t>>>();
  return r;
}

void verify(const Run& ks, const Run& hf) {
  if (ks.ids.size() != hf.ids.size())
    throw_runtime("bench tokenize: {} texts from kintsugi, {} from HF", ks.ids.size(),
                  hf.ids.size());
  for (size_t k = 0; k < ks.ids.size(); ++k)
    if (ks.ids[k] != hf.ids[k])
      throw_runtime("bench tokenize: text {} of the corpus: kintsugi's ids differ from HF's",
                    k + 1);
}

int run_tokenize_bench(const TokenizeBenchArgs& a) {
  const Tokenizer tok = Tokenizer::load(a.tokenizer);
  const std::string tj = fs::is_directory(a.tokenizer)
                             ? (fs::path(a.tokenizer) / "tokenizer.json").string()
                             : a.tokenizer;
  const auto texts = read_jsonl_texts(a.corpus);
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();
  const Run ks = time_kintsugi(tok, texts, a.repeat);
  const Run hf = time_hf(a, tj);
  verify(ks, hf);
  const double ks_rate = static_cast<double>(ks.tokens) / ks.seconds;
  const double hf_rate = static_cast<double>(hf.tokens) / hf.seconds;
  std::printf("bench tokenize: %s, %zu texts, %zu bytes, %zu tokens (ids identical to HF)\n",
              tj.c_str(), texts.size(), bytes, ks.tokens);
  std::printf("  kintsugi        %12.0f tokens/s  (%.2f MB/s)\n", ks_rate,
              static_cast<double>(bytes) / ks.seconds / 1e6);
  std::printf("  HF tokenizers   %12.0f tokens/s  (%.2f MB/s)\n", hf_rate,
              static_cast<double>(bytes) / hf.seconds / 1e6);
  std::printf("  ratio kintsugi / HF: %.2f\n", ks_rate / hf_rate);
  if (a.json) {
    nlohmann::ordered_json j;
    j["tokenizer"] = tj;
    j["texts"] = texts.size();
    j["bytes"] = bytes;
    j["tokens"] = ks.tokens;
    j["kintsugi_tokens_per_s"] = ks_rate;
    j["hf_tokens_per_s"] = hf_rate;
    j["ratio"] = ks_rate / hf_rate;
    std::printf("%s\n", j.dump().c_str());
  }
  return kExitOk;
}

BenchRegistration tokenize_bench{
    {"tokenize", "Single-thread encoding tokens/s against Hugging Face tokenizers (Node binding)",
     [](CLI::App& sub) {
       auto a = std::make_shared<TokenizeBenchArgs>();
       sub.add_option("--tokenizer", a->tokenizer, "A model folder or a tokenizer.json")
           ->required();
       sub.add_option("--corpus", a->corpus, "JSONL corpus, one {\"text\": ...} per line")
           ->default_val(a->corpus);
       sub.add_option("--hf-script", a->hf_script, "The HF timing script (node)")
           ->default_val(a->hf_script);
       sub.add_option("--repeat", a->repeat, "Timed passes (best is kept)")->default_val(5);
       sub.add_flag("--json", a->json, "Print a JSON object as the last line");
       return std::function<int()>([a] { return run_tokenize_bench(*a); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
