#pragma once
// Random search: the sanity baseline behind the same ask/tell API. Each
// candidate is x0 + sigma0 * z with z ~ N(0, I) drawn from the counter-based
// generator keyed by (seed, 0, generation, sample), so the sequence does not
// depend on evaluation order and resumes exactly.
#include "kintsugi/search/optimizer.hpp"

namespace kintsugi::search {

class RandomSearch final : public Optimizer {
 public:
  RandomSearch() = default;  // for load()
  RandomSearch(const OptimizerOptions& options, const Eigen::VectorXd& x0);

  std::string kind() const override { return "random"; }
  std::vector<Eigen::VectorXd> ask() const override;
  Record save() const override;
  void load(const Record& record) override;
  int64_t population() const { return lambda_; }

 protected:
  void tell_minimize(const std::vector<double>& values) override;
  size_t asked_count() const override;

 private:
  Eigen::VectorXd candidate(int64_t k) const;
  int64_t lambda_ = 0;
};

}  // namespace kintsugi::search
