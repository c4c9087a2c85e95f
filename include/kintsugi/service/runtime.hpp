#pragma once
// What every rank holds for a job, loaded once for the whole run: the pool's
// checkpoints, this rank's tensor-parallel shard of every one of them, the
// evaluation groups, the tokenizer and the tasks. Memory per rank is
// N × model_bytes / T for the pool plus the merged fp32 shard.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kintsugi/config/job.hpp"
#include "kintsugi/eval/eval_groups.hpp"
#include "kintsugi/eval/task.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/pool/model_shard.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "kintsugi/tokenizer/byte_tokenizer.hpp"

namespace kintsugi {

class Runtime {
 public:
  // Collective over MPI_COMM_WORLD. InputError for an unreadable or
  // incompatible pool, a tensor_parallel that does not divide the world, a
  // non-builtin evaluator, or bad task files.
  explicit Runtime(JobConfig job);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const JobConfig& job() const { return job_; }
  const std::vector<HfCheckpoint>& checkpoints() const { return checkpoints_; }
  std::vector<std::string> checkpoint_names() const;
  size_t num_checkpoints() const { return checkpoints_.size(); }
  size_t num_layers() const;
  // Weights per candidate: N × G (G = search.layer_groups with granularity
  // layer_group, else 1).
  size_t num_weights() const;
  std::vector<std::string> task_names() const;
  std::vector<bool> higher_is_better() const;

  EvalGroups& groups() { return *groups_; }
  const PoolShards& pool() const { return *pool_; }
  const ByteTokenizer& tokenizer() const { return *tokenizer_; }
  // The tasks of one split, loaded on first use; "search" is each task's own
  // `split` setting (default search), anything else (e.g. "test") is used as is.
  const std::vector<EvalTask>& tasks(const std::string& split);
  // Whether every task has a test split file.
  bool has_test_split() const { return has_test_; }
  // This rank's merged-model buffer, reused for every candidate.
  ModelShard& scratch() { return *scratch_; }
  // The job's merge weights for a candidate (N × G values, group-major).
  MergeWeights merge_weights(const std::vector<double>& weights) const;

 private:
  JobConfig job_;
  std::vector<HfCheckpoint> checkpoints_;
  std::unique_ptr<EvalGroups> groups_;
  std::unique_ptr<PoolShards> pool_;
  std::unique_ptr<ByteTokenizer> tokenizer_;
  std::unique_ptr<ModelShard> scratch_;
  std::map<std::string, std::vector<EvalTask>> tasks_;
  bool has_test_ = false;
};

}  // namespace kintsugi
