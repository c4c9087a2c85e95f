// The fused kernels and per-tensor methods against naive references written
// here (double-precision loops, sort-based selection, hand-worked values).
#include <catch2/catch.hpp>

// References here compute in double from float data on purpose.
#pragma GCC diagnostic ignored "-Wdouble-promotion"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <vector>

#include "kintsugi/common/error.hpp"
#include "kintsugi/kernels/element_ops.hpp"
#include "kintsugi/kernels/merge_kernels.hpp"
#include "kintsugi/merge/tensor_merge.hpp"

using namespace kintsugi;

namespace {

// Reference conversions, written independently of src/merge.
float ref_bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even by brute force: the two bf16 neighbours, pick closer.
uint16_t ref_f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const auto lo = static_cast<uint16_t>(u >> 16);
  const auto hi = static_cast<uint16_t>(lo + 1);
  const double dl = std::fabs(static_cast<double>(ref_bf16_to_f32(lo)) - f);
  const double dh = std::fabs(static_cast<double>(ref_bf16_to_f32(hi)) - f);
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}
double ref_f16_to_double(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double s = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0) return s * std::ldexp(m, -24);
  return s * std::ldexp(1024 + m, e - 25);
}
double bf16_ulp(double x) {
  int e = 0;
  std::frexp(x, &e);
  return std::ldexp(1.0, e - 8);
}

std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = ref_f32_to_bf16(dist(rng));
  return v;
}

std::vector<uint16_t> run_task(const std::vector<std::vector<uint16_t>>& models,
                               const std::vector<uint16_t>& base, const TensorMethod& m,
                               MPI_Comm comm = MPI_COMM_SELF, MergeTensorStats* stats = nullptr) {
  TensorSources s;
  s.name = "model.layers.0.mlp.up_proj.weight";
  s.numel = base.size();
  s.dtype = DType::BF16;
  s.base = base.data();
  for (const auto& x : models) s.models.push_back(x.data());
  std::vector<uint16_t> out(base.size());
  const MergeTensorStats st = merge_tensor(s, m, {0, base.size()}, DType::BF16, 1000, comm,
                                           [&](ElementRange c, std::span<const std::byte> b) {
                                             std::memcpy(out.data() + c.begin, b.data(), b.size());
                                           });
  if (stats) *stats = st;
  return out;
}

// Two task vectors over one base with many equal magnitudes (small integer
// multiples), for the exact selections: the sources, and per model the
// element order a stable sort by descending |delta| gives (lowest index first
// among equals, the order the selections promise).
struct TiedVectors {
  std::vector<float> base, x0, x1;
  TensorSources sources;
  TiedVectors(uint32_t seed, size_t n) : base(n), x0(n), x1(n) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> small(-6, 6);
    for (size_t j = 0; j < n; ++j) {
      base[j] = 0.25f * static_cast<float>(small(rng));
      x0[j] = base[j] + 0.5f * static_cast<float>(small(rng));
      x1[j] = base[j] + 0.125f * static_cast<float>(small(rng));
    }
    sources.name.assign(1, 't');  // (= "t" trips GCC 12's -Wstringop-overflow here)
    sources.numel = n;
    sources.dtype = DType::F32;
    sources.base = base.data();
    sources.models = {x0.data(), x1.data()};
  }
  float magnitude(size_t i, size_t j) const { return std::fabs((i == 0 ? x0 : x1)[j] - base[j]); }
  // The selection key of element j of model i: |delta| as IEEE bits.
  uint32_t key(size_t i, size_t j) const {
    uint32_t k;
    const float d = magnitude(i, j);
    std::memcpy(&k, &d, 4);
    return k;
  }
  std::vector<size_t> descending(size_t i) const {
    std::vector<size_t> idx(base.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(),
                     [&](size_t a, size_t b) { return magnitude(i, a) > magnitude(i, b); });
    return idx;
  }
  // Whether element j of model i is in selection t.
  bool selected(const TopKSelection& t, size_t i, size_t j) const {
    const uint32_t k = key(i, j);
    return k > t.thr_bits[i] || (k == t.thr_bits[i] && j < t.tie_cutoff[i]);
  }
};

}  // namespace

TEST_CASE("fused_weighted_sum bf16 equals a naive fp32 loop and a double reference within 1 ulp",
          "[merge][kernels]") {
  std::mt19937 rng(7);
  const size_t n = 70001, N = 5;  // over the threading threshold, odd tail
  std::vector<std::vector<uint16_t>> in;
  for (size_t i = 0; i < N; ++i) in.push_back(random_bf16(n, rng));
  const std::vector<float> w = {0.3f, -0.25f, 0.5f, 0.125f, 0.4f};
  std::vector<const void*> ptrs;
  for (auto& v : in) ptrs.push_back(v.data());
  std::vector<uint16_t> out(n);
  fused_weighted_sum(ptrs, DType::BF16, w, out.data(), DType::BF16, n);
  size_t exact = 0;
  for (size_t j = 0; j < n; ++j) {
    float acc = 0.0f;
    double ref = 0.0, mag = 0.0;
    for (size_t i = 0; i < N; ++i) {
      acc += w[i] * ref_bf16_to_f32(in[i][j]);
      ref += static_cast<double>(w[i]) * ref_bf16_to_f32(in[i][j]);
      mag += std::fabs(static_cast<double>(w[i]) * ref_bf16_to_f32(in[i][j]));
    }
    exact += out[j] == ref_f32_to_bf16(acc);
    // 1 bf16 ulp, plus the fp32 accumulation error bound where terms cancel.
    REQUIRE(std::fabs(ref_bf16_to_f32(out[j]) - ref) <=
            bf16_ulp(ref) + 2 * N * std::ldexp(mag, -24));
  }
  CHECK(exact == n);
}

TEST_CASE("merge_tensor's chunks split among threads: each written once, the same bits",
          "[merge][kernels]") {
  // Three threads whatever the host has: the chunks go to the threads whole,
  // and the sink is called from them (ChunkSink).
  const int threads_before = omp_get_max_threads();
  omp_set_num_threads(3);
  std::mt19937 rng(29);
  // Enough elements for 4 chunks per thread of at least 64 Ki (parallel_chunks).
  const size_t n = 800003, N = 3;
  std::vector<std::vector<uint16_t>> in;
  for (size_t i = 0; i < N; ++i) in.push_back(random_bf16(n, rng));
  TensorSources s;
  s.name = "model.layers.0.mlp.up_proj.weight";
  s.numel = n;
  s.dtype = DType::BF16;
  for (auto& v : in) s.models.push_back(v.data());
  TensorMethod m;
  m.method = MergeMethod::Linear;
  m.weights = {0.375f, -0.5f, 0.8f};
  const ElementRange range{12345, n - 999};  // a rank's share: neither end at the tensor's
  std::vector<uint16_t> out(n, 0xdead);
  std::mutex mu;
  std::vector<ElementRange> seen;
  size_t outside_parallel = 0;
  merge_tensor(s, m, range, DType::BF16, uint64_t{1} << 20, MPI_COMM_SELF,
               [&](ElementRange c, std::span<const std::byte> b) {
                 REQUIRE(b.size() == c.size() * 2);
                 std::memcpy(out.data() + c.begin, b.data(), b.size());
                 const std::lock_guard lock(mu);
                 seen.push_back(c);
                 outside_parallel += omp_in_parallel() ? 0 : 1;
               });
  std::sort(seen.begin(), seen.end(),
            [](ElementRange a, ElementRange b) { return a.begin < b.begin; });
  REQUIRE(seen.size() >= 2);
  CHECK(outside_parallel == 0);
  CHECK(seen.front().begin == range.begin);
  CHECK(seen.back().end == range.end);
  for (size_t k = 1; k < seen.size(); ++k) REQUIRE(seen[k].begin == seen[k - 1].end);
  size_t wrong = 0, written_outside = 0;  // counted: a REQUIRE per element is slow under ASan
  for (size_t j = 0; j < n; ++j) {
    if (j < range.begin || j >= range.end) {
      written_outside += out[j] != 0xdead;
      continue;
    }
    float acc = 0.0f;
    for (size_t i = 0; i < N; ++i) acc += m.weights[i] * ref_bf16_to_f32(in[i][j]);
    wrong += out[j] != ref_f32_to_bf16(acc);
  }
  CHECK(written_outside == 0);
  CHECK(wrong == 0);

  // The task-vector methods whose chunks also go to the threads (task
  // arithmetic, TIES without rescale, SCE): the same bytes on
  // 3 threads as on 1, where a chunk runs whole, and the sink inside the
  // parallel region.
  s.base = in[0].data();
  s.models = {in[1].data(), in[2].data()};
  const auto run_on = [&](const TensorMethod& tm, int threads, size_t* outside) {
    omp_set_num_threads(threads);
    std::vector<uint16_t> o(n, 0xdead);
    merge_tensor(s, tm, range, DType::BF16, uint64_t{1} << 20, MPI_COMM_SELF,
                 [&](ElementRange c, std::span<const std::byte> b) {
                   std::memcpy(o.data() + c.begin, b.data(), b.size());
                   const std::lock_guard lock(mu);
                   *outside += omp_in_parallel() ? 0 : 1;
                 });
    return o;
  };
  for (MergeMethod mm : {MergeMethod::TaskArithmetic, MergeMethod::Ties, MergeMethod::Sce}) {
    TensorMethod tm;
    tm.method = mm;
    tm.weights = {0.6f, 0.9f};
    tm.density = {0.5, 0.7};
    tm.gamma = {0.01, 0.02};
    tm.select_topk = 1.0;  // its own top-k pass is most of the case's time under ASan
    tm.rescale = false;
    INFO("method " << static_cast<int>(mm));
    size_t outside_one = 0, outside_three = 0;
    const auto one = run_on(tm, 1, &outside_one);
    const auto three = run_on(tm, 3, &outside_three);
    CHECK(outside_three == 0);
    CHECK(outside_one > 0);
    REQUIRE(one == three);
  }
  omp_set_num_threads(3);
  s.base = nullptr;
  s.models.clear();
  for (auto& v : in) s.models.push_back(v.data());

  // A sink that fails: its error comes out of merge_tensor, once.
  size_t calls = 0;
  REQUIRE_THROWS_WITH(merge_tensor(s, m, range, DType::BF16, uint64_t{1} << 20, MPI_COMM_SELF,
                                   [&](ElementRange, std::span<const std::byte>) {
                                     const std::lock_guard lock(mu);
                                     if (++calls == 2) throw std::runtime_error("disk full");
                                   }),
                      "disk full");
  omp_set_num_threads(threads_before);
}

TEST_CASE("fused_weighted_sum f16 and f32 inputs and outputs", "[merge][kernels]") {
  std::mt19937 rng(11);
  const size_t n = 4099;
  std::uniform_int_distribution<int> bits(0, 0x7bff);  // finite f16, incl. subnormals
  std::vector<uint16_t> a(n), b(n);
  for (size_t j = 0; j < n; ++j) {
    a[j] = static_cast<uint16_t>(bits(rng) | (j % 3 == 0 ? 0x8000 : 0));
    b[j] = static_cast<uint16_t>(bits(rng) % 0x5000);
  }
  const std::vector<const void*> ptrs = {a.data(), b.data()};
  const std::vector<float> w = {0.5f, 0.25f};
  std::vector<float> out32(n);
  fused_weighted_sum(ptrs, DType::F16, w, out32.data(), DType::F32, n);
  std::vector<uint16_t> out16(n);
  fused_weighted_sum(ptrs, DType::F16, w, out16.data(), DType::F16, n);
  for (size_t j = 0; j < n; ++j) {
    // Both products are exact (power-of-two weights), so fp32 holds the sum up to one rounding.
    const double ref = 0.5 * ref_f16_to_double(a[j]) + 0.25 * ref_f16_to_double(b[j]);
    REQUIRE(out32[j] == static_cast<float>(ref));
    // f16 output: the nearest f16 of the fp32 sum (a neighbour search).
    const double got = ref_f16_to_double(out16[j]);
    const double v = static_cast<double>(out32[j]);
    const double prev = ref_f16_to_double(static_cast<uint16_t>(out16[j] - 1));
    const double next = ref_f16_to_double(static_cast<uint16_t>(out16[j] + 1));
    if ((out16[j] & 0x7fff) != 0) REQUIRE(std::fabs(got - v) <= std::fabs(prev - v));
    if ((out16[j] & 0x7fff) < 0x7bff) REQUIRE(std::fabs(got - v) <= std::fabs(next - v));
  }
  std::vector<float> fa(n), fb(n), fo(n);
  for (size_t j = 0; j < n; ++j) {
    fa[j] = static_cast<float>(ref_f16_to_double(a[j]));
    fb[j] = static_cast<float>(j) * 0.001f;
  }
  const std::vector<const void*> fp = {fa.data(), fb.data()};
  fused_weighted_sum(fp, DType::F32, w, fo.data(), DType::F32, n);
  for (size_t j = 0; j < n; ++j) REQUIRE(fo[j] == 0.0f + 0.5f * fa[j] + 0.25f * fb[j]);
}

TEST_CASE("task_arithmetic within 1 bf16 ulp of a double reference", "[merge][kernels]") {
  std::mt19937 rng(3);
  const size_t n = 5000;
  auto base = random_bf16(n, rng, 0.05f);
  std::vector<std::vector<uint16_t>> models;
  for (int i = 0; i < 3; ++i) {
    auto d = random_bf16(n, rng, 0.01f);
    for (size_t j = 0; j < n; ++j)
      d[j] = ref_f32_to_bf16(ref_bf16_to_f32(base[j]) + ref_bf16_to_f32(d[j]));
    models.push_back(d);
  }
  TensorMethod m;
  m.method = MergeMethod::TaskArithmetic;
  m.weights = {0.5f, 0.3f, 0.7f};
  m.lambda = 0.8;
  for (bool normalize : {false, true}) {
    m.normalize = normalize;
    auto out = run_task(models, base, m);
    const double wsum = 1.5;
    for (size_t j = 0; j < n; ++j) {
      const double b = ref_bf16_to_f32(base[j]);
      double mix = 0;
      for (size_t i = 0; i < 3; ++i) mix += m.weights[i] * (ref_bf16_to_f32(models[i][j]) - b);
      if (normalize) mix /= wsum;
      const double ref = b + m.lambda * mix;
      REQUIRE(std::fabs(ref_bf16_to_f32(out[j]) - ref) <= bf16_ulp(ref));
    }
  }
}

TEST_CASE("ties: hand-worked selection and sign election", "[merge][kernels]") {
  // base = 0, so deltas are the values. density 0.5 of 4 elements: keep 2 each.
  // model A deltas: [ 4, -1,  2, -3]  -> keeps 4 and -3
  // model B deltas: [-2,  5, -1,  1]  -> keeps -2 and 5
  // model C deltas: [ 1, -1,  1, -6]  -> |1|,|-1|,|1| tie at 1: keeps -6 and the
  //                                      lowest-index tie (element 0: 1)
  // weights 1, 1, 2. Weighted kept: A [4,0,0,-3] B [-2,5,0,0] C [2,0,0,-12]
  // signs: e0 4-2+2=4>=0 -> +: 4+2 (w 1+2) -> 6/3 = 2
  //        e1 5 -> +: 5 (w 1) -> 5;  e2 all zero -> 0 (divisor 1)
  //        e3 -3-12 -> -: -15 (w 1+2) -> -5
  auto bf = [](std::vector<float> v) {
    std::vector<uint16_t> o;
    for (float f : v) o.push_back(ref_f32_to_bf16(f));
    return o;
  };
  const auto base = bf({0, 0, 0, 0});
  const std::vector<std::vector<uint16_t>> models = {bf({4, -1, 2, -3}), bf({-2, 5, -1, 1}),
                                                     bf({1, -1, 1, -6})};
  TensorMethod m;
  m.method = MergeMethod::Ties;
  m.weights = {1, 1, 2};
  m.density = {0.5, 0.5, 0.5};
  m.normalize = true;
  auto out = run_task(models, base, m);
  std::vector<float> got;
  for (auto h : out) got.push_back(ref_bf16_to_f32(h));
  CHECK(got == std::vector<float>{2, 5, 0, -5});
  // Without normalization: the sums themselves, times lambda 0.5.
  m.normalize = false;
  m.lambda = 0.5;
  out = run_task(models, base, m);
  got.clear();
  for (auto h : out) got.push_back(ref_bf16_to_f32(h));
  CHECK(got == std::vector<float>{3, 2.5f, 0, -7.5f});
  // rescale (mergekit's L1): each model's survivors times sum |delta| / sum
  // |kept delta|: A 10 / 7, B 9 / 7, C 9 / 7. Weighted kept: A [40, 0, 0, -30] / 7,
  // B [-18, 45, 0, 0] / 7, C [18, 0, 0, -108] / 7; normalized as above:
  // e0 (40 + 18) / 7 / 3, e1 45 / 7, e2 0, e3 (-30 - 108) / 7 / 3.
  m.normalize = true;
  m.lambda = 1.0;
  m.rescale = true;
  MergeTensorStats st;
  out = run_task(models, base, m, MPI_COMM_SELF, &st);
  REQUIRE(st.l1_scale.size() == 3);
  CHECK(st.l1_scale[0] == 10.0f / 7.0f);
  CHECK(st.l1_scale[1] == 9.0f / 7.0f);
  CHECK(st.l1_scale[2] == 9.0f / 7.0f);
  const std::vector<double> want = {58.0 / 21.0, 45.0 / 7.0, 0.0, -138.0 / 21.0};
  for (size_t j = 0; j < 4; ++j)
    CHECK(std::fabs(ref_bf16_to_f32(out[j]) - want[j]) <= bf16_ulp(want[j]));
  // density 1 is not pruned, so not rescaled either (mergekit returns it as it is).
  m.density = {1.0, 1.0, 1.0};
  out = run_task(models, base, m);
  m.rescale = false;
  CHECK(run_task(models, base, m) == out);
}

TEST_CASE("ties selection equals a stable sort-based top-k, ties included", "[merge][kernels]") {
  const size_t n = 3001;
  const TiedVectors v(5, n);
  const std::vector<double> density = {0.3, 0.77};
  const auto sel = ties_select(v.sources, density, {0, n}, 500, MPI_COMM_SELF);
  for (size_t i = 0; i < 2; ++i) {
    const auto idx = v.descending(i);
    const auto k = static_cast<size_t>(density[i] * n);
    std::vector<char> want(n, 0);
    for (size_t r = 0; r < k; ++r) want[idx[r]] = 1;
    size_t kept = 0;
    for (size_t j = 0; j < n; ++j) {
      const bool keep = v.selected(sel, i, j);
      REQUIRE(keep == static_cast<bool>(want[j]));
      kept += keep;
    }
    CHECK(kept == k);
  }
}

TEST_CASE("top-k selection equals a threshold-and-index reference, both digit widths",
          "[merge][kernels]") {
  // Keys that differ in every digit, a fifth of them tied on one value. The
  // reference: the k-th largest key by nth_element, every key above it, and
  // the keys equal to it in index order until k are taken.
  const size_t n = GENERATE(size_t{4099}, (size_t{1} << 20) + 5);
  TiedVectors v(11, n);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t j = 0; j < n; ++j) {
    v.x0[j] = v.base[j] + (j % 5 == 0 ? 0.5f : normal(rng));
    v.x1[j] = v.base[j] + (j % 5 == 0 ? 0.0625f : 0.0625f * normal(rng));
  }
  // Both thresholds fall inside the tied fifth: 49% of set 0's keys lie above
  // it (|N| > 0.5), 25% of set 1's (|N| > 1).
  const std::vector<uint64_t> keep = {n * 11 / 20, n * 7 / 20};
  const auto sel = topk_select(v.sources, keep, {0, n}, n / 5, MPI_COMM_SELF);
  for (size_t i = 0; i < 2; ++i) {
    std::vector<uint32_t> key(n);
    for (size_t j = 0; j < n; ++j) key[j] = v.key(i, j);
    auto sorted = key;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(keep[i] - 1),
                     sorted.end(), std::greater<>());
    const uint32_t thr = sorted[keep[i] - 1];
    CHECK(std::count(key.begin(), key.end(), thr) > 1);  // ties at the threshold
    const auto above = static_cast<uint64_t>(
        std::count_if(key.begin(), key.end(), [&](uint32_t x) { return x > thr; }));
    uint64_t ties = keep[i] - above;
    size_t kept = 0;
    for (size_t j = 0; j < n; ++j) {
      bool want = key[j] > thr;
      if (key[j] == thr && ties > 0) {  // the ties, in index order, until k
        want = true;
        --ties;
      }
      REQUIRE(v.selected(sel, i, j) == want);
      kept += want;
    }
    CHECK(kept == keep[i]);
    CHECK(ties == 0);
    CHECK(sel.thr_bits[i] == thr);
  }
}

TEST_CASE("breadcrumbs keeps the band of a stable sort, ties included", "[merge][kernels]") {
  // mergekit's counts: target = floor(density N), n_top = floor(gamma N),
  // n_bot = N - target - n_top (moved into n_top when negative).
  CHECK(breadcrumbs_counts(1000, 0.9, 0.01).n_bot == 90);
  CHECK(breadcrumbs_counts(1000, 0.9, 0.01).n_top == 10);
  CHECK(breadcrumbs_counts(1000, 0.5, 0.7).n_bot == 0);
  CHECK(breadcrumbs_counts(1000, 0.5, 0.7).n_top == 500);
  CHECK(breadcrumbs_counts(1000, 1.0, 0.3).n_top == 0);
  CHECK(breadcrumbs_counts(1000, 1.0, 0.3).n_bot == 0);
  CHECK(breadcrumbs_counts(1000, 0.3, 0.0).n_bot == 700);
  const size_t n = 2999;
  const TiedVectors v(9, n);
  for (const auto& [density, gamma] : std::vector<std::pair<double, double>>{
           {0.9, 0.01}, {0.4, 0.2}, {0.5, 0.7}, {0.3, 0.0}, {0.0, 0.0}, {1.0, 0.5}}) {
    INFO("density " << density << " gamma " << gamma);
    std::vector<uint64_t> keep(2), top(2);
    const OutlierCounts c = breadcrumbs_counts(n, density, gamma);
    keep[0] = keep[1] = n - c.n_bot;
    top[0] = top[1] = c.n_top;
    const auto band = topk_select(v.sources, keep, {0, n}, 700, MPI_COMM_SELF);
    const auto outl = topk_select(v.sources, top, {0, n}, 700, MPI_COMM_SELF);
    for (size_t i = 0; i < 2; ++i) {
      // The band is ranks [n_top, n - n_bot) of the descending order.
      const auto idx = v.descending(i);
      std::vector<char> want(n, 0);
      for (size_t r = c.n_top; r < n - c.n_bot; ++r) want[idx[r]] = 1;
      for (size_t j = 0; j < n; ++j)
        REQUIRE((v.selected(band, i, j) && !v.selected(outl, i, j)) == static_cast<bool>(want[j]));
    }
  }
}

TEST_CASE("nearswap against its formula, special cases included", "[merge][kernels]") {
  // w = t / |v0 - v1| (1 when NaN or Inf), clamped to [0, 1]; w v1 + (1 - w) v0.
  const std::vector<float> v0 = {1.0f, 1.0f, 0.0f, 2.0f, -3.0f, INFINITY, 5.0f};
  const std::vector<float> v1 = {1.5f, 1.0f, 0.01f, -2.0f, -3.5f, 1.0f, INFINITY};
  std::vector<float> out(v0.size());
  fused_nearswap(v0.data(), v1.data(), DType::F32, 0.1f, out.data(), DType::F32, v0.size());
  auto ref = [](float a, float b, float t) {
    volatile float d = std::fabs(a - b);
    volatile float w = t / d;
    float ww = std::isfinite(w) ? std::clamp(static_cast<float>(w), 0.0f, 1.0f) : 1.0f;
    volatile float p = ww * b;
    volatile float q = (1.0f - ww) * a;
    return p + q;
  };
  for (size_t j = 0; j < v0.size(); ++j) {
    INFO(j);
    const float want = ref(v0[j], v1[j], 0.1f);
    if (std::isnan(want))
      CHECK(std::isnan(out[j]));
    else
      CHECK(out[j] == want);
  }
  CHECK(out[1] == 1.0f);      // equal inputs: w = 1, the model's value
  CHECK(out[2] == 0.01f);     // |d| below t: the model's value
  CHECK(out[5] == INFINITY);  // w = t / Inf = 0: the base
}

TEST_CASE("passthrough: a copy, or x * scale rounded, signed zeros and NaN included",
          "[merge][kernels]") {
  std::mt19937 rng(9);
  std::vector<uint16_t> x = random_bf16(3001, rng);
  x[0] = 0x8000;  // -0
  x[1] = 0x7f80;  // +Inf
  x[2] = 0x7fa1;  // a signalling NaN with a payload
  x[3] = 0x0001;  // the smallest subnormal
  const std::vector<uint16_t> unused(x.size());
  TensorMethod m;
  m.method = MergeMethod::Passthrough;
  // No scale, same dtype: the bytes as they are, NaN payload included.
  CHECK(run_task({x}, unused, m) == x);
  for (float scale : {0.3f, -2.0f, 1.0f}) {
    INFO("scale " << scale);
    m.weights = {scale};
    const auto out = run_task({x}, unused, m);
    for (size_t j = 0; j < x.size(); ++j) {
      const float want = ref_bf16_to_f32(x[j]) * scale;
      if (std::isnan(want))
        CHECK(out[j] == 0x7fc0);  // the canonical quiet NaN
      else
        CHECK(out[j] == ref_f32_to_bf16(want));
    }
    CHECK(out[0] == (scale < 0 ? 0x0000 : 0x8000));  // -0 * scale keeps its sign rule
  }
  // A dtype change without a scale: the exact conversion (fp32 -> bf16, RNE).
  const std::vector<float> f = {-0.0f, 1.0f + 0x1p-8f, 1.0f + 0x3p-8f, -3.14159f, 1e-40f};
  std::vector<uint16_t> o(f.size());
  fused_scale(f.data(), DType::F32, 1.0f, o.data(), DType::BF16, f.size());
  for (size_t j = 0; j < f.size(); ++j) CHECK(o[j] == ref_f32_to_bf16(f[j]));
  CHECK(o[0] == 0x8000);
}

TEST_CASE("dare: keep rate and rescale", "[merge][kernels]") {
  const size_t n = 200000;
  std::vector<uint16_t> base(n, ref_f32_to_bf16(0.0f)), x(n, ref_f32_to_bf16(1.0f));
  TensorMethod m;
  m.method = MergeMethod::DareLinear;
  m.weights = {1.0f};
  m.density = {0.3};
  m.seed = 42;
  m.rescale = true;
  auto out = run_task({x}, base, m);
  size_t kept = 0;
  for (auto h : out) kept += h != 0;
  const double p = 0.3, sd = std::sqrt(n * p * (1 - p));
  CHECK(std::fabs(static_cast<double>(kept) - n * p) < 5 * sd);
  // mergekit's rescale (rescaled_masked_tensor, L1): survivors times
  // sum |delta| / sum |kept delta| = n / kept here, in fp32, so the task
  // vector keeps its L1 norm exactly (not 1 / density, its expectation).
  const uint16_t survivor = ref_f32_to_bf16(static_cast<float>(n) / static_cast<float>(kept));
  for (auto h : out) REQUIRE((h == survivor || h == 0));
  // Same seed, same mask; another seed, another mask (about half differ).
  CHECK(run_task({x}, base, m) == out);
  m.seed = 43;
  auto other = run_task({x}, base, m);
  size_t differ = 0;
  for (size_t j = 0; j < n; ++j) differ += (other[j] != 0) != (out[j] != 0);
  CHECK(std::fabs(static_cast<double>(differ) - n * 2 * p * (1 - p)) <
        5 * std::sqrt(n * 0.42 * 0.58));
  // No rescale: survivors keep their value.
  m.rescale = false;
  for (auto h : run_task({x}, base, m)) REQUIRE((h == ref_f32_to_bf16(1.0f) || h == 0));
  // Independent masks per model: two identical models with density 0.5 agree
  // on about half the entries, not all.
  m.density = {0.5, 0.5};
  m.weights = {1.0f, 2.0f};
  auto two = run_task({x, x}, base, m);
  size_t both = 0;
  for (auto h : two) both += h == ref_f32_to_bf16(3.0f);  // 1 + 2
  CHECK(std::fabs(static_cast<double>(both) - n * 0.25) < 5 * std::sqrt(n * 0.25 * 0.75));
}

TEST_CASE("model_stock and slerp against their formulas", "[merge][kernels]") {
  std::mt19937 rng(9);
  const size_t n = 2048;
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> base(n), a(n), b(n), c(n);
  for (size_t j = 0; j < n; ++j) {
    base[j] = dist(rng);
    const float shared = dist(rng);
    a[j] = base[j] + 0.1f * (shared + dist(rng));
    b[j] = base[j] + 0.1f * (shared + dist(rng));
    c[j] = base[j] + 0.1f * (shared + 0.5f * dist(rng));
  }
  auto run = [&](const TensorMethod& m, std::vector<const void*> models, MergeTensorStats* st) {
    TensorSources s;
    s.name = "w";
    s.numel = n;
    s.dtype = DType::F32;
    s.base = base.data();
    s.models = std::move(models);
    std::vector<float> out(n);
    *st = merge_tensor(s, m, {0, n}, DType::F32, 300, MPI_COMM_SELF,
                       [&](ElementRange r, std::span<const std::byte> by) {
                         std::memcpy(out.data() + r.begin, by.data(), by.size());
                       });
    return out;
  };
  auto dot = [&](const std::vector<float>& x, const std::vector<float>& y, bool delta) {
    double s = 0;
    for (size_t j = 0; j < n; ++j)
      s += (delta ? double(x[j]) - base[j] : double(x[j])) *
           (delta ? double(y[j]) - base[j] : double(y[j]));
    return s;
  };
  SECTION("model_stock") {
    TensorMethod m;
    m.method = MergeMethod::ModelStock;
    MergeTensorStats st;
    auto out = run(m, {a.data(), b.data(), c.data()}, &st);
    const std::vector<const std::vector<float>*> v = {&a, &b, &c};
    double cs = 0;
    for (int i = 0; i < 3; ++i)
      for (int j = i + 1; j < 3; ++j)
        cs +=
            dot(*v[i], *v[j], true) / std::sqrt(dot(*v[i], *v[i], true) * dot(*v[j], *v[j], true));
    cs /= 3;
    const double t = 3 * cs / (1 + 2 * cs);
    CHECK(st.model_stock_t == Approx(t).epsilon(1e-9));
    for (size_t j = 0; j < n; ++j) {
      const double ref = t * (double(a[j]) + b[j] + c[j]) / 3 + (1 - t) * base[j];
      REQUIRE(out[j] == Approx(ref).margin(1e-5));
    }
  }
  SECTION("slerp") {
    TensorMethod m;
    m.method = MergeMethod::Slerp;
    m.t = 0.3;
    MergeTensorStats st;
    auto out = run(m, {a.data()}, &st);
    const double cosv = dot(base, a, false) / std::sqrt(dot(base, base, false) * dot(a, a, false));
    CHECK(st.slerp_dot == Approx(cosv).epsilon(1e-9));
    REQUIRE(std::fabs(cosv) < 0.9995);
    const double th = std::acos(cosv);
    const double s0 = std::sin((1 - 0.3) * th) / std::sin(th),
                 s1 = std::sin(0.3 * th) / std::sin(th);
    for (size_t j = 0; j < n; ++j) REQUIRE(out[j] == Approx(s0 * base[j] + s1 * a[j]).margin(1e-5));
    // Colinear vectors fall back to lerp.
    std::vector<float> twice(n);
    for (size_t j = 0; j < n; ++j) twice[j] = 2 * base[j];
    out = run(m, {twice.data()}, &st);
    CHECK(st.slerp_dot == Approx(1.0));
    for (size_t j = 0; j < n; ++j)
      REQUIRE(out[j] == Approx(0.7 * base[j] + 0.3 * twice[j]).margin(1e-5));
  }
}

namespace {

// One f32 tensor through merge_tensor on this rank alone, with its stats.
std::vector<float> run_f32(const TensorSources& s, const TensorMethod& m, uint64_t chunk,
                           MergeTensorStats* st = nullptr) {
  std::vector<float> out(s.numel);
  const auto r = merge_tensor(s, m, {0, s.numel}, DType::F32, chunk, MPI_COMM_SELF,
                              [&](ElementRange c, std::span<const std::byte> b) {
                                std::memcpy(out.data() + c.begin, b.data(), b.size());
                              });
  if (st) *st = r;
  return out;
}

}  // namespace

TEST_CASE("exact sums: order-free, rounded once", "[merge][kernels]") {
  // |x| sums: a tie between doubles goes to even; anything below breaks it.
  ExactSum a(1);
  a.add(1.0f);
  a.add(std::ldexp(1.0f, -53));
  CHECK(a.value() == 1.0);
  a.add(-std::ldexp(1.0f, -80));  // |x|: the sign does not matter
  CHECK(a.value() == 1.0 + std::ldexp(1.0, -52));
  ExactSum tiny(1);
  for (int k = 0; k < 1000; ++k) tiny.add(std::ldexp(1.0f, -149));  // subnormal
  CHECK(tiny.value() == 1000 * std::ldexp(1.0, -149));
  ExactSum sq(2);
  sq.add(std::ldexp(1.0f, -100));
  sq.add(3.0f);
  sq.add(std::numeric_limits<float>::max());
  const double fm = std::numeric_limits<float>::max();
  CHECK(sq.value() == fm * fm);  // 9 + 2^-200 vanish below its last bit
  ExactSum none(2);
  CHECK(none.value() == 0.0);
  ExactSum bad(1);
  bad.add(INFINITY);
  CHECK(std::isinf(bad.value()));
  bad.add(NAN);
  CHECK(std::isnan(bad.value()));
  // Any split gives the same total; it equals a sum in long double within its rounding.
  std::mt19937 rng(5);
  std::lognormal_distribution<float> ln(0.0f, 6.0f);
  std::vector<float> v(5000);
  for (auto& x : v) x = ln(rng);
  ExactSum whole(1), part1(1), part2(1);
  for (size_t j = 0; j < v.size(); ++j) {
    whole.add(v[j]);
    (j % 3 == 0 ? part1 : part2).add(v[v.size() - 1 - j]);
  }
  ExactSum merged = part1;
  merged.allreduce(MPI_COMM_SELF);  // one rank: unchanged
  long double ref = 0;
  for (float x : v) ref += x;
  CHECK(whole.value() == Approx(static_cast<double>(ref)).epsilon(1e-15));
  CHECK(merged.value() == part1.value());
  CHECK(whole.value() > part2.value());
}

TEST_CASE("exact sums: many values at once, as one at a time", "[merge][kernels]") {
  // Integers below 2^20: the exact total of 200,000 of them is a double. The
  // span crosses the 64-bit partial bins' flushes several times.
  std::mt19937 rng(11);
  std::vector<float> v(200000);
  uint64_t total = 0;
  for (auto& x : v) {
    const uint32_t k = rng() & 0xfffffu;
    x = static_cast<float>(k) * ((rng() & 1u) != 0 ? -1.0f : 1.0f);
    total += k;
  }
  ExactSum many(1), one(1);
  many.add(std::span<const float>(v));
  for (float x : v) one.add(x);
  CHECK(many.value() == static_cast<double>(total));
  CHECK(one.value() == static_cast<double>(total));
  // Squares of the largest significand, about 2^48 each: 300,000 of them pass
  // 2^66, which four 64-bit partial bins would not hold without flushes.
  const float big = 16777215.0f;  // 2^24 - 1
  const std::vector<float> bigs(300000, big);
  ExactSum sq_many(2), sq_one(2);
  sq_many.add(std::span<const float>(bigs));
  for (float x : bigs) sq_one.add(x);
  __extension__ const unsigned __int128 want =
      static_cast<unsigned __int128>(300000) * (uint64_t{16777215} * uint64_t{16777215});
  CHECK(sq_many.value() == static_cast<double>(want));
  CHECK(sq_one.value() == sq_many.value());
  // Subnormals, Inf and NaN as one at a time: counted, not summed.
  std::vector<float> odd(1000, std::ldexp(1.0f, -149));
  ExactSum sub(1);
  sub.add(std::span<const float>(odd));
  CHECK(sub.value() == 1000 * std::ldexp(1.0, -149));
  odd[500] = -INFINITY;
  ExactSum inf(1);
  inf.add(std::span<const float>(odd));
  CHECK(std::isinf(inf.value()));
  odd[700] = NAN;
  ExactSum nan(2);
  nan.add(std::span<const float>(odd));
  CHECK(std::isnan(nan.value()));
  // Magnitudes over 60 binades, in blocks that mix both ways of summing.
  std::lognormal_distribution<float> ln(0.0f, 8.0f);
  std::vector<float> wide(3000);
  for (size_t j = 0; j < wide.size(); ++j) wide[j] = j % 512 < 256 ? ln(rng) : 1.0f + (j % 7);
  ExactSum wide_many(1), wide_one(1);
  wide_many.add(std::span<const float>(wide));
  for (float x : wide) wide_one.add(x);
  CHECK(wide_many.value() == wide_one.value());
  long double wide_ref = 0;
  for (float x : wide) wide_ref += x;
  CHECK(wide_many.value() == Approx(static_cast<double>(wide_ref)).epsilon(1e-15));
  ExactSum empty(1);
  empty.add(std::span<const float>());
  CHECK(empty.value() == 0.0);
}

TEST_CASE("della ranks: ascending |delta| within rows, ties by index", "[merge][kernels]") {
  const size_t rows = 7, L = 301, n = rows * L;
  const TiedVectors v(21, n);  // many equal magnitudes
  for (size_t i = 0; i < 2; ++i) {
    // Reference: per row, a stable sort by descending magnitude gives the lower
    // index first among equals, i.e. the higher rank.
    std::vector<uint32_t> want(n);
    for (size_t r = 0; r < rows; ++r) {
      std::vector<size_t> idx(L);
      std::iota(idx.begin(), idx.end(), r * L);
      std::stable_sort(idx.begin(), idx.end(),
                       [&](size_t a, size_t b) { return v.magnitude(i, a) > v.magnitude(i, b); });
      for (size_t q = 0; q < L; ++q) want[idx[q]] = static_cast<uint32_t>(L - 1 - q);
    }
    // Ranges that start and end inside rows.
    for (const ElementRange c :
         {ElementRange{0, n}, ElementRange{150, 1234}, ElementRange{602, 603}}) {
      std::vector<uint32_t> got(c.size());
      della_ranks(v.sources, i, c, L, got.data());
      for (uint64_t j = c.begin; j < c.end; ++j) REQUIRE(got[j - c.begin] == want[j]);
    }
  }
}

TEST_CASE("della ranks: every digit of the magnitude, special values, row lengths",
          "[merge][kernels]") {
  // Deltas whose magnitudes spread over all exponents (each radix digit
  // varies), with +-0, subnormals, Inf and one NaN; rows of 1, 2, 3 and more
  // elements, and a row where every magnitude is equal. Reference: a stable
  // sort by descending magnitude, NaN above Inf, then the lower index first.
  std::mt19937 rng(5);
  std::uniform_int_distribution<uint32_t> bits(0, 0x7f7fffffu);  // finite magnitudes
  for (const size_t L : {size_t{1}, size_t{2}, size_t{3}, size_t{64}, size_t{2049}}) {
    const size_t rows = 5, n = rows * L;
    std::vector<float> base(n, 0.0f), x(n);
    for (size_t j = 0; j < n; ++j) {
      float d = std::bit_cast<float>(bits(rng) >> (rng() % 24));  // small ones and subnormals too
      if (rng() % 2 == 0) d = -d;
      switch (rng() % 16) {
        case 0:
          d = 0.0f;
          break;
        case 1:
          d = -0.0f;
          break;
        case 2:
          d = std::numeric_limits<float>::infinity();
          break;
        case 3:
          d = -std::numeric_limits<float>::infinity();
          break;
        case 4:
          d = std::numeric_limits<float>::quiet_NaN();
          break;
        case 5:
          d = 1.5f;
          break;
        default:
          break;
      }
      if (j / L == 3) d = (j % 2 == 0) ? 0.75f : -0.75f;  // one row of equal magnitudes
      x[j] = d;                                           // base 0: the delta is x itself
    }
    TensorSources s;
    s.name = "t";
    s.numel = n;
    s.dtype = DType::F32;
    s.base = base.data();
    s.models = {x.data()};
    const auto above = [&](size_t a, size_t b) {  // a ranks above b by magnitude
      const float ma = std::fabs(x[a]), mb = std::fabs(x[b]);
      if (std::isnan(ma) || std::isnan(mb)) return std::isnan(ma) && !std::isnan(mb);
      return ma > mb;
    };
    std::vector<uint32_t> want(n);
    for (size_t r = 0; r < rows; ++r) {
      std::vector<size_t> idx(L);
      std::iota(idx.begin(), idx.end(), r * L);
      std::stable_sort(idx.begin(), idx.end(), above);
      for (size_t q = 0; q < L; ++q) want[idx[q]] = static_cast<uint32_t>(L - 1 - q);
    }
    std::vector<uint32_t> got(n);
    della_ranks(s, 0, {0, n}, L, got.data());
    for (size_t j = 0; j < n; ++j) {
      INFO("L = " << L << ", element " << j << ", delta " << x[j]);
      REQUIRE(got[j] == want[j]);
    }
  }
}

TEST_CASE("della: keep rate per magnitude rank, L1 rescale", "[merge][kernels]") {
  // One task vector of distinct magnitudes, rows of L: della_linear with
  // weight 1 gives base + kept delta * scale, so the mask can be read back.
  const size_t L = 500, rows = 400, n = L * rows;
  std::mt19937 rng(77);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> base(n), x(n);
  for (size_t j = 0; j < n; ++j) {
    base[j] = g(rng);
    x[j] = base[j] + 0.5f * g(rng);
  }
  TensorSources s;
  s.name = "model.layers.4.mlp.down_proj.weight";
  s.numel = n;
  s.dtype = DType::F32;
  s.base = base.data();
  s.models = {x.data()};
  s.shape = {static_cast<int64_t>(rows), static_cast<int64_t>(L)};
  TensorMethod m;
  m.method = MergeMethod::DellaLinear;
  m.weights = {1.0f};
  m.density = {0.4};
  m.epsilon = {0.3};
  m.seed = 3;
  m.rescale = true;
  MergeTensorStats st;
  const auto out = run_f32(s, m, 7000, &st);  // chunks of 14 rows
  std::vector<uint32_t> rank(n);
  della_ranks(s, 0, {0, n}, L, rank.data());
  // Ten bands of rank: kept count against the sum of p = 0.1 + 0.6 rank / (L - 1).
  std::vector<double> expect(10), var(10), kept(10);
  double l1_all = 0, l1_kept = 0;
  for (size_t j = 0; j < n; ++j) {
    const float d = x[j] - base[j];
    REQUIRE(d != 0.0f);
    const bool k = out[j] != base[j];
    const double p = 0.1 + 0.6 * rank[j] / double(L - 1);
    const size_t band = rank[j] * 10 / L;
    expect[band] += p;
    var[band] += p * (1 - p);
    kept[band] += k;
    l1_all += std::fabs(d);
    if (k) l1_kept += std::fabs(d);
  }
  for (size_t b = 0; b < 10; ++b) {
    INFO("rank band " << b);
    CHECK(std::fabs(kept[b] - expect[b]) < 5 * std::sqrt(var[b]));
  }
  // The factor restores the L1 norm; every survivor carries it exactly.
  REQUIRE(st.l1_scale.size() == 1);
  const float scale = st.l1_scale[0];
  CHECK(scale == Approx(l1_all / l1_kept).epsilon(1e-6));
  CHECK(scale > 1.0f);  // below 1 / density: the large entries are kept more often
  CHECK(scale < 1 / 0.4f);
  for (size_t j = 0; j < n; ++j)
    if (out[j] != base[j]) REQUIRE(out[j] == ops::add(base[j], ops::mul(x[j] - base[j], scale)));
  // Same seed, same bytes whatever the chunking; another seed, another mask.
  CHECK(run_f32(s, m, 333) == out);
  m.seed = 4;
  CHECK(run_f32(s, m, 7000) != out);
  // No rescale: survivors unchanged. density 1: everything, unscaled; 0: nothing.
  m.rescale = false;
  const auto plain = run_f32(s, m, 7000);
  for (size_t j = 0; j < n; ++j) REQUIRE((plain[j] == base[j] || plain[j] == x[j]));
  m.rescale = true;
  m.density = {1.0};
  CHECK(run_f32(s, m, 7000) == x);
  m.density = {0.0};
  CHECK(run_f32(s, m, 7000) == base);
  // epsilon 0: a flat DARE-like probability, the density, rank or not.
  m.density = {0.25};
  m.epsilon = {0.0};
  m.rescale = false;
  const auto flat = run_f32(s, m, 7000);
  double k_low = 0, k_high = 0;
  for (size_t j = 0; j < n; ++j) (rank[j] < L / 2 ? k_low : k_high) += flat[j] != base[j];
  const double sd = std::sqrt(n / 2 * 0.25 * 0.75);
  CHECK(std::fabs(k_low - n / 2 * 0.25) < 5 * sd);
  CHECK(std::fabs(k_high - n / 2 * 0.25) < 5 * sd);
}

TEST_CASE("sce: variance top-k, mean-square weights, sign erase", "[merge][kernels]") {
  const size_t n = 3001;
  std::mt19937 rng(8);
  std::uniform_int_distribution<int> q(-4, 4);  // coarse: equal variances, zeros
  std::vector<float> base(n);
  std::vector<std::vector<float>> x(3, std::vector<float>(n));
  for (size_t j = 0; j < n; ++j) {
    base[j] = 0.5f * static_cast<float>(q(rng));
    for (size_t i = 0; i < 3; ++i)
      x[i][j] = base[j] + 0.25f * static_cast<float>(q(rng) * (int(i) + 1) / 2);
  }
  TensorSources s;
  s.name = "w";
  s.numel = n;
  s.dtype = DType::F32;
  s.base = base.data();
  for (auto& v : x) s.models.push_back(v.data());
  auto delta = [&](size_t i, size_t j) { return x[i][j] - base[j]; };
  auto var = [&](size_t j) {
    return ops::population_variance([&](int i) { return delta(static_cast<size_t>(i), j); }, 3);
  };
  for (double topk : {1.0, 0.4, 0.0}) {
    INFO("select_topk " << topk);
    TensorMethod m;
    m.method = MergeMethod::Sce;
    m.select_topk = topk;
    MergeTensorStats st;
    const auto out = run_f32(s, m, 700, &st);
    // Selection: the k largest variances, lowest index first among equals.
    std::vector<char> sel(n, 1);
    if (topk < 1) {
      size_t nonzero = 0;
      for (size_t j = 0; j < n; ++j) nonzero += var(j) != 0.0f;
      const auto k = static_cast<size_t>(static_cast<float>(nonzero) * static_cast<float>(topk));
      std::vector<size_t> idx(n);
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return var(a) > var(b); });
      std::fill(sel.begin(), sel.end(), 0);
      for (size_t r = 0; r < k; ++r) sel[idx[r]] = 1;
      CHECK(st.sce_selected == k);
    }
    // Weights: mean squares of the selected task vectors, normalized.
    std::vector<double> ms(3);
    for (size_t i = 0; i < 3; ++i) {
      for (size_t j = 0; j < n; ++j)
        if (sel[j]) ms[i] += double(delta(i, j)) * delta(i, j);
      ms[i] /= n;
    }
    const double total = ms[0] + ms[1] + ms[2];
    REQUIRE(st.sce_weights.size() == 3);
    for (size_t i = 0; i < 3; ++i)
      CHECK(st.sce_weights[i] == Approx(total < 1e-6 ? 1.0 / 3 : ms[i] / total).epsilon(1e-6));
    // Per element, with the weights as computed.
    const auto& w = st.sce_weights;
    for (size_t j = 0; j < n; ++j) {
      float d[3], sum = 0, mix = 0, div = 0;
      for (size_t i = 0; i < 3; ++i) {
        d[i] = sel[j] ? delta(i, j) : 0.0f;
        sum += d[i];
      }
      for (size_t i = 0; i < 3; ++i) {
        const bool agree = sum >= 0 ? d[i] > 0 : d[i] < 0;
        const float e = agree ? w[i] : 0.0f;
        mix = ops::add(mix, ops::mul(d[i], e));
        div += e;
      }
      REQUIRE(out[j] == ops::add(base[j], mix / std::max(div, 1e-6f)));
    }
    if (topk == 0.0) CHECK(out == base);
  }
}

TEST_CASE("fused_vector_merge: per-row and per-column weights, the fused sums' operations",
          "[merge][kernels]") {
  std::mt19937 rng(31);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t rows = 37, cols = 29, n = rows * cols, N = 3;
  std::vector<std::vector<float>> x(N, std::vector<float>(n));
  std::vector<float> base(n);
  for (auto& v : x)
    for (auto& f : v) f = dist(rng);
  for (auto& f : base) f = dist(rng);
  std::vector<const void*> ptrs;
  for (auto& v : x) ptrs.push_back(v.data());
  for (int by_column = 0; by_column < 2; ++by_column)
    for (int with_base = 0; with_base < 2; ++with_base) {
      INFO("by_column " << by_column << " base " << with_base);
      const size_t nvec = by_column ? cols : rows;
      std::vector<float> w(nvec * N);
      for (auto& f : w) f = dist(rng);
      // A chunk that starts and ends inside rows: elements [40, 1000).
      const size_t first = 40, len = 960;
      const size_t v0 = by_column ? 0 : first / cols;
      std::vector<float> out(len);
      std::vector<const void*> p(N);
      for (size_t i = 0; i < N; ++i) p[i] = x[i].data() + first;
      VectorMergeArgs a;
      a.inputs = p;
      a.base = with_base ? base.data() + first : nullptr;
      a.in_dtype = DType::F32;
      a.weights = std::span<const float>(w).subspan(v0 * N);
      a.segment = cols;
      a.by_column = by_column;
      a.first_vector = v0;
      a.first_index = first;
      a.out = out.data();
      a.out_dtype = DType::F32;
      a.n = len;
      fused_vector_merge(a);
      for (size_t k = 0; k < len; ++k) {
        const size_t g = first + k, v = by_column ? g % cols : g / cols;
        float acc = 0.0f;
        for (size_t i = 0; i < N; ++i) {
          const float xi = with_base ? x[i][g] - base[g] : x[i][g];
          acc = acc + w[v * N + i] * xi;
        }
        if (with_base) acc = base[g] + acc;
        REQUIRE(out[k] == acc);
      }
      // One vector over the whole tensor: the bytes of fused_weighted_sum / fused_task_merge.
      std::vector<float> one(w.begin(), w.begin() + N), whole(n), fused(n);
      a.inputs = ptrs;
      a.base = with_base ? base.data() : nullptr;
      a.weights = one;
      a.segment = n;
      a.by_column = false;
      a.first_vector = 0;
      a.first_index = 0;
      a.out = whole.data();
      a.n = n;
      fused_vector_merge(a);
      if (with_base) {
        TaskMergeArgs t;
        t.inputs = ptrs;
        t.base = base.data();
        t.in_dtype = DType::F32;
        t.weights = one;
        t.out = fused.data();
        t.out_dtype = DType::F32;
        t.n = n;
        fused_task_merge(t);
      } else {
        fused_weighted_sum(ptrs, DType::F32, one, fused.data(), DType::F32, n);
      }
      REQUIRE(std::memcmp(whole.data(), fused.data(), n * 4) == 0);
    }
  // Weights missing for a vector the chunk touches: refused.
  std::vector<float> out(10), w(N);
  std::vector<const void*> p(ptrs);
  VectorMergeArgs a;
  a.inputs = p;
  a.in_dtype = DType::F32;
  a.weights = w;
  a.segment = 4;
  a.out = out.data();
  a.out_dtype = DType::F32;
  a.n = 10;  // rows 0..2, weights for row 0 only
  CHECK_THROWS(fused_vector_merge(a));
}

namespace {

// mergekit's nuslerp, multislerp and karcher as written (on the vectors, in
// double), for the tests below.
double dnorm(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}
double ddot(const std::vector<double>& x, const std::vector<double>& y) {
  double s = 0;
  for (size_t j = 0; j < x.size(); ++j) s += x[j] * y[j];
  return s;
}
std::vector<double> nuslerp_ref(double t, const std::vector<double>& v0,
                                const std::vector<double>& v1) {
  const double n0 = std::max(dnorm(v0), 1e-7), n1 = std::max(dnorm(v1), 1e-7);
  const double th = std::acos(std::clamp(ddot(v0, v1) / (n0 * n1), -1.0, 1.0));
  std::vector<double> r(v0.size());
  for (size_t j = 0; j < r.size(); ++j)
    r[j] = std::fabs(std::sin(th)) < 1e-8
               ? (1 - t) * v0[j] + t * v1[j]
               : (std::sin((1 - t) * th) * v0[j] + std::sin(t * th) * v1[j]) / std::sin(th);
  return r;
}
std::vector<double> multislerp_ref(const std::vector<std::vector<double>>& x,
                                   const std::vector<double>& w, double eps) {
  const size_t n = x[0].size();
  std::vector<std::vector<double>> u;
  std::vector<double> norms, mean(n, 0.0);
  for (const auto& v : x) {
    norms.push_back(dnorm(v));
    u.emplace_back(v.size());
    for (size_t j = 0; j < n; ++j) u.back()[j] = v[j] / (norms.back() + eps);
  }
  for (size_t i = 0; i < x.size(); ++i)
    for (size_t j = 0; j < n; ++j) mean[j] += w[i] * u[i][j];
  const double mn = dnorm(mean);
  for (auto& m : mean) m /= mn;
  std::vector<double> tangent(n, 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = ddot(u[i], mean);
    for (size_t j = 0; j < n; ++j) tangent[j] += w[i] * (u[i][j] - d * mean[j]);
  }
  const double tn = dnorm(tangent) + eps;
  double avg = 0;
  for (size_t i = 0; i < x.size(); ++i) avg += norms[i] * w[i];
  std::vector<double> r(n);
  for (size_t j = 0; j < n; ++j)
    r[j] = (mean[j] * std::cos(tn) + tangent[j] * (std::sin(tn) / tn)) * avg;
  return r;
}
std::vector<double> karcher_ref(const std::vector<std::vector<double>>& x, int max_iter, double tol,
                                int* iters) {
  const size_t n = x[0].size(), N = x.size();
  const double alpha = 1.0 / static_cast<double>(N);
  std::vector<double> norms;
  std::vector<std::vector<double>> units;
  for (const auto& v : x) {
    norms.push_back(dnorm(v));
    units.emplace_back(n, 0.0);
    if (norms.back() > tol)
      for (size_t j = 0; j < n; ++j) units.back()[j] = v[j] / norms.back();
  }
  std::vector<size_t> valid;
  for (size_t i = 0; i < N; ++i)
    if (norms[i] > tol) valid.push_back(i);
  *iters = 0;
  if (valid.empty()) return std::vector<double>(n, 0.0);
  const double a = alpha / (alpha * static_cast<double>(valid.size()));
  std::vector<double> u(n, 0.0);
  for (size_t i : valid)
    for (size_t j = 0; j < n; ++j) u[j] += a * units[i][j];
  const double nu = dnorm(u);
  if (nu < tol)
    u = units[valid[0]];
  else
    for (auto& v : u) v /= nu;
  for (int it = 0; it < max_iter; ++it) {
    std::vector<double> T(n, 0.0);
    for (size_t i : valid) {
      const double d = std::clamp(ddot(u, units[i]), -1.0, 1.0);
      const double th = std::acos(d);
      if (th < tol) continue;
      for (size_t j = 0; j < n; ++j) T[j] += a * (th / std::sin(th)) * (units[i][j] - d * u[j]);
    }
    const double nt = dnorm(T);
    if (nt < tol) break;
    for (size_t j = 0; j < n; ++j) u[j] = std::cos(nt) * u[j] + std::sin(nt) * (T[j] / nt);
    const double un = dnorm(u);
    if (un > tol)
      for (auto& v : u) v /= un;
    ++*iters;
  }
  double s = 0;
  for (size_t i = 0; i < N; ++i) s += alpha * norms[i];
  for (auto& v : u) v *= s;
  return u;
}

struct SphereRun {
  std::vector<float> out;
  MergeTensorStats stats;
};
SphereRun run_sphere(const TensorMethod& m, const float* base, std::vector<const float*> models,
                     size_t n, std::vector<int64_t> shape = {}) {
  TensorSources s;
  s.name = "w";
  s.numel = n;
  s.dtype = DType::F32;
  s.base = base;
  for (const float* p : models) s.models.push_back(p);
  s.shape = std::move(shape);
  SphereRun r;
  r.out.resize(n);
  r.stats = merge_tensor(s, m, {0, n}, DType::F32, 300, MPI_COMM_SELF,
                         [&](ElementRange c, std::span<const std::byte> by) {
                           std::memcpy(r.out.data() + c.begin, by.data(), by.size());
                         });
  return r;
}

std::vector<double> widen(const float* p, size_t n, const float* minus = nullptr) {
  std::vector<double> v(n);
  for (size_t j = 0; j < n; ++j) v[j] = minus ? double(p[j] - minus[j]) : double(p[j]);
  return v;
}

// |got - ref| within a few fp32 roundings of the final sum's terms.
void check_close(const std::vector<float>& got, const std::vector<double>& ref, double scale) {
  for (size_t j = 0; j < got.size(); ++j) REQUIRE(std::fabs(got[j] - ref[j]) <= 1e-6 * scale);
}

}  // namespace

TEST_CASE("nuslerp, multislerp and karcher against mergekit's algorithms as written",
          "[merge][kernels]") {
  std::mt19937 rng(12);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t R = 24, C = 50, n = R * C;
  std::vector<float> base(n), a(n), b(n), c(n);
  for (size_t j = 0; j < n; ++j) {
    base[j] = dist(rng);
    const float shared = dist(rng);
    a[j] = base[j] + 0.1f * (shared + dist(rng));
    b[j] = base[j] + 0.1f * (shared + dist(rng));
    c[j] = base[j] + 0.1f * (shared + 0.5f * dist(rng));
  }
  // Row 3: both models equal the base (zero task vectors); row 5: b's task
  // vector is twice a's (colinear: lerp); column 7 likewise.
  for (size_t k = 0; k < C; ++k) a[3 * C + k] = b[3 * C + k] = base[3 * C + k];
  for (size_t k = 0; k < C; ++k)
    b[5 * C + k] = base[5 * C + k] + 2 * (a[5 * C + k] - base[5 * C + k]);
  for (size_t r = 0; r < R; ++r)
    if (r != 3 && r != 5) b[r * C + 7] = base[r * C + 7] + 2 * (a[r * C + 7] - base[r * C + 7]);
  SECTION("nuslerp: the whole tensor, with and without a base") {
    TensorMethod m;
    m.method = MergeMethod::Nuslerp;
    m.t = 0.3;
    auto r = run_sphere(m, nullptr, {a.data(), b.data()}, n);
    auto ref = nuslerp_ref(0.3, widen(a.data(), n), widen(b.data(), n));
    check_close(r.out, ref, 4.0);
    REQUIRE(r.stats.coefficients.size() == 2);
    r = run_sphere(m, base.data(), {a.data(), b.data()}, n);
    ref = nuslerp_ref(0.3, widen(a.data(), n, base.data()), widen(b.data(), n, base.data()));
    for (size_t j = 0; j < n; ++j) ref[j] += base[j];
    check_close(r.out, ref, 4.0);
  }
  SECTION("nuslerp per row and per column (row_wise)") {
    TensorMethod m;
    m.method = MergeMethod::Nuslerp;
    m.t = 0.65;
    m.flatten = false;
    for (int row_wise = 0; row_wise < 2; ++row_wise) {
      INFO("row_wise " << row_wise);
      m.row_wise = row_wise;
      const auto r = run_sphere(m, base.data(), {a.data(), b.data()}, n,
                                {static_cast<int64_t>(R), static_cast<int64_t>(C)});
      const size_t nvec = row_wise ? C : R, len = row_wise ? R : C;
      auto at = [&](size_t v, size_t k) { return row_wise ? k * C + v : v * C + k; };
      for (size_t v = 0; v < nvec; ++v) {
        std::vector<double> v0(len), v1(len);
        for (size_t k = 0; k < len; ++k) {
          v0[k] = double(a[at(v, k)] - base[at(v, k)]);
          v1[k] = double(b[at(v, k)] - base[at(v, k)]);
        }
        const auto ref = nuslerp_ref(0.65, v0, v1);
        for (size_t k = 0; k < len; ++k)
          REQUIRE(std::fabs(r.out[at(v, k)] - (base[at(v, k)] + ref[k])) <= 4e-6);
      }
      // The zero row is the base; the colinear vector is lerp.
      if (!row_wise)
        for (size_t k = 0; k < C; ++k) REQUIRE(r.out[3 * C + k] == base[3 * C + k]);
    }
    // A [1, n] tensor per row is the whole tensor: flatten's bytes.
    m.row_wise = false;
    const auto one_row = run_sphere(m, base.data(), {a.data(), b.data()}, n, {1, int64_t(n)});
    m.flatten = true;
    CHECK(one_row.out == run_sphere(m, base.data(), {a.data(), b.data()}, n).out);
  }
  SECTION("multislerp") {
    TensorMethod m;
    m.method = MergeMethod::Multislerp;
    m.sphere_weights = {0.2, 0.5, 0.3};
    auto r = run_sphere(m, nullptr, {a.data(), b.data(), c.data()}, n);
    auto ref = multislerp_ref({widen(a.data(), n), widen(b.data(), n), widen(c.data(), n)},
                              m.sphere_weights, 1e-8);
    check_close(r.out, ref, 4.0);
    CHECK_FALSE(r.stats.multislerp_lerp);
    m.eps = 1e-3;
    r = run_sphere(m, base.data(), {a.data(), b.data(), c.data()}, n);
    ref = multislerp_ref({widen(a.data(), n, base.data()), widen(b.data(), n, base.data()),
                          widen(c.data(), n, base.data())},
                         m.sphere_weights, 1e-3);
    for (size_t j = 0; j < n; ++j) ref[j] += base[j];
    check_close(r.out, ref, 4.0);
    // One model: returned as it is, base or not.
    m.sphere_weights = {0.4};
    r = run_sphere(m, base.data(), {b.data()}, n);
    CHECK(r.out == b);
    // Antipodal pair with equal weights: linear interpolation (mergekit's
    // fallback for two inputs); three inputs that cancel: an error.
    std::vector<float> neg(n);
    for (size_t j = 0; j < n; ++j) neg[j] = -a[j];
    m.sphere_weights = {0.5, 0.5};
    r = run_sphere(m, nullptr, {a.data(), neg.data()}, n);
    CHECK(r.stats.multislerp_lerp);
    for (size_t j = 0; j < n; ++j) REQUIRE(r.out[j] == 0.5f * a[j] + 0.5f * neg[j]);
    m.sphere_weights = {0.25, 0.25, 0.5};
    CHECK_THROWS_AS(run_sphere(m, nullptr, {a.data(), a.data(), neg.data()}, n), InputError);
  }
  SECTION("karcher") {
    TensorMethod m;
    m.method = MergeMethod::Karcher;
    for (int max_iter : {0, 1, 10, 100}) {
      INFO("max_iter " << max_iter);
      m.max_iter = max_iter;
      auto r = run_sphere(m, base.data(), {a.data(), c.data()}, n);
      int iters = 0;
      const auto ref = karcher_ref({widen(base.data(), n), widen(a.data(), n), widen(c.data(), n)},
                                   max_iter, 1e-5, &iters);
      CHECK(r.stats.karcher_iterations == iters);
      check_close(r.out, ref, 4.0);
    }
    // Converges before 100 iterations; a zero input counts in the scale only.
    std::vector<float> zero(n, 0.0f);
    m.max_iter = 100;
    auto r = run_sphere(m, nullptr, {a.data(), zero.data(), b.data()}, n);
    CHECK(r.stats.karcher_iterations < 100);
    CHECK(r.stats.coefficients[1] == 0.0);
    int iters = 0;
    const auto ref = karcher_ref(
        {widen(a.data(), n), std::vector<double>(n, 0.0), widen(b.data(), n)}, 100, 1e-5, &iters);
    check_close(r.out, ref, 4.0);
    // Every input zero: zeros.
    r = run_sphere(m, nullptr, {zero.data(), zero.data()}, n);
    CHECK(r.out == zero);
  }
}

namespace {

// merge_tensor on fp32 inputs (base first) with chunks of `chunk` elements.
std::vector<float> run_f32(const TensorMethod& m, const std::vector<std::vector<float>>& in,
                           std::vector<int64_t> shape, uint64_t chunk,
                           MergeTensorStats* stats = nullptr) {
  TensorSources s;
  s.name = "w";
  s.numel = in[0].size();
  s.dtype = DType::F32;
  s.base = in[0].data();
  for (size_t i = 1; i < in.size(); ++i) s.models.push_back(in[i].data());
  s.shape = std::move(shape);
  std::vector<float> out(s.numel);
  const auto st = merge_tensor(s, m, {0, s.numel}, DType::F32, chunk, MPI_COMM_SELF,
                               [&](ElementRange c, std::span<const std::byte> by) {
                                 std::memcpy(out.data() + c.begin, by.data(), by.size());
                               });
  if (stats) *stats = st;
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), 4 * a.size()) == 0;
}

}  // namespace

TEST_CASE("ram and ramplus_tl against a naive loop, counts and lambdas", "[merge][kernels]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 0.05f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const size_t n = 1000, N = 3;
  std::vector<std::vector<float>> in(N + 1, std::vector<float>(n));
  for (auto& b : in[0]) b = g(rng);
  for (size_t i = 1; i <= N; ++i)
    for (size_t j = 0; j < n; ++j) {
      const float r = u(rng);
      in[i][j] = r < 0.4f ? in[0][j] : r < 0.55f ? in[0][j] + 1e-6f : in[0][j] + g(rng);
    }
  for (double eps : {1e-5, 1e-7}) {
    for (int plus = 0; plus < 2; ++plus) {
      TensorMethod m;
      m.method = plus ? MergeMethod::RamplusTl : MergeMethod::Ram;
      m.ram_epsilon = eps;
      m.ram_r = 0.5;
      m.ram_alpha = 0.7;
      const auto e = static_cast<float>(eps);
      // Naive: counts, lambdas, then each element in model order.
      std::vector<int> c(n, 0);
      for (size_t j = 0; j < n; ++j)
        for (size_t i = 1; i <= N; ++i) c[j] += std::fabs(in[i][j] - in[0][j]) > e;
      std::vector<float> lam(N, 1.0f);
      std::vector<uint64_t> sh(N, 0), un(N, 0);
      for (size_t i = 0; i < N; ++i) {
        for (size_t j = 0; j < n; ++j)
          if (std::fabs(in[i + 1][j] - in[0][j]) > e) ++(c[j] > 1 ? sh[i] : un[i]);
        const float rho = float(sh[i]) / std::max(float(un[i]), e);
        lam[i] = 1.0f + 0.5f * std::clamp(rho, 0.0f, 0.7f);
      }
      std::vector<float> want(n);
      for (size_t j = 0; j < n; ++j) {
        float acc = 0.0f;
        for (size_t i = 0; i < N; ++i) {
          const float d = in[i + 1][j] - in[0][j];
          if (!(std::fabs(d) > e)) {
            acc += 0.0f;
            continue;
          }
          acc += c[j] == 1 ? (plus ? d * lam[i] : d) : d / float(c[j]);
        }
        want[j] = in[0][j] + acc;
      }
      INFO("epsilon " << eps << " plus " << plus);
      MergeTensorStats st;
      CHECK(same_bits(run_f32(m, in, {}, 300, &st), want));
      CHECK(same_bits(run_f32(m, in, {}, 7, nullptr), want));
      if (plus) {
        CHECK(st.ram_shared == sh);
        CHECK(st.ram_unique == un);
        CHECK(st.ram_lambda == lam);
      }
    }
  }
}

TEST_CASE("arcee_fusion: row divergence, exact quartiles, threshold against a sort",
          "[merge][kernels]") {
  // Two-element rows: softmax is (s, 1 - s) with s = 1 / (1 + e^(b - a)).
  {
    const float x[2] = {0.5f, -0.25f}, b[2] = {0.0f, 0.0f};
    const double p0 = 1.0 / (1.0 + std::exp(-0.75)) + 1e-8, p1 = 1.0 - p0 + 2e-8;
    const double q0 = 0.5 + 1e-8, q1 = 0.5 + 1e-8;
    const double want = p0 * std::log(p0 / q0) + p1 * std::log(p1 / q1);
    CHECK(std::fabs(fusion_row_divergence(x, b, 2) - want) < 1e-15);
    CHECK(fusion_row_divergence(b, b, 2) == 0.0);
  }
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 0.05f);
  const size_t R = 24, C = 50, n = R * C;
  std::vector<std::vector<float>> in(2, std::vector<float>(n));
  for (auto& v : in[0]) v = g(rng);
  // Deltas of a few discrete sizes (ties in importance within rows), some zero.
  for (size_t j = 0; j < n; ++j)
    in[1][j] = in[0][j] + static_cast<float>(static_cast<int>(rng() % 7) - 3) / 64.0f;
  // Rows 5 and 11 move much further: their importances are the outliers kept.
  for (size_t r : {size_t{5}, size_t{11}})
    for (size_t k = 0; k < C; ++k) in[1][r * C + k] += 8.0f * (in[1][r * C + k] - in[0][r * C + k]);
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{int64_t(R), int64_t(C)}, std::vector<int64_t>{}}) {
    const size_t L = shape.empty() ? n : C;
    std::vector<float> kl(n / L);
    for (size_t r = 0; r < kl.size(); ++r)
      kl[r] = float(fusion_row_divergence(in[1].data() + r * L, in[0].data() + r * L, L));
    std::vector<float> imp(n), d(n);
    for (size_t j = 0; j < n; ++j) {
      d[j] = in[1][j] - in[0][j];
      imp[j] = std::fabs(d[j]) * kl[j / L];
    }
    std::vector<float> srt = imp;
    std::sort(srt.begin(), srt.end());
    const float q1 = srt[(n - 1) / 4], med = srt[(n - 1) / 2], q3 = srt[3 * (n - 1) / 4];
    const float thr = med + 1.5f * (q3 - q1);
    std::vector<float> want(n);
    size_t kept = 0;
    for (size_t j = 0; j < n; ++j) {
      want[j] = in[0][j] + d[j] * (imp[j] >= thr ? 1.0f : 0.0f);
      kept += imp[j] >= thr;
    }
    INFO("rows of " << L << ", kept " << kept);
    if (!shape.empty()) CHECK(kept > 0);  // one row: four importance levels, none an outlier
    CHECK(kept < n);
    TensorMethod m;
    m.method = MergeMethod::ArceeFusion;
    MergeTensorStats st;
    // Chunks of 300 (the divergences kept for the range) and 7 (fewer
    // elements per chunk than rows: recomputed per pass).
    CHECK(same_bits(run_f32(m, in, shape, 300, &st), want));
    CHECK(same_bits(run_f32(m, in, shape, 7, nullptr), want));
    CHECK(st.fusion_q1 == q1);
    CHECK(st.fusion_median == med);
    CHECK(st.fusion_q3 == q3);
    CHECK(st.fusion_threshold == thr);
  }
  // One entry: it is every quartile, and it is kept.
  std::vector<std::vector<float>> one = {{0.25f}, {0.5f}};
  TensorMethod m;
  m.method = MergeMethod::ArceeFusion;
  CHECK(run_f32(m, one, {}, 300)[0] == 0.5f);
}

TEST_CASE("cabs against a naive n:m loop: order, taken positions, ties, short blocks",
          "[merge][kernels]") {
  std::mt19937 rng(13);
  std::normal_distribution<float> g(0.0f, 0.05f);
  const size_t n = 1003, N = 3;  // 1003: a short last block for every m below
  std::vector<std::vector<float>> in(N + 1, std::vector<float>(n));
  for (auto& b : in[0]) b = g(rng);
  for (size_t i = 1; i <= N; ++i)
    for (size_t j = 0; j < n; ++j) {
      const auto r = rng() % 4;  // equal to the base, or deltas of a few sizes (ties)
      in[i][j] = r == 0 ? in[0][j] : in[0][j] + static_cast<float>(int(rng() % 9) - 4) / 32.0f;
    }
  struct Case {
    std::vector<size_t> order;
    std::vector<uint32_t> keep, block;
    std::vector<float> w;
  };
  for (const Case& c : {Case{{0, 1, 2}, {2, 3, 1}, {4, 8, 3}, {0.6f, 0.4f, 1.0f}},
                        Case{{2, 0, 1}, {8, 8, 8}, {32, 32, 32}, {1.0f, -0.5f, 2.0f}},
                        Case{{1, 2, 0}, {0, 5, 5}, {7, 5, 5}, {1.0f, 1.0f, 1.0f}},
                        Case{{0, 1, 2}, {70, 1, 100}, {100, 1, 100}, {0.3f, 0.3f, 0.3f}}}) {
    // Naive: per model in order, per block, a stable sort of the indices by
    // descending |candidate|; the first n kept.
    std::vector<float> acc(in[0]);
    std::vector<bool> taken(n, false);
    for (size_t k = 0; k < N; ++k) {
      const auto& x = in[c.order[k] + 1];
      std::vector<float> cand(n);
      for (size_t j = 0; j < n; ++j) cand[j] = taken[j] ? 0.0f : x[j] - in[0][j];
      std::vector<bool> sel(n, false);
      for (size_t q = 0; q < n; q += c.block[k]) {
        std::vector<size_t> idx;
        for (size_t j = q; j < std::min(n, q + c.block[k]); ++j) idx.push_back(j);
        std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
          return std::fabs(cand[a]) > std::fabs(cand[b]);
        });
        for (size_t t = 0; t < std::min<size_t>(c.keep[k], idx.size()); ++t) sel[idx[t]] = true;
      }
      for (size_t j = 0; j < n; ++j) {
        acc[j] = acc[j] + (sel[j] ? c.w[k] * cand[j] : 0.0f);
        taken[j] = taken[j] || sel[j];
      }
    }
    TensorMethod m;
    m.method = MergeMethod::Cabs;
    m.order = c.order;
    m.keep_n = c.keep;
    m.block_m = c.block;
    m.weights = c.w;
    INFO("blocks " << c.block[0] << ", " << c.block[1] << ", " << c.block[2]);
    CHECK(same_bits(run_f32(m, in, {}, 4096), acc));
    CHECK(same_bits(run_f32(m, in, {}, 50), acc));  // chunks that split superblocks
  }
}

TEST_CASE("lrp: magnitude top-k per model, weights over their sum, no election",
          "[merge][kernels]") {
  std::mt19937 rng(17);
  std::normal_distribution<float> g(0.0f, 0.05f);
  const size_t n = 800, N = 2;
  std::vector<std::vector<float>> in(N + 1, std::vector<float>(n));
  for (auto& b : in[0]) b = g(rng);
  for (size_t i = 1; i <= N; ++i)
    for (size_t j = 0; j < n; ++j)
      in[i][j] = in[0][j] + static_cast<float>(int(rng() % 9) - 4) / 64.0f;
  const std::vector<float> w = {1.0f / 3.0f, 2.0f / 3.0f};
  for (double density : {0.0, 0.3, 0.7, 1.0}) {
    std::vector<float> mixed(n, 0.0f);
    for (size_t i = 0; i < N; ++i) {
      std::vector<size_t> idx(n);
      for (size_t j = 0; j < n; ++j) idx[j] = j;
      std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
        return std::fabs(in[i + 1][a] - in[0][a]) > std::fabs(in[i + 1][b] - in[0][b]);
      });
      const auto k = static_cast<size_t>(density * static_cast<double>(n));
      std::vector<bool> keep(n, false);
      for (size_t t = 0; t < k; ++t) keep[idx[t]] = true;
      for (size_t j = 0; j < n; ++j)
        mixed[j] = mixed[j] + (keep[j] ? w[i] * (in[i + 1][j] - in[0][j]) : 0.0f);
    }
    std::vector<float> want(n);
    for (size_t j = 0; j < n; ++j) want[j] = in[0][j] + mixed[j];
    TensorMethod m;
    m.method = MergeMethod::Lrp;
    m.weights = w;
    m.density = {density, density};
    m.normalize = false;
    m.rescale = false;
    INFO("density " << density);
    CHECK(same_bits(run_f32(m, in, {}, 128), want));
  }
}
