// CMA-ES: default parameters against the tutorial's formulas (recomputed here
// independently), convergence, stop rules, IPOP restarts, exact resume.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kintsugi/common/error.hpp"
#include "kintsugi/search/benchmark.hpp"
#include "kintsugi/search/cmaes.hpp"

using namespace kintsugi;
using namespace kintsugi::search;

namespace {

// Runs the ask/tell loop for at most `generations` generations on f, appending
// every asked candidate to `log`.
void drive(Optimizer& opt, double (*f)(const Eigen::VectorXd&), int generations,
           std::vector<Eigen::VectorXd>* log = nullptr) {
  for (int g = 0; g < generations && !opt.done(); ++g) {
    const auto xs = opt.ask();
    std::vector<double> v(xs.size());
    for (size_t k = 0; k < xs.size(); ++k) {
      v[k] = f(xs[k]);
      if (log) log->push_back(xs[k]);
    }
    opt.tell(v);
  }
}

bool bitwise_equal(const Eigen::VectorXd& a, const Eigen::VectorXd& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<size_t>(a.size())) == 0;
}

OptimizerOptions minimize_options(uint64_t seed, double sigma0, size_t budget) {
  OptimizerOptions o;
  o.goal = Goal::Minimize;
  o.seed = seed;
  o.sigma0 = sigma0;
  o.max_evaluations = budget;
  return o;
}

double flat(const Eigen::VectorXd&) {
  return 3.0;
}

// Values that do not depend on x in any learnable way: a hash of its bits.
double noise(const Eigen::VectorXd& x) {
  uint64_t h = 1469598103934665603ull;
  for (Eigen::Index i = 0; i < x.size(); ++i) {
    uint64_t b;
    std::memcpy(&b, &x[i], sizeof b);
    h = (h ^ b) * 1099511628211ull;
  }
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

}  // namespace

TEST_CASE("CMA-ES default parameters follow the tutorial's Table 1", "[search][cmaes]") {
  for (int64_t n : {1, 2, 3, 5, 10, 20, 40, 100}) {
    for (bool active : {false, true}) {
      const CmaesParameters p = CmaesParameters::defaults(n, 0, active);
      const double N = static_cast<double>(n);
      // lambda = 4 + floor(3 ln n), mu = floor(lambda / 2).
      const int64_t lambda = 4 + static_cast<int64_t>(3.0 * std::log(N));
      REQUIRE(p.lambda == lambda);
      REQUIRE(p.mu == lambda / 2);
      // Positive weights normalized first, then mu_eff = 1 / sum w_i^2 (an
      // equivalent form of (sum w')^2 / sum w'^2).
      std::vector<double> w(static_cast<size_t>(lambda));
      double pos = 0, neg = 0;
      for (int64_t i = 1; i <= lambda; ++i) {
        w[static_cast<size_t>(i - 1)] =
            std::log((lambda + 1) / 2.0) - std::log(static_cast<double>(i));
        (i <= p.mu ? pos : neg) += w[static_cast<size_t>(i - 1)];
      }
      double inv_mueff = 0, inv_mueff_minus = 0;
      for (int64_t i = 0; i < lambda; ++i) {
        const double wi = w[static_cast<size_t>(i)];
        if (i < p.mu)
          inv_mueff += (wi / pos) * (wi / pos);
        else
          inv_mueff_minus += (wi / neg) * (wi / neg);
      }
      const double mueff = 1.0 / inv_mueff;
      CHECK(p.mueff == Approx(mueff).epsilon(1e-13));
      if (lambda > p.mu) CHECK(p.mueff_minus == Approx(1.0 / inv_mueff_minus).epsilon(1e-13));
      const double cs = (mueff + 2) / (N + mueff + 5);
      const double ds = 1 + 2 * std::max(0.0, std::sqrt((mueff - 1) / (N + 1)) - 1) + cs;
      const double cc = (4 + mueff / N) / (N + 4 + 2 * mueff / N);
      const double c1 = 2 / ((N + 1.3) * (N + 1.3) + mueff);
      const double cmu =
          std::min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((N + 2) * (N + 2) + mueff));
      const double chin = std::sqrt(N) * (1 - 1 / (4 * N) + 1 / (21 * N * N));
      CHECK(p.cs == Approx(cs).epsilon(1e-13));
      CHECK(p.ds == Approx(ds).epsilon(1e-13));
      CHECK(p.cc == Approx(cc).epsilon(1e-13));
      CHECK(p.c1 == Approx(c1).epsilon(1e-13));
      CHECK(p.cmu == Approx(cmu).epsilon(1e-13));
      CHECK(p.chin == Approx(chin).epsilon(1e-13));
      for (int64_t i = 0; i < p.mu; ++i)
        CHECK(p.weights[i] == Approx(w[static_cast<size_t>(i)] / pos).epsilon(1e-13));
      double sum_neg = 0;
      for (int64_t i = p.mu; i < lambda; ++i) {
        if (!active) {
          CHECK(p.weights[i] == 0.0);
          continue;
        }
        // Negative where the raw weight is (for odd lambda the middle one is 0).
        CHECK((w[static_cast<size_t>(i)] < 0 ? p.weights[i] < 0.0 : p.weights[i] == 0.0));
        sum_neg += p.weights[i];
        // Negative weights keep the raw weights' proportions.
        if (w[static_cast<size_t>(i)] < 0)
          CHECK(p.weights[i] / p.weights[lambda - 1] ==
                Approx(w[static_cast<size_t>(i)] / w[static_cast<size_t>(lambda - 1)])
                    .epsilon(1e-12));
      }
      if (active && lambda > p.mu) {
        const double mueff_minus = 1.0 / inv_mueff_minus;
        const double bound =
            std::min({1 + c1 / cmu, 1 + 2 * mueff_minus / (mueff + 2), (1 - c1 - cmu) / (N * cmu)});
        CHECK(-sum_neg == Approx(bound).epsilon(1e-12));
      }
    }
  }
  // Hand values for n = 10 (lambda 10, mu 5): w' = ln 5.5 - ln i sums to 3.736249
  // with squares summing to 4.407400, so mu_eff = 3.16730; c1 = 2 / (11.3^2 + mu_eff).
  const auto p10 = CmaesParameters::defaults(10, 0, false);
  CHECK(p10.lambda == 10);
  CHECK(p10.mueff == Approx(3.16730).epsilon(1e-5));
  CHECK(p10.c1 == Approx(0.0152837).epsilon(1e-5));
  // A chosen population replaces the default.
  CHECK(CmaesParameters::defaults(10, 24, false).mu == 12);
}

TEST_CASE("CMA-ES minimizes the sphere and maximizes its negative", "[search][cmaes]") {
  auto o = minimize_options(3, 0.5, 4000);
  o.target = 1e-12;
  auto opt = make_optimizer(o, Eigen::VectorXd::Constant(6, 2.0));
  drive(*opt, sphere, 100000);
  CHECK(opt->stop_reason() == "target");
  CHECK(opt->best_value() <= 1e-12);
  CHECK(sphere(opt->best_point()) == opt->best_value());
  CHECK(opt->evaluations() < 2500);

  o.goal = Goal::Maximize;
  o.target = -1e-12;
  auto maxer = make_optimizer(o, Eigen::VectorXd::Constant(6, 2.0));
  while (!maxer->done()) {
    const auto xs = maxer->ask();
    std::vector<double> v;
    for (const auto& x : xs) v.push_back(-sphere(x));
    maxer->tell(v);
  }
  CHECK(maxer->stop_reason() == "target");
  CHECK(maxer->best_value() >= -1e-12);
  CHECK(maxer->best_value() == -sphere(maxer->best_point()));
}

TEST_CASE("tell rejects NaN, infinities and a wrong count", "[search][cmaes]") {
  auto opt = make_optimizer(minimize_options(1, 0.3, 100), Eigen::VectorXd::Zero(3));
  const auto xs = opt->ask();
  std::vector<double> v(xs.size(), 1.0);
  v[2] = std::nan("");
  CHECK_THROWS_AS(opt->tell(v), InputError);
  v[2] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(opt->tell(v), InputError);
  v[2] = -std::numeric_limits<double>::infinity();
  CHECK_THROWS_AS(opt->tell(v), InputError);
  CHECK_THROWS_AS(opt->tell(std::vector<double>(xs.size() + 1, 1.0)), InputError);
  CHECK(opt->evaluations() == 0);  // nothing was taken in
  v[2] = 1e30;                     // a failed evaluation: a finite penalty
  opt->tell(v);
  CHECK(opt->evaluations() == static_cast<int64_t>(xs.size()));
}

TEST_CASE("the budget cuts the last generation short and ends the search", "[search][cmaes]") {
  auto o = minimize_options(1, 0.3, 25);
  o.population = 10;
  auto opt = make_optimizer(o, Eigen::VectorXd::Zero(4));
  std::vector<size_t> sizes;
  while (!opt->done()) {
    const auto xs = opt->ask();
    sizes.push_back(xs.size());
    std::vector<double> v;
    for (const auto& x : xs) v.push_back(sphere(x));
    opt->tell(v);
  }
  CHECK(sizes == std::vector<size_t>{10, 10, 5});
  CHECK(opt->evaluations() == 25);
  CHECK(opt->stop_reason() == "maxevals");
  CHECK_THROWS_AS(opt->ask(), RuntimeError);
}

TEST_CASE("ask is pure: same state, same candidates; seeds differ", "[search][cmaes]") {
  auto a = make_optimizer(minimize_options(7, 0.3, 1000), Eigen::VectorXd::Zero(5));
  auto b = make_optimizer(minimize_options(7, 0.3, 1000), Eigen::VectorXd::Zero(5));
  auto c = make_optimizer(minimize_options(8, 0.3, 1000), Eigen::VectorXd::Zero(5));
  const auto xa = a->ask();
  const auto xa2 = a->ask();
  const auto xb = b->ask();
  const auto xc = c->ask();
  for (size_t k = 0; k < xa.size(); ++k) {
    CHECK(bitwise_equal(xa[k], xa2[k]));
    CHECK(bitwise_equal(xa[k], xb[k]));
    CHECK(!bitwise_equal(xa[k], xc[k]));
  }
}

TEST_CASE("stop rules: flatfitness, tolfun, tolx, condition, stagnation", "[search][cmaes]") {
  {
    // A constant objective: every generation is flat, sigma widens each time,
    // and the search ends after kFlatFitnessGenerations of them, not by tolfun.
    auto opt = make_optimizer(minimize_options(1, 0.3, 100000), Eigen::VectorXd::Zero(4));
    drive(*opt, flat, 1000);
    CHECK(opt->stop_reason() == "flatfitness");
    CHECK(opt->generation() == kFlatFitnessGenerations);
    CHECK(dynamic_cast<const Cmaes&>(*opt).state().sigma > 0.3 * 20);
  }
  {
    // tolfun: the sphere converges until a generation's values and the recent
    // best values all lie within tolfun.
    auto o = minimize_options(6, 1.0, 100000);
    o.tolfun = 1e-9;
    o.tolx = 0;
    o.stagnation = false;
    auto opt = make_optimizer(o, Eigen::VectorXd::Constant(4, 1.0));
    drive(*opt, sphere, 100000);
    REQUIRE(opt->stop_reason() == "tolfun");
    const auto& s = dynamic_cast<const Cmaes&>(*opt).state();
    CHECK(s.last_worst - s.best_history.back() < 1e-9);
    CHECK(s.flat_generations == 0);
  }
  {
    auto o = minimize_options(2, 1.0, 100000);
    o.tolx = 1e-3;
    o.tolfun = 0;
    o.tolfunhist = 0;
    auto opt = make_optimizer(o, Eigen::VectorXd::Constant(4, 1.0));
    drive(*opt, sphere, 100000);
    REQUIRE(opt->stop_reason() == "tolx");
    const auto& s = dynamic_cast<const Cmaes&>(*opt).state();
    for (Eigen::Index i = 0; i < 4; ++i) CHECK(s.sigma * std::sqrt(s.C(i, i)) < 1e-3);
  }
  {
    auto o = minimize_options(3, 1.0, 100000);
    o.max_condition = 1e4;  // the ellipsoid's Hessian has condition 1e6
    auto opt = make_optimizer(o, Eigen::VectorXd::Constant(6, 1.0));
    drive(*opt, ellipsoid, 100000);
    REQUIRE(opt->stop_reason() == "condition");
    const auto& s = dynamic_cast<const Cmaes&>(*opt).state();
    CHECK(std::pow(s.D.maxCoeff() / s.D.minCoeff(), 2) > 1e4);
  }
  {
    auto o = minimize_options(4, 0.3, 200000);
    auto opt = make_optimizer(o, Eigen::VectorXd::Zero(3));
    drive(*opt, noise, 100000);
    CHECK(opt->stop_reason() == "stagnation");
    // Not before the window of 120 + 30 n / lambda generations.
    CHECK(opt->generation() >= 120 + 30 * 3 / 7);
  }
}

TEST_CASE("IPOP restarts double the population and keep the best", "[search][cmaes]") {
  auto o = minimize_options(5, 0.3, 100000);
  o.max_restarts = 2;
  auto opt = make_optimizer(o, Eigen::VectorXd::Zero(5));  // default lambda 8
  std::vector<size_t> sizes;
  while (!opt->done()) {
    const auto xs = opt->ask();
    sizes.push_back(xs.size());
    opt->tell(std::vector<double>(xs.size(), 3.0));  // flat: flatfitness after 10 generations
  }
  std::vector<size_t> expected;
  for (size_t lambda : {8, 16, 32})
    expected.insert(expected.end(), kFlatFitnessGenerations, lambda);
  CHECK(sizes == expected);
  CHECK(opt->restart() == 2);
  CHECK(opt->stop_reason() == "flatfitness");
  CHECK(opt->evaluations() == 10 * (8 + 16 + 32));
  const auto& log = dynamic_cast<const Cmaes&>(*opt).state().restart_log;
  CHECK(log ==
        "restart 1 at evaluation 80 after flatfitness\nrestart 2 at evaluation 240 after "
        "flatfitness\n");
}

TEST_CASE("a flat generation widens sigma by exp(0.2 + cs/ds) and otherwise updates as ranked",
          "[search][cmaes]") {
  // Twin searches from the same seed: one is told ties, the other distinct
  // values in the same (index) order, which the stable ranking gives the ties.
  // Mean, paths and covariance depend only on that order, so they must agree,
  // and sigma must differ by exactly the escape factor of Hansen's purecmaes.m.
  const auto o = minimize_options(21, 0.4, 100000);
  const Eigen::VectorXd x0 = Eigen::VectorXd::Constant(5, 0.2);
  auto tied = make_optimizer(o, x0);
  auto ranked = make_optimizer(o, x0);
  const auto xs = tied->ask();
  REQUIRE(xs.size() == ranked->ask().size());
  tied->tell(std::vector<double>(xs.size(), 1.0));
  std::vector<double> increasing(xs.size());
  for (size_t k = 0; k < xs.size(); ++k) increasing[k] = static_cast<double>(k);
  ranked->tell(increasing);
  const auto& a = dynamic_cast<const Cmaes&>(*tied).state();
  const auto& b = dynamic_cast<const Cmaes&>(*ranked).state();
  CHECK(bitwise_equal(a.mean, b.mean));
  CHECK(bitwise_equal(a.ps, b.ps));
  CHECK(a.C == b.C);
  CHECK(a.flat_generations == 1);
  CHECK(b.flat_generations == 0);
  CHECK(a.sigma == Approx(b.sigma * std::exp(0.2 + a.p.cs / a.p.ds)).epsilon(1e-14));
  CHECK(!tied->done());

  // A ranked generation resets the count; ties in the top 70 % only are flat.
  for (int g = 0; g < 3; ++g) {
    const auto n = tied->ask().size();
    tied->tell(std::vector<double>(n, 1.0));
  }
  CHECK(dynamic_cast<const Cmaes&>(*tied).state().flat_generations == 4);
  {
    const auto n = tied->ask().size();
    std::vector<double> v(n, 1.0);
    v.back() = 2.0;  // the worst differs, the best 70 % still tie: flat
    tied->tell(v);
  }
  CHECK(dynamic_cast<const Cmaes&>(*tied).state().flat_generations == 5);
  {
    const auto n = tied->ask().size();
    std::vector<double> v(n, 1.0);
    v[0] = 0.5;  // a strictly best candidate: ranked
    tied->tell(v);
  }
  CHECK(dynamic_cast<const Cmaes&>(*tied).state().flat_generations == 0);
  CHECK(!tied->done());
}

TEST_CASE("resume keeps the count of flat generations", "[search][cmaes][resume]") {
  auto o = minimize_options(31, 0.3, 100000);
  o.max_restarts = 2;
  const Eigen::VectorXd x0 = Eigen::VectorXd::Zero(3);
  std::vector<Eigen::VectorXd> full, resumed;
  auto whole = make_optimizer(o, x0);
  drive(*whole, flat, 1000, &full);
  auto first = make_optimizer(o, x0);
  drive(*first, flat, 13, &resumed);  // restart 1, three flat generations in
  Record saved = first->save();
  REQUIRE(saved.ints.at("flat_generations") == std::vector<int64_t>{3});
  auto second = load_optimizer(saved);
  drive(*second, flat, 1000, &resumed);
  REQUIRE(resumed.size() == full.size());
  for (size_t k = 0; k < full.size(); ++k) REQUIRE(bitwise_equal(full[k], resumed[k]));
  CHECK(second->save() == whole->save());
  CHECK(second->stop_reason() == "flatfitness");

  // A state written before the rule (no counter) loads with a count of 0.
  saved.ints.erase("flat_generations");
  auto old = load_optimizer(saved);
  CHECK(dynamic_cast<const Cmaes&>(*old).state().flat_generations == 0);
  saved.ints["flat_generations"] = {-1};
  CHECK_THROWS_AS(load_optimizer(saved), InputError);
}

TEST_CASE("resume is exact: save, load into a fresh object, continue", "[search][cmaes][resume]") {
  struct Case {
    const char* name;
    bool active;
    size_t restarts;
    double tolx;
    double (*f)(const Eigen::VectorXd&);
  };
  const Case cases[] = {{"plain", false, 0, 1e-11, rosenbrock},
                        {"active + restarts", true, 3, 0.1, sphere}};
  for (const auto& c : cases) {
    SECTION(c.name) {
      auto o = minimize_options(11, 0.5, 100000);
      o.active = c.active;
      o.max_restarts = c.restarts;
      o.tolx = c.tolx;  // large in the second case, so restarts happen early
      const Eigen::VectorXd x0 = Eigen::VectorXd::Constant(6, 0.5);
      std::vector<Eigen::VectorXd> full, resumed;
      auto whole = make_optimizer(o, x0);
      drive(*whole, c.f, 120, &full);

      auto first = make_optimizer(o, x0);
      drive(*first, c.f, 37, &resumed);
      const int64_t restarts_before = first->restart();
      (void)first->ask();  // saving between ask and tell is allowed
      const Record saved = first->save();
      first.reset();
      Record copy = saved;  // what the state file gives back
      auto second = load_optimizer(copy);
      CHECK(second->kind() == "cmaes");
      drive(*second, c.f, 120 - 37, &resumed);

      REQUIRE(resumed.size() == full.size());
      for (size_t k = 0; k < full.size(); ++k) REQUIRE(bitwise_equal(full[k], resumed[k]));
      CHECK(second->save() == whole->save());
      if (c.restarts > 0) {  // restarts both before and after the save
        CHECK(restarts_before >= 1);
        CHECK(whole->restart() > restarts_before);
      }
      CHECK(whole->evaluations() == second->evaluations());
    }
  }
}

TEST_CASE("a saved state with a NaN or an infinity is refused", "[search][cmaes][resume]") {
  // Before the first evaluation the best value is +inf: that state loads.
  auto fresh = make_optimizer(minimize_options(1, 0.3, 100), Eigen::VectorXd::Zero(3));
  CHECK(load_optimizer(fresh->save())->evaluations() == 0);
  auto opt = make_optimizer(minimize_options(1, 0.3, 100), Eigen::VectorXd::Zero(3));
  drive(*opt, sphere, 2);
  const Record r = opt->save();
  CHECK(load_optimizer(r)->evaluations() == opt->evaluations());
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  struct Damage {
    const char* key;
    size_t at;
    double value;
  };
  for (const Damage d :
       {Damage{"C", 4, nan}, Damage{"sigma", 0, inf}, Damage{"mean", 2, -inf},
        Damage{"best_f", 0, nan}, Damage{"best_f", 0, -inf}, Damage{"best_history", 0, nan},
        Damage{"weights", 1, inf}, Damage{"x0", 0, nan}}) {
    INFO(d.key << "[" << d.at << "] = " << d.value);
    Record bad = r;
    bad.reals.at(d.key).at(d.at) = d.value;
    CHECK_THROWS_WITH(load_optimizer(bad),
                      Catch::Contains(fmt::format("optimizer state: '{}'[{}] is", d.key, d.at)) &&
                          Catch::Contains("not a finite number"));
  }
}

TEST_CASE("a malformed state is an input error", "[search][cmaes][resume]") {
  auto opt = make_optimizer(minimize_options(1, 0.3, 100), Eigen::VectorXd::Zero(3));
  drive(*opt, sphere, 2);
  Record r = opt->save();
  Record missing = r;
  missing.reals.erase("C");
  CHECK_THROWS_AS(load_optimizer(missing), InputError);
  Record wrong = r;
  wrong.reals["mean"].push_back(0.0);
  CHECK_THROWS_AS(load_optimizer(wrong), InputError);
  Record kind = r;
  kind.strings["kind"] = "nelder-mead";
  CHECK_THROWS_AS(load_optimizer(kind), InputError);
  Cmaes fresh;
  Record random_kind = r;
  random_kind.strings["kind"] = "random";
  CHECK_THROWS_AS(fresh.load(random_kind), InputError);
}

TEST_CASE("extend_budget: a search stopped at its budget continues like one with the larger budget",
          "[search][cmaes][resume]") {
  auto o = minimize_options(5, 0.5, 100);
  o.population = 10;  // both budgets are whole generations
  const Eigen::VectorXd x0 = Eigen::VectorXd::Constant(6, 0.5);
  std::vector<Eigen::VectorXd> full, extended;
  auto whole = make_optimizer(o, x0);
  drive(*whole, rosenbrock, 1000, &full);
  REQUIRE(whole->stop_reason() == "maxevals");
  REQUIRE(whole->evaluations() == 100);

  o.max_evaluations = 40;
  auto first = make_optimizer(o, x0);
  drive(*first, rosenbrock, 1000, &extended);
  REQUIRE(first->stop_reason() == "maxevals");
  const Record saved = first->save();
  auto second = load_optimizer(saved);  // restored from the state, as on --resume
  second->extend_budget(100);
  CHECK_FALSE(second->done());
  CHECK(second->stop_reason().empty());
  drive(*second, rosenbrock, 1000, &extended);
  REQUIRE(extended.size() == full.size());
  for (size_t k = 0; k < full.size(); ++k) REQUIRE(bitwise_equal(full[k], extended[k]));
  CHECK(second->save() == whole->save());

  // A budget not above the evaluations done leaves the search ended.
  auto same = load_optimizer(saved);
  same->extend_budget(40);
  CHECK(same->done());
  CHECK(same->stop_reason() == "maxevals");
  CHECK_THROWS_AS(same->extend_budget(0), InputError);

  // A search ended by a stop rule stays ended.
  auto stopped = make_optimizer(minimize_options(31, 0.3, 100000), Eigen::VectorXd::Zero(3));
  drive(*stopped, flat, 1000);
  REQUIRE(stopped->stop_reason() == "flatfitness");
  stopped->extend_budget(200000);
  CHECK(stopped->done());
  CHECK(stopped->stop_reason() == "flatfitness");
}

TEST_CASE("CMA-ES keeps sigma and the mean of every generation, across restarts", "[search]") {
  // What the HTML report draws: after each tell, the step size and the mean
  // the next generation samples around, in order, over IPOP restarts too.
  auto o = minimize_options(5, 0.5, 100000);
  o.max_restarts = 2;
  o.tolfun = 1e-3;  // restart early
  const Eigen::VectorXd x0 = Eigen::VectorXd::Constant(3, 0.7);
  auto opt = make_optimizer(o, x0);
  size_t told = 0;
  for (int g = 0; g < 200 && !opt->done(); ++g) {
    const auto xs = opt->ask();
    std::vector<double> v;
    for (const auto& x : xs) v.push_back(sphere(x));
    opt->tell(v);
    ++told;
    const auto& s = dynamic_cast<const Cmaes&>(*opt).state();
    REQUIRE(s.sigma_history.size() == told);
    REQUIRE(s.mean_history.size() == 3 * told);
    // After a restart the state holds the new restart's start point; the
    // history keeps what this generation's update left.
    if (s.gen_in_restart > 0) {
      CHECK(s.sigma_history.back() == s.sigma);
      CHECK(std::equal(s.mean.begin(), s.mean.end(), s.mean_history.end() - 3));
    }
  }
  const auto& s = dynamic_cast<const Cmaes&>(*opt).state();
  CHECK(!s.restart_log.empty());  // the histories crossed a restart
  // The record carries them; a fresh optimizer loads them back exactly.
  const Record r = opt->save();
  auto loaded = load_optimizer(r);
  const auto& t = dynamic_cast<const Cmaes&>(*loaded).state();
  CHECK(t.sigma_history == s.sigma_history);
  CHECK(t.mean_history == s.mean_history);
  // A state from before the histories loads with none; a torn one is refused.
  Record old = r;
  old.reals.erase("sigma_history");
  old.reals.erase("mean_history");
  CHECK(dynamic_cast<const Cmaes&>(*load_optimizer(old)).state().sigma_history.empty());
  Record torn = r;
  torn.reals["mean_history"].pop_back();
  CHECK_THROWS_AS(load_optimizer(torn), InputError);
}
