#pragma once
// How sure a score is (issue #20): a task's primary metric written as a
// function of per-example numbers, so it can be resampled; its standard error;
// and the paired bootstrap of the difference between two models scored on the
// same examples.
//
// Every metric the builtin evaluator computes is transform(sum_i value_i /
// sum_i weight_i) over its examples:
//   acc, acc_norm, exact_match   value 1/0 (correct or not), weight 1, Mean
//   bits_per_byte                value = the text's NLL in nats, weight = its
//                                bytes, BitsPerByte (divide by ln 2)
//   byte_perplexity              the same value and weight, Exp
//   word_perplexity              weight = the text's words, Exp
// A resample draws n example indices with replacement and recomputes the
// metric on them (ratios of sums, as the metric itself is defined), so the
// perplexities' nonlinearity is respected.
//
// Randomness: resample r draws its i-th index of task t (t = 0 for one task)
// from Philox4x32-10 (the project's generator, common/philox.hpp) with counter
// {i / 4, r, 0x626f6f74, t} and key {low, high 32 bits of the seed}, word
// i % 4: index = (word * n) >> 32. The interval is the percentile interval: of the R sorted
// differences, the ones at positions floor(0.025 R) and ceil(0.975 R) - 1.
// A difference or an interval end within 1e-12 of 0 is reported as 0 (sums
// over tasks of equal scores leave rounding), so it never passes for a
// significant difference.
// tools/paired_bootstrap.py implements the same definition independently.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kintsugi {

struct ExampleScores {
  enum class Transform { Mean, BitsPerByte, Exp };
  Transform transform = Transform::Mean;
  std::vector<double> value;
  std::vector<double> weight;  // empty: 1 for every example

  size_t size() const { return value.size(); }
  // The metric on every example (NaN when there are none).
  double score() const;
  // The metric on the examples idx (with repeats).
  double score_of(std::span<const uint32_t> idx) const;
  // Mean of 0/1 values with unit weights: a proportion (binomial standard error).
  bool binary() const;
};

// The transform for a primary metric name, false for a metric that is not
// one of the builtin evaluator's.
bool transform_of_metric(const std::string& metric, ExampleScores::Transform& out);
const char* transform_name(ExampleScores::Transform t);

inline constexpr size_t kBootstrapResamples = 2000;

// sqrt(p (1 - p) / n): a proportion's standard error; NaN for n < 2.
double binomial_standard_error(double p, size_t n);

// The metric's standard error: sqrt(p (1 - p) / n) for a proportion, else the
// standard deviation of the metric over `resamples` bootstrap resamples.
// NaN with fewer than 2 examples or a non-finite value.
double standard_error(const ExampleScores& s, size_t resamples = kBootstrapResamples,
                      uint64_t seed = 0);

// a - b on the same examples: the difference of the two metrics, and the 95%
// percentile interval of the difference over paired resamples (the same
// indices for both). `significant` when the interval excludes 0.
struct PairedInterval {
  double difference = 0, low = 0, high = 0;
  size_t examples = 0, resamples = 0;
  bool significant() const { return low > 0 || high < 0; }
};
// InputError when a and b differ in example count or transform; NaN fields
// when a value is not finite or there are no examples. With
// higher_is_better false (a metric where lower is better) the difference and
// interval are of b - a, so that positive still means a is better.
PairedInterval paired_bootstrap(const ExampleScores& a, const ExampleScores& b,
                                size_t resamples = kBootstrapResamples, uint64_t seed = 0,
                                bool higher_is_better = true);

// The same over several tasks at once, for a mean of task metrics with
// coefficients c_k (the objective's weights): each resample draws every
// task's examples independently (a stratified bootstrap), and the difference
// is sum_k c_k (metric_k(a) - metric_k(b)) / sum_k c_k, with each task's
// sign flipped where lower is better (`higher_is_better`).
PairedInterval paired_bootstrap_mean(std::span<const ExampleScores> a,
                                     std::span<const ExampleScores> b,
                                     std::span<const double> coefficients,
                                     const std::vector<bool>& higher_is_better,
                                     size_t resamples = kBootstrapResamples, uint64_t seed = 0);

// Resample r's n indices (the definition above).
void bootstrap_indices(uint64_t seed, uint32_t r, uint32_t stream, std::span<uint32_t> out);

}  // namespace kintsugi
