// `kintsugi optimize JOB.yaml`: the main job (src/service/optimize.cpp).
#include <fmt/format.h>

#include <memory>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/service/optimize.hpp"
#include "kintsugi/service/session.hpp"

namespace kintsugi::cli {
namespace {

struct OptimizeArgs {
  OptimizeOptions o;
  size_t budget = 0;
  uint64_t seed = 0;
  bool print_state_path = false;
};

VerbRegistration optimize_verb{
    {"optimize", "Search merge weights with CMA-ES over MPI groups (resumable)", 50,
     [](CLI::App& sub) {
       auto a = std::make_shared<OptimizeArgs>();
       sub.add_option("job", a->o.job, "Job file (YAML)")->required();
       sub.add_option("--state", a->o.state, "State file (default: the job's output.state)");
       sub.add_flag("--resume", a->o.resume, "Continue the search saved in the state file");
       auto* budget =
           sub.add_option("--budget", a->budget, "Evaluation budget (overrides search.budget)");
       auto* seed = sub.add_option("--seed", a->seed, "Search seed (overrides search.seed)");
       sub.add_option(
           "--preference", a->o.preference,
           "Chebyshev preference vector, task=w,task=w (overrides objective.preference)");
       sub.add_option("--test-top", a->o.test_top,
                      "How many of the best Pareto members are also scored on the test split")
           ->capture_default_str();
       sub.add_option("--validation-top", a->o.validation_top,
                      "With a validation split: how many of the best candidates on search (with "
                      "the Pareto set) are scored there to choose the returned merge")
           ->capture_default_str()
           ->check(CLI::Range(size_t{1}, size_t{1} << 30));
       sub.add_option("--html", a->o.html,
                      "Rewrite this HTML report page after every generation (reload it to "
                      "follow the search)");
       sub.add_flag("--print-state-path", a->print_state_path,
                    "Print the state file this job would use, and exit");
       return std::function<int()>([a, budget, seed] {
         if (budget->count()) a->o.budget = a->budget;
         if (seed->count()) a->o.seed = a->seed;
         if (a->print_state_path) {
           print_out("{}\n", state_path_for(load_job(a->o.job), a->o.state).string());
           return kExitOk;
         }
         return run_optimize(a->o);
       });
     }}};

}  // namespace
}  // namespace kintsugi::cli
