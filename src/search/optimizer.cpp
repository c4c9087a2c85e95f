// The parts of the ask/tell contract shared by every optimizer: value checks,
// the sign convention, best-so-far, budget and target, Record helpers.
#include "kintsugi/search/optimizer.hpp"

#include <cmath>

#include "kintsugi/common/error.hpp"
#include "kintsugi/search/cmaes.hpp"
#include "kintsugi/search/random_search.hpp"

namespace kintsugi::search {

OptimizerOptions OptimizerOptions::from_config(const SearchConfig& cfg, Goal goal) {
  OptimizerOptions o;
  if (cfg.method != "cmaes" && cfg.method != "random")
    throw_input("search.method: '{}' is not one of cmaes, random", cfg.method);
  if (!(cfg.sigma0 > 0) || !std::isfinite(cfg.sigma0))
    throw_input("search.sigma0: {} must be a positive number", cfg.sigma0);
  if (cfg.budget == 0) throw_input("search.budget: must be at least 1");
  o.method = cfg.method;
  o.goal = goal;
  o.seed = cfg.seed;
  o.sigma0 = cfg.sigma0;
  o.population = cfg.population;
  o.active = cfg.active;
  o.max_restarts = cfg.restarts;
  o.max_evaluations = cfg.budget;
  return o;
}

size_t Optimizer::dimension() const {
  return static_cast<size_t>(common_.x0.size());
}

void Optimizer::tell(const std::vector<double>& values) {
  if (common_.finished)
    throw_runtime("optimizer: tell() after the search finished ({})", common_.stop_reason);
  const size_t expected = asked_count();
  if (values.size() != expected)
    throw_input("optimizer: tell() got {} values for a generation of {} candidates", values.size(),
                expected);
  std::vector<double> f(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i]))
      throw_input(
          "optimizer: tell() value {} of generation {} is {}; a failed evaluation must be a finite "
          "penalty",
          i, common_.generations, values[i]);
    f[i] = common_.options.goal == Goal::Maximize ? -values[i] : values[i];
  }
  tell_minimize(f);
}

bool Optimizer::done() const {
  return common_.finished;
}
std::string Optimizer::stop_reason() const {
  return common_.stop_reason;
}
int64_t Optimizer::evaluations() const {
  return common_.evaluations;
}
int64_t Optimizer::generation() const {
  return common_.generations;
}
int64_t Optimizer::restart() const {
  return common_.restart;
}
Eigen::VectorXd Optimizer::best_point() const {
  return common_.best_x;
}

double Optimizer::best_value() const {
  if (common_.evaluations == 0) return std::numeric_limits<double>::quiet_NaN();
  return common_.options.goal == Goal::Maximize ? -common_.best_f : common_.best_f;
}

void Optimizer::extend_budget(size_t max_evaluations) {
  if (max_evaluations == 0) throw_input("optimizer: the evaluation budget must be at least 1");
  common_.options.max_evaluations = max_evaluations;
  if (common_.stop_reason == "maxevals" &&
      static_cast<int64_t>(max_evaluations) > common_.evaluations) {
    common_.finished = false;
    common_.stop_reason.clear();
  }
}

double Optimizer::target_minimize() const {
  const double t = common_.options.target;
  if (std::isnan(t)) return -std::numeric_limits<double>::infinity();
  return common_.options.goal == Goal::Maximize ? -t : t;
}

void Optimizer::note_values(const std::vector<Eigen::VectorXd>& xs, const std::vector<double>& f) {
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] < common_.best_f) {  // strict: the first of equal values stays best
      common_.best_f = f[i];
      common_.best_x = xs[i];
    }
  }
  common_.evaluations += static_cast<int64_t>(f.size());
  common_.generations += 1;
  if (common_.best_f <= target_minimize()) {
    common_.finished = true;
    common_.stop_reason = "target";
  } else if (common_.evaluations >= static_cast<int64_t>(common_.options.max_evaluations)) {
    common_.finished = true;
    common_.stop_reason = "maxevals";
  }
}

void Optimizer::save_common(Record& r) const {
  using namespace record_io;
  const auto& o = common_.options;
  r.strings["kind"] = kind();
  r.strings["stop_reason"] = common_.stop_reason;
  put(r, "goal_maximize", int64_t{o.goal == Goal::Maximize});
  put(r, "seed", static_cast<int64_t>(o.seed));  // bit pattern of the uint64 seed
  put(r, "sigma0", o.sigma0);
  put(r, "population", static_cast<int64_t>(o.population));
  put(r, "active", int64_t{o.active});
  put(r, "max_restarts", static_cast<int64_t>(o.max_restarts));
  put(r, "max_evaluations", static_cast<int64_t>(o.max_evaluations));
  // No target is NaN in memory; stored as a flag so that records compare equal.
  put(r, "has_target", int64_t{!std::isnan(o.target)});
  put(r, "target", std::isnan(o.target) ? 0.0 : o.target);
  put(r, "tolx", o.tolx);
  put(r, "tolfun", o.tolfun);
  put(r, "tolfunhist", o.tolfunhist);
  put(r, "max_condition", o.max_condition);
  put(r, "stagnation", int64_t{o.stagnation});
  put(r, "dimension", static_cast<int64_t>(common_.x0.size()));
  put(r, "x0", common_.x0);
  put(r, "evaluations", common_.evaluations);
  put(r, "generation", common_.generations);
  put(r, "restart", common_.restart);
  put(r, "best_x", common_.best_x);
  put(r, "best_f", common_.best_f);
  put(r, "finished", int64_t{common_.finished});
}

void Optimizer::load_common(const Record& r) {
  using namespace record_io;
  const std::string k = get_string(r, "kind");
  if (k != kind())
    throw_input("optimizer state: kind '{}' cannot be loaded into a '{}' optimizer", k, kind());
  Common c;
  auto& o = c.options;
  o.method = k;
  o.goal = get_int(r, "goal_maximize") != 0 ? Goal::Maximize : Goal::Minimize;
  o.seed = static_cast<uint64_t>(get_int(r, "seed"));
  o.sigma0 = get_real(r, "sigma0");
  o.population = static_cast<size_t>(get_int(r, "population"));
  o.active = get_int(r, "active") != 0;
  o.max_restarts = static_cast<size_t>(get_int(r, "max_restarts"));
  o.max_evaluations = static_cast<size_t>(get_int(r, "max_evaluations"));
  o.target = get_int(r, "has_target") != 0 ? get_real(r, "target")
                                           : std::numeric_limits<double>::quiet_NaN();
  o.tolx = get_real(r, "tolx");
  o.tolfun = get_real(r, "tolfun");
  o.tolfunhist = get_real(r, "tolfunhist");
  o.max_condition = get_real(r, "max_condition");
  o.stagnation = get_int(r, "stagnation") != 0;
  const int64_t n = get_int(r, "dimension");
  if (n < 1) throw_input("optimizer state: dimension {} must be at least 1", n);
  c.x0 = get_vector(r, "x0", n);
  c.evaluations = get_int(r, "evaluations");
  c.generations = get_int(r, "generation");
  c.restart = get_int(r, "restart");
  c.best_x = get_vector(r, "best_x", c.evaluations > 0 ? n : 0);
  c.best_f = get_real(r, "best_f");
  c.finished = get_int(r, "finished") != 0;
  c.stop_reason = get_string(r, "stop_reason");
  common_ = std::move(c);
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options,
                                          const Eigen::VectorXd& x0) {
  if (x0.size() < 1) throw_input("optimizer: the search space needs at least one dimension");
  if (!x0.allFinite()) throw_input("optimizer: the initial point has a non-finite coordinate");
  if (!(options.sigma0 > 0) || !std::isfinite(options.sigma0))
    throw_input("optimizer: sigma0 {} must be a positive number", options.sigma0);
  if (options.max_evaluations == 0)
    throw_input("optimizer: the evaluation budget must be at least 1");
  if (options.method == "cmaes") return std::make_unique<Cmaes>(options, x0);
  if (options.method == "random") return std::make_unique<RandomSearch>(options, x0);
  throw_input("search.method: '{}' is not one of cmaes, random", options.method);
}

std::unique_ptr<Optimizer> make_optimizer(const SearchConfig& cfg, const Eigen::VectorXd& x0,
                                          Goal goal) {
  return make_optimizer(OptimizerOptions::from_config(cfg, goal), x0);
}

std::unique_ptr<Optimizer> load_optimizer(const Record& record) {
  const std::string k = record_io::get_string(record, "kind");
  std::unique_ptr<Optimizer> opt;
  if (k == "cmaes")
    opt = std::make_unique<Cmaes>();
  else if (k == "random")
    opt = std::make_unique<RandomSearch>();
  else
    throw_input("optimizer state: kind '{}' is not one of cmaes, random", k);
  opt->load(record);
  return opt;
}

namespace record_io {

void put(Record& r, const std::string& key, double v) {
  r.reals[key] = {v};
}
void put(Record& r, const std::string& key, int64_t v) {
  r.ints[key] = {v};
}
void put(Record& r, const std::string& key, const Eigen::VectorXd& v) {
  r.reals[key].assign(v.data(), v.data() + v.size());
}
void put(Record& r, const std::string& key, const Eigen::MatrixXd& m) {
  std::vector<double> flat(static_cast<size_t>(m.size()));
  size_t k = 0;
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) flat[k++] = m(i, j);
  r.reals[key] = std::move(flat);
  r.ints[key + ".shape"] = {static_cast<int64_t>(m.rows()), static_cast<int64_t>(m.cols())};
}

namespace {
// A saved optimizer state holds only finite numbers, but for the best value
// before the first evaluation (+inf); a NaN or an infinity elsewhere is a
// damaged state, which a resumed search must not continue from.
const std::vector<double>& finite_reals(const Record& r, const std::string& key) {
  auto it = r.reals.find(key);
  if (it == r.reals.end()) throw_input("optimizer state: missing real array '{}'", key);
  const bool may_be_inf = key == "best_f";
  for (size_t i = 0; i < it->second.size(); ++i) {
    const double v = it->second[i];
    if (std::isnan(v) || (std::isinf(v) && !(may_be_inf && v > 0)))
      throw_input("optimizer state: '{}'[{}] is {}, not a finite number", key, i, v);
  }
  return it->second;
}
}  // namespace

std::vector<double> get_reals(const Record& r, const std::string& key) {
  return finite_reals(r, key);
}

double get_real(const Record& r, const std::string& key) {
  const auto& v = finite_reals(r, key);
  if (v.size() != 1)
    throw_input("optimizer state: '{}' holds {} values, expected 1", key, v.size());
  return v[0];
}

int64_t get_int(const Record& r, const std::string& key) {
  auto it = r.ints.find(key);
  if (it == r.ints.end()) throw_input("optimizer state: missing integer array '{}'", key);
  if (it->second.size() != 1)
    throw_input("optimizer state: '{}' holds {} values, expected 1", key, it->second.size());
  return it->second[0];
}

Eigen::VectorXd get_vector(const Record& r, const std::string& key, int64_t size) {
  const auto& x = finite_reals(r, key);
  if (static_cast<int64_t>(x.size()) != size)
    throw_input("optimizer state: '{}' holds {} values, expected {}", key, x.size(), size);
  Eigen::VectorXd v(size);
  for (int64_t i = 0; i < size; ++i) v[i] = x[static_cast<size_t>(i)];
  return v;
}

Eigen::MatrixXd get_matrix(const Record& r, const std::string& key, int64_t rows, int64_t cols) {
  const auto& x = finite_reals(r, key);
  if (static_cast<int64_t>(x.size()) != rows * cols)
    throw_input("optimizer state: '{}' holds {} values, expected {}x{}", key, x.size(), rows, cols);
  Eigen::MatrixXd m(rows, cols);
  size_t k = 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) m(i, j) = x[k++];
  return m;
}

std::string get_string(const Record& r, const std::string& key) {
  auto it = r.strings.find(key);
  if (it == r.strings.end()) throw_input("optimizer state: missing string '{}'", key);
  return it->second;
}

}  // namespace record_io
}  // namespace kintsugi::search
