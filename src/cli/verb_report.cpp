// `kintsugi report STATE`: the table users came for (src/service/report.cpp).
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/service/report.hpp"

namespace kintsugi::cli {
namespace {

struct ReportArgs {
  std::string state;
  bool json = false, csv = false;
};

VerbRegistration report_verb{
    {"report", "Tables of what the search found: checkpoints, baselines, best, Pareto front", 70,
     [](CLI::App& sub) {
       auto a = std::make_shared<ReportArgs>();
       sub.add_option("state", a->state, "State file (HDF5)")->required();
       auto* j = sub.add_flag("--json", a->json, "One JSON object on stdout");
       sub.add_flag("--csv", a->csv, "CSV rows on stdout")->excludes(j);
       return std::function<int()>([a] {
         if (world_rank() != 0) return kExitOk;
         const RunState s = load_state(a->state);
         if (a->json)
           fmt::print("{}\n", report_json(s).dump());
         else if (a->csv)
           fmt::print("{}", report_csv(s));
         else
           fmt::print("{}", report_text(s));
         std::fflush(stdout);
         return kExitOk;
       });
     }}};

}  // namespace
}  // namespace kintsugi::cli
