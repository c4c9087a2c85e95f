#pragma once
// Merge recipes in mergekit's YAML format:
//   models: [{model: PATH, parameters: {weight: .., density: ..}}, ...]
//   base_model: PATH
//   merge_method: linear | task_arithmetic | ties | dare_linear | dare_ties | model_stock | slerp
//                 | breadcrumbs | breadcrumbs_ties | nearswap | nuslerp | multislerp | karcher
//   parameters: {normalize: .., lambda: .., t: .., ...}
//   dtype: bfloat16 | float16 | float32        out_dtype: (same; default dtype)
// A parameter value is a scalar, a list of numbers interpolated over the layer
// index (mergekit's "gradient"), or a list of {filter: SUBSTRING, value: V}
// where the first entry whose filter occurs in the tensor name wins.
// Any unknown key, method or parameter, or a value of the wrong type, is an
// InputError naming file:line.
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kintsugi/io/dtype.hpp"

namespace kintsugi {

enum class MergeMethod {
  Linear,
  TaskArithmetic,
  Ties,
  DareLinear,
  DareTies,
  ModelStock,
  Slerp,
  Breadcrumbs,      // mergekit's magnitude_outliers sparsification, no sign consensus
  BreadcrumbsTies,  // the same with TIES's sign consensus
  Nearswap,         // mergekit's nearswap: the base and one other model
  Nuslerp,          // mergekit's nuslerp: two models (task vectors when a base is given)
  Multislerp,       // mergekit's multislerp: N models on the hypersphere, optional base
  Karcher,          // mergekit's karcher: the Riemannian mean of the inputs' directions
};
std::string_view merge_method_name(MergeMethod m);

// One parameter's setting as written in the recipe.
struct ParamValue {
  struct Entry {
    std::string filter;          // empty or "*": every tensor
    std::vector<double> values;  // one value, or a gradient (>= 2 values)
  };
  std::vector<Entry> entries;  // a plain scalar/gradient is one entry with no filter
  std::string where;           // "file:line" for messages

  // The value for a tensor: the first entry whose filter matches, evaluated
  // at t in [0, 1] (gradient: piecewise linear over its values). nullopt when
  // no filter matches.
  std::optional<double> at(std::string_view tensor, double t) const;
};

struct RecipeModel {
  std::string spec;            // as written
  std::filesystem::path path;  // resolved
  std::map<std::string, ParamValue> params;
  std::string where;
};

struct Recipe {
  std::filesystem::path file;
  std::string text;    // the file's bytes (copied beside the output)
  std::string sha256;  // of text
  MergeMethod method = MergeMethod::Linear;
  std::vector<RecipeModel> models;
  std::optional<std::filesystem::path> base_model;
  std::string base_where;
  std::map<std::string, ParamValue> params;  // global
  std::optional<DType> dtype;
  std::optional<DType> out_dtype;
};

// Parses `text` as the recipe at `file` (paths in it are resolved as given,
// or relative to the recipe's folder when that does not exist).
Recipe parse_recipe(const std::string& text, const std::filesystem::path& file);
Recipe parse_recipe_file(const std::filesystem::path& file);

// A recipe that kintsugi generates (export, baselines, a command evaluator's
// candidates), as data. emit_recipe() writes it with yaml-cpp's emitter, never
// by pasting text: every path is a double-quoted scalar, so quotes,
// backslashes, newlines, '#', ": ", "null" or non-ASCII in a folder name read
// back as the same path.
struct RecipeToWrite {
  struct Model {
    std::string path;
    // The weight: one value (a single entry with an empty filter), or
    // {filter, value} entries in order ("*": every tensor), mergekit's form.
    std::vector<std::pair<std::string, double>> weight;
  };
  std::string comment;  // the first line, after "# " (newlines become spaces)
  std::string merge_method;
  std::optional<std::string> base_model;
  std::string dtype = "float32";
  std::string out_dtype = "float32";
  std::vector<std::pair<std::string, std::variant<double, bool>>> parameters;  // top level
  std::vector<Model> models;
};
// The YAML text. InputError when a number is not finite or a path is not
// valid UTF-8 (YAML text is UTF-8; such a path could not be read back).
std::string emit_recipe(const RecipeToWrite& r);

// Per-tensor view of the parameters: a model's own setting wins over the
// global one; `fallback` when neither gives a value.
double recipe_param(const Recipe& r, const RecipeModel* model, const std::string& key,
                    std::string_view tensor, double t, std::optional<double> fallback);

// Layer position of a tensor for gradients: "model.layers.N." -> N / (L - 1);
// other tensors: 0 for embeddings (name contains "embed"), 1 otherwise.
std::optional<int64_t> layer_index(std::string_view tensor);
double layer_t(std::string_view tensor, int64_t num_layers);

}  // namespace kintsugi
