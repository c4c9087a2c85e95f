#pragma once
// The tensor-parallel forward pass of a Llama-family decoder over a group
// communicator, in fp32 on the CPU: batched prefill of ragged sequences, a KV
// cache per sequence (which may share a read-only prefix, e.g. a context that
// several choices continue), and vocab-parallel log-probabilities and argmax.
// Per layer there is one all-reduce after attention and one after the MLP (plus
// one for the embedding lookup). Every rank of the group must make the same
// calls with the same tokens; all results are identical on every rank.
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "kintsugi/kernels/eval_kernels.hpp"
#include "kintsugi/pool/model_shard.hpp"

namespace kintsugi {

// Keys and values of one sequence on this rank (its KV heads), per layer.
struct SeqCache {
  // Positions [0, prefix_len) come from `prefix` (which has no prefix of its own).
  std::shared_ptr<const SeqCache> prefix;
  size_t prefix_len = 0;
  size_t own_len = 0;
  std::vector<std::vector<float>> k, v;  // per layer: [own_len][kv_local * head_dim]
  size_t length() const { return prefix_len + own_len; }
};

struct ForwardRequest {
  SeqCache* cache = nullptr;
  std::span<const int32_t> tokens;  // appended at positions cache->length(), ...
  std::vector<int32_t> logits_at;   // indices into `tokens` whose logits are wanted
};

class Transformer {
 public:
  // `shard` must outlive the Transformer; `group` has shard.tp_size() ranks and
  // this rank is shard.tp_rank() in it.
  Transformer(const ModelShard& shard, MPI_Comm group);

  const ModelConfig& config() const { return shard_.config(); }
  Range vocab_range() const { return vocab_; }

  // An empty cache, or one continuing the first `prefix_len` positions of `prefix`.
  SeqCache new_cache() const;
  SeqCache continue_from(std::shared_ptr<const SeqCache> prefix, size_t prefix_len) const;

  // Runs every request's tokens, appends their keys/values to the caches and
  // keeps the final hidden rows of the wanted positions (the scored rows,
  // request by request) for the calls below, until the next forward().
  void forward(std::span<ForwardRequest> requests);
  size_t scored_rows() const { return head_rows_.size() / static_cast<size_t>(D_); }

  // out[i] = log p(targets[i] | scored row row_of[i]) (collective over the
  // group). An empty row_of means row_of[i] = i.
  void log_probs(std::span<const int32_t> row_of, std::span<const int32_t> targets,
                 std::span<double> out) const;
  // Greedy next token per scored row, out[scored_rows()] (lowest id on ties;
  // collective over the group).
  void argmax(std::span<int32_t> out) const;

 private:
  // A layer's weights, packed once (q, k and v stacked; gate and up stacked).
  struct Layer {
    const float *attn_norm, *bq, *bk, *bv, *bo, *mlp_norm;
    PackedWeight qkv, wo, gate_up, down;
  };
  void allreduce_sum(float* data, size_t n) const;
  void rope(float* x, size_t heads, int64_t pos);
  // The steps of forward(), in order.
  std::vector<size_t> token_offsets(std::span<ForwardRequest> requests) const;
  void embed(std::span<ForwardRequest> requests, const std::vector<size_t>& offsets);
  void resize_work_buffers(size_t N);
  void qkv_projection(const Layer& L, size_t N, const std::vector<size_t>* scored = nullptr);
  void rope_and_cache(size_t l, std::span<ForwardRequest> requests,
                      const std::vector<size_t>& offsets, bool rope_q);
  // The last layer's scored rows: request r's are [first[r], first[r + 1])
  // in scored order, token[o] row o's token in its request.
  struct ScoredQueries {
    std::vector<size_t> first;
    std::vector<uint32_t> token;
  };
  void attention(size_t l, std::span<ForwardRequest> requests, const std::vector<size_t>& offsets,
                 const ScoredQueries* scored = nullptr);
  // The last layer, where only the scored rows reach the logits.
  std::vector<size_t> scored_rows(std::span<ForwardRequest> requests,
                                  const std::vector<size_t>& offsets) const;
  static bool scored_subset(const std::vector<size_t>& rows, size_t N);
  void scored_attention(const Layer& L, size_t l, std::span<ForwardRequest> requests,
                        const std::vector<size_t>& offsets, const std::vector<size_t>& rows);
  size_t keep_rows(const std::vector<size_t>& rows, bool with_attn = true);
  void attention_output(const Layer& L, size_t N);
  void mlp(const Layer& L, size_t N);
  void final_norm(size_t rows);
  // The logits are made a block of scored rows at a time, in one buffer of at
  // most kLogitBlockBytes (or one row): a batch of 16 x 64 positions over a
  // 152k vocabulary was 622 MB of logits, paged in afresh for every task.
  static constexpr size_t kLogitBlockBytes = size_t{16} << 20;
  size_t logit_block_rows() const;
  // The logits of scored rows [row0, row0 + n): the local vocabulary slice,
  // out[n, vocab_range().size()].
  void logits(size_t row0, size_t n, float* out) const;
  void for_each_logit_row(const std::function<void(size_t, const float*)>& f) const;

  const ModelShard& shard_;
  MPI_Comm group_;
  int64_t D_, hd_, qL_, kvL_, fL_;
  float eps_ = 0.0f;  // hidden, head_dim, local q/kv/ffn widths
  Range heads_, kv_heads_, ffn_, vocab_;
  std::vector<Layer> layers_;
  const float *embed_, *final_norm_;
  PackedWeight lm_head_;
  std::vector<float> inv_freq_, rope_cos_, rope_sin_;
  // work buffers
  std::vector<float> x_, xn_, qkv_, attn_, proj_, gu_, act_, scores_;
  std::vector<float> qsel_;  // the last layer's queries of the scored rows
  // the scored rows after the final norm: [scored_rows(), D]; one block of logits
  std::vector<float> head_rows_;
  mutable std::vector<float> logit_block_;
};

}  // namespace kintsugi
