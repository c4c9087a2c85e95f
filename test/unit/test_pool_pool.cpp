// Pools: compatibility (every difference listed), fingerprints, XXH64.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/pool/pool.hpp"
#include "kintsugi/pool/xxhash64.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

TensorData tensor(const std::string& name, DType d, std::vector<int64_t> shape, uint8_t fill) {
  TensorData t{{name, d, shape}, {}};
  uint64_t n = dtype_size(d);
  for (auto x : shape) n *= static_cast<uint64_t>(x);
  t.bytes.resize(n);
  for (size_t i = 0; i < n; ++i) t.bytes[i] = static_cast<std::byte>((fill + i * 7) & 0xff);
  return t;
}

std::vector<TensorData> base(uint8_t fill) {
  return {tensor("embed", DType::BF16, {16, 4}, fill),
          tensor("layer.0.w", DType::F32, {4, 4}, fill), tensor("norm", DType::F32, {4}, fill)};
}

}  // namespace

TEST_CASE("xxh64 matches the published test vectors", "[pool]") {
  CHECK(xxh64("", 0) == 0xEF46DB3751D8E999ull);
  CHECK(xxh64("a", 1) == 0xD24EC4F1A98C6E5Bull);
  CHECK(xxh64("abc", 3) == 0x44BC2CF5AD770999ull);
  const std::string s = "Nobody inspects the spammish repetition";  // python-xxhash's README
  CHECK(xxh64(s.data(), s.size()) == 0xFBCEA83C8A378BF1ull);
  // Streaming in odd pieces gives the one-shot hash.
  std::string long_text;
  for (int i = 0; i < 1000; ++i) long_text += std::to_string(i * 31);
  for (size_t piece : {1, 3, 31, 32, 33, 100}) {
    Xxh64 h(42);
    for (size_t i = 0; i < long_text.size(); i += piece)
      h.update(long_text.data() + i, std::min(piece, long_text.size() - i));
    CHECK(h.digest() == xxh64(long_text.data(), long_text.size(), 42));
  }
}

TEST_CASE("pool: compatible members, every difference listed", "[pool]") {
  test::TempDir tmp;
  write_safetensors(tmp / "a.safetensors", base(1));
  write_safetensors(tmp / "b.safetensors", base(2));
  auto c = base(3);
  c[1] = tensor("layer.0.w", DType::BF16, {4, 4}, 3);  // dtype differs
  c[2] = tensor("norm", DType::F32, {5}, 3);           // shape differs
  c.push_back(tensor("extra", DType::F32, {1}, 3));    // not in a
  write_safetensors(tmp / "c.safetensors", c);
  auto d = base(4);
  d.erase(d.begin());  // embed missing
  write_safetensors(tmp / "d.safetensors", d);

  const Pool ok = Pool::open({tmp / "a.safetensors", tmp / "b.safetensors"});
  CHECK(ok.differences().empty());
  CHECK_NOTHROW(ok.check_compatible());
  CHECK(ok.tensor_names() == std::vector<std::string>{"embed", "layer.0.w", "norm"});

  const Pool bad = Pool::open(
      {tmp / "a.safetensors", tmp / "b.safetensors", tmp / "c.safetensors", tmp / "d.safetensors"});
  const auto diffs = bad.differences();
  std::vector<std::string> texts;
  for (const auto& x : diffs) texts.push_back(x.text());
  const std::string A = (tmp / "a.safetensors").string(), C = (tmp / "c.safetensors").string(),
                    D = (tmp / "d.safetensors").string();
  CHECK(texts == std::vector<std::string>{
                     C + ": tensor extra: not in " + A,
                     C + ": tensor layer.0.w: dtype BF16 here, F32 in " + A,
                     C + ": tensor norm: shape [5] here, [4] in " + A,
                     D + ": tensor embed: missing (present in " + A + ")",
                 });
  CHECK_THROWS_WITH(bad.check_compatible(), "incompatible pool: " + C + ": tensor extra: not in " +
                                                A + " (and 3 more differences)");

  // Through the CLI: every difference on stdout, exit 2, one line on stderr.
  const auto r = test::run_kintsugi("inspect " + A + " " + (tmp / "b.safetensors").string() + " " +
                                    C + " " + D);
  CHECK(r.exit_code == 2);
  CHECK(r.signal == 0);
  for (const auto& t : texts) CHECK_THAT(r.out, Catch::Contains(t));
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_THAT(r.err, Catch::Contains("incompatible pool: 4 differences"));
  const auto g = test::run_kintsugi("inspect --json " + A + " " + (tmp / "b.safetensors").string());
  CHECK(g.exit_code == 0);
  CHECK_THAT(g.out, Catch::Contains("\"compatible\":true"));
}

TEST_CASE("fingerprints: layout and content halves, independent of sharding", "[pool]") {
  test::TempDir tmp;
  const auto t = base(9);
  write_safetensors(tmp / "one.safetensors", t);
  // The same tensors as a two-shard folder, in another order.
  fs::create_directories(tmp / "sharded");
  write_safetensors(tmp / "sharded/model-00001-of-00002.safetensors", {t[2], t[0]});
  write_safetensors(tmp / "sharded/model-00002-of-00002.safetensors", {t[1]});
  std::ofstream(tmp / "sharded/model.safetensors.index.json")
      << R"({"weight_map":{"norm":"model-00001-of-00002.safetensors","embed":"model-00001-of-00002.safetensors",)"
         R"("layer.0.w":"model-00002-of-00002.safetensors"}})";
  const auto f1 = fingerprint(HfCheckpoint::open(tmp / "one.safetensors"));
  const auto f2 = fingerprint(HfCheckpoint::open(tmp / "sharded"));
  CHECK(f1.size() == 32);
  CHECK(f1.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(f1 == f2);
  CHECK(fingerprint(HfCheckpoint::open(tmp / "one.safetensors"), FingerprintMode::Full) ==
        f1);  // all small

  // One byte changed: same layout half, other content half.
  auto t2 = t;
  t2[1].bytes[5] ^= std::byte{1};
  write_safetensors(tmp / "changed.safetensors", t2);
  const auto f3 = fingerprint(HfCheckpoint::open(tmp / "changed.safetensors"));
  CHECK(f3.substr(0, 16) == f1.substr(0, 16));
  CHECK(f3.substr(16) != f1.substr(16));
  // Another dtype: the layout half changes.
  auto t3 = t;
  t3[0].spec.dtype = DType::F16;
  write_safetensors(tmp / "dtype.safetensors", t3);
  CHECK(fingerprint(HfCheckpoint::open(tmp / "dtype.safetensors")).substr(0, 16) !=
        f1.substr(0, 16));

  // A large tensor: sampled mode sees a change in a sampled window, misses one
  // between windows; full mode sees both.
  const auto big = tensor("big", DType::U8, {4 << 20}, 0);  // 4 MiB
  write_safetensors(tmp / "big.safetensors", {big});
  auto in_window = big, between = big;
  in_window.bytes[0] ^= std::byte{1};
  between.bytes[4096 + 10] ^= std::byte{1};  // after the first 4 KiB window, before the second
  write_safetensors(tmp / "big_w.safetensors", {in_window});
  write_safetensors(tmp / "big_b.safetensors", {between});
  const auto fp = [&](const char* n, FingerprintMode m) {
    return fingerprint(HfCheckpoint::open(tmp / n), m);
  };
  CHECK(fp("big_w.safetensors", FingerprintMode::Sampled) !=
        fp("big.safetensors", FingerprintMode::Sampled));
  CHECK(fp("big_b.safetensors", FingerprintMode::Sampled) ==
        fp("big.safetensors", FingerprintMode::Sampled));
  CHECK(fp("big_b.safetensors", FingerprintMode::Full) !=
        fp("big.safetensors", FingerprintMode::Full));
}
