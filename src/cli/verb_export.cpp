// `kintsugi export STATE --out DIR`: the merged checkpoint of a chosen evaluation.
#include <memory>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/service/export.hpp"

namespace kintsugi::cli {
namespace {

struct ExportArgs {
  ExportOptions o;
  int64_t eval = -1;
  bool best = false;
};

VerbRegistration export_verb{
    {"export", "Write the merged checkpoint of the best (or a chosen) evaluation as an HF folder",
     60, [](CLI::App& sub) {
       auto a = std::make_shared<ExportArgs>();
       sub.add_option("state", a->o.state, "State file (HDF5)")
           ->required()
           ->check(CLI::ExistingFile);
       sub.add_option("--out", a->o.out, "Output folder (must not exist unless --overwrite)")
           ->required();
       auto* best =
           sub.add_flag("--best", a->best, "The evaluation with the best objective (default)");
       sub.add_option("--eval", a->eval, "Row of /evals to export")
           ->check(non_negative())
           ->excludes(best);
       sub.add_option("--job", a->o.job, "Job file, if the pool moved since the search");
       sub.add_option("--dtype", a->o.dtype,
                      "Output dtype: bfloat16, float16 or float32 (default: the pool's)")
           ->check(CLI::IsMember({"bfloat16", "float16", "float32"}));
       sub.add_option("--max-shard-size", a->o.max_shard_size, "Largest output file")
           ->capture_default_str();
       sub.add_flag("--overwrite", a->o.overwrite, "Replace an existing output folder");
       return std::function<int()>([a] {
         if (a->eval >= 0) a->o.eval = a->eval;
         return run_export(a->o);
       });
     }}};

}  // namespace
}  // namespace kintsugi::cli
