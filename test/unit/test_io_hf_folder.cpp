// HF model folders: the errors a broken folder must give.
#include <catch2/catch.hpp>
#include <fstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

TensorData tensor(const std::string& name, std::vector<int64_t> shape) {
  TensorData t{{name, DType::F32, shape}, {}};
  uint64_t n = 4;
  for (auto d : shape) n *= static_cast<uint64_t>(d);
  t.bytes.assign(n, std::byte{7});
  return t;
}

void text(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

// A two-shard folder: a, b in shard 1; c in shard 2.
fs::path make_folder(const fs::path& dir) {
  fs::create_directories(dir);
  write_safetensors(dir / "model-00001-of-00002.safetensors", {tensor("a", {2}), tensor("b", {3})});
  write_safetensors(dir / "model-00002-of-00002.safetensors", {tensor("c", {4})});
  text(dir / "model.safetensors.index.json",
       R"({"metadata":{"total_size":36},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
       R"("b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  text(dir / "config.json", R"({"model_type":"llama","num_hidden_layers":1})");
  text(dir / "tokenizer.json", "{}");
  text(dir / "tokenizer_config.json", "{}");
  text(dir / "special_tokens_map.json", "{}");
  text(dir / "notes.txt", "not carried");
  return dir;
}

void expect_error(const fs::path& p, const std::string& what) {
  INFO(p.string());
  CHECK_THROWS_WITH(HfCheckpoint::open(p), Catch::Contains(what));
  const auto r = test::run_kintsugi("inspect '" + p.string() + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.signal == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_THAT(r.err, Catch::Contains(what));
}

}  // namespace

TEST_CASE("HF folder: a good sharded folder", "[io][hf]") {
  test::TempDir tmp;
  const auto dir = make_folder(tmp / "ck");
  const auto c = HfCheckpoint::open(dir.string() + "/");
  CHECK(c.name() == "ck");
  CHECK(c.tensor_names() == std::vector<std::string>{"a", "b", "c"});
  CHECK(c.total_bytes() == 36);
  CHECK(c.config()["num_hidden_layers"] == 1);
  std::vector<std::string> pass;
  for (const auto& p : c.passthrough_files()) pass.push_back(p.filename().string());
  CHECK(pass == std::vector<std::string>{"special_tokens_map.json", "tokenizer.json",
                                         "tokenizer_config.json"});
  // A folder with model.safetensors only.
  fs::create_directories(tmp / "single");
  write_safetensors(tmp / "single/model.safetensors", {tensor("x", {1})});
  const auto s = HfCheckpoint::open(tmp / "single");
  CHECK(s.tensor_names() == std::vector<std::string>{"x"});
  CHECK(s.config().is_null());
}

TEST_CASE("HF folder: errors", "[io][hf]") {
  test::TempDir tmp;
  {
    const auto d = make_folder(tmp / "missing_shard");
    fs::remove(d / "model-00002-of-00002.safetensors");
    expect_error(d,
                 "shard model-00002-of-00002.safetensors named by model.safetensors.index.json "
                 "(tensor c) is missing");
  }
  {
    const auto d = make_folder(tmp / "missing_tensor");
    write_safetensors(d / "model-00002-of-00002.safetensors", {tensor("d", {4})});
    expect_error(d,
                 "tensor c: model.safetensors.index.json places it in "
                 "model-00002-of-00002.safetensors, which does not hold it");
  }
  {
    const auto d = make_folder(tmp / "bad_index");
    text(d / "model.safetensors.index.json", "{\"weight_map\": {");
    expect_error(d, "model.safetensors.index.json: not valid JSON");
  }
  {
    const auto d = make_folder(tmp / "no_weight_map");
    text(d / "model.safetensors.index.json", "{\"metadata\": {}}");
    expect_error(d, "model.safetensors.index.json: no \"weight_map\" object");
  }
  {
    const auto d = make_folder(tmp / "escape");
    text(d / "model.safetensors.index.json",
         R"({"weight_map":{"a":"../escape/model-00001-of-00002.safetensors"}})");
    expect_error(d, "is not a file name in the folder");
  }
  {
    const auto d = make_folder(tmp / "bad_config");
    text(d / "config.json", "[1, 2");
    expect_error(d, "config.json: not valid JSON");
  }
  {
    const auto d = make_folder(tmp / "bad_shard");
    text(d / "model-00001-of-00002.safetensors", "short");
    expect_error(d, "model-00001-of-00002.safetensors: file is 5 bytes, too short");
  }
  {
    fs::create_directories(tmp / "empty");
    expect_error(tmp / "empty",
                 "neither model.safetensors nor model.safetensors.index.json is in the folder");
  }
  expect_error(tmp / "does_not_exist", "does_not_exist: no such file or folder");
}
