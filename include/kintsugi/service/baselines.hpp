#pragma once
// `kintsugi baselines`: the table the search must beat. Scores, through the
// same distributed path as the search, every checkpoint alone, the uniform
// soup, the greedy soup (Wortsman et al. 2022), and — with the pool's base —
// task arithmetic, TIES and DARE-TIES over a small grid (docs/service.md), on
// the search and test splits, and stores them in the run state.
#include <string>
#include <vector>

namespace kintsugi {

struct BaselinesOptions {
  std::string job;
  std::string state;  // --state (default: the job's output.state)
};

// The recipe grid of the task-vector baselines: name, method, lambda, density.
struct RecipeBaseline {
  std::string name;
  std::string method;  // task_arithmetic | ties | dare_ties
  double lambda;
  double density;  // unused by task_arithmetic
};
std::vector<RecipeBaseline> recipe_baseline_grid();

// Collective over MPI_COMM_WORLD; returns the exit code.
int run_baselines(const BaselinesOptions& options);

}  // namespace kintsugi
