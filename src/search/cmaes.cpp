// CMA-ES following Hansen's tutorial (arXiv:1604.00772), Appendix A. Sums over
// candidates are written as plain loops in a fixed order so that the result
// does not depend on Eigen's choice of kernels or thread count.
#include "kintsugi/search/cmaes.hpp"

#include <fmt/format.h>

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/median.hpp"
#include "kintsugi/search/philox.hpp"

namespace kintsugi::search {

namespace {

constexpr size_t kMaxHistory = 20000;

void push_capped(std::vector<double>& h, double v) {
  if (h.size() == kMaxHistory) h.erase(h.begin());
  h.push_back(v);
}

}  // namespace

CmaesParameters CmaesParameters::defaults(int64_t n, int64_t lambda, bool active) {
  KS_CHECK(n >= 1, "dimension must be positive");
  CmaesParameters p;
  const double nd = static_cast<double>(n);
  p.n = n;
  p.lambda = lambda > 0 ? lambda : 4 + static_cast<int64_t>(std::floor(3.0 * std::log(nd)));
  if (p.lambda < 2) throw_input("search.population: {} must be at least 2 for cmaes", p.lambda);
  p.mu = p.lambda / 2;
  const auto lam = static_cast<size_t>(p.lambda);
  const auto mu = static_cast<size_t>(p.mu);

  // Raw weights w'_i = ln((lambda+1)/2) - ln i (tutorial eq. 49).
  std::vector<double> raw(lam);
  for (size_t i = 0; i < lam; ++i)
    raw[i] = std::log((static_cast<double>(p.lambda) + 1.0) / 2.0) -
             std::log(static_cast<double>(i + 1));
  double sum_pos = 0, sum_pos_sq = 0, sum_neg = 0, sum_neg_sq = 0;
  for (size_t i = 0; i < lam; ++i) {
    if (i < mu) {
      sum_pos += raw[i];
      sum_pos_sq += raw[i] * raw[i];
    } else {
      sum_neg += raw[i];
      sum_neg_sq += raw[i] * raw[i];
    }
  }
  p.mueff = sum_pos * sum_pos / sum_pos_sq;
  p.mueff_minus = sum_neg_sq > 0 ? sum_neg * sum_neg / sum_neg_sq : 0.0;

  p.cs = (p.mueff + 2.0) / (nd + p.mueff + 5.0);
  p.ds = 1.0 + 2.0 * std::max(0.0, std::sqrt((p.mueff - 1.0) / (nd + 1.0)) - 1.0) + p.cs;
  p.cc = (4.0 + p.mueff / nd) / (nd + 4.0 + 2.0 * p.mueff / nd);
  const double alpha_cov = 2.0;
  p.c1 = alpha_cov / ((nd + 1.3) * (nd + 1.3) + p.mueff);
  p.cmu = std::min(1.0 - p.c1, alpha_cov * (p.mueff - 2.0 + 1.0 / p.mueff) /
                                   ((nd + 2.0) * (nd + 2.0) + alpha_cov * p.mueff / 2.0));
  p.chin = std::sqrt(nd) * (1.0 - 1.0 / (4.0 * nd) + 1.0 / (21.0 * nd * nd));

  p.weights = Eigen::VectorXd::Zero(p.lambda);
  for (size_t i = 0; i < mu; ++i) p.weights[static_cast<Eigen::Index>(i)] = raw[i] / sum_pos;
  if (active && lam > mu) {
    // Negative weights (eq. 53): scaled so that sum |w-| = min(alpha_mu-, alpha_mueff-,
    // alpha_posdef-).
    const double alpha_mu = 1.0 + p.c1 / p.cmu;
    const double alpha_mueff = 1.0 + 2.0 * p.mueff_minus / (p.mueff + 2.0);
    const double alpha_posdef = (1.0 - p.c1 - p.cmu) / (nd * p.cmu);
    const double scale = std::min({alpha_mu, alpha_mueff, alpha_posdef}) / -sum_neg;
    for (size_t i = mu; i < lam; ++i) p.weights[static_cast<Eigen::Index>(i)] = scale * raw[i];
  }
  return p;
}

Cmaes::Cmaes(const OptimizerOptions& options, const Eigen::VectorXd& x0) {
  common_.options = options;
  common_.options.method = "cmaes";
  common_.x0 = x0;
  start_restart();
}

void Cmaes::start_restart() {
  const int64_t n = common_.x0.size();
  const auto& o = common_.options;
  int64_t lambda = o.population > 0 ? static_cast<int64_t>(o.population) : 0;
  if (lambda == 0) lambda = CmaesParameters::defaults(n, 0, o.active).lambda;
  lambda <<= common_.restart;  // IPOP: the population doubles at each restart
  CmaesState s;
  s.restart_log = std::move(s_.restart_log);
  s.sigma_history = std::move(s_.sigma_history);
  s.mean_history = std::move(s_.mean_history);
  s.p = CmaesParameters::defaults(n, lambda, o.active);
  s.sigma = o.sigma0;
  s.mean = common_.x0;
  s.ps = Eigen::VectorXd::Zero(n);
  s.pc = Eigen::VectorXd::Zero(n);
  s.C = Eigen::MatrixXd::Identity(n, n);
  s.B = Eigen::MatrixXd::Identity(n, n);
  s.D = Eigen::VectorXd::Ones(n);
  s_ = std::move(s);
}

size_t Cmaes::asked_count() const {
  const int64_t left = static_cast<int64_t>(common_.options.max_evaluations) - common_.evaluations;
  return static_cast<size_t>(std::clamp<int64_t>(left, 0, s_.p.lambda));
}

void Cmaes::sample(int64_t k, Eigen::VectorXd& z, Eigen::VectorXd& y, Eigen::VectorXd& x) const {
  const Eigen::Index n = s_.mean.size();
  z.resize(n);
  for (Eigen::Index i = 0; i < n; ++i)
    z[i] = standard_normal(common_.options.seed, static_cast<uint32_t>(common_.restart),
                           static_cast<uint32_t>(s_.gen_in_restart), static_cast<uint32_t>(k),
                           static_cast<uint32_t>(i));
  y.resize(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    double acc = 0;
    for (Eigen::Index j = 0; j < n; ++j) acc += s_.B(i, j) * (s_.D[j] * z[j]);
    y[i] = acc;
  }
  x = s_.mean + s_.sigma * y;
}

std::vector<Eigen::VectorXd> Cmaes::ask() const {
  if (common_.finished)
    throw_runtime("cmaes: ask() after the search finished ({})", common_.stop_reason);
  const size_t count = asked_count();
  std::vector<Eigen::VectorXd> xs(count);
  Eigen::VectorXd z, y;
  for (size_t k = 0; k < count; ++k) sample(static_cast<int64_t>(k), z, y, xs[k]);
  return xs;
}

void Cmaes::tell_minimize(const std::vector<double>& f) {
  const size_t count = f.size();
  const Eigen::Index n = s_.mean.size();
  std::vector<Eigen::VectorXd> zs(count), ys(count), xs(count);
  for (size_t k = 0; k < count; ++k) sample(static_cast<int64_t>(k), zs[k], ys[k], xs[k]);
  note_values(xs, f);
  // A generation cut short by the budget only counts. A full generation
  // updates the distribution even when it spent the budget (or hit the
  // target), so that a search extended with a larger budget continues exactly
  // like one that had the larger budget from the start.
  const bool ended_by_budget_or_target = common_.finished;
  if (static_cast<int64_t>(count) < s_.p.lambda) return;

  const auto& p = s_.p;
  const auto lam = static_cast<size_t>(p.lambda);
  std::vector<size_t> order(lam);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return f[a] < f[b]; });

  // Weighted means of the mu best steps, in z (isotropic) and y coordinates.
  Eigen::VectorXd zw = Eigen::VectorXd::Zero(n), yw = Eigen::VectorXd::Zero(n);
  for (int64_t i = 0; i < p.mu; ++i) {
    const double w = p.weights[i];
    zw += w * zs[order[static_cast<size_t>(i)]];
    yw += w * ys[order[static_cast<size_t>(i)]];
  }
  s_.mean += s_.sigma * yw;  // c_m = 1

  // Step-size path: C^{-1/2} <y>_w = B D^{-1} B^T B D <z>_w = B <z>_w.
  Eigen::VectorXd bz(n);
  for (Eigen::Index i = 0; i < n; ++i) {
    double acc = 0;
    for (Eigen::Index j = 0; j < n; ++j) acc += s_.B(i, j) * zw[j];
    bz[i] = acc;
  }
  s_.ps = (1.0 - p.cs) * s_.ps + std::sqrt(p.cs * (2.0 - p.cs) * p.mueff) * bz;
  const double ps_norm = s_.ps.norm();
  const double gen1 = static_cast<double>(s_.gen_in_restart + 1);
  const double nd = static_cast<double>(n);
  const bool hsig = ps_norm / std::sqrt(1.0 - std::pow(1.0 - p.cs, 2.0 * gen1)) <
                    (1.4 + 2.0 / (nd + 1.0)) * p.chin;
  s_.pc = (1.0 - p.cc) * s_.pc;
  if (hsig) s_.pc += std::sqrt(p.cc * (2.0 - p.cc) * p.mueff) * yw;

  // Covariance: rank-one and rank-mu (with active, negative weights rescaled
  // by n / ||C^{-1/2} y||^2 = n / ||z||^2).
  double wsum = 0;
  for (size_t i = 0; i < lam; ++i) wsum += p.weights[static_cast<Eigen::Index>(i)];
  const double delta_h = hsig ? 0.0 : p.cc * (2.0 - p.cc);
  const double decay = 1.0 + p.c1 * delta_h - p.c1 - p.cmu * wsum;
  std::vector<double> wc(lam, 0.0);
  for (size_t i = 0; i < lam; ++i) {
    const double w = p.weights[static_cast<Eigen::Index>(i)];
    if (w > 0) {
      wc[i] = w;
    } else if (w < 0) {
      const double zn2 = zs[order[i]].squaredNorm();
      wc[i] = zn2 > 0 ? w * nd / zn2 : 0.0;
    }
  }
  for (Eigen::Index a = 0; a < n; ++a) {
    for (Eigen::Index b = 0; b <= a; ++b) {
      double rank_mu = 0;
      for (size_t i = 0; i < lam; ++i) {
        if (wc[i] == 0) continue;
        const auto& y = ys[order[i]];
        rank_mu += wc[i] * y[a] * y[b];
      }
      const double v = decay * s_.C(a, b) + p.c1 * s_.pc[a] * s_.pc[b] + p.cmu * rank_mu;
      s_.C(a, b) = v;
      s_.C(b, a) = v;
    }
  }

  s_.sigma *= std::exp((p.cs / p.ds) * (ps_norm / p.chin - 1.0));

  std::vector<double> sorted_f(lam);
  for (size_t i = 0; i < lam; ++i) sorted_f[i] = f[order[i]];
  // Flat fitness (Hansen's purecmaes.m): when the best value equals the
  // ceil(0.7 lambda)-th, the ranking carries little information (accuracy on a
  // few examples often ties); widen the step rather than let tolfun stop.
  const auto q = static_cast<size_t>(std::ceil(0.7 * static_cast<double>(lam))) - 1;
  if (f[order[0]] == f[order[q]]) {
    s_.sigma *= std::exp(0.2 + p.cs / p.ds);
    s_.flat_generations += 1;
  } else {
    s_.flat_generations = 0;
  }

  s_.gen_in_restart += 1;
  s_.restart_evals += p.lambda;
  s_.sigma_history.push_back(s_.sigma);
  s_.mean_history.insert(s_.mean_history.end(), s_.mean.begin(), s_.mean.end());
  push_capped(s_.best_history, sorted_f.front());
  push_capped(s_.median_history, median_of(sorted_f));
  s_.last_worst = sorted_f.back();

  // Lazy eigendecomposition: every lambda / (c1 + cmu) / n / 10 evaluations.
  if (static_cast<double>(s_.restart_evals - s_.eigen_evals) >
      static_cast<double>(p.lambda) / (p.c1 + p.cmu) / nd / 10.0)
    decompose();

  if (ended_by_budget_or_target) return;
  std::string rule = check_stop();
  if (rule.empty()) return;
  if (common_.restart < static_cast<int64_t>(common_.options.max_restarts)) {
    s_.restart_log += fmt::format("restart {} at evaluation {} after {}\n", common_.restart + 1,
                                  common_.evaluations, rule);
    common_.restart += 1;
    start_restart();
  } else {
    common_.finished = true;
    common_.stop_reason = rule;
  }
}

void Cmaes::decompose() {
  s_.eigen_evals = s_.restart_evals;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(s_.C);
  if (es.info() != Eigen::Success || !es.eigenvalues().allFinite() ||
      !(es.eigenvalues().minCoeff() > 0)) {
    // Leave B, D as they were; check_stop() reports the broken covariance.
    s_.D.setZero();
    return;
  }
  s_.B = es.eigenvectors();
  s_.D = es.eigenvalues().cwiseSqrt();
}

std::string Cmaes::check_stop() const {
  const auto& o = common_.options;
  const auto& p = s_.p;
  const Eigen::Index n = s_.mean.size();
  if (!std::isfinite(s_.sigma) || !s_.C.allFinite() || !s_.mean.allFinite() ||
      !(s_.D.minCoeff() > 0))
    return "numerical";
  const double cond = (s_.D.maxCoeff() / s_.D.minCoeff()) * (s_.D.maxCoeff() / s_.D.minCoeff());
  if (cond > o.max_condition) return "condition";

  bool small = true;
  for (Eigen::Index i = 0; i < n && small; ++i)
    small = s_.sigma * std::abs(s_.pc[i]) < o.tolx * o.sigma0 &&
            s_.sigma * std::sqrt(s_.C(i, i)) < o.tolx * o.sigma0;
  if (small) return "tolx";

  const auto window = static_cast<size_t>(
      10 + std::ceil(30.0 * static_cast<double>(n) / static_cast<double>(p.lambda)));
  if (s_.flat_generations >= kFlatFitnessGenerations) return "flatfitness";

  const auto& hb = s_.best_history;
  // While generations are flat, the escape above widens sigma; tolfun and
  // tolfunhist wait for a generation that ranks its candidates.
  if (!hb.empty() && s_.flat_generations == 0) {
    const size_t from = hb.size() > window ? hb.size() - window : 0;
    const auto [lo, hi] =
        std::minmax_element(hb.begin() + static_cast<std::ptrdiff_t>(from), hb.end());
    if (hb.size() >= window && *hi - *lo < o.tolfunhist) return "tolfunhist";
    // tolfun: the spread of the recent best values and of the last generation's values.
    if (std::max(*hi, s_.last_worst) - *lo < o.tolfun) return "tolfun";
  }

  if (o.stagnation) {
    const double g = static_cast<double>(s_.gen_in_restart);
    const auto len = static_cast<size_t>(std::min<double>(
        static_cast<double>(kMaxHistory),
        std::max(std::ceil(120.0 + 30.0 * static_cast<double>(n) / static_cast<double>(p.lambda)),
                 std::floor(0.2 * g))));
    if (hb.size() >= len) {
      const size_t k = std::max<size_t>(1, len * 3 / 10);
      auto med = [&](const std::vector<double>& h, size_t begin) {
        return median_of(std::vector<double>(h.begin() + static_cast<std::ptrdiff_t>(begin),
                                             h.begin() + static_cast<std::ptrdiff_t>(begin + k)));
      };
      const size_t old_begin = hb.size() - len;
      const size_t new_begin = hb.size() - k;
      if (med(hb, new_begin) >= med(hb, old_begin) &&
          med(s_.median_history, new_begin) >= med(s_.median_history, old_begin))
        return "stagnation";
    }
  }
  return "";
}

Record Cmaes::save() const {
  using namespace record_io;
  Record r;
  save_common(r);
  const auto& p = s_.p;
  put(r, "lambda", p.lambda);
  put(r, "mu", p.mu);
  put(r, "weights", p.weights);
  put(r, "mueff", p.mueff);
  put(r, "mueff_minus", p.mueff_minus);
  put(r, "cs", p.cs);
  put(r, "ds", p.ds);
  put(r, "cc", p.cc);
  put(r, "c1", p.c1);
  put(r, "cmu", p.cmu);
  put(r, "chin", p.chin);
  put(r, "gen_in_restart", s_.gen_in_restart);
  put(r, "restart_evals", s_.restart_evals);
  put(r, "eigen_evals", s_.eigen_evals);
  put(r, "sigma", s_.sigma);
  put(r, "last_worst", s_.last_worst);
  put(r, "flat_generations", s_.flat_generations);
  put(r, "mean", s_.mean);
  put(r, "ps", s_.ps);
  put(r, "pc", s_.pc);
  put(r, "C", s_.C);
  put(r, "B", s_.B);
  put(r, "D", s_.D);
  r.reals["best_history"] = s_.best_history;
  r.reals["median_history"] = s_.median_history;
  r.strings["restart_log"] = s_.restart_log;
  r.reals["sigma_history"] = s_.sigma_history;
  r.reals["mean_history"] = s_.mean_history;
  return r;
}

void Cmaes::load(const Record& r) {
  using namespace record_io;
  load_common(r);
  const int64_t n = common_.x0.size();
  CmaesState s;
  auto& p = s.p;
  p.n = n;
  p.lambda = get_int(r, "lambda");
  p.mu = get_int(r, "mu");
  if (p.lambda < 2 || p.mu < 1 || p.mu > p.lambda)
    throw_input("optimizer state: lambda {} and mu {} are inconsistent", p.lambda, p.mu);
  p.weights = get_vector(r, "weights", p.lambda);
  p.mueff = get_real(r, "mueff");
  p.mueff_minus = get_real(r, "mueff_minus");
  p.cs = get_real(r, "cs");
  p.ds = get_real(r, "ds");
  p.cc = get_real(r, "cc");
  p.c1 = get_real(r, "c1");
  p.cmu = get_real(r, "cmu");
  p.chin = get_real(r, "chin");
  s.gen_in_restart = get_int(r, "gen_in_restart");
  s.restart_evals = get_int(r, "restart_evals");
  s.eigen_evals = get_int(r, "eigen_evals");
  s.sigma = get_real(r, "sigma");
  s.last_worst = get_real(r, "last_worst");
  // States written before the flat-fitness rule have no counter: 0.
  s.flat_generations = r.ints.count("flat_generations") ? get_int(r, "flat_generations") : 0;
  if (s.flat_generations < 0)
    throw_input("optimizer state: flat_generations {} is negative", s.flat_generations);
  s.mean = get_vector(r, "mean", n);
  s.ps = get_vector(r, "ps", n);
  s.pc = get_vector(r, "pc", n);
  s.C = get_matrix(r, "C", n, n);
  s.B = get_matrix(r, "B", n, n);
  s.D = get_vector(r, "D", n);
  s.best_history = get_reals(r, "best_history");
  s.median_history = get_reals(r, "median_history");
  if (s.best_history.size() != s.median_history.size())
    throw_input("optimizer state: best_history and median_history differ in length");
  s.restart_log = get_string(r, "restart_log");
  // States written before the histories were kept have none.
  if (r.reals.count("sigma_history")) s.sigma_history = get_reals(r, "sigma_history");
  if (r.reals.count("mean_history")) s.mean_history = get_reals(r, "mean_history");
  if (s.mean_history.size() != s.sigma_history.size() * static_cast<size_t>(n))
    throw_input("optimizer state: mean_history holds {} values, not {} generations x {}",
                s.mean_history.size(), s.sigma_history.size(), n);
  s_ = std::move(s);
}

}  // namespace kintsugi::search
