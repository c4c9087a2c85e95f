#pragma once
// How rank 0 drives the other ranks. Rank 0 (the coordinator) decides what to
// do next; every other rank runs serve(), which waits for the coordinator's
// next command and takes part in it:
//   score  — score a list of models on a split: group g scores models
//            g, g + G, g + 2G, … in rounds; group leaders' results reach rank 0
//   merge  — a collective file-to-file merge (run_merge) of a recipe
//   finish — serve() returns
// Commands travel as JSON over MPI_Bcast; scores come back as JSON text, so
// doubles round-trip exactly.
#include <atomic>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kintsugi/eval/uncertainty.hpp"
#include "kintsugi/service/runtime.hpp"

namespace kintsugi {

// One model to score: a linear merge of the pool (N × G weights), or a
// checkpoint folder (a merge written to disk by a recipe).
struct ModelRequest {
  std::vector<double> weights;
  std::filesystem::path folder;
};

struct Scored {
  std::vector<double> scores;  // one per task, the task's primary metric (raw orientation)
  // Per task, the primary metric's per-example numbers (builtin evaluator,
  // held-out splits; empty on the search split, from an external scorer or
  // for a failed model).
  std::vector<ExampleScores> examples;
  bool ok = true;
  std::string error;  // why it failed
  double seconds = 0;
  double merge_seconds = 0;  // of `seconds`: merging (and writing, for a command evaluator)
  double score_seconds = 0;  // of `seconds`: scoring
  bool stopped = false;      // a stop signal ended its scorer: not a result
};

// Thrown by Coordinator::score when a stop signal ended a scoring that could
// not be abandoned between rounds (the scorer runs were stopped): the caller
// saves nothing more and the command exits with kExitStopped.
class StopRequested : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Coordinator {
 public:
  // `stop` (rank 0 only; may be null): checked between scoring rounds.
  Coordinator(Runtime& runtime, const std::atomic<bool>* stop);
  // Scores every request on `split`. Returns nullopt when a stop was requested
  // before all rounds finished (the results so far are abandoned) or a stop
  // ended an external scorer; in the latter case a scoring that is not
  // `abandonable` throws StopRequested instead.
  std::optional<std::vector<Scored>> score(const std::vector<ModelRequest>& models,
                                           const std::string& split, bool abandonable);
  // Runs a merge recipe (YAML text, resolved as if it were at `recipe_path`)
  // across all ranks into `out_dir`.
  void merge(const std::string& recipe_text, const std::filesystem::path& recipe_path,
             const std::filesystem::path& out_dir, uint64_t seed);
  // Releases the workers.
  void finish();
  ~Coordinator();

 private:
  Runtime& runtime_;
  const std::atomic<bool>* stop_;
  bool finished_ = false;
};

// Every rank but 0: follow the coordinator's commands until it finishes.
void serve(Runtime& runtime);

}  // namespace kintsugi
