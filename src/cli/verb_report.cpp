// `kintsugi report STATE`: the table users came for (src/service/report.cpp).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/service/report.hpp"
#include "kintsugi/service/report_html.hpp"

namespace kintsugi::cli {
namespace {

struct ReportArgs {
  std::string state;
  bool json = false, csv = false, status = false;
  std::string html;
};

VerbRegistration report_verb{
    {"report", "Tables of what the search found: checkpoints, baselines, best, Pareto front", 70,
     [](CLI::App& sub) {
       auto a = std::make_shared<ReportArgs>();
       sub.add_option("state", a->state, "State file (HDF5)")->required();
       auto* j = sub.add_flag("--json", a->json, "One JSON object on stdout");
       auto* c = sub.add_flag("--csv", a->csv, "CSV rows on stdout")->excludes(j);
       auto* st =
           sub.add_flag("--status", a->status,
                        "Print only how the last run ended: running, stopped by signal N, finished")
               ->excludes(j)
               ->excludes(c);
       sub.add_option("--html", a->html,
                      "Write the report as one self-contained HTML page (interactive plots; "
                      "opens offline)")
           ->excludes(j)
           ->excludes(c)
           ->excludes(st);
       return std::function<int()>([a] {
         // Before reading anything: the page must not land on the state (or
         // its previous copy); after, not on the job file the state names.
         const std::vector<NamedPath> state_files{{"state", a->state},
                                                  {"previous state", prev_path_of(a->state)}};
         if (!a->html.empty()) check_report_html_target(a->html, state_files);
         const RunState s = load_state(a->state);
         if (!a->html.empty()) {
           auto inputs = state_files;
           inputs.push_back({"job file", s.meta.job_file});
           check_report_html_target(a->html, inputs);
           write_report_html(a->html, s);
           spdlog::info("report: wrote {}", a->html);
         } else if (a->status)
           print_out("{}\n", run_status_text(s));
         else if (a->json)
           print_out("{}\n", report_json(s).dump());
         else if (a->csv)
           print_out("{}", report_csv(s));
         else
           print_out("{}", report_text(s));
         std::fflush(stdout);
         return kExitOk;
       });
     },
     Verb::Mpi::Never}};

}  // namespace
}  // namespace kintsugi::cli
