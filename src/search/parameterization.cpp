#include "kintsugi/search/parameterization.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kintsugi/common/error.hpp"

namespace kintsugi::search {

namespace {

double softplus(double z) {
  return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z));
}

double softplus_inverse(double w) {  // w > 0
  return w > 30 ? w + std::log1p(-std::exp(-w)) : std::log(std::expm1(w));
}

}  // namespace

WeightKind weight_kind(const std::string& name) {
  if (name == "simplex") return WeightKind::Simplex;
  if (name == "nonnegative") return WeightKind::Nonnegative;
  if (name == "free") return WeightKind::Free;
  throw_input("search.parameterization: '{}' is not one of simplex, nonnegative, free", name);
}

std::string to_string(WeightKind kind) {
  switch (kind) {
    case WeightKind::Simplex:
      return "simplex";
    case WeightKind::Nonnegative:
      return "nonnegative";
    case WeightKind::Free:
      return "free";
  }
  return "?";
}

Parameterization::Parameterization(WeightKind kind, size_t checkpoints, size_t groups,
                                   std::optional<double> lower, std::optional<double> upper)
    : kind_(kind), n_(checkpoints), g_(groups), lo_(lower), hi_(upper) {
  if (n_ < 1) throw_input("pool.checkpoints: the search needs at least one checkpoint");
  if (g_ < 1) throw_input("search.layer_groups: must be at least 1");
  if ((lo_ && !std::isfinite(*lo_)) || (hi_ && !std::isfinite(*hi_)))
    throw_input("search.lower/upper: bounds must be finite numbers");
  if (kind_ == WeightKind::Simplex && (lo_ || hi_))
    throw_input(
        "search.lower/upper: box bounds apply to nonnegative and free weights, not simplex");
  if (kind_ == WeightKind::Nonnegative) {
    if (hi_ && *hi_ <= 0)
      throw_input("search.upper: {} must be positive with nonnegative weights", *hi_);
    lo_ = std::max(lo_.value_or(0.0), 0.0);
  }
  if (lo_ && hi_ && !(*lo_ < *hi_))
    throw_input("search.lower: {} must be below search.upper {}", *lo_, *hi_);
}

Parameterization Parameterization::from_config(const SearchConfig& cfg, size_t checkpoints) {
  size_t groups = 1;
  if (cfg.granularity == "layer_group")
    groups = cfg.layer_groups;
  else if (cfg.granularity != "checkpoint")
    throw_input("search.granularity: '{}' is not one of checkpoint, layer_group", cfg.granularity);
  return Parameterization(weight_kind(cfg.parameterization), checkpoints, groups, cfg.lower,
                          cfg.upper);
}

double Parameterization::to_weight(double z) const {
  if (lo_ && hi_) return *lo_ + (*hi_ - *lo_) / (1.0 + std::exp(-z));
  if (lo_) return *lo_ + softplus(z);
  if (hi_) return *hi_ - softplus(-z);
  return z;
}

double Parameterization::from_weight(double w) const {
  if (lo_ && hi_) {
    const double t = (w - *lo_) / (*hi_ - *lo_);
    if (!(t > 0 && t < 1))
      throw_input("weights: {} is outside the open box ({}, {})", w, *lo_, *hi_);
    return std::log(t / (1.0 - t));
  }
  if (lo_) {
    if (!(w > *lo_)) throw_input("weights: {} is not above the lower bound {}", w, *lo_);
    return softplus_inverse(w - *lo_);
  }
  if (hi_) {
    if (!(w < *hi_)) throw_input("weights: {} is not below the upper bound {}", w, *hi_);
    return -softplus_inverse(*hi_ - w);
  }
  if (!std::isfinite(w)) throw_input("weights: {} is not finite", w);
  return w;
}

Eigen::VectorXd Parameterization::initial_point() const {
  const auto dim = static_cast<Eigen::Index>(dimension());
  if (kind_ == WeightKind::Simplex) return Eigen::VectorXd::Zero(dim);
  const double u = 1.0 / static_cast<double>(n_);
  double w0 = u;
  if (lo_ && hi_) {
    if (!(u > *lo_ && u < *hi_)) w0 = 0.5 * (*lo_ + *hi_);
  } else if (lo_) {
    if (!(u > *lo_)) w0 = *lo_ + u;
  } else if (hi_) {
    if (!(u < *hi_)) w0 = *hi_ - u;
  }
  return Eigen::VectorXd::Constant(dim, from_weight(w0));
}

std::vector<double> Parameterization::weights(const Eigen::VectorXd& z) const {
  if (static_cast<size_t>(z.size()) != dimension())
    throw_runtime("parameterization: point of dimension {} for a space of dimension {}", z.size(),
                  dimension());
  std::vector<double> w(dimension());
  if (kind_ != WeightKind::Simplex) {
    for (size_t i = 0; i < w.size(); ++i) w[i] = to_weight(z[static_cast<Eigen::Index>(i)]);
    return w;
  }
  for (size_t g = 0; g < g_; ++g) {
    const size_t off = g * n_;
    double m = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < n_; ++i) m = std::max(m, z[static_cast<Eigen::Index>(off + i)]);
    double s = 0;
    for (size_t i = 0; i < n_; ++i) {
      w[off + i] = std::exp(z[static_cast<Eigen::Index>(off + i)] - m);
      s += w[off + i];
    }
    for (size_t i = 0; i < n_; ++i) w[off + i] /= s;
  }
  return w;
}

Eigen::VectorXd Parameterization::point(const std::vector<double>& weights) const {
  if (weights.size() != dimension())
    throw_input("weights: {} values for a search space of dimension {}", weights.size(),
                dimension());
  Eigen::VectorXd z(static_cast<Eigen::Index>(dimension()));
  if (kind_ != WeightKind::Simplex) {
    for (size_t i = 0; i < weights.size(); ++i)
      z[static_cast<Eigen::Index>(i)] = from_weight(weights[i]);
    return z;
  }
  for (size_t g = 0; g < g_; ++g) {
    const size_t off = g * n_;
    double s = 0, mean_log = 0;
    for (size_t i = 0; i < n_; ++i) {
      const double w = weights[off + i];
      if (!(w > 0) || !std::isfinite(w))
        throw_input("weights: simplex weight {} of group {} is {}; it must be positive", i, g, w);
      s += w;
      mean_log += std::log(w);
    }
    if (std::abs(s - 1.0) > 1e-9) throw_input("weights: group {} sums to {}, not 1", g, s);
    mean_log /= static_cast<double>(n_);
    for (size_t i = 0; i < n_; ++i)
      z[static_cast<Eigen::Index>(off + i)] = std::log(weights[off + i]) - mean_log;
  }
  return z;
}

std::vector<double> Parameterization::group_weights(const std::vector<double>& all_weights,
                                                    size_t group) const {
  KS_CHECK(all_weights.size() == dimension(), "weights of the wrong dimension");
  KS_CHECK(group < g_, "layer group out of range");
  const auto first = all_weights.begin() + static_cast<std::ptrdiff_t>(group * n_);
  return std::vector<double>(first, first + static_cast<std::ptrdiff_t>(n_));
}

std::vector<double> Parameterization::tensor_weights(const std::vector<double>& all_weights,
                                                     const std::string& tensor_name,
                                                     size_t n_layers) const {
  if (g_ == 1) return group_weights(all_weights, 0);
  return group_weights(all_weights,
                       layer_group(layer_position(tensor_name, n_layers), n_layers, g_));
}

size_t layer_group(int64_t position, size_t n_layers, size_t groups) {
  KS_CHECK(groups >= 1, "at least one layer group");
  if (position < 0 || n_layers == 0) return 0;
  if (position >= static_cast<int64_t>(n_layers)) return groups - 1;
  return static_cast<size_t>(position) * groups / n_layers;
}

int64_t layer_position(const std::string& tensor_name, size_t n_layers) {
  // Dot-separated parts: the first "layers" / "h" / "blocks" / "block" part
  // followed by an all-digit part gives the layer. (A hand-written scan: GCC 12
  // warns inside std::regex under the sanitizers.)
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t dot = tensor_name.find('.', start);
    parts.push_back(
        tensor_name.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const std::string& key = parts[i];
    const std::string& num = parts[i + 1];
    if (key != "layers" && key != "h" && key != "blocks" && key != "block") continue;
    if (num.empty() || num.size() > 9 ||
        !std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    return std::stoll(num);
  }
  if (tensor_name.find("embed") != std::string::npos ||
      tensor_name.find("wte") != std::string::npos || tensor_name.find("wpe") != std::string::npos)
    return -1;
  return static_cast<int64_t>(n_layers);
}

}  // namespace kintsugi::search
