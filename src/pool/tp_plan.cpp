#include "kintsugi/pool/tp_plan.hpp"

#include <fmt/format.h>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

Range even_part(int64_t n, int parts, int r) {
  return {n * r / parts, n * (r + 1) / parts};
}

TpPlan::TpPlan(const ModelConfig& config, int tp_size) : config_(config), tp_size_(tp_size) {
  const int64_t T = tp_size;
  if (T < 1) throw_input("tensor_parallel must be >= 1, got {}", T);
  if (config.num_heads % T != 0)
    throw_input("tensor_parallel {} does not divide num_attention_heads {}", T, config.num_heads);
  if (config.num_kv_heads % T != 0 && T % config.num_kv_heads != 0)
    throw_input("tensor_parallel {} neither divides nor is a multiple of num_key_value_heads {}", T,
                config.num_kv_heads);
  if (config.intermediate_size < T || config.vocab_size < T)
    throw_input("tensor_parallel {} exceeds intermediate_size {} or vocab_size {}", T,
                config.intermediate_size, config.vocab_size);
  const int64_t D = config.hidden_size, I = config.intermediate_size;
  tensors_.push_back({"model.embed_tokens.weight", {config.vocab_size, D}, std::nullopt});
  for (int l = 0; l < config.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    tensors_.push_back({p + "input_layernorm.weight", {D}, l});
    tensors_.push_back({p + "self_attn.q_proj.weight", {config.q_dim(), D}, l});
    tensors_.push_back({p + "self_attn.k_proj.weight", {config.kv_dim(), D}, l});
    tensors_.push_back({p + "self_attn.v_proj.weight", {config.kv_dim(), D}, l});
    if (config.qkv_bias) {
      tensors_.push_back({p + "self_attn.q_proj.bias", {config.q_dim()}, l});
      tensors_.push_back({p + "self_attn.k_proj.bias", {config.kv_dim()}, l});
      tensors_.push_back({p + "self_attn.v_proj.bias", {config.kv_dim()}, l});
    }
    tensors_.push_back({p + "self_attn.o_proj.weight", {D, config.q_dim()}, l});
    if (config.o_bias) tensors_.push_back({p + "self_attn.o_proj.bias", {D}, l});
    tensors_.push_back({p + "post_attention_layernorm.weight", {D}, l});
    tensors_.push_back({p + "mlp.gate_proj.weight", {I, D}, l});
    tensors_.push_back({p + "mlp.up_proj.weight", {I, D}, l});
    tensors_.push_back({p + "mlp.down_proj.weight", {D, I}, l});
  }
  tensors_.push_back({"model.norm.weight", {D}, std::nullopt});
  if (!config.tie_word_embeddings)
    tensors_.push_back({"lm_head.weight", {config.vocab_size, D}, std::nullopt});
}

Range TpPlan::heads(int rank) const {
  return even_part(config_.num_heads, tp_size_, rank);
}

Range TpPlan::kv_heads(int rank) const {
  if (config_.num_kv_heads % tp_size_ == 0) return even_part(config_.num_kv_heads, tp_size_, rank);
  // T is a multiple of the KV head count: the rank's query heads share one KV head.
  const int64_t group = config_.num_heads / config_.num_kv_heads;
  const int64_t kv = heads(rank).begin / group;
  return {kv, kv + 1};
}

Range TpPlan::ffn(int rank) const {
  return even_part(config_.intermediate_size, tp_size_, rank);
}
Range TpPlan::vocab(int rank) const {
  return even_part(config_.vocab_size, tp_size_, rank);
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

TpSlice TpPlan::slice(const TpTensor& t, int rank) const {
  KS_CHECK(rank >= 0 && rank < tp_size_, "rank outside the tensor-parallel group");
  const std::string& n = t.name;
  const int64_t hd = config_.head_dim;
  auto rows = [](Range r, int64_t scale) {
    return TpSlice{TpSplit::Rows, r.begin * scale, r.end * scale};
  };
  if (n == "model.embed_tokens.weight" || n == "lm_head.weight") return rows(vocab(rank), 1);
  if (ends_with(n, "q_proj.weight") || ends_with(n, "q_proj.bias")) return rows(heads(rank), hd);
  if (ends_with(n, "k_proj.weight") || ends_with(n, "k_proj.bias") ||
      ends_with(n, "v_proj.weight") || ends_with(n, "v_proj.bias"))
    return rows(kv_heads(rank), hd);
  if (ends_with(n, "o_proj.weight")) {
    const Range h = heads(rank);
    return {TpSplit::Cols, h.begin * hd, h.end * hd};
  }
  if (ends_with(n, "gate_proj.weight") || ends_with(n, "up_proj.weight")) return rows(ffn(rank), 1);
  if (ends_with(n, "down_proj.weight")) {
    const Range f = ffn(rank);
    return {TpSplit::Cols, f.begin, f.end};
  }
  return {TpSplit::Replicated, 0, t.shape[0]};
}

std::vector<int64_t> TpPlan::local_shape(const TpTensor& t, int rank) const {
  const TpSlice s = slice(t, rank);
  std::vector<int64_t> shape = t.shape;
  if (s.split == TpSplit::Rows) shape[0] = s.end - s.begin;
  if (s.split == TpSplit::Cols) shape[1] = s.end - s.begin;
  return shape;
}

}  // namespace kintsugi
