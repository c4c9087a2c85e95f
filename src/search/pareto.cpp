// Pareto archive and exact hypervolume (maximization). Written here: a few
// dozen lines, and no Debian package offers an exact hypervolume for C++.
#include "kintsugi/search/pareto.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kintsugi/common/error.hpp"

namespace kintsugi::search {

bool dominates(const std::vector<double>& p, const std::vector<double>& q) {
  bool strictly = false;
  for (size_t k = 0; k < p.size(); ++k) {
    if (p[k] < q[k]) return false;
    if (p[k] > q[k]) strictly = true;
  }
  return strictly;
}

ParetoArchive::ParetoArchive(size_t objectives) : k_(objectives) {
  if (k_ < 1) throw_input("pareto: need at least one objective");
}

bool ParetoArchive::add(int64_t index, const std::vector<double>& scores) {
  if (scores.size() != k_) throw_input("pareto: {} scores for {} objectives", scores.size(), k_);
  for (double s : scores)
    if (!std::isfinite(s)) throw_input("pareto: evaluation {} has a non-finite score {}", index, s);
  for (const auto& q : scores_)
    if (dominates(q, scores)) return false;
  size_t out = 0;
  for (size_t i = 0; i < scores_.size(); ++i) {
    if (dominates(scores, scores_[i])) continue;
    if (out != i) {
      scores_[out] = std::move(scores_[i]);
      indices_[out] = indices_[i];
    }
    ++out;
  }
  scores_.resize(out);
  indices_.resize(out);
  auto pos = std::upper_bound(indices_.begin(), indices_.end(), index) - indices_.begin();
  indices_.insert(indices_.begin() + pos, index);
  scores_.insert(scores_.begin() + pos, scores);
  return true;
}

std::vector<int64_t> ParetoArchive::indices() const {
  return indices_;
}
std::vector<std::vector<double>> ParetoArchive::scores() const {
  return scores_;
}

std::vector<size_t> non_dominated(const std::vector<std::vector<double>>& points) {
  std::vector<size_t> keep;
  for (size_t i = 0; i < points.size(); ++i) {
    bool dominated = false;
    for (size_t j = 0; j < points.size() && !dominated; ++j)
      dominated = j != i && dominates(points[j], points[i]);
    if (!dominated) keep.push_back(i);
  }
  return keep;
}

namespace {

using Point = std::vector<double>;

// Area dominated by points (first two objectives) above ref: sweep in
// decreasing first objective, adding each new strip in the second.
double hv2(std::vector<Point> ps, const Point& ref) {
  std::sort(ps.begin(), ps.end(), [](const Point& a, const Point& b) {
    return a[0] != b[0] ? a[0] > b[0] : a[1] > b[1];
  });
  double area = 0, top = ref[1];
  for (const auto& p : ps) {
    if (p[1] > top) {
      area += (p[0] - ref[0]) * (p[1] - top);
      top = p[1];
    }
  }
  return area;
}

double hv_rec(std::vector<Point> ps, const Point& ref, size_t d);

// Removes points dominated (weakly, in the first d objectives) by another;
// of equal points one stays.
std::vector<Point> nondominated_prefix(std::vector<Point> ps, size_t d) {
  std::vector<Point> out;
  for (size_t i = 0; i < ps.size(); ++i) {
    bool drop = false;
    for (size_t j = 0; j < ps.size() && !drop; ++j) {
      if (j == i) continue;
      bool geq = true, gt = false;
      for (size_t k = 0; k < d && geq; ++k) {
        if (ps[j][k] < ps[i][k])
          geq = false;
        else if (ps[j][k] > ps[i][k])
          gt = true;
      }
      drop = geq && (gt || j < i);  // dominated, or a duplicate of an earlier point
    }
    if (!drop) out.push_back(ps[i]);
  }
  return out;
}

// Hypervolume in the first d objectives (d >= 2) of points that all exceed ref.
double hv_rec(std::vector<Point> ps, const Point& ref, size_t d) {
  if (ps.empty()) return 0.0;
  if (d == 2) return hv2(std::move(ps), ref);
  if (ps.size() == 1) {
    double v = 1;
    for (size_t k = 0; k < d; ++k) v *= ps[0][k] - ref[k];
    return v;
  }
  // Slice on objective d-1: in increasing order of it, point i's box minus the
  // boxes of the later points (which reach at least as high in d-1) is its
  // (d-1)-dimensional exclusive volume times its height (WFG's exclhv).
  const size_t last = d - 1;
  std::sort(ps.begin(), ps.end(),
            [last](const Point& a, const Point& b) { return a[last] < b[last]; });
  double volume = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    double incl = 1;
    for (size_t k = 0; k < last; ++k) incl *= ps[i][k] - ref[k];
    std::vector<Point> limited;
    limited.reserve(ps.size() - i - 1);
    for (size_t j = i + 1; j < ps.size(); ++j) {
      Point q(last);
      for (size_t k = 0; k < last; ++k) q[k] = std::min(ps[i][k], ps[j][k]);
      limited.push_back(std::move(q));
    }
    const double covered = hv_rec(nondominated_prefix(std::move(limited), last), ref, last);
    volume += (incl - covered) * (ps[i][last] - ref[last]);
  }
  return volume;
}

}  // namespace

double hypervolume(const std::vector<std::vector<double>>& points,
                   const std::vector<double>& reference) {
  const size_t d = reference.size();
  if (d < 1) throw_input("hypervolume: the reference point needs at least one objective");
  std::vector<Point> ps;
  for (const auto& p : points) {
    if (p.size() != d)
      throw_input("hypervolume: a point has {} objectives, the reference {}", p.size(), d);
    bool above = true;
    for (size_t k = 0; k < d; ++k) {
      if (!std::isfinite(p[k]))
        throw_input("hypervolume: a point has a non-finite objective {}", p[k]);
      above = above && p[k] > reference[k];
    }
    if (above) ps.push_back(p);
  }
  if (ps.empty()) return 0.0;
  if (d == 1) {
    double best = ps[0][0];
    for (const auto& p : ps) best = std::max(best, p[0]);
    return best - reference[0];
  }
  return hv_rec(nondominated_prefix(std::move(ps), d), reference, d);
}

}  // namespace kintsugi::search
