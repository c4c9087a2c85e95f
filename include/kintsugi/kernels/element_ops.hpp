#pragma once
// Per-element building blocks shared by the CPU kernels (src/merge/) and the
// CUDA kernels (kernels/): dtype decode/encode with round-to-nearest-even and
// explicitly rounded fp32 arithmetic, so both backends compute the same bits.
// Written here rather than taken from a library because these loops are the
// product's core: they must vectorize, and must never be contracted into FMAs.
#include <cstdint>
#include <cstring>

#include "kintsugi/common/philox.hpp"

namespace kintsugi::ops {

KS_HD float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}
KS_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

// fp32 arithmetic, each operation rounded on its own (no FMA contraction).
KS_HD float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
KS_HD float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
KS_HD float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
KS_HD float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

KS_HD float bf16_to_f32(uint16_t h) {
  return bits_f32(static_cast<uint32_t>(h) << 16);
}

KS_HD uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// The fp16 conversions compute every case and pick one by integer masks,
// not by branches or selects (which the compiler may turn back into
// branches), so that loops over fp16 values vectorize: with branches the
// baseline and AVX2 copies of the weighted sum ran at 3 GB/s on fp16 inputs,
// 0.08 of the memory bandwidth. mask(c): all ones when c, else zero.
KS_HD uint32_t mask(bool c) {
  return 0u - static_cast<uint32_t>(c);
}

// x where keep, else +0: the bits masked, as `keep ? x : 0.0f` gives. GCC
// does not if-convert that select when keep comes from a float comparison
// (one that may raise FE_INVALID), which left DARE's and DELLA's loops, the
// sign election and the L1 sums scalar.
KS_HD float or_zero(float x, bool keep) {
  return bits_f32(f32_bits(x) & mask(keep));
}

// A NaN's sign and payload depend on operand order, which vector widths and
// devices choose differently; kernels store every NaN as this one quiet NaN so
// that all backends write the same bits. On the bits, as the conversions
// here: a select on f != f left the fp16 stores scalar.
KS_HD float canonical_nan(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t is_nan = mask((u & 0x7fffffffu) > 0x7f800000u);
  return bits_f32((u & ~is_nan) | (0x7fc00000u & is_nan));
}

KS_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  const uint32_t special = 0x7f800000u | ((em & 0x3ffu) << 13);  // Inf/NaN
  const uint32_t normal = (em << 13) + (112u << 23);
  // zero or subnormal: em * 2^-24 is exact in fp32
  const uint32_t small = f32_bits(mul(static_cast<float>(em), 5.9604644775390625e-8f));
  const uint32_t is_special = mask(em >= 0x7c00u), is_small = mask(em < 0x0400u);
  return bits_f32(sign | (special & is_special) | (small & is_small) |
                  (normal & ~(is_special | is_small)));
}

KS_HD uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  // Inf or NaN (quiet, payload kept where it fits)
  const uint32_t special = 0x7c00u | ((0x200u | ((a >> 13) & 0x3ffu)) & mask(a > 0x7f800000u));
  // subnormal or zero: adding 0.5 puts the f16 subnormal ulp (2^-24) at the
  // fp32 ulp of 0.5, so the hardware's round-to-nearest-even does the work.
  const uint32_t small = f32_bits(add(bits_f32(a & 0x3fffffffu), 0.5f)) - 0x3f000000u;
  // rebias exponent (15 - 127) << 23, round to nearest even
  const uint32_t normal = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;
  const uint32_t is_special = mask(a >= 0x7f800000u);
  const uint32_t is_inf = mask(a >= 0x477ff000u) & ~is_special;  // rounds to Inf
  const uint32_t is_small = mask(a < 0x38800000u);
  const uint32_t h = (special & is_special) | (0x7c00u & is_inf) | (small & is_small) |
                     (normal & ~(is_special | is_inf | is_small));
  return static_cast<uint16_t>(sign | h);
}

// DARE's keep decision for element `index` of input `input`: a uniform number
// in [0, 1) with 24 bits, from Philox block index / 4 keyed by the merge's
// seed key, so the mask depends on (seed, tensor, input, element) alone.
KS_HD Philox4x32 dare_block(uint64_t key, uint32_t input, uint64_t block) {
  return philox4x32_10(
      Philox4x32{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), input, 0u}},
      static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
}
// Word k of a block as the uniform of element 4 * block + k.
KS_HD float dare_word_uniform(uint32_t w) {
  return static_cast<float>(w >> 8) * 5.9604644775390625e-8f;  // * 2^-24
}
KS_HD float dare_uniform(uint64_t key, uint32_t input, uint64_t index) {
  return dare_word_uniform(dare_block(key, input, index >> 2).v[index & 3u]);
}

// DELLA's keep probability (mergekit's della_magprune) of the element ranked
// `rank` (0-based, ascending |delta|) in a row of row_len elements:
//   rn = rank / (row_len - 1)   (0.5 for a row of one, where mergekit divides 0 by 0)
//   p = low + (rn * 2) * eps    with low = fp32(density - epsilon)
// each operation rounded on its own in this order, as mergekit's fp32 tensors
// compute (density - epsilon) + rank_norm * 2 * epsilon.
KS_HD float della_prob(uint32_t rank, uint64_t row_len, float low, float eps) {
  const float rn =
      row_len > 1 ? div(static_cast<float>(rank), static_cast<float>(row_len - 1)) : 0.5f;
  return add(low, mul(mul(rn, 2.0f), eps));
}

// The population variance of n values v(0), ..., v(n-1) (torch.var with
// unbiased=False, as mergekit's SCE takes it), in a fixed order:
// mean = (v0 + v1 + ...) / n, var = ((v0 - mean)^2 + (v1 - mean)^2 + ...) / n.
template <typename V>
KS_HD float population_variance(const V& v, int n) {
  float mean = 0.0f;
  for (int i = 0; i < n; ++i) mean = add(mean, v(i));
  mean = div(mean, static_cast<float>(n));
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float t = sub(v(i), mean);
    acc = add(acc, mul(t, t));
  }
  return div(acc, static_cast<float>(n));
}

// RAM's test of whether a task-vector entry counts (mergekit's ram and
// ramplus_tl): |d| > epsilon, false for NaN.
KS_HD bool ram_counts(float d, float epsilon) {
  return bits_f32(f32_bits(d) & 0x7fffffffu) > epsilon;
}

// CABS's ranking key of a candidate entry: |c| as ordered bits (NaN above
// infinity, as torch.topk ranks it; -0 = +0).
KS_HD uint32_t cabs_key(float c) {
  return f32_bits(c) & 0x7fffffffu;
}

// Arcee Fusion's importance of one entry: |d| * kl, kl being its row's
// divergence (rounded to fp32), one rounded product.
KS_HD float fusion_importance(float d, float kl) {
  return mul(bits_f32(f32_bits(d) & 0x7fffffffu), kl);
}

// mergekit's nearswap for one element (v0 the base): w = t / |v0 - v1|, 1 when
// that is NaN or +-Inf, clamped to [0, 1]; w * v1 + (1 - w) * v0, each
// operation rounded on its own in this order. Selects, not branches, so the
// CPU loops vectorize.
KS_HD float nearswap(float v0, float v1, float t) {
  const float d = bits_f32(f32_bits(sub(v0, v1)) & 0x7fffffffu);
  float w = div(t, d);
  w = (f32_bits(w) & 0x7f800000u) == 0x7f800000u ? 1.0f : w;  // NaN, +-Inf
  w = w < 0.0f ? 0.0f : w;
  w = w > 1.0f ? 1.0f : w;
  return add(mul(w, v1), mul(sub(1.0f, w), v0));
}

}  // namespace kintsugi::ops
