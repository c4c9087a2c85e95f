// Tokenizer, task files and metrics on hand-made examples.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/eval/metrics.hpp"
#include "kintsugi/eval/task.hpp"
#include "kintsugi/tokenizer/byte_tokenizer.hpp"
#include "test_eval_naive.hpp"
#include "test_support.hpp"

using namespace kintsugi;

namespace {

void write(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("byte-level tokenizer from tokenizer.json", "[eval][tokenizer]") {
  test::TempDir tmp;
  const auto path = tmp / "tokenizer.json";
  write(path, test::byte_level_tokenizer_json().dump());
  const ByteTokenizer t = ByteTokenizer::load(path);
  CHECK(t.vocab_size() == 258);
  CHECK(t.special_id("<bos>") == 256);
  CHECK(t.special_id("<eos>") == 257);
  const std::string text = "Hi \xC3\xA9\n\x01";
  CHECK(t.encode(text) == std::vector<int32_t>{72, 105, 32, 0xC3, 0xA9, 10, 1});
  const std::vector<int32_t> ids{256, 72, 105, 257};
  CHECK(t.decode(ids) == "Hi");
  CHECK(byte_to_unicode()[' '] == "\xC4\xA0");  // 'Ġ'
  CHECK(byte_to_unicode()['A'] == "A");

  auto rejects = [&](nlohmann::json j, const std::string& what) {
    write(path, j.dump());
    REQUIRE_THROWS_AS(ByteTokenizer::load(path), InputError);
    REQUIRE_THROWS_WITH(ByteTokenizer::load(path),
                        Catch::Contains(path.string()) && Catch::Contains(what));
  };
  auto j = test::byte_level_tokenizer_json();
  j["model"]["merges"] = {"a b"};
  rejects(j, "merges");
  j = test::byte_level_tokenizer_json();
  j["model"]["type"] = "Unigram";
  rejects(j, "Unigram");
  j = test::byte_level_tokenizer_json();
  j["model"]["vocab"]["A"] = 66;
  rejects(j, "byte 65");
  j = test::byte_level_tokenizer_json();
  j["model"]["vocab"].erase("A");
  rejects(j, "255 of the 256");
  j = test::byte_level_tokenizer_json();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  rejects(j, "add_prefix_space");
  j = test::byte_level_tokenizer_json();
  j["normalizer"] = {{"type", "NFC"}};
  rejects(j, "NFC");
  write(path, "{not json");
  REQUIRE_THROWS_WITH(ByteTokenizer::load(path), Catch::Contains("not valid JSON"));
}

TEST_CASE("task JSONL files: kinds, limit, errors with file and line", "[eval][tasks]") {
  test::TempDir tmp;
  const auto f = tmp / "t.jsonl";
  write(f,
        "{\"context\": \"1+1=\", \"target\": \"2\", \"id\": \"7\"}\n"
        "{\"context\": \"2+2=\", \"target\": \"4\"}\n"
        "{\"context\": \"3+3=\", \"target\": \"6\"}\n");
  auto ex = load_examples(f, TaskKind::Generate, 0);
  REQUIRE(ex.size() == 3);
  CHECK(ex[0].id == "7");
  CHECK(ex[1].line == 2);
  CHECK(ex[2].target == "6");
  CHECK(load_examples(f, TaskKind::Generate, 2).size() == 2);

  write(f, "{\"context\": \"Q\", \"choices\": [\" a\", \" b\"], \"label\": 1}\n");
  ex = load_examples(f, TaskKind::Choice, 0);
  CHECK(ex[0].choices.size() == 2);
  CHECK(ex[0].label == 1);
  write(f, "{\"text\": \"hello\"}\n");
  CHECK(load_examples(f, TaskKind::Perplexity, 0)[0].text == "hello");

  auto bad = [&](const std::string& body, TaskKind kind, const std::string& what) {
    write(f, body);
    REQUIRE_THROWS_AS(load_examples(f, kind, 0), InputError);
    REQUIRE_THROWS_WITH(load_examples(f, kind, 0), Catch::Contains(what));
  };
  const std::string ok = "{\"text\": \"x\"}\n";
  bad(ok + "{\"text\": 3}\n", TaskKind::Perplexity, f.string() + ":2: key 'text' must be a string");
  bad(ok + ok + "{broken\n", TaskKind::Perplexity, f.string() + ":3: not valid JSON");
  bad("[1,2]\n", TaskKind::Perplexity, ":1: a line must be a JSON object");
  bad("{\"context\": \"c\"}\n", TaskKind::Generate, ":1: missing key 'target'");
  bad("{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"label\": 2}\n", TaskKind::Choice,
      ":1: label 2 is not an index");
  bad("{\"context\": \"c\", \"choices\": [\"a\"], \"label\": 0}\n", TaskKind::Choice, "at least 2");
  bad("{\"context\": \"c\", \"choices\": [\"a\", \"\"], \"label\": 0}\n", TaskKind::Choice,
      "non-empty");
  bad("", TaskKind::Perplexity, "no examples");
  bad(ok + "\n" + ok, TaskKind::Perplexity, ":2: blank line");
  bad("{\"text\": \"x\", \"extra\": 1}\n", TaskKind::Perplexity,
      ":1: unknown key 'extra' for a perplexity task");
  bad("{\"text\": \"x\", \"id\": 1}\n", TaskKind::Perplexity, ":1: key 'id' must be a string");
  REQUIRE_THROWS_WITH(load_examples(tmp / "missing.jsonl", TaskKind::Choice, 0),
                      Catch::Contains("missing.jsonl: cannot open"));
}

TEST_CASE("generate: stop strings, stripping, regex extraction, case", "[eval][metrics]") {
  CHECK(cut_at_stop("42\nQ: next", {"\n"}) == "42");
  CHECK(cut_at_stop("a.b;c", {";", "."}) == "a");
  CHECK(cut_at_stop("abc", {}) == "abc");
  CHECK(has_stop("ab\n", {"\n"}));
  CHECK_FALSE(has_stop("ab", {"\n", ""}));
  CHECK(strip("  x y \t\n") == "x y");
  CHECK(exact_match("  42 ", "42", std::nullopt, false));
  CHECK_FALSE(exact_match("42.", "42", std::nullopt, false));
  const auto re = compile_task_regex("answer is (-?[0-9]+)", "t");
  CHECK(exact_match("so the answer is -7 apples", "-7", re, false));
  CHECK(extract_answer("no number", re, false).empty());
  const auto whole = compile_task_regex("[0-9]+", "t");
  CHECK(extract_answer("x 12 y 3", whole, false) == "12");
  CHECK(exact_match("Paris", " paris", std::nullopt, true));
  CHECK_FALSE(exact_match("Paris", "paris", std::nullopt, false));
  REQUIRE_THROWS_WITH(compile_task_regex("(", "arith"), Catch::Contains("task arith: regex '('"));
}

TEST_CASE("choice: acc and acc_norm by hand", "[eval][metrics]") {
  // Log-likelihoods -4 (1 byte) and -6 (3 bytes): acc picks 0, acc_norm picks 1 (-2 per byte).
  const std::vector<double> ll{-4.0, -6.0};
  const std::vector<std::string> choices{"a", "bcd"};
  auto s = score_choice(ll, choices, 1);
  CHECK(s.pred == 0);
  CHECK(s.pred_norm == 1);
  CHECK_FALSE(s.acc);
  CHECK(s.acc_norm);
  // Ties go to the first choice.
  const std::vector<double> tie{-1.0, -1.0};
  CHECK(argmax_index(tie) == 0);
}

TEST_CASE("perplexity: bits per byte by hand", "[eval][metrics]") {
  // A uniform guess over 256 byte values costs exactly 8 bits per byte.
  CHECK(bits_per_byte(10 * std::log(256.0), 10) == Approx(8.0).epsilon(1e-12));
  CHECK(bits_per_byte(std::log(2.0), 1) == Approx(1.0).epsilon(1e-12));
}
