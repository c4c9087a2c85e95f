#pragma once
// Building a rank's ModelShard without ever holding a whole tensor:
//  - load_model_shard: one checkpoint's shard, read from disk (only this
//    rank's rows or columns of each tensor are touched, converted to fp32);
//  - PoolShards + merge_into: every pool checkpoint's shard kept in memory in
//    its file dtype (bf16 stays bf16), merged per candidate into a ModelShard
//    with the fused weighted-sum kernel, with no disk I/O.
// Memory per rank: N x model_bytes / T for the pool shards (in file dtype)
// plus 4 x params / T bytes for the merged fp32 shard (norms are replicated,
// a negligible part).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kintsugi/common/huge_pages.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/pool/model_shard.hpp"
#include "kintsugi/pool/vocab.hpp"

namespace kintsugi {

// The model's config from the checkpoint's config.json (InputError naming it
// when absent or unsupported).
ModelConfig model_config_of(const HfCheckpoint& checkpoint);

// Reads this rank's shard. Every tensor must exist with the shape the config
// implies and a floating dtype (InputError naming checkpoint and tensor).
ModelShard load_model_shard(const HfCheckpoint& checkpoint, int tp_rank, int tp_size);

// This rank's slice of every model tensor of each of N checkpoints, raw bytes
// in the file's dtype, in ModelShard tensor order.
class PoolShards {
 public:
  // All checkpoints must share the config's architecture and every tensor's
  // shape and dtype (InputError naming the checkpoint and tensor otherwise).
  // With `vocab` (a plan whose members are `checkpoints`, in order), their
  // vocabularies may differ: the token-indexed tensors are read re-indexed to
  // the plan's rows (in fp32, the dtype the service's recipes average them
  // in), and config().vocab_size is the plan's row count.
  static PoolShards load(const std::vector<const HfCheckpoint*>& checkpoints, int tp_rank,
                         int tp_size, const VocabPlan* vocab = nullptr);

  const ModelConfig& config() const { return config_; }
  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  size_t num_checkpoints() const { return names_.size(); }
  const std::vector<std::string>& names() const { return names_; }
  // Tensor t (ModelShard order) of checkpoint i.
  std::span<const std::byte> bytes(size_t i, size_t t) const { return data_[i][t]; }
  DType dtype(size_t t) const { return dtypes_[t]; }
  uint64_t total_bytes() const;

 private:
  ModelConfig config_;
  int tp_rank_ = 0, tp_size_ = 1;
  std::vector<std::string> names_;
  std::vector<DType> dtypes_;
  // [checkpoint][tensor], on huge pages: the merge kernels read them N at once
  std::vector<std::vector<HugeVector<std::byte>>> data_;
};

// Merge weights: a G x N matrix (row g = the weights of the N checkpoints for
// layer group g), a group per decoder layer, and the groups of the tensors
// outside the layers (embeddings; final norm and lm_head).
struct MergeWeights {
  size_t num_checkpoints = 0;
  std::vector<float> values;        // G x N, row-major
  std::vector<size_t> layer_group;  // one entry per decoder layer
  size_t embed_group = 0;           // model.embed_tokens
  size_t head_group = 0;            // model.norm, lm_head

  // One weight per checkpoint for every tensor.
  static MergeWeights per_checkpoint(std::span<const float> w, size_t num_layers);
  // `groups` contiguous layer groups (layer l -> l * groups / L); embeddings go
  // with the first group, final norm and lm_head with the last. `w` is G x N.
  static MergeWeights per_layer_group(std::span<const float> w, size_t groups,
                                      size_t num_checkpoints, size_t num_layers);
  std::span<const float> row(size_t group) const {
    return std::span<const float>(values).subspan(group * num_checkpoints, num_checkpoints);
  }
};

// out = sum_i w_i * pool_i per tensor (fp32 accumulation in checkpoint order,
// fused_weighted_sum). `out` must have the pool's config, rank and size.
void merge_into(ModelShard& out, const PoolShards& pool, const MergeWeights& weights);

}  // namespace kintsugi
