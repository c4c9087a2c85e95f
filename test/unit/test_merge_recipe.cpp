// Recipe parsing: values, gradients, filters, defaults, errors with file:line.
#include <catch2/catch.hpp>

#include "kintsugi/common/error.hpp"
#include "kintsugi/merge/recipe.hpp"
#include "kintsugi/merge/sha256.hpp"

using namespace kintsugi;

TEST_CASE("recipe: scalars, gradients and filters per tensor", "[merge][recipe]") {
  const std::string text =
      "merge_method: ties\n"
      "base_model: /nonexistent/base\n"
      "models:\n"
      "  - model: /nonexistent/a\n"
      "    parameters:\n"
      "      weight: [0.0, 1.0, 0.5]\n"
      "      density:\n"
      "        - filter: mlp\n"
      "          value: 0.25\n"
      "        - filter: '*'\n"
      "          value: [0.5, 0.7]\n"
      "  - model: /nonexistent/b\n"
      "parameters:\n"
      "  weight: 2\n"
      "  normalize: false\n"
      "  lambda: 0.5\n"
      "dtype: bfloat16\n";
  const Recipe r = parse_recipe(text, "/tmp/r.yaml");
  REQUIRE(r.method == MergeMethod::Ties);
  REQUIRE(r.models.size() == 2);
  CHECK(r.dtype == DType::BF16);
  CHECK_FALSE(r.out_dtype.has_value());
  CHECK(r.sha256 == sha256_hex(text));
  const RecipeModel* a = &r.models[0];
  const RecipeModel* b = &r.models[1];
  // Gradient [0, 1, 0.5] over t: t = 0.25 -> 0.5, t = 0.75 -> 0.75.
  CHECK(recipe_param(r, a, "weight", "x", 0.25, std::nullopt) == Approx(0.5));
  CHECK(recipe_param(r, a, "weight", "x", 0.75, std::nullopt) == Approx(0.75));
  CHECK(recipe_param(r, a, "weight", "x", 1.0, std::nullopt) == Approx(0.5));
  // Model b has no weight of its own: the global one.
  CHECK(recipe_param(r, b, "weight", "x", 0.3, std::nullopt) == 2.0);
  // Filters: first match wins.
  CHECK(recipe_param(r, a, "density", "model.layers.1.mlp.up_proj.weight", 0.0, 1.0) == 0.25);
  CHECK(recipe_param(r, a, "density", "model.layers.1.self_attn.q_proj.weight", 0.5, 1.0) ==
        Approx(0.6));
  CHECK(recipe_param(r, b, "density", "anything", 0.5, 1.0) == 1.0);  // default
  CHECK(recipe_param(r, nullptr, "normalize", "x", 0, 1.0) == 0.0);
  CHECK(recipe_param(r, nullptr, "lambda", "x", 0, 1.0) == 0.5);
}

TEST_CASE("recipe: layer positions", "[merge][recipe]") {
  CHECK(layer_index("model.layers.12.mlp.up_proj.weight") == 12);
  CHECK(layer_index("model.layers.x.mlp") == std::nullopt);
  CHECK(layer_index("model.norm.weight") == std::nullopt);
  CHECK(layer_index("model.mylayers.3.w") == std::nullopt);
  CHECK(layer_t("model.layers.3.w", 4) == 1.0);
  CHECK(layer_t("model.layers.0.w", 4) == 0.0);
  CHECK(layer_t("model.layers.2.w", 5) == 0.5);
  CHECK(layer_t("model.embed_tokens.weight", 5) == 0.0);
  CHECK(layer_t("lm_head.weight", 5) == 1.0);
}

TEST_CASE("recipe: errors name file and line", "[merge][recipe]") {
  auto err = [](const std::string& text) {
    try {
      parse_recipe(text, "r.yaml");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(
      err("merge_method: linear\nmodels:\n  - model: a\n    weight: 1\n"),
      Catch::Contains("r.yaml:4: models[0].weight: unknown key (known keys: model, parameters)"));
  CHECK_THAT(err("merge_method: slerp\nbase_model: b\nmodels:\n  - model: a\n"),
             Catch::Contains("slerp needs parameters: t"));
  CHECK_THAT(
      err("merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: [1]\n"),
      Catch::Contains(
          "r.yaml:5: models[0].parameters.weight: a gradient needs at least two values"));
  CHECK_THAT(err("merge_method: ties\nbase_model: b\nparameters:\n  rescale: true\nmodels:\n  - "
                 "model: a\n"),
             Catch::Contains("r.yaml:4: ties: rescale: true"));
  CHECK_THAT(err("merge_method: linear\nmodels:\n  - model: a\ndtype: float8\n"),
             Catch::Contains("r.yaml:4: dtype: unknown dtype \"float8\""));
  CHECK_THAT(err("merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight:\n    "
                 "    - filter: x\n"),
             Catch::Contains("r.yaml:6: models[0].parameters.weight[0]: entry without a value"));
  CHECK_THAT(err("- 1\n- 2\n"), Catch::Contains("r.yaml:1: expected a map, got a list"));
  CHECK_THAT(err("models: []\n"), Catch::Contains("r.yaml:1: merge_method: missing required key"));
  // One strict reader for recipes and jobs: a key given twice is an error.
  CHECK_THAT(err("merge_method: linear\nmodels:\n  - model: a\nmerge_method: ties\n"),
             Catch::Contains("r.yaml:4: merge_method: duplicate key"));
  CHECK_THAT(
      err("merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1, weight: 2}\n"),
      Catch::Contains("r.yaml:4: models[0].parameters.weight: duplicate key"));
}

TEST_CASE("sha256 known answers", "[merge][recipe]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
