// Write -> read round trips, single and sharded, checked byte by byte against
// the data given to the writer; the file layout checked against the format.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

std::vector<TensorData> sample_tensors(uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::tuple<std::string, DType, std::vector<int64_t>>> specs = {
      {"model.embed_tokens.weight", DType::BF16, {17, 8}},
      {"model.layers.0.self_attn.q_proj.weight", DType::F32, {8, 8}},
      {"model.layers.0.input_layernorm.weight", DType::F16, {8}},
      {"lm_head.weight", DType::F64, {5, 3}},
      {"mask", DType::BOOL, {7}},
      {"ids", DType::I64, {3}},
      {"empty", DType::F32, {0, 4}},
      {"scalar", DType::F32, {}},
      {"f8", DType::F8_E4M3, {9}},
  };
  std::vector<TensorData> out;
  for (const auto& [n, d, s] : specs) {
    TensorData t{{n, d, s}, {}};
    uint64_t bytes = dtype_size(d);
    for (auto x : s) bytes *= static_cast<uint64_t>(x);
    t.bytes.resize(bytes);
    for (auto& b : t.bytes) b = static_cast<std::byte>(rng() & 0xff);
    out.push_back(std::move(t));
  }
  return out;
}

void check_same_tensors(const HfCheckpoint& c, const std::vector<TensorData>& want) {
  REQUIRE(c.tensor_names().size() == want.size());
  for (const auto& t : want) {
    INFO(t.spec.name);
    REQUIRE(c.has(t.spec.name));
    const auto& info = c.info(t.spec.name);
    CHECK(info.dtype == t.spec.dtype);
    CHECK(info.shape == t.spec.shape);
    const auto got = c.file_of(t.spec.name).bytes(info);
    REQUIRE(got.size() == t.bytes.size());
    CHECK((got.empty() || std::memcmp(got.data(), t.bytes.data(), got.size()) == 0));
  }
}

}  // namespace

TEST_CASE("round trip: single file, bytes and names identical", "[io][roundtrip]") {
  test::TempDir tmp;
  const auto tensors = sample_tensors(1);
  const fs::path p = tmp / "model.safetensors";
  write_safetensors(p, tensors, {{"format", "pt"}, {"note", "a \"quoted\"\nline"}});
  CHECK_FALSE(fs::exists(safetensors_temp_path(p)));
  const auto c = HfCheckpoint::open(p);
  check_same_tensors(c, tensors);
  CHECK(c.metadata() == Metadata{{"format", "pt"}, {"note", "a \"quoted\"\nline"}});

  // The layout, read straight from the bytes: header length, padding, order.
  const std::string raw = test::slurp(p);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(raw[static_cast<size_t>(i)]);
  CHECK(n % 8 == 0);
  const std::string header = raw.substr(8, n);
  CHECK(header.find_last_not_of(' ') + 1 > header.size() - 8);
  const auto j = nlohmann::json::parse(header);
  CHECK(j["__metadata__"]["format"] == "pt");
  CHECK(j["model.embed_tokens.weight"]["dtype"] == "BF16");
  CHECK(j["model.embed_tokens.weight"]["data_offsets"] == nlohmann::json::array({0, 17 * 8 * 2}));
  CHECK(j["scalar"]["shape"] == nlohmann::json::array());
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.bytes.size();
  CHECK(raw.size() == 8 + n + total);
  // Data in the given order, right after the header.
  CHECK(std::memcmp(raw.data() + 8 + n, tensors[0].bytes.data(), tensors[0].bytes.size()) == 0);
}

TEST_CASE("round trip: sharded output with index", "[io][roundtrip]") {
  test::TempDir tmp;
  const auto tensors = sample_tensors(2);
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  const ShardedPlan plan = plan_sharded(specs, {{"format", "pt"}}, 300);
  // embed (272) | q_proj (256) | norm 16 + lm_head 120 + mask 7 + ids 24 + empty 0 + scalar 4 + f8
  // 9
  REQUIRE(plan.file_names.size() == 3);
  CHECK(plan.file_names[0] == "model-00001-of-00003.safetensors");
  CHECK(plan.file_names[2] == "model-00003-of-00003.safetensors");
  CHECK(plan.total_size == 272 + 256 + 16 + 120 + 7 + 24 + 0 + 4 + 9);
  {
    HfFolderWriter out(tmp / "merged", false);
    for (size_t s = 0; s < plan.file_names.size(); ++s) {
      SafetensorsWriter w(out.temp_dir() / plan.file_names[s], plan.layouts[s]);
      for (const auto& t : plan.layouts[s].tensors) {
        const auto it = std::find_if(tensors.begin(), tensors.end(),
                                     [&](const TensorData& d) { return d.spec.name == t.name; });
        w.write(t.name, it->bytes);
      }
      w.commit();
    }
    out.write_text("model.safetensors.index.json", plan.index_json());
    out.write_text("config.json", R"({"model_type": "llama", "hidden_size": 8})");
    out.write_text("tokenizer.json", "{}");
    CHECK_FALSE(fs::exists(tmp / "merged"));
    out.commit();
  }
  for (const auto& e : fs::directory_iterator(tmp.path()))
    CHECK(e.path().filename().string().rfind("merged.partial", 0) != 0);
  const auto index =
      nlohmann::json::parse(test::slurp(tmp / "merged/model.safetensors.index.json"));
  CHECK(index["metadata"]["total_size"] == plan.total_size);
  CHECK(index["weight_map"].size() == tensors.size());
  CHECK(index["weight_map"]["lm_head.weight"] == "model-00003-of-00003.safetensors");
  CHECK(index["weight_map"]["model.embed_tokens.weight"] == "model-00001-of-00003.safetensors");
  const auto c = HfCheckpoint::open(tmp / "merged");
  check_same_tensors(c, tensors);
  CHECK(c.files().size() == 3);
  CHECK(c.config()["model_type"] == "llama");
  REQUIRE(c.passthrough_files().size() == 1);
  CHECK(c.passthrough_files()[0].filename() == "tokenizer.json");
  CHECK(c.total_bytes() == plan.total_size);

  // One shard only: model.safetensors and no index.
  const ShardedPlan one = plan_sharded(specs, {}, 1u << 20);
  REQUIRE(one.file_names == std::vector<std::string>{"model.safetensors"});
  CHECK(one.index_json().empty());
}

TEST_CASE("positional writes from several writers fill one file", "[io][roundtrip]") {
  test::TempDir tmp;
  const auto tensors = sample_tensors(3);
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  const auto layout = plan_safetensors(specs, {});
  const fs::path p = tmp / "pos.safetensors";
  SafetensorsWriter w(p, layout, SafetensorsFill::Positional);
  // Every tensor split in two halves: first halves here, second halves through
  // a second handle on the temporary file, in reverse order.
  {
    SafetensorsRangeWriter other(p, layout);
    for (auto it = tensors.rbegin(); it != tensors.rend(); ++it) {
      const size_t h = it->bytes.size() / 2;
      other.pwrite(it->spec.name, h, std::span(it->bytes).subspan(h));
    }
    other.close();
  }
  for (const auto& t : tensors)
    w.pwrite(t.spec.name, 0, std::span(t.bytes).first(t.bytes.size() / 2));
  CHECK_FALSE(fs::exists(p));
  w.commit();
  check_same_tensors(HfCheckpoint::open(p), tensors);
}

TEST_CASE("a positional file written wholly by another writer commits", "[io][roundtrip]") {
  // What a merge on several ranks does with a small shard that holds only
  // another rank's ranges: the owner of the file writes none of its bytes.
  test::TempDir tmp;
  const auto tensors = sample_tensors(2);
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  const auto layout = plan_safetensors(specs, {});
  const fs::path p = tmp / "other.safetensors";
  SafetensorsWriter w(p, layout, SafetensorsFill::Positional);
  {
    SafetensorsRangeWriter other(p, layout);
    for (const auto& t : tensors) other.pwrite(t.spec.name, 0, t.bytes);
    other.close();
  }
  w.commit();
  check_same_tensors(HfCheckpoint::open(p), tensors);
  // A streaming writer still refuses positional writes, and the reverse.
  SafetensorsWriter s(tmp / "s.safetensors", layout);
  CHECK_THROWS(s.pwrite(tensors[0].spec.name, 0, tensors[0].bytes));
  SafetensorsWriter q(tmp / "q.safetensors", layout, SafetensorsFill::Positional);
  CHECK_THROWS(q.write(tensors[0].spec.name, tensors[0].bytes));
}

TEST_CASE("unfinished writers leave nothing behind", "[io][roundtrip]") {
  test::TempDir tmp;
  const auto tensors = sample_tensors(4);
  std::vector<TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  {
    SafetensorsWriter w(tmp / "a.safetensors", plan_safetensors(specs, {}));
    w.write(tensors[0].spec.name, tensors[0].bytes);
    CHECK(fs::exists(tmp / "a.safetensors.tmp"));
    CHECK_THROWS_AS(w.write(tensors[2].spec.name, tensors[2].bytes), RuntimeError);  // out of order
    CHECK_THROWS_AS(w.commit(), RuntimeError);                                       // incomplete
  }
  CHECK_FALSE(fs::exists(tmp / "a.safetensors.tmp"));
  CHECK_FALSE(fs::exists(tmp / "a.safetensors"));
  {
    HfFolderWriter out(tmp / "dir", false);
    out.write_text("config.json", "{}");
    CHECK(fs::exists(out.temp_dir() / "config.json"));
    CHECK(out.temp_dir().filename().string().rfind("dir.partial-", 0) == 0);
  }
  for (const auto& e : fs::directory_iterator(tmp.path()))
    CHECK(e.path().filename().string().rfind("dir.partial", 0) != 0);
  CHECK_FALSE(fs::exists(tmp / "dir"));
  // An existing output is refused unless overwriting, and replaced when committed.
  fs::create_directories(tmp / "dir");
  std::ofstream(tmp / "dir/old.txt") << "x";
  CHECK_THROWS_AS(HfFolderWriter(tmp / "dir", false), InputError);
  {
    HfFolderWriter out(tmp / "dir/", true);
    out.write_text("new.txt", "y");
    out.commit();
  }
  CHECK(fs::exists(tmp / "dir/new.txt"));
  CHECK_FALSE(fs::exists(tmp / "dir/old.txt"));
  CHECK_FALSE(fs::exists(tmp / "dir.old"));
  // Writer-side refusals.
  CHECK_THROWS_AS(plan_safetensors({{"x", DType::F32, {2}}, {"x", DType::F32, {2}}}, {}),
                  InputError);
  CHECK_THROWS_AS(plan_safetensors({{"__metadata__", DType::F32, {2}}}, {}), InputError);
  CHECK_THROWS_AS(plan_safetensors({{"x", DType::F32, {-1}}}, {}), InputError);
}

TEST_CASE("byte sizes", "[io]") {
  CHECK(parse_byte_size("1000") == 1000);
  CHECK(parse_byte_size("5GB") == 5'000'000'000ull);
  CHECK(parse_byte_size("500MB") == 500'000'000ull);
  CHECK(parse_byte_size("2GiB") == 2ull << 30);
  CHECK(parse_byte_size("1.5kb") == 1500);
  CHECK_THROWS_AS(parse_byte_size("5 parsecs"), InputError);
  CHECK_THROWS_AS(parse_byte_size(""), InputError);
  CHECK_THROWS_AS(parse_byte_size("GB"), InputError);
  CHECK_THROWS_AS(parse_byte_size("."), InputError);
  CHECK_THROWS_AS(parse_byte_size(".MB"), InputError);
  CHECK_THROWS_AS(parse_byte_size("1.2.3MB"), InputError);
}

namespace {
// Resident kB of the mapping that holds `p`, from /proc/self/smaps; -1 when
// no mapping holds it.
long resident_kb(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < 17) {
      inside = lo <= at && at < hi;
    } else if (inside && line.rfind("Rss:", 0) == 0) {
      return std::stol(line.substr(4));
    }
  }
  return -1;
}
}  // namespace

TEST_CASE("drop_pages unmaps the pages and keeps every view valid", "[io][roundtrip]") {
  test::TempDir tmp;
  // One file over the 8 MiB pieces the drop goes by, one under.
  std::mt19937 rng(7);
  std::vector<std::vector<TensorData>> contents;
  std::vector<std::shared_ptr<const SafetensorsFile>> files;
  for (const int64_t rows : {int64_t{2600}, int64_t{3}}) {
    TensorData t{{"w", DType::F32, {rows, 1024}}, {}};
    t.bytes.resize(static_cast<size_t>(rows) * 1024 * 4);
    for (auto& b : t.bytes) b = static_cast<std::byte>(rng() & 0xff);
    const fs::path p = tmp / fmt::format("m{}.safetensors", rows);
    contents.push_back({t});
    write_safetensors(p, contents.back(), {});
    files.push_back(SafetensorsFile::open(p));
  }
  auto check_bytes = [&] {
    for (size_t i = 0; i < files.size(); ++i) {
      const auto got = files[i]->bytes(*files[i]->find("w"));
      const auto& want = contents[i].front().bytes;
      REQUIRE(got.size() == want.size());
      CHECK(std::memcmp(got.data(), want.data(), got.size()) == 0);
    }
  };
  check_bytes();  // every page read: resident
  const void* big = files[0]->bytes(*files[0]->find("w")).data();
  REQUIRE(resident_kb(big) >= 2600 * 4);
  const std::vector<const SafetensorsFile*> both = {files[0].get(), files[1].get()};
  SafetensorsFile::drop_pages(both);
  CHECK(resident_kb(big) == 0);
  CHECK(resident_kb(files[1]->bytes(*files[1]->find("w")).data()) == 0);
  check_bytes();  // faulted in again from the page cache, the same bytes
  SafetensorsFile::drop_pages({});
}
