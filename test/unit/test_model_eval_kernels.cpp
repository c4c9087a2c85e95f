// The evaluator's CPU kernels (src/kernels/eval_kernels_cpu.cpp), every copy
// this CPU runs (generic, avx2 where it has AVX2 and FMA, avx512 where it has
// x86-64-v4's AVX-512), against naive
// double-precision loops written from the definitions: matrix products with
// packed and stacked weights, causal GQA attention over a shared prefix and a
// sliding window (both the per-query path of decode steps and the blocked path
// of prefill), RMSNorm, SwiGLU and exp. The forward pass as a whole is held
// to Hugging Face's log-probabilities in test_eval_reference.cpp.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kintsugi/kernels/eval_kernels.hpp"

using namespace kintsugi;

namespace eval_kernels_test {

struct CopyGuard {
  std::string saved{eval_kernels_isa()};
  ~CopyGuard() { set_eval_kernels_isa(saved); }
};

std::vector<float> random_vec(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> g(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

// |got - want| within rel * (sum of |terms|) + abs: the bound of a float sum
// in any order. Catch2 hears only of failures (a CHECK per element made the
// sanitizer run of these tests three times slower); `what` builds the
// message then.
template <class What>
void check_close(double got, double want, double scale, double rel, What&& what) {
  if (std::abs(got - want) <= rel * scale + 1e-30) return;
  FAIL_CHECK(what() << ": got " << got << ", want " << want);
}

}  // namespace eval_kernels_test

using namespace eval_kernels_test;

TEST_CASE("eval kernels: matmul with packed and stacked weights equals the naive product",
          "[eval][kernels]") {
  CopyGuard guard;
  std::mt19937 rng(7);
  for (auto isa : eval_kernels_isas()) {
    REQUIRE(set_eval_kernels_isa(isa));
    CHECK(std::string(eval_kernels_isa()) == std::string(isa));
    // M across the row blocks (1..13, 50 > the 48-row chunk), N across panels
    // of 16 with tails, K odd and even, row strides wider than the data.
    for (size_t M : {1, 5, 6, 7, 13, 50})
      for (size_t K : {1, 7, 32, 70})
        for (size_t n1 : {3, 16, 21, 29}) {
          const size_t n2 = 11, N = n1 + n2, lda = K + 3, ldw = K + 1, ldc = N + 5;
          const auto A = random_vec(M * lda, rng), W1 = random_vec(n1 * ldw, rng),
                     W2 = random_vec(n2 * ldw, rng);
          const PackedWeight::Block blocks[] = {{W1.data(), n1, ldw}, {W2.data(), n2, ldw}};
          const PackedWeight P(K, blocks);
          REQUIRE(P.rows() == N);
          REQUIRE(P.cols() == K);
          for (bool acc : {false, true}) {
            auto C = random_vec(M * ldc, rng);
            const auto C0 = C;
            matmul(M, A.data(), lda, P, C.data(), ldc, acc);
            for (size_t i = 0; i < M; ++i)
              for (size_t j = 0; j < ldc; ++j) {
                if (j >= N) {  // outside the product: untouched
                  if (C[i * ldc + j] != C0[i * ldc + j]) FAIL_CHECK("column " << j << " changed");
                  continue;
                }
                const float* w = j < n1 ? W1.data() + j * ldw : W2.data() + (j - n1) * ldw;
                double want = acc ? C0[i * ldc + j] : 0.0, scale = std::abs(want);
                for (size_t k = 0; k < K; ++k) {
                  want += static_cast<double>(A[i * lda + k]) * w[k];
                  scale += std::abs(static_cast<double>(A[i * lda + k]) * w[k]);
                }
                check_close(C[i * ldc + j], want, scale, 1e-6, [&] {
                  return std::string(isa) + " M=" + std::to_string(M) + " K=" + std::to_string(K) +
                         " N=" + std::to_string(N);
                });
              }
          }
        }
  }
}

TEST_CASE("eval kernels: a row's product does not depend on the rows beside it",
          "[eval][kernels]") {
  // The evaluator's promise: a sequence scores the same alone or in a batch.
  CopyGuard guard;
  std::mt19937 rng(8);
  const size_t K = 96, N = 40;
  const auto W = random_vec(N * K, rng), A = random_vec(17 * K, rng);
  const PackedWeight P(W.data(), N, K, K);
  for (auto isa : eval_kernels_isas()) {
    REQUIRE(set_eval_kernels_isa(isa));
    std::vector<float> all(17 * N), one(N);
    matmul(17, A.data(), K, P, all.data(), N);
    for (size_t i = 0; i < 17; ++i) {
      matmul(1, A.data() + i * K, K, P, one.data(), N);
      CHECK(std::equal(one.begin(), one.end(), all.begin() + static_cast<std::ptrdiff_t>(i * N)));
    }
  }
}

TEST_CASE("eval kernels: a slice of the columns has the bits of the whole product",
          "[eval][kernels]") {
  // The last layer computes k, v for every token and q for the scored rows
  // only, as column slices of the stacked weight.
  CopyGuard guard;
  std::mt19937 rng(12);
  const size_t K = 80, N = 85, M = 13;  // a partial last panel
  const auto W = random_vec(N * K, rng), A = random_vec(M * K, rng);
  const PackedWeight P(W.data(), N, K, K);
  for (auto isa : eval_kernels_isas()) {
    REQUIRE(set_eval_kernels_isa(isa));
    std::vector<float> all(M * N);
    matmul(M, A.data(), K, P, all.data(), N);
    const size_t slices[][2] = {{0, 85}, {0, 16}, {16, 69}, {32, 53}, {48, 5}, {80, 5}, {64, 21}};
    for (const auto& sl : slices) {
      const size_t c0 = sl[0], n = sl[1], ldc = n + 3;
      std::vector<float> part(M * ldc, -1.0f);
      matmul_columns(M, A.data(), K, P, c0, n, part.data(), ldc);
      for (size_t i = 0; i < M; ++i)
        for (size_t j = 0; j < n; ++j)
          REQUIRE(std::memcmp(&part[i * ldc + j], &all[i * N + c0 + j], 4) == 0);
      for (size_t i = 0; i < M; ++i) REQUIRE(part[i * ldc + n] == -1.0f);  // past the slice
    }
    std::vector<float> bad(16);
    CHECK_THROWS(matmul_columns(1, A.data(), K, P, 8, 1, bad.data(), 1));   // not on a panel
    CHECK_THROWS(matmul_columns(1, A.data(), K, P, 80, 6, bad.data(), 6));  // past the weight
  }
}

TEST_CASE("eval kernels: causal GQA attention equals the naive softmax; selected rows its bits",
          "[eval][kernels]") {
  CopyGuard guard;
  std::mt19937 rng(9);
  struct Case {
    size_t g, n, past, split, hd, window;
  };
  // n < 4: the per-query path (decode); n >= 4: the blocked path (prefill),
  // with and without a shared prefix, across a block of 16 queries, a sliding
  // window, and a head size that is not a multiple of 16 (per-query path).
  const Case cases[] = {{1, 1, 0, 0, 32, 0},    {2, 1, 37, 20, 32, 0}, {2, 3, 5, 0, 16, 0},
                        {1, 4, 0, 0, 32, 0},    {2, 9, 0, 0, 32, 0},   {2, 23, 10, 10, 64, 0},
                        {4, 40, 17, 30, 32, 0}, {2, 20, 20, 8, 32, 7}, {1, 6, 3, 2, 24, 0},
                        {3, 2, 50, 25, 48, 16}};
  for (auto isa : eval_kernels_isas()) {
    REQUIRE(set_eval_kernels_isa(isa));
    for (const Case& c : cases) {
      const size_t total = c.past + c.n, kv_stride = c.hd * 2 + 3;  // another KV head beside
      const size_t ldq = c.g * c.hd + 5, ldo = c.g * c.hd + 2;
      const auto q = random_vec(c.n * ldq, rng);
      const auto kpre = random_vec(c.split * kv_stride, rng),
                 vpre = random_vec(c.split * kv_stride, rng);
      const auto kown = random_vec((total - c.split) * kv_stride, rng),
                 vown = random_vec((total - c.split) * kv_stride, rng);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
      const KvRows kv{kpre.data(), vpre.data(), kown.data(), vown.data(), c.split, kv_stride};
      std::vector<float> out(c.n * ldo, -7.0f), scratch;
      attend_tokens({q.data(), ldq, c.g, c.n, c.past, c.hd, scale, kv, c.window, out.data(), ldo},
                    scratch);
      auto key = [&](size_t j) {
        return j < c.split ? kpre.data() + j * kv_stride : kown.data() + (j - c.split) * kv_stride;
      };
      auto val = [&](size_t j) {
        return j < c.split ? vpre.data() + j * kv_stride : vown.data() + (j - c.split) * kv_stride;
      };
      for (size_t i = 0; i < c.n; ++i)
        for (size_t h = 0; h < c.g; ++h) {
          const size_t p = c.past + i;
          const size_t lo = c.window > 0 && p + 1 > c.window ? p + 1 - c.window : 0;
          std::vector<double> s(p + 1, 0.0);
          double mx = -1e300;
          for (size_t j = lo; j <= p; ++j) {
            for (size_t d = 0; d < c.hd; ++d)
              s[j] += static_cast<double>(q[i * ldq + h * c.hd + d]) * key(j)[d];
            s[j] *= scale;
            mx = std::max(mx, s[j]);
          }
          double sum = 0.0;
          for (size_t j = lo; j <= p; ++j) sum += (s[j] = std::exp(s[j] - mx));
          for (size_t d = 0; d < c.hd; ++d) {
            double want = 0.0, mag = 0.0;
            for (size_t j = lo; j <= p; ++j) {
              want += s[j] / sum * val(j)[d];
              mag += std::abs(s[j] / sum * val(j)[d]);
            }
            check_close(out[i * ldo + h * c.hd + d], want, mag + 1e-3, 2e-5, [&] {
              return std::string(isa) + " n=" + std::to_string(c.n) +
                     " past=" + std::to_string(c.past) + " hd=" + std::to_string(c.hd);
            });
          }
          for (size_t d = c.g * c.hd; d < ldo; ++d)
            if (out[i * ldo + d] != -7.0f) FAIL_CHECK("output column " << d << " written");
        }
      // Selected query rows (the last layer's scored rows): the last token,
      // the first, one in the middle twice, out of order, their queries
      // gathered; each gets the bits it got among all n (AttendArgs::rows).
      const std::vector<uint32_t> rows = {static_cast<uint32_t>(c.n - 1), 0,
                                          static_cast<uint32_t>(c.n / 2),
                                          static_cast<uint32_t>(c.n / 2)};
      std::vector<float> qs(rows.size() * ldq), some(rows.size() * ldo, -3.0f);
      for (size_t k = 0; k < rows.size(); ++k)
        std::copy_n(q.data() + rows[k] * ldq, ldq, qs.data() + k * ldq);
      AttendArgs sel{qs.data(), ldq, c.g, c.n, c.past, c.hd, scale, kv, c.window, some.data(), ldo};
      sel.rows = rows.data();
      sel.nrows = rows.size();
      attend_tokens(sel, scratch);
      for (size_t k = 0; k < rows.size(); ++k)
        REQUIRE(std::memcmp(some.data() + k * ldo, out.data() + rows[k] * ldo,
                            c.g * c.hd * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("eval kernels: a query's attention does not depend on the keys after it",
          "[eval][kernels]") {
  // Causality, bit for bit: the blocked path computes a block's scores
  // against the keys up to its last token and masks the rest, so a key after
  // a query, even NaN or infinite, and a finite value after it, must leave
  // that query's output unchanged (the masked probabilities are exact zeros).
  CopyGuard guard;
  std::mt19937 rng(21);
  struct Case {
    size_t g, n, past, split, hd, window;
  };
  const Case cases[] = {
      {2, 40, 0, 0, 32, 0}, {1, 35, 9, 5, 16, 0}, {2, 24, 4, 4, 32, 6}, {3, 17, 0, 0, 48, 0}};
  const float poison[] = {std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), 3e38f};
  for (auto isa : eval_kernels_isas()) {
    REQUIRE(set_eval_kernels_isa(isa));
    for (const Case& c : cases) {
      const size_t total = c.past + c.n, ld = c.hd + 2, ldq = c.g * c.hd;
      const auto q = random_vec(c.n * ldq, rng), kpre = random_vec(c.split * ld, rng),
                 vpre = random_vec(c.split * ld, rng);
      const auto kown = random_vec((total - c.split) * ld, rng),
                 vown = random_vec((total - c.split) * ld, rng);
      auto run = [&](const std::vector<float>& k2, const std::vector<float>& v2) {
        const KvRows kv{kpre.data(), vpre.data(), k2.data(), v2.data(), c.split, ld};
        std::vector<float> out(c.n * ldq), scratch;
        attend_tokens({q.data(), ldq, c.g, c.n, c.past, c.hd, 0.2f, kv, c.window, out.data(), ldq},
                      scratch);
        return out;
      };
      const auto base = run(kown, vown);
      // Every query before position `cut` keeps its bits when the keys from
      // `cut` on are poisoned and the values from `cut` on change.
      for (size_t cut : {c.past + 1, c.past + c.n / 2, total - 1}) {
        const float bad = poison[cut % 4];
        auto k2 = kown, v2 = vown;
        for (size_t j = std::max(cut, c.split); j < total; ++j)
          for (size_t d = 0; d < c.hd; ++d) {
            k2[(j - c.split) * ld + d] = d % 3 == 0 ? bad : -k2[(j - c.split) * ld + d];
            v2[(j - c.split) * ld + d] *= -2.5f;
          }
        const auto got = run(k2, v2);
        const size_t before = cut - c.past;  // queries at positions < cut
        for (size_t i = 0; i < before * ldq; ++i)
          if (std::memcmp(&got[i], &base[i], sizeof(float)) != 0)
            FAIL(isa << " n=" << c.n << " past=" << c.past << " cut=" << cut << ": query "
                     << i / ldq << " changed: " << base[i] << " -> " << got[i]);
      }
    }
  }
}

TEST_CASE("eval kernels: exp, RMSNorm and SwiGLU equal their definitions", "[eval][kernels]") {
  CopyGuard guard;
  std::mt19937 rng(10);
  for (auto isa : eval_kernels_isas()) {
    REQUIRE(set_eval_kernels_isa(isa));
    // exp over the float range it is used on, in a length with a tail.
    std::vector<float> x;
    for (float v = -87.0f; v <= 88.0f; v += 0.0137f) x.push_back(v);
    x.push_back(0.0f);
    x.push_back(-0.0f);
    const auto x0 = x;
    exp_inplace(x.data(), x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp(static_cast<double>(x0[i]));
      if (!(std::abs(x[i] - want) <= 3.6e-7 * want))  // 3 ulp
        FAIL(isa << ": exp(" << x0[i] << ") = " << x[i] << ", want " << want);
    }
    std::vector<float> special = {std::numeric_limits<float>::quiet_NaN(), -1000.0f, 1.0f};
    exp_inplace(special.data(), special.size());
    CHECK(std::isnan(special[0]));
    CHECK(special[1] >= 0.0f);
    CHECK(special[1] < 1.3e-38f);  // clamped at exp(-87.3), FLT_MIN-sized
    CHECK(std::abs(special[2] - 2.718281828f) < 1e-6f);

    // A row's maximum and sum of exp(x - max), lengths with and without a
    // tail, against loops in double: the maximum exactly, the sum within 3 ulp.
    for (size_t n : {size_t{1}, size_t{7}, size_t{64}, size_t{1003}}) {
      const auto row = random_vec(n, rng, 9.0f);
      float want_max = row[0];
      for (float v : row) want_max = v > want_max ? v : want_max;
      const float m = max_of(row.data(), n);
      CHECK(m == want_max);
      double want = 0.0;
      for (float v : row) want += std::exp(static_cast<double>(v) - static_cast<double>(want_max));
      const double got = sum_exp_shifted(row.data(), n, m);
      if (!(std::abs(got - want) <= 3.6e-7 * want))
        FAIL(isa << ": sum of exp over " << n << " = " << got << ", want " << want);
    }
    const std::vector<float> with_nan = {1.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f, -2.0f,
                                         0.5f};
    CHECK(max_of(with_nan.data(), with_nan.size()) == 3.0f);  // NaN passed over
    CHECK(std::isnan(sum_exp_shifted(with_nan.data(), with_nan.size(), 3.0f)));
    CHECK(max_of(with_nan.data(), 0) == -std::numeric_limits<float>::infinity());

    const size_t rows = 5, D = 77, F = 45;
    const auto xs = random_vec(rows * D, rng, 3.0f), w = random_vec(D, rng);
    std::vector<float> out(rows * D);
    rms_norm_rows(xs.data(), w.data(), out.data(), rows, D, 1e-5f);
    for (size_t r = 0; r < rows; ++r) {
      double ss = 0.0;
      for (size_t i = 0; i < D; ++i) ss += static_cast<double>(xs[r * D + i]) * xs[r * D + i];
      const double inv = 1.0 / std::sqrt(ss / D + 1e-5);
      for (size_t i = 0; i < D; ++i)
        check_close(out[r * D + i], w[i] * xs[r * D + i] * inv,
                    std::abs(w[i] * xs[r * D + i] * inv), 1e-6,
                    [&] { return std::string(isa) + " rms_norm"; });
    }
    const auto gu = random_vec(rows * 2 * F, rng, 4.0f);
    std::vector<float> act(rows * F);
    swiglu_rows(gu.data(), act.data(), rows, F);
    for (size_t r = 0; r < rows; ++r)
      for (size_t j = 0; j < F; ++j) {
        const double g = gu[r * 2 * F + j], u = gu[r * 2 * F + F + j];
        const double want = g / (1.0 + std::exp(-g)) * u;
        check_close(act[r * F + j], want, std::abs(want), 2e-6,
                    [&] { return std::string(isa) + " swiglu"; });
      }
  }
  CHECK_FALSE(set_eval_kernels_isa("avx512-please"));
}

TEST_CASE("eval kernels: the AVX-512 copy gives the AVX2 copy's bits", "[eval][kernels]") {
  // Every output is the same chain of FMAs, and every sum over a row runs in
  // the same order, in both copies: so a score does not depend on which one
  // the CPU's timing picked.
  CopyGuard guard;
  const auto isas = eval_kernels_isas();
  if (std::find(isas.begin(), isas.end(), "avx512") == isas.end()) {
    WARN("no AVX-512 (x86-64-v4) on this CPU: the AVX-512 copy is not compared here");
    return;
  }
  std::mt19937 rng(11);
  // Runs f once per copy and requires the same floats, bit for bit.
  auto same_bits = [&](const char* what, auto&& f) {
    std::vector<float> got[2];
    for (int k = 0; k < 2; ++k) {
      REQUIRE(set_eval_kernels_isa(k == 0 ? "avx2" : "avx512"));
      got[k] = f();
    }
    REQUIRE(got[0].size() == got[1].size());
    for (size_t i = 0; i < got[0].size(); ++i)
      if (std::memcmp(&got[0][i], &got[1][i], sizeof(float)) != 0)
        FAIL(what << ": element " << i << ": avx2 " << got[0][i] << ", avx512 " << got[1][i]);
  };
  // Products across the pairs of panels of the 16-lane copy and their tails.
  for (size_t N : {1, 15, 16, 17, 31, 32, 40, 48, 69})
    for (size_t M : {1, 11, 12, 13, 50})
      for (size_t K : {1, 33, 128}) {
        const auto W = random_vec(N * K, rng), A = random_vec(M * K, rng),
                   C0 = random_vec(M * (N + 3), rng);
        const PackedWeight P(W.data(), N, K, K);
        for (bool acc : {false, true})
          same_bits("matmul", [&] {
            auto C = C0;
            matmul(M, A.data(), K, P, C.data(), N + 3, acc);
            return C;
          });
      }
  // Attention: the per-query path (n < 4 or a head size not a multiple of
  // 16) and the blocked path, with a shared prefix and a window.
  struct Case {
    size_t g, n, past, split, hd, window;
  };
  const Case cases[] = {{1, 1, 40, 20, 32, 0},  {2, 3, 5, 0, 24, 0},   {2, 9, 0, 0, 32, 0},
                        {4, 40, 17, 30, 64, 0}, {2, 20, 20, 8, 48, 7}, {2, 33, 31, 0, 16, 0},
                        {1, 6, 3, 2, 40, 0}};
  for (const Case& c : cases) {
    const size_t total = c.past + c.n, ld = c.hd + 1, ldq = c.g * c.hd;
    const auto q = random_vec(c.n * ldq, rng), kp = random_vec(c.split * ld, rng),
               vp = random_vec(c.split * ld, rng), ko = random_vec((total - c.split) * ld, rng),
               vo = random_vec((total - c.split) * ld, rng);
    const KvRows kv{kp.data(), vp.data(), ko.data(), vo.data(), c.split, ld};
    same_bits("attention", [&] {
      std::vector<float> out(c.n * ldq), scratch;
      attend_tokens({q.data(), ldq, c.g, c.n, c.past, c.hd, 0.125f, kv, c.window, out.data(), ldq},
                    scratch);
      return out;
    });
  }
  for (size_t D : {7, 16, 77, 896}) {
    const auto x = random_vec(3 * 2 * D, rng, 3.0f), w = random_vec(D, rng);
    same_bits("rms_norm", [&] {
      std::vector<float> out(3 * D);
      rms_norm_rows(x.data(), w.data(), out.data(), 3, D, 1e-6f);
      return out;
    });
    same_bits("swiglu", [&] {
      std::vector<float> out(3 * D);
      swiglu_rows(x.data(), out.data(), 3, D);
      return out;
    });
    same_bits("exp, max and sum of exp", [&] {
      std::vector<float> e(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(2 * D));
      exp_inplace(e.data(), e.size());
      const float m = max_of(x.data(), 2 * D);
      const double se = sum_exp_shifted(x.data(), 2 * D, m);
      e.push_back(m);
      e.push_back(static_cast<float>(se));
      e.push_back(static_cast<float>(se - static_cast<double>(static_cast<float>(se))));
      return e;
    });
  }
}
