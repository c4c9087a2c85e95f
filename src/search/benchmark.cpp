#include "kintsugi/search/benchmark.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/median.hpp"

namespace kintsugi::search {

double sphere(const Eigen::VectorXd& x) {
  double s = 0;
  for (Eigen::Index i = 0; i < x.size(); ++i) s += x[i] * x[i];
  return s;
}

double ellipsoid(const Eigen::VectorXd& x) {
  const Eigen::Index n = x.size();
  double s = 0;
  for (Eigen::Index i = 0; i < n; ++i) {
    const double e = n > 1 ? 6.0 * static_cast<double>(i) / static_cast<double>(n - 1) : 0.0;
    s += std::pow(10.0, e) * x[i] * x[i];
  }
  return s;
}

double rosenbrock(const Eigen::VectorXd& x) {
  double s = 0;
  for (Eigen::Index i = 0; i + 1 < x.size(); ++i) {
    const double a = x[i] * x[i] - x[i + 1];
    const double b = x[i] - 1.0;
    s += 100.0 * a * a + b * b;
  }
  return s;
}

BenchFunction bench_function(const std::string& name) {
  if (name == "sphere") return {name, &sphere, 1.0, 1.0};
  if (name == "ellipsoid") return {name, &ellipsoid, 1.0, 1.0};
  if (name == "rosenbrock") return {name, &rosenbrock, 0.0, 0.5};
  throw_input("--function: '{}' is not one of sphere, ellipsoid, rosenbrock", name);
}

BenchSummary run_bench(const BenchFunction& fn, size_t dim, size_t runs, uint64_t seed0,
                       const OptimizerOptions& options, double x0) {
  if (dim < 1) throw_input("--dim: must be at least 1");
  BenchSummary summary;
  std::vector<double> evals;
  for (size_t r = 0; r < runs; ++r) {
    OptimizerOptions o = options;
    o.goal = Goal::Minimize;
    o.seed = seed0 + r;
    auto opt = make_optimizer(o, Eigen::VectorXd::Constant(static_cast<Eigen::Index>(dim), x0));
    while (!opt->done()) {
      const auto xs = opt->ask();
      std::vector<double> f(xs.size());
      for (size_t k = 0; k < xs.size(); ++k) f[k] = fn.f(xs[k]);
      opt->tell(f);
    }
    BenchRun run;
    run.seed = o.seed;
    run.evaluations = opt->evaluations();
    run.best = opt->best_value();
    run.restarts = opt->restart();
    run.stop_reason = opt->stop_reason();
    run.success = run.stop_reason == "target";
    if (run.success) {
      ++summary.successes;
      evals.push_back(static_cast<double>(run.evaluations));
    }
    summary.runs.push_back(run);
  }
  summary.median_evals = median_of(evals);  // NaN when no run succeeded
  return summary;
}

}  // namespace kintsugi::search
