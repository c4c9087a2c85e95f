// A generated corpus of malformed safetensors files: each must be refused with
// its own clear one-line message naming the file (and tensor), by the library
// and through `kintsugi inspect` (exit 2, one line on stderr, no signal).
#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <optional>
#include <set>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (auto& c : s) {
    c = static_cast<char>(n & 0xff);
    n >>= 8;
  }
  return s;
}

// A file: the given header length (or the true one), header text, data bytes.
std::string file_bytes(const std::string& header, size_t data_bytes,
                       std::optional<uint64_t> claimed = {}) {
  return u64le(claimed.value_or(header.size())) + header + std::string(data_bytes, '\x01');
}

const std::string kGoodHeader =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I16","shape":[3],"data_offsets":[8,14]}})";

struct Case {
  std::string name;
  std::string bytes;
  std::string expect;  // a substring of the message
};

std::vector<Case> corpus() {
  const auto hdr = [](const std::string& a, const std::string& b) {
    return "{\"a\":" + a + ",\"b\":" + b + "}";
  };
  const std::string A = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  return {
      {"empty", "", "file is 0 bytes, too short to hold the 8-byte header length"},
      {"short", "abc", "file is 3 bytes, too short"},
      {"lying_length_long", file_bytes(kGoodHeader, 14, kGoodHeader.size() + 15),
       "runs past the end of the file"},
      {"lying_length_short", file_bytes(kGoodHeader, 14, kGoodHeader.size() - 3),
       "header is not valid JSON"},
      {"length_over_limit", file_bytes(kGoodHeader, 14, 100'000'001),
       "exceeds the limit of 100000000 bytes"},
      {"length_zero", file_bytes("", 0), "header is not valid JSON"},
      {"bad_json", file_bytes(R"({"a":{"dtype":"F32",)", 0), "header is not valid JSON"},
      {"nul_padding", file_bytes(kGoodHeader + std::string(3, '\0'), 14),
       "header is not valid JSON: NUL byte at header offset 108"},
      {"bom", file_bytes("\xef\xbb\xbf" + kGoodHeader, 14),
       "header is not a JSON object (it must start with '{')"},
      {"bad_utf8", file_bytes("{\"\xff\":" + A + "}", 8),
       "header is not valid UTF-8 (bad byte at header offset 2)"},
      {"overlong_utf8", file_bytes("{\"\xc0\xaf\":" + A + "}", 8), "header is not valid UTF-8"},
      {"surrogate_utf8", file_bytes("{\"\xed\xa0\x80\":" + A + "}", 8),
       "header is not valid UTF-8"},
      {"not_object", file_bytes("[1,2]", 0), "header is not a JSON object"},
      {"entry_not_object", file_bytes(R"({"a":5})", 0), "tensor \"a\": entry is not an object"},
      {"missing_offsets", file_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", 8),
       "tensor \"a\": entry has no \"data_offsets\""},
      {"unknown_dtype",
       file_bytes(hdr(R"({"dtype":"F4","shape":[2],"data_offsets":[0,8]})",
                      R"({"dtype":"I16","shape":[3],"data_offsets":[8,14]})"),
                  14),
       "tensor \"a\": unknown dtype \"F4\""},
      {"dtype_not_string", file_bytes(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor \"a\": dtype is not a string"},
      {"shape_not_array", file_bytes(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8),
       "tensor \"a\": shape is not an array"},
      {"negative_dim", file_bytes(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
       "tensor \"a\": shape holds -2, not a non-negative integer"},
      {"float_dim", file_bytes(R"({"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,8]}})", 8),
       "not a non-negative integer"},
      {"huge_shape",
       file_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                  8),
       "tensor \"a\": shape [4294967296, 4294967296] has more elements than fit in 64 bits"},
      {"huge_bytes",
       file_bytes(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8),
       "needs more bytes than fit in 64 bits"},
      {"size_mismatch", file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
       "tensor \"a\": data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12"},
      {"offsets_arity", file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8),
       "tensor \"a\": data_offsets is not a [begin, end] pair"},
      {"offsets_reversed",
       file_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
       "tensor \"a\": data_offsets [8, 0] end before they begin"},
      {"offsets_past_end", file_bytes(kGoodHeader, 12),
       "tensor \"b\": data_offsets [8, 14] run past the end of the data buffer (12 bytes)"},
      {"offsets_far_past_end",
       file_bytes(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551600,18446744073709551608]}})",
           8),
       "run past the end of the data buffer"},
      {"gap", file_bytes(hdr(A, R"({"dtype":"I16","shape":[3],"data_offsets":[10,16]})"), 16),
       "tensor \"b\": data begins at 10, leaving a gap of 2 bytes after tensor \"a\""},
      {"gap_at_start", file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
       "gap of 4 bytes at the buffer's start"},
      {"overlap", file_bytes(hdr(A, R"({"dtype":"I16","shape":[3],"data_offsets":[6,12]})"), 12),
       "tensor \"b\": data [6, 12] overlaps tensor \"a\" (which ends at 8)"},
      {"same_offsets", file_bytes(hdr(A, A), 8), "overlaps tensor"},
      {"trailing", file_bytes(kGoodHeader, 15), "1 trailing bytes after the last tensor"},
      {"no_tensors_trailing", file_bytes("{}", 4), "4 trailing bytes"},
      {"duplicate_name", file_bytes(R"({"a":)" + A + R"(,"a":)" + A + "}", 8),
       "tensor \"a\": duplicate tensor name in header"},
      {"duplicate_field",
       file_bytes(R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor \"a\": duplicate key \"dtype\" in its entry"},
      {"duplicate_metadata",
       file_bytes(R"({"__metadata__":{},"__metadata__":{},"a":)" + A + "}", 8),
       "header has two __metadata__ entries"},
      {"duplicate_metadata_key",
       file_bytes(R"({"__metadata__":{"k":"1","k":"2"},"a":)" + A + "}", 8),
       "__metadata__: duplicate key \"k\""},
      {"metadata_not_object", file_bytes(R"({"__metadata__":[1],"a":)" + A + "}", 8),
       "__metadata__ is not an object of strings"},
      {"metadata_value", file_bytes(R"({"__metadata__":{"k":1},"a":)" + A + "}", 8),
       "__metadata__: value of \"k\" is not a string"},
      {"newline_in_name",
       file_bytes(R"({"x\ny":{"dtype":"F4","shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor \"x\\ny\": unknown dtype"},
  };
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

}  // namespace

TEST_CASE("malformed corpus: each file refused with its own message", "[io][malformed]") {
  test::TempDir tmp;
  const auto cases = corpus();
  std::set<std::string> messages;
  for (const auto& c : cases) {
    INFO(c.name);
    const fs::path p = tmp / (c.name + ".safetensors");
    write_file(p, c.bytes);
    try {
      SafetensorsFile::open(p);
      FAIL("accepted");
    } catch (const InputError& e) {
      const std::string m = e.what();
      INFO(m);
      CHECK_THAT(m, Catch::Contains(c.expect));
      CHECK_THAT(m, Catch::StartsWith(p.string() + ": "));
      CHECK(m.find('\n') == std::string::npos);
      messages.insert(m);
    }
  }
  CHECK(messages.size() == cases.size());
  // The well-formed base file is accepted (the corpus is not refusing everything).
  write_file(tmp / "good.safetensors", file_bytes(kGoodHeader, 14));
  const auto f = SafetensorsFile::open(tmp / "good.safetensors");
  CHECK(f->tensors().size() == 2);
  // Unknown keys inside an entry are ignored, as by the reference; null metadata too.
  write_file(
      tmp / "extra.safetensors",
      file_bytes(
          R"({"__metadata__":null,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})",
          8));
  CHECK(SafetensorsFile::open(tmp / "extra.safetensors")->tensors().size() == 1);
  // Zero-sized tensors may share an offset.
  write_file(
      tmp / "zeros.safetensors",
      file_bytes(
          R"({"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"y":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]}})",
          0));
  CHECK(SafetensorsFile::open(tmp / "zeros.safetensors")->tensors().size() == 2);
  // Not a file at all.
  CHECK_THROWS_WITH(SafetensorsFile::open(tmp / "nope.safetensors"),
                    Catch::Contains("cannot open"));
  CHECK_THROWS_WITH(SafetensorsFile::open(tmp.path()), Catch::Contains("not a regular file"));
}

TEST_CASE("malformed corpus: truncation at every byte", "[io][malformed]") {
  test::TempDir tmp;
  const std::string good = file_bytes(kGoodHeader, 14);
  const fs::path p = tmp / "t.safetensors";
  for (size_t n = 0; n < good.size(); ++n) {
    INFO("truncated to " << n << " of " << good.size() << " bytes");
    write_file(p, good.substr(0, n));
    std::string expect = n < 8                        ? "too short to hold the 8-byte header length"
                         : n < 8 + kGoodHeader.size() ? "runs past the end of the file"
                                                      : "run past the end of the data buffer";
    CHECK_THROWS_WITH(SafetensorsFile::open(p), Catch::Contains(expect));
  }
  write_file(p, good);
  CHECK_NOTHROW(SafetensorsFile::open(p));
}

TEST_CASE("malformed corpus through the CLI: exit 2, one line, no signal", "[io][malformed][cli]") {
  test::TempDir tmp;
  auto cases = corpus();
  // A sample of truncations as well.
  const std::string good = file_bytes(kGoodHeader, 14);
  for (size_t n : {size_t{0}, size_t{5}, size_t{8}, size_t{40}, good.size() - 1})
    cases.push_back({"trunc" + std::to_string(n), good.substr(0, n), "kintsugi: error: "});
  // Each process start costs MPI's start-up: one run per case, with and
  // without --json alternately, several at a time.
  std::vector<std::string> args;
  for (size_t i = 0; i < cases.size(); ++i) {
    const fs::path p = tmp / (cases[i].name + ".safetensors");
    write_file(p, cases[i].bytes);
    args.push_back("inspect '" + p.string() + "'" + (i % 2 ? " --json" : ""));
  }
  const auto runs = test::run_kintsugi_each(args);
  REQUIRE(runs.size() == cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& r = runs[i];
    INFO(cases[i].name);
    INFO(r.err);
    CHECK(r.signal == 0);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_THAT(r.err, Catch::StartsWith("kintsugi: error: "));
    CHECK_THAT(r.err, Catch::Contains(cases[i].expect));
  }
}
