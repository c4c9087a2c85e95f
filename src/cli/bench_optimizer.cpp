// `kintsugi bench optimizer`: evaluations-to-target of the optimizers on
// standard test functions, the check of the CMA-ES against published figures.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "kintsugi/cli/bench.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/search/benchmark.hpp"

namespace kintsugi::cli {
namespace {

struct OptimizerBenchArgs {
  std::string function;
  size_t dim = 10;
  size_t runs = 31;
  double target = 1e-10;
  std::optional<double> x0, sigma0;
  uint64_t seed = 1;
  std::string method = "cmaes";
  bool active = false;
  size_t restarts = 0;
  size_t population = 0;
  size_t max_evals = 100000;
  bool json = false;
};

int run_optimizer_bench(const OptimizerBenchArgs& a) {
  using namespace kintsugi::search;
  const BenchFunction fn = bench_function(a.function);
  if (a.runs < 1) throw_input("--runs: must be at least 1");
  OptimizerOptions o;
  o.method = a.method;
  o.goal = Goal::Minimize;
  o.sigma0 = a.sigma0.value_or(fn.sigma0);
  o.population = a.population;
  o.active = a.active;
  o.max_restarts = a.restarts;
  o.max_evaluations = a.max_evals;
  o.target = a.target;
  const double x0 = a.x0.value_or(fn.x0);
  spdlog::info("bench optimizer: {} {}-D, {} runs, {}{}, x0 = {}, sigma0 = {}, target {}", fn.name,
               a.dim, a.runs, a.method, a.active ? " (active)" : "", x0, o.sigma0, a.target);
  const BenchSummary s = run_bench(fn, a.dim, a.runs, a.seed, o, x0);
  for (const auto& r : s.runs)
    spdlog::debug("seed {}: {} after {} evaluations, best {:.3e}, {} restarts", r.seed,
                  r.stop_reason, r.evaluations, r.best, r.restarts);
  std::printf("function %s, dim %zu, %s: median %s evaluations to f <= %g, %lld/%zu successes\n",
              fn.name.c_str(), a.dim, a.method.c_str(),
              std::isnan(s.median_evals) ? "-" : fmt::format("{:.0f}", s.median_evals).c_str(),
              a.target, static_cast<long long>(s.successes), a.runs);
  if (a.json) {
    nlohmann::json j;
    j["function"] = fn.name;
    j["dim"] = a.dim;
    if (std::isnan(s.median_evals))
      j["median_evals"] = nullptr;
    else
      j["median_evals"] = s.median_evals;
    j["successes"] = s.successes;
    j["runs"] = a.runs;
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  return 0;
}

BenchRegistration optimizer_bench{
    {"optimizer", "Median evaluations to a target on sphere, ellipsoid, Rosenbrock",
     [](CLI::App& sub) {
       auto a = std::make_shared<OptimizerBenchArgs>();
       sub.add_option("--function", a->function, "sphere | ellipsoid | rosenbrock")->required();
       sub.add_option("--dim", a->dim, "Dimension (default 10)");
       sub.add_option("--runs", a->runs, "Independent runs, seeds --seed.. (default 31)");
       sub.add_option("--target", a->target, "Success: f <= target (default 1e-10)");
       sub.add_option("--x0", a->x0, "Start value of every coordinate (default 1; Rosenbrock 0)");
       sub.add_option("--sigma0", a->sigma0, "Initial step size (default 1; Rosenbrock 0.5)");
       sub.add_option("--seed", a->seed, "Seed of the first run (default 1)");
       sub.add_option("--method", a->method, "cmaes | random (default cmaes)");
       sub.add_flag("--active", a->active, "Active CMA (negative weights)");
       sub.add_option("--restarts", a->restarts, "IPOP restarts allowed (default 0)");
       sub.add_option("--population", a->population, "Population (default 4 + floor(3 ln n))");
       sub.add_option("--max-evals", a->max_evals, "Budget per run (default 100000)");
       sub.add_flag("--json", a->json, "End with one JSON line");
       return std::function<int()>([a] { return run_optimizer_bench(*a); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
