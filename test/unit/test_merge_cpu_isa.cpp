// Every copy of the CPU kernels this CPU runs (baseline ISA, AVX2, AVX-512,
// each with and without software prefetch)
// must give the baseline's bytes for every dtype pair and every task-merge
// variant, special values included: the merge engine's determinism across
// machines rests on it.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kintsugi/kernels/element_ops.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"
#include "test_support.hpp"

using namespace kintsugi;

namespace {

// Leaves the copy that small calls run before any timing (AVX2 where the CPU
// has it) selected after a test. Not the saved choice: asking for it would
// time every copy on 72 MiB, seconds at -O0 under the sanitizers; every copy
// gives the same bytes, so the tests after this one see no difference.
struct IsaGuard {
  ~IsaGuard() {
    if (!set_cpu_kernel_isa("avx2")) set_cpu_kernel_isa("generic");
  }
};

// Random bit patterns of the dtype: normals, subnormals, zeros, Inf and NaN.
std::vector<std::byte> random_bits(DType d, size_t n, std::mt19937& rng) {
  const size_t es = d == DType::F32 ? 4 : 2;
  std::vector<std::byte> v(n * es);
  std::normal_distribution<float> g(0.0f, 0.05f);
  for (size_t j = 0; j < n; ++j) {
    uint32_t u = rng();
    if (j % 7 != 0) {  // mostly ordinary values, so sums are meaningful
      const float f = g(rng);
      std::memcpy(&u, &f, 4);
      if (es == 2) u >>= 16;
    }
    if (d == DType::F16 && j % 7 != 0) u = (u & 0x8000u) | ((u >> 3) & 0x3fffu);  // |x| < 2
    std::memcpy(v.data() + j * es, &u, es);
  }
  return v;
}

template <typename F>
std::vector<std::byte> run_with(std::string_view isa, F&& f) {
  REQUIRE(set_cpu_kernel_isa(isa));
  return f();
}

// f() run by each copy other than the baseline equals f() run by the baseline.
// Only the weighted sum prefetches: for the other kernels the +prefetch
// copies run the same code as the plain ones and are left out
// (prefetch_too = false).
template <typename F>
void check_every_copy(F&& f, bool prefetch_too = false) {
  const auto expected = run_with("generic", f);
  for (const auto isa : cpu_kernel_isas()) {
    if (isa == "generic") continue;
    if (!prefetch_too && isa.ends_with("+prefetch")) continue;
    INFO("copy " << isa);
    CHECK(run_with(isa, f) == expected);
  }
}

}  // namespace

TEST_CASE("CPU kernels: every copy equals the baseline copy bit for bit", "[merge][kernels]") {
  IsaGuard guard;
  std::mt19937 rng(2024);
  // Over the threading threshold, an odd tail, a group of 4 inputs plus 3.
  // Under the sanitizers (-O0, three copies) 16 blocks and a tail, on one
  // thread: each copy's code and tails are the same, and the release run
  // covers the threads' split.
#if defined(KINTSUGI_TEST_ASAN)
  const size_t n = 4099, N = 7;
#else
  const size_t n = 70001, N = 7;
#endif
  for (DType in : {DType::BF16, DType::F16, DType::F32}) {
    std::vector<std::vector<std::byte>> x;
    std::vector<const void*> ptrs;
    for (size_t i = 0; i < N; ++i) x.push_back(random_bits(in, n, rng));
    for (auto& v : x) ptrs.push_back(v.data());
    const auto base = random_bits(in, n, rng);
    const std::vector<float> w = {0.3f, -0.25f, 0.5f, 0.125f, 0.4f, 1e-3f, 0.7f};
    for (DType out : {DType::BF16, DType::F16, DType::F32}) {
      const size_t os = out == DType::F32 ? 4 : 2;
      INFO("in " << dtype_name(in) << " out " << dtype_name(out));
      auto weighted = [&] {
        std::vector<std::byte> o(n * os);
        fused_weighted_sum(ptrs, in, w, o.data(), out, n);
        return o;
      };
      check_every_copy(weighted, true);
#if defined(KINTSUGI_TEST_ASAN)
      // Under the sanitizers (-O0, 10x slower) the task merges run for three
      // pairs that take each input and each output dtype once; the release
      // run compares all nine bit for bit.
      if (!((in == DType::BF16 && out == DType::F16) || (in == DType::F16 && out == DType::F32) ||
            (in == DType::F32 && out == DType::BF16)))
        continue;
#endif

      // Variants 4 and 5: breadcrumbs (top set minus an outlier top set),
      // without and with sign consensus.
      for (int variant = 0; variant < 6; ++variant) {
        INFO("task merge variant " << variant);
        const std::vector<float> dens(N, 0.6f);
        const std::vector<uint32_t> thr(N, 0x3c800000u);  // |d| above 1/64
        const std::vector<uint64_t> cut(N, n / 2);
        const std::vector<uint32_t> othr(N, 0x3d800000u);  // |d| above 1/16 dropped
        const std::vector<uint64_t> ocut(N, n / 3);
        auto task = [&] {
          std::vector<std::byte> o(n * os);
          TaskMergeArgs a;
          a.inputs = ptrs;
          a.base = base.data();
          a.in_dtype = in;
          a.weights = w;
          a.lambda = variant == 0 ? 1.0f : 0.8f;
          a.normalize = variant >= 2;
          a.sign_consensus = variant >= 2;
          a.sparsify = variant == 1 || variant == 3   ? Sparsify::Random
                       : variant == 2 || variant >= 4 ? Sparsify::Magnitude
                                                      : Sparsify::None;
          if (variant == 5) a.sign_consensus = true;
          if (variant >= 4) {
            a.outlier_thr_bits = othr;
            a.outlier_tie_cutoff = ocut;
          }
          a.density = dens;
          a.seed_key = dare_seed_key(5, "t");
          a.thr_bits = thr;
          a.tie_cutoff = cut;
          a.first_index = 12345;
          a.out = o.data();
          a.out_dtype = out;
          a.n = n;
          fused_task_merge(a);
          return o;
        };
        check_every_copy(task);
      }
      // della (Ranked): per-element ranks, a scale per input, with and without
      // sign consensus; one input at density 1 (low 2), one at 0 (low 0).
      std::vector<uint32_t> ranks(N * n);
      for (auto& r : ranks) r = static_cast<uint32_t>(rng() % 1000);
      const std::vector<float> low = {0.3f, 2.0f, 0.0f, 0.45f, 0.1f, 0.5f, 0.2f};
      const std::vector<float> eps = {0.2f, 0.0f, 0.0f, 0.05f, 0.1f, 0.3f, 0.15f};
      const std::vector<float> scale = {2.5f, 1.0f, 1.0f, 1.7f, 3.0f, 1.25f, 1.0f};
      for (int consensus = 0; consensus < 2; ++consensus) {
        INFO("della consensus " << consensus);
        auto della = [&] {
          std::vector<std::byte> o(n * os);
          TaskMergeArgs a;
          a.inputs = ptrs;
          a.base = base.data();
          a.in_dtype = in;
          a.weights = w;
          a.lambda = 0.9f;
          a.normalize = consensus == 1;
          a.sign_consensus = consensus == 1;
          a.sparsify = Sparsify::Ranked;
          a.seed_key = dare_seed_key(6, "t");
          a.ranks = ranks;
          a.row_len = 1000;
          a.ranked_low = low;
          a.ranked_eps = eps;
          a.ranked_scale = scale;
          a.first_index = 777;
          a.out = o.data();
          a.out_dtype = out;
          a.n = n;
          fused_task_merge(a);
          return o;
        };
        check_every_copy(della);
      }
      // sce, selecting by variance or not.
      for (int select = 0; select < 2; ++select) {
        INFO("sce select " << select);
        auto sce = [&] {
          std::vector<std::byte> o(n * os);
          SceMergeArgs a;
          a.inputs = ptrs;
          a.base = base.data();
          a.in_dtype = in;
          a.weights = w;
          a.select = select == 1;
          a.thr_bits = 0x3a800000u;  // variance above 2^-10
          a.tie_cutoff = 12345 + n / 2;
          a.first_index = 12345;
          a.out = o.data();
          a.out_dtype = out;
          a.n = n;
          fused_sce_merge(a);
          return o;
        };
        check_every_copy(sce);
      }
      // ram and ramplus_tl: epsilons that make every entry count, some, or
      // (random bit patterns) special values decide it.
      for (int variant = 0; variant < 4; ++variant) {
        INFO("ram variant " << variant);
        const std::vector<float> lam = {1.02f, 1.0f, 1.2f, 1.1f, 1.0f, 1.05f, 1.125f};
        auto ram = [&] {
          std::vector<std::byte> o(n * os);
          RamMergeArgs a;
          a.inputs = ptrs;
          a.base = base.data();
          a.in_dtype = in;
          a.epsilon = variant % 2 ? 0.03f : 1e-5f;
          if (variant >= 2) a.lambda = lam;
          a.out = o.data();
          a.out_dtype = out;
          a.n = n;
          fused_ram_merge(a);
          return o;
        };
        check_every_copy(ram);
      }
      // arcee_fusion: rows of 333 from a chunk starting at 12345, thresholds
      // that keep most, some, or no entries.
      for (float thr : {0.0f, 1e-4f, 1e30f}) {
        INFO("fusion threshold " << thr);
        const uint64_t L = 333, first = 12345, r0 = first / L;
        std::vector<float> kl((first + n - 1) / L - r0 + 1);
        for (size_t k = 0; k < kl.size(); ++k) kl[k] = 1e-3f * static_cast<float>(k % 11);
        auto fusion = [&] {
          std::vector<std::byte> o(n * os);
          FusionMergeArgs a;
          a.base = base.data();
          a.model = ptrs[0];
          a.in_dtype = in;
          a.kl_rows = kl;
          a.row_len = L;
          a.first_row = r0;
          a.first_index = first;
          a.threshold = thr;
          a.out = o.data();
          a.out_dtype = out;
          a.n = n;
          fused_fusion_merge(a);
          return o;
        };
        check_every_copy(fusion);
      }
      // Per-row and per-column weights (nuslerp), with and without a base; rows
      // of 333 elements and columns of a [n / 7, 7] view, a chunk starting at 12345.
      for (int variant = 0; variant < 4; ++variant) {
        INFO("vector merge variant " << variant);
        const bool by_column = variant >= 2;
        const uint64_t seg = by_column ? 7 : 333, first = 12345;
        const uint64_t v0 = by_column ? 0 : first / seg;
        const uint64_t nvec = by_column ? seg : (first + n - 1) / seg - v0 + 1;
        std::vector<float> vw(nvec * N);
        for (size_t k = 0; k < vw.size(); ++k) vw[k] = w[k % N] * static_cast<float>(1 + k % 5);
        auto vec = [&] {
          std::vector<std::byte> o(n * os);
          VectorMergeArgs a;
          a.inputs = ptrs;
          a.base = variant % 2 ? base.data() : nullptr;
          a.in_dtype = in;
          a.weights = vw;
          a.segment = seg;
          a.by_column = by_column;
          a.first_vector = v0;
          a.first_index = first;
          a.out = o.data();
          a.out_dtype = out;
          a.n = n;
          fused_vector_merge(a);
          return o;
        };
        check_every_copy(vec);
      }
      // nearswap: random bit patterns include zeros, Inf and NaN (w = t / 0,
      // t / Inf, NaN differences), and t both small and large.
      for (float t : {1e-3f, 0.05f, 4.0f}) {
        INFO("nearswap t " << t);
        auto swap = [&] {
          std::vector<std::byte> o(n * os);
          fused_nearswap(base.data(), ptrs[0], in, t, o.data(), out, n);
          return o;
        };
        check_every_copy(swap);
      }
      // passthrough's scale (1: the dtype conversion alone).
      for (float s : {1.0f, 0.3f, -7.5f}) {
        INFO("scale " << s);
        auto scaled = [&] {
          std::vector<std::byte> o(n * os);
          fused_scale(ptrs[0], in, s, o.data(), out, n);
          return o;
        };
        check_every_copy(scaled);
      }
    }
  }
}

// Outputs of 16 MiB and more are written by streaming stores from the first
// 64-byte aligned one: an output that starts 2 bytes past a line, with
// inputs that are not aligned either, holds every copy to the baseline on
// the head, the streamed body and the tail, five inputs (a group of four
// plus one).
TEST_CASE("CPU kernels: large outputs, streamed, equal the baseline bit for bit",
          "[merge][kernels]") {
  IsaGuard guard;
  std::mt19937 rng(7);
  const size_t N = 5, n = (size_t{8} << 20) + 77;  // 16 MiB of bf16 output, and a tail
  // Random values tiled (cheap at -O0): a 64 Ki-element pattern per input,
  // shifted by the input's number so the inputs differ at every element.
  const size_t kPattern = size_t{1} << 16;
  std::vector<std::vector<std::byte>> x;
  std::vector<const void*> ptrs;
  std::vector<std::byte> o(n * 4 + 128);
#if defined(KINTSUGI_TEST_ASAN)
  // At -O0 under the sanitizers, one pair: the copies' store code is the
  // same template for every pair, which the release run covers.
  const std::vector<DType> ins = {DType::BF16}, outs = {DType::BF16};
#else
  // Each input and each output dtype once: the loads are those of the test
  // above, the streamed stores differ by output dtype.
  const std::vector<DType> ins = {DType::BF16, DType::F16, DType::F32}, outs = ins;
#endif
  for (size_t pair = 0; pair < ins.size(); ++pair) {
    const DType in = ins[pair];
    const size_t es = in == DType::F32 ? 4 : 2;
    x.clear();
    ptrs.clear();
    for (size_t i = 0; i < N; ++i) {
      const auto pattern = random_bits(in, kPattern + N, rng);
      std::vector<std::byte> v(es * (n + 1));
      for (size_t j = 0; j < n + 1; j += kPattern)
        std::memcpy(v.data() + j * es, pattern.data() + i * es, std::min(kPattern, n + 1 - j) * es);
      x.push_back(std::move(v));
    }
    for (auto& v : x) ptrs.push_back(v.data() + es);  // one element in: unaligned
    const std::vector<float> w = {0.3f, -0.25f, 0.5f, 0.125f, 0.7f};
    {
      const DType out = outs[(pair + 1) % outs.size()];
      const size_t os = out == DType::F32 ? 4 : 2;
      INFO("in " << dtype_name(in) << " out " << dtype_name(out));
      REQUIRE(n * os >= (size_t{16} << 20));
      // One buffer for every copy (fresh 32 MiB buffers were most of the
      // test's time, in page faults), poisoned before each, 2 (bf16, fp16)
      // or 4 (fp32) bytes past a 64-byte line.
      const auto at = reinterpret_cast<uintptr_t>(o.data());
      const size_t skip = (64 - at % 64) % 64 + os;
      const std::span<std::byte> got(o.data() + skip, n * os);
      std::vector<std::byte> expected;
      for (const auto isa : cpu_kernel_isas()) {
        INFO("copy " << isa);
        REQUIRE(set_cpu_kernel_isa(isa));
        std::memset(got.data(), 0xa5, got.size());
        fused_weighted_sum(ptrs, in, w, got.data(), out, n);
        if (expected.empty())
          expected.assign(got.begin(), got.end());  // the baseline, listed first
        else
          CHECK(std::memcmp(got.data(), expected.data(), got.size()) == 0);
      }
    }
  }
}

// DARE's uniforms come a Philox block per four elements, eight or sixteen
// blocks per vector; each must be the per-element definition (Philox itself
// is held to Random123's known answers in test_common_philox.cpp), for starts
// at every offset within a block, lengths across the kernels' 256-element
// blocks, and counters whose low word wraps within a vector.
TEST_CASE("CPU kernels: DARE's uniforms in every copy equal them one at a time",
          "[merge][kernels]") {
  IsaGuard guard;
  const uint64_t wrap = (uint64_t{1} << 34) - 4 * 5;  // block 2^32 - 5: wraps in the 6th lane
  const uint64_t starts[] = {0, 1, 2, 3, 254, 1021, wrap, wrap + 3, (uint64_t{1} << 40) + 7};
  const size_t lengths[] = {1, 3, 4, 31, 255, 256, 257, 1000};
  for (const auto isa : cpu_kernel_isas()) {
    if (isa.ends_with("+prefetch")) continue;
    REQUIRE(set_cpu_kernel_isa(isa));
    INFO("copy " << isa);
    size_t mismatches = 0, checked = 0;
    for (const uint64_t key : {uint64_t{0}, uint64_t{0x0123456789abcdefull}})
      for (const uint32_t input : {0u, 6u, 0xffffffffu})
        for (const uint64_t first : starts)
          for (const size_t n : lengths) {
            std::vector<float> u(n, -1.0f);
            dare_uniforms(key, input, first, n, u.data());
            for (size_t k = 0; k < n; ++k, ++checked)
              mismatches += u[k] != ops::dare_uniform(key, input, first + k);
          }
    CHECK(checked > 0);
    CHECK(mismatches == 0);
  }
}

TEST_CASE("CPU kernels: the ISA can be chosen and reported", "[merge][kernels]") {
  IsaGuard guard;
  REQUIRE(set_cpu_kernel_isa("generic"));
  CHECK(cpu_kernel_isa() == "generic");
  CHECK(cpu_kernel_choice() == "set to generic");
  CHECK_FALSE(set_cpu_kernel_isa("avx512-bf16-please"));
  CHECK(cpu_kernel_isa() == "generic");
  // The copies listed are the ones this CPU runs, baseline first.
  const auto isas = cpu_kernel_isas();
  REQUIRE(!isas.empty());
  CHECK(isas.front() == "generic");
#if defined(__x86_64__)
  const bool avx2 = __builtin_cpu_supports("avx2");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  // Each ISA with and without software prefetch.
  CHECK(isas.size() == 2u * (1u + (avx2 ? 1u : 0u) + (avx512 ? 1u : 0u)));
  CHECK(set_cpu_kernel_isa("generic+prefetch"));
  CHECK(set_cpu_kernel_isa("avx2") == avx2);
  CHECK(set_cpu_kernel_isa("avx2+prefetch") == avx2);
  CHECK(set_cpu_kernel_isa("avx512") == avx512);
  CHECK(set_cpu_kernel_isa("avx512+prefetch") == avx512);
#endif
  CHECK_FALSE(set_cpu_kernel_isa("avx2+"));
  for (const auto isa : isas) CHECK(set_cpu_kernel_isa(isa));
}

TEST_CASE("CPU kernels: a NaN result is stored as the canonical quiet NaN", "[merge][kernels]") {
  IsaGuard guard;
  for (const auto isa : cpu_kernel_isas()) {
    REQUIRE(set_cpu_kernel_isa(isa));
    INFO(isa);
    // A negative signalling-looking NaN with a payload, and a positive one.
    const uint32_t nan_a = 0xff812345u, nan_b = 0x7f800001u;
    std::vector<uint32_t> a(300, nan_a), b(300, 0x3f800000u);
    b[5] = nan_b;
    const std::vector<const void*> ptrs = {a.data(), b.data()};
    const std::vector<float> w = {0.5f, 0.5f};
    std::vector<uint32_t> o32(300);
    std::vector<uint16_t> obf(300), of16(300);
    fused_weighted_sum(ptrs, DType::F32, w, o32.data(), DType::F32, 300);
    fused_weighted_sum(ptrs, DType::F32, w, obf.data(), DType::BF16, 300);
    fused_weighted_sum(ptrs, DType::F32, w, of16.data(), DType::F16, 300);
    for (size_t j = 0; j < 300; ++j) {
      REQUIRE(o32[j] == 0x7fc00000u);
      REQUIRE(obf[j] == 0x7fc0u);
      REQUIRE(of16[j] == 0x7e00u);
    }
  }
}
