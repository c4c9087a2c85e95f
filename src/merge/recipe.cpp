// mergekit-compatible recipe parsing through the one strict YAML reader
// (config/yaml_reader.hpp): every key is known, no key twice, every value has
// the right type, and errors read "FILE:LINE: key.path: problem".
#include "kintsugi/merge/recipe.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/config/yaml_reader.hpp"
#include "kintsugi/io/utf8.hpp"
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
        M::BreadcrumbsTies, M::Nuslerp, M::Multislerp}},
      {"normalize",
       Kind::Bool,
       {M::Linear, M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs,
        M::BreadcrumbsTies}},
      {"lambda",
       Kind::Number,
       {M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs,
        M::BreadcrumbsTies}},
      {"density",
       Kind::Number,
       {M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs, M::BreadcrumbsTies}},
      {"gamma", Kind::Number, {M::Breadcrumbs, M::BreadcrumbsTies}},
      {"rescale",
       Kind::Bool,
       {M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs, M::BreadcrumbsTies}},
      {"int8_mask",
       Kind::Bool,
       {M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies, M::Breadcrumbs,
        M::BreadcrumbsTies}},
      {"filter_wise", Kind::Bool, {M::ModelStock}},
      {"t", Kind::Number, {M::Slerp, M::Nearswap}},
      {"nuslerp_flatten", Kind::Bool, {M::Nuslerp}},
      {"nuslerp_row_wise", Kind::Bool, {M::Nuslerp}},
      {"normalize_weights", Kind::Bool, {M::Multislerp}},
      {"eps", Kind::Number, {M::Multislerp}},
      {"max_iter", Kind::Number, {M::Karcher}},
      {"tol", Kind::Number, {M::Karcher}},
  };
  return specs;
}

std::string where(const YamlField& f) {
  return fmt::format("{}:{}", f.origin(), f.line());
}

std::optional<MergeMethod> method_from(const std::string& s) {
  static const std::map<std::string, MergeMethod> m = {{"linear", M::Linear},
                                                       {"task_arithmetic", M::TaskArithmetic},
                                                       {"ties", M::Ties},
                                                       {"dare_linear", M::DareLinear},
                                                       {"dare_ties", M::DareTies},
                                                       {"model_stock", M::ModelStock},
                                                       {"slerp", M::Slerp},
                                                       {"breadcrumbs", M::Breadcrumbs},
                                                       {"breadcrumbs_ties", M::BreadcrumbsTies},
                                                       {"nearswap", M::Nearswap},
                                                       {"nuslerp", M::Nuslerp},
                                                       {"multislerp", M::Multislerp},
                                                       {"karcher", M::Karcher}};
  auto it = m.find(s);
  if (it == m.end()) return std::nullopt;
  return it->second;
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

// A number, or a gradient: a list of at least two numbers.
std::vector<double> number_or_gradient(const YamlField& f) {
  if (!f.node().IsSequence()) return {sane_number(f)};
  const auto items = f.items();
  if (items.size() < 2) f.fail("a gradient needs at least two values");
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

std::map<std::string, ParamValue> parse_params(const YamlField& f, MergeMethod method) {
  std::map<std::string, ParamValue> out;
  for (const auto& [k, v] : f.entries()) {
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

RecipeModel parse_model(const YamlField& f, const std::filesystem::path& file, MergeMethod method) {
  const YamlMap m = f.as_map({"model", "parameters"});
  RecipeModel rm;
  rm.where = where(f);
  rm.spec = m.require("model").as_string();
  if (rm.spec.empty()) m.require("model").fail("must not be empty");
  rm.path = resolve(file, rm.spec);
  if (auto p = m.get("parameters")) rm.params = parse_params(*p, method);
  return rm;
}

}  // namespace

std::string_view merge_method_name(MergeMethod m) {
  switch (m) {
    case M::Linear:
      return "linear";
    case M::TaskArithmetic:
      return "task_arithmetic";
    case M::Ties:
      return "ties";
    case M::DareLinear:
      return "dare_linear";
    case M::DareTies:
      return "dare_ties";
    case M::ModelStock:
      return "model_stock";
    case M::Slerp:
      return "slerp";
    case M::Breadcrumbs:
      return "breadcrumbs";
    case M::BreadcrumbsTies:
      return "breadcrumbs_ties";
    case M::Nearswap:
      return "nearswap";
    case M::Nuslerp:
      return "nuslerp";
    case M::Multislerp:
      return "multislerp";
    case M::Karcher:
      return "karcher";
  }
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

Recipe parse_recipe(const std::string& text, const std::filesystem::path& file) {
  const std::string origin = file.string();
  const YamlField root(origin, parse_yaml(text, origin), "", 1);
  const YamlMap top =
      root.as_map({"models", "base_model", "merge_method", "parameters", "dtype", "out_dtype"});
  Recipe r;
  r.file = file;
  r.text = text;
  r.sha256 = sha256_hex(text);
  // The method decides which parameters are valid: read it first.
  const YamlField method_field = top.require("merge_method");
  const std::string mname = method_field.as_enum(
      {"linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "model_stock", "slerp",
       "breadcrumbs", "breadcrumbs_ties", "nearswap", "nuslerp", "multislerp", "karcher"});
  r.method = *method_from(mname);
  const YamlField models = top.require("models");
  const auto items = models.items();
  if (items.empty()) models.fail("expected a non-empty list");
  for (const auto& e : items) r.models.push_back(parse_model(e, file, r.method));
  if (auto b = top.get("base_model")) {
    r.base_model = resolve(file, b->as_string());
    r.base_where = where(*b);
  }
  if (auto p = top.get("parameters")) r.params = parse_params(*p, r.method);
  if (auto d = top.get("dtype")) r.dtype = parse_dtype(*d);
  if (auto d = top.get("out_dtype")) r.out_dtype = parse_dtype(*d);

  // Method-level rules that do not need the checkpoints.
  // nuslerp and multislerp take an optional base (task vectors when given);
  // karcher averages it as one more input.
  const bool needs_base = r.method != M::Linear && r.method != M::Nuslerp &&
                          r.method != M::Multislerp && r.method != M::Karcher;
  if (needs_base && !r.base_model) method_field.fail(fmt::format("{} needs base_model", mname));
  auto flag = [&](const std::string& key) -> std::optional<bool> {
    auto it = r.params.find(key);
    if (it == r.params.end()) return std::nullopt;
    return it->second.entries[0].values[0] != 0.0;
  };
  for (const auto& rm : r.models)
    for (const auto& [k, pv] : rm.params)
      if (k == "normalize" || k == "lambda" || k == "rescale" || k == "int8_mask" ||
          k == "filter_wise" || (k == "t" && r.method == M::Nearswap) || k == "nuslerp_flatten" ||
          k == "nuslerp_row_wise" || k == "normalize_weights" || k == "eps" || k == "max_iter" ||
          k == "tol")
        throw_input(
            "{}: parameter {} applies to the whole merge: put it under the top-level parameters",
            pv.where, k);
  if ((r.method == M::Ties || r.method == M::Breadcrumbs || r.method == M::BreadcrumbsTies) &&
      flag("rescale").value_or(false))
    throw_input("{}: {}: rescale: true (L1 rescaling of magnitude-pruned deltas) is not supported",
                r.params.at("rescale").where, mname);
  // Ranges a gradient cannot leave: checked on every value as written.
  auto check_values = [](const ParamValue& pv, const std::string& key, auto ok,
                         const char* expected) {
    for (const auto& e : pv.entries)
      for (double v : e.values)
        if (!ok(v)) throw_input("{}: {}: {} is {}", pv.where, key, v, expected);
  };
  auto in_unit = [](double v) { return v >= 0.0 && v <= 1.0; };
  std::vector<const std::map<std::string, ParamValue>*> all_params{&r.params};
  for (const auto& rm : r.models) all_params.push_back(&rm.params);
  for (const auto* ps : all_params)
    for (const auto& [k, pv] : *ps) {
      if (k == "gamma") check_values(pv, k, in_unit, "outside [0, 1]");
      if (k == "density" && (r.method == M::Breadcrumbs || r.method == M::BreadcrumbsTies))
        check_values(pv, k, in_unit, "outside [0, 1]");
      if (k == "t" && r.method == M::Nearswap)
        check_values(
            pv, k, [](double v) { return v > 0.0; }, "not > 0 (nearswap needs t > 0)");
      if (k == "eps")
        check_values(
            pv, k, [](double v) { return v > 0.0; }, "not > 0");
      if (k == "tol")
        check_values(
            pv, k, [](double v) { return v >= 0.0; }, "negative");
      if (k == "max_iter")
        check_values(
            pv, k, [](double v) { return v >= 0.0 && v == std::floor(v); },
            "not a whole number >= 0");
    }
  if (r.method == M::Nearswap) {
    if (!r.params.count("t")) method_field.fail("nearswap needs parameters: t");
    // mergekit's nearswap takes exactly two models, the base and one other.
    std::error_code e1;
    const auto base = std::filesystem::weakly_canonical(*r.base_model, e1);
    size_t others = 0;
    for (const auto& rm : r.models) {
      std::error_code e2;
      const auto p = std::filesystem::weakly_canonical(rm.path, e2);
      if (!((!e1 && !e2) ? p == base : rm.path == *r.base_model)) ++others;
    }
    if (others != 1)
      models.fail(fmt::format(
          "nearswap merges base_model with exactly one other model, got {} besides the base",
          others));
  }
  if (r.method == M::ModelStock && flag("filter_wise").value_or(false))
    throw_input("{}: model_stock: filter_wise: true is not supported",
                r.params.at("filter_wise").where);
  if (r.method == M::Slerp && !r.params.count("t")) method_field.fail("slerp needs parameters: t");
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

double recipe_param(const Recipe& r, const RecipeModel* model, const std::string& key,
                    std::string_view tensor, double t, std::optional<double> fallback) {
  if (model) {
    auto it = model->params.find(key);
    if (it != model->params.end())
      if (auto v = it->second.at(tensor, t)) return *v;
  }
  auto it = r.params.find(key);
  if (it != r.params.end())
    if (auto v = it->second.at(tensor, t)) return *v;
  if (fallback) return *fallback;
  throw_input("{}: {}: no value of parameter '{}' for tensor {}",
              model ? model->where : r.file.string(),
              model ? model->spec : std::string("parameters"), key, tensor);
}

std::optional<int64_t> layer_index(std::string_view tensor) {
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
      return v;
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
