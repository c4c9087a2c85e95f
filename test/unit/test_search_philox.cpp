// The optimizers' normal numbers built on Philox (its known-answer vectors:
// test_common_philox.cpp).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>

#include "kintsugi/search/philox.hpp"

using namespace kintsugi::search;

TEST_CASE("uniform_open0 maps 64-bit words into (0, 1]", "[search][philox]") {
  CHECK(uniform_open0(0) == 0x1.0p-53);
  CHECK(uniform_open0(~uint64_t{0}) == 1.0);
  CHECK(uniform_open0(uint64_t{1} << 63) == 0.5 + 0x1.0p-53);
}

TEST_CASE("standard normals have mean 0, variance 1 and are pure functions of their key",
          "[search][philox]") {
  const int count = 200000;
  double sum = 0, sum_sq = 0, sum_4 = 0;
  int beyond_2 = 0;
  for (int k = 0; k < count / 10; ++k)
    for (uint32_t i = 0; i < 10; ++i) {
      const double z = standard_normal(42, 1, 7, static_cast<uint32_t>(k), i);
      sum += z;
      sum_sq += z * z;
      sum_4 += z * z * z * z;
      beyond_2 += std::abs(z) > 2.0;
    }
  const double n = count;
  CHECK(std::abs(sum / n) < 0.01);                 // sd of the mean: 0.0022
  CHECK(std::abs(sum_sq / n - 1.0) < 0.015);       // sd: 0.0032
  CHECK(std::abs(sum_4 / n - 3.0) < 0.1);          // kurtosis of N(0,1)
  CHECK(std::abs(beyond_2 / n - 0.0455) < 0.003);  // P(|Z| > 2) = 0.0455
  // Pure: same key, same number; any part of the key changes it.
  const double z = standard_normal(5, 2, 3, 4, 6);
  CHECK(standard_normal(5, 2, 3, 4, 6) == z);
  CHECK(standard_normal(6, 2, 3, 4, 6) != z);
  CHECK(standard_normal(5, 3, 3, 4, 6) != z);
  CHECK(standard_normal(5, 2, 4, 4, 6) != z);
  CHECK(standard_normal(5, 2, 3, 5, 6) != z);
  CHECK(standard_normal(5, 2, 3, 4, 7) != z);
  // Coordinates 2b and 2b+1 are the cosine and sine halves of one Box–Muller pair.
  const auto pair = normal_pair(5, 2, 3, 4, 3);
  CHECK(pair[0] == z);
  CHECK(pair[1] == standard_normal(5, 2, 3, 4, 7));
}
