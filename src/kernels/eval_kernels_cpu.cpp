#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kintsugi/common/error.hpp"
#include "kintsugi/kernels/eval_kernels.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"

namespace kintsugi {

// The kernels' helpers (compiled on their own, without the unity build:
// CMakeLists.txt turns off GCC's note on 32-byte vector returns for this file).
namespace cpu_ops_impl {
namespace {

// Vectors of 4, 8 and 16 floats: GCC's vector extension. The baseline copy
// works on 4 lanes (SSE2 or NEON registers), the x86-64-v3 copy on 8 (AVX; a *
// b + c becomes an FMA there), the x86-64-v4 copy on 16 (AVX-512) in its
// matrix products and element-wise kernels. Loaded and stored with memcpy: the
// data need not be aligned.
typedef float f4 __attribute__((vector_size(16)));
typedef float f8 __attribute__((vector_size(32)));
typedef float f16 __attribute__((vector_size(64)));
typedef int32_t i4 __attribute__((vector_size(16)));
typedef int32_t i8 __attribute__((vector_size(32)));
typedef int32_t i16 __attribute__((vector_size(64)));
template <class V>
struct IntOf;
template <>
struct IntOf<f4> {
  using type = i4;
};
template <>
struct IntOf<f8> {
  using type = i8;
};
template <>
struct IntOf<f16> {
  using type = i16;
};
template <class V>
constexpr size_t kLanes = sizeof(V) / sizeof(float);
// The vector a copy's sums over one row are kept in (dot products, Σ exp):
// the 16-lane copy sums in 8 lanes, so that each sum runs in the AVX2 copy's
// order and the two copies give the same bits everywhere.
template <class V>
using SumV = std::conditional_t<kLanes<V> == 16, f8, V>;

#define KS_INLINE [[gnu::always_inline]] inline

template <class V>
KS_INLINE V loadv(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V>
KS_INLINE void storev(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
// The lanes' sum as a tree: lane i with lane i + W/2, and so on.
template <class V>
KS_INLINE float hsum(V a) {
  if constexpr (kLanes<V> == 8)
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
  else
    return (a[0] + a[2]) + (a[1] + a[3]);
}

// exp lane by lane: x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, Cody
// and Waite), exp(r) by Cephes' degree-6 polynomial, times 2^n built in the
// exponent bits. x is clamped to [-87.3, 88.3] (results below FLT_MIN become
// FLT_MIN-sized, not zero: harmless in a softmax or a sigmoid); NaN fails both
// comparisons and stays NaN through the arithmetic.
template <class V>
KS_INLINE V expv(V x) {
  using I = typename IntOf<V>::type;
  const V lo = V{} - 87.3f, hi = V{} + 88.3f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const V magic = V{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const V t = x * 1.44269504088896341f + magic;
  const V n = t - magic;
  const V r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  I bits;
  std::memcpy(&bits, &t, sizeof bits);
  const I scale_bits = (bits - 0x4B400000 + 127) << 23;
  V scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

// x[i] = exp(x[i] - m) over x[0, n), a vector at a time; a tail goes through
// a zero-padded vector, so an element's result does not depend on its
// position. (No lambdas here: a vector passed to a call that is not inlined
// would cross between the two copies' ABIs.)
template <class V>
KS_INLINE void exp_shifted(float* x, size_t n, float m) {
  constexpr size_t W = kLanes<V>;
  size_t i = 0;
  for (; i + W <= n; i += W) storev(x + i, expv(loadv<V>(x + i) - m));
  if (i < n) {
    float tmp[W] = {};
    std::copy(x + i, x + n, tmp);
    storev(tmp, expv(loadv<V>(tmp) - m));
    std::copy(tmp, tmp + (n - i), x + i);
  }
}

// The largest of x[0, n) (-inf when n = 0; a NaN is passed over, as by
// std::max from -inf), then the sum of exp(x[j] - m) in double, m the given
// maximum: a row's log-sum-exp over the vocabulary. Each lane keeps its own
// double sum, added up at the end, so the sum's order is fixed for a copy
// (std::exp per entry of a 152k vocabulary was a fifth of a scoring pass).
template <class V>
KS_INLINE float max_of(const float* x, size_t n) {
  constexpr size_t W = kLanes<V>;
  V mv = V{} - INFINITY;
  size_t i = 0;
  for (; i + W <= n; i += W) {
    const V v = loadv<V>(x + i);
    mv = mv < v ? v : mv;
  }
  float m = -INFINITY;
  for (size_t l = 0; l < W; ++l) m = std::max(m, mv[l]);
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}
template <class V>
KS_INLINE double sum_exp_shifted(const float* x, size_t n, float m) {
  constexpr size_t W = kLanes<V>;
  double lane[W] = {};
  size_t i = 0;
  for (; i + W <= n; i += W) {
    const V e = expv(loadv<V>(x + i) - m);
    for (size_t l = 0; l < W; ++l) lane[l] += static_cast<double>(e[l]);
  }
  double s = 0.0;
  for (size_t l = 0; l < W; ++l) s += lane[l];
  if (i < n) {
    float tmp[W] = {};
    std::copy(x + i, x + n, tmp);
    const V e = expv(loadv<V>(tmp) - m);
    for (size_t l = 0; l < n - i; ++l) s += static_cast<double>(e[l]);
  }
  return s;
}

// a * b + c for a scalar tail after vector FMAs: fused in the copies with FMA
// (written out: GCC contracts a * b + c in one copy and not in another, as
// its vectorizer sees fit, and the AVX2 and AVX-512 copies must agree), as
// the baseline x86-64 copy computes it otherwise.
template <class V>
KS_INLINE float mul_add(float a, float b, float c) {
  if constexpr (kLanes<V> >= 8)
    return std::fma(a, b, c);
  else
    return a * b + c;
}

// out[r] = a . b[r] for R vectors b[r] at once (R independent chains of
// FMAs), each in one order: W lanes over d, their tree sum, then the tail one
// FMA at a time.
template <class V, size_t R>
KS_INLINE void dots(const float* a, const float* const (&b)[R], size_t n, float (&out)[R]) {
  constexpr size_t W = kLanes<V>;
  V acc[R] = {};
  size_t d = 0;
  for (; d + W <= n; d += W) {
    const V av = loadv<V>(a + d);
    for (size_t r = 0; r < R; ++r) acc[r] += av * loadv<V>(b[r] + d);
  }
  for (size_t r = 0; r < R; ++r) {
    out[r] = hsum(acc[r]);
    for (size_t t = d; t < n; ++t) out[r] = mul_add<V>(a[t], b[r][t], out[r]);
  }
}

template <class V>
KS_INLINE float dot(const float* a, const float* b, size_t n) {
  const float* const one[1] = {b};
  float s[1];
  dots<V, 1>(a, one, n, s);
  return s[0];
}

// C[R, nj] (+)= A[R, K] P for NP adjacent panels P[K][16] (row stride ldp,
// panel p at P + p * pstride; nj <= 16 NP columns): R x 16 NP / W vector
// accumulators, 12 of the 16 registers of the 4- and 8-lane copies (NP = 1),
// 24 of the 32 of the 16-lane one (NP = 2: two panels share each load of A).
// Every output is the same chain of FMAs over k whatever R, NP or W, so all
// copies with FMA give the same bits. A's element (r, k) is A[r lda + k KA]:
// KA = 1 for row-major A, 16 for the attention's probabilities, which lie
// transposed in panels of 16 queries.
template <class V, int R, int NP = 1, size_t KA = 1>
KS_INLINE void micro(size_t K, const float* A, size_t lda, const float* P, size_t ldp,
                     size_t pstride, float* C, size_t ldc, size_t nj, bool acc) {
  constexpr size_t W = kLanes<V>, NV = 16 / W, NC = NP * NV;
  V c[R][NC];
  for (int r = 0; r < R; ++r)
    for (size_t v = 0; v < NC; ++v) c[r][v] = V{};
  for (size_t k = 0; k < K; ++k) {
    V b[NC];
    for (size_t p = 0; p < NP; ++p)
      for (size_t v = 0; v < NV; ++v) b[p * NV + v] = loadv<V>(P + p * pstride + ldp * k + W * v);
    for (int r = 0; r < R; ++r) {
      const float a = A[static_cast<size_t>(r) * lda + k * KA];
      for (size_t v = 0; v < NC; ++v) c[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < R; ++r) {
    float* out = C + static_cast<size_t>(r) * ldc;
    if (nj == 16 * NP) {
      for (size_t v = 0; v < NC; ++v)
        storev(out + W * v, acc ? loadv<V>(out + W * v) + c[r][v] : c[r][v]);
    } else {
      float t[16 * NP];
      for (size_t v = 0; v < NC; ++v) storev(t + W * v, c[r][v]);
      for (size_t j = 0; j < nj; ++j) out[j] = acc ? out[j] + t[j] : t[j];
    }
  }
}

// The last M < R rows of the panels' product: micro<V, M, NP, KA> for the M left.
template <class V, int R, int NP, size_t KA>
KS_INLINE void tail_rows(size_t M, size_t K, const float* A, size_t lda, const float* P, size_t ldp,
                         size_t pstride, float* C, size_t ldc, size_t nj, bool acc) {
  if constexpr (R > 0) {
    if (M == R)
      micro<V, R, NP, KA>(K, A, lda, P, ldp, pstride, C, ldc, nj, acc);
    else
      tail_rows<V, R - 1, NP, KA>(M, K, A, lda, P, ldp, pstride, C, ldc, nj, acc);
  }
}

// C[M, nj] (+)= A[M, K] [P_0 .. P_NP-1] for NP adjacent panels, R rows at a time.
template <class V, int NP, size_t KA>
KS_INLINE void rows_times(size_t M, size_t K, const float* A, size_t lda, const float* P,
                          size_t ldp, size_t pstride, float* C, size_t ldc, size_t nj, bool acc) {
  constexpr int R = kLanes<V> == 16 ? 12 : kLanes<V> == 8 ? 6 : 3;
  size_t i = 0;
  for (; i + R <= M; i += R)
    micro<V, R, NP, KA>(K, A + i * lda, lda, P, ldp, pstride, C + i * ldc, ldc, nj, acc);
  tail_rows<V, R - 1, NP, KA>(M - i, K, A + i * lda, lda, P, ldp, pstride, C + i * ldc, ldc, nj,
                              acc);
}

// C[M, n] (+)= A[M, K] times the ceil(n / 16) panels at P, P + pstride, ...
// (n output columns): two panels at a time in the 16-lane copy.
template <class V, size_t KA = 1>
KS_INLINE void rows_times_panels(size_t M, size_t K, const float* A, size_t lda, const float* P,
                                 size_t ldp, size_t pstride, float* C, size_t ldc, size_t n,
                                 bool acc) {
  constexpr size_t NP = kLanes<V> == 16 ? 2 : 1;
  size_t j0 = 0;
  for (; j0 + 16 * NP <= n || (NP == 2 && j0 + 16 < n); j0 += 16 * NP)
    rows_times<V, NP, KA>(M, K, A, lda, P + (j0 / 16) * pstride, ldp, pstride, C + j0, ldc,
                          std::min<size_t>(16 * NP, n - j0), acc);
  if (j0 < n)
    rows_times<V, 1, KA>(M, K, A, lda, P + (j0 / 16) * pstride, ldp, pstride, C + j0, ldc, n - j0,
                         acc);
}

// Columns [col0, col0 + n) of A W^T (col0 a multiple of 16). A column's bits
// do not depend on the others computed with it: each is its own FMA chain.
template <class V>
KS_INLINE void matmul_body(size_t m_rows, const float* A, size_t lda, const PackedWeight& W,
                           size_t col0, size_t n, float* C, size_t ldc, bool acc) {
  // Rows in chunks whose slice of A stays in L1/L2 while every panel of W
  // (the whole weight, L2-sized for the evaluator's models) passes by.
  const size_t K = W.cols();
  constexpr size_t kChunk = 48;
  for (size_t i0 = 0; i0 < m_rows; i0 += kChunk) {
    const size_t m = std::min(kChunk, m_rows - i0);
    rows_times_panels<V>(m, K, A + i0 * lda, lda, W.panel(col0 / 16), 16, K * 16, C + i0 * ldc, ldc,
                         n, acc);
  }
}

// The two halves of a softmax of s[lo..hi] in place, shared by one row
// (softmax_range) and by rows in groups (softmax_rows), which differ only in
// how the sum between them is taken: exp after the maximum is subtracted,
// then a division by the sum, as a product with its reciprocal.
template <class V>
KS_INLINE void exp_after_max(float* s, size_t lo, size_t hi) {
  exp_shifted<V>(s + lo, hi + 1 - lo, max_of<V>(s + lo, hi + 1 - lo));
}
KS_INLINE void divide_by_sum(float* s, size_t lo, size_t hi, float sum) {
  const float inv = 1.0f / sum;
  for (size_t j = lo; j <= hi; ++j) s[j] *= inv;
}

// s[lo..hi] = softmax(s[lo..hi]) in place, the sum in order over j.
template <class V>
KS_INLINE void softmax_range(float* s, size_t lo, size_t hi) {
  exp_after_max<V>(s, lo, hi);
  float sum = 0.0f;
  for (size_t j = lo; j <= hi; ++j) sum += s[j];
  divide_by_sum(s, lo, hi, sum);
}

// s[j] = scale * q . k_j for j in [lo, hi], four keys at a time (dots<V, 4>:
// four independent chains), each key's sum in dot()'s order, so its bits.
template <class V>
KS_INLINE void scores_of(const float* q, size_t hd, float scale, const KvRows& kv, size_t lo,
                         size_t hi, float* s) {
  size_t j = lo;
  for (; j + 3 <= hi; j += 4) {
    const float* const k[4] = {kv.key(j), kv.key(j + 1), kv.key(j + 2), kv.key(j + 3)};
    float d[4];
    dots<V, 4>(q, k, hd, d);
    for (size_t r = 0; r < 4; ++r) s[j + r] = d[r] * scale;
  }
  for (; j <= hi; ++j) s[j] = dot<V>(q, kv.key(j), hd) * scale;
}

// out[d0, d0 + U W) = sum over j in [lo, hi] of p[j] v_j, U vectors of the
// output in registers across all j, for d0 = d, d + U W, ... while they fit
// in hd; returns the first column left. Each output is p[lo] v_lo, then one
// FMA per j in order. (Measured on AMD Zen 4 against accumulating in memory:
// the same speed for the AVX2 copy within the host's noise, bench/RESULTS.md.)
template <class V, size_t U>
KS_INLINE size_t weighted_values(const float* p, const KvRows& kv, size_t lo, size_t hi, size_t d,
                                 size_t hd, float* out) {
  constexpr size_t W = kLanes<V>;
  for (; d + U * W <= hd; d += U * W) {
    V acc[U] = {};
    for (size_t j = lo; j <= hi; ++j) {
      const float pj = p[j];
      const float* vj = kv.value(j) + d;
      for (size_t u = 0; u < U; ++u) acc[u] += pj * loadv<V>(vj + u * W);
    }
    for (size_t u = 0; u < U; ++u) storev(out + d + u * W, acc[u]);
  }
  return d;
}

template <class V>
KS_INLINE void attend_body(const float* q, size_t hd, float scale, const KvRows& kv, size_t lo,
                           size_t hi, float* s, float* out) {
  scores_of<SumV<V>>(q, hd, scale, kv, lo, hi, s);
  softmax_range<V>(s, lo, hi);
  size_t d = weighted_values<V, 4>(s, kv, lo, hi, 0, hd, out);
  d = weighted_values<V, 2>(s, kv, lo, hi, d, hd, out);
  d = weighted_values<V, 1>(s, kv, lo, hi, d, hd, out);
  for (; d < hd; ++d) {
    float acc = 0.0f;
    for (size_t j = lo; j <= hi; ++j) acc = mul_add<V>(s[j], kv.value(j)[d], acc);
    out[d] = acc;
  }
}

// All ones in the lanes whose visible keys [lo, p] hold key j, else zero: the
// sign bits of j - lo and p - j, with integer arithmetic. (A comparison that
// is not a select's condition, written in these helpers, which are compiled
// for the baseline ISA until inlined, makes GCC split the vector into scalars.)
template <class I>
KS_INLINE I visible_at(size_t j, I lo, I p) {
  const I jv = I{} + static_cast<int32_t>(j);
  return ~((jv - lo) | (p - jv)) >> 31;
}
// x in the lanes of `mask`, `other` elsewhere, bit for bit.
template <class V, class I>
KS_INLINE V select_bits(I mask, V x, V other) {
  I xb, ob;
  std::memcpy(&xb, &x, sizeof xb);
  std::memcpy(&ob, &other, sizeof ob);
  const I r = (xb & mask) | (ob & ~mask);
  V out;
  std::memcpy(&out, &r, sizeof out);
  return out;
}

// The probabilities of up to 16 queries side by side, one per lane, over the
// keys j < count: S[j * 16 + r] is lane r's score with key j, unscaled. Lane r
// is the query at position p[r], whose visible keys are [lo[r], p[r]] (none
// when lo > p: a lane no query fills). Each lane gets softmax_range's bits:
// its scores scaled, the largest visible one (NaNs passed over: the largest
// does not depend on the order it is found in), exp after it, zero outside
// [lo, p], then each times the reciprocal of the lane's sum, taken in order
// over j from +0 (the zeros before lo add nothing). Every step is lane-wise,
// so no lane's bits depend on another's, and a row's sum is a vector add per
// key instead of a chain of scalar adds. The scaled scores are stored before
// the exp pass reads them, and the masking's bit operations stand between
// exp's last product and the sum: a product feeding an add directly could be
// fused into an FMA by the compiler, and the bits would move.
template <class V>
KS_INLINE void softmax_lanes(float* S, size_t count, const int32_t (&lo)[16],
                             const int32_t (&p)[16], float scale) {
  constexpr size_t W = kLanes<V>, NV = 16 / W;
  using I = typename IntOf<V>::type;
  I lov[NV], pv[NV];
  V m[NV];
  for (size_t v = 0; v < NV; ++v) {
    std::memcpy(&lov[v], lo + W * v, sizeof lov[v]);
    std::memcpy(&pv[v], p + W * v, sizeof pv[v]);
    m[v] = V{} - INFINITY;
  }
  for (size_t j = 0; j < count; ++j)
    for (size_t v = 0; v < NV; ++v) {
      const V x = loadv<V>(S + 16 * j + W * v) * scale;
      storev(S + 16 * j + W * v, x);
      const V xv = select_bits(visible_at(j, lov[v], pv[v]), x, V{} - INFINITY);
      m[v] = m[v] < xv ? xv : m[v];
    }
  V inv[NV] = {};  // the sums, then their reciprocals
  for (size_t j = 0; j < count; ++j)
    for (size_t v = 0; v < NV; ++v) {
      const V e =
          select_bits(visible_at(j, lov[v], pv[v]), expv(loadv<V>(S + 16 * j + W * v) - m[v]), V{});
      storev(S + 16 * j + W * v, e);
      inv[v] += e;
    }
  for (size_t v = 0; v < NV; ++v) inv[v] = (V{} + 1.0f) / inv[v];
  for (size_t j = 0; j < count; ++j)
    for (size_t v = 0; v < NV; ++v)
      storev(S + 16 * j + W * v,
             select_bits(visible_at(j, lov[v], pv[v]), loadv<V>(S + 16 * j + W * v) * inv[v], V{}));
}

// Below this many query tokens per call (decode steps), each query's scores
// are dot products against the cached keys; from it on (prefill), a block's
// queries go side by side through matrix products by the same micro-kernel
// as the weights'. The choice depends only on the call's token count, never
// on the batch.
constexpr size_t kGemmTokens = 4;

template <class V>
KS_INLINE void attend_tokens_body(const AttendArgs& a, std::vector<float>& scratch) {
  const KvRows& kv = a.kv;
  const size_t total = a.past + a.n, hd = a.hd;
  auto lo_of = [&](size_t p) { return a.window > 0 && p + 1 > a.window ? p + 1 - a.window : 0; };
  // The query rows computed: all n tokens, or the selected ones (AttendArgs).
  const size_t nq = a.rows ? a.nrows : a.n;
  auto tok = [&](size_t k) -> size_t { return a.rows ? a.rows[k] : k; };
  if (a.n < kGemmTokens || hd % 16 != 0) {
    scratch.resize(total);
    for (size_t k = 0; k < nq; ++k)
      for (size_t h = 0; h < a.g; ++h) {
        const size_t p = a.past + tok(k);
        attend_body<V>(a.q + k * a.ldq + h * hd, hd, a.scale, kv, lo_of(p), p, scratch.data(),
                       a.out + k * a.ldo + h * hd);
      }
    return;
  }
  // The causal blocks: B consecutive tokens of the n. The rows go block by
  // block, in runs of rows of one block (all of it when every row is
  // computed), and each run takes its block's keys, up to its last token's:
  // the same products, so the same bits, as among all n.
  constexpr size_t B = 16;
  auto run_end = [&](size_t k0) {
    size_t k1 = k0 + 1;
    while (k1 < nq && k1 - k0 < B && tok(k1) / B == tok(k0) / B) ++k1;
    return k1;
  };
  auto block_last = [&](size_t k) {  // the position of the last token of row k's block
    const size_t i0 = tok(k) / B * B;
    return a.past + std::min(i0 + B, a.n) - 1;
  };
  scratch.resize(16 * hd + 16 * total);
  float* qt = scratch.data();  // a run's queries of one head, transposed: [hd][16]
  float* S = qt + 16 * hd;     // their scores, then probabilities: [count][16]
  for (size_t k0 = 0; k0 < nq;) {
    const size_t k1 = run_end(k0), m = k1 - k0, count = block_last(k0) + 1;
    const size_t first = std::min(count, kv.split), second = count - first;
    int32_t lo[16], pos[16];
    for (size_t r = 0; r < 16; ++r) {
      const size_t p = r < m ? a.past + tok(k0 + r) : 0;
      pos[r] = r < m ? static_cast<int32_t>(p) : -1;
      lo[r] = static_cast<int32_t>(lo_of(p));
    }
    for (size_t h = 0; h < a.g; ++h) {
      for (size_t r = 0; r < m; ++r) {
        const float* qr = a.q + (k0 + r) * a.ldq + h * hd;
        for (size_t d = 0; d < hd; ++d) qt[d * 16 + r] = qr[d];
      }
      for (size_t r = m; r < 16; ++r)
        for (size_t d = 0; d < hd; ++d) qt[d * 16 + r] = 0.0f;
      // S^T = K q^T, key by key (prefix positions, then the request's own):
      // each score the chain of FMAs over d that q . k_j is.
      if (first > 0)
        rows_times_panels<V>(first, hd, kv.k, kv.stride, qt, 16, 16 * hd, S, 16, 16, false);
      if (second > 0)
        rows_times_panels<V>(second, hd, kv.k2, kv.stride, qt, 16, 16 * hd, S + 16 * first, 16, 16,
                             false);
      softmax_lanes<V>(S, count, lo, pos, a.scale);
      // out[k, head h] = P[k, 0..count) V, 16 dimensions a panel; V's rows
      // are the panels, P is read from S^T (KA = 16).
      float* o = a.out + k0 * a.ldo + h * hd;
      if (first > 0)
        rows_times_panels<V, 16>(m, first, S, 1, kv.v, kv.stride, 16, o, a.ldo, hd, false);
      if (second > 0)
        rows_times_panels<V, 16>(m, second, S + 16 * first, 1, kv.v2, kv.stride, 16, o, a.ldo, hd,
                                 first > 0);
    }
    k0 = k1;
  }
}

template <class V>
KS_INLINE void rms_norm_body(const float* x, const float* w, float* out, size_t rows, size_t D,
                             float eps) {
  for (size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * D;
    const float ss = dot<SumV<V>>(xr, xr, D);
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
    float* o = out + r * D;
    for (size_t i = 0; i < D; ++i) o[i] = w[i] * (xr[i] * inv);
  }
}

template <class V>
KS_INLINE void swiglu_body(const float* gu, float* out, size_t rows, size_t F) {
  for (size_t r = 0; r < rows; ++r) {
    const float* g = gu + r * 2 * F;
    const float* u = g + F;
    float* o = out + r * F;
    for (size_t j = 0; j < F; ++j) o[j] = -g[j];
    exp_shifted<V>(o, F, 0.0f);
    for (size_t j = 0; j < F; ++j) o[j] = g[j] / (1.0f + o[j]) * u[j];
  }
}

// The copies: the same bodies compiled for the baseline, for x86-64-v3 and
// for x86-64-v4.
struct Ops {
  void (*matmul)(size_t, const float*, size_t, const PackedWeight&, size_t, size_t, float*, size_t,
                 bool);
  void (*attend)(const AttendArgs&, std::vector<float>&);
  void (*rms_norm)(const float*, const float*, float*, size_t, size_t, float);
  void (*swiglu)(const float*, float*, size_t, size_t);
  void (*exp)(float*, size_t);
  float (*max)(const float*, size_t);
  double (*sum_exp)(const float*, size_t, float);
  const char* name;
};

#define KS_COPY(SUFFIX, ATTR, V)                                                                 \
  ATTR void matmul_##SUFFIX(size_t m_rows, const float* A, size_t lda, const PackedWeight& W,    \
                            size_t col0, size_t n, float* C, size_t ldc, bool acc) {             \
    matmul_body<V>(m_rows, A, lda, W, col0, n, C, ldc, acc);                                     \
  }                                                                                              \
  ATTR void attend_##SUFFIX(const AttendArgs& a, std::vector<float>& scratch) {                  \
    attend_tokens_body<V>(a, scratch);                                                           \
  }                                                                                              \
  ATTR void rms_norm_##SUFFIX(const float* x, const float* w, float* out, size_t rows, size_t D, \
                              float eps) {                                                       \
    rms_norm_body<V>(x, w, out, rows, D, eps);                                                   \
  }                                                                                              \
  ATTR void swiglu_##SUFFIX(const float* gu, float* out, size_t rows, size_t F) {                \
    swiglu_body<V>(gu, out, rows, F);                                                            \
  }                                                                                              \
  ATTR void exp_##SUFFIX(float* x, size_t n) {                                                   \
    exp_shifted<V>(x, n, 0.0f);                                                                  \
  }                                                                                              \
  ATTR float max_##SUFFIX(const float* x, size_t n) {                                            \
    return max_of<V>(x, n);                                                                      \
  }                                                                                              \
  ATTR double sum_exp_##SUFFIX(const float* x, size_t n, float m) {                              \
    return sum_exp_shifted<SumV<V>>(x, n, m);                                                    \
  }

KS_COPY(generic, , f4)
constexpr Ops kGeneric{matmul_generic, attend_generic, rms_norm_generic, swiglu_generic,
                       exp_generic,    max_generic,    sum_exp_generic,  "generic"};
#if defined(__x86_64__)
KS_COPY(avx2, [[gnu::target("arch=x86-64-v3")]], f8)
constexpr Ops kAvx2{matmul_avx2, attend_avx2, rms_norm_avx2, swiglu_avx2,
                    exp_avx2,    max_avx2,    sum_exp_avx2,  "avx2"};
KS_COPY(avx512, [[gnu::target("arch=x86-64-v4")]], f16)
constexpr Ops kAvx512{matmul_avx512, attend_avx512, rms_norm_avx512, swiglu_avx512,
                      exp_avx512,    max_avx512,    sum_exp_avx512,  "avx512"};
#endif
#undef KS_COPY
#undef KS_INLINE

bool avx2_fma_supported() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// x86-64-v4: AVX-512 F, BW, CD, DQ and VL (and the v3 features below them).
bool avx512_supported() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return avx2_fma_supported() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

#if defined(__x86_64__)
// The faster of the AVX2 and AVX-512 copies on this CPU, by the time of what
// a small model's prefill does, in about its proportions: a product the size
// of a projection (96 tokens, K = 128, 256 columns) and the attention of 64
// tokens for two query heads of size 32 (about 60 and 12 us), alternated,
// best of five. The two give the same bits, so only speed decides: 512-bit
// FMAs are twice the 256-bit ones on some CPUs (Intel Xeon with two FMA
// units) and the same on others (AMD Zen 4, where the two copies are within
// 10 % of each other). The AVX-512 copy wins ties.
const Ops* faster_of_avx2_avx512() {
  constexpr size_t M = 96, K = 128, N = 256, T = 64, G = 2, HD = 32, LD = 2 * G * HD;
  std::vector<float> w(N * K), a(M * K), c(M * N), kv(2 * T * LD), out(T * G * HD), scratch;
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 13) * 0.01f;
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i % 7) * 0.1f;
  for (size_t i = 0; i < kv.size(); ++i) kv[i] = static_cast<float>(i % 11) * 0.05f;
  const PackedWeight P(w.data(), N, K, K);
  const KvRows rows{nullptr, nullptr, kv.data(), kv.data() + T * LD, 0, LD};
  const AttendArgs att{a.data(), G * HD, G, T, 0, HD, 0.17f, rows, 0, out.data(), G * HD};
  const Ops* copies[2] = {&kAvx512, &kAvx2};
  double best[2] = {1e300, 1e300};
  for (int rep = 0; rep < 5; ++rep)
    for (int k = 0; k < 2; ++k) {
      const auto t0 = std::chrono::steady_clock::now();
      copies[k]->matmul(M, a.data(), K, P, 0, N, c.data(), N, false);
      copies[k]->attend(att, scratch);
      best[k] = std::min(
          best[k], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  return best[0] <= best[1] ? copies[0] : copies[1];
}
#endif

// The copy for this CPU: the faster of AVX-512 and AVX2 where both run, else
// AVX2, else the baseline. KINTSUGI_CPU_KERNELS, the merge kernels' setting,
// read and checked there (a name this CPU does not run is an InputError),
// picks this copy by its ISA: generic[+prefetch] the baseline, avx2[...] or
// avx512[...] that copy (where the CPU also has what this copy needs beyond
// the merge kernels': FMA, AVX-512 CD).
const Ops* choose_ops() {
  const std::string_view forced = forced_cpu_kernels();
  if (forced.starts_with("generic")) return &kGeneric;
#if defined(__x86_64__)
  if (forced.starts_with("avx512") && avx512_supported()) return &kAvx512;
  if (forced.starts_with("avx2") && avx2_fma_supported()) return &kAvx2;
  if (avx512_supported()) return faster_of_avx2_avx512();
  if (avx2_fma_supported()) return &kAvx2;
#endif
  return &kGeneric;
}
std::atomic<const Ops*> g_ops{nullptr};
const Ops& copy_for_cpu() {
  const Ops* o = g_ops.load(std::memory_order_relaxed);
  if (!o) {
    o = choose_ops();
    g_ops.store(o, std::memory_order_relaxed);
  }
  return *o;
}

std::atomic<int64_t> g_matmul_ns{0};

}  // namespace
}  // namespace cpu_ops_impl
using cpu_ops_impl::avx2_fma_supported;
using cpu_ops_impl::avx512_supported;
using cpu_ops_impl::copy_for_cpu;
using cpu_ops_impl::g_matmul_ns;

PackedWeight::PackedWeight(size_t K, std::span<const Block> blocks) : K_(K) {
  for (const Block& b : blocks) N_ += b.n;
  const size_t panels = (N_ + kPanel - 1) / kPanel;
  data_.assign(panels * K * kPanel, 0.0f);
  size_t row = 0;
  for (const Block& b : blocks)
    for (size_t i = 0; i < b.n; ++i, ++row) {
      float* dst = data_.data() + (row / kPanel) * K * kPanel + row % kPanel;
      const float* src = b.w + i * b.ld;
      for (size_t k = 0; k < K; ++k) dst[k * kPanel] = src[k];
    }
}

PackedWeight::PackedWeight(const float* w, size_t n, size_t K, size_t ld)
    : PackedWeight(K, std::span<const Block>(std::initializer_list<Block>{{w, n, ld}})) {}

namespace {
void timed_matmul(size_t m_rows, const float* A, size_t lda, const PackedWeight& W, size_t col0,
                  size_t n, float* C, size_t ldc, bool accumulate) {
  if (m_rows == 0 || n == 0) return;
  const auto t0 = std::chrono::steady_clock::now();
  copy_for_cpu().matmul(m_rows, A, lda, W, col0, n, C, ldc, accumulate);
  g_matmul_ns +=
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
}
}  // namespace

void matmul(size_t m_rows, const float* A, size_t lda, const PackedWeight& W, float* C, size_t ldc,
            bool accumulate) {
  timed_matmul(m_rows, A, lda, W, 0, W.rows(), C, ldc, accumulate);
}

void matmul_columns(size_t m_rows, const float* A, size_t lda, const PackedWeight& W, size_t col0,
                    size_t n, float* C, size_t ldc) {
  KS_CHECK(col0 % PackedWeight::kPanel == 0 && col0 + n <= W.rows(),
           "matmul_columns: columns outside the weight or not on a panel");
  timed_matmul(m_rows, A, lda, W, col0, n, C, ldc, false);
}

void attend_tokens(const AttendArgs& args, std::vector<float>& scratch) {
  if (args.n > 0) copy_for_cpu().attend(args, scratch);
}

void rms_norm_rows(const float* x, const float* w, float* out, size_t rows, size_t D, float eps) {
  copy_for_cpu().rms_norm(x, w, out, rows, D, eps);
}

void swiglu_rows(const float* gu, float* out, size_t rows, size_t F) {
  copy_for_cpu().swiglu(gu, out, rows, F);
}

void exp_inplace(float* x, size_t n) {
  copy_for_cpu().exp(x, n);
}

float max_of(const float* x, size_t n) {
  return copy_for_cpu().max(x, n);
}

double sum_exp_shifted(const float* x, size_t n, float m) {
  return copy_for_cpu().sum_exp(x, n, m);
}

const char* eval_kernels_isa() {
  return copy_for_cpu().name;
}

std::vector<std::string_view> eval_kernels_isas() {
  if (avx512_supported()) return {"generic", "avx2", "avx512"};
  if (avx2_fma_supported()) return {"generic", "avx2"};
  return {"generic"};
}

bool set_eval_kernels_isa(std::string_view isa) {
  if (isa == "generic") {
    cpu_ops_impl::g_ops.store(&cpu_ops_impl::kGeneric);
    return true;
  }
#if defined(__x86_64__)
  if (isa == "avx2" && avx2_fma_supported()) {
    cpu_ops_impl::g_ops.store(&cpu_ops_impl::kAvx2);
    return true;
  }
  if (isa == "avx512" && avx512_supported()) {
    cpu_ops_impl::g_ops.store(&cpu_ops_impl::kAvx512);
    return true;
  }
#endif
  return false;
}

double matmul_seconds() {
  return static_cast<double>(g_matmul_ns.load()) * 1e-9;
}
void reset_matmul_seconds() {
  g_matmul_ns = 0;
}

}  // namespace kintsugi
