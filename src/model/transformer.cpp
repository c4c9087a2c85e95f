#include "kintsugi/model/transformer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numbers>

#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"

namespace kintsugi {

namespace {

// HF's inverse frequencies (rotate-half RoPE) with linear or llama3 scaling.
std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const double e = static_cast<double>(2 * i) / static_cast<double>(c.head_dim);
    double freq = 1.0 / std::pow(c.rope_theta, e);
    const RopeScaling& s = c.rope_scaling;
    if (s.kind == RopeScaling::Kind::Linear) {
      freq /= s.factor;
    } else if (s.kind == RopeScaling::Kind::Llama3) {
      const double low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
      const double high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
      const double wavelen = 2.0 * std::numbers::pi / freq;
      if (wavelen > low_wavelen) {
        freq /= s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        freq = (1.0 - smooth) * freq / s.factor + smooth * freq;
      }
    }
    f[static_cast<size_t>(i)] = static_cast<float>(freq);
  }
  return f;
}

size_t z(int64_t x) {
  return static_cast<size_t>(x);
}

}  // namespace

Transformer::Transformer(const ModelShard& shard, MPI_Comm group) : shard_(shard), group_(group) {
  // A group of one when MPI is not started (dist/mpi.hpp).
  const int size = comm_size(group), rank = comm_rank(group);
  if (size != shard.tp_size() || rank != shard.tp_rank())
    throw_runtime("model shard is for rank {} of {} but the group has this rank as {} of {}",
                  shard.tp_rank(), shard.tp_size(), rank, size);
  const ModelConfig& c = shard.config();
  const TpPlan& plan = shard.plan();
  heads_ = plan.heads(rank);
  kv_heads_ = plan.kv_heads(rank);
  ffn_ = plan.ffn(rank);
  vocab_ = plan.vocab(rank);
  D_ = c.hidden_size;
  hd_ = c.head_dim;
  qL_ = heads_.size() * hd_;
  kvL_ = kv_heads_.size() * hd_;
  fL_ = ffn_.size();
  auto ptr = [&](const std::string& name) { return shard.tensor(name).data(); };
  auto opt = [&](const std::string& name) -> const float* {
    return shard.has(name) ? shard.tensor(name).data() : nullptr;
  };
  const size_t D = z(D_), qL = z(qL_), kvL = z(kvL_), fL = z(fL_);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    const PackedWeight::Block qkv[] = {{ptr(p + "self_attn.q_proj.weight"), qL, D},
                                       {ptr(p + "self_attn.k_proj.weight"), kvL, D},
                                       {ptr(p + "self_attn.v_proj.weight"), kvL, D}};
    const PackedWeight::Block gate_up[] = {{ptr(p + "mlp.gate_proj.weight"), fL, D},
                                           {ptr(p + "mlp.up_proj.weight"), fL, D}};
    layers_.push_back(
        {ptr(p + "input_layernorm.weight"), opt(p + "self_attn.q_proj.bias"),
         opt(p + "self_attn.k_proj.bias"), opt(p + "self_attn.v_proj.bias"),
         opt(p + "self_attn.o_proj.bias"), ptr(p + "post_attention_layernorm.weight"),
         PackedWeight(D, qkv), PackedWeight(ptr(p + "self_attn.o_proj.weight"), D, qL, qL),
         PackedWeight(D, gate_up), PackedWeight(ptr(p + "mlp.down_proj.weight"), D, fL, fL)});
  }
  embed_ = ptr("model.embed_tokens.weight");
  final_norm_ = ptr("model.norm.weight");
  lm_head_ =
      PackedWeight(c.tie_word_embeddings ? embed_ : ptr("lm_head.weight"), z(vocab_.size()), D, D);
  inv_freq_ = rope_inv_freq(c);
  eps_ = static_cast<float>(c.rms_norm_eps);
}

SeqCache Transformer::new_cache() const {
  SeqCache s;
  s.k.resize(layers_.size());
  s.v.resize(layers_.size());
  return s;
}

SeqCache Transformer::continue_from(std::shared_ptr<const SeqCache> prefix,
                                    size_t prefix_len) const {
  KS_CHECK(prefix && !prefix->prefix && prefix_len <= prefix->own_len,
           "a prefix cache must be a root cache at least prefix_len long");
  SeqCache s = new_cache();
  s.prefix = std::move(prefix);
  s.prefix_len = prefix_len;
  return s;
}

void Transformer::allreduce_sum(float* data, size_t n) const {
  if (shard_.tp_size() == 1) return;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, group_));
}

void Transformer::rope(float* x, size_t heads, int64_t pos) {
  const size_t half = z(hd_ / 2);
  // cos/sin of every position seen so far, computed once (HF: fp32 angle).
  while (rope_cos_.size() < (z(pos) + 1) * half) {
    const size_t p = rope_cos_.size() / half;
    for (size_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq_[i];
      rope_cos_.push_back(static_cast<float>(std::cos(static_cast<double>(angle))));
      rope_sin_.push_back(static_cast<float>(std::sin(static_cast<double>(angle))));
    }
  }
  const float* cs = rope_cos_.data() + z(pos) * half;
  const float* sn = rope_sin_.data() + z(pos) * half;
  for (size_t h = 0; h < heads; ++h) {
    float* xh = x + h * z(hd_);
    for (size_t i = 0; i < half; ++i) {
      const float a = xh[i], b = xh[i + half];
      xh[i] = a * cs[i] - b * sn[i];
      xh[i + half] = b * cs[i] + a * sn[i];
    }
  }
}

// Per request and KV head: the query heads it serves (GQA: num_heads /
// num_kv_heads of them, adjacent in q) attend causally, within the sliding
// window, over the prefix's cached keys and the request's own, the new ones
// included; out: those heads' columns of attn: [N, qL]. With `scored`
// (scored_attention), only the scored rows' queries, from qsel in scored
// order, into attn's first rows in that order.
void Transformer::attention(size_t l, std::span<ForwardRequest> requests,
                            const std::vector<size_t>& offsets, const ScoredQueries* scored) {
  const ModelConfig& c = shard_.config();
  const size_t hd = z(hd_), qL = z(qL_), kvL = z(kvL_);
  const size_t W = qL + 2 * kvL;  // a token's row of qkv: [q | k | v]
  const int64_t group = c.num_heads / c.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t window = c.sliding_window > 0 ? z(c.sliding_window) : 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    SeqCache& sc = *requests[r].cache;
    const size_t n = requests[r].tokens.size();
    const size_t pre = sc.prefix_len;
    const size_t own = sc.k[l].size() / kvL;  // this layer's keys, the new ones included
    // This request's queries (row stride ldq) and outputs, all its tokens or
    // the selected ones.
    const float* q = qkv_.data() + offsets[r] * W;
    size_t ldq = W, out_row = offsets[r];
    const uint32_t* rows = nullptr;
    size_t nrows = 0;
    if (scored) {
      out_row = scored->first[r];
      nrows = scored->first[r + 1] - out_row;
      if (nrows == 0) continue;
      q = qsel_.data() + out_row * qL;
      ldq = qL;
      rows = scored->token.data() + out_row;
    }
    for (int64_t kvh = kv_heads_.begin; kvh < kv_heads_.end; ++kvh) {
      // This rank's query heads served by KV head kvh.
      const int64_t h0 = std::max(kvh * group, heads_.begin) - heads_.begin;
      const int64_t h1 = std::min((kvh + 1) * group, heads_.end) - heads_.begin;
      if (h1 <= h0) continue;
      const size_t kvo = z(kvh - kv_heads_.begin) * hd;
      const KvRows kv{pre ? sc.prefix->k[l].data() + kvo : nullptr,
                      pre ? sc.prefix->v[l].data() + kvo : nullptr,
                      sc.k[l].data() + kvo,
                      sc.v[l].data() + kvo,
                      pre,
                      kvL};
      attend_tokens({q + z(h0) * hd, ldq, z(h1 - h0), n, pre + own - n, hd, scale, kv, window,
                     attn_.data() + out_row * qL + z(h0) * hd, qL, rows, nrows},
                    scores_);
    }
  }
}

// Shapes below: N tokens of all requests together; D hidden; qL, kvL, fL this
// rank's query, key/value and MLP widths (its heads and ffn slice); vL its
// slice of the vocabulary.
void Transformer::forward(std::span<ForwardRequest> requests) {
  const std::vector<size_t> offsets = token_offsets(requests);
  const size_t N = offsets.back();
  embed(requests, offsets);  // x: [N, D]
  resize_work_buffers(N);
  size_t rows = N;  // the rows carried through the layer's second half
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    const bool last = l + 1 == layers_.size();
    rms_norm_rows(x_.data(), L.attn_norm, xn_.data(), N, z(D_), eps_);  // xn: [N, D]
    const std::vector<size_t> scored =
        last ? scored_rows(requests, offsets) : std::vector<size_t>{};
    const bool subset = last && scored_subset(scored, N);
    if (subset && qL_ % PackedWeight::kPanel == 0) {
      scored_attention(L, l, requests, offsets, scored);  // attn, x: [rows, ·]
      rows = scored.size();
    } else {
      qkv_projection(L, N);                        // q: [N, qL], k, v: [N, kvL]
      rope_and_cache(l, requests, offsets, true);  // k, v appended to the caches
      attention(l, requests, offsets);             // attn: [N, qL]
      if (subset) rows = keep_rows(scored);        // attn, x: [rows, ·]
    }
    attention_output(L, rows);  // x += attn wo^T + bo: [rows, D]
    rms_norm_rows(x_.data(), L.mlp_norm, xn_.data(), rows, z(D_), eps_);  // xn: [rows, D]
    mlp(L, rows);  // x += swiglu(xn): [rows, D]
  }
  for (auto& rq : requests) rq.cache->own_len += rq.tokens.size();
  final_norm(rows);  // head_rows: [scored rows, D]
}

// The last layer's keys and values are cached for every token, but past
// them only the scored rows reach the logits (llama.cpp does the same): their
// queries and attention (scored_attention), then the output projection and
// the MLP run on those rows alone, moved to the front of attn and x in scored
// order. A row's result does not depend on the rows computed with it, so the
// scores keep their bits; with one scored position per prompt of 64 this is
// most of the last layer's work.
std::vector<size_t> Transformer::scored_rows(std::span<ForwardRequest> requests,
                                             const std::vector<size_t>& offsets) const {
  std::vector<size_t> rows;
  for (size_t r = 0; r < requests.size(); ++r)
    for (int32_t i : requests[r].logits_at) {
      KS_CHECK(i >= 0 && z(i) < requests[r].tokens.size(), "logits_at outside the request");
      rows.push_back(offsets[r] + z(i));
    }
  return rows;
}

// False when the scored rows are rows 0 .. N-1 in order (e.g. a decode step):
// nothing to skip or move.
bool Transformer::scored_subset(const std::vector<size_t>& rows, size_t N) {
  if (rows.size() != N) return true;
  for (size_t o = 0; o < N; ++o)
    if (rows[o] != o) return true;
  return false;
}

// Rows `rows` of x (and of attn, when it holds every row's attention) move to
// the front, through a copy: positions may repeat or come in any order.
size_t Transformer::keep_rows(const std::vector<size_t>& rows, bool with_attn) {
  const size_t D = z(D_), qL = z(qL_);
  if (rows.size() > x_.size() / D) resize_work_buffers(rows.size());  // repeats: more rows
  auto gather = [&](std::vector<float>& buf, size_t width) {
    std::vector<float> kept(rows.size() * width);
    for (size_t o = 0; o < rows.size(); ++o)
      std::copy_n(buf.data() + rows[o] * width, width, kept.data() + o * width);
    buf.resize(std::max(buf.size(), kept.size()));
    std::copy(kept.begin(), kept.end(), buf.begin());
  };
  if (with_attn) gather(attn_, qL);
  gather(x_, D);
  return rows.size();
}

// The last layer's first half when only `rows` (scored order) reach the
// logits: k and v of every token (the cache needs them), q and attention of
// those rows only: attn [rows, qL] in scored order, and x's rows moved to
// match. The products are column slices of the same packed weight, and
// attend_tokens computes the selected rows as among all of a request's
// tokens, so every value has the bits of the full layer.
void Transformer::scored_attention(const Layer& L, size_t l, std::span<ForwardRequest> requests,
                                   const std::vector<size_t>& offsets,
                                   const std::vector<size_t>& rows) {
  const size_t N = offsets.back(), qL = z(qL_), S = rows.size();
  if (S > N) resize_work_buffers(S);
  qkv_projection(L, N, &rows);  // k, v: [N, kvL] in qkv; q: [S, qL] in qsel
  rope_and_cache(l, requests, offsets, false);
  // Each request's scored rows are consecutive in scored order: where they
  // start, each one's token, and its q rotated by the token's position.
  // (Sized at construction: GCC 12 at -O3 for aarch64 reports a false
  // -Wnull-dereference on growing the empty vector in place.)
  ScoredQueries sel{std::vector<size_t>(requests.size() + 1, 0), std::vector<uint32_t>(S)};
  for (size_t r = 0, o = 0; r < requests.size(); ++r) {
    const size_t start = requests[r].cache->length();  // own_len grows after the last layer
    sel.first[r] = o;
    for (size_t k = 0; k < requests[r].logits_at.size(); ++k, ++o) {
      sel.token[o] = static_cast<uint32_t>(rows[o] - offsets[r]);
      rope(qsel_.data() + o * qL, z(heads_.size()), static_cast<int64_t>(start + sel.token[o]));
    }
    sel.first[r + 1] = o;
  }
  attention(l, requests, offsets, &sel);
  keep_rows(rows, false);
}

// Request r's tokens are rows [offsets[r], offsets[r + 1]) of every work buffer.
std::vector<size_t> Transformer::token_offsets(std::span<ForwardRequest> requests) const {
  std::vector<size_t> offsets(requests.size() + 1, 0);
  for (size_t r = 0; r < requests.size(); ++r) {
    offsets[r + 1] = offsets[r] + requests[r].tokens.size();
    KS_CHECK(requests[r].cache && requests[r].cache->k.size() == layers_.size(),
             "request without a cache from this model");
    // Checked before any buffer is sized for these tokens.
    const size_t max = static_cast<size_t>(shard_.config().max_position_embeddings);
    if (requests[r].cache->length() + requests[r].tokens.size() > max)
      throw_input("a sequence of {} tokens is longer than the model's max_position_embeddings ({})",
                  requests[r].cache->length() + requests[r].tokens.size(), max);
  }
  return offsets;
}

// x: [N, D]. The rank holding a token's row of the (vocab-parallel) embedding
// writes it, the others write zeros; the all-reduce gives every rank all rows.
void Transformer::embed(std::span<ForwardRequest> requests, const std::vector<size_t>& offsets) {
  const size_t D = z(D_);
  const int64_t V = shard_.config().vocab_size;
  x_.assign(offsets.back() * D, 0.0f);
  for (size_t r = 0; r < requests.size(); ++r)
    for (size_t i = 0; i < requests[r].tokens.size(); ++i) {
      const int32_t t = requests[r].tokens[i];
      KS_CHECK(t >= 0 && t < V, "token id outside the vocabulary");
      if (t >= vocab_.begin && t < vocab_.end)
        std::copy_n(embed_ + z(t - vocab_.begin) * D, D, x_.data() + (offsets[r] + i) * D);
    }
  allreduce_sum(x_.data(), x_.size());
}

void Transformer::resize_work_buffers(size_t N) {
  const size_t D = z(D_), qL = z(qL_), kvL = z(kvL_), fL = z(fL_);
  xn_.resize(N * D);
  qkv_.resize(N * (qL + 2 * kvL));
  attn_.resize(N * qL);
  proj_.resize(N * D);
  gu_.resize(N * 2 * fL);
  act_.resize(N * fL);
}

// qkv = xn [wq wk wv]^T + [bq bk bv]: [N, qL + 2 kvL] in one product, a
// token's q, k and v side by side (column-parallel: this rank's heads; biases
// in Qwen2 only). With `scored` (the last layer's scored rows, scored_attention):
// k and v for every token, in their place in qkv, and q only for those rows,
// into qsel [rows, qL], as column slices of the same product (the same bits).
void Transformer::qkv_projection(const Layer& L, size_t N, const std::vector<size_t>* scored) {
  const size_t D = z(D_), qL = z(qL_), kvL = z(kvL_), W = qL + 2 * kvL;
  float* q = qkv_.data();  // the q rows, and their count and stride
  size_t q_rows = N, ldq = W;
  if (!scored) {
    matmul(N, xn_.data(), D, L.qkv, qkv_.data(), W);
  } else {
    matmul_columns(N, xn_.data(), D, L.qkv, qL, 2 * kvL, qkv_.data() + qL, W);
    q_rows = scored->size();
    ldq = qL;
    std::vector<float> xs(q_rows * D);  // the scored rows of xn
    for (size_t o = 0; o < q_rows; ++o)
      std::copy_n(xn_.data() + (*scored)[o] * D, D, xs.data() + o * D);
    qsel_.resize(q_rows * qL);
    q = qsel_.data();
    matmul_columns(q_rows, xs.data(), D, L.qkv, 0, qL, q, qL);
  }
  if (!L.bq) return;
  auto add_bias = [](float* m, size_t rows, size_t ld, const float* bias, size_t width) {
    for (size_t i = 0; i < rows; ++i)
      for (size_t j = 0; j < width; ++j) m[i * ld + j] += bias[j];
  };
  add_bias(q, q_rows, ldq, L.bq, qL);
  add_bias(qkv_.data() + qL, N, W, L.bk, kvL);
  add_bias(qkv_.data() + qL + kvL, N, W, L.bv, kvL);
}

// Rotates q and k by each token's position in its sequence (after what its
// cache holds), then appends this layer's k, v rows to each request's cache.
void Transformer::rope_and_cache(size_t l, std::span<ForwardRequest> requests,
                                 const std::vector<size_t>& offsets, bool rope_q) {
  const size_t qL = z(qL_), kvL = z(kvL_), W = qL + 2 * kvL;
  for (size_t r = 0; r < requests.size(); ++r) {
    SeqCache& sc = *requests[r].cache;
    const size_t n = requests[r].tokens.size();
    const size_t start = sc.length();  // own_len grows after the last layer
    auto& kc = sc.k[l];
    auto& vc = sc.v[l];
    // Appended, not resized then overwritten: zeroing the new rows first was
    // 2 % of a prefill. Grown geometrically: reserving just the new rows
    // moved the whole cache to a new buffer at every decode step.
    for (auto* c : {&kc, &vc})
      if (c->size() + n * kvL > c->capacity())
        c->reserve(std::max(c->size() + n * kvL, 2 * c->capacity()));
    for (size_t i = 0; i < n; ++i) {
      const int64_t pos = static_cast<int64_t>(start + i);
      float* row = qkv_.data() + (offsets[r] + i) * W;
      if (rope_q) rope(row, z(heads_.size()), pos);
      rope(row + qL, z(kv_heads_.size()), pos);
      kc.insert(kc.end(), row + qL, row + qL + kvL);
      vc.insert(vc.end(), row + qL + kvL, row + qL + 2 * kvL);
    }
  }
}

// proj = attn wo^T: [N, D], a partial sum over this rank's heads (row-parallel),
// all-reduced; then the residual x += proj + bo.
void Transformer::attention_output(const Layer& L, size_t N) {
  const size_t D = z(D_), qL = z(qL_);
  matmul(N, attn_.data(), qL, L.wo, proj_.data(), D);
  allreduce_sum(proj_.data(), N * D);  // the buffer may hold more rows (keep_rows)
  for (size_t i = 0; i < N * D; ++i) x_[i] += proj_[i] + (L.bo ? L.bo[i % D] : 0.0f);
}

// SwiGLU on this rank's ffn slice: [gate up] = xn [wgate wup]^T: [N, 2 fL]
// in one product; act = silu(gate) * up: [N, fL]; proj = act wdown^T: [N, D]
// (partial sum, all-reduced); then the residual x += proj.
void Transformer::mlp(const Layer& L, size_t N) {
  const size_t D = z(D_), fL = z(fL_);
  matmul(N, xn_.data(), D, L.gate_up, gu_.data(), 2 * fL);
  swiglu_rows(gu_.data(), act_.data(), N, fL);
  matmul(N, act_.data(), fL, L.down, proj_.data(), D);
  allreduce_sum(proj_.data(), N * D);
  for (size_t i = 0; i < N * D; ++i) x_[i] += proj_[i];
}

// The final norm of the scored rows, the first `rows` of x: head_rows [rows, D].
void Transformer::final_norm(size_t rows) {
  const size_t D = z(D_);
  head_rows_.resize(rows * D);
  rms_norm_rows(x_.data(), final_norm_, head_rows_.data(), rows, D, eps_);
}

// Rows of logits per block: as many as kLogitBlockBytes holds, at least one.
size_t Transformer::logit_block_rows() const {
  const size_t row_bytes = z(vocab_.size()) * sizeof(float);
  return std::max<size_t>(1, kLogitBlockBytes / std::max<size_t>(1, row_bytes));
}

// The local vocabulary slice of rows [row0, row0 + n) = head_rows lm_head^T:
// [n, vL]. A row's logits do not depend on the rows computed with it.
void Transformer::logits(size_t row0, size_t n, float* out) const {
  KS_CHECK(row0 + n <= scored_rows(), "logit rows past the scored rows");
  const size_t D = z(D_), vL = z(vocab_.size());
  matmul(n, head_rows_.data() + row0 * D, D, lm_head_, out, vL);
}

// f(r, logits of scored row r: [vL]) for every scored row in order, the
// logits made a block of rows at a time in the one block buffer.
void Transformer::for_each_logit_row(const std::function<void(size_t, const float*)>& f) const {
  const size_t rows = scored_rows(), vL = z(vocab_.size()), block = logit_block_rows();
  logit_block_.resize(std::min(block, rows) * vL);
  for (size_t r0 = 0; r0 < rows; r0 += block) {
    const size_t n = std::min(block, rows - r0);
    logits(r0, n, logit_block_.data());
    for (size_t r = r0; r < r0 + n; ++r) f(r, logit_block_.data() + (r - r0) * vL);
  }
}

// Per row r, from this rank's slice of its logits (a block at a time): m_r
// its largest logit and s_r = sum exp(logit - m_r) in double; per target, its
// logit where this rank holds it. Across the group, M_r = the largest m_r,
// and log p = (target logit - M_r) - log(sum over ranks s_r exp(m_r - M_r)).
// On one rank m_r = M_r: the plain two-pass log-sum-exp.
void Transformer::log_probs(std::span<const int32_t> row_of, std::span<const int32_t> targets,
                            std::span<double> out) const {
  const size_t nt = targets.size(), rows = scored_rows();
  KS_CHECK(out.size() == nt && (row_of.empty() ? nt == rows : row_of.size() == nt),
           "one output and row per target");
  const size_t vL = z(vocab_.size());
  // The targets of each row, in a counting sort by row.
  std::vector<size_t> first(rows + 1, 0), order(nt);
  for (size_t i = 0; i < nt; ++i) {
    const size_t r = row_of.empty() ? i : z(row_of[i]);
    KS_CHECK(r < rows, "target row outside the logits");
    ++first[r + 1];
  }
  for (size_t r = 0; r < rows; ++r) first[r + 1] += first[r];
  {
    std::vector<size_t> next(first.begin(), first.end() - 1);
    for (size_t i = 0; i < nt; ++i) order[next[row_of.empty() ? i : z(row_of[i])]++] = i;
  }
  std::vector<float> mx(rows), target_logit(nt, -INFINITY);
  // [s_r per row, then (target logit - M_r) per target (0 off this rank)]
  std::vector<double> acc(rows + nt, 0.0);
  for_each_logit_row([&](size_t r, const float* row) {
    mx[r] = max_of(row, vL);
    acc[r] = sum_exp_shifted(row, vL, mx[r]);
    for (size_t k = first[r]; k < first[r + 1]; ++k) {
      const int32_t t = targets[order[k]];
      if (t >= vocab_.begin && t < vocab_.end) target_logit[order[k]] = row[z(t - vocab_.begin)];
    }
  });
  std::vector<float> global_mx = mx;
  if (shard_.tp_size() > 1) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, global_mx.data(), static_cast<int>(rows), MPI_FLOAT,
                            MPI_MAX, group_));
    for (size_t r = 0; r < rows; ++r)
      if (mx[r] != global_mx[r])  // a slice entirely below the maximum (or all -inf)
        acc[r] =
            mx[r] == -INFINITY
                ? 0.0
                : acc[r] * std::exp(static_cast<double>(mx[r]) - static_cast<double>(global_mx[r]));
  }
  for (size_t i = 0; i < nt; ++i) {
    const size_t r = row_of.empty() ? i : z(row_of[i]);
    const int32_t t = targets[i];
    if (t >= vocab_.begin && t < vocab_.end)
      acc[rows + i] = static_cast<double>(target_logit[i]) - static_cast<double>(global_mx[r]);
  }
  if (shard_.tp_size() > 1)
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, acc.data(), static_cast<int>(acc.size()), MPI_DOUBLE,
                            MPI_SUM, group_));
  for (size_t i = 0; i < nt; ++i) {
    const size_t r = row_of.empty() ? i : z(row_of[i]);
    out[i] = acc[rows + i] - std::log(acc[r]);
  }
}

void Transformer::argmax(std::span<int32_t> out) const {
  const size_t rows = scored_rows();
  KS_CHECK(out.size() == rows, "one output per scored row");
  struct FloatInt {
    float value;
    int index;
  };
  std::vector<FloatInt> best(rows);
  const size_t vL = z(vocab_.size());
  // A NaN logit (NaN or infinite weights) would make greedy decoding pick an
  // arbitrary token and pass garbage for a generation; it is an error, raised
  // on every rank of the group (the NaN may sit in one rank's vocabulary shard).
  int nan_seen = 0;
  for_each_logit_row([&](size_t r, const float* row) {
    size_t bj = 0;
    nan_seen |= std::isnan(row[0]) ? 1 : 0;
    for (size_t j = 1; j < vL; ++j) {
      nan_seen |= std::isnan(row[j]) ? 1 : 0;
      if (row[j] > row[bj]) bj = j;
    }
    best[r] = {row[bj], static_cast<int>(vocab_.begin + static_cast<int64_t>(bj))};
  });
  if (shard_.tp_size() > 1) {
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, best.data(), static_cast<int>(rows), MPI_FLOAT_INT,
                            MPI_MAXLOC, group_));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &nan_seen, 1, MPI_INT, MPI_MAX, group_));
  }
  if (nan_seen)
    throw_runtime(
        "the model's logits are NaN: its weights hold NaN or infinite values (or overflow in "
        "the forward pass)");
  for (size_t r = 0; r < rows; ++r) out[r] = best[r].index;
}

}  // namespace kintsugi
