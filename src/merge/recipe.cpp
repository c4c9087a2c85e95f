// mergekit-compatible recipe parsing through the one strict YAML reader
// (config/yaml_reader.hpp): every key is known, no key twice, every value has
// the right type, and errors read "FILE:LINE: key.path: problem".
#include "kintsugi/merge/recipe.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/config/yaml_reader.hpp"
#include "kintsugi/io/utf8.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"
#include "kintsugi/merge/sha256.hpp"

namespace kintsugi {
namespace {

enum class Kind { Number, Bool };
struct ParamSpec {
  const char* name;
  Kind kind;
  std::set<MergeMethod> methods;
};

using M = MergeMethod;
const std::vector<ParamSpec>& param_specs() {
  static const std::vector<ParamSpec> specs = {
      {"weight",
       Kind::Number,
       {M::Linear, M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs,
        M::BreadcrumbsTies, M::Della, M::DellaLinear, M::Nuslerp, M::Multislerp, M::Lrp, M::Cabs,
        M::CoreSpace}},
      {"normalize",
       Kind::Bool,
       {M::Linear, M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs,
        M::BreadcrumbsTies, M::Della, M::DellaLinear}},
      {"lambda",
       Kind::Number,
       {M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs, M::BreadcrumbsTies,
        M::Della, M::DellaLinear}},
      {"density",
       Kind::Number,
       {M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs, M::BreadcrumbsTies, M::Della,
        M::DellaLinear, M::Lrp}},
      {"gamma", Kind::Number, {M::Breadcrumbs, M::BreadcrumbsTies}},
      {"epsilon", Kind::Number, {M::Della, M::DellaLinear, M::Ram, M::RamplusTl}},
      {"r", Kind::Number, {M::RamplusTl}},
      {"alpha", Kind::Number, {M::RamplusTl}},
      {"rescale",
       Kind::Bool,
       {M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs, M::BreadcrumbsTies,
        M::Della, M::DellaLinear}},
      {"int8_mask",
       Kind::Bool,
       {M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs, M::BreadcrumbsTies,
        M::Della, M::DellaLinear, M::Sce}},
      {"select_topk", Kind::Number, {M::Sce}},
      {"filter_wise", Kind::Bool, {M::ModelStock}},
      {"t", Kind::Number, {M::Slerp, M::Nearswap}},
      {"scale", Kind::Number, {M::Passthrough}},
      {"nuslerp_flatten", Kind::Bool, {M::Nuslerp}},
      {"nuslerp_row_wise", Kind::Bool, {M::Nuslerp}},
      {"normalize_weights", Kind::Bool, {M::Multislerp}},
      {"eps", Kind::Number, {M::Multislerp}},
      {"max_iter", Kind::Number, {M::Karcher}},
      {"n_val", Kind::Number, {M::Cabs}},
      {"m_val", Kind::Number, {M::Cabs}},
      {"default_n_val", Kind::Number, {M::Cabs}},
      {"default_m_val", Kind::Number, {M::Cabs}},
      {"encoder_weight", Kind::Number, {M::EncoderDecoderWeighted}},
      {"decoder_weight", Kind::Number, {M::EncoderDecoderWeighted}},
      {"cross_weight", Kind::Number, {M::EncoderDecoderWeighted}},
      {"tol", Kind::Number, {M::Karcher}},
  };
  return specs;
}

std::string where(const YamlField& f) {
  return fmt::format("{}:{}", f.origin(), f.line());
}

// Keys of mergekit's files that kintsugi knows of and does not support, with
// what they are: refused by name, not as an unknown key. `map` is checked
// only when it is a map (as_map names any other problem).
void refuse_unsupported_keys(
    const YamlField& map, const std::vector<std::pair<std::string_view, std::string_view>>& keys) {
  if (!map.node().IsMap()) return;
  for (auto it = map.node().begin(); it != map.node().end(); ++it) {
    if (!it->first.IsScalar()) continue;
    for (const auto& [key, why] : keys)
      if (it->first.Scalar() == key) {
        const int line = it->first.Mark().line >= 0 ? it->first.Mark().line + 1 : map.line();
        const std::string path =
            map.path().empty() ? std::string(key) : map.path() + "." + std::string(key);
        throw_input("{}:{}: {}: {}", map.origin(), line, path, why);
      }
  }
}

void refuse_unsupported_top_keys(const YamlField& root) {
  constexpr std::string_view evolve =
      "a mergekit-evolve configuration, not a merge recipe: not supported (kintsugi optimize "
      "searches merge weights from its own job file)";
  refuse_unsupported_keys(
      root,
      {{"modules",
        "mergekit's per-module merges (modules:, for multimodal models) are not supported"},
       {"metric_method",
        "a mergekit metrics recipe (metric_method), not a merge: not supported (a merge recipe "
        "names merge_method)"},
       {"genome", evolve},
       {"tasks", evolve},
       {"align_weights",
        "aligning the models' weights before merging (align_weights) is not supported"}});
}

void refuse_unsupported_model_keys(const YamlField& entry) {
  refuse_unsupported_keys(entry,
                          {{"lora",
                            "LoRA adapters (lora:) are not supported: merge the adapter into its "
                            "model first"}});
}

// Each method's name in recipes, in the order merge_method's error lists
// them: the one list the parser, merge_method_name and method_from read.
constexpr std::string_view kMethodNames[] = {
    "linear",
    "task_arithmetic",
    "ties",
    "dare_linear",
    "dare_ties",
    "model_stock",
    "slerp",
    "breadcrumbs",
    "breadcrumbs_ties",
    "nearswap",
    "passthrough",
    "della",
    "della_linear",
    "sce",
    "nuslerp",
    "multislerp",
    "karcher",
    "ram",
    "ramplus_tl",
    "arcee_fusion",
    "lrp",
    "cabs",
    "encoder_decoder_weighted",
    "core_space",
};
constexpr MergeMethod kMethods[] = {
    M::Linear,
    M::TaskArithmetic,
    M::Ties,
    M::DareLinear,
    M::DareTies,
    M::ModelStock,
    M::Slerp,
    M::Breadcrumbs,
    M::BreadcrumbsTies,
    M::Nearswap,
    M::Passthrough,
    M::Della,
    M::DellaLinear,
    M::Sce,
    M::Nuslerp,
    M::Multislerp,
    M::Karcher,
    M::Ram,
    M::RamplusTl,
    M::ArceeFusion,
    M::Lrp,
    M::Cabs,
    M::EncoderDecoderWeighted,
    M::CoreSpace,
};
static_assert(std::size(kMethodNames) == std::size(kMethods));
constexpr bool in_enum_order() {
  for (size_t i = 0; i < std::size(kMethods); ++i)
    if (kMethods[i] != static_cast<MergeMethod>(i)) return false;
  return true;
}
static_assert(in_enum_order() && kMethods[std::size(kMethods) - 1] == M::CoreSpace,
              "kMethods lists MergeMethod in order, the last one included");

// The value of merge_method, one of kintsugi's methods.
std::string method_name(const YamlField& f) {
  // mergekit's source tree has a merge_methods/pcb.py (PCB merging), but no
  // release registers it: mergekit itself answers "pcb" with an unknown
  // method. Refused by name rather than as a typo.
  if (f.node().IsScalar() && f.node().Scalar() == "pcb")
    f.fail(
        "pcb (PCB merging) is not supported: mergekit's merge_methods/pcb.py is not registered "
        "as a merge method in mergekit either, so no mergekit recipe can use it");
  return f.as_enum(kMethodNames);
}

std::optional<MergeMethod> method_from(const std::string& s) {
  for (size_t i = 0; i < std::size(kMethods); ++i)
    if (kMethodNames[i] == s) return kMethods[i];
  return std::nullopt;
}

// Weights, lambdas, densities and t are of order 1; a magnitude past this is a
// typo (1e6 for 1e-6) whose merge would overflow to infinities in bf16/fp16.
constexpr double kMaxRecipeMagnitude = 1e6;

double sane_number(const YamlField& f) {
  const double v = f.as_finite_double();
  if (std::fabs(v) > kMaxRecipeMagnitude)
    f.fail(fmt::format("{} is beyond the sane range [-1e6, 1e6] for a merge parameter", v));
  return v;
}

// A number, or a gradient: a list of numbers, interpolated over the layers
// (one value: that value everywhere, as mergekit's evaluate_setting reads it;
// an empty list has no value, where mergekit fails with an IndexError).
std::vector<double> number_or_gradient(const YamlField& f) {
  if (!f.node().IsSequence()) return {sane_number(f)};
  const auto items = f.items();
  if (items.empty()) f.fail("a gradient needs at least one value, got an empty list");
  std::vector<double> v;
  for (const auto& e : items) v.push_back(sane_number(e));
  return v;
}

ParamValue parse_param(const YamlField& f, const ParamSpec& spec) {
  ParamValue pv;
  pv.where = where(f);
  if (spec.kind == Kind::Bool) {
    pv.entries.push_back({"", {f.as_bool() ? 1.0 : 0.0}});
    return pv;
  }
  // A list of {filter, value} entries: the first whose filter matches wins.
  if (f.node().IsSequence() && f.node().size() > 0 && f.node()[0].IsMap()) {
    for (const auto& e : f.items()) {
      const YamlMap m = e.as_map({"filter", "value"});
      ParamValue::Entry entry;
      if (auto filter = m.get("filter")) entry.filter = filter->as_string();
      if (!m.has("value")) e.fail("entry without a value");
      entry.values = number_or_gradient(*m.get("value"));
      if (entry.filter == "*") entry.filter.clear();
      pv.entries.push_back(std::move(entry));
    }
    return pv;
  }
  pv.entries.push_back({"", number_or_gradient(f)});
  return pv;
}

// cabs's pruning_order: a list of model names as written.
void parse_pruning_order(const YamlField& f, Recipe& r) {
  if (!r.pruning_order_where.empty())
    f.fail(fmt::format("given twice (also at {})", r.pruning_order_where));
  const auto items = f.items();
  if (items.empty()) f.fail("expected a non-empty list of model names");
  for (const auto& e : items) r.pruning_order.push_back(e.as_string());
  r.pruning_order_where = where(f);
}

// `order`: where cabs's pruning_order goes (global parameters only; elsewhere
// it is an unknown parameter).
std::map<std::string, ParamValue> parse_params(const YamlField& f, MergeMethod method,
                                               Recipe* order = nullptr) {
  std::map<std::string, ParamValue> out;
  for (const auto& [k, v] : f.entries()) {
    if (k == "pruning_order" && method == M::Cabs && order) {
      parse_pruning_order(v, *order);
      continue;
    }
    const auto& specs = param_specs();
    const std::string& key = k;  // clang 14 (the fuzzers) cannot capture a structured binding
    auto it =
        std::find_if(specs.begin(), specs.end(), [&](const ParamSpec& s) { return key == s.name; });
    if (it == specs.end() || !it->methods.count(method))
      v.fail(fmt::format("unknown parameter for merge_method {}", merge_method_name(method)));
    out[k] = parse_param(v, *it);
  }
  return out;
}

DType parse_dtype(const YamlField& f) {
  const std::string s = f.as_string();
  if (s == "bfloat16" || s == "bf16") return DType::BF16;
  if (s == "float16" || s == "fp16" || s == "half") return DType::F16;
  if (s == "float32" || s == "fp32" || s == "float") return DType::F32;
  f.fail(fmt::format("unknown dtype \"{}\" (expected bfloat16, float16 or float32)", s));
}

std::filesystem::path resolve(const std::filesystem::path& recipe, const std::string& spec) {
  // error_code overloads: a name too long or a component that is a file is
  // "not there" here (the checkpoint reader names the problem), not a throw.
  std::error_code ec;
  std::filesystem::path p(spec);
  if (p.is_absolute() || std::filesystem::exists(p, ec)) return p;
  const auto beside = recipe.parent_path() / p;
  if (std::filesystem::exists(beside, ec)) return beside;
  return p;
}

// An entry of `models`, or (slice_source) a source of a slice with its layer_range.
RecipeModel parse_model(const YamlField& f, const std::filesystem::path& file, MergeMethod method,
                        bool slice_source) {
  refuse_unsupported_model_keys(f);
  const YamlMap m = slice_source ? f.as_map({"model", "layer_range", "parameters"})
                                 : f.as_map({"model", "parameters"});
  RecipeModel rm;
  rm.where = where(f);
  rm.spec = m.require("model").as_string();
  if (rm.spec.empty()) m.require("model").fail("must not be empty");
  rm.path = resolve(file, rm.spec);
  if (auto p = m.get("parameters")) rm.params = parse_params(*p, method);
  if (slice_source) {
    // mergekit's layer_range: [first, end), end exclusive; required.
    const YamlField lr = m.require("layer_range");
    const auto ends = lr.items();
    if (ends.size() != 2)
      lr.fail(fmt::format("expected [first, end) (two layer indices), got {} values", ends.size()));
    LayerRange range;
    range.begin = ends[0].as_int();
    range.end = ends[1].as_int();
    range.where = where(lr);
    if (range.begin < 0) lr.fail(fmt::format("layer {} is negative", range.begin));
    if (range.end <= range.begin)
      lr.fail(fmt::format("[{}, {}) is an empty or inverted range (the end is exclusive)",
                          range.begin, range.end));
    rm.layers = range;
  }
  return rm;
}

bool same_model(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code e1, e2;
  const auto ca = std::filesystem::weakly_canonical(a, e1);
  const auto cb = std::filesystem::weakly_canonical(b, e2);
  return (!e1 && !e2) ? ca == cb : a == b;
}

RecipeSlice parse_slice(const YamlField& f, const std::filesystem::path& file, MergeMethod method) {
  const YamlMap m = f.as_map({"sources", "parameters", "base_model", "residual_weight"});
  RecipeSlice s;
  s.where = where(f);
  if (auto b = m.get("base_model")) {
    s.base_model = resolve(file, b->as_string());
    s.base_where = where(*b);
  }
  // mergekit's OutputSliceDefinition has residual_weight, and nothing in its
  // planner or methods reads it: a number, accepted with no effect.
  if (auto rw = m.get("residual_weight")) {
    (void)sane_number(*rw);
    spdlog::warn("{}: residual_weight has no effect (mergekit reads it and never uses it)",
                 where(*rw));
  }
  const YamlField sources = m.require("sources");
  const auto items = sources.items();
  if (items.empty()) sources.fail("expected a non-empty list");
  for (const auto& e : items) {
    s.sources.push_back(parse_model(e, file, method, true));
    const RecipeModel& added = s.sources.back();
    // mergekit keys a slice's inputs by model: a second source of the same
    // model would silently replace the first.
    for (size_t i = 0; i + 1 < s.sources.size(); ++i)
      if (same_model(s.sources[i].path, added.path))
        e.fail(fmt::format("model {} is already a source of this slice (at {})", added.spec,
                           s.sources[i].where));
    if (added.layers->size() != s.sources.front().layers->size())
      e.fail(fmt::format(
          "layer_range [{}, {}) has a length of {}, the slice's first source's {}: all sources "
          "of a slice need the same number of layers",
          added.layers->begin, added.layers->end, added.layers->size(),
          s.sources.front().layers->size()));
  }
  if (method == M::Passthrough && s.sources.size() != 1)
    sources.fail(fmt::format("passthrough takes one source per slice, got {}", s.sources.size()));
  if (auto p = m.get("parameters")) s.params = parse_params(*p, method);
  return s;
}

// A model named in the tokenizer settings: one of the recipe's models (or
// slice sources) or its base.
std::filesystem::path recipe_member(const YamlField& f, const Recipe& r) {
  const std::string spec = f.as_string();
  std::vector<const RecipeModel*> all;
  for (const auto& m : r.models) all.push_back(&m);
  for (const auto& sl : r.slices)
    for (const auto& src : sl.sources) all.push_back(&src);
  for (const auto* m : all)
    if (m->spec == spec) return m->path;
  if (r.base_model && same_model(resolve(r.file, spec), *r.base_model)) return *r.base_model;
  for (const auto* m : all)
    if (same_model(resolve(r.file, spec), m->path)) return m->path;
  f.fail(fmt::format("\"{}\" is not one of the recipe's models", spec));
}

void parse_vocab_source(const YamlField& f, const Recipe& r, RecipeVocab& v) {
  const std::string s = f.as_string();
  if (s == "base") {
    v.source = VocabSpec::Source::Base;
  } else if (s == "union") {
    v.source = VocabSpec::Source::Union;
  } else {
    v.source = VocabSpec::Source::Model;
    v.model = recipe_member(f, r);
  }
}

RecipeVocab::Rule parse_token_rule(const YamlField& f, const Recipe& r) {
  const YamlMap m = f.as_map({"source", "force"});
  RecipeVocab::Rule rule;
  rule.where = where(f);
  if (auto force = m.get("force")) rule.force = force->as_bool();
  const YamlField src = m.require("source");
  if (!src.node().IsMap()) {
    rule.kind = TokenRowRule::Kind::Model;
    rule.model = recipe_member(src, r);
    return rule;
  }
  const YamlMap sm = src.as_map({"kind", "model", "token_id", "token"});
  const std::string kind = sm.require("kind").as_enum({"zero", "model_token"});
  if (kind == "zero") {
    for (const char* k : {"model", "token_id", "token"})
      if (auto e = sm.get(k)) e->fail("a zero source takes no other key");
    rule.kind = TokenRowRule::Kind::Zero;
    return rule;
  }
  rule.kind = TokenRowRule::Kind::ModelToken;
  rule.model = recipe_member(sm.require("model"), r);
  const auto id = sm.get("token_id");
  const auto tok = sm.get("token");
  if (id && tok) tok->fail("give token_id or token, not both");
  if (!id && !tok) src.fail("a model_token source needs token_id or token");
  if (id) rule.token_id = static_cast<int64_t>(id->as_uint(0, INT32_MAX));
  if (tok) rule.token = tok->as_string();
  return rule;
}

RecipeVocab parse_vocab(const YamlMap& top, const Recipe& r) {
  RecipeVocab v;
  const auto ts = top.get("tokenizer_source");
  const auto t = top.get("tokenizer");
  if (ts && t) t->fail("give tokenizer_source or tokenizer, not both");
  if (ts) {
    v.where = where(*ts);
    parse_vocab_source(*ts, r, v);
    return v;
  }
  v.where = where(*t);
  const YamlMap m = t->as_map({"source", "tokens", "pad_to_multiple_of"});
  if (auto s = m.get("source")) parse_vocab_source(*s, r, v);  // default: union
  if (auto p = m.get("pad_to_multiple_of"))
    v.pad_to_multiple_of = static_cast<int64_t>(p->as_uint(1, 1u << 20));
  if (auto toks = m.get("tokens"))
    for (const auto& [token, rule] : toks->entries()) {
      if (token.empty()) rule.fail("an empty token");
      v.tokens.emplace_back(token, parse_token_rule(rule, r));
    }
  return v;
}

}  // namespace

std::span<const std::string_view> merge_method_names() {
  return kMethodNames;
}

std::string_view merge_method_name(MergeMethod m) {
  for (size_t i = 0; i < std::size(kMethods); ++i)
    if (kMethods[i] == m) return kMethodNames[i];
  return "?";
}

std::optional<double> ParamValue::at(std::string_view tensor, double t) const {
  for (const auto& e : entries) {
    if (!e.filter.empty() && tensor.find(e.filter) == std::string_view::npos) continue;
    if (e.values.size() == 1) return e.values[0];
    // mergekit's gradient: piecewise linear over evenly spaced values.
    const double scaled = std::clamp(t, 0.0, 1.0) * static_cast<double>(e.values.size() - 1);
    const auto i0 = static_cast<size_t>(std::floor(scaled));
    const auto i1 = static_cast<size_t>(std::ceil(scaled));
    const double frac = scaled - static_cast<double>(i0);
    return (1.0 - frac) * e.values[i0] + frac * e.values[i1];
  }
  return std::nullopt;
}

// cabs: n_val and m_val (default_n_val and default_m_val) go in pairs, as
// mergekit requires; pruning_order names each model besides the base once
// (mergekit skips a name it does not know and leaves out a model it does not
// list: refused here, as a typo would silently drop a model).
void check_cabs(const Recipe& r, const std::vector<const RecipeModel*>& inputs,
                const std::vector<const std::map<std::string, ParamValue>*>& merge_levels) {
  auto paired = [](const std::map<std::string, ParamValue>& ps, const char* a, const char* b) {
    for (auto [x, y] : {std::pair{a, b}, std::pair{b, a}})
      if (ps.count(x) && !ps.count(y))
        throw_input("{}: cabs: {} is given without {} (they go together)", ps.at(x).where, x, y);
  };
  for (const auto* ps : merge_levels) {
    paired(*ps, "n_val", "m_val");
    paired(*ps, "default_n_val", "default_m_val");
  }
  for (const RecipeModel* rm : inputs) paired(rm->params, "n_val", "m_val");
  auto is_base = [&](const std::string& spec) {
    const auto p = resolve(r.file, spec);
    if (r.base_model && same_model(p, *r.base_model)) return true;
    return std::any_of(r.slices.begin(), r.slices.end(), [&](const RecipeSlice& sl) {
      return sl.base_model && same_model(p, *sl.base_model);
    });
  };
  if (!r.pruning_order.empty()) {
    std::set<std::string> listed;
    for (const auto& name : r.pruning_order) {
      if (is_base(name)) continue;
      const bool known = std::any_of(inputs.begin(), inputs.end(),
                                     [&](const RecipeModel* rm) { return rm->spec == name; });
      if (!known)
        throw_input(
            "{}: pruning_order: \"{}\" is not one of the recipe's models (as written there)",
            r.pruning_order_where, name);
      if (!listed.insert(name).second)
        throw_input("{}: pruning_order: \"{}\" is listed twice", r.pruning_order_where, name);
    }
    for (const RecipeModel* rm : inputs)
      if (!is_base(rm->spec) && !listed.count(rm->spec))
        throw_input(
            "{}: pruning_order: model {} (at {}) is not listed (mergekit would leave it out of "
            "the merge)",
            r.pruning_order_where, rm->spec, rm->where);
  }
  // mergekit's fallback when neither the model nor the merge sets n:m.
  const bool defaults = std::any_of(merge_levels.begin(), merge_levels.end(), [](const auto* ps) {
    return ps->count("default_n_val") || ps->count("n_val");
  });
  for (const RecipeModel* rm : inputs)
    if (!defaults && !rm->params.count("n_val") && !is_base(rm->spec))
      spdlog::warn(
          "{}: cabs: no n_val/m_val for model {} and no default_n_val/default_m_val: "
          "mergekit's fallback, 1:4",
          rm->where, rm->spec);
}

Recipe parse_recipe(const std::string& text, const std::filesystem::path& file) {
  const std::string origin = file.string();
  const YamlField root(origin, parse_yaml(text, origin), "", 1);
  // What the file is before which keys it may have: mergekit's other kinds of
  // files and keys kintsugi does not support, then a method it does not have
  // (whose own keys would otherwise be reported as unknown first).
  refuse_unsupported_top_keys(root);
  if (root.node().IsMap())
    for (const auto& [k, v] : root.entries())
      if (k == "merge_method") (void)method_name(v);
  const YamlMap top = root.as_map({"models", "slices", "base_model", "merge_method", "parameters",
                                   "dtype", "out_dtype", "tokenizer_source", "tokenizer",
                                   "default_n_val", "default_m_val", "pruning_order"});
  Recipe r;
  r.file = file;
  r.text = text;
  r.sha256 = sha256_hex(text);
  // The method decides which parameters are valid: read it first.
  const YamlField method_field = top.require("merge_method");
  const std::string mname = method_name(method_field);
  r.method = *method_from(mname);
  // Either models or slices (mergekit: exactly one of them).
  const std::optional<YamlField> slices = top.get("slices");
  if (slices && top.has("models"))
    top.require("models").fail("a recipe has models or slices, not both");
  const YamlField models = slices ? *slices : top.require("models");
  const auto items = models.items();
  if (items.empty()) models.fail("expected a non-empty list");
  for (const auto& e : items) {
    if (slices)
      r.slices.push_back(parse_slice(e, file, r.method));
    else
      r.models.push_back(parse_model(e, file, r.method, false));
  }
  if (auto b = top.get("base_model")) {
    r.base_model = resolve(file, b->as_string());
    r.base_where = where(*b);
  }
  if (auto p = top.get("parameters")) r.params = parse_params(*p, r.method, &r);
  // cabs's settings as siblings of merge_method, where mergekit's example
  // cabs.yml writes them (mergekit itself reads them under parameters:).
  for (const char* key : {"default_n_val", "default_m_val", "pruning_order"}) {
    auto f = top.get(key);
    if (!f) continue;
    if (r.method != M::Cabs) f->fail(fmt::format("a setting of merge_method cabs, not {}", mname));
    if (std::string_view(key) == "pruning_order") {
      parse_pruning_order(*f, r);
      continue;
    }
    if (r.params.count(key))
      f->fail(fmt::format("given twice (also under parameters, at {})", r.params.at(key).where));
    const auto& specs = param_specs();
    r.params[key] =
        parse_param(*f, *std::find_if(specs.begin(), specs.end(),
                                      [&](const ParamSpec& s) { return s.name == key; }));
  }
  if (auto d = top.get("dtype")) r.dtype = parse_dtype(*d);
  if (auto d = top.get("out_dtype")) r.out_dtype = parse_dtype(*d);
  if (top.has("tokenizer_source") || top.has("tokenizer")) r.vocab = parse_vocab(top, r);

  // Method-level rules that do not need the checkpoints.
  // nuslerp and multislerp take an optional base (task vectors when given);
  // karcher averages it as one more input.
  const bool needs_base = r.method != M::Linear && r.method != M::Passthrough &&
                          r.method != M::EncoderDecoderWeighted && r.method != M::Nuslerp &&
                          r.method != M::Multislerp && r.method != M::Karcher &&
                          r.method != M::CoreSpace;
  if (needs_base && !r.base_model) {
    if (r.slices.empty()) method_field.fail(fmt::format("{} needs base_model", mname));
    for (const auto& sl : r.slices)
      if (!sl.base_model)
        throw_input("{}: {} needs base_model (in this slice or at the top level)", sl.where, mname);
  }
  // Every model entry and slice source, and the levels that hold whole-merge
  // settings: the global parameters and each slice's.
  std::vector<const RecipeModel*> inputs;
  for (const auto& rm : r.models) inputs.push_back(&rm);
  for (const auto& sl : r.slices)
    for (const auto& src : sl.sources) inputs.push_back(&src);
  std::vector<const std::map<std::string, ParamValue>*> merge_levels{&r.params};
  for (const auto& sl : r.slices) merge_levels.push_back(&sl.params);
  // A boolean set to true at any whole-merge level.
  auto set_true = [&](const std::string& key) -> const ParamValue* {
    for (const auto* ps : merge_levels) {
      auto it = ps->find(key);
      if (it != ps->end() && it->second.entries[0].values[0] != 0.0) return &it->second;
    }
    return nullptr;
  };
  for (const RecipeModel* rm : inputs)
    for (const auto& [k, pv] : rm->params)
      if (k == "normalize" || k == "lambda" || k == "rescale" || k == "int8_mask" ||
          k == "filter_wise" || k == "select_topk" || (k == "t" && r.method == M::Nearswap) ||
          k == "nuslerp_flatten" || k == "nuslerp_row_wise" || k == "normalize_weights" ||
          k == "eps" || k == "max_iter" || k == "tol" || k == "r" || k == "alpha" ||
          (k == "epsilon" && (r.method == M::Ram || r.method == M::RamplusTl)) ||
          (k == "density" && r.method == M::Lrp) || k == "default_n_val" || k == "default_m_val")
        throw_input(
            "{}: parameter {} applies to the whole merge: put it under the top-level parameters",
            pv.where, k);
  // Ranges a gradient cannot leave: checked on every value as written.
  auto check_values = [](const ParamValue& pv, const std::string& key, auto ok,
                         const char* expected) {
    for (const auto& e : pv.entries)
      for (double v : e.values)
        if (!ok(v)) throw_input("{}: {}: {} is {}", pv.where, key, v, expected);
  };
  auto in_unit = [](double v) { return v >= 0.0 && v <= 1.0; };
  std::vector<const std::map<std::string, ParamValue>*> all_params = merge_levels;
  for (const RecipeModel* rm : inputs) all_params.push_back(&rm->params);
  for (const auto* ps : all_params)
    for (const auto& [k, pv] : *ps) {
      if (k == "gamma") check_values(pv, k, in_unit, "outside [0, 1]");
      if (k == "density" &&
          (r.method == M::Breadcrumbs || r.method == M::BreadcrumbsTies || r.method == M::Della ||
           r.method == M::DellaLinear || r.method == M::Lrp))
        check_values(pv, k, in_unit, "outside [0, 1]");
      if (k == "select_topk") check_values(pv, k, in_unit, "outside [0, 1]");
      // DELLA's drop probabilities span density -+ epsilon: |epsilon| < 1/2
      // at least (each density is checked against it per tensor).
      const bool ram = r.method == M::Ram || r.method == M::RamplusTl;
      // RAM's epsilon is the magnitude above which a task-vector entry counts.
      if (k == "epsilon" && ram)
        check_values(
            pv, k, [](double v) { return v >= 0.0; }, "negative");
      if (k == "alpha")
        check_values(
            pv, k, [](double v) { return v >= 0.0; }, "negative (the clamp of rho is [0, alpha])");
      if (k == "epsilon" && !ram)
        check_values(
            pv, k, [](double v) { return v > -0.5 && v < 0.5; }, "outside (-0.5, 0.5)");
      if (k == "t" && r.method == M::Nearswap)
        check_values(
            pv, k, [](double v) { return v > 0.0; }, "not > 0 (nearswap needs t > 0)");
      if (k == "eps")
        check_values(
            pv, k, [](double v) { return v > 0.0; }, "not > 0");
      if (k == "tol")
        check_values(
            pv, k, [](double v) { return v >= 0.0; }, "negative");
      if (k == "n_val" || k == "default_n_val")
        check_values(
            pv, k, [](double v) { return v >= 0.0 && v <= kMaxCabsBlock && v == std::floor(v); },
            "not a whole number in [0, 65536]");
      if (k == "m_val" || k == "default_m_val")
        check_values(
            pv, k, [](double v) { return v >= 1.0 && v <= kMaxCabsBlock && v == std::floor(v); },
            "not a whole number in [1, 65536]");
      if (k == "max_iter")
        check_values(
            pv, k, [](double v) { return v >= 0.0 && v == std::floor(v); },
            "not a whole number >= 0");
    }
  // A required whole-merge parameter: global, or in every slice.
  auto require_param = [&](const std::string& key) {
    if (r.params.count(key)) return;
    for (const auto& sl : r.slices)
      if (!sl.params.count(key))
        throw_input("{}: {} needs parameters: {} (globally or in this slice)", sl.where, mname,
                    key);
    if (r.slices.empty()) method_field.fail(fmt::format("{} needs parameters: {}", mname, key));
  };
  if (r.method == M::Nearswap) require_param("t");
  if ((r.method == M::Nearswap || r.method == M::ArceeFusion) && r.slices.empty()) {
    // mergekit's nearswap and arcee_fusion take exactly two models, the base and one other.
    std::error_code e1;
    const auto base = std::filesystem::weakly_canonical(*r.base_model, e1);
    size_t others = 0;
    for (const auto& rm : r.models) {
      std::error_code e2;
      const auto p = std::filesystem::weakly_canonical(rm.path, e2);
      if (!((!e1 && !e2) ? p == base : rm.path == *r.base_model)) ++others;
    }
    if (others != 1)
      models.fail(
          fmt::format("{} merges base_model with exactly one other model, got {} besides the base",
                      mname, others));
  }
  if (r.method == M::Cabs) check_cabs(r, inputs, merge_levels);
  if (r.method == M::ModelStock)
    if (const ParamValue* pv = set_true("filter_wise"))
      throw_input("{}: model_stock: filter_wise: true is not supported", pv->where);
  if (r.method == M::Slerp) require_param("t");
  // passthrough over models copies one model (mergekit adds a base_model that
  // is not listed as a second input, which passthrough refuses).
  if (r.method == M::Passthrough && r.slices.empty()) {
    if (r.models.size() != 1)
      models.fail(fmt::format("passthrough copies exactly one model, got {}", r.models.size()));
    if (r.base_model && !same_model(*r.base_model, r.models[0].path))
      throw_input("{}: passthrough copies one model: base_model would be a second one",
                  r.base_where);
  }
  return r;
}

namespace {

// Shortest text that parses back to the same double (yaml-cpp's own writes 17
// digits: 0.1 would read "0.10000000000000001").
std::string number_text(double v, std::string_view what) {
  if (!std::isfinite(v)) throw_input("generated recipe: {} is {}, not a finite number", what, v);
  return fmt::format("{}", v);
}

std::string utf8_path(const std::string& p) {
  if (first_invalid_utf8(p))
    throw_input("{}: the path is not valid UTF-8 and cannot be written into a YAML recipe", p);
  return p;
}

}  // namespace

std::string emit_recipe(const RecipeToWrite& r) {
  YAML::Emitter out;
  std::string comment = r.comment;
  std::replace(comment.begin(), comment.end(), '\n', ' ');
  std::replace(comment.begin(), comment.end(), '\r', ' ');
  out << YAML::BeginMap;
  out << YAML::Key << "merge_method" << YAML::Value << r.merge_method;
  if (r.base_model)
    out << YAML::Key << "base_model" << YAML::Value << YAML::DoubleQuoted
        << utf8_path(*r.base_model);
  out << YAML::Key << "dtype" << YAML::Value << r.dtype;
  out << YAML::Key << "out_dtype" << YAML::Value << r.out_dtype;
  if (r.tokenizer_source == "base" || r.tokenizer_source == "union")
    out << YAML::Key << "tokenizer_source" << YAML::Value << r.tokenizer_source;
  else if (!r.tokenizer_source.empty())
    out << YAML::Key << "tokenizer_source" << YAML::Value << YAML::DoubleQuoted
        << utf8_path(r.tokenizer_source);
  if (!r.parameters.empty()) {
    out << YAML::Key << "parameters" << YAML::Value << YAML::BeginMap;
    for (const auto& [k, v] : r.parameters) {
      out << YAML::Key << k << YAML::Value;
      if (const bool* b = std::get_if<bool>(&v))
        out << *b;
      else
        out << number_text(std::get<double>(v), k);
    }
    out << YAML::EndMap;
  }
  out << YAML::Key << "models" << YAML::Value << YAML::BeginSeq;
  for (const auto& m : r.models) {
    out << YAML::BeginMap;
    out << YAML::Key << "model" << YAML::Value << YAML::DoubleQuoted << utf8_path(m.path);
    out << YAML::Key << "parameters" << YAML::Value << YAML::BeginMap << YAML::Key << "weight"
        << YAML::Value;
    const std::string what = "the weight of " + m.path;
    if (m.weight.size() == 1 && m.weight[0].first.empty()) {
      out << number_text(m.weight[0].second, what);
    } else {
      out << YAML::BeginSeq;
      for (const auto& [filter, v] : m.weight)
        out << YAML::Flow << YAML::BeginMap << YAML::Key << "filter" << YAML::Value
            << YAML::DoubleQuoted << filter << YAML::Key << "value" << YAML::Value
            << number_text(v, what) << YAML::EndMap;
      out << YAML::EndSeq;
    }
    out << YAML::EndMap << YAML::EndMap;
  }
  out << YAML::EndSeq << YAML::EndMap;
  if (!out.good()) throw_runtime("YAML emitter: {}", out.GetLastError());
  return fmt::format("# {}\n{}\n", comment, out.c_str());
}

Recipe parse_recipe_file(const std::filesystem::path& file) {
  return parse_recipe(read_input_file(file, "recipe", kMaxTextFileBytes), file);
}

const std::optional<std::filesystem::path>& slice_base(const Recipe& r, const RecipeSlice& s) {
  return s.base_model ? s.base_model : r.base_model;
}

std::optional<double> find_param(const Recipe& r, const RecipeSlice* slice,
                                 const RecipeModel* model, const std::string& key,
                                 std::string_view tensor, double t) {
  for (const auto* ps :
       {model ? &model->params : nullptr, slice ? &slice->params : nullptr, &r.params}) {
    if (!ps) continue;
    auto it = ps->find(key);
    if (it != ps->end())
      if (auto v = it->second.at(tensor, t)) return v;
  }
  return std::nullopt;
}

double recipe_param(const Recipe& r, const RecipeSlice* slice, const RecipeModel* model,
                    const std::string& key, std::string_view tensor, double t,
                    std::optional<double> fallback) {
  if (auto v = find_param(r, slice, model, key, tensor, t)) return *v;
  if (fallback) return *fallback;
  throw_input("{}: {}: no value of parameter '{}' for tensor {}",
              model ? model->where : r.file.string(),
              model ? model->spec : std::string("parameters"), key, tensor);
}

std::optional<int64_t> layer_index(std::string_view tensor) {
  if (auto d = layer_digits(tensor)) return d->index;
  return std::nullopt;
}

std::optional<LayerDigits> layer_digits(std::string_view tensor) {
  static constexpr std::string_view kKey = "layers.";
  size_t pos = 0;
  while ((pos = tensor.find(kKey, pos)) != std::string_view::npos) {
    size_t i = pos + kKey.size();
    int64_t v = 0;
    size_t digits = 0;
    while (i < tensor.size() && tensor[i] >= '0' && tensor[i] <= '9' && digits < 9) {
      v = v * 10 + (tensor[i] - '0');
      ++i;
      ++digits;
    }
    if (digits > 0 && (i == tensor.size() || tensor[i] == '.') &&
        (pos == 0 || tensor[pos - 1] == '.'))
      return LayerDigits{v, pos + kKey.size(), digits};
    pos += kKey.size();
  }
  return std::nullopt;
}

double layer_t(std::string_view tensor, int64_t num_layers) {
  if (auto l = layer_index(tensor))
    return num_layers <= 1 ? 0.0 : static_cast<double>(*l) / static_cast<double>(num_layers - 1);
  return tensor.find("embed") != std::string_view::npos ? 0.0 : 1.0;
}

}  // namespace kintsugi
