// Per-tensor merge methods on top of the fused kernels, plus the collectives
// for whole-tensor statistics. Every reduction is exact (integer histograms,
// fixed-point dot products), so the statistics, and hence the output bytes,
// do not depend on how the tensor is split among ranks.
#include "kintsugi/merge/tensor_merge.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

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

// The fixed-point scale 2^E of a Gram matrix whose vectors' largest
// magnitude is gmax > 0 (tensor_merge.hpp): gmax < 2^e, E = 62 - 2e, so
// |x_a x_b| 2^E < 2^62 and a 128-bit sum of 2^64 such terms cannot overflow.
double gram_scale(float gmax) {
  int e = 0;
  std::frexp(static_cast<double>(gmax), &e);
  return std::ldexp(1.0, 62 - 2 * e);
}

// sum_k trunc(x[k] y[k] scale): each product is exact in double (two 24-bit
// significands), the scaling by a power of two too.
inline i128 fixed_dot(const float* x, const float* y, uint64_t n, double scale) {
  i128 s = 0;
  for (uint64_t k = 0; k < n; ++k)
    s += static_cast<int64_t>(static_cast<double>(x[k]) * static_cast<double>(y[k]) * scale);
  return s;
}

// Largest magnitude of n values; `bad` set when one is not finite.
inline float max_magnitude(const float* x, uint64_t n, float m, int& bad) {
  for (uint64_t k = 0; k < n; ++k) {
    const float a = std::fabs(x[k]);
    if (!std::isfinite(a)) bad = 1;
    m = std::max(m, a);
  }
  return m;
}

// Exact Gram matrix of the vectors produced by `fill(v, chunk, out)` for
// v < nv over the whole tensor: max-magnitude pass, then products summed as
// 64-bit fixed point in 128-bit integers (exact, hence order-independent).
template <typename Fill>
std::vector<double> exact_gram(size_t nv, ElementRange range, uint64_t chunk_elems, MPI_Comm comm,
                               const std::string& name, Fill fill) {
  std::vector<std::vector<float>> v(
      nv, std::vector<float>(std::min<uint64_t>(chunk_elems, range.size())));
  float gmax = 0.0f;
  int bad = 0;
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t a = 0; a < nv; ++a) {
      fill(a, c, v[a].data());
      gmax = max_magnitude(v[a].data(), c.size(), gmax, bad);
    }
  }
  allreduce_in_place(std::span<float>(&gmax, 1), MPI_MAX, comm);
  allreduce_in_place(std::span<int>(&bad, 1), MPI_MAX, comm);
  if (bad) throw_input("tensor {}: non-finite values in the inputs", name);
  std::vector<double> gram(nv * nv, 0.0);
  if (gmax == 0.0f) return gram;
  const double scale = gram_scale(gmax);
  std::vector<i128> acc(nv * nv, 0);
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t a = 0; a < nv; ++a) fill(a, c, v[a].data());
    for (size_t a = 0; a < nv; ++a)
      for (size_t b = a; b < nv; ++b)
        acc[a * nv + b] += fixed_dot(v[a].data(), v[b].data(), c.size(), scale);
  }
  allreduce_sum_i128(std::span(acc), comm);
  for (size_t a = 0; a < nv; ++a)
    for (size_t b = a; b < nv; ++b)
      gram[a * nv + b] = gram[b * nv + a] = static_cast<double>(acc[a * nv + b]) / scale;
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

std::array<double, 2> nuslerp_coefficients(double g00, double g01, double g11, double t) {
  // mergekit's _normalize divides by the norm clamped to >= 1e-7.
  const double n0 = std::max(std::sqrt(g00), 1e-7), n1 = std::max(std::sqrt(g11), 1e-7);
  const double cos = std::clamp(g01 / (n0 * n1), -1.0, 1.0);
  const double theta = std::acos(cos);
  const double sin_theta = std::sin(theta);
  if (std::fabs(sin_theta) < 1e-8) return {1.0 - t, t};  // (nearly) colinear: lerp
  return {std::sin((1.0 - t) * theta) / sin_theta, std::sin(t * theta) / sin_theta};
}

namespace {

// x^T Q x for a symmetric n x n matrix Q (row-major), in a fixed order:
// sum over i of x_i * (sum over j of Q_ij x_j); a rounding below zero is 0.
double quad(std::span<const double> q, std::span<const double> x) {
  const size_t n = x.size();
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double r = 0.0;
    for (size_t j = 0; j < n; ++j) r += q[i * n + j] * x[j];
    s += x[i] * r;
  }
  return std::max(s, 0.0);
}

}  // namespace

std::optional<std::vector<double>> multislerp_coefficients(std::span<const double> gram,
                                                           std::span<const double> w, double eps) {
  // Every vector of mergekit's multislerp lies in the span of the inputs x_i:
  // it is carried as its coefficients on the unit vectors u_i = x_i / (|x_i| + eps),
  // whose Gram matrix is U_ij = G_ij / ((|x_i| + eps)(|x_j| + eps)).
  const size_t n = w.size();
  std::vector<double> norm(n), u(n * n);
  for (size_t i = 0; i < n; ++i) norm[i] = std::sqrt(gram[i * n + i]);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j)
      u[i * n + j] = gram[i * n + j] / ((norm[i] + eps) * (norm[j] + eps));
  // mean = sum_i w_i u_i, normalized
  const double mean_norm = std::sqrt(quad(u, w));
  if (mean_norm < eps) return std::nullopt;
  std::vector<double> alpha(n);
  for (size_t i = 0; i < n; ++i) alpha[i] = w[i] / mean_norm;
  // dots_i = u_i . mean; tangent = sum_i w_i (u_i - dots_i mean)
  double wdots = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double d = 0.0;
    for (size_t j = 0; j < n; ++j) d += u[i * n + j] * alpha[j];
    wdots += w[i] * d;
  }
  std::vector<double> beta(n);
  for (size_t k = 0; k < n; ++k) beta[k] = w[k] - wdots * alpha[k];
  // Exponential map back to the sphere, then the weighted mean norm.
  const double tangent_norm = std::sqrt(quad(u, beta)) + eps;
  const double c = std::cos(tangent_norm), sn = std::sin(tangent_norm) / tangent_norm;
  double avg_norm = 0.0;
  for (size_t i = 0; i < n; ++i) avg_norm += norm[i] * w[i];
  std::vector<double> coef(n);
  for (size_t k = 0; k < n; ++k)
    coef[k] = (alpha[k] * c + beta[k] * sn) * avg_norm / (norm[k] + eps);
  return coef;
}

std::vector<double> karcher_coefficients(std::span<const double> gram, int64_t max_iter, double tol,
                                         int64_t* iterations) {
  // mergekit's karcher_merge_tensors with alphas 1/N, on the span of the
  // inputs: the mean is carried as its coefficients g on the unit vectors
  // x_i / |x_i| of the inputs whose norm exceeds tol (the valid ones).
  size_t n = 0;
  while (n * n < gram.size()) ++n;
  const double alpha = 1.0 / static_cast<double>(n);
  std::vector<double> norm(n);
  std::vector<size_t> valid;
  for (size_t i = 0; i < n; ++i) {
    norm[i] = std::sqrt(gram[i * n + i]);
    if (norm[i] > tol) valid.push_back(i);
  }
  if (iterations) *iterations = 0;
  std::vector<double> coef(n, 0.0);
  if (valid.empty()) return coef;  // zeros
  const size_t v = valid.size();
  double alpha_sum = 0.0;
  for (size_t k = 0; k < v; ++k) alpha_sum += alpha;
  const double a = alpha / alpha_sum;  // the normalized alphas, all equal
  std::vector<double> unit(v * v);
  for (size_t p = 0; p < v; ++p)
    for (size_t q = 0; q < v; ++q)
      unit[p * v + q] = gram[valid[p] * n + valid[q]] / (norm[valid[p]] * norm[valid[q]]);
  // Initial guess: the normalized weighted arithmetic mean of the units.
  std::vector<double> g(v, a), tangent(v);
  const double norm_g = std::sqrt(quad(unit, g));
  if (norm_g < tol) {
    std::fill(g.begin(), g.end(), 0.0);
    g[0] = 1.0;
  } else {
    for (double& x : g) x /= norm_g;
  }
  for (int64_t it = 0; it < max_iter; ++it) {
    std::fill(tangent.begin(), tangent.end(), 0.0);
    for (size_t p = 0; p < v; ++p) {
      double dot = 0.0;
      for (size_t q = 0; q < v; ++q) dot += g[q] * unit[q * v + p];
      dot = std::clamp(dot, -1.0, 1.0);
      const double theta = std::acos(dot);
      if (theta < tol) continue;
      // tangent += a (theta / sin theta) (unit_p - dot * mean)
      const double k = a * (theta / std::sin(theta));
      for (size_t q = 0; q < v; ++q) tangent[q] -= k * (dot * g[q]);
      tangent[p] += k;
    }
    const double norm_t = std::sqrt(quad(unit, tangent));
    if (norm_t < tol) break;
    const double c = std::cos(norm_t), sn = std::sin(norm_t);
    for (size_t q = 0; q < v; ++q) g[q] = c * g[q] + sn * (tangent[q] / norm_t);
    const double norm_u = std::sqrt(quad(unit, g));
    if (norm_u > tol)
      for (double& x : g) x /= norm_u;
    if (iterations) ++*iterations;
  }
  // The global scale: the alphas' weighted sum of all the norms (zeros included).
  double scale = 0.0;
  for (size_t i = 0; i < n; ++i) scale += alpha * norm[i];
  for (size_t p = 0; p < v; ++p) coef[valid[p]] = scale * g[p] / norm[valid[p]];
  return coef;
}

namespace {

// out = sum_i w_i x_i (no base), or base + sum_i w_i (x_i - base), over this
// rank's range in chunks: the fused kernels' operations (tensor_merge.hpp).
void combine_chunks(const TensorSources& s, std::span<const void* const> inputs, const void* base,
                    const std::vector<double>& coef, ElementRange range, DType out_dtype,
                    uint64_t chunk_elems, const ChunkSink& sink) {
  std::vector<float> w(coef.size());
  for (size_t i = 0; i < coef.size(); ++i) w[i] = static_cast<float>(coef[i]);
  if (base == nullptr) {
    weighted_sum_chunks({inputs.begin(), inputs.end()}, s.dtype, w, range, out_dtype, chunk_elems,
                        sink);
    return;
  }
  const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
  std::vector<std::byte> out(std::min<uint64_t>(chunk_elems, range.size()) * osz);
  std::vector<const void*> ptrs(inputs.size());
  TaskMergeArgs a;
  a.in_dtype = s.dtype;
  a.out_dtype = out_dtype;
  a.weights = w;  // no sparsification, no normalization, lambda 1
  for (const auto& c : chunks_of(range, chunk_elems)) {
    for (size_t i = 0; i < inputs.size(); ++i)
      ptrs[i] = static_cast<const char*>(inputs[i]) + c.begin * isz;
    a.inputs = ptrs;
    a.base = static_cast<const char*>(base) + c.begin * isz;
    a.first_index = c.begin;
    a.out = out.data();
    a.n = c.size();
    fused_task_merge(a);
    sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
  }
}

// The two vectors of nuslerp over elements [c.begin, c.end): the models, or
// their task vectors when there is a base.
struct NuslerpReader {
  const TensorSources& s;
  std::vector<float> base, v0, v1;
  ElementRange last{1, 0};  // what the buffers hold (none yet)
  NuslerpReader(const TensorSources& src, uint64_t cap) : s(src), base(cap), v0(cap), v1(cap) {}
  void read(ElementRange c) {
    if (c.begin == last.begin && c.end == last.end) return;
    last = c;
    decode(s.dtype, s.models[0], c.begin, c.size(), v0.data());
    decode(s.dtype, s.models[1], c.begin, c.size(), v1.data());
    if (s.base == nullptr) return;
    decode(s.dtype, s.base, c.begin, c.size(), base.data());
    for (uint64_t k = 0; k < c.size(); ++k) {
      v0[k] = ops::sub(v0[k], base[k]);
      v1[k] = ops::sub(v1[k], base[k]);
    }
  }
};

// nuslerp's Gram entries (g00, g01, g11) of elements `row` of the tensor,
// read whole by this rank whatever its range (pieces of the reader's size).
std::array<double, 3> row_gram(NuslerpReader& r, ElementRange row, int& bad) {
  const uint64_t cap = r.v0.size();
  float m = 0.0f;
  const bool one_piece = row.size() <= cap;
  for (const auto& c : chunks_of(row, cap)) {
    r.read(c);
    m = max_magnitude(r.v0.data(), c.size(), m, bad);
    m = max_magnitude(r.v1.data(), c.size(), m, bad);
  }
  if (m == 0.0f || bad) return {0.0, 0.0, 0.0};
  const double scale = gram_scale(m);
  i128 acc[3] = {0, 0, 0};
  for (const auto& c : chunks_of(row, cap)) {
    if (!one_piece) r.read(c);
    acc[0] += fixed_dot(r.v0.data(), r.v0.data(), c.size(), scale);
    acc[1] += fixed_dot(r.v0.data(), r.v1.data(), c.size(), scale);
    acc[2] += fixed_dot(r.v1.data(), r.v1.data(), c.size(), scale);
  }
  return {static_cast<double>(acc[0]) / scale, static_cast<double>(acc[1]) / scale,
          static_cast<double>(acc[2]) / scale};
}

void merge_nuslerp(const TensorSources& s, const TensorMethod& m, ElementRange range,
                   DType out_dtype, uint64_t chunk_elems, MPI_Comm comm, const ChunkSink& sink,
                   MergeTensorStats& stats) {
  KS_CHECK(s.models.size() == 2, "nuslerp merges two models");
  const uint64_t numel = s.numel;
  if (numel == 0) return;
  // Which vectors: the whole tensor, its rows (along the last dimension), or
  // (row_wise, mergekit's dim 0) the vectors along dimension 0, i.e. the
  // columns of the [shape[0], numel / shape[0]] view.
  uint64_t segment = numel;
  bool by_column = false;
  if (!m.flatten && s.shape.size() >= 2) {
    by_column = m.row_wise;
    segment = by_column ? numel / static_cast<uint64_t>(s.shape[0])
                        : static_cast<uint64_t>(s.shape.back());
  }
  const bool whole = by_column ? segment == 1 : segment == numel;
  const size_t isz = elem_size(s.dtype), osz = elem_size(out_dtype);
  if (whole) {
    NuslerpReader r(s, std::min<uint64_t>(chunk_elems, std::max<uint64_t>(range.size(), 1)));
    const auto gram =
        exact_gram(2, range, chunk_elems, comm, s.name, [&](size_t a, ElementRange c, float* out) {
          r.read(c);
          std::memcpy(out, (a == 0 ? r.v0 : r.v1).data(), c.size() * 4);
        });
    const auto ab = nuslerp_coefficients(gram[0], gram[1], gram[3], m.t);
    stats.coefficients = {ab[0], ab[1]};
    combine_chunks(s, s.models, s.base, stats.coefficients, range, out_dtype, chunk_elems, sink);
    return;
  }
  // Per vector: weights table for the kernel, two per vector.
  std::vector<float> table;
  std::vector<std::byte> out(std::min<uint64_t>(chunk_elems, range.size()) * osz);
  std::vector<const void*> ptrs(2);
  VectorMergeArgs a;
  a.in_dtype = s.dtype;
  a.out_dtype = out_dtype;
  a.segment = segment;
  a.by_column = by_column;
  int bad = 0;
  auto put = [&](size_t v, const std::array<double, 3>& g) {
    const auto ab = nuslerp_coefficients(g[0], g[1], g[2], m.t);
    table[2 * v] = static_cast<float>(ab[0]);
    table[2 * v + 1] = static_cast<float>(ab[1]);
  };
  if (by_column) {
    // Columns cross every rank's range: per-column largest magnitudes
    // (MPI_MAX), then per-column 128-bit fixed-point sums (exact), on all ranks.
    const uint64_t cols = segment;
    NuslerpReader r(s, std::min<uint64_t>(chunk_elems, std::max<uint64_t>(range.size(), 1)));
    std::vector<float> cmax(cols, 0.0f);
    for (const auto& c : chunks_of(range, chunk_elems)) {
      r.read(c);
      uint64_t col = c.begin % cols;
      for (uint64_t k = 0; k < c.size(); ++k) {
        const float x = std::fabs(r.v0[k]), y = std::fabs(r.v1[k]);
        if (!std::isfinite(x) || !std::isfinite(y)) bad = 1;
        cmax[col] = std::max(cmax[col], std::max(x, y));
        if (++col == cols) col = 0;
      }
    }
    allreduce_in_place(std::span(cmax), MPI_MAX, comm);
    allreduce_in_place(std::span<int>(&bad, 1), MPI_MAX, comm);
    if (bad) throw_input("tensor {}: non-finite values in the inputs", s.name);
    std::vector<double> scale(cols, 0.0);
    for (uint64_t col = 0; col < cols; ++col)
      if (cmax[col] > 0.0f) scale[col] = gram_scale(cmax[col]);
    std::vector<i128> acc(3 * cols, 0);
    for (const auto& c : chunks_of(range, chunk_elems)) {
      r.read(c);
      uint64_t col = c.begin % cols;
      for (uint64_t k = 0; k < c.size(); ++k) {
        const double x = static_cast<double>(r.v0[k]), y = static_cast<double>(r.v1[k]);
        const double sc = scale[col];
        acc[3 * col] += static_cast<int64_t>(x * x * sc);
        acc[3 * col + 1] += static_cast<int64_t>(x * y * sc);
        acc[3 * col + 2] += static_cast<int64_t>(y * y * sc);
        if (++col == cols) col = 0;
      }
    }
    allreduce_sum_i128(std::span(acc), comm);
    table.assign(2 * cols, 0.0f);
    for (uint64_t col = 0; col < cols; ++col) {
      std::array<double, 3> g = {0.0, 0.0, 0.0};
      if (scale[col] != 0.0)
        for (int e = 0; e < 3; ++e) g[e] = static_cast<double>(acc[3 * col + e]) / scale[col];
      put(col, g);
    }
    a.first_vector = 0;
    a.weights = table;
  }
  // Rows: each rank reads every row its range touches whole (the sources
  // address the whole tensor), so a row's statistics need no collective and
  // are the same on every rank that touches it.
  std::optional<NuslerpReader> rr;
  if (!by_column) rr.emplace(s, std::min(chunk_elems, segment));
  uint64_t cached_row = std::numeric_limits<uint64_t>::max();
  std::array<double, 3> cached{};
  for (const auto& c : chunks_of(range, chunk_elems)) {
    if (!by_column) {
      const uint64_t r0 = c.begin / segment, r1 = (c.end - 1) / segment;
      table.assign(2 * (r1 - r0 + 1), 0.0f);
      for (uint64_t row = r0; row <= r1; ++row) {
        if (row != cached_row) {
          cached = row_gram(*rr, {row * segment, std::min(numel, (row + 1) * segment)}, bad);
          cached_row = row;
        }
        put(row - r0, cached);
      }
      a.first_vector = r0;
      a.weights = table;
    }
    for (size_t i = 0; i < 2; ++i) ptrs[i] = static_cast<const char*>(s.models[i]) + c.begin * isz;
    a.inputs = ptrs;
    a.base = s.base == nullptr ? nullptr : static_cast<const char*>(s.base) + c.begin * isz;
    a.first_index = c.begin;
    a.out = out.data();
    a.n = c.size();
    fused_vector_merge(a);
    sink(c, std::span<const std::byte>(out.data(), c.size() * osz));
  }
  if (!by_column) {
    // A non-finite value fails the merge on every rank (it was found by the
    // ranks whose rows hold it).
    allreduce_in_place(std::span<int>(&bad, 1), MPI_MAX, comm);
    if (bad) throw_input("tensor {}: non-finite values in the inputs", s.name);
  }
}

}  // namespace

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
    case MergeMethod::Nuslerp:
      merge_nuslerp(s, m, range, out_dtype, chunk_elems, comm, sink, stats);
      return stats;
    case MergeMethod::Multislerp: {
      if (N == 1) {  // mergekit returns the one model as it is
        stats.coefficients = {1.0};
        combine_chunks(s, s.models, nullptr, stats.coefficients, range, out_dtype, chunk_elems,
                       sink);
        return stats;
      }
      std::vector<float> base_buf(std::min<uint64_t>(chunk_elems, range.size()));
      const auto gram = exact_gram(N, range, chunk_elems, comm, s.name,
                                   [&](size_t a, ElementRange c, float* out) {
                                     if (s.base == nullptr) {
                                       decode(s.dtype, s.models[a], c.begin, c.size(), out);
                                       return;
                                     }
                                     decode(s.dtype, s.base, c.begin, c.size(), base_buf.data());
                                     decode_delta(s, a, c, base_buf.data(), out);
                                   });
      auto coef = multislerp_coefficients(gram, m.sphere_weights, m.eps);
      if (!coef) {
        if (N != 2)
          throw_input(
              "tensor {}: multislerp: the weighted mean of the inputs' directions is zero "
              "(antipodal inputs whose weights balance out); use other weights",
              s.name);
        coef = m.sphere_weights;  // mergekit's fallback for two inputs: linear interpolation
        stats.multislerp_lerp = true;
      }
      stats.coefficients = *coef;
      combine_chunks(s, s.models, s.base, stats.coefficients, range, out_dtype, chunk_elems, sink);
      return stats;
    }
    case MergeMethod::Karcher: {
      // Every input is a point to average, the base (when given) first.
      std::vector<const void*> inputs;
      if (s.base != nullptr) inputs.push_back(s.base);
      inputs.insert(inputs.end(), s.models.begin(), s.models.end());
      const size_t n = inputs.size();
      if (n == 1) {
        stats.coefficients = {1.0};
      } else {
        const auto gram = exact_gram(n, range, chunk_elems, comm, s.name,
                                     [&](size_t a, ElementRange c, float* out) {
                                       decode(s.dtype, inputs[a], c.begin, c.size(), out);
                                     });
        stats.coefficients =
            karcher_coefficients(gram, m.max_iter, m.tol, &stats.karcher_iterations);
      }
      combine_chunks(s, inputs, nullptr, stats.coefficients, range, out_dtype, chunk_elems, sink);
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
