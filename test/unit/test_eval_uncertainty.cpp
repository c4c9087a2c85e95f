// Standard errors and paired bootstrap intervals (eval/uncertainty.hpp):
// against tools/paired_bootstrap.py, an independent Python implementation of
// the same definition, on fixed per-example results, and on cases whose
// answer is known.
#include <catch2/catch.hpp>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "kintsugi/common/error.hpp"
#include "kintsugi/eval/uncertainty.hpp"
#include "test_support.hpp"

using namespace kintsugi;

namespace uncertainty_test {

ExampleScores binary_scores(size_t n, double p, std::mt19937& rng) {
  ExampleScores s;
  std::bernoulli_distribution b(p);
  for (size_t i = 0; i < n; ++i) s.value.push_back(b(rng) ? 1.0 : 0.0);
  return s;
}

ExampleScores perplexity_scores(size_t n, ExampleScores::Transform t, double scale,
                                std::mt19937& rng) {
  ExampleScores s;
  s.transform = t;
  std::uniform_real_distribution<double> u(0.5, 1.5);
  std::uniform_int_distribution<int> len(20, 90);
  for (size_t i = 0; i < n; ++i) {
    const double w = len(rng);
    s.weight.push_back(w);
    s.value.push_back(w * scale * u(rng));
  }
  return s;
}

nlohmann::json to_json(const ExampleScores& s) {
  nlohmann::json j{{"transform", transform_name(s.transform)}, {"value", s.value}};
  if (!s.weight.empty()) j["weight"] = s.weight;
  return j;
}

}  // namespace uncertainty_test

using namespace uncertainty_test;

TEST_CASE("uncertainty: intervals and standard errors equal an independent Python reference",
          "[eval][uncertainty]") {
  std::mt19937 rng(20);
  // Three tasks of the builtin kinds: a proportion, bits per byte, a perplexity.
  std::vector<ExampleScores> a = {
      binary_scores(150, 0.8, rng),
      perplexity_scores(40, ExampleScores::Transform::BitsPerByte, 1.1, rng),
      perplexity_scores(33, ExampleScores::Transform::Exp, 0.9, rng)};
  std::vector<ExampleScores> b = a;
  // b: a few examples changed, so the difference is small and not all one way.
  for (size_t i = 0; i < 150; i += 7) b[0].value[i] = 1.0 - b[0].value[i];
  for (auto& v : b[1].value) v *= 1.01;
  for (size_t i = 0; i < b[2].size(); i += 2) b[2].value[i] *= 0.97;
  const std::vector<double> coef = {2.0, 1.0, 0.5};
  const std::vector<bool> up = {true, false, false};
  const size_t R = 400;
  const uint64_t seed = 0x1234567890abcdefULL;

  test::TempDir tmp;
  nlohmann::json in{
      {"coefficients", coef}, {"higher_is_better", up}, {"resamples", R}, {"seed", seed}};
  for (const auto& s : a) in["a"].push_back(to_json(s));
  for (const auto& s : b) in["b"].push_back(to_json(s));
  test::write_file(tmp / "in.json", in.dump());
  const auto r = test::run_shell("/usr/bin/python3 " +
                                 (test::source_dir() / "tools/paired_bootstrap.py").string() + " " +
                                 (tmp / "in.json").string());
  INFO(r.output);
  REQUIRE(r.status == 0);
  const auto want = nlohmann::json::parse(r.output);

  const PairedInterval got = paired_bootstrap_mean(a, b, coef, up, R, seed);
  CHECK(got.resamples == R);
  CHECK(got.examples == 150 + 40 + 33);
  CHECK(got.difference == Approx(want["difference"].get<double>()).epsilon(1e-12).margin(1e-15));
  CHECK(got.low == Approx(want["low"].get<double>()).epsilon(1e-12).margin(1e-15));
  CHECK(got.high == Approx(want["high"].get<double>()).epsilon(1e-12).margin(1e-15));
  CHECK(got.low <= got.difference);
  CHECK(got.difference <= got.high);
  for (size_t k = 0; k < a.size(); ++k) {
    CHECK(standard_error(a[k], R, seed) ==
          Approx(want["stderr_a"][k].get<double>()).epsilon(1e-12));
    CHECK(standard_error(b[k], R, seed) ==
          Approx(want["stderr_b"][k].get<double>()).epsilon(1e-12));
  }
}

TEST_CASE("uncertainty: known cases", "[eval][uncertainty]") {
  std::mt19937 rng(21);
  // A proportion's standard error is binomial: p = 0.5 over 100 examples.
  ExampleScores half;
  for (int i = 0; i < 100; ++i) half.value.push_back(i % 2);
  CHECK(half.binary());
  CHECK(half.score() == 0.5);
  CHECK(standard_error(half) == Approx(0.05));

  // Identical models: the difference is 0 in every resample.
  const ExampleScores a = binary_scores(150, 0.7, rng);
  const PairedInterval same = paired_bootstrap(a, a);
  CHECK(same.difference == 0.0);
  CHECK(same.low == 0.0);
  CHECK(same.high == 0.0);
  CHECK_FALSE(same.significant());

  // Better on some examples and worse on none: the interval excludes 0.
  ExampleScores better = a;
  size_t flipped = 0;
  for (size_t i = 0; i < better.size() && flipped < 20; ++i)
    if (better.value[i] == 0.0) {
      better.value[i] = 1.0;
      ++flipped;
    }
  const PairedInterval up = paired_bootstrap(better, a);
  CHECK(up.difference == Approx(20.0 / 150));
  CHECK(up.low > 0.0);
  CHECK(up.significant());
  const PairedInterval down = paired_bootstrap(a, better);
  CHECK(down.high < 0.0);
  CHECK(down.difference == Approx(-20.0 / 150));

  // Two models that differ on examples but not in accuracy: the interval holds 0.
  ExampleScores swapped = a;
  size_t ones = 0, zeros = 0;
  for (auto& v : swapped.value) {
    if (v == 1.0 && ones < 15) {
      v = 0.0;
      ++ones;
    } else if (v == 0.0 && zeros < 15) {
      v = 1.0;
      ++zeros;
    }
  }
  const PairedInterval tie = paired_bootstrap(swapped, a);
  CHECK(tie.difference == Approx(0.0).margin(1e-12));
  CHECK(tie.low < 0.0);
  CHECK(tie.high > 0.0);
  CHECK_FALSE(tie.significant());

  // Resamples are a pure function of the seed.
  CHECK(paired_bootstrap(swapped, a, 300, 5).low == paired_bootstrap(swapped, a, 300, 5).low);

  // Different example counts are an error; a NaN value gives NaN, not a number.
  ExampleScores shorter = a;
  shorter.value.pop_back();
  CHECK_THROWS_AS(paired_bootstrap(a, shorter), InputError);
  ExampleScores with_nan = a;
  with_nan.value[3] = std::nan("");
  CHECK(std::isnan(paired_bootstrap(with_nan, a).difference));
  CHECK(std::isnan(standard_error(with_nan)));
}

TEST_CASE("uncertainty: metric transforms", "[eval][uncertainty]") {
  ExampleScores::Transform t{};
  REQUIRE(transform_of_metric("bits_per_byte", t));
  CHECK(t == ExampleScores::Transform::BitsPerByte);
  REQUIRE(transform_of_metric("word_perplexity", t));
  CHECK(t == ExampleScores::Transform::Exp);
  REQUIRE(transform_of_metric("acc_norm", t));
  CHECK(t == ExampleScores::Transform::Mean);
  CHECK_FALSE(transform_of_metric("f1", t));
  // bits per byte of 2 texts: (nll1 + nll2) / ln 2 / (bytes1 + bytes2)
  ExampleScores s;
  s.transform = ExampleScores::Transform::BitsPerByte;
  s.value = {10.0, 20.0};
  s.weight = {8.0, 12.0};
  CHECK(s.score() == Approx(30.0 / std::log(2.0) / 20.0));
  s.transform = ExampleScores::Transform::Exp;
  CHECK(s.score() == Approx(std::exp(1.5)));
}
