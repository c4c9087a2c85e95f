#include "kintsugi/pool/model_shard.hpp"

#include <algorithm>

#include "kintsugi/common/error.hpp"

namespace kintsugi {

ModelShard::ModelShard(const ModelConfig& config, int tp_rank, int tp_size)
    : config_(config), tp_rank_(tp_rank), tp_size_(tp_size), plan_(config, tp_size) {
  if (tp_rank < 0 || tp_rank >= tp_size)
    throw_runtime("tensor-parallel rank {} outside a group of {}", tp_rank, tp_size);
  const auto& ts = plan_.tensors();
  data_.resize(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    size_t n = 1;
    for (int64_t d : plan_.local_shape(ts[i], tp_rank)) n *= static_cast<size_t>(d);
    data_[i].assign(n, 0.0f);
    index_[ts[i].name] = i;
  }
}

size_t ModelShard::index_of(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw_runtime("model shard has no tensor {}", name);
  return it->second;
}

uint64_t ModelShard::bytes() const {
  uint64_t b = 0;
  for (const auto& d : data_) b += d.size() * sizeof(float);
  return b;
}

void slice_full_tensor(const TpTensor& t, const TpSlice& s, std::span<const float> full,
                       std::span<float> out) {
  const size_t rows = static_cast<size_t>(t.shape[0]);
  const size_t cols = t.shape.size() > 1 ? static_cast<size_t>(t.shape[1]) : 1;
  KS_CHECK(full.size() == rows * cols, t.name);
  if (s.split == TpSplit::Cols) {
    const size_t w = static_cast<size_t>(s.end - s.begin);
    KS_CHECK(out.size() == rows * w, t.name);
    for (size_t r = 0; r < rows; ++r)
      std::copy_n(full.data() + r * cols + static_cast<size_t>(s.begin), w, out.data() + r * w);
  } else {
    const size_t first = static_cast<size_t>(s.begin) * cols;
    KS_CHECK(out.size() == static_cast<size_t>(s.end - s.begin) * cols, t.name);
    std::copy_n(full.data() + first, out.size(), out.data());
  }
}

ModelShard shard_from_full(const ModelConfig& config, int tp_rank, int tp_size,
                           const std::function<std::span<const float>(const std::string&)>& full) {
  ModelShard m(config, tp_rank, tp_size);
  const auto& ts = m.plan().tensors();
  for (size_t i = 0; i < ts.size(); ++i)
    slice_full_tensor(ts[i], m.plan().slice(ts[i], tp_rank), full(ts[i].name), m.tensor(i));
  return m;
}

}  // namespace kintsugi
