// The tokenizer's components against Hugging Face's own output: small
// hand-built tokenizer.json files (test/data/tokenizer/unit_fixtures.json,
// from make_unit_fixtures.py) and, for each, texts with the ids and decodes
// HF's tokenizers 0.23.2 gives (printed by tools/hf-reference/unit_expectations.js,
// not by kintsugi). Then every error case: an InputError naming the file.
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "kintsugi/common/error.hpp"
#include "kintsugi/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

namespace {

using Catch::Matchers::Contains;
using kintsugi::InputError;
using kintsugi::Tokenizer;
using nlohmann::json;

struct ComponentCase {
  const char* fixture;
  const char* text;
  std::vector<int32_t> ids, ids_special;
  const char* decoded;       // decode(ids_special, skip_special_tokens=false)
  const char* decoded_skip;  // decode(ids_special, skip_special_tokens=true)
};

// clang-format off
const std::vector<ComponentCase> kCases = {
    {"wordpiece_like_bpe", "Hello World", {168, 172}, {168, 172}, "hello</w>world</w>", "hello</w>world</w>"},
    {"wordpiece_like_bpe", "  HÉLLO, the world!  ", {165, 0, 46, 46, 60, 151, 174, 172, 155}, {165, 0, 46, 46, 60, 151, 174, 172, 155}, "he[UNK]##l##l##o</w>,</w>the</w>world</w>!</w>", "he[UNK]##l##l##o</w>,</w>the</w>world</w>!</w>"},
    {"wordpiece_like_bpe", "héllo zzz wörld", {165, 0, 46, 46, 60, 101, 102, 104, 169, 0, 70, 46, 16}, {165, 0, 46, 46, 60, 101, 102, 104, 169, 0, 70, 46, 16}, "he[UNK]##l##l##o</w>z##z##z</w>wo[UNK]##r##l##d</w>", "he[UNK]##l##l##o</w>z##z##z</w>wo[UNK]##r##l##d</w>"},
    {"wordpiece_like_bpe", "the~the", {174, 0, 174}, {174, 0, 174}, "the</w>[UNK]the</w>", "the</w>[UNK]the</w>"},
    {"wordpiece_like_bpe", "", {}, {}, "", ""},
    {"wordpiece_like_bpe", "x#y€z", {95, 0, 99, 0, 103}, {95, 0, 99, 0, 103}, "x</w>[UNK]y</w>[UNK]z</w>", "x</w>[UNK]y</w>[UNK]z</w>"},
    {"wordpiece_like_bpe_fused", "Hello World", {168, 172}, {168, 172}, "hello</w>world</w>", "hello</w>world</w>"},
    {"wordpiece_like_bpe_fused", "a€€€b hello", {1, 0, 8, 168}, {1, 0, 8, 168}, "a[UNK]##b</w>hello</w>", "a[UNK]##b</w>hello</w>"},
    {"wordpiece_like_bpe_fused", "€€ €€", {0, 0}, {0, 0}, "[UNK][UNK]", "[UNK][UNK]"},
    {"wordpiece_like_bpe_fused", "the\tworld\nHELLO", {174, 172, 168}, {174, 172, 168}, "the</w>world</w>hello</w>", "the</w>world</w>hello</w>"},
    {"sentencepiece_like", "12o.Dogw", {38, 274, 286, 301, 282}, {1, 38, 274, 286, 301, 282, 2}, "<s><0x23>o.dogw</s>", "<0x23>o.dogw"},
    {"sentencepiece_like", "1o", {259, 38, 274}, {1, 259, 38, 274, 2}, "<s> <0x23>o</s>", "<0x23>o"},
    {"sentencepiece_like", "12 dog", {38, 259, 301}, {1, 38, 259, 301, 2}, "<s><0x23> dog</s>", "<0x23> dog"},
    {"sentencepiece_like", "Hello world", {293, 298}, {1, 293, 298, 2}, "<s> hello world</s>", "hello world"},
    {"sentencepiece_like", "hello<mask>world", {293, 299, 282, 295, 271, 263}, {1, 293, 299, 282, 295, 271, 263, 2}, "<s> hello<mask>world</s>", "helloworld"},
    {"sentencepiece_like", "a <mask> b", {259, 260, 299, 261}, {1, 259, 260, 299, 261, 2}, "<s> a<mask>b</s>", "ab"},
    {"sentencepiece_like", "cat concat cat.", {300, 259, 262, 274, 273, 262, 260, 279, 259, 300, 286}, {1, 300, 259, 262, 274, 273, 262, 260, 279, 259, 300, 286, 2}, "<s>cat concat cat.</s>", "cat concat cat."},
    {"sentencepiece_like", "DOG dog Dog", {301, 259, 301, 259, 301}, {1, 301, 259, 301, 259, 301, 2}, "<s>dog dog dog</s>", "dog dog dog"},
    {"sentencepiece_like", "x<tag>  y", {259, 283, 302, 284}, {1, 259, 283, 302, 284, 2}, "<s> x<tag>y</s>", "x<tag>y"},
    {"sentencepiece_like", "hi 123 ｆｕｌｌ", {289, 268, 259, 38, 259, 265, 280, 291}, {1, 289, 268, 259, 38, 259, 265, 280, 291, 2}, "<s> hi <0x23> full</s>", "hi <0x23> full"},
    {"sentencepiece_like", "héllo 😀 ok", {289, 198, 172, 291, 274, 259, 243, 162, 155, 131, 259, 274, 270}, {1, 289, 198, 172, 291, 274, 259, 243, 162, 155, 131, 259, 274, 270, 2}, "<s> h<0xC3><0xA9>llo <0xF0><0x9F><0x98><0x80> ok</s>", "h<0xC3><0xA9>llo <0xF0><0x9F><0x98><0x80> ok"},
    {"sentencepiece_like", "<s>hello</s>", {1, 267, 264, 291, 274, 2}, {1, 1, 267, 264, 291, 274, 2, 2}, "<s><s>hello</s></s>", "hello"},
    {"sentencepiece_like", "", {}, {1, 2}, "<s></s>", ""},
    {"sentencepiece_like", " ", {259}, {1, 259, 2}, "<s> </s>", ""},
    {"sentencepiece_like", "  hello  world ", {259, 293, 259, 298, 259}, {1, 259, 293, 259, 298, 259, 2}, "<s>  hello  world </s>", " hello  world "},
    {"sentencepiece_always_nosplit", "Hello world", {259, 75, 264, 291, 274, 298}, {1, 259, 75, 264, 291, 274, 298, 2}, "<s> Hello world</s>", "Hello world"},
    {"sentencepiece_always_nosplit", "héllo", {290, 207, 132, 291, 274}, {1, 290, 207, 132, 291, 274, 2}, "<s> héllo</s>", "héllo"},
    {"sentencepiece_always_nosplit", "<s> hello", {1, 293}, {1, 1, 293, 2}, "<s><s> hello</s>", "hello"},
    {"sentencepiece_always_nosplit", "a  b", {259, 260, 259, 259, 261}, {1, 259, 260, 259, 259, 261, 2}, "<s> a  b</s>", "a  b"},
    {"sentencepiece_always_nosplit", "😀x", {259, 243, 162, 155, 131, 283}, {1, 259, 243, 162, 155, 131, 283, 2}, "<s> 😀x</s>", "😀x"},
    {"sentencepiece_first_strip", "  hello", {267, 264, 291, 274}, {1, 267, 264, 291, 274, 2}, "<s>hello</s>", "hello"},
    {"sentencepiece_first_strip", "hello", {293}, {1, 293, 2}, "<s> hello</s>", "hello"},
    {"sentencepiece_first_strip", "<s>  hello", {1, 267, 264, 291, 274}, {1, 1, 267, 264, 291, 274, 2}, "<s><s>hello</s>", "hello"},
    {"sentencepiece_first_strip", " <mask> hi", {299, 267, 268}, {1, 299, 267, 268, 2}, "<s><mask>hi</s>", "hi"},
    {"sentencepiece_first_strip", "abhello", {38, 267, 264, 291, 274}, {1, 38, 267, 264, 291, 274, 2}, "<s><0x23>hello</s>", "<0x23>hello"},
    {"sentencepiece_first_strip", "ahello", {259, 260, 267, 264, 291, 274}, {1, 259, 260, 267, 264, 291, 274, 2}, "<s> ahello</s>", "ahello"},
    {"sentencepiece_first_strip", "x ab", {259, 283, 259, 38}, {1, 259, 283, 259, 38, 2}, "<s> x <0x23></s>", "x <0x23>"},
    {"sentencepiece_never", "Hello world", {259, 75, 264, 291, 274, 298}, {1, 259, 75, 264, 291, 274, 298, 2}, "<s> <0x48>ello world</s>", " <0x48>ello world"},
    {"sentencepiece_never", "é hello", {259, 264, 207, 132, 293}, {1, 259, 264, 207, 132, 293, 2}, "<s> e<0xCC><0x81> hello</s>", " e<0xCC><0x81> hello"},
    {"sentencepiece_never", "<mask>hi", {299, 289, 268}, {1, 299, 289, 268, 2}, "<s><mask> hi</s>", " hi"},
    {"sentencepiece_never", "x <s>y", {259, 283, 259, 1, 259, 284}, {1, 259, 283, 259, 1, 259, 284, 2}, "<s> x <s> y</s>", " x  y"},
    {"split_Removed", "ab.c", {46, 2}, {46, 2}, "ab c", "ab c"},
    {"split_Removed", "a..b", {0, 1}, {0, 1}, "a b", "a b"},
    {"split_Removed", ".ab.", {46}, {46}, "ab", "ab"},
    {"split_Removed", "abc", {47}, {47}, "abc", "abc"},
    {"split_Isolated", "ab.c", {46, 37, 2}, {46, 37, 2}, "ab . c", "ab . c"},
    {"split_Isolated", "a..b", {0, 37, 37, 1}, {0, 37, 37, 1}, "a . . b", "a . . b"},
    {"split_Isolated", ".ab.", {37, 46, 37}, {37, 46, 37}, ". ab .", ". ab ."},
    {"split_MergedWithPrevious", "ab.c", {46, 37, 2}, {46, 37, 2}, "ab . c", "ab . c"},
    {"split_MergedWithPrevious", "a..b", {0, 37, 37, 1}, {0, 37, 37, 1}, "a . . b", "a . . b"},
    {"split_MergedWithPrevious", ".ab.", {37, 46, 37}, {37, 46, 37}, ". ab .", ". ab ."},
    {"split_MergedWithPrevious", "b.", {48}, {48}, "b.", "b."},
    {"split_MergedWithNext", "ab.c", {46, 37, 2}, {46, 37, 2}, "ab . c", "ab . c"},
    {"split_MergedWithNext", "a..b", {0, 37, 37, 1}, {0, 37, 37, 1}, "a . . b", "a . . b"},
    {"split_MergedWithNext", ".ab.", {37, 46, 37}, {37, 46, 37}, ". ab .", ". ab ."},
    {"split_MergedWithNext", "b.", {1, 37}, {1, 37}, "b .", "b ."},
    {"split_Contiguous", "ab.c", {46, 37, 2}, {46, 37, 2}, "ab . c", "ab . c"},
    {"split_Contiguous", "a..b", {0, 56, 1}, {0, 56, 1}, "a .. b", "a .. b"},
    {"split_Contiguous", ".ab..", {37, 46, 56}, {37, 46, 56}, ". ab ..", ". ab .."},
    {"split_Contiguous", "b...", {1, 56, 37}, {1, 56, 37}, "b .. .", "b .. ."},
    {"split_regex_invert", "ab c1 2", {46, 36, 2, 27, 36, 28}, {46, 36, 2, 27, 36, 28}, "ab   c 1   2", "ab   c 1   2"},
    {"split_regex_invert", "abc-b", {47, 41, 1}, {47, 41, 1}, "abc - b", "abc - b"},
    {"split_regex_invert", "12 3 a b", {50, 36, 29, 36, 0, 36, 1}, {50, 36, 29, 36, 0, 36, 1}, "12   3   a   b", "12   3   a   b"},
    {"split_regex_removed_invert", "abc-b", {47, 1}, {47, 1}, "abc b", "abc b"},
    {"split_regex_removed_invert", "ab c", {46, 2}, {46, 2}, "ab c", "ab c"},
    {"split_regex_removed_invert", "xxabcyy", {47}, {47}, "abc", "abc"},
    {"digits_individual", "a123b", {0, 27, 28, 29, 1}, {0, 27, 28, 29, 1}, "a 1 2 3 b", "a 1 2 3 b"},
    {"digits_individual", "12 3", {27, 28, 36, 29}, {27, 28, 36, 29}, "1 2   3", "1 2   3"},
    {"digits_individual", "c12", {2, 27, 28}, {2, 27, 28}, "c 1 2", "c 1 2"},
    {"digits_contiguous", "a123b.c", {0, 51, 1, 37, 2}, {0, 51, 1, 37, 2}, "a 123 b . c", "a 123 b . c"},
    {"digits_contiguous", "12.3", {50, 37, 29}, {50, 37, 29}, "12 . 3", "12 . 3"},
    {"digits_contiguous", "ab!c,1", {46, 39, 2, 38, 27}, {46, 39, 2, 38, 27}, "ab ! c , 1", "ab ! c , 1"},
    {"punctuation_next", "a-b", {0, 53}, {0, 53}, "a -b", "a -b"},
    {"punctuation_next", "ab.c", {46, 37, 2}, {46, 37, 2}, "ab . c", "ab . c"},
    {"punctuation_next", "a..b", {0, 37, 37, 1}, {0, 37, 37, 1}, "a . . b", "a . . b"},
    {"split_empty_string", "ab.c", {0, 1, 37, 2}, {0, 1, 37, 2}, "a b . c", "a b . c"},
    {"split_empty_string", "a b", {0, 36, 1}, {0, 36, 1}, "a   b", "a   b"},
    {"split_literal_escapes", "ab\\E.*c", {46, 37, 2}, {46, 37, 2}, "ab . c", "ab . c"},
    {"split_literal_escapes", "abc.*", {47, 37}, {47, 37}, "abc .", "abc ."},
    {"split_literal_escapes", "a\\Eb", {46}, {46}, "ab", "ab"},
    {"whitespace", "ab c1  -b", {46, 57, 41, 1}, {46, 57, 41, 1}, "ab c1 - b", "ab c1 - b"},
    {"whitespace", "a-b ab.c", {0, 41, 1, 46, 37, 2}, {0, 41, 1, 46, 37, 2}, "a - b ab . c", "a - b ab . c"},
    {"whitespace", "  a  ", {0}, {0}, "a", "a"},
    {"bytelevel_prefix", "hello world", {362, 368}, {256, 362, 368, 257}, "<bos> hello world<eos>", " hello world"},
    {"bytelevel_prefix", "Hello  world", {32, 72, 101, 360, 111, 32, 368}, {256, 32, 72, 101, 360, 111, 32, 368, 257}, "<bos> Hello  world<eos>", " Hello  world"},
    {"bytelevel_prefix", " hello", {362}, {256, 362, 257}, "<bos> hello<eos>", " hello"},
    {"bytelevel_prefix", "123 4567", {32, 365, 32, 52, 53, 54, 55}, {256, 32, 365, 32, 52, 53, 54, 55, 257}, "<bos> 123 4567<eos>", " 123 4567"},
    {"bytelevel_prefix", "hello\n\n  world  ", {362, 10, 10, 32, 368, 363}, {256, 362, 10, 10, 32, 368, 363, 257}, "<bos> hello\n\n  world  <eos>", " hello\n\n  world  "},
    {"bytelevel_prefix", "<bos>hello<eos>", {256, 362, 257}, {256, 256, 362, 257, 257}, "<bos><bos> hello<eos><eos>", " hello"},
    {"bytelevel_prefix", "wörld ☕", {32, 119, 195, 182, 114, 108, 100, 32, 226, 152, 149}, {256, 32, 119, 195, 182, 114, 108, 100, 32, 226, 152, 149, 257}, "<bos> wörld ☕<eos>", " wörld ☕"},
    {"bytelevel_noregex_merges", "hello world", {104, 101, 360, 111, 32, 367, 108, 100}, {256, 104, 101, 360, 111, 32, 367, 108, 100, 257}, "<bos>hello world<eos>", "hello world"},
    {"bytelevel_noregex_merges", " hello", {362}, {256, 362, 257}, "<bos> hello<eos>", " hello"},
    {"bytelevel_noregex_merges", "123", {365}, {256, 365, 257}, "<bos>123<eos>", "123"},
    {"bytelevel_noregex_merges", "world", {367, 108, 100}, {256, 367, 108, 100, 257}, "<bos>world<eos>", "world"},
    {"bytelevel_noregex_merges", "a  b", {97, 363, 98}, {256, 97, 363, 98, 257}, "<bos>a  b<eos>", "a  b"},
};
// clang-format on

const json& fixtures() {
  static const json j = [] {
    const auto p = kintsugi::test::source_dir() / "test/data/tokenizer/unit_fixtures.json";
    std::ifstream in(p);
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return j;
}

const Tokenizer& fixture(const std::string& name) {
  static std::map<std::string, Tokenizer> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    REQUIRE(fixtures().contains(name));
    it = cache.emplace(name, Tokenizer::from_json(fixtures()[name], name)).first;
  }
  return it->second;
}

// Writes `text` to a file and loads it: the error must name that file.
void require_input_error(const std::string& text, const std::string& what) {
  kintsugi::test::TempDir dir;
  const auto p = dir / "tokenizer.json";
  std::ofstream(p) << text;
  REQUIRE_THROWS_AS(Tokenizer::load(p), InputError);
  REQUIRE_THROWS_WITH(Tokenizer::load(p), Contains(p.string()) && Contains(what));
}

json base() {
  return fixtures()["split_Isolated"];
}

}  // namespace

TEST_CASE("tokenizer components give Hugging Face's ids and decodes", "[tokenizer]") {
  for (const auto& c : kCases) {
    INFO(c.fixture << ": " << json(c.text).dump());
    const Tokenizer& t = fixture(c.fixture);
    CHECK(t.encode(c.text, false) == c.ids);
    CHECK(t.encode(c.text, true) == c.ids_special);
    CHECK(t.decode(c.ids_special, false) == c.decoded);
    CHECK(t.decode(c.ids_special, true) == c.decoded_skip);
  }
}

TEST_CASE("tokenizer lookups, template and vocab size", "[tokenizer]") {
  const Tokenizer& t = fixture("sentencepiece_like");
  CHECK(t.token_to_id("<s>") == 1);
  CHECK(t.token_to_id("▁hello") == fixtures()["sentencepiece_like"]["model"]["vocab"]["▁hello"]);
  CHECK(t.token_to_id("<mask>") == fixtures()["sentencepiece_like"]["added_tokens"][3]["id"]);
  CHECK(!t.token_to_id("nope"));
  CHECK(t.id_to_token(2) == "</s>");
  CHECK(!t.id_to_token(1 << 30));
  CHECK(t.is_special(1));
  CHECK(!t.is_special(3));
  CHECK(t.prefix_ids() == std::vector<int32_t>{1});
  CHECK(t.suffix_ids() == std::vector<int32_t>{2});
  CHECK(t.vocab_size() == fixtures()["sentencepiece_like"]["added_tokens"][6]["id"].get<int>() + 1);
  CHECK(!t.bos_id());
}

TEST_CASE("tokenizer_config.json's add_bos_token / add_eos_token replace the template",
          "[tokenizer]") {
  const json tj = fixtures()["sentencepiece_like"];
  const Tokenizer eos_only = Tokenizer::from_json(tj, "t",
                                                  {{"bos_token", "<s>"},
                                                   {"eos_token", "</s>"},
                                                   {"add_bos_token", false},
                                                   {"add_eos_token", true}});
  CHECK(eos_only.prefix_ids().empty());
  CHECK(eos_only.suffix_ids() == std::vector<int32_t>{2});
  CHECK(eos_only.bos_id() == 1);
  CHECK(eos_only.eos_id() == 2);
  // A key that is absent leaves that side of the template as it is.
  const Tokenizer bos_obj =
      Tokenizer::from_json(tj, "t", {{"bos_token", {{"content", "<s>"}}}, {"add_bos_token", true}});
  CHECK(bos_obj.prefix_ids() == std::vector<int32_t>{1});
  CHECK(bos_obj.suffix_ids() == std::vector<int32_t>{2});
  REQUIRE_THROWS_AS(Tokenizer::from_json(tj, "t", {{"add_bos_token", true}}), InputError);
}

TEST_CASE("unsupported or malformed tokenizer.json is an InputError naming the file",
          "[tokenizer]") {
  require_input_error("{\"model\": {", "not valid JSON");
  json j = base();
  j["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
  require_input_error(j.dump(), "model 'Unigram'");
  j["model"] = {{"type", "WordPiece"}, {"vocab", json::object()}};
  require_input_error(j.dump(), "model 'WordPiece'");
  j = base();
  j["model"]["dropout"] = 0.1;
  require_input_error(j.dump(), "dropout");
  j = base();
  j["normalizer"] = {{"type", "BertNormalizer"}};
  require_input_error(j.dump(), "normalizer 'BertNormalizer'");
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Precompiled"}}}}};
  require_input_error(j.dump(), "normalizer 'Precompiled'");
  j = base();
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  require_input_error(j.dump(), "pre_tokenizer 'BertPreTokenizer'");
  j = base();
  j["decoder"] = {{"type", "WordPiece"}};
  require_input_error(j.dump(), "decoder 'WordPiece'");
  j = base();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  require_input_error(j.dump(), "post_processor 'RobertaProcessing'");
  j = base();
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(unclosed"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  require_input_error(j.dump(), "regex");
  j = base();
  j["model"]["merges"] = {"a zz"};
  require_input_error(j.dump(), "not in the vocab");
  j = base();
  j["model"]["unk_token"] = "<nope>";
  require_input_error(j.dump(), "unk_token");
  j = base();
  j.erase("model");
  require_input_error(j.dump(), "missing key 'model'");
  require_input_error("[1, 2]", "not a tokenizer.json");
  REQUIRE_THROWS_AS(Tokenizer::load("/nonexistent/tokenizer.json"), InputError);
  kintsugi::test::TempDir empty;
  REQUIRE_THROWS_AS(Tokenizer::load(empty.path()), InputError);
  REQUIRE_THROWS_WITH(Tokenizer::load(empty.path()), Contains("no tokenizer.json"));
}

TEST_CASE("dropout 0 is no dropout, as in HF", "[tokenizer]") {
  json j = base();
  j["model"]["dropout"] = 0.0;
  const Tokenizer t = Tokenizer::from_json(j, "t");
  CHECK(t.encode("ab.c", false) == fixture("split_Isolated").encode("ab.c", false));
}

TEST_CASE("invalid UTF-8 to encode is an InputError", "[tokenizer]") {
  REQUIRE_THROWS_AS(fixture("split_Isolated").encode("a\xff", false), InputError);
}
