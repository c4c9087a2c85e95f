#include "kintsugi/pool/shard_loader.hpp"

#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>

#include "kintsugi/common/error.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"

namespace kintsugi {

namespace {

// Bytes of this rank's slice of a tensor (rows: one contiguous range;
// columns: one range per row), in the file's dtype.
// Every tensor config.json implies is present with that shape and a float
// dtype: checked for the whole model before anything is sized or allocated, so
// a config.json that claims a huge model is an input error, not an allocation.
void check_tensors(const HfCheckpoint& ck, const TpPlan& plan) {
  for (const TpTensor& t : plan.tensors()) {
    if (!ck.has(t.name)) throw_input("{}: tensor {} is missing", ck.path().string(), t.name);
    const TensorInfo& info = ck.info(t.name);
    if (info.shape != t.shape) {
      throw_input("{}: tensor {}: shape {} but config.json implies {}", ck.path().string(), t.name,
                  shape_text(info.shape), shape_text(t.shape));
    }
    if (!dtype_is_float(info.dtype))
      throw_input("{}: tensor {}: dtype {} is not a floating type", ck.path().string(), t.name,
                  dtype_name(info.dtype));
  }
}

// Call only after check_tensors.
HugeVector<std::byte> read_slice(const HfCheckpoint& ck, const TpTensor& t, const TpSlice& s) {
  const TensorInfo& info = ck.info(t.name);
  const SafetensorsFile& f = ck.file_of(t.name);
  const uint64_t es = dtype_size(info.dtype);
  const uint64_t rows = static_cast<uint64_t>(t.shape[0]);
  const uint64_t cols = t.shape.size() > 1 ? static_cast<uint64_t>(t.shape[1]) : 1;
  HugeVector<std::byte> out;
  if (s.split == TpSplit::Cols) {
    const uint64_t w = static_cast<uint64_t>(s.end - s.begin);
    out.resize(rows * w * es);
    for (uint64_t r = 0; r < rows; ++r) {
      auto b = f.bytes(info, (r * cols + static_cast<uint64_t>(s.begin)) * es, w * es);
      std::memcpy(out.data() + r * w * es, b.data(), b.size());
    }
  } else {
    auto b = f.bytes(info, static_cast<uint64_t>(s.begin) * cols * es,
                     static_cast<uint64_t>(s.end - s.begin) * cols * es);
    out.assign(b.begin(), b.end());
  }
  return out;
}

}  // namespace

ModelConfig model_config_of(const HfCheckpoint& checkpoint) {
  const std::string origin = (checkpoint.path() / "config.json").string();
  if (checkpoint.config().is_null())
    throw_input("{}: the checkpoint has no config.json", checkpoint.path().string());
  return ModelConfig::from_json(checkpoint.config(), origin);
}

ModelShard load_model_shard(const HfCheckpoint& checkpoint, int tp_rank, int tp_size) {
  const ModelConfig config = model_config_of(checkpoint);
  check_tensors(checkpoint, TpPlan(config, tp_size));
  ModelShard m(config, tp_rank, tp_size);
  const auto& ts = m.plan().tensors();
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto bytes = read_slice(checkpoint, ts[i], m.plan().slice(ts[i], tp_rank));
    const DType d = checkpoint.info(ts[i].name).dtype;
    auto out = m.tensor(i);
    KS_CHECK(bytes.size() == out.size() * dtype_size(d), ts[i].name);
    convert_to_f32(d, bytes.data(), out.data(), out.size());
  }
  return m;
}

PoolShards PoolShards::load(const std::vector<const HfCheckpoint*>& checkpoints, int tp_rank,
                            int tp_size, const VocabPlan* vocab) {
  if (checkpoints.empty()) throw_input("the pool has no checkpoints");
  PoolShards p;
  p.config_ = model_config_of(*checkpoints[0]);
  if (vocab) p.config_.vocab_size = vocab->rows;
  p.tp_rank_ = tp_rank;
  p.tp_size_ = tp_size;
  const TpPlan plan(p.config_, tp_size);
  const auto& ts = plan.tensors();
  for (size_t m = 0; m < checkpoints.size(); ++m) {
    const HfCheckpoint* ck = checkpoints[m];
    const ModelConfig c = model_config_of(*ck);
    if (c.architecture != p.config_.architecture || c.hidden_size != p.config_.hidden_size ||
        c.num_layers != p.config_.num_layers || (!vocab && c.vocab_size != p.config_.vocab_size) ||
        c.tie_word_embeddings != p.config_.tie_word_embeddings)
      throw_input("{}: config.json describes another model than {}", ck->path().string(),
                  checkpoints[0]->path().string());
    // Each checkpoint holds the tensors its own config implies (its own vocabulary).
    check_tensors(*ck, vocab ? TpPlan(c, tp_size) : plan);
    p.names_.push_back(ck->name());
    std::vector<HugeVector<std::byte>> tensors;
    for (size_t t = 0; t < ts.size(); ++t) {
      const bool reindexed = vocab && is_vocab_tensor(ts[t].name);
      // Re-indexed rows are kept in fp32: the rows a checkpoint lacks may be
      // averages, computed in fp32 as the merge engine does for the recipes
      // the service writes (dtype float32), so both give the same model.
      const DType d = reindexed ? DType::F32 : ck->info(ts[t].name).dtype;
      if (p.dtypes_.size() <= t)
        p.dtypes_.push_back(d);
      else if (p.dtypes_[t] != d)
        throw_input("{}: tensor {}: dtype {} differs from {} in {}", ck->path().string(),
                    ts[t].name, dtype_name(d), dtype_name(p.dtypes_[t]),
                    checkpoints[0]->path().string());
      const TpSlice s = plan.slice(ts[t], tp_rank);
      if (reindexed) {
        // Row-split (the vocabulary axis): this rank's rows of the re-indexed tensor.
        KS_CHECK(s.split == TpSplit::Rows && ts[t].shape.size() == 2, ts[t].name);
        const auto cols = static_cast<uint64_t>(ts[t].shape[1]);
        const ElementRange range{static_cast<uint64_t>(s.begin) * cols,
                                 static_cast<uint64_t>(s.end) * cols};
        const ReindexedTensor r(*vocab, checkpoints, m, ts[t].name, d,
                                static_cast<uint64_t>(vocab->rows) * cols, range);
        const uint64_t es = dtype_size(d);
        tensors.emplace_back(r.data() + range.begin * es, r.data() + range.end * es);
        continue;
      }
      tensors.push_back(read_slice(*ck, ts[t], s));
    }
    p.data_.push_back(std::move(tensors));
  }
  return p;
}

uint64_t PoolShards::total_bytes() const {
  uint64_t b = 0;
  for (const auto& ck : data_)
    for (const auto& t : ck) b += t.size();
  return b;
}

MergeWeights MergeWeights::per_checkpoint(std::span<const float> w, size_t num_layers) {
  MergeWeights m;
  m.num_checkpoints = w.size();
  m.values.assign(w.begin(), w.end());
  m.layer_group.assign(num_layers, 0);
  return m;
}

MergeWeights MergeWeights::per_layer_group(std::span<const float> w, size_t groups,
                                           size_t num_checkpoints, size_t num_layers) {
  if (groups == 0 || w.size() != groups * num_checkpoints)
    throw_input("merge weights: {} values for {} layer groups x {} checkpoints", w.size(), groups,
                num_checkpoints);
  MergeWeights m;
  m.num_checkpoints = num_checkpoints;
  m.values.assign(w.begin(), w.end());
  for (size_t l = 0; l < num_layers; ++l) m.layer_group.push_back(l * groups / num_layers);
  m.embed_group = 0;
  m.head_group = groups - 1;
  return m;
}

void merge_into(ModelShard& out, const PoolShards& pool, const MergeWeights& weights) {
  const size_t N = pool.num_checkpoints();
  if (out.tp_rank() != pool.tp_rank() || out.tp_size() != pool.tp_size() ||
      out.config().hidden_size != pool.config().hidden_size ||
      out.config().num_layers != pool.config().num_layers)
    throw_runtime("merge_into: the model shard does not match the pool shards");
  if (weights.num_checkpoints != N)
    throw_input("merge weights: {} weights per group for a pool of {} checkpoints",
                weights.num_checkpoints, N);
  const size_t groups = weights.values.size() / std::max<size_t>(N, 1);
  if (weights.values.size() != groups * N ||
      weights.layer_group.size() != static_cast<size_t>(pool.config().num_layers))
    throw_input(
        "merge weights: {} values and {} layer groups do not fit {} checkpoints x {} layers",
        weights.values.size(), weights.layer_group.size(), N, pool.config().num_layers);
  const auto& ts = out.plan().tensors();
  std::vector<const void*> inputs(N);
  for (size_t t = 0; t < ts.size(); ++t) {
    const size_t g = ts[t].layer ? weights.layer_group[static_cast<size_t>(*ts[t].layer)]
                     : ts[t].name == "model.embed_tokens.weight" ? weights.embed_group
                                                                 : weights.head_group;
    if (g >= groups) throw_input("merge weights: layer group {} of {} does not exist", g, groups);
    for (size_t i = 0; i < N; ++i) inputs[i] = pool.bytes(i, t).data();
    auto dst = out.tensor(t);
    KS_CHECK(pool.bytes(0, t).size() == dst.size() * dtype_size(pool.dtype(t)), ts[t].name);
    fused_weighted_sum(inputs, pool.dtype(t), weights.row(g), dst.data(), DType::F32, dst.size());
  }
}

}  // namespace kintsugi
