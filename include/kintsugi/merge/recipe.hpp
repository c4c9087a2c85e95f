#pragma once
// Merge recipes in mergekit's YAML format:
//   models: [{model: PATH, parameters: {weight: .., density: ..}}, ...]
//   or slices: [{sources: [{model: PATH, layer_range: [FIRST, END), parameters: {..}}, ...],
//                parameters: {..}}, ...]   (output layers: the slices' layers in order)
//   base_model: PATH
//   merge_method: linear | task_arithmetic | ties | dare_linear | dare_ties | model_stock | slerp
//                 | breadcrumbs | breadcrumbs_ties | nearswap | passthrough | della
//                 | della_linear | sce | nuslerp | multislerp | karcher | ram | ramplus_tl
//                 | arcee_fusion | lrp | cabs | encoder_decoder_weighted | core_space
//   parameters: {normalize: .., lambda: .., t: .., ...}
//   dtype: bfloat16 | float16 | float32        out_dtype: (same; default dtype)
//   tokenizer_source: base | union | MODEL     (or tokenizer: {source, tokens, pad_to_multiple_of})
// A parameter value is a scalar, a list of numbers interpolated over the layer
// index (mergekit's "gradient"), or a list of {filter: SUBSTRING, value: V}
// where the first entry whose filter occurs in the tensor name wins. A slice
// source's parameters win over its slice's, which win over the global ones.
// Any unknown key, method or parameter, or a value of the wrong type, is an
// InputError naming file:line.
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kintsugi/io/dtype.hpp"
#include "kintsugi/pool/vocab.hpp"

namespace kintsugi {

// Each one's recipe name is in kMethodNames (recipe.cpp), in this order.
enum class MergeMethod {
  Linear,
  TaskArithmetic,
  Ties,
  DareLinear,
  DareTies,
  ModelStock,
  Slerp,
  Breadcrumbs,             // mergekit's magnitude_outliers sparsification, no sign consensus
  BreadcrumbsTies,         // the same with TIES's sign consensus
  Nearswap,                // mergekit's nearswap: the base and one other model
  Passthrough,             // one model per tensor, copied (times `scale` when given)
  Della,                   // mergekit's della_magprune sparsification with TIES's sign consensus
  DellaLinear,             // the same without sign consensus
  Sce,                     // mergekit's SCE: variance top-k, mean-square weights, sign erase
  Nuslerp,                 // mergekit's nuslerp: two models (task vectors when a base is given)
  Multislerp,              // mergekit's multislerp: N models on the hypersphere, optional base
  Karcher,                 // mergekit's karcher: the Riemannian mean of the inputs' directions
  Ram,                     // mergekit's ram: unique task-vector entries kept, shared ones averaged
  RamplusTl,               // mergekit's ramplus_tl: ram with unique entries scaled per model
  ArceeFusion,             // mergekit's arcee_fusion: the base and one model, KL-weighted selection
  Lrp,                     // mergekit's lrp: magnitude top-k per model, weights normalized to sum 1
  Cabs,                    // mergekit's cabs: n:m pruning per model in order, positions taken once
  EncoderDecoderWeighted,  // linear with per-model weights for encoder, decoder, cross-attention
  CoreSpace,  // mergekit's core_space on dense tensors: the mean of the distinct inputs
};
std::string_view merge_method_name(MergeMethod m);
// Every method's recipe name, in MergeMethod's order.
std::span<const std::string_view> merge_method_names();

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

// A slice source's layers [begin, end) of its model.
struct LayerRange {
  int64_t begin = 0, end = 0;
  std::string where;  // "file:line" of layer_range
  int64_t size() const { return end - begin; }
};

// An entry of `models`, or a source of a slice (then with its layer range).
struct RecipeModel {
  std::string spec;            // as written
  std::filesystem::path path;  // resolved
  std::map<std::string, ParamValue> params;
  std::string where;
  std::optional<LayerRange> layers;  // slice sources only
};

// One output slice: layers merged from its sources, all of the same length
// (output layer k of the slice is layer begin + k of every source).
struct RecipeSlice {
  std::vector<RecipeModel> sources;
  std::map<std::string, ParamValue> params;
  std::string where;
  // The slice's own base_model (mergekit's OutputSliceDefinition.base_model):
  // the base of every tensor this slice gives, instead of the recipe's.
  std::optional<std::filesystem::path> base_model;
  std::string base_where;
  int64_t num_layers() const { return sources.front().layers->size(); }
};

// `tokenizer_source: base | union | MODEL` or the `tokenizer:` section
// (source, tokens, pad_to_multiple_of): checkpoints whose vocabularies differ
// are re-indexed to one output vocabulary (pool/vocab.hpp). Models are named
// as in `models:` / `base_model:` and resolved to their paths here.
struct RecipeVocab {
  struct Rule {
    TokenRowRule::Kind kind = TokenRowRule::Kind::Auto;
    std::filesystem::path model;
    std::optional<int64_t> token_id;
    std::string token;
    bool force = false;
    std::string where;
  };
  VocabSpec::Source source = VocabSpec::Source::Union;
  std::filesystem::path model;  // Source::Model
  std::vector<std::pair<std::string, Rule>> tokens;
  int64_t pad_to_multiple_of = 0;
  std::string where;
};

struct Recipe;
// The base of a slice's tensors: its own base_model, else the recipe's.
const std::optional<std::filesystem::path>& slice_base(const Recipe& r, const RecipeSlice& s);

struct Recipe {
  std::filesystem::path file;
  std::string text;    // the file's bytes (copied beside the output)
  std::string sha256;  // of text
  MergeMethod method = MergeMethod::Linear;
  std::vector<RecipeModel> models;  // empty when the recipe has slices
  std::vector<RecipeSlice> slices;  // empty when the recipe has models
  std::optional<std::filesystem::path> base_model;
  std::string base_where;
  std::map<std::string, ParamValue> params;  // global
  std::optional<DType> dtype;
  std::optional<DType> out_dtype;
  std::optional<RecipeVocab> vocab;
  // cabs: the models in the order they take positions (pruning_order, as
  // written; the base may be named and is skipped), or empty: sorted by name.
  std::vector<std::string> pruning_order;
  std::string pruning_order_where;
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
  // tokenizer_source: empty (none), "base", "union", or a model's path.
  std::string tokenizer_source;
};
// The YAML text. InputError when a number is not finite or a path is not
// valid UTF-8 (YAML text is UTF-8; such a path could not be read back).
std::string emit_recipe(const RecipeToWrite& r);

// Per-tensor view of the parameters: a model's (or slice source's) own
// setting wins over its slice's, which wins over the global one (mergekit's
// precedence); nullopt when none gives a value.
std::optional<double> find_param(const Recipe& r, const RecipeSlice* slice,
                                 const RecipeModel* model, const std::string& key,
                                 std::string_view tensor, double t);
// The same, `fallback` when nothing gives a value (InputError without one).
double recipe_param(const Recipe& r, const RecipeSlice* slice, const RecipeModel* model,
                    const std::string& key, std::string_view tensor, double t,
                    std::optional<double> fallback);
inline double recipe_param(const Recipe& r, const RecipeModel* model, const std::string& key,
                           std::string_view tensor, double t, std::optional<double> fallback) {
  return recipe_param(r, nullptr, model, key, tensor, t, fallback);
}

// Layer position of a tensor for gradients: "model.layers.N." -> N / (L - 1);
// other tensors: 0 for embeddings (name contains "embed"), 1 otherwise.
// layer_digits: where N's digits are in the name (pos, count), to rename it.
struct LayerDigits {
  int64_t index = 0;
  size_t pos = 0, count = 0;
};
std::optional<LayerDigits> layer_digits(std::string_view tensor);
std::optional<int64_t> layer_index(std::string_view tensor);
double layer_t(std::string_view tensor, int64_t num_layers);

}  // namespace kintsugi
