// Recipe parsing: values, gradients, filters, defaults, errors with file:line.
#include <catch2/catch.hpp>
#include <cmath>

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
      err("merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: []\n"),
      Catch::Contains("r.yaml:5: models[0].parameters.weight: a gradient needs at least one "
                      "value, got an empty list"));
  // One value: that value at every layer (mergekit's evaluate_setting).
  const Recipe one = parse_recipe(
      "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: "
      "[0.25]\n",
      "r.yaml");
  CHECK(recipe_param(one, &one.models[0], "weight", "model.layers.3.w", 0.7, std::nullopt) == 0.25);
  CHECK_THAT(err("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters: "
                 "{weight: 1, rescale: true}\n"),
             Catch::Contains("r.yaml:5: parameter rescale applies to the whole merge"));
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

TEST_CASE("recipe: NaN, infinities and absurd magnitudes are refused", "[merge][recipe]") {
  auto err = [](const std::string& value) {
    try {
      parse_recipe("merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: " +
                       value + "\n",
                   "r.yaml");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  for (const char* v : {".nan", ".inf", "-.inf", "1e400", "[0.5, .nan]"}) {
    INFO(v);
    CHECK_THAT(err(v), Catch::Contains("r.yaml:5: models[0].parameters.weight"));
  }
  CHECK_THAT(err("1e7"), Catch::Contains("10000000 is beyond the sane range"));
  CHECK_THAT(err("[{filter: mlp, value: -2e6}]"), Catch::Contains("is beyond the sane range"));
  CHECK(err("1e6") == "no error");
  // A model name longer than a file name may be (ENAMETOOLONG) is resolved
  // without a filesystem exception; the reader of the checkpoint names it.
  CHECK_NOTHROW(parse_recipe(
      "merge_method: linear\nmodels:\n  - model: " + std::string(300, 'a') + "/b\n", "r.yaml"));
  CHECK(err("-0.25") == "no error");
}

// Generated recipes go through yaml-cpp's emitter; the reference for what a
// path must read back as is the path itself, through the parser (yaml-cpp's
// reader, an independent implementation of YAML).
TEST_CASE("recipe: generated recipes read back every path and number exactly", "[merge][recipe]") {
  const std::vector<std::string> paths = {
      "/pool/plain",
      "/pool/with \"double\" and 'single' quotes",
      "/pool/new\nline",
      "/pool/back\\slash\tand tab",
      "/pool/#hash: colon - dash",
      "null",
      "true",
      "~",
      "- leading dash",
      "/pool/ünïcødé 模型 \xf0\x9f\xa7\xa9",
      "{flow}, [seq]",
      " leading and trailing spaces ",
      "@at `tick` %percent &anchor *alias !tag |pipe >gt",
  };
  RecipeToWrite r;
  r.comment = "a comment\nwith a newline: model: injected";
  r.merge_method = "ties";
  r.base_model = "/pool/base \"b\"\nx";
  r.parameters = {{"lambda", 0.1}, {"density", 1.0 / 3.0}};
  for (size_t i = 0; i < paths.size(); ++i)
    r.models.push_back({paths[i], {{"", 0.1 * static_cast<double>(i) - 0.3}}});
  r.models.push_back({"/pool/layers", {{"layers.0.", 1e-300}, {"embed", -0.0}, {"*", 2.5}}});
  const std::string text = emit_recipe(r);
  INFO(text);
  const Recipe back = parse_recipe(text, "/nonexistent/r.yaml");
  REQUIRE(back.models.size() == paths.size() + 1);
  for (size_t i = 0; i < paths.size(); ++i) {
    CHECK(back.models[i].spec == paths[i]);
    CHECK(recipe_param(back, &back.models[i], "weight", "x", 0, std::nullopt) ==
          0.1 * static_cast<double>(i) - 0.3);
  }
  REQUIRE(back.base_model);
  CHECK(back.base_model->string() == "/pool/base \"b\"\nx");
  CHECK(back.method == MergeMethod::Ties);
  CHECK(recipe_param(back, nullptr, "density", "x", 0, std::nullopt) == 1.0 / 3.0);
  const RecipeModel* layered = &back.models.back();
  CHECK(recipe_param(back, layered, "weight", "model.layers.0.mlp", 0, std::nullopt) == 1e-300);
  CHECK(recipe_param(back, layered, "weight", "model.embed_tokens", 0, std::nullopt) == 0.0);
  CHECK(recipe_param(back, layered, "weight", "lm_head", 0, std::nullopt) == 2.5);
  // The comment stays one line.
  CHECK(text.find("# a comment with a newline: model: injected\n") == 0);

  RecipeToWrite bad = r;
  bad.models[0].weight = {{"", std::nan("")}};
  CHECK_THROWS_WITH(emit_recipe(bad), Catch::Contains("/pool/plain is nan, not a finite number"));
  bad = r;
  bad.models[1].path = "/pool/\xff\xfe";
  CHECK_THROWS_WITH(emit_recipe(bad), Catch::Contains("is not valid UTF-8"));
}

TEST_CASE("sha256 known answers", "[merge][recipe]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex(std::string(1000000, 'a')) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("recipe: breadcrumbs and nearswap parameters and errors", "[merge][recipe]") {
  auto err = [](const std::string& text) {
    try {
      parse_recipe(text, "r.yaml");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string bc = "merge_method: breadcrumbs\nbase_model: b\nmodels:\n  - model: a\n";
  const Recipe r = parse_recipe(
      bc + "    parameters: {weight: 1, density: 0.9, gamma: 0.02}\nparameters: {lambda: 0.5, "
           "normalize: true, int8_mask: true}\n",
      "r.yaml");
  CHECK(r.method == MergeMethod::Breadcrumbs);
  CHECK(merge_method_name(r.method) == "breadcrumbs");
  CHECK(merge_method_name(MergeMethod::BreadcrumbsTies) == "breadcrumbs_ties");
  CHECK(merge_method_name(MergeMethod::Nearswap) == "nearswap");
  CHECK(recipe_param(r, &r.models[0], "gamma", "x", 0, std::nullopt) == 0.02);
  CHECK_THAT(err(bc + "    parameters: {weight: 1, t: 0.5}\n"),
             Catch::Contains("r.yaml:5: models[0].parameters.t: unknown parameter for "
                             "merge_method breadcrumbs"));
  CHECK_THAT(err(bc + "    parameters: {weight: 1, gamma: 1.5}\n"),
             Catch::Contains("r.yaml:5: gamma: 1.5 is outside [0, 1]"));
  CHECK_THAT(err(bc + "    parameters:\n      gamma: [0.1, -0.2]\n"),
             Catch::Contains("r.yaml:6: gamma: -0.2 is outside [0, 1]"));
  // rescale (mergekit's L1 rescale of the survivors) is a whole-merge setting,
  // accepted by every generalized task arithmetic method, as in mergekit.
  CHECK(err("merge_method: task_arithmetic\nbase_model: b\nmodels:\n  - model: a\n    "
            "parameters: {weight: 1}\nparameters: {rescale: true}\n") == "no error");
  CHECK(parse_recipe(bc + "parameters:\n  rescale: true\n", "r.yaml")
            .params.at("rescale")
            .at("x", 0) == 1.0);
  CHECK_THAT(err("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters: "
                 "{gamma: 0.1}\n"),
             Catch::Contains("r.yaml:5: models[0].parameters.gamma: unknown parameter"));
  const std::string ns = "merge_method: nearswap\nbase_model: b\n";
  CHECK(parse_recipe(ns + "models:\n  - model: b\n  - model: a\nparameters: {t: 0.1}\n", "r.yaml")
            .method == MergeMethod::Nearswap);
  CHECK(err(ns + "models:\n  - model: a\nparameters: {t: 0.1}\n") == "no error");
  CHECK_THAT(err(ns + "models:\n  - model: a\n  - model: c\nparameters: {t: 0.1}\n"),
             Catch::Contains("r.yaml:4: models: nearswap merges base_model with exactly one "
                             "other model, got 2"));
  CHECK_THAT(err("merge_method: nearswap\nmodels:\n  - model: a\nparameters: {t: 0.1}\n"),
             Catch::Contains("r.yaml:1: merge_method: nearswap needs base_model"));
  CHECK_THAT(err(ns + "models:\n  - model: a\nparameters: {t: 0}\n"),
             Catch::Contains("r.yaml:5: t: 0 is not > 0"));
  CHECK_THAT(err(ns + "models:\n  - model: a\nparameters: {t: -1}\n"),
             Catch::Contains("r.yaml:5: t: -1 is not > 0"));
  CHECK_THAT(err(ns + "models:\n  - model: a\n"), Catch::Contains("nearswap needs parameters: t"));
  CHECK_THAT(err(ns + "models:\n  - model: a\n    parameters: {weight: 1}\nparameters: {t: 1}\n"),
             Catch::Contains("r.yaml:5: models[0].parameters.weight: unknown parameter for "
                             "merge_method nearswap"));
}

TEST_CASE("recipe: slices, layer ranges and the precedence of settings", "[merge][recipe]") {
  const std::string text =
      "merge_method: ties\n"
      "base_model: /nonexistent/base\n"
      "parameters: {weight: 0.5, lambda: [0.5, 1.5], density: 0.9}\n"
      "slices:\n"
      "  - sources:\n"
      "      - model: /nonexistent/base\n"
      "        layer_range: [0, 4]\n"
      "      - model: /nonexistent/a\n"
      "        layer_range: [2, 6]\n"
      "        parameters: {weight: [1.0, 2.0], density: [{filter: mlp, value: 0.2}]}\n"
      "    parameters: {density: 0.4, lambda: 2}\n"
      "  - sources:\n"
      "      - model: /nonexistent/a\n"
      "        layer_range: [0, 1]\n"
      "      - model: /nonexistent/base\n"
      "        layer_range: [5, 6]\n";
  const Recipe r = parse_recipe(text, "/tmp/r.yaml");
  REQUIRE(r.models.empty());
  REQUIRE(r.slices.size() == 2);
  const RecipeSlice& s0 = r.slices[0];
  REQUIRE(s0.sources.size() == 2);
  CHECK(s0.num_layers() == 4);
  CHECK(s0.sources[1].layers->begin == 2);
  CHECK(s0.sources[1].layers->end == 6);
  CHECK(s0.sources[1].layers->where == "/tmp/r.yaml:9");
  CHECK(r.slices[1].num_layers() == 1);
  const RecipeModel* a = &s0.sources[1];
  // A source's own setting, then its slice's, then the global one.
  CHECK(recipe_param(r, &s0, a, "weight", "x", 0.5, std::nullopt) == 1.5);
  CHECK(recipe_param(r, &s0, &s0.sources[0], "weight", "x", 0.5, std::nullopt) == 0.5);
  CHECK(recipe_param(r, &s0, a, "density", "model.layers.0.mlp.w", 0, std::nullopt) == 0.2);
  CHECK(recipe_param(r, &s0, a, "density", "model.layers.0.attn.w", 0, std::nullopt) == 0.4);
  CHECK(recipe_param(r, &r.slices[1], &r.slices[1].sources[0], "density", "x", 0, 1.0) == 0.9);
  CHECK(recipe_param(r, &s0, nullptr, "lambda", "x", 0.5, std::nullopt) == 2.0);
  CHECK(recipe_param(r, &r.slices[1], nullptr, "lambda", "x", 0.5, std::nullopt) == 1.0);
  CHECK_FALSE(find_param(r, &r.slices[1], nullptr, "normalize", "x", 0).has_value());
  const auto d = layer_digits("model.layers.12.mlp.up_proj.weight");
  REQUIRE(d);
  CHECK(d->index == 12);
  CHECK(d->pos == 13);
  CHECK(d->count == 2);

  const Recipe p = parse_recipe(
      "merge_method: passthrough\nslices:\n  - sources:\n      - model: /nonexistent/a\n"
      "        layer_range: [0, 2]\n        parameters: {scale: 0.5}\n",
      "/tmp/p.yaml");
  CHECK(p.method == MergeMethod::Passthrough);
  CHECK(merge_method_name(p.method) == "passthrough");
  CHECK(recipe_param(p, &p.slices[0], &p.slices[0].sources[0], "scale", "x", 0, std::nullopt) ==
        0.5);
}

TEST_CASE("recipe: slice and passthrough errors name file and line", "[merge][recipe]") {
  auto err = [](const std::string& text) {
    try {
      parse_recipe(text, "r.yaml");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string head = "merge_method: linear\nslices:\n  - sources:\n      - model: a\n";
  CHECK(err(head + "        layer_range: [0, 2]\n") == "no error");
  CHECK_THAT(err(head + "        layer_range: [2, 2]\n"),
             Catch::Contains("r.yaml:5: slices[0].sources[0].layer_range: [2, 2) is an empty or "
                             "inverted range"));
  CHECK_THAT(err(head + "        layer_range: [3, 1]\n"),
             Catch::Contains("[3, 1) is an empty or inverted range"));
  CHECK_THAT(err(head + "        layer_range: [-1, 1]\n"), Catch::Contains("layer -1 is negative"));
  CHECK_THAT(err(head + "        layer_range: [0, 1, 2]\n"),
             Catch::Contains("expected [first, end) (two layer indices), got 3 values"));
  CHECK_THAT(err(head), Catch::Contains("r.yaml:4: slices[0].sources[0].layer_range: missing"));
  CHECK_THAT(err(head + "        layer_range: [0, 2]\n        layers: 2\n"),
             Catch::Contains("r.yaml:6: slices[0].sources[0].layers: unknown key"));
  // A slice's own base_model (mergekit's): it wins over the recipe's.
  const Recipe sb = parse_recipe(head +
                                     "        layer_range: [0, 2]\n    base_model: a\n"
                                     "base_model: b\n",
                                 "r.yaml");
  REQUIRE(sb.slices[0].base_model);
  CHECK(*slice_base(sb, sb.slices[0]) == std::filesystem::path("a"));
  CHECK_THAT(err(head + "        layer_range: [0, 2]\n    base_model: [a]\n"),
             Catch::Contains("r.yaml:6: slices[0].base_model: expected a string"));
  CHECK_THAT(err(head + "        layer_range: [0, 2]\n      - model: b\n        layer_range: [0, "
                        "3]\n"),
             Catch::Contains("r.yaml:6: slices[0].sources[1]: layer_range [0, 3) has a length "
                             "of 3, the slice's first source's 2"));
  CHECK_THAT(err(head + "        layer_range: [0, 2]\n      - model: a\n        layer_range: [2, "
                        "4]\n"),
             Catch::Contains("model a is already a source of this slice"));
  CHECK_THAT(err(head + "        layer_range: [0, 2]\nmodels:\n  - model: a\n"),
             Catch::Contains("r.yaml:7: models: a recipe has models or slices, not both"));
  CHECK_THAT(err("merge_method: linear\nslices: []\n"),
             Catch::Contains("r.yaml:2: slices: expected a non-empty list"));
  CHECK_THAT(err("merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n        "
                 "layer_range: [0, 2]\n      - model: b\n        layer_range: [0, 2]\n"),
             Catch::Contains("r.yaml:4: slices[0].sources: passthrough takes one source per "
                             "slice, got 2"));
  CHECK_THAT(err("merge_method: passthrough\nmodels:\n  - model: a\n  - model: b\n"),
             Catch::Contains("r.yaml:3: models: passthrough copies exactly one model, got 2"));
  CHECK_THAT(err("merge_method: passthrough\nbase_model: b\nmodels:\n  - model: a\n"),
             Catch::Contains("r.yaml:2: passthrough copies one model: base_model would be"));
  CHECK_THAT(err("merge_method: passthrough\nmodels:\n  - model: a\n    parameters: {weight: 1}\n"),
             Catch::Contains("unknown parameter for merge_method passthrough"));
  CHECK_THAT(err("merge_method: linear\nmodels:\n  - model: a\n    parameters: {scale: 1}\n"),
             Catch::Contains("unknown parameter for merge_method linear"));
  // Whole-merge settings: allowed on a slice, not on a source.
  CHECK(err("merge_method: ties\nbase_model: a\nslices:\n  - sources:\n      - model: a\n        "
            "layer_range: [0, 2]\n    parameters: {lambda: 0.5, normalize: false}\n") ==
        "no error");
  CHECK_THAT(err("merge_method: ties\nbase_model: a\nslices:\n  - sources:\n      - model: a\n   "
                 "     layer_range: [0, 2]\n        parameters: {lambda: 0.5}\n"),
             Catch::Contains("r.yaml:7: parameter lambda applies to the whole merge"));
  CHECK(err("merge_method: ties\nbase_model: a\nslices:\n  - sources:\n      - model: a\n        "
            "layer_range: [0, 2]\n    parameters: {rescale: true}\n") == "no error");
  CHECK_THAT(err("merge_method: slerp\nbase_model: a\nslices:\n  - sources:\n      - model: a\n   "
                 "     layer_range: [0, 2]\n"),
             Catch::Contains("r.yaml:4: slerp needs parameters: t (globally or in this slice)"));
}

TEST_CASE("recipe: della, della_linear and sce parameters and errors", "[merge][recipe]") {
  auto err = [](const std::string& text) {
    try {
      parse_recipe(text, "r.yaml");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string de = "merge_method: della\nbase_model: b\nmodels:\n  - model: a\n";
  const Recipe r = parse_recipe(
      de + "    parameters: {weight: 1, density: 0.5, epsilon: 0.1}\nparameters: {lambda: 0.5, "
           "normalize: false, rescale: false, int8_mask: true, epsilon: 0.2}\n",
      "r.yaml");
  CHECK(r.method == MergeMethod::Della);
  CHECK(merge_method_name(r.method) == "della");
  CHECK(merge_method_name(MergeMethod::DellaLinear) == "della_linear");
  CHECK(merge_method_name(MergeMethod::Sce) == "sce");
  CHECK(recipe_param(r, &r.models[0], "epsilon", "x", 0, std::nullopt) == 0.1);
  CHECK(recipe_param(r, nullptr, "epsilon", "x", 0, std::nullopt) == 0.2);
  CHECK(err("merge_method: della_linear\nbase_model: b\nmodels:\n  - model: a\n    parameters: "
            "{weight: 1, density: 0.3}\n") == "no error");
  CHECK_THAT(err(de + "    parameters: {weight: 1, gamma: 0.1}\n"),
             Catch::Contains("r.yaml:5: models[0].parameters.gamma: unknown parameter for "
                             "merge_method della"));
  CHECK_THAT(err(de + "    parameters: {weight: 1, density: 1.5}\n"),
             Catch::Contains("r.yaml:5: density: 1.5 is outside [0, 1]"));
  CHECK_THAT(err(de + "    parameters: {weight: 1, epsilon: 0.5}\n"),
             Catch::Contains("r.yaml:5: epsilon: 0.5 is outside (-0.5, 0.5)"));
  CHECK_THAT(err(de + "parameters:\n  epsilon: [0.1, -0.7]\n"),
             Catch::Contains("r.yaml:6: epsilon: -0.7 is outside (-0.5, 0.5)"));
  CHECK_THAT(err("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters: "
                 "{weight: 1, epsilon: 0.1}\n"),
             Catch::Contains("r.yaml:5: models[0].parameters.epsilon: unknown parameter"));
  const std::string sce = "merge_method: sce\nbase_model: b\nmodels:\n  - model: a\n  - model: c\n";
  const Recipe s =
      parse_recipe(sce + "parameters: {select_topk: 0.3, int8_mask: true}\n", "r.yaml");
  CHECK(s.method == MergeMethod::Sce);
  CHECK(recipe_param(s, nullptr, "select_topk", "x", 0, 1.0) == 0.3);
  CHECK(err(sce) == "no error");
  CHECK_THAT(err(sce + "    parameters: {weight: 1}\n"),
             Catch::Contains("r.yaml:6: models[1].parameters.weight: unknown parameter for "
                             "merge_method sce"));
  CHECK_THAT(
      err(sce + "parameters: {density: 0.5}\n"),
      Catch::Contains("r.yaml:6: parameters.density: unknown parameter for merge_method sce"));
  CHECK_THAT(err(sce + "parameters: {select_topk: 1.2}\n"),
             Catch::Contains("r.yaml:6: select_topk: 1.2 is outside [0, 1]"));
  CHECK_THAT(err(sce + "    parameters: {select_topk: 0.5}\n"),
             Catch::Contains("r.yaml:6: parameter select_topk applies to the whole merge"));
  CHECK_THAT(err("merge_method: sce\nmodels:\n  - model: a\n"),
             Catch::Contains("r.yaml:1: merge_method: sce needs base_model"));
}

TEST_CASE("recipe: nuslerp, multislerp and karcher parameters and errors", "[merge][recipe]") {
  auto err = [](const std::string& text) {
    try {
      parse_recipe(text, "r.yaml");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string two =
      "models:\n  - model: a\n    parameters: {weight: 1}\n  - model: c\n    parameters: {weight: "
      "3}\n";
  // No base needed; the base is optional.
  const Recipe nu =
      parse_recipe("merge_method: nuslerp\n" + two +
                       "parameters: {nuslerp_flatten: false, nuslerp_row_wise: true}\n",
                   "r.yaml");
  CHECK(nu.method == MergeMethod::Nuslerp);
  CHECK(merge_method_name(nu.method) == "nuslerp");
  CHECK(merge_method_name(MergeMethod::Multislerp) == "multislerp");
  CHECK(merge_method_name(MergeMethod::Karcher) == "karcher");
  CHECK(recipe_param(nu, nullptr, "nuslerp_flatten", "x", 0, 1.0) == 0.0);
  CHECK(err("merge_method: nuslerp\nbase_model: b\n" + two) == "no error");
  CHECK(err("merge_method: multislerp\n" + two +
            "parameters: {normalize_weights: false, eps: 1e-6}\n") == "no error");
  CHECK(err("merge_method: karcher\nmodels:\n  - model: a\n  - model: c\nparameters: {max_iter: "
            "20, tol: 1e-7}\n") == "no error");
  CHECK(err("merge_method: karcher\nbase_model: b\nmodels:\n  - model: a\n") == "no error");
  CHECK_THAT(err("merge_method: karcher\nmodels:\n  - model: a\n    parameters: {weight: 1}\n"),
             Catch::Contains("r.yaml:4: models[0].parameters.weight: unknown parameter for "
                             "merge_method karcher"));
  CHECK_THAT(err("merge_method: nuslerp\n" + two + "parameters: {t: 0.5}\n"),
             Catch::Contains("r.yaml:7: parameters.t: unknown parameter for merge_method nuslerp"));
  CHECK_THAT(err("merge_method: multislerp\n" + two + "parameters: {eps: 0}\n"),
             Catch::Contains("r.yaml:7: eps: 0 is not > 0"));
  CHECK_THAT(err("merge_method: karcher\nmodels:\n  - model: a\nparameters: {tol: -1}\n"),
             Catch::Contains("r.yaml:4: tol: -1 is negative"));
  CHECK_THAT(err("merge_method: karcher\nmodels:\n  - model: a\nparameters: {max_iter: 2.5}\n"),
             Catch::Contains("r.yaml:4: max_iter: 2.5 is not a whole number >= 0"));
  CHECK_THAT(err("merge_method: multislerp\nmodels:\n  - model: a\n    parameters: {weight: 1, "
                 "eps: 0.1}\n"),
             Catch::Contains("r.yaml:4: parameter eps applies to the whole merge"));
  CHECK_THAT(err("merge_method: nuslerp\nmodels:\n  - model: a\n    parameters: {weight: 1, "
                 "nuslerp_flatten: false}\n"),
             Catch::Contains("parameter nuslerp_flatten applies to the whole merge"));
}
