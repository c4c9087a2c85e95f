// The file-to-file merge: open the pool, check it, plan the output, merge each
// tensor's share on every rank, write, commit.
#include "kintsugi/merge/engine.hpp"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/progress.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"
#include "kintsugi/merge/tensor_merge.hpp"
#include "kintsugi/pool/flat_plan.hpp"
#include "kintsugi/pool/model_config.hpp"
#include "kintsugi/pool/pool.hpp"
#include "kintsugi/pool/vocab.hpp"

namespace kintsugi {
namespace fs = std::filesystem;
namespace {

bool mergeable(DType d) {
  return d == DType::BF16 || d == DType::F16 || d == DType::F32;
}

std::string torch_dtype(DType d) {
  switch (d) {
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    default:
      return "float32";
  }
}

bool same_path(const fs::path& a, const fs::path& b) {
  std::error_code e1, e2;
  const auto ca = fs::weakly_canonical(a, e1), cb = fs::weakly_canonical(b, e2);
  return (!e1 && !e2) ? ca == cb : a == b;
}

// One input of an output tensor: a tensor of an opened checkpoint.
struct TensorInput {
  const HfCheckpoint* ckpt = nullptr;
  std::string name;  // its name there
  const TensorInfo& info() const { return ckpt->info(name); }
  const void* data() const { return ckpt->file_of(name).bytes(info()).data(); }
};

// One output tensor as the plan has it: its name, dtype and shape, the input
// tensors it is made of (the base, when the method has one, and the models in
// recipe order; with slices, each at its own layer) and the method with its
// parameters resolved for this tensor.
struct PlannedTensor {
  TensorSpec spec;
  std::optional<TensorInput> base;
  std::vector<TensorInput> models;
  TensorMethod method;
  // slices with tokenizer settings: a token-indexed tensor's own vocabulary
  // plan (OutputPlan::tensor_vocabs; -1: the merge's, for models recipes).
  int64_t vocab = -1;
  // Tensors the kernels do not merge (integers, ...) are copied from here.
  const TensorInput& first() const { return base ? *base : models.front(); }
};

// Per-tensor method settings from the recipe. Per-model parameters are looked
// up with each input's own tensor name, the method's global ones with the
// output tensor's (as mergekit does; the names differ only with slices).
TensorMethod resolve_method(const Recipe& r, const RecipeSlice* slice,
                            const std::vector<const RecipeModel*>& models, const PlannedTensor& pt,
                            double t, uint64_t seed) {
  TensorMethod m;
  m.method = r.method;
  m.seed = seed;
  const std::string& name = pt.spec.name;
  auto model_param = [&](size_t i, const std::string& key, std::optional<double> fallback) {
    return recipe_param(r, slice, models[i], key, pt.models[i].name, t, fallback);
  };
  auto global_param = [&](const std::string& key, std::optional<double> fallback) {
    return recipe_param(r, slice, nullptr, key, name, t, fallback);
  };
  const bool task = r.method == MergeMethod::TaskArithmetic || r.method == MergeMethod::Ties ||
                    r.method == MergeMethod::DareLinear || r.method == MergeMethod::DareTies ||
                    r.method == MergeMethod::Breadcrumbs ||
                    r.method == MergeMethod::BreadcrumbsTies || r.method == MergeMethod::Della ||
                    r.method == MergeMethod::DellaLinear;
  if (r.method == MergeMethod::Passthrough) {
    if (auto scale = find_param(r, slice, models[0], "scale", pt.models[0].name, t))
      m.weights.push_back(static_cast<float>(*scale));
    return m;
  }
  if (r.method == MergeMethod::Sce) {
    m.select_topk = global_param("select_topk", 1.0);
    return m;
  }
  if (r.method == MergeMethod::Ram || r.method == MergeMethod::RamplusTl) {
    m.ram_epsilon = global_param("epsilon", 1e-5);  // mergekit's defaults
    if (r.method == MergeMethod::RamplusTl) {
      m.ram_r = global_param("r", 0.1);
      m.ram_alpha = global_param("alpha", 0.2);
    }
    return m;
  }
  if (r.method == MergeMethod::ArceeFusion) return m;
  if (r.method == MergeMethod::CoreSpace) {
    // mergekit's core_space averages a dense tensor over its distinct inputs
    // (the base among them; the plan leaves one of each); it merges only
    // LoRA factors (names with lora_ or adapter) in its low-rank core space.
    if (name.find("lora_") != std::string::npos || name.find("adapter") != std::string::npos)
      throw_input(
          "{}: core_space: tensor {} is a LoRA or adapter tensor: core_space's low-rank merge of "
          "LoRA factors is not supported (kintsugi averages dense tensors only)",
          r.file.string(), name);
    m.method = MergeMethod::Linear;
    m.weights.assign(models.size(), static_cast<float>(1.0 / static_cast<double>(models.size())));
    return m;
  }
  if (r.method == MergeMethod::EncoderDecoderWeighted) {
    // mergekit's encoder_decoder_weighted: a linear merge whose weights are
    // each model's decoder_weight for tensors named "decoder" (cross_weight,
    // default the mean of the two, for "decoder" and "encoder_attn"), else its
    // encoder_weight; each set normalized to sum 1 (all equal when it sums to 0).
    const bool decoder = name.find("decoder") != std::string::npos;
    const bool cross = decoder && name.find("encoder_attn") != std::string::npos;
    std::vector<double> w;
    double sum = 0;
    for (size_t i = 0; i < models.size(); ++i) {
      const double e = model_param(i, "encoder_weight", std::nullopt);
      const double d = model_param(i, "decoder_weight", std::nullopt);
      const auto c = find_param(r, slice, models[i], "cross_weight", pt.models[i].name, t);
      w.push_back(cross ? (c ? *c : (e + d) / 2) : decoder ? d : e);
      sum += w.back();
    }
    m.method = MergeMethod::Linear;
    for (double x : w)
      m.weights.push_back(
          static_cast<float>(sum == 0.0 ? 1.0 / static_cast<double>(w.size()) : x / sum));
    return m;
  }
  if (r.method == MergeMethod::Cabs) {
    // mergekit's cabs: the models in pruning_order, else sorted by name; each
    // model's n:m its own, else the merge's default_n_val:default_m_val,
    // else 1:4.
    std::vector<size_t> order;
    for (const auto& want : r.pruning_order)
      for (size_t i = 0; i < models.size(); ++i)
        if (models[i]->spec == want) order.push_back(i);
    if (r.pruning_order.empty()) {
      for (size_t i = 0; i < models.size(); ++i) order.push_back(i);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return models[a]->spec < models[b]->spec; });
    }
    KS_CHECK(order.size() == models.size(), "cabs: every model once in pruning_order");
    for (size_t i : order) {
      auto n = find_param(r, slice, models[i], "n_val", pt.models[i].name, t);
      auto mv = find_param(r, slice, models[i], "m_val", pt.models[i].name, t);
      if (!n || !mv) {
        n = find_param(r, slice, nullptr, "default_n_val", name, t);
        mv = find_param(r, slice, nullptr, "default_m_val", name, t);
      }
      const double nn = n && mv ? *n : 1.0, mm = n && mv ? *mv : 4.0;
      if (nn != std::floor(nn) || mm != std::floor(mm) || nn < 0.0 || mm < 1.0 || nn > mm ||
          mm > kMaxCabsBlock)
        throw_input(
            "{}: cabs: n_val {} and m_val {} for tensor {}: need whole numbers 0 <= n <= m, "
            "1 <= m <= {}",
            models[i]->where, nn, mm, name, kMaxCabsBlock);
      m.keep_n.push_back(static_cast<uint32_t>(nn));
      m.block_m.push_back(static_cast<uint32_t>(mm));
      m.weights.push_back(static_cast<float>(model_param(i, "weight", 1.0)));
    }
    if (cabs_superblock(m.block_m) == 0)
      throw_input(
          "{}: cabs: the block sizes m_val of tensor {} have a least common multiple above {}",
          r.file.string(), name, kMaxCabsBlock);
    m.order = order;
    return m;
  }
  if (r.method == MergeMethod::Lrp) {
    // mergekit's lrp: each model's delta keeps its int(density * numel)
    // largest |entries| and is weighted by weight / (sum of the weights).
    // (mergekit's optional LRP relevance files are torch pickles, not read.)
    double sum = 0;
    std::vector<double> w;
    for (size_t i = 0; i < models.size(); ++i) {
      w.push_back(model_param(i, "weight", 1.0));
      sum += w.back();
    }
    if (sum == 0.0)
      throw_input("{}: lrp: the weights of tensor {} sum to zero", r.file.string(), name);
    for (double x : w) m.weights.push_back(static_cast<float>(x / sum));
    const double d = global_param("density", 0.7);
    if (d < 0.0 || d > 1.0)
      throw_input("{}: lrp: density {} for tensor {} is outside [0, 1]", r.file.string(), d, name);
    m.density.assign(models.size(), d);
    m.normalize = false;
    m.rescale = false;
    return m;
  }
  if (r.method == MergeMethod::Linear || task) {
    std::vector<double> w;
    for (size_t i = 0; i < models.size(); ++i) w.push_back(model_param(i, "weight", std::nullopt));
    if (r.method == MergeMethod::Linear) {
      const bool normalize = global_param("normalize", 1.0) != 0.0;
      double sum = 0;
      for (double x : w) sum += x;
      if (normalize && std::fabs(sum) < 1e-12)
        throw_input("{}: linear: the weights of tensor {} sum to zero (set normalize: false)",
                    r.file.string(), name);
      for (double x : w) m.weights.push_back(static_cast<float>(normalize ? x / sum : x));
      return m;
    }
    for (double x : w) m.weights.push_back(static_cast<float>(x));
    const bool ties_like = r.method == MergeMethod::Ties || r.method == MergeMethod::Della;
    const bool dare = r.method == MergeMethod::DareLinear || r.method == MergeMethod::DareTies ||
                      r.method == MergeMethod::Della || r.method == MergeMethod::DellaLinear;
    m.lambda = global_param("lambda", 1.0);
    m.normalize = global_param("normalize", ties_like ? 1.0 : 0.0) != 0.0;
    m.rescale = global_param("rescale", dare ? 1.0 : 0.0) != 0.0;
    if (r.method != MergeMethod::TaskArithmetic)
      for (size_t i = 0; i < models.size(); ++i) {
        const double d = model_param(i, "density", 1.0);
        if (d < 0.0 || d > 1.0)
          throw_input("{}: density {} for tensor {} is outside [0, 1]", models[i]->where, d, name);
        m.density.push_back(d);
      }
    if (r.method == MergeMethod::Breadcrumbs || r.method == MergeMethod::BreadcrumbsTies)
      for (size_t i = 0; i < models.size(); ++i) {
        const double g = model_param(i, "gamma", 0.01);  // mergekit's default
        if (g < 0.0 || g > 1.0)
          throw_input("{}: gamma {} for tensor {} is outside [0, 1]", models[i]->where, g, name);
        m.gamma.push_back(g);
      }
    if (r.method == MergeMethod::Della || r.method == MergeMethod::DellaLinear)
      for (size_t i = 0; i < models.size(); ++i) {
        const double e = model_param(i, "epsilon", 0.15);  // mergekit's
        const double d = m.density[i];
        // mergekit refuses probabilities density -+ epsilon outside (0, 1)
        // (where it prunes at all: 0 < density < 1).
        if (d > 0.0 && d < 1.0 && !(d - e > 0.0 && d + e < 1.0 && d + e > 0.0 && d - e < 1.0))
          throw_input(
              "{}: density {} and epsilon {} for tensor {}: density -+ epsilon must lie in (0, 1)",
              models[i]->where, d, e, name);
        m.epsilon.push_back(e);
      }
    return m;
  }
  if (r.method == MergeMethod::Slerp || r.method == MergeMethod::Nearswap)
    m.t = global_param("t", std::nullopt);
  if (r.method == MergeMethod::Nuslerp) {
    // mergekit: t = weight_1 / (weight_0 + weight_1), 0.5 when that sum is ~0.
    const double w0 = model_param(0, "weight", std::nullopt);
    const double w1 = model_param(1, "weight", std::nullopt);
    m.t = std::fabs(w0 + w1) < 1e-6 ? 0.5 : w1 / (w0 + w1);
    m.flatten = global_param("nuslerp_flatten", 1.0) != 0.0;
    m.row_wise = global_param("nuslerp_row_wise", 0.0) != 0.0;
  }
  if (r.method == MergeMethod::Multislerp) {
    m.normalize_weights = global_param("normalize_weights", 1.0) != 0.0;
    m.eps = global_param("eps", 1e-8);
    if (!(m.eps > 0.0))
      throw_input("{}: multislerp: eps {} for tensor {} is not > 0", r.file.string(), m.eps, name);
    double sum = 0;
    for (size_t i = 0; i < models.size(); ++i) {
      m.sphere_weights.push_back(model_param(i, "weight", std::nullopt));
      sum += m.sphere_weights.back();
    }
    if (m.normalize_weights && models.size() > 1) {
      if (std::fabs(sum) < 1e-12)
        throw_input(
            "{}: multislerp: the weights of tensor {} sum to zero (set normalize_weights: false)",
            r.file.string(), name);
      for (double& w : m.sphere_weights) w /= sum;
    }
  }
  if (r.method == MergeMethod::Karcher) {
    const double it = global_param("max_iter", 10.0);
    if (it < 0.0 || it != std::floor(it))
      throw_input("{}: karcher: max_iter {} for tensor {} is not a whole number >= 0",
                  r.file.string(), it, name);
    m.max_iter = static_cast<int64_t>(it);
    m.tol = global_param("tol", 1e-5);
    if (m.tol < 0.0)
      throw_input("{}: karcher: tol {} for tensor {} is negative", r.file.string(), m.tol, name);
  }
  return m;
}

// Methods that take a base model apart from the others (every method but
// linear and passthrough, which merge all their inputs alike).
bool uses_base(MergeMethod m) {
  return m != MergeMethod::Linear && m != MergeMethod::Passthrough &&
         m != MergeMethod::EncoderDecoderWeighted && m != MergeMethod::CoreSpace;
}

// How many models besides the base a method takes: checked per merge (models)
// or per slice (has_base: the base is among the inputs); `where` names the
// place in the recipe.
void check_model_count(const Recipe& r, size_t n, bool has_base, const std::string& where) {
  const std::string method(merge_method_name(r.method));
  if ((r.method == MergeMethod::Slerp || r.method == MergeMethod::Nearswap ||
       r.method == MergeMethod::ArceeFusion) &&
      n != 1)
    throw_input("{}: {} merges the base with exactly one other model, got {}", where, method, n);
  if (r.method == MergeMethod::Nuslerp && n != 2)
    throw_input("{}: nuslerp merges exactly two models (and an optional base_model), got {}{}",
                where, n, has_base ? " besides the base" : "");
  if (r.method == MergeMethod::ModelStock && n < 2)
    throw_input("{}: model_stock needs at least two models besides the base, got {}", where, n);
  if (n == 0) throw_input("{}: {} needs at least one model besides the base", where, method);
  if (n > kMaxMergeInputs)
    throw_input("{}: {} models, at most {} supported", where, n, kMaxMergeInputs);
}

// Layers of a checkpoint: num_hidden_layers in config.json, else the
// largest layer index + 1.
int64_t num_layers_of(const HfCheckpoint& ref) {
  const auto& cfg = ref.config();
  if (cfg.is_object() && cfg.contains("num_hidden_layers") &&
      cfg["num_hidden_layers"].is_number_integer() && cfg["num_hidden_layers"].get<int64_t>() > 0)
    return cfg["num_hidden_layers"].get<int64_t>();
  int64_t n = 0;
  for (const auto& name : ref.tensor_names())
    if (auto l = layer_index(name)) n = std::max(n, *l + 1);
  return n;
}

// Where the recipe needs to know which tensors are layers, as "file:line:
// what" for messages: slices, or a gradient (evaluated at the layer index).
std::optional<std::string> layer_mapping_use(const Recipe& r) {
  if (!r.slices.empty()) return r.slices[0].where + ": slices";
  std::vector<const std::map<std::string, ParamValue>*> levels{&r.params};
  for (const auto& m : r.models) levels.push_back(&m.params);
  for (const auto* ps : levels)
    for (const auto& [k, pv] : *ps)
      for (const auto& e : pv.entries)
        if (e.values.size() > 1) return fmt::format("{}: the gradient of {}", pv.where, k);
  return std::nullopt;
}

// Slices and gradients over a checkpoint whose layers kintsugi cannot name
// (GPT-2's h.N, BERT's encoder.layer.N, an encoder-decoder's two stacks, a
// VLM's vision tower) would silently treat its layers as other tensors:
// refused, naming the checkpoint and its architecture. A checkpoint without
// config.json's architectures passes when it has model.layers.N tensors.
void check_layer_layout(const HfCheckpoint& c, const std::string& use) {
  const auto& cfg = c.config();
  if (cfg.is_object() && cfg.contains("architectures") && cfg["architectures"].is_array() &&
      !cfg["architectures"].empty()) {
    for (const auto& a : cfg["architectures"]) {
      const std::string arch = a.is_string() ? a.get<std::string>() : a.dump();
      if (!is_supported_architecture(arch))
        throw_input(
            "{} over layers: {} is {} (config.json architectures), whose layers kintsugi does "
            "not map (it maps model.layers.N of {})",
            use, c.path().string(), arch, supported_architectures_text());
    }
    return;
  }
  for (const auto& n : c.tensor_names())
    if (layer_index(n)) return;
  throw_input(
      "{} over layers: {} has no architectures in a config.json and no tensor named "
      "model.layers.N.*: its layers are unknown",
      use, c.path().string());
}

// The recipe's checkpoints, each opened once.
struct MergeInputs {
  std::deque<HfCheckpoint> opened;  // stable addresses
  // models: the base (when the method uses one) and the models that are not
  // the base, checked for count and compatibility.
  const HfCheckpoint* base = nullptr;
  std::vector<const RecipeModel*> models;  // recipe entries of `ckpts`, same order
  std::vector<const HfCheckpoint*> ckpts;
  // slices: each slice's sources' checkpoints, in order, and which source is
  // the base (methods with a base).
  std::vector<std::vector<const HfCheckpoint*>> slice_ckpts;
  std::vector<std::optional<size_t>> slice_base;
  // The checkpoint whose config.json and extra files the output takes (and,
  // for models, whose tensor names and shapes).
  const HfCheckpoint* donor = nullptr;
  // With tokenizer settings: the output vocabulary and each member's rows of
  // it. models: the base (when used), then ckpts; slices: the tokenizer's base
  // (base_model, else the first slice's first source), then every other
  // source of the slices, each once.
  std::optional<VocabPlan> vocab;
  std::vector<const HfCheckpoint*> vocab_members;
  // core_space: the base as an input when no model entry names it.
  std::deque<RecipeModel> added;

  const HfCheckpoint& open(const fs::path& p) {
    for (const auto& c : opened)
      if (same_path(c.path(), p)) return c;
    return opened.emplace_back(HfCheckpoint::open(p));
  }
};

// Every input file's pages unmapped on all threads (SafetensorsFile::drop_pages),
// not one file after another by the destructors when `in` goes.
void release_inputs(const MergeInputs& in) {
  std::vector<const SafetensorsFile*> files;
  for (const HfCheckpoint& c : in.opened)
    for (const auto& f : c.files()) files.push_back(f.get());
  SafetensorsFile::drop_pages(files);
}

// The recipe's tokenizer settings with models as indices of `members`.
VocabSpec vocab_spec(const RecipeVocab& v, std::span<const HfCheckpoint* const> members) {
  auto index_of = [&](const fs::path& p, const std::string& where) {
    for (size_t i = 0; i < members.size(); ++i)
      if (same_path(members[i]->path(), p)) return i;
    throw_input("{}: {} takes no part in this merge (linear ignores base_model)", where,
                p.string());
  };
  VocabSpec s;
  s.source = v.source;
  s.where = v.where;
  s.pad_to_multiple_of = v.pad_to_multiple_of;
  if (v.source == VocabSpec::Source::Model) s.model = index_of(v.model, v.where);
  for (const auto& [token, rule] : v.tokens) {
    TokenRowRule t;
    t.kind = rule.kind;
    t.force = rule.force;
    t.token_id = rule.token_id;
    t.token = rule.token;
    t.where = rule.where;
    if (rule.kind == TokenRowRule::Kind::Model || rule.kind == TokenRowRule::Kind::ModelToken)
      t.member = index_of(rule.model, rule.where);
    s.tokens.emplace_back(token, std::move(t));
  }
  return s;
}

MergeInputs open_inputs(const Recipe& r) {
  MergeInputs in;
  const std::optional<std::string> layer_use = layer_mapping_use(r);
  if (!r.slices.empty()) {
    // base_model gives the config (mergekit's donor) even where the method
    // does not merge against it; else the first slice's first source.
    in.donor = r.base_model ? &in.open(*r.base_model) : &in.open(r.slices[0].sources[0].path);
    check_layer_layout(*in.donor, *layer_use);
    for (const auto& sl : r.slices) {
      auto& ckpts = in.slice_ckpts.emplace_back();
      auto& base = in.slice_base.emplace_back();
      const auto& base_model = slice_base(r, sl);  // the slice's own, else the recipe's
      for (size_t i = 0; i < sl.sources.size(); ++i) {
        const RecipeModel& src = sl.sources[i];
        ckpts.push_back(&in.open(src.path));
        check_layer_layout(*ckpts.back(), *layer_use);
        const int64_t n = num_layers_of(*ckpts.back());
        if (src.layers->end > n)
          throw_input("{}: layer_range [{}, {}) is outside the {} layers of {}", src.layers->where,
                      src.layers->begin, src.layers->end, n, src.spec);
        // At most once: a slice lists a model once (parse_recipe).
        if (uses_base(r.method) && base_model && same_path(src.path, *base_model)) base = i;
      }
      if (uses_base(r.method) && base_model && !base)
        throw_input("{}: {} needs base_model ({}) among this slice's sources", sl.where,
                    merge_method_name(r.method), base_model->string());
      if (r.method != MergeMethod::Passthrough)
        check_model_count(r, sl.sources.size() - (base ? 1 : 0), base.has_value(), sl.where);
    }
    if (r.vocab) {
      // mergekit's BuildTokenizer: the recipe's base and every referenced model.
      in.vocab_members.push_back(in.donor);
      for (const auto& ckpts : in.slice_ckpts)
        for (const auto* c : ckpts)
          if (std::find(in.vocab_members.begin(), in.vocab_members.end(), c) ==
              in.vocab_members.end())
            in.vocab_members.push_back(c);
      in.vocab = plan_vocab(in.vocab_members, vocab_spec(*r.vocab, in.vocab_members));
      spdlog::info("vocabulary: {} tokens ({} added to the source's), {} rows", in.vocab->vocab,
                   in.vocab->added, in.vocab->rows);
    }
    return in;
  }
  if (r.base_model && uses_base(r.method)) in.base = &in.open(*r.base_model);
  // core_space merges its distinct inputs, the base among them (first, when
  // no model entry names it): mergekit keys the tensors by model.
  if (r.method == MergeMethod::CoreSpace && r.base_model &&
      std::none_of(r.models.begin(), r.models.end(),
                   [&](const RecipeModel& rm) { return same_path(rm.path, *r.base_model); })) {
    RecipeModel& b = in.added.emplace_back();
    b.spec = r.base_model->string();
    b.path = *r.base_model;
    b.where = r.base_where;
    in.models.push_back(&b);
    in.ckpts.push_back(&in.open(b.path));
  }
  for (const auto& rm : r.models) {
    if (in.base && same_path(rm.path, *r.base_model)) continue;
    if (r.method == MergeMethod::CoreSpace &&
        std::any_of(in.models.begin(), in.models.end(),
                    [&](const RecipeModel* m) { return same_path(m->path, rm.path); }))
      continue;
    in.models.push_back(&rm);
    in.ckpts.push_back(&in.open(rm.path));
  }
  if (r.method != MergeMethod::Passthrough)
    check_model_count(r, in.ckpts.size(), in.base != nullptr, r.file.string());
  std::vector<const HfCheckpoint*> all;
  if (in.base) all.push_back(in.base);
  for (const auto* c : in.ckpts) all.push_back(c);
  if (layer_use)
    for (const auto* c : all) check_layer_layout(*c, *layer_use);
  in.donor = in.base ? in.base : in.ckpts[0];
  if (!r.vocab) {
    check_pool_compatible(all);
    return in;
  }
  check_pool_compatible_vocab(all);
  in.vocab = plan_vocab(all, vocab_spec(*r.vocab, all));
  in.vocab_members = all;
  spdlog::info("vocabulary: {} tokens ({} added to the source's), {} rows", in.vocab->vocab,
               in.vocab->added, in.vocab->rows);
  return in;
}

// Everything the merge reads, which its output must stay apart from.
std::vector<NamedPath> input_paths(const Recipe& r, const MergeOptions& opt) {
  std::vector<NamedPath> in;
  if (!r.file.empty()) in.push_back({"recipe", r.file});
  if (r.base_model) in.push_back({"base model", *r.base_model});
  for (const auto& m : r.models) in.push_back({"checkpoint", m.path});
  for (const auto& sl : r.slices) {
    if (sl.base_model) in.push_back({"base model", *sl.base_model});
    for (const auto& src : sl.sources) in.push_back({"checkpoint", src.path});
  }
  for (const auto& p : opt.other_inputs) in.push_back(p);
  return in;
}

// What the output holds, tensor by tensor (floating tensors in the recipe's
// dtype), laid out in shards, and its config.json.
// A token-indexed tensor's vocabulary plan over its own inputs (slices).
struct TensorVocab {
  VocabPlan plan;
  std::vector<const HfCheckpoint*> members;  // its inputs, the base first
};

struct OutputPlan {
  std::vector<PlannedTensor> tensors;  // sorted by output name
  std::vector<TensorVocab> tensor_vocabs;
  ShardedPlan files;
  std::optional<DType> out_float;  // the recipe's dtype for floating tensors
  nlohmann::json config;           // config.json (null: none)
};

DType out_dtype_of(const OutputPlan& plan, DType in) {
  return mergeable(in) && plan.out_float ? *plan.out_float : in;
}

// models: every tensor of the donor, merged from the same tensor of every input.
void plan_models(const Recipe& r, const MergeInputs& in, const MergeOptions& opt, OutputPlan& out) {
  const HfCheckpoint& ref = *in.donor;
  const int64_t num_layers = num_layers_of(ref);
  out.config = ref.config();
  out.tensors.reserve(ref.tensor_names().size());
  for (const auto& n : ref.tensor_names()) {
    const auto& info = ref.info(n);
    PlannedTensor pt;
    pt.spec = {n, out_dtype_of(out, info.dtype), info.shape};
    if (in.vocab && is_vocab_tensor(n)) pt.spec.shape[0] = in.vocab->rows;
    if (in.base) pt.base = TensorInput{in.base, n};
    for (const auto* c : in.ckpts) pt.models.push_back({c, n});
    if (mergeable(info.dtype))
      pt.method = resolve_method(r, nullptr, in.models, pt, layer_t(n, num_layers), opt.seed);
    out.tensors.push_back(std::move(pt));
  }
}

// `name` with its layer number replaced by `layer`.
std::string with_layer(const std::string& name, const LayerDigits& d, int64_t layer) {
  return name.substr(0, d.pos) + std::to_string(layer) + name.substr(d.pos + d.count);
}

// Config arrays with one entry per layer: rebuilt for the output's layers.
constexpr std::array<const char*, 2> kPerLayerConfigKeys = {"layer_types", "no_rope_layers"};

// slices (mergekit's plan): the donor's non-layer tensors that name an
// embedding from the first slice's sources at t = 0, the slices' layers in
// order (output layer k of a slice from layer begin + k of each source, at
// t = k / (n - 1), or 1 for a one-layer slice), the other non-layer tensors
// (final norm, lm_head) from the last slice's sources at t = 1.
void plan_slices(const Recipe& r, const MergeInputs& in, const MergeOptions& opt, OutputPlan& out) {
  // Each checkpoint's layer tensors by layer, names sorted.
  std::map<const HfCheckpoint*, std::map<int64_t, std::vector<std::string>>> layers_of;
  auto layer_names = [&](const HfCheckpoint* c, int64_t layer) -> const std::vector<std::string>& {
    auto it = layers_of.find(c);
    if (it == layers_of.end()) {
      it = layers_of.emplace(c, std::map<int64_t, std::vector<std::string>>()).first;
      for (const auto& n : c->tensor_names())
        if (auto l = layer_index(n)) it->second[*l].push_back(n);
    }
    static const std::vector<std::string> none;
    auto l = it->second.find(layer);
    return l == it->second.end() ? none : l->second;
  };
  // The inputs of one output tensor: same dtype and shape everywhere.
  const auto& ckpts = in.slice_ckpts;
  auto add = [&](size_t k, const std::vector<std::string>& names, const std::string& out_name,
                 double t) {
    const RecipeSlice& sl = r.slices[k];
    const bool vocab = in.vocab && is_vocab_tensor(out_name);
    PlannedTensor pt;
    std::vector<const RecipeModel*> models;
    for (size_t i = 0; i < sl.sources.size(); ++i) {
      const HfCheckpoint* c = ckpts[k][i];
      if (!c->has(names[i]))
        throw_input("{}: {} has no tensor {} (for output tensor {}, from {} in {})",
                    sl.sources[i].where, c->path().string(), names[i], out_name, names[0],
                    ckpts[k][0]->path().string());
      const TensorInfo& a = ckpts[k][0]->info(names[0]);
      const TensorInfo& b = c->info(names[i]);
      // Token-indexed tensors with tokenizer settings: rows re-indexed, so
      // only the width must agree (2-D, as check_pool_compatible_vocab).
      const bool rows_free = vocab && a.shape.size() == 2 && b.shape.size() == 2;
      if (a.dtype != b.dtype || (rows_free ? a.shape[1] != b.shape[1] : a.shape != b.shape))
        throw_input("{}: incompatible slice: {}: tensor {}: {} {} here, {} {} in {} ({})",
                    sl.sources[i].where, c->path().string(), names[i], dtype_name(b.dtype),
                    shape_text(b.shape), dtype_name(a.dtype), shape_text(a.shape),
                    ckpts[k][0]->path().string(), names[0]);
      const TensorInput ti{c, names[i]};
      if (in.slice_base[k] == i) {
        pt.base = ti;
      } else {
        pt.models.push_back(ti);
        models.push_back(&sl.sources[i]);
      }
    }
    const TensorInfo& info = ckpts[k][0]->info(names[0]);
    pt.spec = {out_name, out_dtype_of(out, info.dtype), info.shape};
    if (vocab) {
      if (info.shape.size() != 2 || !mergeable(info.dtype))
        throw_input(
            "{}: {} is {} {}: token-indexed tensors must be 2-D bf16, f16 or f32 to be "
            "re-indexed",
            sl.where, out_name, dtype_name(info.dtype), shape_text(info.shape));
      pt.spec.shape[0] = in.vocab->rows;
      // Its inputs' rows and fills over them alone (mergekit's PermutedEmbeddings).
      TensorVocab tv;
      std::vector<size_t> idx;
      auto add_member = [&](const TensorInput& ti) {
        const auto it = std::find(in.vocab_members.begin(), in.vocab_members.end(), ti.ckpt);
        idx.push_back(static_cast<size_t>(it - in.vocab_members.begin()));
        tv.members.push_back(ti.ckpt);
      };
      if (pt.base) add_member(*pt.base);
      for (const auto& ti : pt.models) add_member(ti);
      tv.plan = vocab_for_inputs(*in.vocab, idx, in.vocab_members, out_name);
      pt.vocab = static_cast<int64_t>(out.tensor_vocabs.size());
      out.tensor_vocabs.push_back(std::move(tv));
    }
    if (mergeable(info.dtype)) pt.method = resolve_method(r, &sl, models, pt, t, opt.seed);
    out.tensors.push_back(std::move(pt));
  };
  // Non-layer tensors of the first source of a slice, embeddings or not.
  auto non_layer = [&](size_t k, bool embed, double t) {
    const RecipeSlice& sl = r.slices[k];
    for (const auto& n : ckpts[k][0]->tensor_names()) {
      if (layer_index(n) || (n.find("embed") != std::string::npos) != embed) continue;
      add(k, std::vector<std::string>(sl.sources.size(), n), n, t);
    }
  };
  non_layer(0, true, 0.0);
  int64_t out_layer = 0;
  std::vector<std::pair<const HfCheckpoint*, int64_t>> origin;  // of each output layer
  for (size_t k = 0; k < r.slices.size(); ++k) {
    const RecipeSlice& sl = r.slices[k];
    const int64_t n = sl.num_layers();
    for (int64_t off = 0; off < n; ++off, ++out_layer) {
      const double t = n > 1 ? static_cast<double>(off) / static_cast<double>(n - 1) : 1.0;
      const int64_t first = sl.sources[0].layers->begin + off;
      origin.emplace_back(ckpts[k][0], first);
      const auto& names0 = layer_names(ckpts[k][0], first);
      if (names0.empty())
        throw_input("{}: {} has no tensors of layer {} (config.json: num_hidden_layers {})",
                    sl.sources[0].layers->where, sl.sources[0].spec, first,
                    num_layers_of(*ckpts[k][0]));
      for (size_t i = 1; i < sl.sources.size(); ++i) {
        const int64_t li = sl.sources[i].layers->begin + off;
        const size_t count = layer_names(ckpts[k][i], li).size();
        if (count != names0.size())
          throw_input("{}: layer {} of {} has {} tensors, layer {} of {} has {}",
                      sl.sources[i].where, li, sl.sources[i].spec, count, first, sl.sources[0].spec,
                      names0.size());
      }
      for (const auto& n0 : names0) {
        const LayerDigits d = *layer_digits(n0);
        std::vector<std::string> names;
        for (const auto& src : sl.sources)
          names.push_back(with_layer(n0, d, src.layers->begin + off));
        add(k, names, with_layer(n0, d, out_layer), t);
      }
    }
  }
  non_layer(r.slices.size() - 1, false, 1.0);
  std::sort(
      out.tensors.begin(), out.tensors.end(),
      [](const PlannedTensor& a, const PlannedTensor& b) { return a.spec.name < b.spec.name; });
  for (size_t i = 1; i < out.tensors.size(); ++i)
    if (out.tensors[i].spec.name == out.tensors[i - 1].spec.name)
      throw_input("{}: the slices give output tensor {} twice", r.file.string(),
                  out.tensors[i].spec.name);

  // config.json: the donor's, with the output's layer count and per-layer arrays.
  out.config = in.donor->config();
  if (!out.config.is_object()) out.config = nlohmann::json::object();
  out.config["num_hidden_layers"] = out_layer;
  for (const char* key : kPerLayerConfigKeys) {
    if (!out.config.contains(key) || !out.config[key].is_array()) continue;
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& [c, layer] : origin) {
      const auto& cfg = c->config();
      if (!cfg.is_object() || !cfg.contains(key) || !cfg[key].is_array() ||
          layer >= static_cast<int64_t>(cfg[key].size()))
        throw_input(
            "{}: config.json of {} has no {} entry for layer {} (the output's {} is "
            "rebuilt from its sources')",
            r.file.string(), c->path().string(), key, layer, key);
      arr.push_back(cfg[key][static_cast<size_t>(layer)]);
    }
    out.config[key] = std::move(arr);
  }
}

OutputPlan plan_output(const Recipe& r, const MergeInputs& in, const MergeOptions& opt) {
  OutputPlan out;
  out.out_float = r.out_dtype ? r.out_dtype : r.dtype;
  if (r.slices.empty())
    plan_models(r, in, opt, out);
  else
    plan_slices(r, in, opt, out);
  std::vector<TensorSpec> specs;
  specs.reserve(out.tensors.size());
  for (const auto& pt : out.tensors) specs.push_back(pt.spec);
  const Metadata meta = {{"format", "pt"},
                         {"merged_by", "kintsugi"},
                         {"merge_method", std::string(merge_method_name(r.method))},
                         {"recipe_sha256", r.sha256}};
  out.files = plan_sharded(specs, meta, opt.max_shard_bytes);
  return out;
}

// The output being written: rank 0 owns the folder and the shard files
// (headers included); the other ranks write their byte ranges into them.
struct OutputFiles {
  std::unique_ptr<HfFolderWriter> folder;                              // rank 0
  std::vector<std::unique_ptr<SafetensorsWriter>> writers;             // rank 0
  std::vector<std::unique_ptr<SafetensorsRangeWriter>> range_writers;  // other ranks

  void pwrite(size_t file, const std::string& tensor, uint64_t offset,
              std::span<const std::byte> bytes) {
    if (!writers.empty())
      writers[file]->pwrite(tensor, offset, bytes);
    else
      range_writers[file]->pwrite(tensor, offset, bytes);
  }
};

OutputFiles create_output(const OutputPlan& plan, const MergeOptions& opt,
                          const std::vector<NamedPath>& inputs, MPI_Comm comm, int rank) {
  OutputFiles out;
  const ShardedPlan& files = plan.files;
  run_on_root(comm, [&] {
    check_output_apart("output folder", opt.out_dir, inputs);
    out.folder = std::make_unique<HfFolderWriter>(opt.out_dir, opt.overwrite);
    for (size_t f = 0; f < files.file_names.size(); ++f)
      // Positional: rank 0 may own no byte of a shard (a small one that
      // holds only another rank's ranges) and still commits it.
      out.writers.push_back(
          std::make_unique<SafetensorsWriter>(out.folder->temp_dir() / files.file_names[f],
                                              files.layouts[f], SafetensorsFill::Positional));
  });
  // Every rank must agree on the temporary folder's name.
  const fs::path tmp_dir =
      broadcast_string(rank == 0 ? out.folder->temp_dir().string() : std::string(), comm);
  // A rank that cannot open the files (a scratch folder it does not share)
  // fails them all, with its message.
  run_everywhere(comm, [&] {
    if (rank != 0)
      for (size_t f = 0; f < files.file_names.size(); ++f)
        out.range_writers.push_back(std::make_unique<SafetensorsRangeWriter>(
            tmp_dir / files.file_names[f], files.layouts[f]));
  });
  return out;
}

// Progress of the merge pass: a bar on a terminal, otherwise one log line
// per tensor group (a layer, or the tensors outside the layers), from rank 0.
class MergeProgress {
 public:
  MergeProgress(const std::string& method, uint64_t elems, bool show)
      : bar_(fmt::format("merge ({})", method), elems, 10.0, show && ::isatty(2)),
        group_log_(show && !::isatty(2)) {}
  void start_tensor(const std::string& name) {
    const auto l = layer_index(name);
    const std::string g = l ? fmt::format("layer {}", *l) : std::string("non-layer tensors");
    if (g != group_) {
      end_group();
      group_ = g;
    }
    ++group_tensors_;
  }
  void advance(uint64_t elems) { bar_.advance(elems); }
  void finish() {
    end_group();
    bar_.finish();
  }

 private:
  void end_group() {
    if (group_log_ && group_tensors_ > 0)
      spdlog::info("merged {} ({} tensors)", group_, group_tensors_);
    group_tensors_ = 0;
  }
  Progress bar_;
  bool group_log_;
  std::string group_;
  size_t group_tensors_ = 0;
};

struct Traffic {
  uint64_t read = 0, written = 0;  // this rank's bytes
};

// Merges this rank's flat share of every planned tensor and writes it in
// place. Tensors the kernels do not merge (integers, ...) are copied from
// their first input.
uint64_t numel_of(const TensorSpec& spec) {
  uint64_t n = 1;
  for (int64_t d : spec.shape) n *= static_cast<uint64_t>(d);
  return n;
}

Traffic merge_shares(const Recipe& r, const MergeInputs& in, const OutputPlan& plan,
                     OutputFiles& out, const MergeOptions& opt, MPI_Comm comm, int rank, int size) {
  uint64_t my_elems = 0;
  for (const auto& pt : plan.tensors) my_elems += flat_share(numel_of(pt.spec), rank, size).size();
  MergeProgress progress(std::string(merge_method_name(r.method)), my_elems,
                         opt.progress && rank == 0);
  Traffic traffic;
  std::mutex sink_mutex;
  for (const PlannedTensor& pt : plan.tensors) {
    const TensorSpec& spec = pt.spec;
    const std::string& name = spec.name;
    progress.start_tensor(name);
    const TensorInfo& info = pt.first().info();
    const size_t file = plan.files.shard_of.at(name);
    const uint64_t numel = numel_of(spec);
    const ElementRange range = flat_share(numel, rank, size);
    // Called from several threads at once (ChunkSink): the positional
    // writes need no lock, the counters do.
    auto write = [&](ElementRange c, std::span<const std::byte> bytes) {
      out.pwrite(file, name, c.begin * dtype_size(spec.dtype), bytes);
      const std::lock_guard lock(sink_mutex);
      traffic.written += bytes.size();
      progress.advance(c.size());
    };
    if (!mergeable(info.dtype)) {
      const uint64_t es = dtype_size(info.dtype);
      if (!range.empty()) {
        const TensorInput& from = pt.first();
        auto src = from.ckpt->file_of(from.name).bytes(info, range.begin * es, range.size() * es);
        write(range, src);
        traffic.read += src.size();
      }
      continue;
    }
    TensorSources src;
    src.name = name;
    src.numel = numel;
    src.dtype = info.dtype;
    src.shape = spec.shape;                 // della's rows, nuslerp's rows and columns
    std::deque<ReindexedTensor> reindexed;  // in place: not movable
    if (in.vocab && is_vocab_tensor(name)) {
      // The merge's plan (models), or the tensor's own over its inputs (slices).
      const VocabPlan& vplan =
          pt.vocab < 0 ? *in.vocab : plan.tensor_vocabs[static_cast<size_t>(pt.vocab)].plan;
      const auto& vmembers = pt.vocab < 0
                                 ? in.vocab_members
                                 : plan.tensor_vocabs[static_cast<size_t>(pt.vocab)].members;
      // Re-indexed in the recipe's dtype when it has one: mergekit averages rows in it.
      if (r.dtype) src.dtype = *r.dtype;
      // arcee_fusion, della* and nuslerp read every row their range touches
      // whole, cabs every superblock: fill those.
      uint64_t unit = 1;
      if (r.method == MergeMethod::ArceeFusion || r.method == MergeMethod::Della ||
          r.method == MergeMethod::DellaLinear || r.method == MergeMethod::Nuslerp)
        unit = spec.shape.empty() || spec.shape.back() <= 0
                   ? std::max<uint64_t>(numel, 1)
                   : static_cast<uint64_t>(spec.shape.back());
      if (r.method == MergeMethod::Cabs) unit = cabs_superblock(pt.method.block_m);
      ElementRange filled = range;
      if (!range.empty())
        filled = {range.begin / unit * unit, std::min(numel, (range.end + unit - 1) / unit * unit)};
      for (size_t m = 0; m < vmembers.size(); ++m) {
        const void* p =
            reindexed.emplace_back(vplan, vmembers, m, name, src.dtype, numel, filled).data();
        if (m == 0 && pt.base)
          src.base = p;
        else
          src.models.push_back(p);
      }
    } else {
      if (pt.base) src.base = pt.base->data();
      for (const auto& ti : pt.models) src.models.push_back(ti.data());
    }
    try {
      merge_tensor(src, pt.method, range, spec.dtype, opt.chunk_elems, comm, write);
    } catch (const std::bad_alloc&) {
      // What a rank holds is a few chunk buffers per input: say which knob sets it.
      throw_runtime(
          "{}: out of memory merging tensor {} in chunks of {} elements per input ({} MiB "
          "as fp32; --chunk-mib): lower the chunk or raise this rank's memory limit",
          opt.out_dir.string(), name, opt.chunk_elems, opt.chunk_elems * 4 >> 20);
    }
    traffic.read += range.size() * dtype_size(src.dtype) * (src.models.size() + (pt.base ? 1 : 0));
    spdlog::debug("merged {} ({} elements here)", name, range.size());
  }
  progress.finish();
  return traffic;
}

// Rank 0, after every rank closed its ranges: shard files renamed into the
// temporary folder, the index, config.json (the plan's, torch_dtype of the
// output), the donor's other files (tokenizer, ...), the recipe; then the folder.
// Tokenizer files, which tokenizer_source replaces as a set.
bool is_tokenizer_file(const std::string& n) {
  return n.rfind("tokenizer", 0) == 0 || n.rfind("chat_template", 0) == 0 ||
         n == "special_tokens_map.json" || n == "added_tokens.json" || n == "vocab.json" ||
         n == "vocab.txt" || n == "merges.txt";
}

// The tokenizer files of a merge with tokenizer_source: the donor's other
// files, the tokenizer's from the vocabulary's source, rewritten where the
// vocabulary changed.
void write_vocab_files(const MergeInputs& in, OutputFiles& out) {
  const VocabPlan& v = *in.vocab;
  for (const auto& p : in.donor->passthrough_files())
    if (!is_tokenizer_file(p.filename().string())) out.folder->copy_file(p);
  for (const auto* c : in.vocab_members) {
    if (!same_path(c->path(), v.tokenizer_folder)) continue;
    for (const auto& p : c->passthrough_files()) {
      const std::string n = p.filename().string();
      if (!is_tokenizer_file(n)) continue;
      // Rewritten below, or stale once tokens are added (added_tokens.json).
      if (v.tokenizer_changed &&
          (n == "tokenizer.json" || n == "tokenizer_config.json" || n == "added_tokens.json"))
        continue;
      out.folder->copy_file(p);
    }
    break;
  }
  if (v.tokenizer_changed) {
    out.folder->write_text("tokenizer.json", v.tokenizer_json.dump(2) + "\n");
    if (v.tokenizer_config.is_object())
      out.folder->write_text("tokenizer_config.json", v.tokenizer_config.dump(2) + "\n");
  }
}

void commit_output(const Recipe& r, const MergeInputs& in, const OutputPlan& plan,
                   OutputFiles& out) {
  for (auto& w : out.writers) w->commit();
  if (plan.files.file_names.size() > 1)
    out.folder->write_text("model.safetensors.index.json", plan.files.index_json());
  if (plan.config.is_object() || plan.out_float) {
    nlohmann::json config = plan.config.is_object() ? plan.config : nlohmann::json::object();
    DType shown = plan.out_float ? *plan.out_float : DType::F32;
    if (!plan.out_float)
      for (const auto& pt : plan.tensors)
        if (mergeable(pt.spec.dtype)) {
          shown = pt.spec.dtype;
          break;
        }
    config["torch_dtype"] = torch_dtype(shown);
    if (in.vocab) config["vocab_size"] = in.vocab->rows;
    out.folder->write_text("config.json", config.dump(2) + "\n");
  }
  if (in.vocab)
    write_vocab_files(in, out);
  else
    for (const auto& p : in.donor->passthrough_files()) out.folder->copy_file(p);
  out.folder->write_text(kRecipeFileName, r.text);
  out.folder->commit();
}

}  // namespace

MergeReport run_merge(const Recipe& r, const MergeOptions& opt, MPI_Comm comm) {
  const auto start = std::chrono::steady_clock::now();
  const int rank = comm_rank(comm), size = comm_size(comm);

  const MergeInputs in = open_inputs(r);
  const OutputPlan plan = plan_output(r, in, opt);
  OutputFiles out = create_output(plan, opt, input_paths(r, opt), comm, rank);
  // A write that fails on one rank (a full disk) fails the merge on all of
  // them; the unfinished output removes its temporary files.
  Traffic traffic;
  run_everywhere(comm, [&] {
    traffic = merge_shares(r, in, plan, out, opt, comm, rank, size);
    for (auto& w : out.range_writers) w->close();
  });
  run_on_root(comm, [&] { commit_output(r, in, plan, out); });
  release_inputs(in);  // timed: the caller waits for it either way

  MergeReport rep;
  uint64_t global[2] = {traffic.read, traffic.written};
  allreduce_in_place(std::span<uint64_t>(global), MPI_SUM, comm);
  rep.bytes_read = global[0];
  rep.bytes_written = global[1];
  rep.tensors = plan.tensors.size();
  rep.shards = plan.files.file_names.size();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return rep;
}

}  // namespace kintsugi
