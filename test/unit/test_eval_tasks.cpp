// Tokenizer, task files and metrics on hand-made examples.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/eval/metrics.hpp"
#include "kintsugi/eval/task.hpp"
#include "kintsugi/tokenizer/tokenizer.hpp"
#include "test_eval_naive.hpp"
#include "test_support.hpp"

using namespace kintsugi;

namespace {}  // namespace

TEST_CASE("the demo's byte-level tokenizer through Tokenizer", "[eval][tokenizer]") {
  test::TempDir tmp;
  const auto path = tmp / "tokenizer.json";
  test::write_file(path, test::byte_level_tokenizer_json().dump());
  const Tokenizer t = Tokenizer::load(path);
  CHECK(t.vocab_size() == 258);
  CHECK(t.token_to_id("<bos>") == 256);
  CHECK(t.token_to_id("<eos>") == 257);
  CHECK(t.prefix_ids() == std::vector<int32_t>{256});
  CHECK(t.suffix_ids().empty());
  const std::string text = "Hi \xC3\xA9\n\x01";
  CHECK(t.encode(text, false) == std::vector<int32_t>{72, 105, 32, 0xC3, 0xA9, 10, 1});
  CHECK(t.encode(text, true) == std::vector<int32_t>{256, 72, 105, 32, 0xC3, 0xA9, 10, 1});
  const std::vector<int32_t> ids{256, 72, 105, 257};
  CHECK(t.decode(ids, true) == "Hi");
  CHECK(t.token_to_id("\xC4\xA0") == 32);  // 'Ġ' is byte 0x20 in GPT-2's table
  CHECK(t.token_to_id("A") == 65);
  test::write_file(path, "{not json");
  REQUIRE_THROWS_AS(Tokenizer::load(path), InputError);
}

TEST_CASE("task JSONL files: kinds, limit, errors with file and line", "[eval][tasks]") {
  test::TempDir tmp;
  const auto f = tmp / "t.jsonl";
  test::write_file(f,
                   "{\"context\": \"1+1=\", \"target\": \"2\", \"id\": \"7\"}\n"
                   "{\"context\": \"2+2=\", \"target\": \"4\"}\n"
                   "{\"context\": \"3+3=\", \"target\": \"6\"}\n");
  auto ex = load_examples(f, TaskKind::Generate, 0);
  REQUIRE(ex.size() == 3);
  CHECK(ex[0].id == "7");
  CHECK(ex[1].line == 2);
  CHECK(ex[2].target == "6");
  CHECK(load_examples(f, TaskKind::Generate, 2).size() == 2);

  test::write_file(f, "{\"context\": \"Q\", \"choices\": [\" a\", \" b\"], \"label\": 1}\n");
  ex = load_examples(f, TaskKind::Choice, 0);
  CHECK(ex[0].choices.size() == 2);
  CHECK(ex[0].label == 1);
  test::write_file(f, "{\"text\": \"hello\"}\n");
  CHECK(load_examples(f, TaskKind::Perplexity, 0)[0].text == "hello");

  auto bad = [&](const std::string& body, TaskKind kind, const std::string& what) {
    test::write_file(f, body);
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
  // lm-eval divides by len(choice), in characters: "\xC3\xA9" is 1 character (2
  // bytes), -3 per character; "ab" -2.5 per character (by bytes: -1.5 and -2.5).
  const std::vector<double> ll2{-3.0, -5.0};
  const std::vector<std::string> choices2{"\xC3\xA9", "ab"};
  CHECK(score_choice(ll2, choices2, 1).pred_norm == 1);
  CHECK(count_chars("\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80"
                    "a") == 4);
}

TEST_CASE("word counts and rstrip as Python's re.split(r'\\s+') and str.rstrip()",
          "[eval][metrics]") {
  // Expected values printed by CPython 3 (len(re.split(r"\s+", s)), s.rstrip()).
  CHECK(count_words("a b") == 2);
  CHECK(count_words(" a  b\n") == 4);
  CHECK(count_words("x\xE3\x80\x80y") == 2);  // U+3000 ideographic space
  CHECK(count_words("x\x1Cy") == 2);          // \x1c is whitespace to Python
  CHECK(count_words("") == 1);
  CHECK(count_words("a\xE2\x80\x8B"
                    "b") == 1);  // U+200B zero-width space is not
  CHECK(count_words("one\xC2\xA0two\xE2\x80\xA8three\t\tfour") == 4);
  CHECK(count_words("\xC2\x85") == 2);
  CHECK(rstrip_python("ab \xE3\x80\x80\n") == "ab");
  CHECK(rstrip_python("ab\xE2\x80\x8B") == "ab\xE2\x80\x8B");
}

TEST_CASE("perplexity: bits per byte by hand", "[eval][metrics]") {
  // A uniform guess over 256 byte values costs exactly 8 bits per byte.
  CHECK(bits_per_byte(10 * std::log(256.0), 10) == Approx(8.0).epsilon(1e-12));
  CHECK(bits_per_byte(std::log(2.0), 1) == Approx(1.0).epsilon(1e-12));
}
