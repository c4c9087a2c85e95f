#include "kintsugi/eval/uncertainty.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/philox.hpp"

namespace kintsugi {

namespace {

double apply(ExampleScores::Transform t, double ratio) {
  switch (t) {
    case ExampleScores::Transform::Mean:
      return ratio;
    case ExampleScores::Transform::BitsPerByte:
      return ratio / std::numbers::ln2;
    case ExampleScores::Transform::Exp:
      return std::exp(ratio);
  }
  return ratio;
}

bool all_finite(const ExampleScores& s) {
  auto fin = [](double v) { return std::isfinite(v); };
  return std::all_of(s.value.begin(), s.value.end(), fin) &&
         std::all_of(s.weight.begin(), s.weight.end(), fin);
}

// A difference within rounding of 0 (a sum over tasks of equal means can
// leave 1e-17) is 0: it must not pass for a significant one.
double snap(double x) {
  return std::abs(x) < 1e-12 ? 0.0 : x;
}

// The percentile interval's ends of R sorted differences.
void percentile_interval(std::vector<double>& d, PairedInterval& out) {
  std::sort(d.begin(), d.end());
  const size_t R = d.size();
  const auto lo = static_cast<size_t>(std::floor(0.025 * static_cast<double>(R)));
  const auto hi = static_cast<size_t>(std::ceil(0.975 * static_cast<double>(R))) - 1;
  out.low = snap(d[lo]);
  out.high = snap(d[hi]);
}

}  // namespace

double ExampleScores::score() const {
  if (value.empty()) return std::nan("");
  std::vector<uint32_t> all(value.size());
  std::iota(all.begin(), all.end(), 0u);
  return score_of(all);
}

double ExampleScores::score_of(std::span<const uint32_t> idx) const {
  double num = 0, den = 0;
  for (uint32_t i : idx) {
    num += value[i];
    den += weight.empty() ? 1.0 : weight[i];
  }
  return apply(transform, num / den);
}

bool ExampleScores::binary() const {
  return transform == Transform::Mean && weight.empty() &&
         std::all_of(value.begin(), value.end(), [](double v) { return v == 0.0 || v == 1.0; });
}

bool transform_of_metric(const std::string& metric, ExampleScores::Transform& out) {
  if (metric == "acc" || metric == "acc_norm" || metric == "exact_match")
    out = ExampleScores::Transform::Mean;
  else if (metric == "bits_per_byte")
    out = ExampleScores::Transform::BitsPerByte;
  else if (metric == "byte_perplexity" || metric == "word_perplexity")
    out = ExampleScores::Transform::Exp;
  else
    return false;
  return true;
}

const char* transform_name(ExampleScores::Transform t) {
  switch (t) {
    case ExampleScores::Transform::Mean:
      return "mean";
    case ExampleScores::Transform::BitsPerByte:
      return "bits_per_byte";
    case ExampleScores::Transform::Exp:
      return "exp";
  }
  return "?";
}

void bootstrap_indices(uint64_t seed, uint32_t r, uint32_t stream, std::span<uint32_t> out) {
  const auto n = static_cast<uint64_t>(out.size());
  const auto k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (size_t i = 0; i < out.size(); i += 4) {
    const Philox4x32 b =
        philox4x32_10({{static_cast<uint32_t>(i / 4), r, 0x626f6f74u, stream}}, k0, k1);
    for (size_t j = 0; j < 4 && i + j < out.size(); ++j)
      out[i + j] = static_cast<uint32_t>((static_cast<uint64_t>(b.v[j]) * n) >> 32);
  }
}

double binomial_standard_error(double p, size_t n) {
  return n < 2 ? std::nan("") : std::sqrt(p * (1 - p) / static_cast<double>(n));
}

double standard_error(const ExampleScores& s, size_t resamples, uint64_t seed) {
  const size_t n = s.size();
  if (n < 2 || !all_finite(s)) return std::nan("");
  if (s.binary()) return binomial_standard_error(s.score(), n);
  std::vector<uint32_t> idx(n);
  double sum = 0, sum2 = 0;
  for (size_t r = 0; r < resamples; ++r) {
    bootstrap_indices(seed, static_cast<uint32_t>(r), 0, idx);
    const double v = s.score_of(idx);
    sum += v;
    sum2 += v * v;
  }
  const double R = static_cast<double>(resamples);
  const double mean = sum / R;
  return std::sqrt(std::max(0.0, (sum2 - R * mean * mean) / (R - 1)));
}

PairedInterval paired_bootstrap(const ExampleScores& a, const ExampleScores& b, size_t resamples,
                                uint64_t seed, bool higher_is_better) {
  const std::vector<bool> up{higher_is_better};
  const double one = 1.0;
  return paired_bootstrap_mean(std::span<const ExampleScores>(&a, 1),
                               std::span<const ExampleScores>(&b, 1),
                               std::span<const double>(&one, 1), up, resamples, seed);
}

PairedInterval paired_bootstrap_mean(std::span<const ExampleScores> a,
                                     std::span<const ExampleScores> b,
                                     std::span<const double> coefficients,
                                     const std::vector<bool>& higher_is_better, size_t resamples,
                                     uint64_t seed) {
  const size_t K = a.size();
  if (b.size() != K || coefficients.size() != K || higher_is_better.size() != K)
    throw_input("paired bootstrap: {} tasks against {}, {} coefficients", K, b.size(),
                coefficients.size());
  PairedInterval out;
  out.resamples = resamples;
  const double nan = std::nan("");
  double csum = 0;
  bool ok = K > 0 && resamples > 0;
  for (size_t k = 0; k < K; ++k) {
    if (a[k].size() != b[k].size() || a[k].transform != b[k].transform)
      throw_input(
          "paired bootstrap: task {} has {} examples ({}) in one model, {} ({}) in the other", k,
          a[k].size(), transform_name(a[k].transform), b[k].size(), transform_name(b[k].transform));
    out.examples += a[k].size();
    csum += coefficients[k];
    ok = ok && a[k].size() > 0 && all_finite(a[k]) && all_finite(b[k]);
  }
  if (!ok || !(csum > 0)) {
    out.difference = out.low = out.high = nan;
    return out;
  }
  auto diff = [&](size_t k, std::span<const uint32_t> idx) {
    const double d = a[k].score_of(idx) - b[k].score_of(idx);
    return coefficients[k] * (higher_is_better[k] ? d : -d) / csum;
  };
  out.difference = 0;
  for (size_t k = 0; k < K; ++k) {
    std::vector<uint32_t> all(a[k].size());
    std::iota(all.begin(), all.end(), 0u);
    out.difference += diff(k, all);
  }
  std::vector<double> d(resamples, 0.0);
  std::vector<uint32_t> idx;
  for (size_t k = 0; k < K; ++k) {
    if (coefficients[k] == 0) continue;
    idx.resize(a[k].size());
    for (size_t r = 0; r < resamples; ++r) {
      bootstrap_indices(seed, static_cast<uint32_t>(r), static_cast<uint32_t>(k), idx);
      d[r] += diff(k, idx);
    }
  }
  out.difference = snap(out.difference);
  percentile_interval(d, out);
  return out;
}

}  // namespace kintsugi
