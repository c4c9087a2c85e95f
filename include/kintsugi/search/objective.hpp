#pragma once
// Turns per-task scores into the one number the search maximizes.
//
// Scores are oriented first so that higher is better for every task
// (orient_scores negates lower-is-better metrics such as bits_per_byte).
// Kinds (objective.kind):
//   mean         (1/K) sum_k s_k
//   weighted     sum_k a_k s_k / sum_k a_k; a_k from objective.weights by task
//                name (tasks not named get 0; negative weights are errors)
//   chebyshev    augmented Chebyshev: with the ideal z*_k = max and nadir
//                z^n_k = min of task k over the pool's own scores, the
//                normalized shortfall d_k = (z*_k - s_k) / (z*_k - z^n_k)
//                (range 1 when the pool's scores of task k are all equal),
//                preferences p_k (objective.preference, missing = 0, all
//                missing = equal, normalized to sum 1) and rho:
//                value = -( max_k p_k d_k + rho sum_k d_k )
//   constrained  s_m - penalty * sum_k max(0, f_k - s_k): maximize task m
//                (objective.maximize) with floors f_k (objective.floors)
#include <Eigen/Dense>
#include <string>
#include <vector>

#include "kintsugi/config/job.hpp"

namespace kintsugi::search {

class Objective {
 public:
  // task_names: K names in score order; pool_scores: N x K oriented scores of
  // the pool's checkpoints (chebyshev needs at least one row).
  static Objective build(const ObjectiveConfig& cfg, const std::vector<std::string>& task_names,
                         const Eigen::MatrixXd& pool_scores);

  // The value to maximize. InputError when a score is not finite or the count is wrong.
  double operator()(const std::vector<double>& scores) const;

  const std::string& kind() const { return kind_; }
  const std::vector<double>& ideal() const { return ideal_; }  // chebyshev
  const std::vector<double>& nadir() const { return nadir_; }  // chebyshev
  // The weights actually used: task weights (weighted), preferences (chebyshev).
  const std::vector<double>& coefficients() const { return coef_; }

 private:
  std::string kind_;
  size_t k_ = 0;
  std::vector<double> coef_;
  std::vector<double> ideal_, nadir_;
  double rho_ = 0;
  size_t maximize_ = 0;
  std::vector<double> floors_;  // -inf where a task has no floor
  double penalty_ = 0;
};

// Negates the scores of tasks where lower is better (higher_is_better[k] false).
std::vector<double> orient_scores(const std::vector<double>& scores,
                                  const std::vector<bool>& higher_is_better);

}  // namespace kintsugi::search
