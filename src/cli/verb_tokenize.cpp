// `kintsugi tokenize TOKENIZER --input FILE.jsonl`: the ids (and optionally the
// decoded text) of every {"text": ...} line, one JSON line each, in order.
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/io/jsonl_texts.hpp"
#include "kintsugi/tokenizer/tokenizer.hpp"

namespace kintsugi::cli {

namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string input;
  bool add_special = false;
  bool decode = false;
  bool skip_special = false;
};

// The whole input is read first (read_jsonl_texts), so bad input stops the
// command before anything is printed.
int run_tokenize(const TokenizeOptions& o) {
  const Tokenizer tok = Tokenizer::load(o.tokenizer);
  const auto texts = read_jsonl_texts(o.input);
  std::string out;
  for (const auto& text : texts) {
    const auto ids = tok.encode(text, o.add_special);
    nlohmann::ordered_json j;
    j["ids"] = ids;
    if (o.decode) j["text"] = tok.decode(ids, o.skip_special);
    out += j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    out += '\n';
    if (out.size() > (1u << 20)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  return kExitOk;
}

VerbRegistration tokenize_verb{
    {"tokenize", "Encode (and decode) JSONL texts with an HF tokenizer.json", 15,
     [](CLI::App& sub) {
       auto o = std::make_shared<TokenizeOptions>();
       sub.add_option("tokenizer", o->tokenizer, "A model folder or a tokenizer.json")->required();
       sub.add_option("--input", o->input, "JSONL file, one {\"text\": ...} per line")->required();
       sub.add_flag("--add-special-tokens", o->add_special,
                    "Apply the post-processor's template (BOS/EOS)");
       sub.add_flag("--decode", o->decode, "Also print \"text\": the decode of the ids");
       sub.add_flag("--skip-special-tokens", o->skip_special,
                    "With --decode: leave special tokens out of the text");
       return std::function<int()>([o] { return run_tokenize(*o); });
     },
     Verb::Mpi::Never}};

}  // namespace

}  // namespace kintsugi::cli
