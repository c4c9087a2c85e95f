#pragma once
// `kintsugi optimize`: the main job. Rank 0 asks CMA-ES (or random search) for
// a generation, the groups score the candidates (merged in memory from the
// pool's shards), rank 0 tells the scores, records every evaluation and saves
// the state atomically after each generation. See docs/service.md.
#include <cstdint>
#include <optional>
#include <string>

namespace kintsugi {

struct OptimizeOptions {
  std::string job;
  std::string state;             // --state (default: the job's output.state)
  bool resume = false;           // --resume
  std::optional<size_t> budget;  // --budget
  std::optional<uint64_t> seed;  // --seed (sweeps)
  std::string preference;        // --preference "task=w,..." (chebyshev sweeps)
  size_t test_top = 10;          // Pareto members also scored on the test split
  size_t validation_top = 10;    // best candidates on search scored on validation
  std::string html;              // --html: the report page, rewritten at every save
};

// Returns the exit code: 0 done, kExitStopped (3) when a signal stopped it
// after saving. Collective over MPI_COMM_WORLD.
int run_optimize(const OptimizeOptions& options);

}  // namespace kintsugi
