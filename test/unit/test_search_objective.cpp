// Objectives against hand-computed values.
#include <catch2/catch.hpp>
#include <cmath>

#include "kintsugi/common/error.hpp"
#include "kintsugi/search/objective.hpp"

using namespace kintsugi;
using namespace kintsugi::search;

namespace {
const std::vector<std::string> kTasks = {"a", "b", "c"};
}

TEST_CASE("mean and weighted objectives", "[search][objective]") {
  ObjectiveConfig cfg;
  auto mean = Objective::build(cfg, kTasks, Eigen::MatrixXd());
  CHECK(mean({0.2, 0.4, 0.9}) == Approx(0.5).epsilon(1e-15));

  cfg.kind = "weighted";
  cfg.weights = {{"a", 1.0}, {"c", 3.0}};  // b gets 0
  auto weighted = Objective::build(cfg, kTasks, Eigen::MatrixXd());
  CHECK(weighted({0.2, 0.4, 0.9}) == Approx((0.2 + 2.7) / 4.0).epsilon(1e-15));
  CHECK(weighted.coefficients() == std::vector<double>{0.25, 0.0, 0.75});

  cfg.weights = {{"a", 1.0}, {"typo", 1.0}};
  CHECK_THROWS_AS(Objective::build(cfg, kTasks, Eigen::MatrixXd()), InputError);
  cfg.weights = {{"a", -1.0}, {"b", 2.0}};
  CHECK_THROWS_AS(Objective::build(cfg, kTasks, Eigen::MatrixXd()), InputError);
  cfg.weights = {};
  CHECK_THROWS_AS(Objective::build(cfg, kTasks, Eigen::MatrixXd()), InputError);
  cfg.kind = "median";
  CHECK_THROWS_AS(Objective::build(cfg, kTasks, Eigen::MatrixXd()), InputError);
}

TEST_CASE("augmented Chebyshev with ideal and nadir from the pool", "[search][objective]") {
  const std::vector<std::string> tasks = {"a", "b"};
  Eigen::MatrixXd pool(3, 2);
  pool << 0.1, 0.8,  //
      0.5, 0.2,      //
      0.3, 0.5;
  ObjectiveConfig cfg;
  cfg.kind = "chebyshev";
  cfg.preference = {{"a", 1.0}, {"b", 3.0}};
  cfg.chebyshev_rho = 1e-3;
  auto ch = Objective::build(cfg, tasks, pool);
  CHECK(ch.ideal() == std::vector<double>{0.5, 0.8});
  CHECK(ch.nadir() == std::vector<double>{0.1, 0.2});
  // d = ((0.5-0.4)/0.4, (0.8-0.5)/0.6) = (0.25, 0.5); p = (0.25, 0.75);
  // max(p d) = 0.375; rho * sum d = 0.00075.
  CHECK(ch({0.4, 0.5}) == Approx(-0.37575).epsilon(1e-14));
  // The ideal point itself scores 0; beating it scores above 0.
  CHECK(ch({0.5, 0.8}) == Approx(0.0).margin(1e-15));
  CHECK(ch({0.6, 0.9}) > 0.0);
  // Without preferences: equal ones. d = (0.25, 0.5): max(0.125, 0.25) + 1e-3 * 0.75.
  cfg.preference = {};
  auto eq = Objective::build(cfg, tasks, pool);
  CHECK(eq({0.4, 0.5}) == Approx(-0.25075).epsilon(1e-14));
  // A task whose pool scores are all equal gets range 1.
  Eigen::MatrixXd same(2, 2);
  same << 0.3, 0.4,  //
      0.3, 0.6;
  auto flat = Objective::build(cfg, tasks, same);
  // d = ((0.3-0.1)/1, (0.6-0.5)/0.2) = (0.2, 0.5): max(0.1, 0.25) + 1e-3 * 0.7.
  CHECK(flat({0.1, 0.5}) == Approx(-0.2507).epsilon(1e-14));
  CHECK_THROWS_AS(Objective::build(cfg, tasks, Eigen::MatrixXd(0, 2)), InputError);
}

TEST_CASE("constrained objective with floors and a penalty", "[search][objective]") {
  ObjectiveConfig cfg;
  cfg.kind = "constrained";
  cfg.maximize = kTasks[0];  // "a" (a literal here trips GCC 12's false -Wrestrict)
  cfg.floors = {{"b", 0.5}, {"c", 0.1}};
  cfg.penalty = 10.0;
  auto o = Objective::build(cfg, kTasks, Eigen::MatrixXd());
  CHECK(o({0.7, 0.45, 0.2}) == Approx(0.7 - 10.0 * 0.05).epsilon(1e-14));
  CHECK(o({0.6, 0.6, 0.2}) == Approx(0.6).epsilon(1e-15));
  CHECK(o({0.9, 0.4, 0.0}) == Approx(0.9 - 10.0 * (0.1 + 0.1)).epsilon(1e-14));
  cfg.maximize = std::string(1, 'z');
  CHECK_THROWS_AS(Objective::build(cfg, kTasks, Eigen::MatrixXd()), InputError);
  cfg.maximize.clear();
  CHECK_THROWS_AS(Objective::build(cfg, kTasks, Eigen::MatrixXd()), InputError);
}

TEST_CASE("scores are checked and oriented", "[search][objective]") {
  auto mean = Objective::build(ObjectiveConfig{}, kTasks, Eigen::MatrixXd());
  CHECK_THROWS_AS(mean({0.1, std::nan(""), 0.2}), InputError);
  CHECK_THROWS_AS(mean({0.1, 0.2}), InputError);
  CHECK(orient_scores({0.5, 1.25}, {true, false}) == std::vector<double>{0.5, -1.25});
}
