#pragma once
// The Pareto archive of evaluated candidates and the hypervolume of a front.
// Every objective is maximized (scores oriented so that higher is better).
// p dominates q when p >= q in every objective and p > q in at least one;
// equal score vectors do not dominate each other and are both kept.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kintsugi::search {

bool dominates(const std::vector<double>& p, const std::vector<double>& q);

class ParetoArchive {
 public:
  explicit ParetoArchive(size_t objectives);

  // Offers evaluation `index` (its row in /evals) with its scores. Returns
  // true when it joins the front (members it dominates leave).
  bool add(int64_t index, const std::vector<double>& scores);

  size_t objectives() const { return k_; }
  size_t size() const { return indices_.size(); }
  // Indices of the non-dominated evaluations, ascending; scores in the same order.
  std::vector<int64_t> indices() const;
  std::vector<std::vector<double>> scores() const;

 private:
  size_t k_;
  std::vector<int64_t> indices_;
  std::vector<std::vector<double>> scores_;
};

// Exact hypervolume of the region dominated by `points` and dominating the
// reference point (which every counted point must exceed; a point that does not
// exceed it in every objective adds nothing). 1-D: max - ref; 2-D: a sweep;
// more objectives: WFG (While, Bradstreet & Barone 2012) with slicing on the
// last objective down to the 2-D sweep, fast enough for fronts of a few
// hundred points in 3 to 6 objectives.
double hypervolume(const std::vector<std::vector<double>>& points,
                   const std::vector<double>& reference);

// Indices (into points) of the non-dominated points, ascending.
std::vector<size_t> non_dominated(const std::vector<std::vector<double>>& points);

}  // namespace kintsugi::search
