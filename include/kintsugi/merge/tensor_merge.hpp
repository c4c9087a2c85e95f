#pragma once
// One tensor's merge over this rank's element range, streamed in chunks.
// Whole-tensor statistics (TIES thresholds, model_stock / slerp dot products)
// come from collectives on `comm`; every rank of `comm` calls merge_tensor for
// the same tensor with its own range (possibly empty), in the same order.
#include <mpi.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kintsugi/io/dtype.hpp"
#include "kintsugi/merge/recipe.hpp"
#include "kintsugi/pool/flat_plan.hpp"

namespace kintsugi {

// Where a tensor's elements come from. Pointers address element 0 of the whole
// tensor (e.g. zero-copy mmap views); only elements in the rank's range are read.
struct TensorSources {
  std::string name;
  uint64_t numel = 0;
  DType dtype = DType::BF16;
  const void* base = nullptr;       // methods with a base model
  std::vector<const void*> models;  // the other inputs, in recipe order
  // Its shape (empty: [numel]): della ranks |delta| within rows of the last
  // dimension; nuslerp's rows and columns.
  std::vector<int64_t> shape;
};

// The method and its parameter values resolved for one tensor.
struct TensorMethod {
  MergeMethod method = MergeMethod::Linear;
  std::vector<float> weights;   // per model (linear: already normalized; passthrough: the
                                // scale, or empty for none)
  std::vector<double> density;  // per model (ties, dare_*, breadcrumbs*)
  std::vector<double> gamma;    // per model (breadcrumbs*)
  std::vector<double> epsilon;  // per model (della*)
  double lambda = 1.0;
  bool normalize = false;
  // ties, dare_*, breadcrumbs*, della*: survivors times mergekit's L1 factor
  // (sum |delta| / sum |kept delta|); the engine sets mergekit's default per
  // method (on for dare_* and della*).
  bool rescale = false;
  double t = 0.5;            // slerp, nearswap, nuslerp (weight_1 / (weight_0 + weight_1))
  double select_topk = 1.0;  // sce
  uint64_t seed = 0;         // dare_*, della*
  // nuslerp: slerp of the whole tensor as one vector (flatten), else of each
  // row (vectors along the last dimension) or, with row_wise, of each
  // vector along dimension 0 (a matrix's columns), as mergekit's dim = 0.
  bool flatten = true;
  bool row_wise = false;
  // multislerp: the weights as written (double), normalized to sum 1 when normalize_weights.
  std::vector<double> sphere_weights;
  bool normalize_weights = true;
  double eps = 1e-8;
  // karcher
  int64_t max_iter = 10;
  double tol = 1e-5;
  // ram, ramplus_tl: an entry of a task vector counts when |delta| > ram_epsilon;
  // ramplus_tl scales a model's unique entries by 1 + r * clamp(rho, 0, alpha).
  double ram_epsilon = 1e-5;
  double ram_r = 0.1;
  double ram_alpha = 0.2;
  // cabs: the models' indices in pruning order, and per position of that
  // order the model's n:m (keep n of every m) and weight (in `weights`).
  std::vector<size_t> order;
  std::vector<uint32_t> keep_n, block_m;
};

// Called for each finished chunk with the output bytes of elements
// [chunk.begin, chunk.end) (in out_dtype): in any order, and from several
// threads at once (for different chunks), so that writing one chunk overlaps
// computing the next.
using ChunkSink = std::function<void(ElementRange chunk, std::span<const std::byte> bytes)>;

struct MergeTensorStats {
  double slerp_dot = 0;                       // slerp: cosine between base and model
  double model_stock_t = 0;                   // model_stock: interpolation ratio
  std::vector<uint32_t> ties_threshold_bits;  // ties: |delta| threshold per model
  // della*, dare_*, and ties / breadcrumbs* with rescale: the L1 factor per
  // model (1 where it is not rescaled)
  std::vector<float> l1_scale;
  std::vector<float> sce_weights;  // sce: the per-model weights
  uint64_t sce_selected = 0;       // sce: entries kept by select_topk (numel if all)
  // multislerp, karcher, flattened nuslerp: the weight of each input of the
  // final sum (before rounding to fp32; karcher: the base first when given)
  std::vector<double> coefficients;
  int64_t karcher_iterations = 0;  // karcher: updates of the mean done
  bool multislerp_lerp = false;    // multislerp: two antipodal inputs, linear fallback
  // ramplus_tl: per model, its entries that count shared with another model
  // and unique to it, and the factor of its unique entries
  std::vector<uint64_t> ram_shared, ram_unique;
  std::vector<float> ram_lambda;
  // arcee_fusion: the importance quartiles and the threshold
  float fusion_q1 = 0, fusion_median = 0, fusion_q3 = 0, fusion_threshold = 0;
};

MergeTensorStats merge_tensor(const TensorSources& src, const TensorMethod& m, ElementRange range,
                              DType out_dtype, uint64_t chunk_elems, MPI_Comm comm,
                              const ChunkSink& sink);

// TIES selection for one tensor (exposed for tests): per model, the |delta|
// key threshold and the global index cutoff among ties, such that exactly
// floor(density * numel) entries are kept: all with key > threshold, then the
// lowest-index ones with key == threshold.
struct TopKSelection {
  std::vector<uint32_t> thr_bits;
  std::vector<uint64_t> tie_cutoff;
};
TopKSelection ties_select(const TensorSources& src, std::span<const double> density,
                          ElementRange range, uint64_t chunk_elems, MPI_Comm comm);
// The same selection for given counts: per model, the k[i] entries of largest
// |delta| (ties: lowest index first); k[i] >= numel keeps everything, 0 nothing.
TopKSelection topk_select(const TensorSources& src, std::span<const uint64_t> k, ElementRange range,
                          uint64_t chunk_elems, MPI_Comm comm);

// The Gram matrix of nv vectors (row-major nv x nv), as every method that
// rescales by norms computes it: with m the largest magnitude over all the
// vectors' elements and e the exponent such that m < 2^e (frexp), E = 62 - 2e,
//   G_ab = double(sum_k trunc(x_a[k] * x_b[k] * 2^E)) * 2^-E,
// each product exact in double, truncated toward zero, summed exactly in a
// 128-bit integer and rounded once to double (nearest even): the same value
// for any split of the elements among ranks or chunks. G = 0 when m = 0.

// The slerp weights of nuslerp for one vector pair with Gram entries g00,
// g01, g11 (mergekit's nuslerp, in double): norms clamped to >= 1e-7,
// cos = g01 / (n0 n1) clamped to [-1, 1], theta = acos(cos); when
// |sin theta| < 1e-8, (1 - t, t); else (sin((1 - t) theta), sin(t theta)) / sin theta.
std::array<double, 2> nuslerp_coefficients(double g00, double g01, double g11, double t);

// multislerp's weights of its N inputs (mergekit's multislerp on the span of
// the inputs, in double) from their Gram matrix and the weights (already
// normalized when normalize_weights). nullopt when the weighted mean of the
// unit vectors has norm < eps (mergekit: linear fallback for two inputs, an
// error otherwise).
std::optional<std::vector<double>> multislerp_coefficients(std::span<const double> gram,
                                                           std::span<const double> w, double eps);

// karcher's weights of its N inputs (mergekit's karcher_merge_tensors with
// equal alphas, iterated on the span of the inputs in double) from their Gram
// matrix; `iterations` gets the number of updates of the mean.
std::vector<double> karcher_coefficients(std::span<const double> gram, int64_t max_iter, double tol,
                                         int64_t* iterations);

// mergekit's magnitude_outliers (breadcrumbs) counts for a tensor of numel
// entries: in ascending |delta| order, the entries ranked [n_bot, numel - n_top)
// are kept. density >= 1 keeps everything (n_bot = n_top = 0).
struct OutlierCounts {
  uint64_t n_bot = 0, n_top = 0;
};
OutlierCounts breadcrumbs_counts(uint64_t numel, double density, double gamma);

// DELLA's ranks (exposed for tests): for input i, the 0-based ascending rank
// of |delta| of each element [c.begin, c.end) within its row of `row_len`
// elements (rows start at multiples of row_len). Order: |delta| as IEEE bit
// patterns, and among equal keys the lower index ranks higher (the order
// TIES keeps them in). Reads whole rows, also outside c.
void della_ranks(const TensorSources& src, size_t i, ElementRange c, uint64_t row_len,
                 uint32_t* out);

// arcee_fusion's divergence of one row of n elements (exposed for tests), in
// double, each sum in index order: p = softmax(x) + 1e-8, q = softmax(base) +
// 1e-8 (softmax with the row's maximum subtracted), sum p log(p / q).
double fusion_row_divergence(const float* x, const float* base, uint64_t n);

// Exact sum of |x| (power 1) or x^2 (power 2) over fp32 values, independent
// of order and of how the values are split: per binary exponent, the integer
// sum of the significands. value() is the exact total rounded once to the
// nearest double (ties to even); NaN if any value was NaN, else +Inf if any
// was infinite.
class ExactSum {
 public:
  explicit ExactSum(int power) : power_(power) {}
  void add(float x);
  // add(x) for every x, faster for many.
  void add(std::span<const float> xs);
  // Adds another partial sum of the same power in (another thread's).
  void merge(const ExactSum& other);
  // Adds another rank's sums in: every rank of comm ends with the total.
  void allreduce(MPI_Comm comm);
  double value() const;

 private:
  __extension__ typedef unsigned __int128 u128;
  int power_;
  u128 bins_[255] = {};
  uint64_t inf_ = 0, nan_ = 0;
};

}  // namespace kintsugi
