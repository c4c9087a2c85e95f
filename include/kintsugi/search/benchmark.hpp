#pragma once
// Standard test functions and the evaluations-to-target harness behind
// `kintsugi bench optimizer` (minimization; optimum 0).
#include <Eigen/Dense>
#include <string>
#include <vector>

#include "kintsugi/search/optimizer.hpp"

namespace kintsugi::search {

double sphere(const Eigen::VectorXd& x);      // sum x_i^2
double ellipsoid(const Eigen::VectorXd& x);   // sum 10^(6 (i-1)/(n-1)) x_i^2, condition 1e6
double rosenbrock(const Eigen::VectorXd& x);  // sum 100 (x_i^2 - x_{i+1})^2 + (x_i - 1)^2

struct BenchFunction {
  std::string name;
  double (*f)(const Eigen::VectorXd&);
  double x0;      // every coordinate of the start point
  double sigma0;  // initial step size
};
// sphere, ellipsoid (x0 = 1, sigma0 = 1) or rosenbrock (x0 = 0, sigma0 = 0.5); InputError
// otherwise.
BenchFunction bench_function(const std::string& name);

struct BenchRun {
  uint64_t seed = 0;
  bool success = false;     // reached f <= target
  int64_t evaluations = 0;  // evaluations used (to the target when success)
  double best = 0;          // best value found
  int64_t restarts = 0;
  std::string stop_reason;
};

struct BenchSummary {
  std::vector<BenchRun> runs;
  int64_t successes = 0;
  double median_evals = 0;  // over successful runs; NaN when none succeeded
};

// Runs `runs` independent searches (seeds seed0, seed0+1, ...) of `options`
// (goal Minimize, target set) on `fn` in `dim` dimensions from x0 = fn.x0.
BenchSummary run_bench(const BenchFunction& fn, size_t dim, size_t runs, uint64_t seed0,
                       const OptimizerOptions& options, double x0);

}  // namespace kintsugi::search
