// Weight parameterizations: ranges, sums, initial points, inverses, layer groups.
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>

#include "kintsugi/common/error.hpp"
#include "kintsugi/search/parameterization.hpp"
#include "kintsugi/search/philox.hpp"
#include "kintsugi/search/uniform_distance.hpp"

using namespace kintsugi;
using namespace kintsugi::search;

namespace {
Eigen::VectorXd random_point(size_t dim, double scale, uint32_t sample) {
  Eigen::VectorXd z(static_cast<Eigen::Index>(dim));
  for (size_t i = 0; i < dim; ++i)
    z[static_cast<Eigen::Index>(i)] =
        scale * standard_normal(9, 0, 0, sample, static_cast<uint32_t>(i));
  return z;
}
}  // namespace

TEST_CASE("simplex weights are non-negative and sum to 1 within 1e-12", "[search][param]") {
  for (size_t n : {1, 2, 3, 7, 16, 64}) {
    Parameterization p(WeightKind::Simplex, n);
    REQUIRE(p.dimension() == n);
    const auto w0 = p.weights(p.initial_point());
    for (double w : w0) CHECK(w == Approx(1.0 / static_cast<double>(n)).epsilon(1e-15));
    for (double scale : {0.1, 1.0, 10.0, 300.0, 1000.0}) {
      for (uint32_t s = 0; s < 20; ++s) {
        const auto w = p.weights(random_point(n, scale, s));
        double sum = 0;
        for (double x : w) {
          CHECK(x >= 0.0);
          CHECK(x <= 1.0);
          sum += x;
        }
        CHECK(std::abs(sum - 1.0) <= 1e-12);
      }
    }
  }
}

TEST_CASE("simplex is softmax: hand values and the inverse map", "[search][param]") {
  Parameterization p(WeightKind::Simplex, 3);
  Eigen::VectorXd z(3);
  z << 0.0, std::log(2.0), std::log(5.0);  // exp: 1, 2, 5 -> /8
  const auto w = p.weights(z);
  CHECK(w[0] == Approx(0.125).epsilon(1e-14));
  CHECK(w[1] == Approx(0.25).epsilon(1e-14));
  CHECK(w[2] == Approx(0.625).epsilon(1e-14));
  const auto back = p.weights(p.point({0.2, 0.3, 0.5}));
  CHECK(back[0] == Approx(0.2).epsilon(1e-14));
  CHECK(back[1] == Approx(0.3).epsilon(1e-14));
  CHECK(back[2] == Approx(0.5).epsilon(1e-14));
  CHECK_THROWS_AS(p.point({0.0, 0.5, 0.5}), InputError);
  CHECK_THROWS_AS(p.point({0.2, 0.2, 0.2}), InputError);
}

TEST_CASE("layer-group granularity: N x G dimensions, a simplex per group", "[search][param]") {
  Parameterization p(WeightKind::Simplex, 3, 4);
  REQUIRE(p.dimension() == 12);
  Eigen::VectorXd z = random_point(12, 2.0, 3);
  const auto w = p.weights(z);
  for (size_t g = 0; g < 4; ++g) {
    const auto wg = p.group_weights(w, g);
    REQUIRE(wg.size() == 3);
    CHECK(std::abs(std::accumulate(wg.begin(), wg.end(), 0.0) - 1.0) <= 1e-12);
    // Group g depends only on z[3g .. 3g+2]: softmax of that slice by hand.
    const double e0 = std::exp(z[static_cast<Eigen::Index>(3 * g)]);
    const double e1 = std::exp(z[static_cast<Eigen::Index>(3 * g + 1)]);
    const double e2 = std::exp(z[static_cast<Eigen::Index>(3 * g + 2)]);
    CHECK(wg[1] == Approx(e1 / (e0 + e1 + e2)).epsilon(1e-13));
  }
  // Tensor names to group weights: 8 layers in 4 groups (two layers each).
  CHECK(p.tensor_weights(w, "model.embed_tokens.weight", 8) == p.group_weights(w, 0));
  CHECK(p.tensor_weights(w, "model.layers.1.self_attn.q_proj.weight", 8) == p.group_weights(w, 0));
  CHECK(p.tensor_weights(w, "model.layers.2.mlp.down_proj.weight", 8) == p.group_weights(w, 1));
  CHECK(p.tensor_weights(w, "model.layers.5.input_layernorm.weight", 8) == p.group_weights(w, 2));
  CHECK(p.tensor_weights(w, "model.layers.7.mlp.up_proj.weight", 8) == p.group_weights(w, 3));
  CHECK(p.tensor_weights(w, "lm_head.weight", 8) == p.group_weights(w, 3));
  const std::vector<double> expected_slice(w.begin() + 6, w.begin() + 9);
  CHECK(p.group_weights(w, 2) == expected_slice);
  CHECK(Parameterization::from_config(
            [] {
              SearchConfig c;
              c.granularity = "layer_group";
              c.layer_groups = 5;
              return c;
            }(),
            4)
            .dimension() == 20);
}

TEST_CASE("layer index to group", "[search][param]") {
  // L = 10 layers, G = 4 groups: group floor(l * 4 / 10).
  const size_t expected[10] = {0, 0, 0, 1, 1, 2, 2, 2, 3, 3};
  for (int64_t l = 0; l < 10; ++l) CHECK(layer_group(l, 10, 4) == expected[l]);
  CHECK(layer_group(-1, 10, 4) == 0);  // embeddings
  CHECK(layer_group(10, 10, 4) == 3);  // final norm, lm_head
  CHECK(layer_group(5, 10, 1) == 0);
  CHECK(layer_position("model.layers.12.mlp.up_proj.weight", 32) == 12);
  CHECK(layer_position("transformer.h.3.attn.c_attn.weight", 12) == 3);
  CHECK(layer_position("gpt_neox.layers.0.attention.dense.weight", 6) == 0);
  CHECK(layer_position("model.embed_tokens.weight", 32) == -1);
  CHECK(layer_position("transformer.wte.weight", 12) == -1);
  CHECK(layer_position("lm_head.weight", 32) == 32);
  CHECK(layer_position("model.norm.weight", 32) == 32);
  CHECK(layer_position("layers.7", 32) == 7);
  CHECK(layer_position("model.layers.x.weight", 32) == 32);
  CHECK(layer_position("model.layers.12", 32) == 12);
}

TEST_CASE("nonnegative weights: softplus, positive, uniform start, inverse", "[search][param]") {
  Parameterization p(WeightKind::Nonnegative, 4);
  for (double w : p.weights(p.initial_point())) CHECK(w == Approx(0.25).epsilon(1e-14));
  Eigen::VectorXd z(4);
  z << 0.0, 1.0, -30.0, 50.0;
  const auto w = p.weights(z);
  CHECK(w[0] == Approx(std::log(2.0)).epsilon(1e-15));
  CHECK(w[1] == Approx(std::log(1.0 + std::exp(1.0))).epsilon(1e-15));
  CHECK(w[2] > 0.0);
  CHECK(w[2] == Approx(std::exp(-30.0)).epsilon(1e-12));
  CHECK(w[3] == Approx(50.0).epsilon(1e-15));
  for (double x : p.weights(random_point(4, 100.0, 1))) CHECK(x >= 0.0);
  const auto back = p.weights(p.point({0.5, 2.0, 1e-6, 40.0}));
  CHECK(back[0] == Approx(0.5).epsilon(1e-13));
  CHECK(back[1] == Approx(2.0).epsilon(1e-13));
  CHECK(back[2] == Approx(1e-6).epsilon(1e-9));
  CHECK(back[3] == Approx(40.0).epsilon(1e-13));
}

TEST_CASE("free weights are the identity", "[search][param]") {
  Parameterization p(WeightKind::Free, 5);
  for (double w : p.weights(p.initial_point())) CHECK(w == 0.2);
  Eigen::VectorXd z(5);
  z << -3.5, 0.0, 2.25, 1e6, -1e-9;
  const auto w = p.weights(z);
  for (Eigen::Index i = 0; i < 5; ++i) CHECK(w[static_cast<size_t>(i)] == z[i]);
}

TEST_CASE("box bounds are a smooth map into the box, not clipping", "[search][param]") {
  Parameterization box(WeightKind::Free, 2, 1, -0.5, 2.0);
  Eigen::VectorXd z(2);
  z << 0.0, 1.0;
  auto w = box.weights(z);
  CHECK(w[0] == Approx(0.75).epsilon(1e-15));                                 // midpoint
  CHECK(w[1] == Approx(-0.5 + 2.5 / (1.0 + std::exp(-1.0))).epsilon(1e-15));  // logistic
  for (double x : box.weights(random_point(2, 50.0, 2))) {
    CHECK(x >= -0.5);
    CHECK(x <= 2.0);
  }
  // Strictly monotone (no flat clipped region) far outside [lo, hi] in z.
  Eigen::VectorXd a(2), b(2);
  a << 5.0, -5.0;
  b << 6.0, -6.0;
  CHECK(box.weights(b)[0] > box.weights(a)[0]);
  CHECK(box.weights(b)[1] < box.weights(a)[1]);
  for (double w0 : box.weights(box.initial_point())) CHECK(w0 == Approx(0.5).epsilon(1e-14));

  Parameterization lower(WeightKind::Free, 2, 1, 0.1, std::nullopt);
  CHECK(lower.weights(Eigen::VectorXd::Zero(2))[0] == Approx(0.1 + std::log(2.0)).epsilon(1e-15));
  for (double w0 : lower.weights(lower.initial_point())) CHECK(w0 == Approx(0.5).epsilon(1e-14));
  Parameterization upper(WeightKind::Free, 4, 1, std::nullopt, 0.2);
  CHECK(upper.weights(Eigen::VectorXd::Zero(4))[0] == Approx(0.2 - std::log(2.0)).epsilon(1e-15));
  for (double x : upper.weights(random_point(4, 40.0, 3))) CHECK(x <= 0.2);
  // 1/N = 0.25 lies above the upper bound: the start is upper - 1/N.
  for (double w0 : upper.weights(upper.initial_point())) CHECK(w0 == Approx(-0.05).epsilon(1e-12));
  // Nonnegative with an upper bound: (0, hi).
  Parameterization nn(WeightKind::Nonnegative, 3, 1, std::nullopt, 1.0);
  for (double x : nn.weights(random_point(3, 40.0, 4))) {
    CHECK(x >= 0.0);
    CHECK(x <= 1.0);
  }
  for (double w0 : nn.weights(nn.initial_point())) CHECK(w0 == Approx(1.0 / 3.0).epsilon(1e-14));
}

TEST_CASE("bad parameterizations are input errors", "[search][param]") {
  CHECK_THROWS_AS(Parameterization(WeightKind::Simplex, 3, 1, 0.0, 1.0), InputError);
  CHECK_THROWS_AS(Parameterization(WeightKind::Free, 3, 1, 1.0, 1.0), InputError);
  CHECK_THROWS_AS(Parameterization(WeightKind::Nonnegative, 3, 1, std::nullopt, -1.0), InputError);
  CHECK_THROWS_AS(Parameterization(WeightKind::Free, 0), InputError);
  CHECK_THROWS_AS(Parameterization(WeightKind::Free, 3, 0), InputError);
  CHECK_THROWS_AS(weight_kind("softmax"), InputError);
  SearchConfig c;
  c.granularity = "tensor";
  CHECK_THROWS_AS(Parameterization::from_config(c, 3), InputError);
}

TEST_CASE("uniform_distance: 0 at the uniform soup, 1 at one checkpoint, mean over groups",
          "[search][param]") {
  CHECK(search::uniform_distance(std::vector<double>{0.25, 0.25, 0.25, 0.25}, 4) ==
        Approx(0.0).margin(1e-15));
  CHECK(search::uniform_distance(std::vector<double>{0, 0, 1, 0}, 4) == Approx(1.0));
  // Half way between uniform and one-hot: a quarter of the squared distance.
  CHECK(search::uniform_distance(std::vector<double>{0.125, 0.125, 0.625, 0.125}, 4) ==
        Approx(0.25));
  // Two groups: one uniform, one one-hot.
  CHECK(search::uniform_distance(std::vector<double>{0.5, 0.5, 1, 0}, 2) == Approx(0.5));
  CHECK(search::uniform_distance(std::vector<double>{1.0}, 1) == 0.0);
}
