// Random search: determinism, its sampling distribution, best tracking, resume.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>

#include "kintsugi/common/error.hpp"
#include "kintsugi/search/benchmark.hpp"
#include "kintsugi/search/random_search.hpp"

using namespace kintsugi;
using namespace kintsugi::search;

namespace {
OptimizerOptions random_options(uint64_t seed) {
  OptimizerOptions o;
  o.method = "random";
  o.seed = seed;
  o.sigma0 = 0.5;
  o.max_evaluations = 2000;
  o.population = 8;
  return o;
}
}  // namespace

TEST_CASE("random search is deterministic per seed and differs across seeds", "[search][random]") {
  const Eigen::VectorXd x0 = Eigen::VectorXd::Constant(4, 0.25);
  auto a = make_optimizer(random_options(3), x0);
  auto b = make_optimizer(random_options(3), x0);
  auto c = make_optimizer(random_options(4), x0);
  CHECK(a->kind() == "random");
  for (int g = 0; g < 5; ++g) {
    const auto xa = a->ask(), xb = b->ask(), xc = c->ask();
    REQUIRE(xa.size() == 8);
    for (size_t k = 0; k < xa.size(); ++k) {
      CHECK(std::memcmp(xa[k].data(), xb[k].data(), 4 * sizeof(double)) == 0);
      CHECK((xa[k] - xc[k]).norm() > 0);
    }
    std::vector<double> v;
    for (const auto& x : xa) v.push_back(sphere(x));
    a->tell(v);
    b->tell(v);
    c->tell(v);
  }
}

TEST_CASE("random search samples x0 + sigma0 N(0, I) and keeps the best", "[search][random]") {
  const Eigen::VectorXd x0 = Eigen::VectorXd::Constant(3, 1.0);
  auto o = random_options(9);
  o.goal = Goal::Maximize;
  auto opt = make_optimizer(o, x0);
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(3), sum_sq = Eigen::VectorXd::Zero(3);
  double best = -1e300;
  Eigen::VectorXd best_x;
  int count = 0;
  while (!opt->done()) {
    const auto xs = opt->ask();
    std::vector<double> v;
    for (const auto& x : xs) {
      sum += x;
      sum_sq += (x - x0).cwiseProduct(x - x0);
      ++count;
      v.push_back(-sphere(x));
      if (v.back() > best) {
        best = v.back();
        best_x = x;
      }
    }
    opt->tell(v);
  }
  CHECK(count == 2000);
  CHECK(opt->stop_reason() == "maxevals");
  for (Eigen::Index i = 0; i < 3; ++i) {
    CHECK(sum[i] / count == Approx(1.0).margin(0.05));      // sd of the mean 0.011
    CHECK(sum_sq[i] / count == Approx(0.25).margin(0.03));  // sigma0^2; sd 0.008
  }
  CHECK(opt->best_value() == best);
  CHECK(opt->best_point() == best_x);
}

TEST_CASE("random search resumes exactly and rejects NaN", "[search][random][resume]") {
  const Eigen::VectorXd x0 = Eigen::VectorXd::Zero(5);
  auto whole = make_optimizer(random_options(5), x0);
  auto part = make_optimizer(random_options(5), x0);
  std::vector<Eigen::VectorXd> a, b;
  auto step = [](Optimizer& opt, std::vector<Eigen::VectorXd>& log) {
    const auto xs = opt.ask();
    std::vector<double> v;
    for (const auto& x : xs) {
      v.push_back(rosenbrock(x));
      log.push_back(x);
    }
    opt.tell(v);
  };
  for (int g = 0; g < 20; ++g) step(*whole, a);
  for (int g = 0; g < 7; ++g) step(*part, b);
  auto resumed = load_optimizer(part->save());
  for (int g = 7; g < 20; ++g) step(*resumed, b);
  REQUIRE(a.size() == b.size());
  for (size_t k = 0; k < a.size(); ++k)
    CHECK(std::memcmp(a[k].data(), b[k].data(), 5 * sizeof(double)) == 0);
  CHECK(resumed->save() == whole->save());

  auto xs = resumed->ask();
  std::vector<double> v(xs.size(), 0.0);
  v.back() = std::nan("");
  CHECK_THROWS_AS(resumed->tell(v), InputError);
}

TEST_CASE("random search: extend_budget continues like a search with the larger budget",
          "[search][random][resume]") {
  const Eigen::VectorXd x0 = Eigen::VectorXd::Zero(5);
  auto step_all = [](Optimizer& opt, std::vector<Eigen::VectorXd>& log) {
    while (!opt.done()) {
      const auto xs = opt.ask();
      std::vector<double> v;
      for (const auto& x : xs) {
        v.push_back(rosenbrock(x));
        log.push_back(x);
      }
      opt.tell(v);
    }
  };
  auto o = random_options(9);
  o.max_evaluations = 160;  // 20 generations of 8
  auto whole = make_optimizer(o, x0);
  std::vector<Eigen::VectorXd> a, b;
  step_all(*whole, a);
  o.max_evaluations = 56;  // 7 generations
  auto part = make_optimizer(o, x0);
  step_all(*part, b);
  REQUIRE(part->stop_reason() == "maxevals");
  auto resumed = load_optimizer(part->save());
  resumed->extend_budget(160);
  CHECK_FALSE(resumed->done());
  step_all(*resumed, b);
  REQUIRE(a.size() == b.size());
  for (size_t k = 0; k < a.size(); ++k)
    CHECK(std::memcmp(a[k].data(), b[k].data(), 5 * sizeof(double)) == 0);
  CHECK(resumed->save() == whole->save());
}
