// kintsugi: one executable, many verbs (see src/cli/verb_*.cpp).
// Exit codes: 0 success, 1 runtime failure, 2 bad input or usage.
#include <fmt/format.h>
#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <new>
#include <optional>
#include <string_view>
#include <utility>

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

// One line for a filesystem error, and whether it is the user's input at fault.
std::pair<std::string, bool> describe(const std::filesystem::filesystem_error& e) {
  std::string paths = e.path1().string();
  if (!e.path2().empty()) paths += " -> " + e.path2().string();
  // what(): "filesystem error: OPERATION: MESSAGE [path1] [path2]".
  std::string op = e.what();
  if (op.rfind("filesystem error: ", 0) == 0) op.erase(0, 18);
  if (const auto colon = op.find(": "); colon != std::string::npos) op.resize(colon);
  const bool input = kintsugi::is_path_errno(e.code().value());
  return {fmt::format("{}: {} ({})", paths.empty() ? "(no path)" : paths, e.code().message(), op),
          input};
}

void report(const char* what) {
  // One line, whatever the message holds.
  std::string line(what);
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::fprintf(stderr, "kintsugi: error: %s\n", line.c_str());
}

// `start_mpi` is called once the verb is known and before its action runs,
// when the verb needs MPI or a launcher started this process.
int run(int argc, char** argv, const std::function<void()>& start_mpi) {
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
  cli::Verb::Mpi mpi = cli::Verb::Mpi::Never;
  for (auto& v : verbs) {
    CLI::App* sub = app.add_subcommand(v.name, v.help);
    auto act = std::make_shared<std::function<int()>>();
    *act = v.setup(*sub);
    // CLI11 reads "-3" into an unsigned option as 2^64 - 3 (strtoull wraps):
    // every unsigned option of every verb refuses a negative value (exit 2).
    for (CLI::Option* opt : sub->get_options())
      if (opt->get_type_name().rfind("UINT", 0) == 0) opt->check(cli::non_negative());
    sub->callback([act, &action, &mpi, &v] {
      action = *act;
      mpi = v.mpi;
    });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // A usage error reads like every other error: one line, exit 2.
    report(fmt::format("{} (see kintsugi --help)", e.what()).c_str());
    return kExitInput;
  }
  if (mpi == cli::Verb::Mpi::Always || started_by_launcher()) start_mpi();
  check_slurm_world();
  init_logging(world_rank(), world_size(),
               verbose ? spdlog::level::debug
               : quiet ? spdlog::level::warn
                       : spdlog::level::info);
  if (!action) return kExitInput;
  // Under a launcher, a verb that never uses MPI runs once, on rank 0.
  if (mpi == cli::Verb::Mpi::Never && world_rank() != 0) return kExitOk;
  return action();
}

// glibc's malloc gives blocks from 128 KiB up their own mappings and returns
// the heap's free top to the system past 128 KiB (both thresholds move up
// only when such a mapping is freed). The scratch buffers of the merge
// methods that select entries (TIES, breadcrumbs, SCE: per call and thread)
// and the evaluator's per-batch KV caches are allocated and freed over and
// over, and every time their pages were faulted in and zeroed anew. Blocks under
// 32 MiB now come from the heap, and up to 128 MiB of it stays free for the
// next ones; larger blocks are still their own mappings. On 8 x 64 MiB bf16
// (AMD EPYC Zen 4): ties 0.72 -> 0.56 s, breadcrumbs 1.24 -> 0.86 s, sce
// 1.60 -> 1.39 s, the other methods unchanged; bench eval decode +6 %,
// prefill +2 %; peak RSS unchanged (bench/RESULTS.md).
void keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kintsugi;
  // The guard of an external scorer (eval/external_scorer.hpp): no MPI, no verbs.
  if (argc > 1 && std::string_view(argv[1]) == kScorerGuardVerb)
    return scorer_guard_main(argc, argv);
  keep_freed_memory();
  try {
    // Started by run() once the verb is known (--version, --help, a usage
    // error and the verbs that need no MPI never pay for its start-up);
    // finalized when main returns.
    std::optional<MpiSession> mpi;
    int rc = kExitRuntime;
    bool failed = true;
    try {
      rc = run(argc, argv, [&] { mpi.emplace(&argc, &argv); });
      failed = false;
    } catch (const InputError& e) {
      report(e.what());
      rc = kExitInput;
    } catch (const std::filesystem::filesystem_error& e) {
      // libstdc++'s text ("filesystem error: cannot ...: No such file or
      // directory [a] [b]") becomes "a: No such file or directory (cannot ...)";
      // a path that is missing, not a folder or not permitted is bad input.
      const auto [line, input] = describe(e);
      report(line.c_str());
      rc = input ? kExitInput : kExitRuntime;
    } catch (const std::bad_alloc&) {
      report(
          "out of memory: an allocation failed (a limit from ulimit, a cgroup or the scheduler's "
          "--mem, or the node's RAM, was reached)");
      rc = kExitRuntime;
    } catch (const std::exception& e) {
      report(e.what());
      rc = kExitRuntime;
    }
    // Results go to stdout, buffered: a full disk or a closed pipe behind a
    // redirection shows only when the buffer is flushed. A result that was
    // not written is a failure, never exit 0.
    if (!failed && (std::fflush(stdout) != 0 || std::ferror(stdout))) {
      report(fmt::format("cannot write the results to standard output: {}", std::strerror(errno))
                 .c_str());
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
