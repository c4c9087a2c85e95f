#pragma once
// CMA-ES with ask/tell, written on Eigen from N. Hansen, "The CMA Evolution
// Strategy: A Tutorial" (arXiv:1604.00772), Appendix A and Table 1: default
// population, log weights, cumulation and learning rates, the h_sigma stall
// rule, optional active CMA (negative weights), IPOP restarts (population
// doubles), lazy eigendecomposition and the usual stop rules. Written here and
// not taken from a library: the whole state must be a plain, exactly
// serializable struct and the randomness a pure function of counters
// (search/philox.hpp), which no packaged implementation offers.
#include <Eigen/Dense>
#include <cstdint>
#include <string>
#include <vector>

#include "kintsugi/search/optimizer.hpp"

namespace kintsugi::search {

// The strategy parameters of Table 1 for dimension n and population lambda.
struct CmaesParameters {
  int64_t n = 0;
  int64_t lambda = 0;
  int64_t mu = 0;
  // lambda recombination weights: mu positive ones summing to 1, then either
  // zeros or (active) negative ones scaled by min(alpha_mu-, alpha_mueff-, alpha_posdef-).
  Eigen::VectorXd weights;
  double mueff = 0;        // (sum w+)^2 / sum (w+)^2
  double mueff_minus = 0;  // same over the negative raw weights
  double cs = 0, ds = 0;   // step-size cumulation and damping
  double cc = 0;           // rank-one cumulation
  double c1 = 0, cmu = 0;  // rank-one and rank-mu learning rates
  double chin = 0;         // E||N(0,I)|| ~ sqrt(n) (1 - 1/(4n) + 1/(21 n^2))

  // lambda <= 0 picks the default 4 + floor(3 ln n).
  static CmaesParameters defaults(int64_t n, int64_t lambda, bool active);
};

// The per-restart state (everything besides Optimizer::Common).
struct CmaesState {
  CmaesParameters p;
  int64_t gen_in_restart = 0;  // generations told in this restart (a counter key)
  int64_t restart_evals = 0;   // evaluations in this restart
  int64_t eigen_evals = 0;     // restart_evals at the last eigendecomposition
  double sigma = 0;
  Eigen::VectorXd mean, ps, pc;
  Eigen::MatrixXd C;  // covariance
  Eigen::MatrixXd B;  // its eigenvectors (columns) at the last decomposition
  Eigen::VectorXd D;  // square roots of its eigenvalues
  // Best and median value of each generation of this restart (oldest first,
  // at most 20000): tolfun, tolfunhist and stagnation read them.
  std::vector<double> best_history, median_history;
  double last_worst = 0;  // worst value of the last generation (tolfun)
  // Consecutive generations (ending with the last) whose best value equalled
  // the ceil(0.7 lambda)-th: each widened sigma; kFlatFitnessGenerations stop.
  int64_t flat_generations = 0;
  // One line per restart: "restart R at evaluation E after RULE".
  std::string restart_log;
  // The step size and the mean (n values) at the end of every generation
  // told, across restarts (oldest first): what the report draws. Kept whole
  // (a few hundred bytes per generation); states written before them: empty.
  std::vector<double> sigma_history, mean_history;
};

// Flat generations in a row after which the search stops ("flatfitness"):
// sigma has then grown by exp(0.2 + cs/ds) (1.5 to 1.6) ten times, 50-100x.
inline constexpr int64_t kFlatFitnessGenerations = 10;

class Cmaes final : public Optimizer {
 public:
  Cmaes() = default;  // for load()
  Cmaes(const OptimizerOptions& options, const Eigen::VectorXd& x0);

  std::string kind() const override { return "cmaes"; }
  std::vector<Eigen::VectorXd> ask() const override;
  Record save() const override;
  void load(const Record& record) override;

  const CmaesState& state() const { return s_; }

 protected:
  void tell_minimize(const std::vector<double>& values) override;
  size_t asked_count() const override;

 private:
  void start_restart();  // (re)initializes s_ for common_.restart
  // Sample k of the current generation: z ~ N(0, I), y = B D z, x = m + sigma y.
  void sample(int64_t k, Eigen::VectorXd& z, Eigen::VectorXd& y, Eigen::VectorXd& x) const;
  void decompose();
  std::string check_stop() const;  // the local stop rule that fires, or ""

  CmaesState s_;
};

}  // namespace kintsugi::search
