// `kintsugi merge RECIPE.yaml --out DIR`: one merge with a mergekit-style
// recipe, across every MPI rank (see docs/merge.md).
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/io/safetensors.hpp"
#include "kintsugi/merge/engine.hpp"

namespace kintsugi::cli {
namespace {

struct MergeArgs {
  std::string recipe;
  std::string out;
  uint64_t seed = 0;
  std::string max_shard = "5GB";
  uint64_t chunk_mib = 4;
  bool overwrite = false;
};

VerbRegistration merge_verb{
    {"merge", "Merge checkpoints with a mergekit-style recipe into an HF folder", 20,
     [](CLI::App& sub) {
       auto a = std::make_shared<MergeArgs>();
       sub.add_option("recipe", a->recipe, "Recipe (mergekit YAML)")->required();
       sub.add_option("--out,-o", a->out, "Output folder (written atomically)")->required();
       sub.add_option("--seed", a->seed, "Seed of DARE's random masks")->default_val(0);
       sub.add_option("--max-shard-size", a->max_shard, "Largest output file (e.g. 5GB, 500MB)")
           ->default_val("5GB");
       sub.add_option("--chunk-mib", a->chunk_mib, "Streaming chunk per input, in MiB of fp32")
           ->default_val(4)
           ->check(CLI::Range(1, 4096));
       sub.add_flag("--overwrite", a->overwrite, "Replace an existing output folder");
       return std::function<int()>([a] {
         const Recipe r = parse_recipe_file(a->recipe);
         MergeOptions o;
         o.out_dir = a->out;
         o.seed = a->seed;
         o.max_shard_bytes = parse_byte_size(a->max_shard);
         o.chunk_elems = a->chunk_mib * (uint64_t{1} << 18);
         o.overwrite = a->overwrite;
         o.progress = true;
         const MergeReport rep = run_merge(r, o, MPI_COMM_WORLD);
         if (world_rank() == 0) {
           const double gb = static_cast<double>(rep.bytes_read + rep.bytes_written) / 1e9;
           std::printf(
               "merged %zu tensors (%s) into %s: %zu file(s), %.3f GB read, %.3f GB "
               "written in %.2f s (%.2f GB/s) on %d rank(s)\n",
               rep.tensors, std::string(merge_method_name(r.method)).c_str(), a->out.c_str(),
               rep.shards, static_cast<double>(rep.bytes_read) / 1e9,
               static_cast<double>(rep.bytes_written) / 1e9, rep.seconds,
               rep.seconds > 0 ? gb / rep.seconds : 0.0, world_size());
         }
         return 0;
       });
     },
     Verb::Mpi::UnderLauncher}};

}  // namespace
}  // namespace kintsugi::cli
