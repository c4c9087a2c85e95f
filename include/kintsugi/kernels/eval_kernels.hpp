#pragma once
// The evaluator's numerical kernels on the CPU, fp32: the matrix product of
// activations with a weight packed once per model, causal attention of one
// query, RMSNorm, SwiGLU and exp. Written here rather than taken from a BLAS
// because the evaluator's products are small (a few hundred columns, K of a
// few hundred, M = the tokens of one batch): OpenBLAS spent more time packing
// the activations and the weight on every call than multiplying (bench eval,
// bench/RESULTS.md), and attention through a BLAS computes the masked half of
// every score matrix. Every kernel exists in three copies, for the build's
// baseline ISA, for x86-64-v3 (AVX2 + FMA) and for x86-64-v4 (AVX-512, the
// same bits as the AVX2 copy), chosen by the CPU at first use; each
// element's sum runs in a fixed order over k, so a row's result does not
// depend on which other rows share the call (a sequence scores the same alone
// or in a batch) or on the rank count.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kintsugi/common/huge_pages.hpp"

namespace kintsugi {

// A weight W[N, K] (y = x W^T) packed for matmul(): panels of kPanel output
// columns, k-major (panel p holds W[p*kPanel + c][k] at [p][k][c], zero past N).
// Several weights with the same K may be stacked along N (q, k and v; gate and
// up) so one product computes them all.
class PackedWeight {
 public:
  static constexpr size_t kPanel = 16;
  struct Block {
    const float* w;  // W[n, K], row stride ld
    size_t n, ld;
  };
  PackedWeight() = default;
  PackedWeight(size_t K, std::span<const Block> blocks);
  PackedWeight(const float* w, size_t n, size_t K, size_t ld);

  size_t rows() const { return N_; }  // N: output columns of the product
  size_t cols() const { return K_; }  // K
  const float* panel(size_t p) const { return data_.data() + p * K_ * kPanel; }

 private:
  size_t N_ = 0, K_ = 0;
  HugeVector<float> data_;  // on huge pages: a decode step streams every panel
};

// C[M, N] = A[M, K] W^T, or C += A W^T when `accumulate`. A and C row-major
// with strides lda, ldc.
void matmul(size_t M, const float* A, size_t lda, const PackedWeight& W, float* C, size_t ldc,
            bool accumulate = false);
// Output columns [col0, col0 + n) of the same product into C[M, n] (col0 a
// multiple of PackedWeight::kPanel): each with the bits it has in the whole.
void matmul_columns(size_t M, const float* A, size_t lda, const PackedWeight& W, size_t col0,
                    size_t n, float* C, size_t ldc);

// Keys and values of one KV head for positions [0, len): position j is row
// j of `k`/`v` (stride `stride`) for j < split, row j - split of `k2`/`v2` after
// (a cache that continues a shared prefix).
struct KvRows {
  const float *k, *v, *k2, *v2;
  size_t split, stride;
  const float* key(size_t j) const {
    return j < split ? k + j * stride : k2 + (j - split) * stride;
  }
  const float* value(size_t j) const {
    return j < split ? v + j * stride : v2 + (j - split) * stride;
  }
};
// Causal attention of n consecutive query tokens at positions past .. past +
// n - 1, for the g query heads that share one KV head (GQA): token i's query
// for head h is q[i * ldq + h * hd, +hd), its output goes to out[i * ldo + h *
// hd, +hd). The token at position p sees keys [lo, p], lo = p + 1 - window when
// window > 0 and p >= window, else 0: out = sum_j softmax_j(scale q.k_j) v_j.
// The keys and values of positions [0, past + n) are in kv.
// With `rows`, only the query tokens rows[0..nrows) (indices in [0, n), in
// any order, repeats allowed) are computed: the k-th one's query is at
// q[k * ldq + h * hd], its output goes to out[k * ldo + h * hd]. Each gets
// the bits it gets among all n: the method and the blocks are those of the n
// tokens (the last layer of a prefill needs only the scored rows).
struct AttendArgs {
  const float* q;
  size_t ldq, g, n, past, hd;
  float scale;
  KvRows kv;
  size_t window;
  float* out;
  size_t ldo;
  const uint32_t* rows = nullptr;
  size_t nrows = 0;
};
void attend_tokens(const AttendArgs& args, std::vector<float>& scratch);

// out[rows, D] = w * x / sqrt(mean(x^2) + eps), row by row.
void rms_norm_rows(const float* x, const float* w, float* out, size_t rows, size_t D, float eps);

// out[rows, F] = silu(gu[:, :F]) * gu[:, F:2F] for gu[rows, 2F] (gate, then up).
void swiglu_rows(const float* gu, float* out, size_t rows, size_t F);

// x[i] = exp(x[i]) within 2 ulp of the correctly rounded value (a
// Cody-Waite reduction and a degree-6 polynomial, vectorized); NaN stays NaN.
void exp_inplace(float* x, size_t n);

// A row's log-sum-exp in two steps: m = the largest of x[0, n) (-inf when n is
// 0; NaNs are passed over), then the sum of exp(x[j] - m) in double, each exp
// as exp_inplace's (a row of logits: the softmax denominator).
float max_of(const float* x, size_t n);
double sum_exp_shifted(const float* x, size_t n, float m);

// The copy in use: the faster of "avx512" (x86-64-v4) and "avx2" (x86-64-v3:
// AVX2 and FMA), timed once, where the CPU runs both; else "avx2" where it
// has AVX2 and FMA; else "generic" (the build's baseline).
// KINTSUGI_CPU_KERNELS, the merge kernels' setting, forces a copy by its
// ISA: "generic...", or "avx2..." / "avx512..." where the CPU runs it; a
// value that names no copy, or one this CPU does not run, throws InputError
// on first use, as for the merge kernels.
const char* eval_kernels_isa();
// The copies this CPU can run, and a way to switch (tests hold every copy to
// the same references); false for a copy the CPU cannot run.
std::vector<std::string_view> eval_kernels_isas();
bool set_eval_kernels_isa(std::string_view isa);

// Seconds spent in matmul() by this process since the last reset (bench eval's
// matmul share).
double matmul_seconds();
void reset_matmul_seconds();

}  // namespace kintsugi
