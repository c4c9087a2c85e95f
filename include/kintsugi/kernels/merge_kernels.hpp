#pragma once
// The kernel API shared by the merge engine, the evaluator and the service.
// CPU implementations live in src/merge/; CUDA versions in kernels/ (same
// semantics, bit for bit; see the backend-agreement test).
//
// Every kernel computes each output element from the same element of its
// inputs only, with a fixed sequence of fp32 operations (no fused
// multiply-add), so the result of an element never depends on how a tensor is
// split among ranks, threads or chunks.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kintsugi/io/dtype.hpp"

namespace kintsugi {

// out[j] = sum_{i=0..N-1} weights[i] * inputs[i][j] for j < n, accumulated in
// fp32 in the order i = 0..N-1 (so results are bitwise reproducible), rounded
// to nearest even into out_dtype. Inputs share in_dtype (BF16, F16 or F32);
// out_dtype is BF16, F16 or F32. Every kernel stores a NaN result as the
// canonical quiet NaN (0x7fc00000 in fp32, 0x7fc0 in bf16, 0x7e00 in fp16).
void fused_weighted_sum(std::span<const void* const> inputs, DType in_dtype,
                        std::span<const float> weights, void* out, DType out_dtype, size_t n);

// How task vectors (delta_i = input_i - base, in fp32) are sparsified.
enum class Sparsify : uint8_t {
  None,
  Magnitude,  // TIES / breadcrumbs: keep delta_i[j] when its magnitude ranks in the top-k,
              // and (breadcrumbs) not in the top outlier set (see below)
  Random,     // DARE: keep delta_i[j] with probability density[i] (counter-based RNG)
  Ranked,     // DELLA: keep delta_i[j] with a probability set by its magnitude rank in its row
};

// One fused pass of the task-vector family (task_arithmetic, ties, dare_*,
// breadcrumbs*, della*) over elements [0, n) of a chunk whose first element has global
// index `first_index` within its tensor. Per element j, in fp32:
//   b = base[j]; d_i = x_i[j] - b
//   Magnitude: keep iff top(thr_bits, tie_cutoff) and, when outlier_thr_bits is
//              not empty, not top(outlier_thr_bits, outlier_tie_cutoff), where
//              top(t, c) = key(d_i) > t[i], or key(d_i) == t[i] and
//              first_index + j < c[i]   (key = |d| as IEEE bits)
//   Random:    keep iff dare_keep(seed_key, i, first_index + j, density[i]);
//              survivors d_i / density[i] when rescale
//   Ranked:    keep iff dare_uniform(seed_key, i, first_index + j) <
//              della_prob(ranks[i * n + j], row_len, ranked_low[i], ranked_eps[i]);
//              survivors d_i * ranked_scale[i] (always; pass 1 for none)
//   dropped entries become 0; wd_i = weights[i] * d_i
//   sign_consensus: maj = (wd_0 + ... + wd_{N-1} >= 0) ? +1 : -1; sum wd_i and
//              weights[i] over the i whose sign(wd_i) == maj (zeros never agree);
//              divisor = that weight sum, or 1 when it is 0
//   otherwise: sum wd_i over all i; divisor = `weight_sum` (or 1 if |.| < 1e-8)
//   mixed = sum (/ divisor when normalize) (* lambda when lambda != 1)
//   out[j] = round(b + mixed)
struct TaskMergeArgs {
  std::span<const void* const> inputs;  // N models (not the base)
  const void* base = nullptr;
  DType in_dtype = DType::BF16;
  std::span<const float> weights;
  float lambda = 1.0f;
  bool normalize = false;
  bool sign_consensus = false;
  Sparsify sparsify = Sparsify::None;
  // Random
  std::span<const float> density;
  bool rescale = true;
  uint64_t seed_key = 0;  // dare_seed_key(seed, tensor name); also Ranked
  // Ranked (della): per element and input, the 0-based ascending |delta| rank
  // within its row (input i's ranks at ranks[i * n]; a device pointer's span
  // in the CUDA version); per input fp32(density - epsilon), epsilon and the
  // survivors' factor.
  std::span<const uint32_t> ranks;
  uint64_t row_len = 0;
  std::span<const float> ranked_low, ranked_eps, ranked_scale;
  // Magnitude
  std::span<const uint32_t> thr_bits;
  std::span<const uint64_t> tie_cutoff;
  // Magnitude, breadcrumbs: the largest entries dropped (empty: none dropped)
  std::span<const uint32_t> outlier_thr_bits;
  std::span<const uint64_t> outlier_tie_cutoff;
  uint64_t first_index = 0;
  void* out = nullptr;
  DType out_dtype = DType::BF16;
  size_t n = 0;
};
void fused_task_merge(const TaskMergeArgs& args);

// mergekit's SCE over elements [0, n) of a chunk whose first element has
// global index first_index. Per element j, in fp32, each operation rounded on
// its own in this order:
//   b = base[j]; d_i = x_i[j] - b
//   when select: var = population_variance(d_0..d_{N-1}) (element_ops.hpp);
//     unless key(var) > thr_bits, or key(var) == thr_bits and
//     first_index + j < tie_cutoff, every d_i becomes 0
//   s = d_0 + ... + d_{N-1}; agree_i = s >= 0 ? d_i > 0 : d_i < 0
//   e_i = agree_i ? weights[i] : 0; m = sum d_i * e_i; div = max(sum e_i, 1e-6)
//   out[j] = round(b + m / div)
struct SceMergeArgs {
  std::span<const void* const> inputs;  // N models (not the base)
  const void* base = nullptr;
  DType in_dtype = DType::BF16;
  std::span<const float> weights;
  bool select = false;
  uint32_t thr_bits = 0;
  uint64_t tie_cutoff = 0;
  uint64_t first_index = 0;
  void* out = nullptr;
  DType out_dtype = DType::BF16;
  size_t n = 0;
};
void fused_sce_merge(const SceMergeArgs& args);

// mergekit's ram and ramplus_tl over elements [0, n). Per element j, in fp32,
// each operation rounded on its own in this order:
//   b = base[j]; d_i = x_i[j] - b; nz_i = ram_counts(d_i, epsilon) (|d_i| > epsilon)
//   c = number of i with nz_i
//   t_i = c == 1 ? (lambda empty ? d_i : d_i * lambda[i]) : d_i / float(c)
//   acc = 0; acc = acc + (nz_i ? t_i : 0) for i = 0..N-1
//   out[j] = round(b + acc)
// ram passes no lambda; ramplus_tl one per input (from whole-tensor counts).
struct RamMergeArgs {
  std::span<const void* const> inputs;  // N models (not the base)
  const void* base = nullptr;
  DType in_dtype = DType::BF16;
  float epsilon = 1e-5f;
  std::span<const float> lambda;  // empty, or one per input
  void* out = nullptr;
  DType out_dtype = DType::BF16;
  size_t n = 0;
};
void fused_ram_merge(const RamMergeArgs& args);

// mergekit's arcee_fusion over elements [0, n) of a chunk whose first element
// has global index first_index, the tensor viewed as rows of row_len elements.
// Per element j, in fp32, each operation rounded on its own:
//   g = first_index + j; kl = kl_rows[g / row_len - first_row]
//   b = base[j]; d = x[j] - b
//   keep = fusion_importance(d, kl) >= threshold
//   out[j] = round(b + d * (keep ? 1 : 0))
struct FusionMergeArgs {
  const void* base = nullptr;
  const void* model = nullptr;
  DType in_dtype = DType::BF16;
  std::span<const float> kl_rows;  // per row from first_row on (host memory, also for CUDA)
  uint64_t row_len = 1;            // > 0
  uint64_t first_row = 0;
  uint64_t first_index = 0;
  float threshold = 0.0f;
  void* out = nullptr;
  DType out_dtype = DType::BF16;
  size_t n = 0;
};
void fused_fusion_merge(const FusionMergeArgs& args);

// mergekit's CABS over elements [0, n) of a region that starts at a multiple
// of every model's block size m_i (a tensor's whole blocks; a shorter block
// only at the tensor's end). The models in pruning order; per element j, in
// fp32, each operation rounded on its own:
//   b = base[j]; acc = b; taken = false
//   for each model i in order:
//     c = taken ? 0 : x_i[j] - b
//     sel = the block of m_i elements holding j (blocks at multiples of m_i)
//           has fewer than n_i entries whose cabs_key(c) is larger, or equal
//           at a lower index
//     acc = acc + (sel ? w_i * c : 0); taken = taken or sel
//   out[j] = round(acc)
// Shapes: inputs N x n, base n, out n; keep_n, block_m and weights one per model.
struct CabsMergeArgs {
  std::span<const void* const> inputs;  // N models, in pruning order
  const void* base = nullptr;
  DType in_dtype = DType::BF16;
  std::span<const float> weights;
  std::span<const uint32_t> keep_n;   // 0 <= n_i <= m_i
  std::span<const uint32_t> block_m;  // 1 <= m_i <= kMaxCabsBlock
  void* out = nullptr;
  DType out_dtype = DType::BF16;
  size_t n = 0;
};
constexpr uint32_t kMaxCabsBlock = 65536;
void fused_cabs_merge(const CabsMergeArgs& args);
// CABS's superblock: lcm(m_i), the span every model's blocks nest in (work on
// a range widens it to multiples of this); 0 when it exceeds kMaxCabsBlock.
uint64_t cabs_superblock(std::span<const uint32_t> block_m);

// mergekit's nearswap over elements [0, n): per element, in fp32,
//   d = |v0[j] - v1[j]|; w = t / d; w = 1 when w is NaN or +-Inf;
//   w = min(max(w, 0), 1); out[j] = round(w * v1[j] + (1 - w) * v0[j])
// (each operation rounded on its own, in that order). v0 is the base.
void fused_nearswap(const void* v0, const void* v1, DType in_dtype, float t, void* out,
                    DType out_dtype, size_t n);

// mergekit's passthrough with a scale over elements [0, n): out[j] =
// round(x[j] * scale) in fp32 (scale 1 converts the dtype exactly; -0 stays -0).
void fused_scale(const void* x, DType in_dtype, float scale, void* out, DType out_dtype, size_t n);
// A weighted sum whose weights change along the tensor: the tensor is viewed
// as a matrix of `segment` columns (row-major), and its vectors are its rows
// (by_column false: element g is in vector g / segment) or its columns
// (by_column true: vector g % segment), g = first_index + j being the global
// index of element j of the chunk. Input i's weight for vector v is
// weights[(v - first_vector) * N + i]. Per element, in fp32, each operation
// rounded on its own:
//   base == nullptr: acc = 0; acc = acc + w_i * x_i[j] for i = 0..N-1; out[j] = round(acc)
//   base != nullptr: b = base[j]; m = 0; m = m + w_i * (x_i[j] - b) for i = 0..N-1;
//                    out[j] = round(b + m)
// which are fused_weighted_sum's and fused_task_merge's (no sparsification,
// no normalization, lambda 1) operations, so one vector's weights for a
// whole tensor give their bits. nuslerp's per-row and per-column slerps.
struct VectorMergeArgs {
  std::span<const void* const> inputs;  // N models
  const void* base = nullptr;           // task-vector form when set
  DType in_dtype = DType::BF16;
  std::span<const float> weights;  // N per vector, from first_vector on
  uint64_t segment = 1;            // > 0
  bool by_column = false;
  uint64_t first_vector = 0;
  uint64_t first_index = 0;
  void* out = nullptr;
  DType out_dtype = DType::BF16;
  size_t n = 0;
};
void fused_vector_merge(const VectorMergeArgs& args);

// The key of DARE's counter-based generator for one tensor: mixes the seed and
// a 64-bit FNV-1a hash of the tensor name.
uint64_t dare_seed_key(uint64_t seed, std::string_view tensor_name);
// Philox4x32-10 on counter (index / 4, input, key), word index % 4, as a
// uniform u = (bits >> 8) * 2^-24 in [0, 1); the entry is kept iff u < density.
bool dare_keep(uint64_t seed_key, uint32_t input, uint64_t index, float density);
// u[k] = that uniform for elements first_index + k, k < n: the same bits as
// one at a time, computed a Philox block per four elements in vectors.
void dare_uniforms(uint64_t seed_key, uint32_t input, uint64_t first_index, size_t n, float* u);

// The copies of the CPU kernels this build has and this CPU runs, baseline
// first: "generic", "generic+prefetch", then "avx2", "avx2+prefetch",
// "avx512", "avx512+prefetch" (F, BW, VL, DQ; both with F16C) where the CPU has them (the
// +prefetch copies differ in the weighted sum only). All give the same bits.
std::vector<std::string_view> cpu_kernel_isas();
// Which copy runs: KINTSUGI_CPU_KERNELS=<one of those names> forces one (any
// other value, or a copy this CPU does not run, throws InputError on first
// use); otherwise the fastest of the copies the CPU runs as timed once in
// this process (about 0.13 s for six copies on AMD EPYC, on the first call
// moving 1 GiB or more, or here; smaller calls before that run "avx2", or
// "generic" on a CPU without AVX2).
std::string_view cpu_kernel_isa();
// How cpu_kernel_isa() was chosen, fastest first, e.g. "measured: avx512
// 14.2 GB/s, avx2 12.1 GB/s, generic 9.8 GB/s" or "KINTSUGI_CPU_KERNELS=generic".
std::string cpu_kernel_choice();
// Selects a copy (a name of cpu_kernel_isas()); false when this CPU cannot run it.
bool set_cpu_kernel_isa(std::string_view isa);
// The copy KINTSUGI_CPU_KERNELS forces, "" when it is unset or empty; checked
// as above (InputError). The evaluator's kernels follow its ISA.
std::string_view forced_cpu_kernels();

// Largest supported N for the kernels (per-element state lives on the stack).
inline constexpr size_t kMaxMergeInputs = 256;

}  // namespace kintsugi
