// CUDA versions of the merge kernels (see include/kintsugi/kernels/merge_kernels.hpp):
// one thread per element in a grid-stride loop, the per-element arithmetic
// written with explicitly rounded intrinsics (element_ops.hpp), so results
// equal the CPU kernels bit for bit.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "kintsugi/kernels/element_ops.hpp"
#include "kintsugi/kernels/merge_kernels_cuda.hpp"

// fmt (and so common/error.hpp) does not compile under nvcc's host pass, so
// failures here are std::runtime_error (exit 1 in main, like RuntimeError).
#define CUDA_CHECK(call)                                                                       \
  do {                                                                                         \
    const cudaError_t cuda_check_rc_ = (call);                                                 \
    if (cuda_check_rc_ != cudaSuccess)                                                         \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + \
                               #call + " failed: " + cudaGetErrorString(cuda_check_rc_));      \
  } while (0)
#define CU_REQUIRE(cond, msg)                                                          \
  do {                                                                                 \
    if (!(cond)) throw std::runtime_error(std::string("cuda merge kernel: ") + (msg)); \
  } while (0)

namespace kintsugi::cuda {
namespace {

constexpr int kMax = static_cast<int>(kMaxMergeInputs);

// Kernel parameters (CUDA 12.1+ allows up to 32 KiB of them).
struct Params {
  const void* in[kMax];
  float w[kMax];
  float density[kMax];
  unsigned thr[kMax];
  unsigned long long cutoff[kMax];
  unsigned othr[kMax];
  unsigned long long ocutoff[kMax];
  const void* base;
  void* out;
  unsigned long long n;
  unsigned long long first_index;
  unsigned long long seed_key;
  float lambda;
  float plain_divisor;
  int count;
  int in_dtype;  // 0 bf16, 1 f16, 2 f32
  int out_dtype;
  int sparsify;  // 0 none, 1 magnitude, 2 random
  int normalize;
  int sign_consensus;
  int rescale;
  int outliers;  // breadcrumbs: drop the top set given by othr / ocutoff
  float t;       // nearswap; passthrough's scale
  // della (sparsify 3): ranks on the device, input i's at ranks + i * n
  const unsigned* ranks;
  unsigned long long row_len;
  float low[kMax];
  float eps[kMax];
  float scale[kMax];
  // sce
  int select;
  // vector_merge: per-vector weights (device memory), the matrix view
  const float* vw;
  unsigned long long segment;
  unsigned long long first_vector;
  int by_column;
  // ram / ramplus_tl: epsilon (in t), lam[] when plus
  int plus;
  float lam[kMax];
  // arcee_fusion: per-row divergences (device memory) from first_vector on,
  // rows of `segment` elements, the threshold (in t)
};

int code(DType d) {
  if (d == DType::BF16) return 0;
  if (d == DType::F16) return 1;
  if (d == DType::F32) return 2;
  throw std::invalid_argument("cuda merge kernel: dtype #" + std::to_string(static_cast<int>(d)) +
                              " is not BF16, F16 or F32");
}

__device__ __forceinline__ float load(const void* p, unsigned long long j, int dt) {
  if (dt == 2) return static_cast<const float*>(p)[j];
  const unsigned short h = static_cast<const unsigned short*>(p)[j];
  return dt == 0 ? ops::bf16_to_f32(h) : ops::f16_to_f32(h);
}

__device__ __forceinline__ void store(void* p, unsigned long long j, int dt, float f) {
  f = ops::canonical_nan(f);
  if (dt == 2)
    static_cast<float*>(p)[j] = f;
  else
    static_cast<unsigned short*>(p)[j] = dt == 0 ? ops::f32_to_bf16(f) : ops::f32_to_f16(f);
}

__global__ void weighted_sum_kernel(const Params p) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < p.n; j += stride) {
    float acc = 0.0f;
    for (int i = 0; i < p.count; ++i)
      acc = ops::add(acc, ops::mul(p.w[i], load(p.in[i], j, p.in_dtype)));
    store(p.out, j, p.out_dtype, acc);
  }
}

// The weighted, sparsified delta of input i at element j (as on the CPU).
__device__ __forceinline__ float weighted_delta(const Params& p, int i, unsigned long long j,
                                                float b) {
  float d = ops::sub(load(p.in[i], j, p.in_dtype), b);
  if (p.sparsify == 1) {
    const unsigned key = ops::f32_bits(d) & 0x7fffffffu;
    const unsigned long long idx = p.first_index + j;
    bool keep = key > p.thr[i] || (key == p.thr[i] && idx < p.cutoff[i]);
    if (p.outliers) keep = keep && !(key > p.othr[i] || (key == p.othr[i] && idx < p.ocutoff[i]));
    d = keep ? d : 0.0f;
  } else if (p.sparsify == 2) {
    const bool keep =
        ops::dare_uniform(p.seed_key, static_cast<uint32_t>(i), p.first_index + j) < p.density[i];
    const float v = p.rescale ? ops::div(d, p.density[i]) : d;
    d = keep ? v : 0.0f;
  } else if (p.sparsify == 3) {
    const bool keep = ops::dare_uniform(p.seed_key, static_cast<uint32_t>(i), p.first_index + j) <
                      ops::della_prob(p.ranks[static_cast<unsigned long long>(i) * p.n + j],
                                      p.row_len, p.low[i], p.eps[i]);
    d = keep ? ops::mul(d, p.scale[i]) : 0.0f;
  }
  return ops::mul(p.w[i], d);
}

__global__ void task_merge_kernel(const Params p) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < p.n; j += stride) {
    const float b = load(p.base, j, p.in_dtype);
    float mixed = 0.0f, divisor = p.plain_divisor;
    if (p.sign_consensus) {
      float s = 0.0f;
      for (int i = 0; i < p.count; ++i) s = ops::add(s, weighted_delta(p, i, j, b));
      divisor = 0.0f;
      for (int i = 0; i < p.count; ++i) {
        const float wd = weighted_delta(p, i, j, b);
        const bool agree = s >= 0.0f ? wd > 0.0f : wd < 0.0f;
        mixed = ops::add(mixed, agree ? wd : 0.0f);
        divisor = ops::add(divisor, agree ? p.w[i] : 0.0f);
      }
      divisor = divisor == 0.0f ? 1.0f : divisor;
    } else {
      for (int i = 0; i < p.count; ++i) mixed = ops::add(mixed, weighted_delta(p, i, j, b));
    }
    if (p.normalize) mixed = ops::div(mixed, divisor);
    if (p.lambda != 1.0f) mixed = ops::mul(mixed, p.lambda);
    store(p.out, j, p.out_dtype, ops::add(b, mixed));
  }
}

// SCE (see SceMergeArgs): thr[0] / cutoff[0] select by the variance key.
__global__ void sce_merge_kernel(const Params p) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < p.n; j += stride) {
    const float b = load(p.base, j, p.in_dtype);
    auto delta = [&](int i) { return ops::sub(load(p.in[i], j, p.in_dtype), b); };
    bool keep = true;
    if (p.select) {
      const unsigned key = ops::f32_bits(ops::population_variance(delta, p.count)) & 0x7fffffffu;
      keep = key > p.thr[0] || (key == p.thr[0] && p.first_index + j < p.cutoff[0]);
    }
    float s = 0.0f;
    for (int i = 0; i < p.count; ++i) s = ops::add(s, keep ? delta(i) : 0.0f);
    float m = 0.0f, div = 0.0f;
    for (int i = 0; i < p.count; ++i) {
      const float d = keep ? delta(i) : 0.0f;
      const bool agree = s >= 0.0f ? d > 0.0f : d < 0.0f;
      const float e = agree ? p.w[i] : 0.0f;
      m = ops::add(m, ops::mul(d, e));
      div = ops::add(div, e);
    }
    div = div < 1e-6f ? 1e-6f : div;
    store(p.out, j, p.out_dtype, ops::add(b, ops::div(m, div)));
  }
}

__global__ void nearswap_kernel(const Params p) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < p.n; j += stride)
    store(p.out, j, p.out_dtype,
          ops::nearswap(load(p.base, j, p.in_dtype), load(p.in[0], j, p.in_dtype), p.t));
}

__global__ void scale_kernel(const Params p) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < p.n; j += stride)
    store(p.out, j, p.out_dtype, ops::mul(load(p.in[0], j, p.in_dtype), p.t));
}

__global__ void vector_merge_kernel(const Params p) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < p.n; j += stride) {
    const unsigned long long g = p.first_index + j;
    const unsigned long long v = p.by_column ? g % p.segment : g / p.segment;
    const float* w = p.vw + (v - p.first_vector) * static_cast<unsigned long long>(p.count);
    if (p.base != nullptr) {
      const float b = load(p.base, j, p.in_dtype);
      float m = 0.0f;
      for (int i = 0; i < p.count; ++i)
        m = ops::add(m, ops::mul(w[i], ops::sub(load(p.in[i], j, p.in_dtype), b)));
      store(p.out, j, p.out_dtype, ops::add(b, m));
    } else {
      float acc = 0.0f;
      for (int i = 0; i < p.count; ++i)
        acc = ops::add(acc, ops::mul(w[i], load(p.in[i], j, p.in_dtype)));
      store(p.out, j, p.out_dtype, acc);
    }
  }
}

// ram / ramplus_tl (see RamMergeArgs): p.t is epsilon.
__global__ void ram_merge_kernel(const Params p) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < p.n; j += stride) {
    const float b = load(p.base, j, p.in_dtype);
    float cnt = 0.0f;
    for (int i = 0; i < p.count; ++i) {
      const float d = ops::sub(load(p.in[i], j, p.in_dtype), b);
      cnt = ops::add(cnt, ops::ram_counts(d, p.t) ? 1.0f : 0.0f);
    }
    float acc = 0.0f;
    for (int i = 0; i < p.count; ++i) {
      const float d = ops::sub(load(p.in[i], j, p.in_dtype), b);
      const float alone = p.plus ? ops::mul(d, p.lam[i]) : d;
      const float t = cnt == 1.0f ? alone : ops::div(d, cnt);
      acc = ops::add(acc, ops::ram_counts(d, p.t) ? t : 0.0f);
    }
    store(p.out, j, p.out_dtype, ops::add(b, acc));
  }
}

// CABS (see CabsMergeArgs), one launch per model in pruning order: acc the
// running fp32 sum (starts as the base), prev the taken flags of the models
// before, next those with this model's selection: no thread reads a flag
// another thread writes in the same launch.
__global__ void cabs_init_kernel(const void* base, int dt, float* acc, unsigned char* taken,
                                 unsigned long long n) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < n; j += stride) {
    acc[j] = load(base, j, dt);
    taken[j] = 0;
  }
}

__global__ void cabs_step_kernel(const void* x, const void* base, int dt, float w, unsigned keep,
                                 unsigned m, const unsigned char* prev, unsigned char* next,
                                 float* acc, unsigned long long n) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < n; j += stride) {
    const unsigned long long q = j - j % m;
    const unsigned long long e = q + m < n ? q + m : n;
    auto candidate = [&](unsigned long long k) {
      return prev[k] ? 0.0f : ops::sub(load(x, k, dt), load(base, k, dt));
    };
    const float c = candidate(j);
    bool sel = keep > 0;
    if (sel && keep < e - q) {
      const unsigned kj = ops::cabs_key(c);
      unsigned long long above = 0;
      for (unsigned long long k = q; k < e; ++k) {
        const unsigned kk = ops::cabs_key(candidate(k));
        above += kk > kj || (kk == kj && k < j);
      }
      sel = above < keep;
    }
    acc[j] = ops::add(acc[j], sel ? ops::mul(w, c) : 0.0f);
    next[j] = static_cast<unsigned char>(prev[j] | (sel ? 1 : 0));
  }
}

__global__ void cabs_store_kernel(const float* acc, void* out, int dt, unsigned long long n) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < n; j += stride)
    store(out, j, dt, acc[j]);
}

// arcee_fusion (see FusionMergeArgs): p.vw the row divergences, p.t the threshold.
__global__ void fusion_merge_kernel(const Params p) {
  const unsigned long long stride = static_cast<unsigned long long>(gridDim.x) * blockDim.x;
  for (unsigned long long j =
           static_cast<unsigned long long>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < p.n; j += stride) {
    const float kl = p.vw[(p.first_index + j) / p.segment - p.first_vector];
    const float b = load(p.base, j, p.in_dtype);
    const float d = ops::sub(load(p.in[0], j, p.in_dtype), b);
    const bool keep = ops::fusion_importance(d, kl) >= p.t;
    store(p.out, j, p.out_dtype, ops::add(b, ops::mul(d, keep ? 1.0f : 0.0f)));
  }
}

unsigned grid_for(size_t n) {
  const size_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

void* alloc(size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}
void free(void* p) {
  CUDA_CHECK(cudaFree(p));
}
void copy_to_device(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void fused_weighted_sum(std::span<const void* const> d_inputs, DType in_dtype,
                        std::span<const float> weights, void* d_out, DType out_dtype, size_t n) {
  CU_REQUIRE(d_inputs.size() == weights.size(), "one weight per input");
  CU_REQUIRE(!d_inputs.empty() && d_inputs.size() <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  if (n == 0) return;
  Params p{};
  p.count = static_cast<int>(d_inputs.size());
  for (size_t i = 0; i < d_inputs.size(); ++i) {
    p.in[i] = d_inputs[i];
    p.w[i] = weights[i];
  }
  p.out = d_out;
  p.n = n;
  p.in_dtype = code(in_dtype);
  p.out_dtype = code(out_dtype);
  weighted_sum_kernel<<<grid_for(n), 256>>>(p);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

void fused_task_merge(const TaskMergeArgs& a) {
  const size_t N = a.inputs.size();
  CU_REQUIRE(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  CU_REQUIRE(a.weights.size() == N, "one weight per input");
  if (a.n == 0) return;
  Params p{};
  p.count = static_cast<int>(N);
  float weight_sum = 0.0f;
  for (size_t i = 0; i < N; ++i) {
    p.in[i] = a.inputs[i];
    p.w[i] = a.weights[i];
    weight_sum = ops::add(weight_sum, a.weights[i]);
    if (a.sparsify == Sparsify::Random) p.density[i] = a.density[i];
    if (a.sparsify == Sparsify::Magnitude) {
      p.thr[i] = a.thr_bits[i];
      p.cutoff[i] = a.tie_cutoff[i];
      if (!a.outlier_thr_bits.empty()) {
        p.othr[i] = a.outlier_thr_bits[i];
        p.ocutoff[i] = a.outlier_tie_cutoff[i];
      }
    }
    if (a.sparsify == Sparsify::Ranked) {
      p.low[i] = a.ranked_low[i];
      p.eps[i] = a.ranked_eps[i];
      p.scale[i] = a.ranked_scale[i];
    }
  }
  p.plain_divisor = (weight_sum < 1e-8f && weight_sum > -1e-8f) ? 1.0f : weight_sum;
  p.base = a.base;
  p.out = a.out;
  p.n = a.n;
  p.first_index = a.first_index;
  p.seed_key = a.seed_key;
  p.lambda = a.lambda;
  p.in_dtype = code(a.in_dtype);
  p.out_dtype = code(a.out_dtype);
  p.sparsify = a.sparsify == Sparsify::Magnitude ? 1
               : a.sparsify == Sparsify::Random  ? 2
               : a.sparsify == Sparsify::Ranked  ? 3
                                                 : 0;
  p.ranks = a.ranks.data();
  p.row_len = a.row_len;
  p.normalize = a.normalize;
  p.sign_consensus = a.sign_consensus;
  p.rescale = a.rescale;
  p.outliers = a.sparsify == Sparsify::Magnitude && !a.outlier_thr_bits.empty();
  task_merge_kernel<<<grid_for(a.n), 256>>>(p);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

void fused_sce_merge(const SceMergeArgs& a) {
  const size_t N = a.inputs.size();
  CU_REQUIRE(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  CU_REQUIRE(a.weights.size() == N, "one weight per input");
  if (a.n == 0) return;
  Params p{};
  p.count = static_cast<int>(N);
  for (size_t i = 0; i < N; ++i) {
    p.in[i] = a.inputs[i];
    p.w[i] = a.weights[i];
  }
  p.select = a.select;
  p.thr[0] = a.thr_bits;
  p.cutoff[0] = a.tie_cutoff;
  p.base = a.base;
  p.out = a.out;
  p.n = a.n;
  p.first_index = a.first_index;
  p.in_dtype = code(a.in_dtype);
  p.out_dtype = code(a.out_dtype);
  sce_merge_kernel<<<grid_for(a.n), 256>>>(p);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

void fused_vector_merge(const VectorMergeArgs& a) {
  const size_t N = a.inputs.size();
  CU_REQUIRE(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  CU_REQUIRE(a.segment > 0, "a segment of at least one element");
  if (a.n == 0) return;
  Params p{};
  p.count = static_cast<int>(N);
  for (size_t i = 0; i < N; ++i) p.in[i] = a.inputs[i];
  p.base = a.base;
  p.out = a.out;
  p.n = a.n;
  p.first_index = a.first_index;
  p.in_dtype = code(a.in_dtype);
  p.out_dtype = code(a.out_dtype);
  p.segment = a.segment;
  p.first_vector = a.first_vector;
  p.by_column = a.by_column;
  void* dw = alloc(a.weights.size_bytes());
  p.vw = static_cast<const float*>(dw);
  try {
    copy_to_device(dw, a.weights.data(), a.weights.size_bytes());
    vector_merge_kernel<<<grid_for(a.n), 256>>>(p);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
  } catch (...) {
    cudaFree(dw);
    throw;
  }
  free(dw);
}

void fused_ram_merge(const RamMergeArgs& a) {
  const size_t N = a.inputs.size();
  CU_REQUIRE(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  CU_REQUIRE(a.lambda.empty() || a.lambda.size() == N, "no lambda, or one per input");
  if (a.n == 0) return;
  Params p{};
  p.count = static_cast<int>(N);
  p.plus = a.lambda.empty() ? 0 : 1;
  for (size_t i = 0; i < N; ++i) {
    p.in[i] = a.inputs[i];
    if (p.plus) p.lam[i] = a.lambda[i];
  }
  p.t = a.epsilon;
  p.base = a.base;
  p.out = a.out;
  p.n = a.n;
  p.in_dtype = code(a.in_dtype);
  p.out_dtype = code(a.out_dtype);
  ram_merge_kernel<<<grid_for(a.n), 256>>>(p);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

void fused_fusion_merge(const FusionMergeArgs& a) {
  CU_REQUIRE(a.row_len > 0, "rows of at least one element");
  if (a.n == 0) return;
  const unsigned long long r0 = a.first_index / a.row_len;
  const unsigned long long r1 = (a.first_index + a.n - 1) / a.row_len;
  CU_REQUIRE(r0 >= a.first_row && r1 - a.first_row < a.kl_rows.size(),
             "a divergence for every row of the chunk");
  Params p{};
  p.count = 1;
  p.base = a.base;
  p.in[0] = a.model;
  p.t = a.threshold;
  p.out = a.out;
  p.n = a.n;
  p.first_index = a.first_index;
  p.in_dtype = code(a.in_dtype);
  p.out_dtype = code(a.out_dtype);
  p.segment = a.row_len;
  p.first_vector = a.first_row;
  void* dk = alloc(a.kl_rows.size_bytes());
  p.vw = static_cast<const float*>(dk);
  try {
    copy_to_device(dk, a.kl_rows.data(), a.kl_rows.size_bytes());
    fusion_merge_kernel<<<grid_for(a.n), 256>>>(p);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
  } catch (...) {
    cudaFree(dk);
    throw;
  }
  free(dk);
}

void fused_cabs_merge(const CabsMergeArgs& a) {
  const size_t N = a.inputs.size();
  CU_REQUIRE(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  CU_REQUIRE(a.weights.size() == N && a.keep_n.size() == N && a.block_m.size() == N,
             "a weight, n and m per input");
  for (size_t i = 0; i < N; ++i)
    CU_REQUIRE(a.block_m[i] >= 1 && a.block_m[i] <= kMaxCabsBlock && a.keep_n[i] <= a.block_m[i],
               "cabs: 0 <= n <= m, 1 <= m <= kMaxCabsBlock");
  if (a.n == 0) return;
  const int dt = code(a.in_dtype);
  void* acc = alloc(a.n * sizeof(float));
  void* t0 = nullptr;
  void* t1 = nullptr;
  try {
    t0 = alloc(a.n);
    t1 = alloc(a.n);
    auto* fa = static_cast<float*>(acc);
    auto* prev = static_cast<unsigned char*>(t0);
    auto* next = static_cast<unsigned char*>(t1);
    cabs_init_kernel<<<grid_for(a.n), 256>>>(a.base, dt, fa, prev, a.n);
    CUDA_CHECK(cudaGetLastError());
    for (size_t i = 0; i < N; ++i) {
      cabs_step_kernel<<<grid_for(a.n), 256>>>(a.inputs[i], a.base, dt, a.weights[i], a.keep_n[i],
                                               a.block_m[i], prev, next, fa, a.n);
      CUDA_CHECK(cudaGetLastError());
      std::swap(prev, next);
    }
    cabs_store_kernel<<<grid_for(a.n), 256>>>(fa, a.out, code(a.out_dtype), a.n);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
  } catch (...) {
    cudaFree(acc);
    if (t0) cudaFree(t0);
    if (t1) cudaFree(t1);
    throw;
  }
  free(acc);
  free(t0);
  free(t1);
}

void fused_nearswap(const void* d_v0, const void* d_v1, DType in_dtype, float t, void* d_out,
                    DType out_dtype, size_t n) {
  if (n == 0) return;
  Params p{};
  p.count = 1;
  p.base = d_v0;
  p.in[0] = d_v1;
  p.t = t;
  p.out = d_out;
  p.n = n;
  p.in_dtype = code(in_dtype);
  p.out_dtype = code(out_dtype);
  nearswap_kernel<<<grid_for(n), 256>>>(p);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

void fused_scale(const void* d_x, DType in_dtype, float scale, void* d_out, DType out_dtype,
                 size_t n) {
  if (n == 0) return;
  Params p{};
  p.count = 1;
  p.in[0] = d_x;
  p.t = scale;  // the one scalar of this kernel
  p.out = d_out;
  p.n = n;
  p.in_dtype = code(in_dtype);
  p.out_dtype = code(out_dtype);
  scale_kernel<<<grid_for(n), 256>>>(p);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace kintsugi::cuda
