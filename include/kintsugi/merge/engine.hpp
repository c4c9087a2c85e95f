#pragma once
// `kintsugi merge`: a recipe and its checkpoints in, one HF folder out, on all
// ranks of a communicator. Each rank merges a contiguous share of every
// tensor (the flat plan), streaming in chunks, and writes its bytes at their
// planned offsets in pre-sized files; rank 0 writes headers, the index,
// config.json, tokenizer files and the recipe, then renames the folder into
// place. The bytes written do not depend on the number of ranks.
#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/merge/recipe.hpp"

namespace kintsugi {

struct MergeOptions {
  std::filesystem::path out_dir;
  uint64_t seed = 0;
  uint64_t max_shard_bytes = 5'000'000'000ull;
  uint64_t chunk_elems = uint64_t{1} << 20;  // elements per input per streamed chunk
  bool overwrite = false;
  bool progress = true;
  // Inputs besides the recipe's checkpoints and the recipe file that the
  // output must stay apart from (export: the job file, the state).
  std::vector<NamedPath> other_inputs;
};

struct MergeReport {
  uint64_t bytes_read = 0;     // input tensor bytes the merge pass read (all ranks)
  uint64_t bytes_written = 0;  // output tensor bytes (all ranks)
  size_t tensors = 0;
  size_t shards = 0;
  double seconds = 0;
};

// Collective over `comm`. Throws InputError (the same on every rank) for bad
// recipes, missing or incompatible checkpoints, an existing output folder, or
// an output that is, contains or lies inside an input (a checkpoint of the
// recipe, the recipe file, `other_inputs`).
MergeReport run_merge(const Recipe& recipe, const MergeOptions& options, MPI_Comm comm);

// The file name the recipe is copied to inside the output folder.
inline constexpr const char* kRecipeFileName = "kintsugi_recipe.yaml";

}  // namespace kintsugi
