// kintsugi: one executable, many verbs (see src/cli/verb_*.cpp).
// Exit codes: 0 success, 1 runtime failure, 2 bad input or usage.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string_view>

#include "kintsugi/cli/verb.hpp"
#include "kintsugi/common/error.hpp"
#include "kintsugi/common/log.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/eval/external_scorer.hpp"

namespace kintsugi::cli {
std::vector<Verb>& verb_registry() {
  static std::vector<Verb> verbs;
  return verbs;
}
}  // namespace kintsugi::cli

namespace {

// Under `srun` a missing or mismatched PMI starts N separate one-rank jobs that
// would all write the same files: refuse to run unless MPI's world matches the
// step. (Under mpirun, Open MPI sets OMPI_COMM_WORLD_SIZE and owns the layout.)
void check_slurm_world() {
  const char* step = std::getenv("SLURM_STEP_ID");
  const char* ntasks = std::getenv("SLURM_NTASKS");
  if (!step || !ntasks || std::getenv("OMPI_COMM_WORLD_SIZE")) return;
  const int expected = std::atoi(ntasks);
  const int size = kintsugi::world_size();
  if (expected > 0 && expected != size)
    kintsugi::throw_input(
        "MPI world size is {} but SLURM_NTASKS is {}: launch with `srun --mpi=pmix` "
        "(or the PMI plugin your MPI was built with)",
        size, expected);
}

void report(const char* what) {
  // One line, whatever the message holds.
  std::string line(what);
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::fprintf(stderr, "kintsugi: error: %s\n", line.c_str());
}

int run(int argc, char** argv) {
  using namespace kintsugi;
  CLI::App app{"kintsugi: recycle training checkpoints into merges that beat them"};
  app.require_subcommand(1);
  app.set_version_flag("--version", KINTSUGI_VERSION);
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "Debug logging");
  app.add_flag("-q,--quiet", quiet, "Warnings and errors only");

  auto& verbs = cli::verb_registry();
  std::sort(verbs.begin(), verbs.end(),
            [](const cli::Verb& a, const cli::Verb& b) { return a.order < b.order; });
  std::function<int()> action;
  for (auto& v : verbs) {
    CLI::App* sub = app.add_subcommand(v.name, v.help);
    auto act = std::make_shared<std::function<int()>>();
    *act = v.setup(*sub);
    sub->callback([act, &action] { action = *act; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitInput;
  }
  check_slurm_world();
  init_logging(world_rank(), world_size(),
               verbose ? spdlog::level::debug
               : quiet ? spdlog::level::warn
                       : spdlog::level::info);
  return action ? action() : kExitInput;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kintsugi;
  // The guard of an external scorer (eval/external_scorer.hpp): no MPI, no verbs.
  if (argc > 1 && std::string_view(argv[1]) == kScorerGuardVerb)
    return scorer_guard_main(argc, argv);
  try {
    MpiSession mpi(&argc, &argv);
    int rc = kExitRuntime;
    bool failed = true;
    try {
      rc = run(argc, argv);
      failed = false;
    } catch (const InputError& e) {
      report(e.what());
      rc = kExitInput;
    } catch (const std::bad_alloc&) {
      report(
          "out of memory: an allocation failed (a limit from ulimit, a cgroup or the scheduler's "
          "--mem, or the node's RAM, was reached)");
      rc = kExitRuntime;
    } catch (const std::exception& e) {
      report(e.what());
      rc = kExitRuntime;
    }
    // One failing rank must not leave the others waiting in a collective.
    if (failed && world_size() > 1) MPI_Abort(MPI_COMM_WORLD, rc);
    return rc;
  } catch (const std::exception& e) {
    report(e.what());
    return kExitRuntime;
  }
}
