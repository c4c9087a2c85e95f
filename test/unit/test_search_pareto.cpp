// Pareto archive and hypervolume against hand-computed fronts and independent
// references (grid counting, inclusion–exclusion over all subsets).
#include <catch2/catch.hpp>
#include <cmath>

#include "kintsugi/common/error.hpp"
#include "kintsugi/search/pareto.hpp"
#include "kintsugi/search/philox.hpp"

using namespace kintsugi;
using namespace kintsugi::search;

namespace {

using Points = std::vector<std::vector<double>>;

double uniform(uint32_t a, uint32_t b, uint32_t c) {
  const auto r = philox4x32_10({{a, b, c, 0}}, 17, 0);
  return uniform_open0((static_cast<uint64_t>(r.v[0]) << 32) | r.v[1]);
}

// Counts the unit cells [c, c+1]^d (c in {0..side-1}^d) inside some box [0, p].
double grid_volume(const Points& ps, size_t d, int side) {
  std::vector<int> c(d, 0);
  double count = 0;
  while (true) {
    for (const auto& p : ps) {
      bool in = true;
      for (size_t k = 0; k < d && in; ++k) in = p[k] >= c[k] + 1;
      if (in) {
        count += 1;
        break;
      }
    }
    size_t k = 0;
    while (k < d && ++c[k] == side) c[k++] = 0;
    if (k == d) break;
  }
  return count;
}

// Inclusion–exclusion: the union of boxes [ref, p] over all non-empty subsets.
double inclusion_exclusion(const Points& ps, const std::vector<double>& ref) {
  const size_t m = ps.size(), d = ref.size();
  double total = 0;
  for (uint32_t mask = 1; mask < (1u << m); ++mask) {
    std::vector<double> corner(d, 1e300);
    int bits = 0;
    for (size_t i = 0; i < m; ++i)
      if (mask & (1u << i)) {
        ++bits;
        for (size_t k = 0; k < d; ++k) corner[k] = std::min(corner[k], ps[i][k]);
      }
    double v = 1;
    for (size_t k = 0; k < d; ++k) v *= std::max(0.0, corner[k] - ref[k]);
    total += (bits % 2 == 1 ? v : -v);
  }
  return total;
}

}  // namespace

TEST_CASE("2-D hypervolume of a hand-computed front", "[search][pareto]") {
  // Staircase from (4,1): 4*1 + 3*2 + 2*1 + 1*1 = 13; (2,2) is dominated,
  // (3,3) appears twice, (0.5,-1) is below the reference.
  const Points ps = {{1, 5}, {2, 4}, {3, 3}, {4, 1}, {2, 2}, {3, 3}, {0.5, -1}};
  CHECK(hypervolume(ps, {0, 0}) == 13.0);
  // Above (1,1) only (2,4), (3,3) (twice) and (2,2) count: 2*2 + 1*1 = 5.
  CHECK(hypervolume(ps, {1, 1}) == 5.0);
  CHECK(hypervolume({}, {0, 0}) == 0.0);
  CHECK(hypervolume({{3, 2}}, {1, 1}) == 2.0);
  CHECK(hypervolume({{3}, {5}, {4}}, {1}) == 4.0);
}

TEST_CASE("3-D hypervolume of hand-computed fronts", "[search][pareto]") {
  // Boxes of volume 2 meeting pairwise and all three in the unit cube: 6 - 3 + 1 = 4.
  CHECK(hypervolume({{2, 1, 1}, {1, 2, 1}, {1, 1, 2}}, {0, 0, 0}) == 4.0);
  // Three boxes of volume 3: 9 - 3 + 1 = 7; with (2,2,2): 7 + 8 - (6 - 3 + 1) = 11.
  const Points ps = {{3, 1, 1}, {1, 3, 1}, {1, 1, 3}, {2, 2, 2}};
  CHECK(hypervolume({ps[0], ps[1], ps[2]}, {0, 0, 0}) == 7.0);
  CHECK(hypervolume(ps, {0, 0, 0}) == 11.0);
  // A dominated point changes nothing.
  CHECK(hypervolume({{2, 2, 2}, {2, 1, 1}, {1, 2, 2}}, {0, 0, 0}) == 8.0);
  // Reference shift: every box loses 1 per side.
  CHECK(hypervolume({{3, 3, 3}}, {1, 1, 1}) == 8.0);
}

TEST_CASE("hypervolume agrees with grid counting on integer fronts (3-D to 5-D)",
          "[search][pareto]") {
  for (size_t d : {3, 4, 5}) {
    for (uint32_t trial = 0; trial < 15; ++trial) {
      Points ps;
      const size_t m = 4 + trial % 9;
      for (size_t i = 0; i < m; ++i) {
        std::vector<double> p(d);
        for (size_t k = 0; k < d; ++k)
          p[k] = 1 + std::floor(5.0 * uniform(static_cast<uint32_t>(d),
                                              trial * 100 + static_cast<uint32_t>(i),
                                              static_cast<uint32_t>(k)));
        ps.push_back(p);
      }
      CHECK(hypervolume(ps, std::vector<double>(d, 0.0)) == grid_volume(ps, d, 6));
    }
  }
}

TEST_CASE("hypervolume agrees with inclusion–exclusion on real-valued fronts", "[search][pareto]") {
  for (size_t d : {2, 3, 4}) {
    for (uint32_t trial = 0; trial < 10; ++trial) {
      Points ps;
      for (uint32_t i = 0; i < 11; ++i) {
        std::vector<double> p(d);
        for (size_t k = 0; k < d; ++k)
          p[k] = uniform(50 + static_cast<uint32_t>(d), trial * 100 + i, static_cast<uint32_t>(k));
        ps.push_back(p);
      }
      const std::vector<double> ref(d, 0.1);
      const double expected = inclusion_exclusion(ps, ref);
      CHECK(hypervolume(ps, ref) == Approx(expected).epsilon(1e-12));
    }
  }
}

TEST_CASE("hypervolume of a few hundred points lies within the unit orthant", "[search][pareto]") {
  // 300 points on the positive unit sphere in 3-D and 150 in 4-D: all non-dominated.
  // (No time limit here: a unit test on a loaded machine cannot time anything.)
  for (auto [d, m] : {std::pair<size_t, uint32_t>{3, 300}, {4, 150}}) {
    Points ps;
    for (uint32_t i = 0; i < m; ++i) {
      std::vector<double> p(d);
      double norm = 0;
      for (size_t k = 0; k < d; ++k) {
        p[k] =
            std::abs(standard_normal(3, 0, static_cast<uint32_t>(d), i, static_cast<uint32_t>(k)));
        norm += p[k] * p[k];
      }
      for (auto& x : p) x /= std::sqrt(norm);
      ps.push_back(p);
    }
    const double hv = hypervolume(ps, std::vector<double>(d, 0.0));
    // Below the volume of the positive unit-ball orthant (pi/6 in 3-D, pi^2/32 in 4-D).
    const double orthant = d == 3 ? M_PI / 6 : M_PI * M_PI / 32;
    CHECK(hv < orthant);
    CHECK(hv > 0.5 * orthant);
  }
}

TEST_CASE("the Pareto archive keeps the non-dominated evaluations", "[search][pareto]") {
  ParetoArchive a(2);
  CHECK(a.add(0, {1, 5}));
  CHECK(a.add(1, {2, 2}));
  CHECK(a.add(2, {2, 4}));  // dominates evaluation 1
  CHECK(a.add(3, {3, 3}));
  CHECK(!a.add(4, {1, 1}));  // dominated
  CHECK(a.add(5, {3, 3}));   // equal to 3: both stay
  CHECK(a.add(6, {2, 4}));   // equal to 2: both stay
  CHECK(a.add(7, {4, 1}));
  CHECK(a.indices() == std::vector<int64_t>{0, 2, 3, 5, 6, 7});
  CHECK(a.scores()[1] == std::vector<double>{2, 4});
  CHECK(hypervolume(a.scores(), {0, 0}) == 13.0);
  CHECK_THROWS_AS(a.add(8, {1}), InputError);
  CHECK_THROWS_AS(a.add(8, {1, std::nan("")}), InputError);

  // Same front from a brute-force filter.
  const Points all = {{1, 5}, {2, 2}, {2, 4}, {3, 3}, {1, 1}, {3, 3}, {2, 4}, {4, 1}};
  CHECK(non_dominated(all) == std::vector<size_t>{0, 2, 3, 5, 6, 7});
}
