#pragma once
// Maps a point z of the optimizer's search space to merge weights w.
//
// Kinds (search.parameterization):
//   simplex      w = softmax(z) within each group: w >= 0, sum w = 1 (the paper's
//                setting). Initial point z = 0 (uniform weights 1/N).
//   nonnegative  w_i = softplus(z_i) = ln(1 + e^{z_i}): w > 0, unnormalized, so
//                merges that amplify are allowed. Initial z = softplus^{-1}(1/N).
//   free         w = z: any sign. Initial z = 1/N.
// Optional box bounds (search.lower / search.upper; nonnegative and free only)
// replace the map by a smooth bijection onto the box, never clipping:
//   both bounds  w = lo + (hi - lo) / (1 + e^{-z})
//   lower only   w = lo + softplus(z)
//   upper only   w = hi - softplus(-z)
// (nonnegative with bounds uses max(lower, 0) as the lower bound.)
//
// Granularity: `checkpoint` gives one weight per checkpoint (dimension N);
// `layer_group` gives one per checkpoint and layer group (dimension N x G),
// laid out group-major: z[g*N + i] is checkpoint i in group g, and the simplex
// holds within each group.
#include <Eigen/Dense>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kintsugi/config/job.hpp"

namespace kintsugi::search {

enum class WeightKind { Simplex, Nonnegative, Free };

class Parameterization {
 public:
  Parameterization(WeightKind kind, size_t checkpoints, size_t groups = 1,
                   std::optional<double> lower = std::nullopt,
                   std::optional<double> upper = std::nullopt);
  // From the job's `search` section; InputError naming the key on bad values.
  static Parameterization from_config(const SearchConfig& cfg, size_t checkpoints);

  WeightKind kind() const { return kind_; }
  size_t checkpoints() const { return n_; }
  size_t groups() const { return g_; }
  size_t dimension() const { return n_ * g_; }

  // The start point: uniform weights 1/N in every group (for a box that
  // excludes 1/N: the box's midpoint, or bound + 1/N... see docs/optimizer.md).
  Eigen::VectorXd initial_point() const;
  // All N x G weights for z (group-major, as z).
  std::vector<double> weights(const Eigen::VectorXd& z) const;
  // z for given weights (the inverse map), e.g. to start from a baseline.
  // InputError when a weight is outside the map's range (0 for simplex and
  // nonnegative, outside an open box).
  Eigen::VectorXd point(const std::vector<double>& weights) const;
  // The N weights that apply to tensors of group `group`.
  std::vector<double> group_weights(const std::vector<double>& all_weights, size_t group) const;
  // The N weights for a tensor: its layer from its name (layer_position), the
  // layer's group (layer_group), that group's weights. With one group: all of them.
  std::vector<double> tensor_weights(const std::vector<double>& all_weights,
                                     const std::string& tensor_name, size_t n_layers) const;

 private:
  double to_weight(double z) const;    // element-wise map (not simplex)
  double from_weight(double w) const;  // its inverse
  WeightKind kind_;
  size_t n_, g_;
  std::optional<double> lo_, hi_;
};

WeightKind weight_kind(const std::string& name);  // InputError on unknown names
std::string to_string(WeightKind kind);

// Layer groups: G contiguous groups of the L transformer layers; layer l is in
// group floor(l * G / L). `position` is the layer index, -1 for tensors before
// the layers (embeddings: group 0) and L (or more) for tensors after them
// (final norm, lm_head: group G-1).
size_t layer_group(int64_t position, size_t n_layers, size_t groups);
// The position of a tensor from its name: the number after "layers.", "h.",
// "blocks." or "block." (HF Llama/Mistral/Qwen, GPT-2, GPT-NeoX-style names);
// -1 for embeddings (names with "embed", "wte" or "wpe"); n_layers otherwise.
int64_t layer_position(const std::string& tensor_name, size_t n_layers);

}  // namespace kintsugi::search
