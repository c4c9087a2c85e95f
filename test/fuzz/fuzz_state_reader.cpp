// libFuzzer target for the HDF5 state reader, load_state (built and run by
// scripts/fuzz.sh). Input: the bytes of a state file; each is written to a
// temporary file and read back as `report`, `export` and `--resume` read it.
// Any input may be refused with an InputError; anything else (another
// exception, a crash, a sanitizer report, a leak) is a bug.
//
// Run with KINTSUGI_FUZZ_WRITE_SEEDS=DIR it writes seed states with
// save_state (kintsugi's own writer, as `optimize` saves them) and exits.
#include <unistd.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "kintsugi/common/error.hpp"
#include "kintsugi/state/run_state.hpp"

namespace {

namespace fs = std::filesystem;
using kintsugi::RunState;

RunState seed_state(size_t n, size_t k, size_t e, bool with_optimizer) {
  RunState s;
  s.meta.kintsugi_version = "fuzz";
  s.meta.config = "pool:\n  checkpoints: [a, b]\n";
  s.meta.config_hash = "0123456789abcdef";
  s.meta.seed = 7;
  s.meta.created = "2026-01-01T00:00:00Z";
  s.meta.job_file = "/tmp/job.yaml";
  for (size_t i = 0; i < n; ++i) {
    s.meta.pool_names.push_back("ckpt-" + std::to_string(i));
    s.meta.pool_fingerprints.push_back(std::string(16, static_cast<char>('a' + i % 6)));
  }
  for (size_t t = 0; t < k; ++t) s.meta.task_names.push_back("task" + std::to_string(t));
  s.meta.settings = {{"search.sigma0", "0.5"}, {"search.population", "6"}};
  s.evals.dims = n;
  s.evals.n_weights = n;
  s.evals.n_tasks = k;
  s.baselines.n_weights = n;
  s.baselines.n_tasks = k;
  s.test.n_tasks = k;
  std::vector<double> w(n, 1.0 / static_cast<double>(n)), sc(k, 0.5);
  for (size_t i = 0; i < e; ++i) {
    sc[0] = 0.1 * static_cast<double>(i);
    s.evals.append(w, w, sc, sc[0],
                   i % 3 == 2 ? kintsugi::EvalStatus::Failed : kintsugi::EvalStatus::Ok,
                   i % 3 == 2 ? "scorer failed" : "", static_cast<int64_t>(i / 2), 1.5, 0.5, 1.0);
  }
  s.baselines.append("uniform_soup", "linear", w, sc, sc, 0.5, std::nan(""));
  s.baselines.append("ckpt-0", "checkpoint", w, sc, sc, 0.25, 0.2);
  if (e > 0) {
    s.pareto = {0};
    s.test.eval_index = {0};
    s.test.scores = sc;
    s.test.objective = {0.5};
  }
  if (with_optimizer) {
    s.optimizer.strings["kind"] = "cmaes";
    s.optimizer.ints["generation"] = {3};
    s.optimizer.reals["mean"] = w;
    s.optimizer.reals["sigma"] = {0.3};
    s.optimizer.reals["C"] = std::vector<double>(n * n, 0.0);
  }
  return s;
}

std::string g_path;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("KINTSUGI_FUZZ_WRITE_SEEDS")) {
    try {
      kintsugi::save_state(fs::path(dir) / "empty.h5", seed_state(2, 1, 0, false));
      kintsugi::save_state(fs::path(dir) / "small.h5", seed_state(3, 2, 6, true));
      kintsugi::save_state(fs::path(dir) / "wide.h5", seed_state(8, 4, 20, true));
      for (const char* prev : {"empty.h5.prev", "small.h5.prev", "wide.h5.prev"})
        fs::remove(fs::path(dir) / prev);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_state_reader: writing seeds: %s\n", e.what());
      std::exit(1);
    }
    std::exit(0);
  }
  const char* tmp = std::getenv("TMPDIR");
  g_path = std::string(tmp && *tmp ? tmp : "/tmp") + "/kintsugi-fuzz-state-" +
           std::to_string(::getpid()) + ".h5";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FILE* f = std::fopen(g_path.c_str(), "wb");
  if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
  try {
    const RunState s = kintsugi::load_state(g_path);
    // What was accepted is consistent: every table as wide as it claims.
    s.evals.check();
    s.baselines.check();
    s.test.check();
    if (s.meta.pool_names.empty() || s.evals.n_weights % s.meta.pool_names.size() != 0)
      __builtin_trap();
    (void)kintsugi::best_evaluation(s);
  } catch (const kintsugi::InputError&) {
  }
  return 0;
}
