// `kintsugi baselines JOB.yaml`: the table the search must beat (src/service/baselines.cpp).
#include <memory>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/service/baselines.hpp"

namespace kintsugi::cli {
namespace {

VerbRegistration baselines_verb{
    {"baselines", "Score every checkpoint and the standard merge recipes; store them in the state",
     40, [](CLI::App& sub) {
       auto a = std::make_shared<BaselinesOptions>();
       sub.add_option("job", a->job, "Job file (YAML)")->required();
       sub.add_option("--state", a->state, "State file (default: the job's output.state)");
       return std::function<int()>([a] { return run_baselines(*a); });
     }}};

}  // namespace
}  // namespace kintsugi::cli
