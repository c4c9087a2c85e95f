// Hostile input files (issue #15, class 6): anything that is not a regular
// file is refused before a byte is read, whatever reads it.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/merge/recipe.hpp"
#include "kintsugi/pool/model_config.hpp"
#include "kintsugi/tokenizer/tokenizer.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

// A FIFO with no writer: an open(O_RDONLY) without O_NONBLOCK would block
// forever, so reaching the check at all shows the open did not wait.
fs::path make_fifo(const test::TempDir& tmp, const std::string& name) {
  const fs::path p = tmp / name;
  REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
  return p;
}

fs::path make_link(const test::TempDir& tmp, const std::string& name, const fs::path& to) {
  const fs::path p = tmp / name;
  fs::create_symlink(to, p);
  return p;
}

}  // namespace

TEST_CASE("input files: regular files are read whole, up to the cap", "[io]") {
  test::TempDir tmp;
  const fs::path p = tmp / "a.txt";
  std::ofstream(p, std::ios::binary) << std::string("abc\0def", 7);
  CHECK(read_input_file(p, "test file", 100) == std::string("abc\0def", 7));
  CHECK(read_input_file(p, "test file", 7).size() == 7);
  CHECK_THROWS_AS(read_input_file(p, "test file", 6), InputError);
  CHECK_THROWS_WITH(read_input_file(p, "test file", 6),
                    Catch::Contains("a.txt: 7 bytes, more than the limit of 6 bytes"));
  // Through a symlink to a regular file: fine.
  CHECK(read_input_file(make_link(tmp, "l.txt", p), "test file", 100).size() == 7);
  CHECK_THROWS_WITH(read_input_file(tmp / "none", "job file", 100),
                    Catch::Contains("none: cannot open the job file: no such file"));
}

TEST_CASE("input files: FIFOs, devices, folders and links to them are refused", "[io]") {
  test::TempDir tmp;
  const fs::path fifo = make_fifo(tmp, "fifo");
  CHECK_THROWS_WITH(read_input_file(fifo, "task file", 100),
                    Catch::Contains("fifo: the task file is a FIFO, not a regular file"));
  CHECK_THROWS_WITH(read_input_file("/dev/null", "task file", 100),
                    Catch::Contains("/dev/null: the task file is a character device"));
  CHECK_THROWS_WITH(read_input_file(make_link(tmp, "zero", "/dev/zero"), "config.json", 100),
                    Catch::Contains("zero: the config.json is a character device"));
  CHECK_THROWS_WITH(read_input_file(tmp.path(), "recipe", 100),
                    Catch::Contains("the recipe is a folder"));
  CHECK_THROWS_WITH(check_input_file(make_link(tmp, "lfifo", fifo), "state"),
                    Catch::Contains("lfifo: the state is a FIFO"));
}

TEST_CASE("input files: every reader goes through the one check", "[io]") {
  test::TempDir tmp;
  const fs::path fifo = make_fifo(tmp, "fifo");
  const fs::path zero = make_link(tmp, "zero", "/dev/zero");
  for (const fs::path& bad : {fifo, zero, tmp.path()}) {
    INFO(bad.string());
    CHECK_THROWS_AS(load_job(bad), InputError);
    CHECK_THROWS_AS(parse_recipe_file(bad), InputError);
    CHECK_THROWS_AS(SafetensorsFile::open(bad), InputError);
  }
  CHECK_THROWS_AS(Tokenizer::load(fifo), InputError);
  CHECK_THROWS_AS(Tokenizer::load(zero), InputError);
  // A model folder whose files are hostile: config.json, the index, a shard.
  const fs::path fixture = test::fixtures_dir() / "safetensors";
  fs::path one;
  for (const auto& e : fs::recursive_directory_iterator(fixture))
    if (e.path().extension() == ".safetensors") {
      one = e.path();
      break;
    }
  REQUIRE(!one.empty());
  for (const char* name : {"config.json", "model.safetensors.index.json", "model.safetensors"}) {
    INFO(name);
    const fs::path dir = tmp / (std::string("m_") + name);
    fs::create_directory(dir);
    if (std::string(name) != "model.safetensors") fs::copy_file(one, dir / "model.safetensors");
    fs::create_symlink("/dev/zero", dir / name);
    CHECK_THROWS_WITH(HfCheckpoint::open(dir),
                      Catch::Contains(name) && Catch::Contains("character device"));
  }
}

TEST_CASE("input files: JSON of the wrong type names the file and the key", "[io]") {
  CHECK(json_problem("[json.exception.type_error.302] type must be string, but is number") ==
        "type must be string, but is number");
  CHECK(json_problem("plain") == "plain");
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                      {"vocab_size", 32},
                      {"hidden_size", 8},
                      {"intermediate_size", 16},
                      {"num_hidden_layers", 1},
                      {"num_attention_heads", 2},
                      {"hidden_act", 5}};
  CHECK_THROWS_WITH(ModelConfig::from_json(j, "m/config.json"),
                    Catch::Equals("m/config.json: key 'hidden_act' must be a string"));
  j["hidden_act"] = "silu";
  j["vocab_size"] = "32";
  CHECK_THROWS_WITH(ModelConfig::from_json(j, "m/config.json"),
                    Catch::Equals("m/config.json: key 'vocab_size' must be an integer"));
  // tokenizer.json: a section of the wrong type, named by its key, no raw library text.
  for (const char* key : {"model", "normalizer", "pre_tokenizer", "decoder", "post_processor"}) {
    INFO(key);
    nlohmann::json t = {
        {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", nlohmann::json::array()}}}};
    t[key] = {{"type", 7}};
    try {
      (void)Tokenizer::from_json(t, "tok/tokenizer.json");
      FAIL("accepted");
    } catch (const InputError& e) {
      const std::string m = e.what();
      CHECK(m.rfind("tok/tokenizer.json", 0) == 0);
      CHECK(m.find("type_error") == std::string::npos);
      CHECK(m.find("json.exception") == std::string::npos);
    }
  }
}
