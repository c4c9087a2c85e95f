// Per-tensor merge methods on top of the fused kernels, plus the collectives
// for whole-tensor statistics. Every reduction is exact (integer histograms,
// fixed-point dot products), so the statistics, and hence the output bytes,
// do not depend on how the tensor is split among ranks.
#include "kintsugi/merge/tensor_merge.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/kernels/element_ops.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"

namespace kintsugi {
namespace {

__extension__ typedef __int128 i128;

constexpr size_t kBuckets = 65536;

// Element size of the kernels' dtypes (BF16, F16, F32; others never get here).
size_t elem_size(DType d) {
  return d == DType::F32 ? 4 : 2;
}

// Elements [first, first + n) of a tensor at p, decoded to fp32.
void decode(DType d, const void* p, uint64_t first, uint64_t n, float* out) {
  const auto* bytes = static_cast<const char*>(p);
  if (d == DType::F32) {
    std::memcpy(out, bytes + 4 * first, 4 * n);
    return;
  }
  for (uint64_t k = 0; k < n; ++k) {
    uint16_t h;
    std::memcpy(&h, bytes + 2 * (first + k), 2);
    out[k] = d == DType::BF16 ? ops::bf16_to_f32(h) : ops::f16_to_f32(h);
  }
}

// delta_i = x_i - base, exactly as the kernels compute it.
void decode_delta(const TensorSources& s, size_t i, ElementRange c, const float* base, float* out) {
  decode(s.dtype, s.models[i], c.begin, c.size(), out);
  for (uint64_t k = 0; k < c.size(); ++k) out[k] = ops::sub(out[k], base[k]);
}

inline uint32_t key_of(float d) {
  return ops::f32_bits(d) & 0x7fffffffu;
}

// Exact Gram matrix of the vectors produced by `fill(v, chunk, out)` for
// v < nv over the whole tensor: max-magnitude pass, then products summed as
// 64-bit fixed point in 128-bit integers (exact, hence order-independent).
template <typename Fill>
std::vector<double> exact_gram(size_t nv, ElementRange range, uint64_t chunk_elems, MPI_Comm comm,
                               const std::string& name, Fill fill) {
  std::vector<std::vector<float>> v(
      nv, std::vector<float>(std::min<uint64_t>(chunk_elems, range.size())));
  float local_max = 0.0f;
  int local_bad = 0;
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t a = 0; a < nv; ++a) {
      fill(a, c, v[a].data());
      for (uint64_t k = 0; k < c.size(); ++k) {
        const float m = std::fabs(v[a][k]);
        if (!std::isfinite(m)) local_bad = 1;
        local_max = std::max(local_max, m);
      }
    }
  }
  float gmax = local_max;
  int bad = local_bad;
  allreduce_in_place(std::span<float>(&gmax, 1), MPI_MAX, comm);
  allreduce_in_place(std::span<int>(&bad, 1), MPI_MAX, comm);
  if (bad) throw_input("tensor {}: non-finite values in the inputs", name);
  std::vector<double> gram(nv * nv, 0.0);
  if (gmax == 0.0f) return gram;
  int e = 0;
  std::frexp(static_cast<double>(gmax), &e);  // gmax < 2^e
  const int E = 62 - 2 * e;                   // |x_a x_b| 2^E < 2^62
  const double scale = std::ldexp(1.0, E);
  std::vector<i128> acc(nv * nv, 0);
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t a = 0; a < nv; ++a) fill(a, c, v[a].data());
    for (size_t a = 0; a < nv; ++a)
      for (size_t b = a; b < nv; ++b) {
        i128 s = 0;
        const float* x = v[a].data();
        const float* y = v[b].data();
        for (uint64_t k = 0; k < c.size(); ++k)
          s += static_cast<int64_t>(static_cast<double>(x[k]) * static_cast<double>(y[k]) * scale);
        acc[a * nv + b] += s;
      }
  }
  const int size = comm_size(comm);
  const std::vector<std::byte> bytes = allgather_bytes(std::as_bytes(std::span(acc)), comm);
  std::vector<i128> all(acc.size() * static_cast<size_t>(size));
  std::memcpy(all.data(), bytes.data(), bytes.size());
  for (size_t a = 0; a < nv; ++a)
    for (size_t b = a; b < nv; ++b) {
      i128 s = 0;
      for (int r = 0; r < size; ++r) s += all[static_cast<size_t>(r) * acc.size() + a * nv + b];
      gram[a * nv + b] = gram[b * nv + a] = static_cast<double>(s) / scale;
    }
  return gram;
}

void weighted_sum_chunks(const std::vector<const void*>& inputs, DType dtype,
                         const std::vector<float>& w, ElementRange range, DType out_dtype,
                         uint64_t chunk_elems, const ChunkSink& sink) {
  const size_t osz = elem_size(out_dtype);
  std::vector<std::byte> out(std::min<uint64_t>(chunk_elems, range.size()) * osz);
  std::vector<const void*> ptrs(inputs.size());
  const size_t isz = elem_size(dtype);
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t i = 0; i < inputs.size(); ++i)
      ptrs[i] = static_cast<const char*>(inputs[i]) + c.begin * isz;
    fused_weighted_sum(ptrs, dtype, w, out.data(), out_dtype, c.size());
    sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
  }
}

// One pass of TIES's radix select: for each active input, the histogram
// (kBuckets bins) of bucket_of(input, key) over the deltas of this rank's
// range (a negative bucket is not counted); `local` gets this rank's counts,
// `global` their sum over all ranks.
template <typename BucketOf>
void key_histogram(const TensorSources& s, const std::vector<char>& active, ElementRange range,
                   uint64_t chunk_elems, MPI_Comm comm, std::vector<uint64_t>& local,
                   std::vector<uint64_t>& global, BucketOf bucket_of) {
  const uint64_t cap = std::min<uint64_t>(chunk_elems, range.size());
  std::vector<float> b(cap), d(cap);
  std::fill(local.begin(), local.end(), 0);
  for (const auto& c : chunks_of(range, chunk_elems)) {
    decode(s.dtype, s.base, c.begin, c.size(), b.data());
    for (size_t i = 0; i < active.size(); ++i) {
      if (!active[i]) continue;
      decode_delta(s, i, c, b.data(), d.data());
      uint64_t* h = local.data() + i * kBuckets;
      for (uint64_t j = 0; j < c.size(); ++j) {
        const int64_t bucket = bucket_of(i, key_of(d[j]));
        if (bucket >= 0) ++h[bucket];
      }
    }
  }
  std::copy(local.begin(), local.end(), global.begin());
  allreduce_in_place(std::span(global), MPI_SUM, comm);
}

}  // namespace

TopKSelection ties_select(const TensorSources& s, std::span<const double> density,
                          ElementRange range, uint64_t chunk_elems, MPI_Comm comm) {
  std::vector<uint64_t> k(s.models.size(), s.numel);
  for (size_t i = 0; i < k.size(); ++i)
    if (density[i] < 1.0)
      k[i] = static_cast<uint64_t>(std::max(0.0, density[i]) * static_cast<double>(s.numel));
  return topk_select(s, k, range, chunk_elems, comm);
}

OutlierCounts breadcrumbs_counts(uint64_t numel, double density, double gamma) {
  OutlierCounts c;
  if (density >= 1.0) return c;
  // As mergekit: int(density * numel), int(gamma * numel), the rest at the bottom.
  const auto n = static_cast<double>(numel);
  const auto target = static_cast<int64_t>(std::max(0.0, density) * n);
  auto top = static_cast<int64_t>(std::clamp(gamma, 0.0, 1.0) * n);
  int64_t bot = static_cast<int64_t>(numel) - target - top;
  if (bot < 0) {
    top += bot;
    bot = 0;
  }
  c.n_bot = static_cast<uint64_t>(bot);
  c.n_top = static_cast<uint64_t>(std::max<int64_t>(0, top));
  return c;
}

TopKSelection topk_select(const TensorSources& s, std::span<const uint64_t> kk, ElementRange range,
                          uint64_t chunk_elems, MPI_Comm comm) {
  const size_t N = s.models.size();
  TopKSelection sel;
  sel.thr_bits.assign(N, 0);
  sel.tie_cutoff.assign(N, std::numeric_limits<uint64_t>::max());  // keep all
  std::vector<uint64_t> k(kk.begin(), kk.end());
  std::vector<char> active(N, 0);
  for (size_t i = 0; i < N; ++i) {
    if (k[i] >= s.numel) continue;
    if (k[i] == 0) {  // keep nothing
      sel.thr_bits[i] = 0xffffffffu;
      sel.tie_cutoff[i] = 0;
    } else if (k[i] < s.numel) {
      active[i] = 1;
    }
  }
  // Pass 1: histogram of the high 16 bits of the key.
  std::vector<uint64_t> local(N * kBuckets, 0), global(N * kBuckets, 0);
  key_histogram(s, active, range, chunk_elems, comm, local, global,
                [](size_t, uint32_t key) { return static_cast<int64_t>(key >> 16); });
  std::vector<uint32_t> hb(N, 0);
  std::vector<uint64_t> above(N, 0);
  for (size_t i = 0; i < N; ++i) {
    if (!active[i]) continue;
    const uint64_t* h = global.data() + i * kBuckets;
    uint64_t cum = 0;
    for (size_t bkt = kBuckets; bkt-- > 0;) {
      if (cum + h[bkt] >= k[i]) {
        hb[i] = static_cast<uint32_t>(bkt);
        above[i] = cum;
        break;
      }
      cum += h[bkt];
    }
  }
  // Pass 2: histogram of the low 16 bits among keys in the selected bucket.
  key_histogram(s, active, range, chunk_elems, comm, local, global, [&](size_t i, uint32_t key) {
    return (key >> 16) == hb[i] ? static_cast<int64_t>(key & 0xffffu) : int64_t{-1};
  });
  std::vector<uint64_t> ties_to_keep(N, 0), local_eq(N, 0), eq_before(N, 0);
  for (size_t i = 0; i < N; ++i) {
    if (!active[i]) continue;
    const uint64_t* h = global.data() + i * kBuckets;
    uint64_t cum = above[i];
    for (size_t bkt = kBuckets; bkt-- > 0;) {
      if (cum + h[bkt] >= k[i]) {
        sel.thr_bits[i] = (hb[i] << 16) | static_cast<uint32_t>(bkt);
        ties_to_keep[i] = k[i] - cum;
        local_eq[i] = local[i * kBuckets + bkt];
        break;
      }
      cum += h[bkt];
    }
  }
  // Ties (key == threshold) are kept in global index order: ranks own
  // ascending ranges, so an exclusive scan tells each rank how many precede it.
  exscan_sum(local_eq, eq_before, comm);
  std::vector<uint64_t> quota(N, 0);
  bool scan = false;
  for (size_t i = 0; i < N; ++i) {
    if (!active[i]) continue;
    quota[i] =
        ties_to_keep[i] > eq_before[i] ? std::min(ties_to_keep[i] - eq_before[i], local_eq[i]) : 0;
    if (quota[i] == 0) {
      sel.tie_cutoff[i] = range.begin;
    } else if (quota[i] == local_eq[i]) {
      sel.tie_cutoff[i] = range.end;
    } else {
      sel.tie_cutoff[i] = range.begin;  // found by the scan below
      scan = true;
    }
  }
  if (scan) {
    const uint64_t cap = std::min<uint64_t>(chunk_elems, range.size());
    std::vector<float> b(cap), d(cap);
    std::vector<uint64_t> seen(N, 0);
    for (const auto& c : chunks_of(range, chunk_elems)) {
      decode(s.dtype, s.base, c.begin, c.size(), b.data());
      for (size_t i = 0; i < N; ++i) {
        if (!active[i] || quota[i] == 0 || quota[i] == local_eq[i] || seen[i] == quota[i]) continue;
        decode_delta(s, i, c, b.data(), d.data());
        for (uint64_t j = 0; j < c.size() && seen[i] < quota[i]; ++j)
          if (key_of(d[j]) == sel.thr_bits[i] && ++seen[i] == quota[i])
            sel.tie_cutoff[i] = c.begin + j + 1;
      }
    }
  }
  return sel;
}

MergeTensorStats merge_tensor(const TensorSources& s, const TensorMethod& m, ElementRange range,
                              DType out_dtype, uint64_t chunk_elems, MPI_Comm comm,
                              const ChunkSink& sink) {
  MergeTensorStats stats;
  const size_t N = s.models.size();
  KS_CHECK(N >= 1, "at least one model");
  switch (m.method) {
    case MergeMethod::Linear:
      weighted_sum_chunks(s.models, s.dtype, m.weights, range, out_dtype, chunk_elems, sink);
      return stats;
    case MergeMethod::ModelStock:
    case MergeMethod::Slerp: {
      const bool stock = m.method == MergeMethod::ModelStock;
      const size_t nv = stock ? N : 2;
      std::vector<float> base_buf(std::min<uint64_t>(chunk_elems, range.size()));
      const auto gram = exact_gram(
          nv, range, chunk_elems, comm, s.name, [&](size_t a, ElementRange c, float* out) {
            if (!stock) {
              decode(s.dtype, a == 0 ? s.base : s.models[0], c.begin, c.size(), out);
              return;
            }
            decode(s.dtype, s.base, c.begin, c.size(), base_buf.data());
            decode_delta(s, a, c, base_buf.data(), out);
          });
      std::vector<const void*> inputs{s.base};
      std::vector<float> w;
      if (stock) {
        // Jang et al. 2024 as mergekit computes it: the mean pairwise cosine of
        // the task vectors, t = k cos / (1 + (k - 1) cos), theta = t avg + (1 - t) base.
        double cos_sum = 0;
        size_t pairs = 0;
        for (size_t a = 0; a < N; ++a)
          for (size_t b = a + 1; b < N; ++b) {
            const double np = std::sqrt(gram[a * N + a]) * std::sqrt(gram[b * N + b]);
            cos_sum += std::clamp(gram[a * N + b] / std::max(np, 1e-6), -1.0, 1.0);
            ++pairs;
          }
        const double cos = cos_sum / static_cast<double>(pairs);
        const double k = static_cast<double>(N);
        const double den = 1.0 + (k - 1.0) * cos;
        const double t = std::fabs(den) < 1e-12 ? 0.0 : k * cos / den;
        stats.model_stock_t = t;
        w.push_back(static_cast<float>(1.0 - t));
        for (size_t i = 0; i < N; ++i) {
          inputs.push_back(s.models[i]);
          w.push_back(static_cast<float>(t / k));
        }
      } else {
        // mergekit's slerp: directions normalized when their norm exceeds 1e-8,
        // plain lerp when they are nearly colinear (|cos| > 0.9995).
        const double n0 = std::sqrt(gram[0]), n1 = std::sqrt(gram[3]);
        const double dot = gram[1] / ((n0 > 1e-8 ? n0 : 1.0) * (n1 > 1e-8 ? n1 : 1.0));
        stats.slerp_dot = dot;
        double s0 = 1.0 - m.t, s1 = m.t;
        if (std::fabs(dot) <= 0.9995) {
          const double theta0 = std::acos(dot);
          const double sin0 = std::sin(theta0);
          const double theta_t = theta0 * m.t;
          s0 = std::sin(theta0 - theta_t) / sin0;
          s1 = std::sin(theta_t) / sin0;
        }
        inputs.push_back(s.models[0]);
        w = {static_cast<float>(s0), static_cast<float>(s1)};
      }
      weighted_sum_chunks(inputs, s.dtype, w, range, out_dtype, chunk_elems, sink);
      return stats;
    }
    case MergeMethod::Nearswap: {
      const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
      std::vector<std::byte> out(std::min<uint64_t>(chunk_elems, range.size()) * osz);
      for (const auto& c : chunks_of(range, chunk_elems)) {
        fused_nearswap(static_cast<const char*>(s.base) + c.begin * isz,
                       static_cast<const char*>(s.models[0]) + c.begin * isz, s.dtype,
                       static_cast<float>(m.t), out.data(), out_dtype, c.size());
        sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
      }
      return stats;
    }
    case MergeMethod::Passthrough: {
      // The one model's elements: its bytes as they are when no scale and no
      // dtype change, else round(x * scale) (scale 1 when absent).
      const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
      const auto* x = static_cast<const std::byte*>(s.models[0]);
      if (m.weights.empty() && out_dtype == s.dtype) {
        for (const auto& c : chunks_of(range, chunk_elems))
          sink(c, std::span<const std::byte>(x + c.begin * isz, c.size() * isz));
        return stats;
      }
      const float scale = m.weights.empty() ? 1.0f : m.weights[0];
      std::vector<std::byte> out(std::min<uint64_t>(chunk_elems, range.size()) * osz);
      for (const auto& c : chunks_of(range, chunk_elems)) {
        fused_scale(x + c.begin * isz, s.dtype, scale, out.data(), out_dtype, c.size());
        sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
      }
      return stats;
    }
    default:
      break;
  }
  // The task-vector family.
  TaskMergeArgs a;
  a.base = s.base;
  a.in_dtype = s.dtype;
  a.weights = m.weights;
  a.lambda = static_cast<float>(m.lambda);
  a.normalize = m.normalize;
  a.out_dtype = out_dtype;
  a.rescale = m.rescale;
  std::vector<float> dens_f;
  TopKSelection sel;
  TopKSelection outliers;
  if (m.method == MergeMethod::Ties || m.method == MergeMethod::DareTies ||
      m.method == MergeMethod::BreadcrumbsTies)
    a.sign_consensus = true;
  if (m.method == MergeMethod::Breadcrumbs || m.method == MergeMethod::BreadcrumbsTies) {
    // Keep ranks [n_bot, numel - n_top) of ascending |delta|: the top
    // (numel - n_bot) minus the top n_top, both in the same total order.
    std::vector<uint64_t> keep(N), top(N);
    bool any_top = false;
    for (size_t i = 0; i < N; ++i) {
      const OutlierCounts c = breadcrumbs_counts(s.numel, m.density[i], m.gamma[i]);
      keep[i] = s.numel - c.n_bot;
      top[i] = c.n_top;
      any_top = any_top || c.n_top > 0;
    }
    sel = topk_select(s, keep, range, chunk_elems, comm);
    a.sparsify = Sparsify::Magnitude;
    a.thr_bits = sel.thr_bits;
    a.tie_cutoff = sel.tie_cutoff;
    stats.ties_threshold_bits = sel.thr_bits;
    if (any_top) {  // the same decision on every rank (it depends on numel only)
      outliers = topk_select(s, top, range, chunk_elems, comm);
      a.outlier_thr_bits = outliers.thr_bits;
      a.outlier_tie_cutoff = outliers.tie_cutoff;
    }
  } else if (m.method == MergeMethod::Ties) {
    sel = ties_select(s, m.density, range, chunk_elems, comm);
    a.sparsify = Sparsify::Magnitude;
    a.thr_bits = sel.thr_bits;
    a.tie_cutoff = sel.tie_cutoff;
    stats.ties_threshold_bits = sel.thr_bits;
  } else if (m.method == MergeMethod::DareLinear || m.method == MergeMethod::DareTies) {
    a.sparsify = Sparsify::Random;
    for (double d : m.density)
      dens_f.push_back(static_cast<float>(std::min(1.0, std::max(0.0, d))));
    a.density = dens_f;
    a.seed_key = dare_seed_key(m.seed, s.name);
  }
  const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
  std::vector<std::byte> out(std::min<uint64_t>(chunk_elems, range.size()) * osz);
  std::vector<const void*> ptrs(N);
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t i = 0; i < N; ++i) ptrs[i] = static_cast<const char*>(s.models[i]) + c.begin * isz;
    a.inputs = ptrs;
    a.base = static_cast<const char*>(s.base) + c.begin * isz;
    a.first_index = c.begin;
    a.out = out.data();
    a.n = c.size();
    fused_task_merge(a);
    sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
  }
  return stats;
}

}  // namespace kintsugi
