#pragma once
// How far merge weights are from the uniform soup (search.uniform_penalty
// multiplies it). Header-only and free of Eigen: the state's reader, which
// the fuzzers build on its own, ranks evaluations by it too.
#include <cstddef>
#include <span>

namespace kintsugi::search {

// In [0, 1] on the simplex: per group of `checkpoints` weights, N/(N-1) *
// sum_i (w_i - 1/N)^2 (0 at the uniform soup, 1 at a single checkpoint),
// averaged over the groups. 0 for one checkpoint.
inline double uniform_distance(std::span<const double> weights, size_t checkpoints) {
  if (checkpoints < 2 || weights.size() < checkpoints) return 0.0;
  const size_t groups = weights.size() / checkpoints;
  const double n = static_cast<double>(checkpoints), u = 1.0 / n;
  double total = 0.0;
  for (size_t g = 0; g < groups; ++g) {
    double ss = 0.0;
    for (size_t i = 0; i < checkpoints; ++i) {
      const double d = weights[g * checkpoints + i] - u;
      ss += d * d;
    }
    total += ss * n / (n - 1.0);
  }
  return total / static_cast<double>(groups);
}

}  // namespace kintsugi::search
