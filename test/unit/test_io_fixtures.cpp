// Real safetensors files written by other implementations
// (test/data/fixtures/safetensors, see its README): read, listed, values checked.
// They are part of the repository: a missing folder fails, it never skips.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <map>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

fs::path st_fixtures() {
  const fs::path dir = test::fixtures_dir() / "safetensors";
  INFO("fixtures: " << dir.string());
  REQUIRE(fs::is_directory(dir));
  return dir;
}

// The 27 names of the numpy file: <dtype>_<shape>.
std::map<std::string, std::pair<std::string, std::vector<int64_t>>> numpy_names() {
  const std::vector<std::pair<std::string, std::string>> dtypes = {
      {"float16", "F16"}, {"float32", "F32"}, {"float64", "F64"}, {"bool", "BOOL"}, {"uint8", "U8"},
      {"int8", "I8"},     {"int16", "I16"},   {"int32", "I32"},   {"int64", "I64"}};
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"3", {3}}, {"35", {3, 5}}, {"357", {3, 5, 7}}};
  std::map<std::string, std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& [dn, ds] : dtypes)
    for (const auto& [sn, sv] : shapes) out[dn + "_" + sn] = {ds, sv};
  return out;
}

std::map<std::string, std::pair<std::string, std::vector<int64_t>>> torch_names() {
  auto out = numpy_names();
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"3", {3}}, {"35", {3, 5}}, {"357", {3, 5, 7}}};
  for (const auto& [dn, ds] : std::vector<std::pair<std::string, std::string>>{
           {"bfloat16", "BF16"}, {"float8_e4m3fn", "F8_E4M3"}, {"float8_e5m2", "F8_E5M2"}})
    for (const auto& [sn, sv] : shapes) out[dn + "_" + sn] = {ds, sv};
  return out;
}

template <typename T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Element i of a tensor as a double, decoded by hand from its bytes.
double element(const SafetensorsFile& f, const TensorInfo& t, uint64_t i) {
  const auto b = f.bytes(t).data() + i * dtype_size(t.dtype);
  switch (t.dtype) {
    case DType::BOOL:
      return load<uint8_t>(b);
    case DType::U8:
      return load<uint8_t>(b);
    case DType::I8:
      return load<int8_t>(b);
    case DType::I16:
      return load<int16_t>(b);
    case DType::I32:
      return load<int32_t>(b);
    case DType::I64:
      return static_cast<double>(load<int64_t>(b));
    case DType::F64:
      return load<double>(b);
    default: {
      float x;
      f.read_f32(t, i, 1, &x);
      return static_cast<double>(x);
    }
  }
}

void check_listing(
    const SafetensorsFile& f,
    const std::map<std::string, std::pair<std::string, std::vector<int64_t>>>& want) {
  REQUIRE(f.tensors().size() == want.size());
  for (const auto& [name, ds] : want) {
    INFO(name);
    const TensorInfo* t = f.find(name);
    REQUIRE(t);
    CHECK(dtype_name(t->dtype) == ds.first);
    CHECK(t->shape == ds.second);
  }
}

}  // namespace

TEST_CASE("fixture: numpy writer, values 0,1,2,...", "[io][fixtures]") {
  const fs::path dir = st_fixtures();
  const auto f =
      SafetensorsFile::open(dir / "fluxml-safetensors-jl/non_sharded/model.numpy.safetensors");
  check_listing(*f, numpy_names());
  CHECK(f->metadata().empty());
  for (const auto& t : f->tensors()) {
    INFO(t.name);
    for (uint64_t i = 0; i < t.numel(); ++i) {
      const double want = t.dtype == DType::BOOL ? static_cast<double>(i % 2 == 1)
                          : t.dtype == DType::I8 ? static_cast<double>(static_cast<int8_t>(i))
                                                 : static_cast<double>(i);
      REQUIRE(element(*f, t, i) == want);
    }
  }
}

TEST_CASE("fixture: torch writer, all dtypes incl. BF16 and F8", "[io][fixtures]") {
  const fs::path dir = st_fixtures();
  const auto f = SafetensorsFile::open(dir / "fluxml-safetensors-jl/non_sharded/model.safetensors");
  const auto g = SafetensorsFile::open(
      dir / "fluxml-safetensors-jl/non_sharded/model.with_metadata.safetensors");
  check_listing(*f, torch_names());
  check_listing(*g, torch_names());
  CHECK(f->metadata().empty());
  CHECK(g->metadata() == Metadata{{"test", "metadata"}, {"version", "2.2"}});
  // The two files hold the same tensors.
  for (const auto& t : f->tensors()) {
    const auto a = f->bytes(t);
    const auto b = g->bytes(*g->find(t.name));
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size()) == 0);
  }
  // Values decoded by hand from the file's bytes.
  const auto* f32 = f->find("float32_35");
  float x;
  f->read_f32(*f32, 0, 1, &x);
  CHECK(x == -0.6606164574623108f);  // bytes 29 1e 29 bf
  const auto* i64 = f->find("int64_3");
  CHECK(element(*f, *i64, 0) == 64);
  CHECK(element(*f, *i64, 1) == 64);
  CHECK(element(*f, *i64, 2) == 30);
  float bf[3];
  f->read_f32(*f->find("bfloat16_3"), 0, 3, bf);
  CHECK(bf[0] == -0.82421875f);  // 0xbf53
  float e4[3];
  f->read_f32(*f->find("float8_e4m3fn_3"), 0, 3, e4);  // ae a9 b8
  CHECK(e4[0] == -0.4375f);
  CHECK(e4[1] == -0.28125f);
  CHECK(e4[2] == -1.0f);
  // Integers cannot be read as F32.
  CHECK_THROWS_AS(f->read_f32(*i64, 0, 1, &x), InputError);
}

TEST_CASE("fixture: sharded folder read whole", "[io][fixtures]") {
  const fs::path dir = st_fixtures();
  const auto c = HfCheckpoint::open(dir / "fluxml-safetensors-jl/sharded");
  CHECK(c.name() == "sharded");
  CHECK(c.files().size() == 6);
  for (size_t k = 0; k < 6; ++k)
    CHECK(c.files()[k]->path().filename() ==
          fmt::format("model-{:05d}-of-00006.safetensors", k + 1));
  const auto want = torch_names();
  REQUIRE(c.tensor_names().size() == want.size());
  size_t i = 0;
  for (const auto& [name, ds] : want) {  // std::map: sorted by name, as tensor_names()
    INFO(name);
    CHECK(c.tensor_names()[i++] == name);
    CHECK(dtype_name(c.info(name).dtype) == ds.first);
    CHECK(c.info(name).shape == ds.second);
  }
  CHECK(c.total_bytes() == 4305);  // the index's metadata.total_size
  CHECK(c.metadata() == Metadata{{"format", "pt"}});
  CHECK(c.file_of("float32_357").path().filename() == "model-00002-of-00006.safetensors");
  CHECK(c.file_of("bfloat16_357").path().filename() == "model-00006-of-00006.safetensors");
  float x[2];
  c.file_of("float32_357").read_f32(c.info("float32_357"), 0, 2, x);
  CHECK(x[0] == 1.1634349822998047f);
  CHECK(x[1] == -0.6625092625617981f);
  CHECK(c.config().is_null());
  CHECK_FALSE(c.has("nope"));
  CHECK_THROWS_AS(c.info("nope"), InputError);
}

TEST_CASE("fixture: unaligned data and F64 files from other readers' test suites",
          "[io][fixtures]") {
  const fs::path dir = st_fixtures();
  const auto s = SafetensorsFile::open(dir / "swift-safetensors/data.safetensors");
  REQUIRE(s->tensors().size() == 1);
  CHECK(s->data_offset() == 68);  // 8 + 60: not 8-byte aligned
  CHECK(s->tensors()[0].name == "test");
  CHECK(s->tensors()[0].shape == std::vector<int64_t>{2, 2});
  for (uint64_t i = 0; i < 4; ++i) CHECK(element(*s, s->tensors()[0], i) == 0);

  const auto c = SafetensorsFile::open(dir / "safetensors-cpp/model.safetensors");
  REQUIRE(c->tensors().size() == 2);
  const auto* w1 = c->find("weight1");
  const auto* w2 = c->find("weight2");
  REQUIRE(w1);
  REQUIRE(w2);
  CHECK(w1->shape == std::vector<int64_t>{8, 8});
  CHECK(w2->shape == std::vector<int64_t>{16, 16});
  CHECK(element(*c, *w1, 0) == 0.08001627472781947);
  CHECK(element(*c, *w1, 7) == 0.142593319910149);
  CHECK(element(*c, *w2, 0) == 0.16715496979848254);
}

TEST_CASE("fixture: the abuse file is refused", "[io][fixtures]") {
  const fs::path dir = st_fixtures();
  const fs::path p = dir / "safetensors-cpp/abuse_attempt_1.safetensors";
  CHECK_THROWS_WITH(
      SafetensorsFile::open(p),
      Catch::Contains("abuse_attempt_1.safetensors: header length 1000 runs past the end"));
  const auto r = test::run_kintsugi("inspect " + p.string());
  CHECK(r.exit_code == 2);
  CHECK(r.signal == 0);
  CHECK(r.out.empty());
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_THAT(r.err, Catch::Contains("header length 1000 runs past the end"));
}
