#include "kintsugi/search/objective.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kintsugi/common/error.hpp"

namespace kintsugi::search {

namespace {

size_t task_index(const std::vector<std::string>& names, const std::string& name, const char* key) {
  auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) throw_input("objective.{}: '{}' is not a task of this job", key, name);
  return static_cast<size_t>(it - names.begin());
}

std::vector<double> per_task(const std::map<std::string, double>& m,
                             const std::vector<std::string>& names, const char* key) {
  std::vector<double> v(names.size(), 0.0);
  for (const auto& [name, value] : m) {
    if (!std::isfinite(value))
      throw_input("objective.{}.{}: {} is not a finite number", key, name, value);
    v[task_index(names, name, key)] = value;
  }
  return v;
}

}  // namespace

Objective Objective::build(const ObjectiveConfig& cfg, const std::vector<std::string>& task_names,
                           const Eigen::MatrixXd& pool_scores) {
  Objective o;
  o.kind_ = cfg.kind;
  o.k_ = task_names.size();
  if (o.k_ == 0) throw_input("tasks: the objective needs at least one task");
  if (pool_scores.size() > 0 && static_cast<size_t>(pool_scores.cols()) != o.k_)
    throw_input("objective: pool scores have {} columns for {} tasks", pool_scores.cols(), o.k_);
  if (!pool_scores.allFinite()) throw_input("objective: the pool's scores hold a non-finite value");

  if (cfg.kind == "mean") {
    o.coef_.assign(o.k_, 1.0 / static_cast<double>(o.k_));
  } else if (cfg.kind == "weighted") {
    auto w = per_task(cfg.weights, task_names, "weights");
    double s = 0;
    for (size_t k = 0; k < o.k_; ++k) {
      if (w[k] < 0) throw_input("objective.weights.{}: {} is negative", task_names[k], w[k]);
      s += w[k];
    }
    if (!(s > 0)) throw_input("objective.weights: need a positive weight on at least one task");
    for (auto& x : w) x /= s;
    o.coef_ = std::move(w);
  } else if (cfg.kind == "chebyshev") {
    if (pool_scores.rows() < 1)
      throw_input("objective: chebyshev needs the pool's scores for its ideal and nadir points");
    if (!(cfg.chebyshev_rho >= 0) || !std::isfinite(cfg.chebyshev_rho))
      throw_input("objective.chebyshev_rho: {} must be a non-negative number", cfg.chebyshev_rho);
    auto p = per_task(cfg.preference, task_names, "preference");
    double s = 0;
    for (size_t k = 0; k < o.k_; ++k) {
      if (p[k] < 0) throw_input("objective.preference.{}: {} is negative", task_names[k], p[k]);
      s += p[k];
    }
    if (cfg.preference.empty()) {
      p.assign(o.k_, 1.0);
      s = static_cast<double>(o.k_);
    }
    if (!(s > 0))
      throw_input("objective.preference: need a positive preference on at least one task");
    for (auto& x : p) x /= s;
    o.coef_ = std::move(p);
    o.rho_ = cfg.chebyshev_rho;
    o.ideal_.resize(o.k_);
    o.nadir_.resize(o.k_);
    for (size_t k = 0; k < o.k_; ++k) {
      o.ideal_[k] = pool_scores.col(static_cast<Eigen::Index>(k)).maxCoeff();
      o.nadir_[k] = pool_scores.col(static_cast<Eigen::Index>(k)).minCoeff();
    }
  } else if (cfg.kind == "constrained") {
    if (cfg.maximize.empty())
      throw_input("objective.maximize: constrained needs the task to maximize");
    o.maximize_ = task_index(task_names, cfg.maximize, "maximize");
    o.floors_.assign(o.k_, -std::numeric_limits<double>::infinity());
    for (const auto& [name, value] : cfg.floors) {
      if (!std::isfinite(value))
        throw_input("objective.floors.{}: {} is not a finite number", name, value);
      o.floors_[task_index(task_names, name, "floors")] = value;
    }
    if (!(cfg.penalty >= 0) || !std::isfinite(cfg.penalty))
      throw_input("objective.penalty: {} must be a non-negative number", cfg.penalty);
    o.penalty_ = cfg.penalty;
  } else {
    throw_input("objective.kind: '{}' is not one of mean, weighted, chebyshev, constrained",
                cfg.kind);
  }
  return o;
}

double Objective::operator()(const std::vector<double>& s) const {
  if (s.size() != k_) throw_input("objective: {} scores for {} tasks", s.size(), k_);
  for (size_t k = 0; k < k_; ++k)
    if (!std::isfinite(s[k])) throw_input("objective: score of task {} is {}", k, s[k]);
  if (kind_ == "mean" || kind_ == "weighted") {
    double v = 0;
    for (size_t k = 0; k < k_; ++k) v += coef_[k] * s[k];
    return v;
  }
  if (kind_ == "chebyshev") {
    double worst = -std::numeric_limits<double>::infinity(), sum = 0;
    for (size_t k = 0; k < k_; ++k) {
      const double range = ideal_[k] > nadir_[k] ? ideal_[k] - nadir_[k] : 1.0;
      const double d = (ideal_[k] - s[k]) / range;
      worst = std::max(worst, coef_[k] * d);
      sum += d;
    }
    return -(worst + rho_ * sum);
  }
  double shortfall = 0;  // constrained
  for (size_t k = 0; k < k_; ++k) shortfall += std::max(0.0, floors_[k] - s[k]);
  return s[maximize_] - penalty_ * shortfall;
}

std::vector<double> orient_scores(const std::vector<double>& scores,
                                  const std::vector<bool>& higher_is_better) {
  if (scores.size() != higher_is_better.size())
    throw_runtime("orient_scores: {} scores for {} tasks", scores.size(), higher_is_better.size());
  std::vector<double> out(scores.size());
  for (size_t k = 0; k < scores.size(); ++k) out[k] = higher_is_better[k] ? scores[k] : -scores[k];
  return out;
}

}  // namespace kintsugi::search
