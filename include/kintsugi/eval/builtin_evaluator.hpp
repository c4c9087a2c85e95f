#pragma once
// The builtin evaluator: scores one model (this rank's ModelShard of it) on a
// list of tasks with the tensor-parallel forward pass over `group`. Every rank
// of the group calls it with the same tasks; the results are identical on all
// of them. Requests are batched (`batch_size` sequences per forward pass):
// choice contexts are prefilled once and their KV cache is shared by the
// choices; generation decodes a batch of examples together. Texts are encoded
// with lm-evaluation-harness's rules (docs/evaluator.md).
#include <mpi.h>

#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "kintsugi/eval/task.hpp"
#include "kintsugi/eval/uncertainty.hpp"
#include "kintsugi/pool/model_shard.hpp"
#include "kintsugi/tokenizer/tokenizer.hpp"

namespace kintsugi {

struct EvalOptions {
  size_t batch_size = 16;
  bool keep_samples = false;  // fill TaskResult::samples
  // Generation stops at any of these ids (generation_config.json's
  // eos_token_id); empty: config.json's eos_token_id, else the tokenizer's EOS.
  std::vector<int32_t> eos_ids;
};

struct TaskResult {
  std::string task;
  std::string metric;  // the task's primary metric
  double score = 0;    // its value
  // Every metric the kind computes, and "<metric>_stderr" for the primary
  // one (and for acc and acc_norm alike): eval/uncertainty.hpp.
  std::map<std::string, double> metrics;
  // The primary metric's per-example numbers (resampled by the report's
  // paired comparisons).
  ExampleScores examples;
  // One object per example (task, index, id, loglikelihoods | output | nll, correct).
  std::vector<nlohmann::json> samples;
};

std::vector<TaskResult> evaluate_model(MPI_Comm group, const ModelShard& shard,
                                       const Tokenizer& tokenizer, std::span<const EvalTask> tasks,
                                       const EvalOptions& options);

}  // namespace kintsugi
