#pragma once
// `kintsugi export STATE --out DIR`: writes the merged checkpoint of a chosen
// evaluation (default: the best) as an HF folder, through the merge engine
// (a linear recipe with the evaluation's weights; per layer group when the
// search used layer groups), across all MPI ranks.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kintsugi/config/job.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/state/run_state.hpp"

namespace kintsugi {

struct ExportOptions {
  std::string state;
  std::string out;
  std::optional<int64_t> eval;  // --eval INDEX; default: the best
  std::string job;              // --job: where the pool is, if the job file moved
  std::string dtype;            // --dtype: bfloat16 | float16 | float32 (default: the pool's)
  std::string max_shard_size = "5GB";
  bool overwrite = false;
};

// The mergekit-style linear recipe reproducing evaluation weights `w` (N × G,
// group-major) over `checkpoints`, with `num_layers` layers (written by
// emit_recipe(): any path reads back as itself; InputError for a non-finite
// weight).
// `tokenizer_source` as recipe_tokenizer_source() gives it.
std::string linear_recipe_text(const std::vector<std::string>& checkpoints,
                               const std::vector<double>& w, size_t num_layers,
                               const std::string& out_dtype, const std::string& comment,
                               const std::string& tokenizer_source);

// The recipes' tokenizer_source for the job's pool.tokenizer_source: empty
// (none), "base" (with `linear`, the first checkpoint), "union", or the
// chosen checkpoint's path. With `base_model` in the recipe (task-vector
// baselines), "base" would name that model: the first checkpoint's path is
// given instead (base_named_apart).
std::string recipe_tokenizer_source(const PoolConfig& pool, bool base_named_apart = false);

// The floating dtype of the pool's first checkpoint as a recipe writes it:
// bfloat16, float16 or float32 (what export and candidates are written in by
// default).
std::string pool_dtype_name(const HfCheckpoint& first);

// The pool at `paths` is the one a state records: the same checkpoint names
// in the same order and the same fingerprints (pool/pool.hpp). InputError
// naming the job file, the position, both checkpoints and the state otherwise
// (a reordered pool, a moved folder now holding other weights).
void check_pool_identity(const std::vector<std::string>& paths,
                         const std::vector<std::string>& names,
                         const std::vector<std::string>& fingerprints, const std::string& job_file,
                         const std::string& state_file);

// Rank 0 reads the state once and tells the others what to merge; every rank
// checks the pool's identity before merging.
int run_export(const ExportOptions& options);

}  // namespace kintsugi
