#pragma once
// The tensor-parallel plan: which slice of each Llama-family tensor a rank of a
// group of T ranks holds for the evaluator's forward pass (Megatron layout).
//   q/k/v projections and their biases: output rows, by attention heads
//   gate/up projections: output rows (intermediate features)
//   o/down projections: input columns (the same heads / features)
//   embed_tokens and lm_head: vocabulary rows
//   norms (and an o_proj bias): replicated
// Query heads must divide evenly (num_attention_heads % T == 0). Key/value heads
// are split when num_key_value_heads % T == 0; when instead T is a multiple of
// num_key_value_heads, each rank holds (a replica of) the one KV head its query
// heads share. Other combinations are an InputError. Intermediate features and
// vocabulary rows may split unevenly: rank r holds [r*n/T, (r+1)*n/T).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kintsugi/pool/model_config.hpp"

namespace kintsugi {

enum class TpSplit { Replicated, Rows, Cols };

// This rank's part of one tensor. Rows: rows [begin, end) of a 2-D tensor (or
// elements of a 1-D one). Cols: columns [begin, end) of every row.
struct TpSlice {
  TpSplit split = TpSplit::Replicated;
  int64_t begin = 0, end = 0;
};

// A tensor the decoder needs, with its full shape ({n} or {rows, cols}).
struct TpTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::optional<int> layer;  // decoder layer index, none for embeddings/final norm/lm_head
};

struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

class TpPlan {
 public:
  // Throws InputError naming the head counts when T does not fit the model.
  TpPlan(const ModelConfig& config, int tp_size);

  int tp_size() const { return tp_size_; }
  // Every tensor the model needs, in a fixed order (embed, layers, norm, lm_head).
  const std::vector<TpTensor>& tensors() const { return tensors_; }
  TpSlice slice(const TpTensor& t, int rank) const;
  // Local shape of `t` on `rank`.
  std::vector<int64_t> local_shape(const TpTensor& t, int rank) const;

  Range heads(int rank) const;     // query heads
  Range kv_heads(int rank) const;  // key/value heads held (maybe a replica)
  Range ffn(int rank) const;       // intermediate features
  Range vocab(int rank) const;     // vocabulary rows

 private:
  ModelConfig config_;
  int tp_size_;
  std::vector<TpTensor> tensors_;
};

// Splits [0, n) into T nearly equal contiguous parts; part r.
Range even_part(int64_t n, int parts, int r);

}  // namespace kintsugi
