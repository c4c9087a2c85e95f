#pragma once
// Ask/tell optimizers over a real search space (the space z that a
// Parameterization maps to merge weights).
//
//   auto param = Parameterization::from_config(job.search, n_checkpoints);
//   auto opt = make_optimizer(job.search, param.initial_point(), Goal::Maximize);
//   while (!opt->done()) {
//     auto gen = opt->ask();                  // λ candidates (fewer at the very end)
//     std::vector<double> f = evaluate(gen);  // failed ones: a finite penalty
//     opt->tell(f);
//     state.optimizer = opt->save();          // a Record; resumes exactly
//   }
//
// Sign convention: the algorithms minimize internally. With Goal::Maximize
// (the service: it maximizes the objective score) tell() negates the values
// and best_value() reports them in the caller's sense again; the target value
// is in the caller's sense too.
//
// Randomness: a pure function of (seed, restart, generation, sample index)
// (search/philox.hpp). ask() is const: asking twice gives the same
// generation, and saving between ask() and tell() is allowed.
#include <Eigen/Dense>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kintsugi/common/record.hpp"
#include "kintsugi/config/job.hpp"

namespace kintsugi::search {

enum class Goal { Minimize, Maximize };

// Everything an optimizer needs besides the start point. from_config() maps
// the job's `search` section; the rest keeps the defaults below (the bench
// sets target and tolerances).
struct OptimizerOptions {
  std::string method = "cmaes";  // cmaes | random
  Goal goal = Goal::Maximize;
  uint64_t seed = 0;
  double sigma0 = 0.3;
  size_t population = 0;         // 0: 4 + floor(3 ln n)
  bool active = false;           // active CMA (negative recombination weights)
  size_t max_restarts = 0;       // IPOP restarts, population doubling each time
  size_t max_evaluations = 300;  // budget over all restarts
  // Stop when a value at least this good (caller's sense) was seen; NaN: none.
  double target = std::numeric_limits<double>::quiet_NaN();
  // Stop rules (CMA-ES). tolx is relative to sigma0, as in Hansen's cmaes.m.
  double tolx = 1e-11;
  double tolfun = 1e-12;
  double tolfunhist = 1e-13;
  double max_condition = 1e14;
  bool stagnation = true;

  static OptimizerOptions from_config(const SearchConfig& cfg, Goal goal = Goal::Maximize);
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  virtual std::string kind() const = 0;  // "cmaes" | "random"
  size_t dimension() const;

  // The next generation: points in the search space. Throws once done().
  virtual std::vector<Eigen::VectorXd> ask() const = 0;
  // Values of the last ask()'s points, in the same order and caller's sense.
  // Non-finite values (NaN, inf) are rejected with an InputError: a failed
  // evaluation must be given as a finite penalty.
  void tell(const std::vector<double>& values);

  bool done() const;
  // Why the search ended ("maxevals", "target", or the stop rule of the last
  // restart); empty while running.
  std::string stop_reason() const;

  // Sets the evaluation budget (over all restarts) to `max_evaluations`, e.g.
  // a larger --budget when a saved search resumes. A search that ended on its
  // budget ("maxevals") runs on when the new budget exceeds the evaluations
  // done; one ended by another rule stays ended. When the old budget was a
  // multiple of the population (no generation cut short), the extended search
  // continues exactly like one that had the new budget from the start.
  void extend_budget(size_t max_evaluations);

  int64_t evaluations() const;  // over all restarts
  int64_t generation() const;   // generations told, over all restarts
  int64_t restart() const;      // 0 before the first restart
  // Best point and value seen so far (caller's sense); best_value() is NaN before any tell.
  Eigen::VectorXd best_point() const;
  double best_value() const;

  // The whole state as a Record; load() into an object of the same kind
  // (or load_optimizer()) continues bit for bit.
  virtual Record save() const = 0;
  virtual void load(const Record& record) = 0;

 protected:
  // Values already negated to minimization, checked finite, one per asked point.
  virtual void tell_minimize(const std::vector<double>& values) = 0;
  virtual size_t asked_count() const = 0;

  // Bookkeeping shared by the optimizers; saved by their save().
  struct Common {
    OptimizerOptions options;
    Eigen::VectorXd x0;
    int64_t evaluations = 0;
    int64_t generations = 0;  // total generations told
    int64_t restart = 0;
    Eigen::VectorXd best_x;
    double best_f = std::numeric_limits<double>::infinity();  // minimization sense
    bool finished = false;
    std::string stop_reason;
  };
  Common common_;

  // Records a told generation's best and the budget/target stop rules.
  void note_values(const std::vector<Eigen::VectorXd>& xs, const std::vector<double>& f);
  // The target in minimization sense; -inf when there is none.
  double target_minimize() const;
  void save_common(Record& r) const;
  void load_common(const Record& r);
};

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options,
                                          const Eigen::VectorXd& x0);
std::unique_ptr<Optimizer> make_optimizer(const SearchConfig& cfg, const Eigen::VectorXd& x0,
                                          Goal goal = Goal::Maximize);
// Rebuilds an optimizer of the Record's kind from a saved state.
std::unique_ptr<Optimizer> load_optimizer(const Record& record);

// Record helpers (exact: doubles stored as doubles, integers as int64).
namespace record_io {
void put(Record& r, const std::string& key, double v);
void put(Record& r, const std::string& key, int64_t v);
void put(Record& r, const std::string& key, const Eigen::VectorXd& v);
void put(Record& r, const std::string& key, const Eigen::MatrixXd& m);  // row-major + "<key>.shape"
double get_real(const Record& r, const std::string& key);
int64_t get_int(const Record& r, const std::string& key);
Eigen::VectorXd get_vector(const Record& r, const std::string& key, int64_t size);
Eigen::MatrixXd get_matrix(const Record& r, const std::string& key, int64_t rows, int64_t cols);
std::vector<double> get_reals(const Record& r, const std::string& key);
std::string get_string(const Record& r, const std::string& key);
}  // namespace record_io

}  // namespace kintsugi::search
