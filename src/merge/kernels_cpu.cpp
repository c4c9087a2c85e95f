// CPU kernels: one fused pass over N inputs per output element, blocked so the
// fp32 accumulators stay in L1 and the inner loops vectorize; OpenMP splits
// blocks among threads. Per-element arithmetic is the same sequence of fp32
// operations whatever the block, thread or chunk, which is what makes merges
// byte-identical for any number of ranks.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kintsugi/common/error.hpp"
#include "kintsugi/merge/element_ops.hpp"
#include "kintsugi/merge/kernels.hpp"

namespace kintsugi {
namespace {

constexpr size_t kBlock = 256;
constexpr size_t kParallelMin = size_t{1} << 16;  // below this, one thread

template <DType D>
inline float load(const void* p, size_t j) {
  if constexpr (D == DType::F32) {
    float f;
    std::memcpy(&f, static_cast<const char*>(p) + 4 * j, 4);
    return f;
  } else {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(p) + 2 * j, 2);
    if constexpr (D == DType::BF16)
      return ops::bf16_to_f32(h);
    else
      return ops::f16_to_f32(h);
  }
}

template <DType D>
inline void store(void* p, size_t j, float f) {
  if constexpr (D == DType::F32) {
    std::memcpy(static_cast<char*>(p) + 4 * j, &f, 4);
  } else {
    const uint16_t h = D == DType::BF16 ? ops::f32_to_bf16(f) : ops::f32_to_f16(f);
    std::memcpy(static_cast<char*>(p) + 2 * j, &h, 2);
  }
}

void check_dtypes(DType in, DType out) {
  auto ok = [](DType d) { return d == DType::BF16 || d == DType::F16 || d == DType::F32; };
  if (!ok(in)) throw_input("merge kernel: input dtype #{} is not BF16, F16 or F32", static_cast<int>(in));
  if (!ok(out)) throw_input("merge kernel: output dtype #{} is not BF16, F16 or F32", static_cast<int>(out));
}

// Calls f.template operator()<IN, OUT>() for the runtime dtypes.
template <typename F>
void dispatch(DType in, DType out, F&& f) {
  auto with_out = [&]<DType I>() {
    switch (out) {
      case DType::BF16: f.template operator()<I, DType::BF16>(); break;
      case DType::F16: f.template operator()<I, DType::F16>(); break;
      default: f.template operator()<I, DType::F32>(); break;
    }
  };
  switch (in) {
    case DType::BF16: with_out.template operator()<DType::BF16>(); break;
    case DType::F16: with_out.template operator()<DType::F16>(); break;
    default: with_out.template operator()<DType::F32>(); break;
  }
}

template <DType IN, DType OUT>
void weighted_sum_impl(const void* const* in, const float* w, size_t N, void* out, size_t n) {
  const size_t nblocks = (n + kBlock - 1) / kBlock;
  const auto nb = static_cast<long long>(nblocks);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (long long blk = 0; blk < nb; ++blk) {
    const size_t j0 = static_cast<size_t>(blk) * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    alignas(64) float acc[kBlock];
    for (size_t k = 0; k < len; ++k) acc[k] = 0.0f;
    // Inputs in groups of up to four per sweep over the block: fewer trips
    // through acc[], same order of additions for every element.
    size_t i = 0;
    for (; i + 4 <= N; i += 4) {
      const void *x0 = in[i], *x1 = in[i + 1], *x2 = in[i + 2], *x3 = in[i + 3];
      const float w0 = w[i], w1 = w[i + 1], w2 = w[i + 2], w3 = w[i + 3];
      for (size_t k = 0; k < len; ++k) {
        float a = ops::add(acc[k], ops::mul(w0, load<IN>(x0, j0 + k)));
        a = ops::add(a, ops::mul(w1, load<IN>(x1, j0 + k)));
        a = ops::add(a, ops::mul(w2, load<IN>(x2, j0 + k)));
        acc[k] = ops::add(a, ops::mul(w3, load<IN>(x3, j0 + k)));
      }
    }
    for (; i < N; ++i) {
      const void* x = in[i];
      const float wi = w[i];
      for (size_t k = 0; k < len; ++k) acc[k] = ops::add(acc[k], ops::mul(wi, load<IN>(x, j0 + k)));
    }
    for (size_t k = 0; k < len; ++k) store<OUT>(out, j0 + k, acc[k]);
  }
}

template <DType IN, DType OUT>
void task_merge_impl(const TaskMergeArgs& a) {
  const size_t N = a.inputs.size();
  const size_t n = a.n;
  float weight_sum = 0.0f;
  for (size_t i = 0; i < N; ++i) weight_sum = ops::add(weight_sum, a.weights[i]);
  const float plain_divisor = (weight_sum < 1e-8f && weight_sum > -1e-8f) ? 1.0f : weight_sum;
  const size_t nblocks = (n + kBlock - 1) / kBlock;
  const auto nb = static_cast<long long>(nblocks);
#pragma omp parallel if (n >= kParallelMin)
  {
    std::vector<float> wd(N * kBlock);
#pragma omp for schedule(static)
    for (long long blk = 0; blk < nb; ++blk) {
      const size_t j0 = static_cast<size_t>(blk) * kBlock;
      const size_t len = std::min(kBlock, n - j0);
      alignas(64) float b[kBlock], mixed[kBlock], divisor[kBlock];
      for (size_t k = 0; k < len; ++k) b[k] = load<IN>(a.base, j0 + k);
      // Weighted, sparsified task vectors.
      for (size_t i = 0; i < N; ++i) {
        float* row = wd.data() + i * kBlock;
        const void* x = a.inputs[i];
        const float wi = a.weights[i];
        for (size_t k = 0; k < len; ++k) row[k] = ops::sub(load<IN>(x, j0 + k), b[k]);
        if (a.sparsify == Sparsify::Magnitude) {
          const uint32_t thr = a.thr_bits[i];
          const uint64_t cut = a.tie_cutoff[i];
          for (size_t k = 0; k < len; ++k) {
            const uint32_t key = ops::f32_bits(row[k]) & 0x7fffffffu;
            const bool keep = key > thr || (key == thr && a.first_index + j0 + k < cut);
            row[k] = keep ? row[k] : 0.0f;
          }
        } else if (a.sparsify == Sparsify::Random) {
          const float dens = a.density[i];
          for (size_t k = 0; k < len; ++k) {
            const bool keep =
                ops::dare_uniform(a.seed_key, static_cast<uint32_t>(i), a.first_index + j0 + k) < dens;
            const float v = a.rescale ? ops::div(row[k], dens) : row[k];
            row[k] = keep ? v : 0.0f;
          }
        }
        for (size_t k = 0; k < len; ++k) row[k] = ops::mul(wi, row[k]);
      }
      if (a.sign_consensus) {
        alignas(64) float s[kBlock];
        for (size_t k = 0; k < len; ++k) s[k] = 0.0f;
        for (size_t i = 0; i < N; ++i) {
          const float* row = wd.data() + i * kBlock;
          for (size_t k = 0; k < len; ++k) s[k] = ops::add(s[k], row[k]);
        }
        for (size_t k = 0; k < len; ++k) mixed[k] = divisor[k] = 0.0f;
        for (size_t i = 0; i < N; ++i) {
          const float* row = wd.data() + i * kBlock;
          const float wi = a.weights[i];
          for (size_t k = 0; k < len; ++k) {
            const bool agree = s[k] >= 0.0f ? row[k] > 0.0f : row[k] < 0.0f;
            mixed[k] = ops::add(mixed[k], agree ? row[k] : 0.0f);
            divisor[k] = ops::add(divisor[k], agree ? wi : 0.0f);
          }
        }
        for (size_t k = 0; k < len; ++k) divisor[k] = divisor[k] == 0.0f ? 1.0f : divisor[k];
      } else {
        for (size_t k = 0; k < len; ++k) mixed[k] = 0.0f;
        for (size_t i = 0; i < N; ++i) {
          const float* row = wd.data() + i * kBlock;
          for (size_t k = 0; k < len; ++k) mixed[k] = ops::add(mixed[k], row[k]);
        }
        for (size_t k = 0; k < len; ++k) divisor[k] = plain_divisor;
      }
      for (size_t k = 0; k < len; ++k) {
        float m = mixed[k];
        if (a.normalize) m = ops::div(m, divisor[k]);
        if (a.lambda != 1.0f) m = ops::mul(m, a.lambda);
        store<OUT>(a.out, j0 + k, ops::add(b[k], m));
      }
    }
  }
}

}  // namespace

void fused_weighted_sum(std::span<const void* const> inputs, DType in_dtype,
                        std::span<const float> weights, void* out, DType out_dtype, size_t n) {
  check_dtypes(in_dtype, out_dtype);
  KS_CHECK(inputs.size() == weights.size(), "one weight per input");
  KS_CHECK(!inputs.empty() && inputs.size() <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  if (n == 0) return;
  dispatch(in_dtype, out_dtype, [&]<DType I, DType O>() {
    weighted_sum_impl<I, O>(inputs.data(), weights.data(), inputs.size(), out, n);
  });
}

void fused_task_merge(const TaskMergeArgs& a) {
  check_dtypes(a.in_dtype, a.out_dtype);
  const size_t N = a.inputs.size();
  KS_CHECK(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  KS_CHECK(a.weights.size() == N, "one weight per input");
  KS_CHECK(a.sparsify != Sparsify::Random || a.density.size() == N, "one density per input");
  KS_CHECK(a.sparsify != Sparsify::Magnitude || (a.thr_bits.size() == N && a.tie_cutoff.size() == N),
           "one threshold per input");
  if (a.n == 0) return;
  dispatch(a.in_dtype, a.out_dtype, [&]<DType I, DType O>() { task_merge_impl<I, O>(a); });
}

uint64_t dare_seed_key(uint64_t seed, std::string_view tensor_name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (const char c : tensor_name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  auto splitmix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  return splitmix(h ^ splitmix(seed));
}

bool dare_keep(uint64_t seed_key, uint32_t input, uint64_t index, float density) {
  return ops::dare_uniform(seed_key, input, index) < density;
}

}  // namespace kintsugi
