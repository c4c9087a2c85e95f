#pragma once
// One tensor's merge over this rank's element range, streamed in chunks.
// Whole-tensor statistics (TIES thresholds, model_stock / slerp dot products)
// come from collectives on `comm`; every rank of `comm` calls merge_tensor for
// the same tensor with its own range (possibly empty), in the same order.
#include <mpi.h>

#include <cstdint>
#include <functional>
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
};

// The method and its parameter values resolved for one tensor.
struct TensorMethod {
  MergeMethod method = MergeMethod::Linear;
  std::vector<float> weights;   // per model (linear: already normalized; passthrough: the
                                // scale, or empty for none)
  std::vector<double> density;  // per model (ties, dare_*, breadcrumbs*)
  std::vector<double> gamma;    // per model (breadcrumbs*)
  double lambda = 1.0;
  bool normalize = false;
  bool rescale = true;
  double t = 0.5;     // slerp, nearswap
  uint64_t seed = 0;  // dare_*
};

// Called for each finished chunk with the output bytes of elements
// [chunk.begin, chunk.end) (in out_dtype).
using ChunkSink = std::function<void(ElementRange chunk, std::span<const std::byte> bytes)>;

struct MergeTensorStats {
  double slerp_dot = 0;                       // slerp: cosine between base and model
  double model_stock_t = 0;                   // model_stock: interpolation ratio
  std::vector<uint32_t> ties_threshold_bits;  // ties: |delta| threshold per model
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

// mergekit's magnitude_outliers (breadcrumbs) counts for a tensor of numel
// entries: in ascending |delta| order, the entries ranked [n_bot, numel - n_top)
// are kept. density >= 1 keeps everything (n_bot = n_top = 0).
struct OutlierCounts {
  uint64_t n_bot = 0, n_top = 0;
};
OutlierCounts breadcrumbs_counts(uint64_t numel, double density, double gamma);

}  // namespace kintsugi
