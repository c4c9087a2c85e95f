// `kintsugi inspect` output, checked against what the test wrote.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kintsugi/io/safetensors.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

TEST_CASE("inspect: text and --json for one checkpoint", "[io][inspect]") {
  test::TempDir tmp;
  const fs::path dir = tmp / "ck";
  fs::create_directories(dir);
  std::vector<TensorData> ts = {
      {{"z.weight", DType::BF16, {2, 3}}, std::vector<std::byte>(12)},
      {{"a.bias", DType::F32, {3}}, std::vector<std::byte>(12)},
      {{"m.ids", DType::I64, {1}}, std::vector<std::byte>(8)},
  };
  write_safetensors(dir / "model.safetensors", ts, {{"format", "pt"}});
  std::ofstream(dir / "config.json") << R"({"model_type": "llama", "hidden_size": 3})";

  const auto r = test::run_kintsugi("inspect --json " + dir.string());
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j["tensors"].size() == 3);
  CHECK(j["tensors"][0] ==
        nlohmann::json({{"name", "a.bias"}, {"dtype", "F32"}, {"shape", {3}}, {"bytes", 12}}));
  CHECK(j["tensors"][1]["name"] == "m.ids");
  CHECK(
      j["tensors"][2] ==
      nlohmann::json({{"name", "z.weight"}, {"dtype", "BF16"}, {"shape", {2, 3}}, {"bytes", 12}}));
  CHECK(j["metadata"] == nlohmann::json({{"format", "pt"}}));
  CHECK(j["total_bytes"] == 32);
  CHECK(j["config"]["model_type"] == "llama");
  CHECK_FALSE(j.contains("fingerprint"));
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 1);  // one object, one line

  const auto t =
      test::run_kintsugi("inspect " + (dir / "model.safetensors").string() + " --tensors");
  REQUIRE(t.exit_code == 0);
  CHECK_THAT(t.out, Catch::Contains("3 tensors, 32 B (32 bytes) in 1 file"));
  CHECK_THAT(t.out, Catch::Contains("BF16            1 tensors            12 bytes"));
  CHECK_THAT(t.out, Catch::Contains("format: pt"));
  CHECK_THAT(t.out, Catch::Contains("z.weight  BF16  [2, 3]  12"));

  const auto f = test::run_kintsugi("inspect --fingerprint --json " + dir.string());
  REQUIRE(f.exit_code == 0);
  CHECK(nlohmann::json::parse(f.out)["fingerprint"].get<std::string>().size() == 32);

  const auto u = test::run_kintsugi("inspect");  // no path: usage error
  CHECK(u.exit_code == 2);
}
