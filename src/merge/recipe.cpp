// mergekit-compatible recipe parsing (yaml-cpp), strict: every key is known,
// every value has the right type, and errors name file:line.
#include "kintsugi/merge/recipe.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "kintsugi/common/error.hpp"
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
      {"weight", Kind::Number, {M::Linear, M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies}},
      {"normalize",
       Kind::Bool,
       {M::Linear, M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies}},
      {"lambda", Kind::Number, {M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies}},
      {"density", Kind::Number, {M::Ties, M::DareLinear, M::DareTies}},
      {"rescale", Kind::Bool, {M::Ties, M::DareLinear, M::DareTies}},
      {"int8_mask", Kind::Bool, {M::TaskArithmetic, M::Ties, M::DareLinear, M::DareTies}},
      {"filter_wise", Kind::Bool, {M::ModelStock}},
      {"t", Kind::Number, {M::Slerp}},
  };
  return specs;
}

struct Ctx {
  std::string file;
  std::string at(const YAML::Node& n) const {
    return n.Mark().is_null() ? file : fmt::format("{}:{}", file, n.Mark().line + 1);
  }
};

std::optional<MergeMethod> method_from(const std::string& s) {
  static const std::map<std::string, MergeMethod> m = {
      {"linear", M::Linear},      {"task_arithmetic", M::TaskArithmetic},
      {"ties", M::Ties},          {"dare_linear", M::DareLinear},
      {"dare_ties", M::DareTies}, {"model_stock", M::ModelStock},
      {"slerp", M::Slerp}};
  auto it = m.find(s);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

std::string scalar(const Ctx& c, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) throw_input("{}: {}: expected a string", c.at(n), key);
  return n.Scalar();
}

double number(const Ctx& c, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) throw_input("{}: {}: expected a number", c.at(n), key);
  double v = 0;
  if (!YAML::convert<double>::decode(n, v) || !std::isfinite(v))
    throw_input("{}: {}: expected a number, got '{}'", c.at(n), key, n.Scalar());
  return v;
}

bool boolean(const Ctx& c, const YAML::Node& n, const std::string& key) {
  bool v = false;
  if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v))
    throw_input("{}: {}: expected true or false", c.at(n), key);
  return v;
}

std::vector<double> number_or_gradient(const Ctx& c, const YAML::Node& n, const std::string& key) {
  if (n.IsScalar()) return {number(c, n, key)};
  if (n.IsSequence()) {
    if (n.size() < 2) throw_input("{}: {}: a gradient needs at least two values", c.at(n), key);
    std::vector<double> v;
    for (const auto& e : n) v.push_back(number(c, e, key));
    return v;
  }
  throw_input("{}: {}: expected a number or a list of numbers", c.at(n), key);
}

ParamValue parse_param(const Ctx& c, const YAML::Node& n, const ParamSpec& spec) {
  ParamValue pv;
  pv.where = c.at(n);
  const std::string key = spec.name;
  if (spec.kind == Kind::Bool) {
    pv.entries.push_back({"", {boolean(c, n, key) ? 1.0 : 0.0}});
    return pv;
  }
  if (n.IsSequence() && n.size() > 0 && n[0].IsMap()) {
    for (const auto& e : n) {
      if (!e.IsMap()) throw_input("{}: {}: expected {{filter: ..., value: ...}}", c.at(e), key);
      ParamValue::Entry entry;
      bool has_value = false;
      for (const auto& kv : e) {
        const std::string k = scalar(c, kv.first, key);
        if (k == "filter") {
          entry.filter = scalar(c, kv.second, key + ".filter");
        } else if (k == "value") {
          entry.values = number_or_gradient(c, kv.second, key);
          has_value = true;
        } else {
          throw_input("{}: {}: unknown key '{}' (expected filter, value)", c.at(kv.first), key, k);
        }
      }
      if (!has_value) throw_input("{}: {}: entry without a value", c.at(e), key);
      if (entry.filter == "*") entry.filter.clear();
      pv.entries.push_back(std::move(entry));
    }
    return pv;
  }
  pv.entries.push_back({"", number_or_gradient(c, n, key)});
  return pv;
}

std::map<std::string, ParamValue> parse_params(const Ctx& c, const YAML::Node& n,
                                               MergeMethod method, const std::string& what) {
  if (!n.IsMap()) throw_input("{}: {}: expected a mapping", c.at(n), what);
  std::map<std::string, ParamValue> out;
  for (const auto& kv : n) {
    const std::string k = scalar(c, kv.first, what);
    const auto& specs = param_specs();
    auto it =
        std::find_if(specs.begin(), specs.end(), [&](const ParamSpec& s) { return k == s.name; });
    if (it == specs.end() || !it->methods.count(method))
      throw_input("{}: {}: unknown parameter '{}' for merge_method {}", c.at(kv.first), what, k,
                  merge_method_name(method));
    out[k] = parse_param(c, kv.second, *it);
  }
  return out;
}

DType parse_dtype(const Ctx& c, const YAML::Node& n, const std::string& key) {
  const std::string s = scalar(c, n, key);
  if (s == "bfloat16" || s == "bf16") return DType::BF16;
  if (s == "float16" || s == "fp16" || s == "half") return DType::F16;
  if (s == "float32" || s == "fp32" || s == "float") return DType::F32;
  throw_input("{}: {}: unknown dtype '{}' (expected bfloat16, float16 or float32)", c.at(n), key,
              s);
}

std::filesystem::path resolve(const std::filesystem::path& recipe, const std::string& spec) {
  std::filesystem::path p(spec);
  if (p.is_absolute() || std::filesystem::exists(p)) return p;
  const auto beside = recipe.parent_path() / p;
  if (std::filesystem::exists(beside)) return beside;
  return p;
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
  Ctx c{file.string()};
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw_input("{}:{}: invalid YAML: {}", c.file, e.mark.line + 1, e.msg);
  }
  if (!root.IsMap()) throw_input("{}: expected a mapping at the top level", c.file);
  Recipe r;
  r.file = file;
  r.text = text;
  r.sha256 = sha256_hex(text);
  // The method decides which parameters are valid: read it first.
  const YAML::Node method_node = root["merge_method"];
  if (!method_node) throw_input("{}: missing key merge_method", c.file);
  const std::string mname = scalar(c, method_node, "merge_method");
  auto m = method_from(mname);
  if (!m)
    throw_input(
        "{}: merge_method: unknown method '{}' (expected linear, task_arithmetic, ties, "
        "dare_linear, dare_ties, model_stock, slerp)",
        c.at(method_node), mname);
  r.method = *m;
  for (const auto& kv : root) {
    const std::string k = scalar(c, kv.first, "key");
    const YAML::Node& v = kv.second;
    if (k == "merge_method") continue;
    if (k == "models") {
      if (!v.IsSequence() || v.size() == 0)
        throw_input("{}: models: expected a non-empty list", c.at(v));
      for (const auto& e : v) {
        RecipeModel rm;
        rm.where = c.at(e);
        if (!e.IsMap())
          throw_input("{}: models: expected {{model: PATH, parameters: ...}}", c.at(e));
        for (const auto& mk : e) {
          const std::string key = scalar(c, mk.first, "models");
          if (key == "model") {
            rm.spec = scalar(c, mk.second, "model");
            rm.path = resolve(file, rm.spec);
          } else if (key == "parameters") {
            rm.params = parse_params(c, mk.second, r.method, "parameters");
          } else {
            throw_input("{}: models: unknown key '{}' (expected model, parameters)", c.at(mk.first),
                        key);
          }
        }
        if (rm.spec.empty()) throw_input("{}: models: entry without 'model'", c.at(e));
        r.models.push_back(std::move(rm));
      }
    } else if (k == "base_model") {
      r.base_model = resolve(file, scalar(c, v, k));
      r.base_where = c.at(v);
    } else if (k == "parameters") {
      r.params = parse_params(c, v, r.method, "parameters");
    } else if (k == "dtype") {
      r.dtype = parse_dtype(c, v, k);
    } else if (k == "out_dtype") {
      r.out_dtype = parse_dtype(c, v, k);
    } else {
      throw_input(
          "{}: unknown key '{}' (expected models, base_model, merge_method, parameters, dtype, "
          "out_dtype)",
          c.at(kv.first), k);
    }
  }
  if (r.models.empty()) throw_input("{}: missing key models", c.file);

  // Method-level rules that do not need the checkpoints.
  const bool needs_base = r.method != M::Linear;
  if (needs_base && !r.base_model)
    throw_input("{}: merge_method {} needs base_model", c.at(method_node), mname);
  auto flag = [&](const std::string& key) -> std::optional<bool> {
    auto it = r.params.find(key);
    if (it == r.params.end()) return std::nullopt;
    return it->second.entries[0].values[0] != 0.0;
  };
  for (const auto& rm : r.models)
    for (const auto& [k, pv] : rm.params)
      if (k == "normalize" || k == "lambda" || k == "rescale" || k == "int8_mask" ||
          k == "filter_wise")
        throw_input(
            "{}: parameter {} applies to the whole merge: put it under the top-level parameters",
            pv.where, k);
  if (r.method == M::Ties && flag("rescale").value_or(false))
    throw_input(
        "{}: ties: rescale: true (L1 rescaling of magnitude-pruned deltas) is not supported",
        r.params.at("rescale").where);
  if (r.method == M::ModelStock && flag("filter_wise").value_or(false))
    throw_input("{}: model_stock: filter_wise: true is not supported",
                r.params.at("filter_wise").where);
  if (r.method == M::Slerp && !r.params.count("t"))
    throw_input("{}: slerp needs parameters: t", c.at(method_node));
  return r;
}

Recipe parse_recipe_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw_input("{}: cannot read the recipe", file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_recipe(ss.str(), file);
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
