#include "kintsugi/search/random_search.hpp"

#include <algorithm>
#include <cmath>

#include "kintsugi/common/error.hpp"
#include "kintsugi/search/philox.hpp"

namespace kintsugi::search {

RandomSearch::RandomSearch(const OptimizerOptions& options, const Eigen::VectorXd& x0) {
  common_.options = options;
  common_.options.method = "random";
  common_.x0 = x0;
  const double n = static_cast<double>(x0.size());
  lambda_ = options.population > 0 ? static_cast<int64_t>(options.population)
                                   : 4 + static_cast<int64_t>(std::floor(3.0 * std::log(n)));
}

size_t RandomSearch::asked_count() const {
  const int64_t left = static_cast<int64_t>(common_.options.max_evaluations) - common_.evaluations;
  return static_cast<size_t>(std::clamp<int64_t>(left, 0, lambda_));
}

Eigen::VectorXd RandomSearch::candidate(int64_t k) const {
  const Eigen::Index n = common_.x0.size();
  Eigen::VectorXd x(n);
  for (Eigen::Index i = 0; i < n; ++i)
    x[i] = common_.x0[i] + common_.options.sigma0 *
                               standard_normal(common_.options.seed, 0,
                                               static_cast<uint32_t>(common_.generations),
                                               static_cast<uint32_t>(k), static_cast<uint32_t>(i));
  return x;
}

std::vector<Eigen::VectorXd> RandomSearch::ask() const {
  if (common_.finished)
    throw_runtime("random: ask() after the search finished ({})", common_.stop_reason);
  std::vector<Eigen::VectorXd> xs(asked_count());
  for (size_t k = 0; k < xs.size(); ++k) xs[k] = candidate(static_cast<int64_t>(k));
  return xs;
}

void RandomSearch::tell_minimize(const std::vector<double>& values) {
  std::vector<Eigen::VectorXd> xs(values.size());
  for (size_t k = 0; k < xs.size(); ++k) xs[k] = candidate(static_cast<int64_t>(k));
  note_values(xs, values);
}

Record RandomSearch::save() const {
  Record r;
  save_common(r);
  record_io::put(r, "lambda", lambda_);
  return r;
}

void RandomSearch::load(const Record& record) {
  load_common(record);
  const int64_t lambda = record_io::get_int(record, "lambda");
  if (lambda < 1) throw_input("optimizer state: lambda {} must be at least 1", lambda);
  lambda_ = lambda;
}

}  // namespace kintsugi::search
