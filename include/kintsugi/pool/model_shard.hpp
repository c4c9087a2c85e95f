#pragma once
// One rank's fp32 weights of a Llama-family decoder under the tensor-parallel
// plan (shard/tp_plan.hpp): what the forward pass (model/transformer.hpp) runs.
// Built by loading a checkpoint's shard from disk (pool/shard_loader.hpp), by
// merging pool shards in memory (merge_into), or from full tensors (tests).
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "kintsugi/common/huge_pages.hpp"
#include "kintsugi/pool/model_config.hpp"
#include "kintsugi/pool/tp_plan.hpp"

namespace kintsugi {

class ModelShard {
 public:
  // Allocates every tensor of this rank's shard (zeros).
  ModelShard(const ModelConfig& config, int tp_rank, int tp_size);

  const ModelConfig& config() const { return config_; }
  const TpPlan& plan() const { return plan_; }
  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }

  // Tensors in plan().tensors() order.
  size_t num_tensors() const { return data_.size(); }
  std::span<float> tensor(size_t i) { return data_[i]; }
  std::span<const float> tensor(size_t i) const { return data_[i]; }
  // Throws RuntimeError when the model has no such tensor.
  size_t index_of(const std::string& name) const;
  std::span<const float> tensor(const std::string& name) const { return data_[index_of(name)]; }
  std::span<float> tensor(const std::string& name) { return data_[index_of(name)]; }
  bool has(const std::string& name) const { return index_.count(name) != 0; }
  uint64_t bytes() const;

 private:
  ModelConfig config_;
  int tp_rank_, tp_size_;
  TpPlan plan_;
  std::vector<HugeVector<float>> data_;  // on huge pages: merge_into writes them
  std::map<std::string, size_t> index_;
};

// Copies this rank's slice of a full row-major tensor `full` (shape t.shape).
void slice_full_tensor(const TpTensor& t, const TpSlice& s, std::span<const float> full,
                       std::span<float> out);

// Builds a shard from full fp32 tensors (`full(name)` returns the whole tensor).
ModelShard shard_from_full(const ModelConfig& config, int tp_rank, int tp_size,
                           const std::function<std::span<const float>(const std::string&)>& full);

}  // namespace kintsugi
