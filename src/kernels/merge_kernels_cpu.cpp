// CPU kernels: one fused pass over N inputs per output element, blocked so the
// fp32 accumulators stay in L1 and the inner loops vectorize; OpenMP splits
// blocks among threads. Per-element arithmetic is the same sequence of fp32
// operations whatever the block, thread or chunk, which is what makes merges
// byte-identical for any number of ranks.
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define KINTSUGI_AVX2_COPY 1  // the AVX2 copy exists only on x86
// The AVX2 copy's target: AVX2 with F16C, whose vcvtph2ps and vcvtps2ph
// convert eight fp16 values at once (every CPU with AVX2 has had F16C).
#define KS_AVX2 "avx2,f16c"
#else
#define KINTSUGI_AVX2_COPY 0
#endif

#include <fmt/format.h>
#include <omp.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/huge_pages.hpp"
#include "kintsugi/kernels/element_ops.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"

namespace kintsugi {
namespace {

constexpr size_t kBlock = 256;
constexpr size_t kPrefetchAhead = 4;              // blocks
constexpr size_t kTaskBlocks = 16;                // blocks per OpenMP task
constexpr size_t kParallelMin = size_t{1} << 16;  // below this, one thread
// Outputs of at least this many bytes are written with streaming stores by
// the AVX2 and AVX-512 weighted sums: lines that no one reads before they
// leave the cache (a chunk of a file merge, 2 MiB by default, is read back
// at once and stays under it). A streaming store skips reading the line
// before writing it: on AMD EPYC Zen 5 the kernel went from 0.87-0.97 of
// the triad to 1.0-1.14 (bench/RESULTS.md).
constexpr size_t kStreamMin = size_t{16} << 20;

// The kernels are compiled three times: for the build's baseline ISA, for
// AVX2 (with F16C) and for AVX-512 (F, BW, VL, DQ, and F16C), picked at run time. All copies do the
// same IEEE fp32 operation per element (nothing is contracted into an FMA),
// so they give the same bits; the wider copies only vectorize wider. The
// weighted sum, the kernel that reads the most streams at once, comes in two
// variants of each: with and without software prefetch of its inputs (on
// AMD EPYC Zen 5 the prefetch, then into L1, cost 0.05-0.1 of the triad; on
// the first AMD host it helped; into L2 on Zen 4 it gains 0.05-0.1). Which copy is faster depends
// on the host, not on the ISA alone: on an Intel Xeon the AVX2 copy (with prefetch) ran at 0.25 of
// the triad and the generic one at 0.37 (issue #17), on AMD EPYC the wider copies win. So a CPU
// with AVX2 times every copy it runs once, on the first call that is large enough for it not to
// matter (kMeasureMin), and keeps the fastest; smaller calls before that run the AVX2 copy.
// KINTSUGI_CPU_KERNELS=<copy> forces one; any other value is an error, not
// silently ignored. A copy's number is 2 * ISA + (1 with prefetch).
enum Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr int kIsas = 3;
constexpr int kCopies = 2 * kIsas;
constexpr std::string_view kCopyNames[kCopies] = {
    "generic", "generic+prefetch", "avx2", "avx2+prefetch", "avx512", "avx512+prefetch"};
constexpr int copy_of(Isa isa, bool prefetch) {
  return 2 * isa + (prefetch ? 1 : 0);
}
constexpr Isa isa_of_copy(int copy) {
  return static_cast<Isa>(copy / 2);
}
constexpr bool prefetches(int copy) {
  return copy % 2 == 1;
}

std::atomic<int> g_isa{-1};  // -1 not chosen yet, else a copy
std::once_flag g_measure_once;
std::mutex g_choice_mutex;
std::string g_choice = "not chosen yet";  // how g_isa was chosen (cpu_kernel_choice)

// Bytes read + written by one call from which the first such call measures
// the copies (0.13 s for six on AMD EPYC Zen 4, with the first touch of its
// 72 MiB: about 10% of that call's own time at 10 GB/s).
constexpr size_t kMeasureMin = size_t{1} << 30;

// Whether this build has copy `copy` and this CPU (and its OS, for the
// AVX-512 registers: libgcc checks XCR0) runs it.
#if KINTSUGI_AVX2_COPY
// F16C (CPUID leaf 1, ECX bit 29), asked of the CPU directly: Clang's
// __builtin_cpu_supports does not know the name.
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
}
#endif

bool isa_supported(int copy) {
  const Isa isa = isa_of_copy(copy);
  if (isa == kGeneric) return true;
#if KINTSUGI_AVX2_COPY
  const bool avx2 = __builtin_cpu_supports("avx2") && has_f16c();
  if (isa == kAvx2) return avx2;
  if (isa == kAvx512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  return false;
}

// g_isa's value for a copy's name; -1 for a name that is not a copy.
int isa_of(std::string_view name) {
  for (int i = 0; i < kCopies; ++i)
    if (kCopyNames[i] == name) return i;
  return -1;
}
std::string_view name_of(int copy) {
  return kCopyNames[copy];
}

void set_choice(int isa, std::string how) {
  const std::lock_guard lock(g_choice_mutex);
  g_choice = std::move(how);
  g_isa.store(isa, std::memory_order_relaxed);
}

// The copy that KINTSUGI_CPU_KERNELS forces (and records it as the choice),
// or -1 when timing decides.
int fixed_isa() {
  const char* env = std::getenv("KINTSUGI_CPU_KERNELS");
  if (env != nullptr && *env != '\0') {
    const std::string_view v(env);
    const int isa = isa_of(v);
    if (isa < 0)
      throw_input("KINTSUGI_CPU_KERNELS={}: expected one of {}", v, fmt::join(kCopyNames, ", "));
    if (!isa_supported(isa)) throw_input("KINTSUGI_CPU_KERNELS={}: this CPU does not run it", v);
    set_choice(isa, fmt::format("KINTSUGI_CPU_KERNELS={}", name_of(isa)));
    return isa;
  }
  return -1;
}

void measure_and_choose();

// The copy a call moving `traffic` bytes (read + written) runs.
int isa_for(size_t traffic) {
  const int isa = g_isa.load(std::memory_order_relaxed);
  if (isa >= 0) return isa;
  // Read once, not on every call while the timing waits for a large one (an
  // initializer that throws, for a bad value, runs again on the next call).
  static const int fixed = fixed_isa();
  if (fixed >= 0) return fixed;
  if (traffic < kMeasureMin) {
    static const int before_timing =
        isa_supported(copy_of(kAvx2, false)) ? copy_of(kAvx2, false) : copy_of(kGeneric, false);
    return before_timing;
  }
  std::call_once(g_measure_once, measure_and_choose);
  return g_isa.load(std::memory_order_relaxed);
}

template <DType D>
constexpr size_t dtype_bytes() {
  return D == DType::F32 ? 4 : 2;
}

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
  f = ops::canonical_nan(f);
  if constexpr (D == DType::F32) {
    std::memcpy(static_cast<char*>(p) + 4 * j, &f, 4);
  } else {
    const uint16_t h = D == DType::BF16 ? ops::f32_to_bf16(f) : ops::f32_to_f16(f);
    std::memcpy(static_cast<char*>(p) + 2 * j, &h, 2);
  }
}

void check_dtypes(DType in, DType out) {
  auto ok = [](DType d) { return d == DType::BF16 || d == DType::F16 || d == DType::F32; };
  if (!ok(in))
    throw_input("merge kernel: input dtype #{} is not BF16, F16 or F32", static_cast<int>(in));
  if (!ok(out))
    throw_input("merge kernel: output dtype #{} is not BF16, F16 or F32", static_cast<int>(out));
}

// Calls f.template operator()<IN, OUT>() for the runtime dtypes.
template <typename F>
void dispatch(DType in, DType out, F&& f) {
  auto with_out = [&]<DType I>() {
    switch (out) {
      case DType::BF16:
        f.template operator()<I, DType::BF16>();
        break;
      case DType::F16:
        f.template operator()<I, DType::F16>();
        break;
      default:
        f.template operator()<I, DType::F32>();
        break;
    }
  };
  switch (in) {
    case DType::BF16:
      with_out.template operator()<DType::BF16>();
      break;
    case DType::F16:
      with_out.template operator()<DType::F16>();
      break;
    default:
      with_out.template operator()<DType::F32>();
      break;
  }
}

// Nine or more sequential streams can be more than a hardware prefetcher
// keeps ahead of; the +prefetch copies ask for the inputs of the block
// kPrefetchAhead blocks later. PF false: nothing. Into L2 (the T2 hint), not
// L1: a block's prefetches for eight inputs are 64 lines at once, and a
// prefetch into L1 (T0, or NTA, which also fills L1) holds one of its few
// miss buffers until the line arrives, so the loads behind it wait. On AMD
// EPYC Zen 4 the copies with NTA ran at 0.5-0.6 of the copies without
// prefetch, with T2 at 1.1-1.2 of them (a probe of both over 21 paired
// repetitions, bench/RESULTS.md).
template <DType IN, bool PF>
[[gnu::always_inline]] inline void prefetch_inputs(const void* const* in, size_t N, size_t n,
                                                   size_t j0) {
  if constexpr (!PF) return;
  const size_t ahead = j0 + kPrefetchAhead * kBlock;
  if (ahead >= n) return;
  const size_t bytes = std::min(kBlock, n - ahead) * dtype_bytes<IN>();
  for (size_t i = 0; i < N; ++i) {
    const char* p = static_cast<const char*>(in[i]) + ahead * dtype_bytes<IN>();
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 1);
  }
}

// Blocks [b0, b1) of out = sum_i w_i in_i.
template <DType IN, DType OUT, bool PF>
[[gnu::always_inline]] inline void weighted_sum_blocks(const void* const* in, const float* w,
                                                       size_t N, void* out, size_t n, size_t b0,
                                                       size_t b1) {
  for (size_t blk = b0; blk < b1; ++blk) {
    const size_t j0 = blk * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    prefetch_inputs<IN, PF>(in, N, n, j0);
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

template <DType IN, DType OUT, bool PF>
void weighted_sum_generic(const void* const* in, const float* w, size_t N, void* out, size_t n,
                          size_t b0, size_t b1) {
  weighted_sum_blocks<IN, OUT, PF>(in, w, N, out, n, b0, b1);
}

#if KINTSUGI_AVX2_COPY
// Outputs [j, end) of the weighted sum one at a time: a block's tail past the
// vector copies' last full step, same operations in the same order.
template <DType IN, DType OUT>
[[gnu::always_inline]] inline void weighted_sum_tail(const void* const* in, const float* w,
                                                     size_t N, void* out, size_t j, size_t end) {
  for (; j < end; ++j) {
    float a = 0.0f;
    for (size_t i = 0; i < N; ++i) a = ops::add(a, ops::mul(w[i], load<IN>(in[i], j)));
    store<OUT>(out, j, a);
  }
}

// Outputs from j on before the first at a 64-byte aligned address, where the
// streaming stores of the vector copies can start (`out` must be aligned to
// its element size: weighted_sum_with streams only then).
template <DType OUT>
size_t outputs_to_aligned(const void* out, size_t j) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(out) + j * dtype_bytes<OUT>();
  return (64 - at % 64) % 64 / dtype_bytes<OUT>();
}

// Eight inputs widened to fp32: bf16 is the top half of an fp32, so a zero
// extension and a shift are the exact conversion; fp16 by vcvtph2ps (every
// fp16 is an fp32; MXCSR plays no part).
template <DType IN>
[[gnu::target(KS_AVX2)]] inline __m256 load8(const void* p, size_t j) {
  if constexpr (IN != DType::F32) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + j));
    if constexpr (IN == DType::BF16)
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    else
      return _mm256_cvtph_ps(h);
  } else {
    return _mm256_loadu_ps(static_cast<const float*>(p) + j);
  }
}

// Round to nearest even into the low 16 bits of each lane: u + 0x7fff +
// ((u >> 16) & 1), then the top half. A canonical quiet NaN's top half is
// already 0x7fc0, and adding less than 0x8000 keeps it.
[[gnu::target(KS_AVX2)]] inline __m256i round_bf16_bits(__m256 a) {
  const __m256i u = _mm256_castps_si256(a);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd),
                           16);
}

// 32 bytes at p, by a streaming store (p aligned) when NT.
template <bool NT>
[[gnu::target(KS_AVX2)]] inline void store32(void* p, __m256i v) {
  if constexpr (NT)
    _mm256_stream_si256(static_cast<__m256i*>(p), v);
  else
    _mm256_storeu_si256(static_cast<__m256i*>(p), v);
}

// Sixteen sums stored with round-to-nearest-even and canonical NaNs, as
// store<OUT> does one at a time; by streaming stores when NT (out + j then
// 32-byte aligned). fp16 by vcvtps2ph with an explicit nearest-even rounding,
// as the AVX-512 copy.
template <DType OUT, bool NT>
[[gnu::target(KS_AVX2)]] inline void store_step(void* out, size_t j, __m256 a0, __m256 a1) {
  const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000));
  a0 = _mm256_blendv_ps(a0, qnan, _mm256_cmp_ps(a0, a0, _CMP_UNORD_Q));
  a1 = _mm256_blendv_ps(a1, qnan, _mm256_cmp_ps(a1, a1, _CMP_UNORD_Q));
  if constexpr (OUT == DType::F32) {
    store32<NT>(static_cast<float*>(out) + j, _mm256_castps_si256(a0));
    store32<NT>(static_cast<float*>(out) + j + 8, _mm256_castps_si256(a1));
  } else if constexpr (OUT == DType::BF16) {
    const __m256i packed = _mm256_permute4x64_epi64(
        _mm256_packus_epi32(round_bf16_bits(a0), round_bf16_bits(a1)), 0xd8);
    store32<NT>(static_cast<uint16_t*>(out) + j, packed);
  } else {
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m256i packed = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm256_cvtps_ph(a0, kRound)), _mm256_cvtps_ph(a1, kRound), 1);
    store32<NT>(static_cast<uint16_t*>(out) + j, packed);
  }
}

// a0, a1 += w x[j .. j + 16), each product rounded before the sum.
template <DType IN>
[[gnu::target(KS_AVX2)]] [[gnu::always_inline]] inline void add_step(const void* x, float w,
                                                                     size_t j, __m256& a0,
                                                                     __m256& a1) {
  const __m256 wv = _mm256_set1_ps(w);
  a0 = _mm256_add_ps(a0, _mm256_mul_ps(wv, load8<IN>(x, j)));
  a1 = _mm256_add_ps(a1, _mm256_mul_ps(wv, load8<IN>(x, j + 8)));
}

// The weighted sum's vector copies, one body: STEP outputs a trip, their sums
// in two registers V across all N inputs (add_step and store_step of the
// copy's ISA). A macro, not a template: the body must be compiled for the
// copy's target. With NT, the outputs before the first 64-byte aligned one go
// one at a time and the rest by streaming stores; the prefetch (PF) goes a
// block at a time.
#define KS_WEIGHTED_SUM_COPY(name, isa, V, STEP)                                             \
  template <DType IN, DType OUT, bool PF, bool NT>                                           \
  [[gnu::target(isa)]] void name(const void* const* in, const float* w, size_t N, void* out, \
                                 size_t n, size_t b0, size_t b1) {                           \
    size_t j = b0 * kBlock;                                                                  \
    const size_t end = std::min(n, b1 * kBlock);                                             \
    if constexpr (NT) {                                                                      \
      const size_t head = std::min(end - j, outputs_to_aligned<OUT>(out, j));                \
      weighted_sum_tail<IN, OUT>(in, w, N, out, j, j + head);                                \
      j += head;                                                                             \
    }                                                                                        \
    for (; j + STEP <= end; j += STEP) {                                                     \
      if (j % kBlock < STEP) prefetch_inputs<IN, PF>(in, N, n, j - j % kBlock);              \
      V a0{}, a1{};                                                                          \
      size_t i = 0;                                                                          \
      for (; i + 4 <= N; i += 4) {                                                           \
        add_step<IN>(in[i], w[i], j, a0, a1);                                                \
        add_step<IN>(in[i + 1], w[i + 1], j, a0, a1);                                        \
        add_step<IN>(in[i + 2], w[i + 2], j, a0, a1);                                        \
        add_step<IN>(in[i + 3], w[i + 3], j, a0, a1);                                        \
      }                                                                                      \
      for (; i < N; ++i) add_step<IN>(in[i], w[i], j, a0, a1);                               \
      store_step<OUT, NT>(out, j, a0, a1);                                                   \
    }                                                                                        \
    weighted_sum_tail<IN, OUT>(in, w, N, out, j, end);                                       \
    if constexpr (NT) _mm_sfence(); /* streamed lines visible before the threads join */     \
  }

// The AVX2 copy keeps sixteen outputs' sums in two registers across all N
// inputs (the baseline copy goes through acc[] in L1 once per four inputs):
// half the instructions per byte, which matters once the kernel must keep up
// with memory on few cores; the inputs go four per trip of the loop (with N
// unknown at compile time, the loop's own instructions held a Zen 5 core to
// 0.85 of the triad, unrolled 1.09). Same operations, same order, same bits.
KS_WEIGHTED_SUM_COPY(weighted_sum_avx2, KS_AVX2, __m256, 16)

// The AVX-512 copy's target. GCC, left to its default tuning, vectorizes the
// generic loops with 256-bit registers even where AVX-512 is allowed; asked,
// it uses the 512-bit ones. (Clang has no such option here: it picks 512.)
#if defined(__clang__)
#define KS_AVX512 "avx512f,avx512bw,avx512vl,avx512dq,f16c"
#else
#define KS_AVX512 "avx512f,avx512bw,avx512vl,avx512dq,f16c,prefer-vector-width=512"
#endif

// Sixteen inputs widened to fp32, exactly: bf16 by a zero extension and a
// shift, fp16 by vcvtph2ps (every fp16 is an fp32; MXCSR plays no part).
template <DType IN>
[[gnu::target(KS_AVX512)]] inline __m512 load16(const void* p, size_t j) {
  if constexpr (IN == DType::F32) {
    return _mm512_loadu_ps(static_cast<const float*>(p) + j);
  } else {
    const __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + j));
    if constexpr (IN == DType::BF16)
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else
      return _mm512_cvtph_ps(h);
  }
}

// Sixteen sums stored as store<OUT> does one at a time: NaNs canonical, then
// round to nearest even. bf16 by the same integer rounding as the AVX2 copy,
// not by AVX512-BF16's vcvtneps2bf16: that instruction flushes subnormal
// inputs and outputs to zero (Intel SDM), which the other copies do not.
// fp16 by vcvtps2ph with an explicit nearest-even rounding (subnormals and
// overflow to infinity as IEEE says; the canonical NaN becomes 0x7e00).
// Streaming stores when NT (out + j then aligned to the store's size).
template <DType OUT, bool NT>
[[gnu::target(KS_AVX512)]] inline void store16(void* out, size_t j, __m512 a) {
  const __m512 qnan = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000));
  a = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a, qnan);
  if constexpr (OUT == DType::F32) {
    if constexpr (NT)
      _mm512_stream_ps(static_cast<float*>(out) + j, a);
    else
      _mm512_storeu_ps(static_cast<float*>(out) + j, a);
  } else {
    __m256i h;
    if constexpr (OUT == DType::BF16) {
      const __m512i u = _mm512_castps_si512(a);
      const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
      h = _mm512_cvtepi32_epi16(_mm512_srli_epi32(
          _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd), 16));
    } else {
      h = _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    store32<NT>(static_cast<uint16_t*>(out) + j, h);
  }
}

// a0, a1 += w x[j .. j + 32), each product rounded before the sum.
template <DType IN>
[[gnu::target(KS_AVX512)]] [[gnu::always_inline]] inline void add_step(const void* x, float w,
                                                                       size_t j, __m512& a0,
                                                                       __m512& a1) {
  const __m512 wv = _mm512_set1_ps(w);
  a0 = _mm512_add_ps(a0, _mm512_mul_ps(wv, load16<IN>(x, j)));
  a1 = _mm512_add_ps(a1, _mm512_mul_ps(wv, load16<IN>(x, j + 16)));
}

// Thirty-two sums as two of sixteen.
template <DType OUT, bool NT>
[[gnu::target(KS_AVX512)]] inline void store_step(void* out, size_t j, __m512 a0, __m512 a1) {
  store16<OUT, NT>(out, j, a0);
  store16<OUT, NT>(out, j + 16, a1);
}

// The AVX-512 copy: the AVX2 copy's loop with thirty-two outputs' sums in two
// 512-bit registers (one 64-byte line of every bf16 or fp16 input per step),
// for all three input types. Same operations, same order, same bits.
KS_WEIGHTED_SUM_COPY(weighted_sum_avx512, KS_AVX512, __m512, 32)

#endif

// Splits the blocks into tasks of kTaskBlocks and runs `range` on each, on
// all threads when the tensor is large enough.
template <typename Range>
void for_block_ranges(size_t n, Range&& range) {
  const size_t nblocks = (n + kBlock - 1) / kBlock;
  const size_t ntasks = (nblocks + kTaskBlocks - 1) / kTaskBlocks;
  const auto nt = static_cast<long long>(ntasks);
#pragma omp parallel for schedule(static) if (n >= kParallelMin && !omp_in_parallel())
  for (long long t = 0; t < nt; ++t) {
    const size_t b0 = static_cast<size_t>(t) * kTaskBlocks;
    range(b0, std::min(nblocks, b0 + kTaskBlocks));
  }
}

// The weighted sum with copy `copy`, by streaming stores when `stream` (and
// every output's address is a multiple of its size, so that a 64-byte
// aligned one comes within 32 outputs).
template <DType IN, DType OUT>
void weighted_sum_with(int copy, bool stream, const void* const* in, const float* w, size_t N,
                       void* out, size_t n) {
  using Range = void (*)(const void* const*, const float*, size_t, void*, size_t, size_t, size_t);
  stream = stream && reinterpret_cast<uintptr_t>(out) % dtype_bytes<OUT>() == 0;
  auto pick = [&]<bool PF, bool NT>() -> Range {
#if KINTSUGI_AVX2_COPY
    if (isa_of_copy(copy) == kAvx2) return &weighted_sum_avx2<IN, OUT, PF, NT>;
    if (isa_of_copy(copy) == kAvx512) return &weighted_sum_avx512<IN, OUT, PF, NT>;
#endif
    return &weighted_sum_generic<IN, OUT, PF>;
  };
  const bool pf = prefetches(copy);
  const Range range = pf ? (stream ? pick.template operator()<true, true>()
                                   : pick.template operator()<true, false>())
                         : (stream ? pick.template operator()<false, true>()
                                   : pick.template operator()<false, false>());
  for_block_ranges(n, [&](size_t b0, size_t b1) { range(in, w, N, out, n, b0, b1); });
}

// The other kernels are one block function each, written once and compiled
// into every copy: `blocks` is an always-inline lambda around an always-inline
// *_blocks function, so both are inlined into the copy_* function of the
// chosen ISA and vectorized for it.
#define KS_INLINE_LAMBDA __attribute__((always_inline))
template <class Blocks>
void copy_generic(const Blocks& blocks, size_t b0, size_t b1) {
  blocks(b0, b1);
}
#if KINTSUGI_AVX2_COPY
template <class Blocks>
[[gnu::target(KS_AVX2)]] void copy_avx2(const Blocks& blocks, size_t b0, size_t b1) {
  blocks(b0, b1);
}
template <class Blocks>
[[gnu::target(KS_AVX512)]] void copy_avx512(const Blocks& blocks, size_t b0, size_t b1) {
  blocks(b0, b1);
}
#endif

// Runs blocks(b0, b1) over the n elements' blocks in the ISA of copy `c`
// (these kernels do not prefetch: both variants of an ISA run the same).
template <class Blocks>
void run_blocks(int c, size_t n, const Blocks& blocks) {
  auto copy = &copy_generic<Blocks>;
#if KINTSUGI_AVX2_COPY
  if (isa_of_copy(c) == kAvx2) copy = &copy_avx2<Blocks>;
  if (isa_of_copy(c) == kAvx512) copy = &copy_avx512<Blocks>;
#else
  (void)c;
#endif
  for_block_ranges(n, [&](size_t b0, size_t b1) { copy(blocks, b0, b1); });
}

template <DType IN, DType OUT>
void weighted_sum_impl(const void* const* in, const float* w, size_t N, void* out, size_t n) {
  const size_t traffic = (N * dtype_size(IN) + dtype_size(OUT)) * n;
  weighted_sum_with<IN, OUT>(isa_for(traffic), n * dtype_size(OUT) >= kStreamMin, in, w, N, out, n);
}

// Times every copy this CPU runs on the merge the kernels serve most (8 bf16
// inputs into a bf16 output, 4 Mi values each: 72 MiB per pass, past the
// last-level cache of the hosts measured), alternating them over nine passes
// after a warm-up one, and keeps the fastest (the wider on a tie). The
// output is streamed as a large call's is: what the choice is for is the
// calls that run at memory speed. The data's values do not matter to the
// speed.
void measure_and_choose() {
  constexpr size_t kN = 8, kValues = size_t{4} << 20;
  // One uninitialized buffer on huge pages, as the pool's shards are (a
  // 4 KiB page fault per 2 KiB of inputs was most of the time here), filled
  // by a loop that vectorizes.
  HugePageAllocator<uint16_t> huge;
  const auto release = [&](uint16_t* p) { huge.deallocate(p, kN * kValues); };
  const std::unique_ptr<uint16_t[], decltype(release)> in(huge.allocate(kN * kValues), release);
  for (size_t i = 0; i < kN; ++i) {
    uint16_t* x = in.get() + i * kValues;
    for (size_t j = 0; j < kValues; ++j)
      x[j] = static_cast<uint16_t>(0x3c00u + ((j * 7 + i) & 0xffu));  // finite bf16
  }
  HugeVector<uint16_t> out_buffer(kValues);
  uint16_t* const out = out_buffer.data();
  std::vector<const void*> ptrs;
  for (size_t i = 0; i < kN; ++i) ptrs.push_back(in.get() + i * kValues);
  const std::vector<float> w(kN, 1.0f / static_cast<float>(kN));
  // Each pass times the copies back to back; a copy's score is the median,
  // over the passes, of its time over the fastest time of the same pass. The
  // host's memory bandwidth drifts between levels from one second to the next
  // (a triad of 31 to 56 GB/s on AMD EPYC Zen 4), so each copy's own best
  // time compared one copy's lucky moment with another's unlucky one: best of
  // three passes picked avx512 over avx512+prefetch in 5 of 30 processes,
  // twice at a tie in the high-bandwidth state where prefetch gains 0.1. The
  // median of nine paired ratios picked it in 3 of 30, all three in the low
  // state, where it was the faster by 2-6% in most passes. Copies 1.2x slower than the
  // fastest in each of the first three passes are left out of the rest (the
  // generic copies, at half the speed, were half the time).
  constexpr int kPasses = 9, kFirst = 3;
  constexpr double kOut = 1.2;
  double seconds[kPasses][kCopies] = {};
  bool timed[kCopies];
  for (int copy = 0; copy < kCopies; ++copy) timed[copy] = isa_supported(copy);
  const auto fastest = [&](int pass) {
    double t = 1e300;
    for (int c = 0; c < kCopies; ++c)
      if (timed[c]) t = std::min(t, seconds[pass][c]);
    return t;
  };
  for (int pass = -1; pass < kPasses; ++pass) {  // pass -1 warms up: the output's first touch
    for (int copy = 0; copy < kCopies; ++copy) {
      if (!timed[copy]) continue;
      const auto t0 = std::chrono::steady_clock::now();
      weighted_sum_with<DType::BF16, DType::BF16>(copy, true, ptrs.data(), w.data(), kN, out,
                                                  kValues);
      const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
      if (pass >= 0) seconds[pass][copy] = dt.count();
    }
    if (pass == kFirst - 1) {
      bool out_of_race[kCopies];
      for (int copy = 0; copy < kCopies; ++copy) {
        out_of_race[copy] = timed[copy];
        for (int p = 0; p < kFirst; ++p)
          out_of_race[copy] = out_of_race[copy] && seconds[p][copy] > kOut * fastest(p);
      }
      for (int copy = 0; copy < kCopies; ++copy) timed[copy] = timed[copy] && !out_of_race[copy];
    }
  }
  // Scores: the median ratio over the passes a copy ran (kFirst for those
  // left out, against the fastest of all copies in those passes).
  double score[kCopies];
  std::vector<double> reference;  // the fastest time of each pass
  for (int pass = 0; pass < kPasses; ++pass) reference.push_back(fastest(pass));
  for (int copy = 0; copy < kCopies; ++copy) {
    if (!isa_supported(copy)) continue;
    const int passes = timed[copy] ? kPasses : kFirst;
    std::vector<double> ratio;
    for (int pass = 0; pass < passes; ++pass)
      ratio.push_back(seconds[pass][copy] / std::min(reference[pass], seconds[pass][copy]));
    std::nth_element(ratio.begin(), ratio.begin() + passes / 2, ratio.end());
    score[copy] = ratio[passes / 2];
  }
  std::nth_element(reference.begin(), reference.begin() + kPasses / 2, reference.end());
  const double median_fastest = reference[kPasses / 2];
  const double bytes = static_cast<double>((kN + 1) * kValues * sizeof(uint16_t));
  // Best score first in the description, the widest first among equal
  // scores; a copy's GB/s is that of the median fastest time over its score.
  std::vector<int> order;
  for (int copy = kCopies - 1; copy >= 0; --copy)
    if (isa_supported(copy)) order.push_back(copy);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return score[x] < score[y]; });
  std::string how = "measured:";
  for (size_t k = 0; k < order.size(); ++k)
    how += fmt::format("{} {} {:.1f} GB/s", k == 0 ? "" : ",", name_of(order[k]),
                       bytes / (score[order[k]] * median_fastest) / 1e9);
  set_choice(order.front(), std::move(how));
}

// DARE's uniforms for n <= kBlock consecutive elements of one input:
// u[k] = ops::dare_uniform(key, input, first + k), the same bits. One Philox
// block gives four elements' words; the per-element ops::dare_uniform
// computed a whole block for each element, and one at a time (12 ns an
// element on AMD EPYC Zen 4: DARE merged at 0.2 GB/s, linear at 35). The
// vector copies run one block per lane, two vectors at once (a round is a
// chain of dependent multiplies; two chains keep the multipliers busy).
using UniformsFn = void (*)(uint64_t key, uint32_t input, uint64_t first, size_t n, float* u);
// Philox blocks one call computes at most: kBlock / 4 + 1 (a start that is
// not a multiple of four), rounded up to whole steps of the widest copy.
constexpr size_t kUniformBlocks = 96;
static_assert(kUniformBlocks % 32 == 0 && kUniformBlocks >= kBlock / 4 + 1);

// u[k] from the blocks' words, w[4 g + word] for block first / 4 + g.
[[gnu::always_inline]] inline void uniforms_from_words(const uint32_t* w, uint64_t first, size_t n,
                                                       float* u) {
  const uint32_t* s = w + (first & 3u);
  for (size_t k = 0; k < n; ++k) u[k] = ops::dare_word_uniform(s[k]);
}

void dare_uniforms_generic(uint64_t key, uint32_t input, uint64_t first, size_t n, float* u) {
  alignas(64) uint32_t w[4 * kUniformBlocks];
  const uint64_t g0 = first >> 2, blocks = ((first + n + 3) >> 2) - g0;
  for (uint64_t g = 0; g < blocks; ++g) {
    const Philox4x32 r = ops::dare_block(key, input, g0 + g);
    std::memcpy(w + 4 * g, r.v, sizeof r.v);
  }
  uniforms_from_words(w, first, n, u);
}

#if KINTSUGI_AVX2_COPY
// Philox4x32-10 (common/philox.hpp) on one block per 32-bit lane, for L
// lanes of a vector type V; the lanes' 32 x 32 -> 64-bit products come from
// two even-lane multiplies (vpmuludq), the odd lanes shifted down first.
struct Avx2Lanes {
  using V = __m256i;
  static constexpr size_t L = 8;
  [[gnu::target(KS_AVX2), gnu::always_inline]] static V set1(uint32_t x) {
    return _mm256_set1_epi32(static_cast<int>(x));
  }
  [[gnu::target(KS_AVX2), gnu::always_inline]] static V bxor(V a, V b) {
    return _mm256_xor_si256(a, b);
  }
  [[gnu::target(KS_AVX2), gnu::always_inline]] static void mulhilo(V a, V m, V& hi, V& lo) {
    const V even = _mm256_mul_epu32(a, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xaa);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xaa);
  }
  // Lane l's counter b + l: its low word, and its high word with the carry.
  [[gnu::target(KS_AVX2), gnu::always_inline]] static void counters(uint64_t b, V& lo, V& hi) {
    const V base = set1(static_cast<uint32_t>(b)), sign = set1(0x80000000u);
    lo = _mm256_add_epi32(base, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const V carry = _mm256_cmpgt_epi32(bxor(base, sign), bxor(lo, sign));  // -1 where it wrapped
    hi = _mm256_sub_epi32(set1(static_cast<uint32_t>(b >> 32)), carry);
  }
  // Lane l's four words to p[4 l .. 4 l + 4).
  [[gnu::target(KS_AVX2), gnu::always_inline]] static void store_blocks(V c0, V c1, V c2, V c3,
                                                                        uint32_t* p) {
    const V t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
    const V t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
    // q0: lanes 0 and 4, q1: 1 and 5, q2: 2 and 6, q3: 3 and 7 (by 128-bit half).
    const V q0 = _mm256_unpacklo_epi64(t0, t2), q1 = _mm256_unpackhi_epi64(t0, t2);
    const V q2 = _mm256_unpacklo_epi64(t1, t3), q3 = _mm256_unpackhi_epi64(t1, t3);
    auto* out = reinterpret_cast<__m256i*>(p);
    _mm256_storeu_si256(out, _mm256_permute2x128_si256(q0, q1, 0x20));
    _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(q2, q3, 0x20));
    _mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(q0, q1, 0x31));
    _mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(q2, q3, 0x31));
  }
};

struct Avx512Lanes {
  using V = __m512i;
  static constexpr size_t L = 16;
  [[gnu::target(KS_AVX512), gnu::always_inline]] static V set1(uint32_t x) {
    return _mm512_set1_epi32(static_cast<int>(x));
  }
  [[gnu::target(KS_AVX512), gnu::always_inline]] static V bxor(V a, V b) {
    return _mm512_xor_si512(a, b);
  }
  [[gnu::target(KS_AVX512), gnu::always_inline]] static void mulhilo(V a, V m, V& hi, V& lo) {
    const V even = _mm512_mul_epu32(a, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    lo = _mm512_mask_blend_epi32(0xaaaa, even, _mm512_slli_epi64(odd, 32));
    hi = _mm512_mask_blend_epi32(0xaaaa, _mm512_srli_epi64(even, 32), odd);
  }
  [[gnu::target(KS_AVX512), gnu::always_inline]] static void counters(uint64_t b, V& lo, V& hi) {
    const V base = set1(static_cast<uint32_t>(b));
    lo = _mm512_add_epi32(base,
                          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __mmask16 wrapped = _mm512_cmplt_epu32_mask(lo, base);
    const V high = set1(static_cast<uint32_t>(b >> 32));
    hi = _mm512_mask_add_epi32(high, wrapped, high, set1(1));
  }
  // As Avx2Lanes::store_blocks, a 256-bit half at a time.
  [[gnu::target(KS_AVX512), gnu::always_inline]] static void store_blocks(V c0, V c1, V c2, V c3,
                                                                          uint32_t* p) {
    Avx2Lanes::store_blocks(_mm512_castsi512_si256(c0), _mm512_castsi512_si256(c1),
                            _mm512_castsi512_si256(c2), _mm512_castsi512_si256(c3), p);
    Avx2Lanes::store_blocks(_mm512_extracti64x4_epi64(c0, 1), _mm512_extracti64x4_epi64(c1, 1),
                            _mm512_extracti64x4_epi64(c2, 1), _mm512_extracti64x4_epi64(c3, 1),
                            p + 32);
  }
};

// A macro, not a template: the body must be compiled for the copy's target
// (the lane functions return vectors, which a function without it may not).
#define KS_DARE_UNIFORMS(name, isa, Lanes)                                               \
  [[gnu::target(isa)]] void name(uint64_t key, uint32_t input, uint64_t first, size_t n, \
                                 float* u) {                                             \
    using V = Lanes::V;                                                                  \
    constexpr size_t L = Lanes::L;                                                       \
    alignas(64) uint32_t w[4 * kUniformBlocks];                                          \
    const uint64_t g0 = first >> 2, blocks = ((first + n + 3) >> 2) - g0;                \
    const V m0 = Lanes::set1(kPhiloxM0), m1 = Lanes::set1(kPhiloxM1);                    \
    for (uint64_t g = 0; g < blocks; g += 2 * L) {                                       \
      V c0[2], c1[2], c2[2], c3[2];                                                      \
      for (int s = 0; s < 2; ++s) {                                                      \
        Lanes::counters(g0 + g + s * L, c0[s], c1[s]);                                   \
        c2[s] = Lanes::set1(input);                                                      \
        c3[s] = Lanes::set1(0);                                                          \
      }                                                                                  \
      uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);   \
      for (int round = 0; round < kPhiloxRounds; ++round) {                              \
        const V kv0 = Lanes::set1(k0), kv1 = Lanes::set1(k1);                            \
        for (int s = 0; s < 2; ++s) {                                                    \
          V hi0, lo0, hi1, lo1;                                                          \
          Lanes::mulhilo(c0[s], m0, hi0, lo0);                                           \
          Lanes::mulhilo(c2[s], m1, hi1, lo1);                                           \
          c0[s] = Lanes::bxor(Lanes::bxor(hi1, c1[s]), kv0);                             \
          c2[s] = Lanes::bxor(Lanes::bxor(hi0, c3[s]), kv1);                             \
          c1[s] = lo1;                                                                   \
          c3[s] = lo0;                                                                   \
        }                                                                                \
        k0 += kPhiloxW0;                                                                 \
        k1 += kPhiloxW1;                                                                 \
      }                                                                                  \
      for (int s = 0; s < 2; ++s)                                                        \
        Lanes::store_blocks(c0[s], c1[s], c2[s], c3[s], w + 4 * (g + s * L));            \
    }                                                                                    \
    uniforms_from_words(w, first, n, u);                                                 \
  }
KS_DARE_UNIFORMS(dare_uniforms_avx2, KS_AVX2, Avx2Lanes)
KS_DARE_UNIFORMS(dare_uniforms_avx512, KS_AVX512, Avx512Lanes)
#endif

// The uniforms' copy in the ISA of kernel copy `copy`.
UniformsFn uniforms_for(int copy) {
#if KINTSUGI_AVX2_COPY
  if (isa_of_copy(copy) == kAvx2) return &dare_uniforms_avx2;
  if (isa_of_copy(copy) == kAvx512) return &dare_uniforms_avx512;
#else
  (void)copy;
#endif
  return &dare_uniforms_generic;
}

// Blocks [b0, b1) of the task-vector merge.
template <DType IN, DType OUT>
[[gnu::always_inline]] inline void task_merge_blocks(const TaskMergeArgs& a, float plain_divisor,
                                                     UniformsFn uniforms, size_t b0, size_t b1) {
  const size_t N = a.inputs.size();
  const size_t n = a.n;
  // Locals, not a's members, in the loops: the output is written through a
  // void*, which may alias `a` as far as the compiler knows, so it reloaded
  // them every element and left the last loop scalar (9 GB/s for
  // task_arithmetic against 33 for the weighted sum over the same bytes).
  const float lambda = a.lambda;
  const bool normalize = a.normalize, rescale = a.rescale;
  const uint64_t first_index = a.first_index, row_len = a.row_len;
  void* const out = a.out;
  // Plain task vectors (no sparsification, no sign election) are summed as
  // they are read; otherwise each input's terms of a block are kept in wd.
  const bool keep_rows = a.sign_consensus;
  const bool sum_at_once = a.sparsify == Sparsify::None && !keep_rows;
  std::vector<float> wd(sum_at_once ? 0 : N * kBlock);
  for (size_t blk = b0; blk < b1; ++blk) {
    const size_t j0 = blk * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    alignas(64) float b[kBlock], mixed[kBlock], divisor[kBlock], u[kBlock];
    for (size_t k = 0; k < len; ++k) b[k] = load<IN>(a.base, j0 + k);
    // Weighted, sparsified task vectors, w_i * keep(x_i - b), in one pass per
    // input (a pass each for the difference, the mask and the weight cost
    // task_arithmetic half the speed of linear). Without the sign election
    // they are summed at once, in input order from +0 as below; with it they
    // are kept in wd until the election has seen them all.
    if (!keep_rows)
      for (size_t k = 0; k < len; ++k) mixed[k] = 0.0f;
    size_t first = 0;  // the inputs before it are summed four per sweep
    if (sum_at_once)
      // Four inputs per sweep, as the weighted sum: fewer trips through
      // mixed[], the same order of additions for every element.
      for (; first + 4 <= N; first += 4) {
        const void *x0 = a.inputs[first], *x1 = a.inputs[first + 1], *x2 = a.inputs[first + 2],
                   *x3 = a.inputs[first + 3];
        const float w0 = a.weights[first], w1 = a.weights[first + 1], w2 = a.weights[first + 2],
                    w3 = a.weights[first + 3];
        for (size_t k = 0; k < len; ++k) {
          float t = ops::add(mixed[k], ops::mul(w0, ops::sub(load<IN>(x0, j0 + k), b[k])));
          t = ops::add(t, ops::mul(w1, ops::sub(load<IN>(x1, j0 + k), b[k])));
          t = ops::add(t, ops::mul(w2, ops::sub(load<IN>(x2, j0 + k), b[k])));
          mixed[k] = ops::add(t, ops::mul(w3, ops::sub(load<IN>(x3, j0 + k), b[k])));
        }
      }
    for (size_t i = first; i < N; ++i) {
      const void* x = a.inputs[i];
      const float wi = a.weights[i];
      if (sum_at_once) {
        for (size_t k = 0; k < len; ++k)
          mixed[k] = ops::add(mixed[k], ops::mul(wi, ops::sub(load<IN>(x, j0 + k), b[k])));
        continue;
      }
      float* row = wd.data() + i * kBlock;  // wd is sized for this case
      if (a.sparsify == Sparsify::None) {
        for (size_t k = 0; k < len; ++k) row[k] = ops::mul(wi, ops::sub(load<IN>(x, j0 + k), b[k]));
      } else if (a.sparsify == Sparsify::Magnitude) {
        const uint32_t thr = a.thr_bits[i];
        // first_index + j0 + k < cutoff as k < a count of this block's
        // elements: a 32-bit comparison, not a 64-bit one per element.
        const auto before = [&](uint64_t cutoff) {
          const uint64_t at = first_index + j0;
          return static_cast<uint32_t>(cutoff <= at ? 0 : std::min<uint64_t>(cutoff - at, len));
        };
        const uint32_t cut = before(a.tie_cutoff[i]);
        if (a.outlier_thr_bits.empty()) {
          // Bitwise & and |, not && and ||: no branch, so the loop vectorizes
          // (with the branches TIES merged at 1.7 GB/s in memory).
          for (uint32_t k = 0; k < len; ++k) {
            const float d = ops::sub(load<IN>(x, j0 + k), b[k]);
            const uint32_t key = ops::f32_bits(d) & 0x7fffffffu;
            const bool keep = (key > thr) | ((key == thr) & (k < cut));
            row[k] = ops::mul(wi, ops::or_zero(d, keep));
          }
        } else {
          // breadcrumbs: in the top set, and not in the top outlier set.
          const uint32_t othr = a.outlier_thr_bits[i];
          const uint32_t ocut = before(a.outlier_tie_cutoff[i]);
          for (uint32_t k = 0; k < len; ++k) {
            const float d = ops::sub(load<IN>(x, j0 + k), b[k]);
            const uint32_t key = ops::f32_bits(d) & 0x7fffffffu;
            const bool top = (key > thr) | ((key == thr) & (k < cut));
            const bool outlier = (key > othr) | ((key == othr) & (k < ocut));
            row[k] = ops::mul(wi, ops::or_zero(d, top & !outlier));
          }
        }
      } else if (a.sparsify == Sparsify::Random) {
        const float dens = a.density[i];
        uniforms(a.seed_key, static_cast<uint32_t>(i), first_index + j0, len, u);
        for (size_t k = 0; k < len; ++k) {
          const float d = ops::sub(load<IN>(x, j0 + k), b[k]);
          const float v = rescale ? ops::div(d, dens) : d;
          row[k] = ops::mul(wi, ops::or_zero(v, u[k] < dens));
        }
      } else if (a.sparsify == Sparsify::Ranked) {
        const float low = a.ranked_low[i], eps = a.ranked_eps[i], scale = a.ranked_scale[i];
        const uint32_t* rk = a.ranks.data() + i * n + j0;
        uniforms(a.seed_key, static_cast<uint32_t>(i), first_index + j0, len, u);
        for (size_t k = 0; k < len; ++k) {
          const float d = ops::sub(load<IN>(x, j0 + k), b[k]);
          const bool keep = u[k] < ops::della_prob(rk[k], row_len, low, eps);
          row[k] = ops::mul(wi, ops::or_zero(ops::mul(d, scale), keep));
        }
      }
      if (!keep_rows)
        for (size_t k = 0; k < len; ++k) mixed[k] = ops::add(mixed[k], row[k]);
    }
    if (a.sign_consensus) {
      alignas(64) float s[kBlock];
      for (size_t k = 0; k < len; ++k) s[k] = 0.0f;
      for (size_t i = 0; i < N; ++i) {
        const float* row = wd.data() + i * kBlock;
        for (size_t k = 0; k < len; ++k) s[k] = ops::add(s[k], row[k]);
      }
      for (size_t k = 0; k < len; ++k) mixed[k] = divisor[k] = 0.0f;
      // agree = s >= 0 ? row > 0 : row < 0 (so a NaN never agrees), tested on
      // the bits, and the survivors by or_zero: with float comparisons and
      // selects this loop ran scalar (TIES merged at 1.7 GB/s in memory).
      for (size_t i = 0; i < N; ++i) {
        const float* row = wd.data() + i * kBlock;
        const float wi = a.weights[i];
        for (size_t k = 0; k < len; ++k) {
          const uint32_t sb = ops::f32_bits(s[k]), rb = ops::f32_bits(row[k]);
          const uint32_t sa = sb & 0x7fffffffu, ra = rb & 0x7fffffffu;
          const uint32_t up = (sa <= 0x7f800000u) & ((sb >> 31 == 0) | (sa == 0));  // s >= 0
          const uint32_t agree = (ra != 0) & (ra <= 0x7f800000u) & (up == (rb >> 31 == 0));
          mixed[k] = ops::add(mixed[k], ops::or_zero(row[k], agree));
          divisor[k] = ops::add(divisor[k], ops::or_zero(wi, agree));
        }
      }
      for (size_t k = 0; k < len; ++k) divisor[k] = divisor[k] == 0.0f ? 1.0f : divisor[k];
    } else {
      for (size_t k = 0; k < len; ++k) divisor[k] = plain_divisor;
    }
    for (size_t k = 0; k < len; ++k) {
      float m = mixed[k];
      if (normalize) m = ops::div(m, divisor[k]);
      if (lambda != 1.0f) m = ops::mul(m, lambda);
      store<OUT>(out, j0 + k, ops::add(b[k], m));
    }
  }
}

template <DType IN, DType OUT>
void task_merge_impl(const TaskMergeArgs& a) {
  float weight_sum = 0.0f;
  for (size_t i = 0; i < a.inputs.size(); ++i) weight_sum = ops::add(weight_sum, a.weights[i]);
  const float plain_divisor = (weight_sum < 1e-8f && weight_sum > -1e-8f) ? 1.0f : weight_sum;
  // The base and the N inputs in, one output out.
  const size_t traffic = ((a.inputs.size() + 1) * dtype_size(IN) + dtype_size(OUT)) * a.n;
  const int copy = isa_for(traffic);
  const UniformsFn uniforms = uniforms_for(copy);
  run_blocks(copy, a.n, [&](size_t b0, size_t b1) KS_INLINE_LAMBDA {
    task_merge_blocks<IN, OUT>(a, plain_divisor, uniforms, b0, b1);
  });
}

// Blocks [b0, b1) of SCE.
template <DType IN, DType OUT>
[[gnu::always_inline]] inline void sce_merge_blocks(const SceMergeArgs& a, size_t b0, size_t b1) {
  void* const out = a.out;  // a local: see task_merge_blocks
  const size_t N = a.inputs.size();
  const size_t n = a.n;
  const auto fN = static_cast<float>(N);
  std::vector<float> d(N * kBlock);
  for (size_t blk = b0; blk < b1; ++blk) {
    const size_t j0 = blk * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    alignas(64) float b[kBlock], s[kBlock], m[kBlock], div[kBlock];
    for (size_t k = 0; k < len; ++k) b[k] = load<IN>(a.base, j0 + k);
    for (size_t i = 0; i < N; ++i) {
      float* row = d.data() + i * kBlock;
      for (size_t k = 0; k < len; ++k) row[k] = ops::sub(load<IN>(a.inputs[i], j0 + k), b[k]);
    }
    if (a.select) {
      // population_variance, one input at a time across the block.
      alignas(64) float mean[kBlock], acc[kBlock];
      for (size_t k = 0; k < len; ++k) mean[k] = acc[k] = 0.0f;
      for (size_t i = 0; i < N; ++i) {
        const float* row = d.data() + i * kBlock;
        for (size_t k = 0; k < len; ++k) mean[k] = ops::add(mean[k], row[k]);
      }
      for (size_t k = 0; k < len; ++k) mean[k] = ops::div(mean[k], fN);
      for (size_t i = 0; i < N; ++i) {
        const float* row = d.data() + i * kBlock;
        for (size_t k = 0; k < len; ++k) {
          const float t = ops::sub(row[k], mean[k]);
          acc[k] = ops::add(acc[k], ops::mul(t, t));
        }
      }
      alignas(64) float sel[kBlock];
      for (size_t k = 0; k < len; ++k) {
        const uint32_t key = ops::f32_bits(ops::div(acc[k], fN)) & 0x7fffffffu;
        const bool keep =
            key > a.thr_bits || (key == a.thr_bits && a.first_index + j0 + k < a.tie_cutoff);
        sel[k] = keep ? 1.0f : 0.0f;
      }
      for (size_t i = 0; i < N; ++i) {
        float* row = d.data() + i * kBlock;
        for (size_t k = 0; k < len; ++k) row[k] = sel[k] != 0.0f ? row[k] : 0.0f;
      }
    }
    for (size_t k = 0; k < len; ++k) s[k] = m[k] = div[k] = 0.0f;
    for (size_t i = 0; i < N; ++i) {
      const float* row = d.data() + i * kBlock;
      for (size_t k = 0; k < len; ++k) s[k] = ops::add(s[k], row[k]);
    }
    for (size_t i = 0; i < N; ++i) {
      const float* row = d.data() + i * kBlock;
      const float wi = a.weights[i];
      for (size_t k = 0; k < len; ++k) {
        const bool agree = s[k] >= 0.0f ? row[k] > 0.0f : row[k] < 0.0f;
        const float e = agree ? wi : 0.0f;
        m[k] = ops::add(m[k], ops::mul(row[k], e));
        div[k] = ops::add(div[k], e);
      }
    }
    for (size_t k = 0; k < len; ++k) {
      const float dv = div[k] < 1e-6f ? 1e-6f : div[k];
      store<OUT>(out, j0 + k, ops::add(b[k], ops::div(m[k], dv)));
    }
  }
}

// Blocks [b0, b1) of the per-vector weighted sum (fused_vector_merge).
template <DType IN, DType OUT>
[[gnu::always_inline]] inline void vector_merge_blocks(const VectorMergeArgs& a, size_t b0,
                                                       size_t b1) {
  void* const out = a.out;  // a local: see task_merge_blocks
  const size_t N = a.inputs.size();
  const size_t n = a.n;
  const uint64_t seg = a.segment;
  for (size_t blk = b0; blk < b1; ++blk) {
    const size_t j0 = blk * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    // Each element's offset into the weights: one division per block, then
    // counters (row, position in the row) or (column).
    alignas(64) size_t widx[kBlock];
    const uint64_t g0 = a.first_index + j0;
    if (a.by_column) {
      uint64_t col = g0 % seg;
      for (size_t k = 0; k < len; ++k) {
        widx[k] = static_cast<size_t>(col - a.first_vector) * N;
        if (++col == seg) col = 0;
      }
    } else {
      uint64_t row = g0 / seg, pos = g0 % seg;
      for (size_t k = 0; k < len; ++k) {
        widx[k] = static_cast<size_t>(row - a.first_vector) * N;
        if (++pos == seg) {
          pos = 0;
          ++row;
        }
      }
    }
    alignas(64) float b[kBlock], acc[kBlock], wk[kBlock];
    for (size_t k = 0; k < len; ++k) acc[k] = 0.0f;
    if (a.base != nullptr)
      for (size_t k = 0; k < len; ++k) b[k] = load<IN>(a.base, j0 + k);
    for (size_t i = 0; i < N; ++i) {
      const void* x = a.inputs[i];
      for (size_t k = 0; k < len; ++k) wk[k] = a.weights[widx[k] + i];
      if (a.base != nullptr) {
        for (size_t k = 0; k < len; ++k)
          acc[k] = ops::add(acc[k], ops::mul(wk[k], ops::sub(load<IN>(x, j0 + k), b[k])));
      } else {
        for (size_t k = 0; k < len; ++k)
          acc[k] = ops::add(acc[k], ops::mul(wk[k], load<IN>(x, j0 + k)));
      }
    }
    if (a.base != nullptr)
      for (size_t k = 0; k < len; ++k) store<OUT>(out, j0 + k, ops::add(b[k], acc[k]));
    else
      for (size_t k = 0; k < len; ++k) store<OUT>(out, j0 + k, acc[k]);
  }
}

template <DType IN, DType OUT>
void sce_merge_impl(const SceMergeArgs& a) {
  const size_t traffic = ((a.inputs.size() + 1) * dtype_size(IN) + dtype_size(OUT)) * a.n;
  run_blocks(isa_for(traffic), a.n,
             [&](size_t b0, size_t b1) KS_INLINE_LAMBDA { sce_merge_blocks<IN, OUT>(a, b0, b1); });
}

template <DType IN, DType OUT>
void vector_merge_impl(const VectorMergeArgs& a) {
  const size_t traffic =
      ((a.inputs.size() + (a.base != nullptr ? 1 : 0)) * dtype_size(IN) + dtype_size(OUT)) * a.n;
  run_blocks(isa_for(traffic), a.n, [&](size_t b0, size_t b1) KS_INLINE_LAMBDA {
    vector_merge_blocks<IN, OUT>(a, b0, b1);
  });
}

// Blocks [b0, b1) of ram / ramplus_tl (fused_ram_merge): the count of
// entries above epsilon, then the sum of their shares; each delta computed
// twice rather than kept, so the block's state does not grow with N.
template <DType IN, DType OUT>
[[gnu::always_inline]] inline void ram_merge_blocks(const RamMergeArgs& a, size_t b0, size_t b1) {
  void* const out = a.out;  // a local: see task_merge_blocks
  const size_t N = a.inputs.size();
  const size_t n = a.n;
  const float eps = a.epsilon;
  const bool plus = !a.lambda.empty();
  for (size_t blk = b0; blk < b1; ++blk) {
    const size_t j0 = blk * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    alignas(64) float b[kBlock], cnt[kBlock], acc[kBlock];
    for (size_t k = 0; k < len; ++k) {
      b[k] = load<IN>(a.base, j0 + k);
      cnt[k] = 0.0f;
      acc[k] = 0.0f;
    }
    for (size_t i = 0; i < N; ++i) {
      const void* x = a.inputs[i];
      for (size_t k = 0; k < len; ++k) {
        const float d = ops::sub(load<IN>(x, j0 + k), b[k]);
        cnt[k] = ops::add(cnt[k], ops::ram_counts(d, eps) ? 1.0f : 0.0f);
      }
    }
    for (size_t i = 0; i < N; ++i) {
      const void* x = a.inputs[i];
      const float lam = plus ? a.lambda[i] : 1.0f;
      for (size_t k = 0; k < len; ++k) {
        const float d = ops::sub(load<IN>(x, j0 + k), b[k]);
        const float alone = plus ? ops::mul(d, lam) : d;
        const float t = cnt[k] == 1.0f ? alone : ops::div(d, cnt[k]);
        acc[k] = ops::add(acc[k], ops::ram_counts(d, eps) ? t : 0.0f);
      }
    }
    for (size_t k = 0; k < len; ++k) store<OUT>(out, j0 + k, ops::add(b[k], acc[k]));
  }
}

// Blocks [b0, b1) of arcee_fusion (fused_fusion_merge).
template <DType IN, DType OUT>
[[gnu::always_inline]] inline void fusion_merge_blocks(const FusionMergeArgs& a, size_t b0,
                                                       size_t b1) {
  void* const out = a.out;  // a local: see task_merge_blocks
  const size_t n = a.n;
  const uint64_t L = a.row_len;
  for (size_t blk = b0; blk < b1; ++blk) {
    const size_t j0 = blk * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    // Each element's row divergence: one division per block, then a counter.
    alignas(64) float kl[kBlock];
    const uint64_t g0 = a.first_index + j0;
    uint64_t row = g0 / L, pos = g0 % L;
    for (size_t k = 0; k < len; ++k) {
      kl[k] = a.kl_rows[static_cast<size_t>(row - a.first_row)];
      if (++pos == L) {
        pos = 0;
        ++row;
      }
    }
    alignas(64) float r[kBlock];
    for (size_t k = 0; k < len; ++k) {
      const float b = load<IN>(a.base, j0 + k);
      const float d = ops::sub(load<IN>(a.model, j0 + k), b);
      const bool keep = ops::fusion_importance(d, kl[k]) >= a.threshold;
      r[k] = ops::add(b, ops::mul(d, keep ? 1.0f : 0.0f));
    }
    for (size_t k = 0; k < len; ++k) store<OUT>(out, j0 + k, r[k]);
  }
}

template <DType IN, DType OUT>
void ram_merge_impl(const RamMergeArgs& a) {
  const size_t traffic = ((a.inputs.size() + 1) * dtype_size(IN) + dtype_size(OUT)) * a.n;
  run_blocks(isa_for(traffic), a.n,
             [&](size_t b0, size_t b1) KS_INLINE_LAMBDA { ram_merge_blocks<IN, OUT>(a, b0, b1); });
}

template <DType IN, DType OUT>
void fusion_merge_impl(const FusionMergeArgs& a) {
  const size_t traffic = (2 * dtype_size(IN) + dtype_size(OUT)) * a.n;
  run_blocks(isa_for(traffic), a.n, [&](size_t b0, size_t b1) KS_INLINE_LAMBDA {
    fusion_merge_blocks<IN, OUT>(a, b0, b1);
  });
}

// Blocks [b0, b1) of nearswap.
template <DType IN, DType OUT>
[[gnu::always_inline]] inline void nearswap_blocks(const void* v0, const void* v1, float t,
                                                   void* out, size_t n, size_t b0, size_t b1) {
  for (size_t blk = b0; blk < b1; ++blk) {
    const size_t j0 = blk * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    alignas(64) float r[kBlock];
    for (size_t k = 0; k < len; ++k)
      r[k] = ops::nearswap(load<IN>(v0, j0 + k), load<IN>(v1, j0 + k), t);
    for (size_t k = 0; k < len; ++k) store<OUT>(out, j0 + k, r[k]);
  }
}

template <DType IN, DType OUT>
void nearswap_impl(const void* v0, const void* v1, float t, void* out, size_t n) {
  const size_t traffic = (2 * dtype_size(IN) + dtype_size(OUT)) * n;
  run_blocks(isa_for(traffic), n, [&](size_t b0, size_t b1) KS_INLINE_LAMBDA {
    nearswap_blocks<IN, OUT>(v0, v1, t, out, n, b0, b1);
  });
}

// Blocks [b0, b1) of passthrough's scale.
template <DType IN, DType OUT>
[[gnu::always_inline]] inline void scale_blocks(const void* x, float s, void* out, size_t n,
                                                size_t b0, size_t b1) {
  for (size_t blk = b0; blk < b1; ++blk) {
    const size_t j0 = blk * kBlock;
    const size_t len = std::min(kBlock, n - j0);
    alignas(64) float r[kBlock];
    for (size_t k = 0; k < len; ++k) r[k] = ops::mul(load<IN>(x, j0 + k), s);
    for (size_t k = 0; k < len; ++k) store<OUT>(out, j0 + k, r[k]);
  }
}

template <DType IN, DType OUT>
void scale_impl(const void* x, float s, void* out, size_t n) {
  const size_t traffic = (dtype_size(IN) + dtype_size(OUT)) * n;
  run_blocks(isa_for(traffic), n, [&](size_t b0, size_t b1) KS_INLINE_LAMBDA {
    scale_blocks<IN, OUT>(x, s, out, n, b0, b1);
  });
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
  KS_CHECK(
      a.sparsify != Sparsify::Magnitude || (a.thr_bits.size() == N && a.tie_cutoff.size() == N),
      "one threshold per input");
  KS_CHECK(
      a.sparsify != Sparsify::Ranked || (a.ranked_low.size() == N && a.ranked_eps.size() == N &&
                                         a.ranked_scale.size() == N && a.ranks.size() >= N * a.n),
      "one rank per element and input, one probability setting per input");
  KS_CHECK(a.outlier_thr_bits.size() == a.outlier_tie_cutoff.size() &&
               (a.outlier_thr_bits.empty() || a.outlier_thr_bits.size() == N),
           "one outlier threshold per input, or none");
  if (a.n == 0) return;
  dispatch(a.in_dtype, a.out_dtype, [&]<DType I, DType O>() { task_merge_impl<I, O>(a); });
}

void fused_sce_merge(const SceMergeArgs& a) {
  check_dtypes(a.in_dtype, a.out_dtype);
  const size_t N = a.inputs.size();
  KS_CHECK(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  KS_CHECK(a.weights.size() == N, "one weight per input");
  if (a.n == 0) return;
  dispatch(a.in_dtype, a.out_dtype, [&]<DType I, DType O>() { sce_merge_impl<I, O>(a); });
}

void fused_vector_merge(const VectorMergeArgs& a) {
  check_dtypes(a.in_dtype, a.out_dtype);
  const size_t N = a.inputs.size();
  KS_CHECK(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  KS_CHECK(a.segment > 0, "a segment of at least one element");
  if (a.n == 0) return;
  // The vectors the chunk touches must have weights.
  const uint64_t last = a.first_index + a.n - 1;
  uint64_t v0 = 0, v1 = 0;
  if (!a.by_column) {
    v0 = a.first_index / a.segment;
    v1 = last / a.segment;
  } else if (a.n >= a.segment || last % a.segment < a.first_index % a.segment) {
    v1 = a.segment - 1;  // every column
  } else {
    v0 = a.first_index % a.segment;
    v1 = last % a.segment;
  }
  KS_CHECK(v0 >= a.first_vector && (v1 - a.first_vector + 1) * N <= a.weights.size(),
           "weights for every vector of the chunk");
  dispatch(a.in_dtype, a.out_dtype, [&]<DType I, DType O>() { vector_merge_impl<I, O>(a); });
}

void fused_ram_merge(const RamMergeArgs& a) {
  check_dtypes(a.in_dtype, a.out_dtype);
  const size_t N = a.inputs.size();
  KS_CHECK(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  KS_CHECK(a.lambda.empty() || a.lambda.size() == N, "no lambda, or one per input");
  if (a.n == 0) return;
  dispatch(a.in_dtype, a.out_dtype, [&]<DType I, DType O>() { ram_merge_impl<I, O>(a); });
}

// CABS over superblocks of L = lcm(m_i) elements, each independent of the
// others (every model's blocks nest in it). Per block, the n largest keys,
// the lower index first among equal ones: by counting for short blocks, by
// nth_element on (key descending, index ascending), a total order, above.
template <DType IN, DType OUT>
void cabs_merge_impl(const CabsMergeArgs& a, uint64_t L) {
  void* const out = a.out;  // a local: see task_merge_blocks
  const size_t N = a.inputs.size();
  const size_t nsb = (a.n + L - 1) / L;
  const auto nt = static_cast<long long>(nsb);
#pragma omp parallel if (a.n >= kParallelMin && !omp_in_parallel())
  {
    std::vector<float> b(L), acc(L), c(L);
    std::vector<uint32_t> key(L), order;
    std::vector<uint8_t> taken(L), sel(L);
#pragma omp for schedule(static)
    for (long long sb = 0; sb < nt; ++sb) {
      const size_t s0 = static_cast<size_t>(sb) * L;
      const size_t len = std::min<size_t>(L, a.n - s0);
      for (size_t k = 0; k < len; ++k) {
        b[k] = load<IN>(a.base, s0 + k);
        acc[k] = b[k];
        taken[k] = 0;
      }
      for (size_t i = 0; i < N; ++i) {
        const void* x = a.inputs[i];
        const size_t m = a.block_m[i], keep = a.keep_n[i];
        const float w = a.weights[i];
        for (size_t k = 0; k < len; ++k) {
          c[k] = taken[k] ? 0.0f : ops::sub(load<IN>(x, s0 + k), b[k]);
          key[k] = ops::cabs_key(c[k]);
        }
        for (size_t q = 0; q < len; q += m) {
          const size_t bl = std::min(m, len - q);
          const uint32_t* kq = key.data() + q;
          uint8_t* sq = sel.data() + q;
          if (keep >= bl || keep == 0) {
            std::fill(sq, sq + bl, keep == 0 ? 0 : 1);
          } else if (bl <= 64) {
            for (size_t j = 0; j < bl; ++j) {
              size_t above = 0;
              for (size_t k = 0; k < bl; ++k) above += kq[k] > kq[j] || (kq[k] == kq[j] && k < j);
              sq[j] = above < keep;
            }
          } else {
            order.resize(bl);
            for (size_t j = 0; j < bl; ++j) order[j] = static_cast<uint32_t>(j);
            auto first = [&](uint32_t u, uint32_t v) {
              return kq[u] > kq[v] || (kq[u] == kq[v] && u < v);
            };
            std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep),
                             order.end(), first);
            std::fill(sq, sq + bl, 0);
            for (size_t j = 0; j < keep; ++j) sq[order[j]] = 1;
          }
        }
        for (size_t k = 0; k < len; ++k) {
          acc[k] = ops::add(acc[k], sel[k] ? ops::mul(w, c[k]) : 0.0f);
          taken[k] = taken[k] | sel[k];
        }
      }
      for (size_t k = 0; k < len; ++k) store<OUT>(out, s0 + k, acc[k]);
    }
  }
}

uint64_t cabs_superblock(std::span<const uint32_t> block_m) {
  uint64_t L = 1;
  for (uint32_t m : block_m) {
    L = std::lcm(L, uint64_t{m});
    if (L > kMaxCabsBlock) return 0;  // before a later lcm could overflow
  }
  return L;
}

void fused_cabs_merge(const CabsMergeArgs& a) {
  check_dtypes(a.in_dtype, a.out_dtype);
  const size_t N = a.inputs.size();
  KS_CHECK(N >= 1 && N <= kMaxMergeInputs, "1..kMaxMergeInputs inputs");
  KS_CHECK(a.weights.size() == N && a.keep_n.size() == N && a.block_m.size() == N,
           "a weight, n and m per input");
  for (size_t i = 0; i < N; ++i)
    KS_CHECK(a.block_m[i] >= 1 && a.block_m[i] <= kMaxCabsBlock && a.keep_n[i] <= a.block_m[i],
             "cabs: 0 <= n <= m, 1 <= m <= kMaxCabsBlock");
  const uint64_t L = cabs_superblock(a.block_m);
  KS_CHECK(L != 0, "cabs: the blocks' least common multiple <= kMaxCabsBlock");
  if (a.n == 0) return;
  dispatch(a.in_dtype, a.out_dtype, [&]<DType I, DType O>() { cabs_merge_impl<I, O>(a, L); });
}

void fused_fusion_merge(const FusionMergeArgs& a) {
  check_dtypes(a.in_dtype, a.out_dtype);
  KS_CHECK(a.row_len > 0, "rows of at least one element");
  if (a.n == 0) return;
  const uint64_t r0 = a.first_index / a.row_len, r1 = (a.first_index + a.n - 1) / a.row_len;
  KS_CHECK(r0 >= a.first_row && r1 - a.first_row < a.kl_rows.size(),
           "a divergence for every row of the chunk");
  dispatch(a.in_dtype, a.out_dtype, [&]<DType I, DType O>() { fusion_merge_impl<I, O>(a); });
}

void fused_nearswap(const void* v0, const void* v1, DType in_dtype, float t, void* out,
                    DType out_dtype, size_t n) {
  check_dtypes(in_dtype, out_dtype);
  if (n == 0) return;
  dispatch(in_dtype, out_dtype,
           [&]<DType I, DType O>() { nearswap_impl<I, O>(v0, v1, t, out, n); });
}

void fused_scale(const void* x, DType in_dtype, float scale, void* out, DType out_dtype, size_t n) {
  check_dtypes(in_dtype, out_dtype);
  if (n == 0) return;
  dispatch(in_dtype, out_dtype, [&]<DType I, DType O>() { scale_impl<I, O>(x, scale, out, n); });
}

std::vector<std::string_view> cpu_kernel_isas() {
  std::vector<std::string_view> isas;
  for (int i = 0; i < kCopies; ++i)
    if (isa_supported(i)) isas.push_back(name_of(i));
  return isas;
}

std::string_view cpu_kernel_isa() {
  return name_of(isa_for(kMeasureMin));
}

std::string_view forced_cpu_kernels() {
  const int isa = fixed_isa();
  return isa < 0 ? std::string_view() : name_of(isa);
}

std::string cpu_kernel_choice() {
  (void)isa_for(kMeasureMin);
  const std::lock_guard lock(g_choice_mutex);
  return g_choice;
}

bool set_cpu_kernel_isa(std::string_view isa) {
  const int i = isa_of(isa);
  if (i < 0 || !isa_supported(i)) return false;
  set_choice(i, fmt::format("set to {}", name_of(i)));
  return true;
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

void dare_uniforms(uint64_t seed_key, uint32_t input, uint64_t first_index, size_t n, float* u) {
  const UniformsFn f = uniforms_for(isa_for(n * sizeof(float)));
  for (size_t k = 0; k < n; k += kBlock)
    f(seed_key, input, first_index + k, std::min(kBlock, n - k), u + k);
}

}  // namespace kintsugi
