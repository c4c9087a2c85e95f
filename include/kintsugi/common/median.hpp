#pragma once
// The median of a sample: the middle value, or the mean of the two middle
// values of an even count; NaN for none.
#include <algorithm>
#include <limits>
#include <vector>

namespace kintsugi {

inline double median_of(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const size_t m = v.size();
  return m % 2 == 1 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

}  // namespace kintsugi
