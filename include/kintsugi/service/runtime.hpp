#pragma once
// What every rank holds for a job, loaded once for the whole run: the pool's
// checkpoints, this rank's tensor-parallel shard of every one of them, the
// evaluation groups, the tokenizer and the tasks. Memory per rank is
// N × model_bytes / T for the pool plus the merged fp32 shard.
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kintsugi/config/job.hpp"
#include "kintsugi/eval/eval_groups.hpp"
#include "kintsugi/eval/task.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/pool/model_shard.hpp"
#include "kintsugi/pool/shard_loader.hpp"
#include "kintsugi/pool/vocab.hpp"
#include "kintsugi/tokenizer/tokenizer.hpp"

namespace kintsugi {

// The pieces of loading a job's pool that `kintsugi eval --weights` shares
// with the Runtime.
//
// The job's pool.checkpoints opened (InputError for an unreadable one) and
// checked compatible (InputError: the first difference, one line). With
// pool.tokenizer_source their token-indexed tensors may differ in length
// (check_pool_compatible_vocab); without it, a pool that differs only there
// is refused with a hint to set it.
std::vector<HfCheckpoint> open_compatible_pool(const JobConfig& job);
// The pool's reconciled vocabulary (pool.tokenizer_source, mergekit's rules
// with the first checkpoint as the base); nullopt when the job sets none.
std::optional<VocabPlan> pool_vocab(const JobConfig& job,
                                    const std::vector<HfCheckpoint>& checkpoints);
// The checkpoint whose tokenizer files the vocabulary starts from (the first
// one without a plan): its generation settings (eos ids) go with it.
const HfCheckpoint& vocab_source(const std::vector<HfCheckpoint>& checkpoints,
                                 const VocabPlan* vocab);
// This rank's tensor-parallel shard of every checkpoint (collective over the
// group), re-indexed to `vocab` when given.
PoolShards load_pool_shards(const std::vector<HfCheckpoint>& checkpoints, const EvalGroups& groups,
                            const VocabPlan* vocab = nullptr);
// The checkpoint's tokenizer.json (InputError when it has none).
Tokenizer load_tokenizer(const HfCheckpoint& checkpoint);
// The pool's tokenizer: the reconciled vocabulary's, else the first checkpoint's.
Tokenizer pool_tokenizer(const std::vector<HfCheckpoint>& checkpoints, const VocabPlan* vocab);
// The ids generation stops at: generation_config.json's eos_token_id (one id
// or a list), else config.json's; empty when neither names one.
std::vector<int32_t> load_eos_ids(const HfCheckpoint& checkpoint);
// Merge weights for a pool of n checkpoints of `layers` decoder layers: n
// values (one per checkpoint), or, with search.granularity layer_group,
// search.layer_groups x n values (group-major). Otherwise an InputError
// "<what>: K values for a pool of n checkpoints".
MergeWeights merge_weights_for(const SearchConfig& search, size_t n, size_t layers,
                               const std::vector<float>& weights, const std::string& what);

class CommandScoring;

// The first `search.first_pass` examples of each task's search split: the
// first pass of a search that re-scores its best (search.rescore_top).
inline constexpr const char* kFirstPassSplit = "search (first pass)";

class Runtime {
 public:
  // Collective over MPI_COMM_WORLD. InputError for an unreadable or
  // incompatible pool, a tensor_parallel that does not divide the world, or
  // bad task files, and when the ranks do not agree on what they read: the
  // job file's text, each checkpoint's (and pool.base's) fingerprint, each
  // checkpoint's config/tokenizer/generation files, each task file's bytes
  // (a stale copy on one node): the message names the rank, its host and
  // the checkpoint or file. With evaluator.kind command nothing of the pool is loaded
  // into memory: candidates are written to disk and scored by the command
  // (command_scoring()).
  explicit Runtime(JobConfig job);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const JobConfig& job() const { return job_; }
  const std::vector<HfCheckpoint>& checkpoints() const { return checkpoints_; }
  // fingerprint() of each checkpoint, as this rank read it (every rank read
  // the same: checked at construction).
  const std::vector<std::string>& checkpoint_fingerprints() const { return fingerprints_; }
  // task_data_fingerprints() of the job (state/run_state.hpp), the same on
  // every rank (checked at construction).
  const std::vector<std::pair<std::string, std::string>>& task_data_fingerprints() const {
    return task_data_;
  }
  std::vector<std::string> checkpoint_names() const;
  size_t num_checkpoints() const { return checkpoints_.size(); }
  size_t num_layers() const;
  // Weights per candidate: N × G (G = search.layer_groups with granularity
  // layer_group, else 1).
  size_t num_weights() const;
  std::vector<std::string> task_names() const;
  std::vector<bool> higher_is_better() const;

  EvalGroups& groups() { return *groups_; }
  // The builtin evaluator's pieces (a logic error to ask for them otherwise).
  const PoolShards& pool() const;
  const Tokenizer& tokenizer() const;
  // The pool's reconciled vocabulary (pool.tokenizer_source; builtin
  // evaluator), null when the checkpoints share theirs.
  const VocabPlan* vocab() const { return vocab_ ? &*vocab_ : nullptr; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  // The tasks of one split, loaded on first use; "search" is each task's own
  // `split` setting (default search), kFirstPassSplit its first
  // search.first_pass examples, anything else (e.g. "test") is used as is.
  const std::vector<EvalTask>& tasks(const std::string& split);
  // Whether every task has a test split file.
  bool has_test_split() const { return has_test_; }
  // Every task has a validation file of its own (`{split}` in its file name
  // and the file present): the returned merge is chosen there.
  bool has_validation_split() const { return has_validation_; }
  // This rank's merged-model buffer, reused for every candidate (builtin).
  ModelShard& scratch();
  // The command evaluator, null for the builtin one.
  CommandScoring* command_scoring() { return command_.get(); }
  // The job's merge weights for a candidate (N × G values, group-major).
  MergeWeights merge_weights(const std::vector<double>& weights) const;

 private:
  void load_builtin_evaluator();
  void rescore_examples_note();
  void start_command_evaluator();
  void check_ranks_agree() const;

  JobConfig job_;
  std::vector<HfCheckpoint> checkpoints_;
  std::vector<std::string> fingerprints_;
  std::vector<std::pair<std::string, std::string>> task_data_;
  std::unique_ptr<EvalGroups> groups_;
  std::unique_ptr<PoolShards> pool_;
  std::optional<VocabPlan> vocab_;  // pool.tokenizer_source
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<int32_t> eos_ids_;
  std::unique_ptr<ModelShard> scratch_;
  std::unique_ptr<CommandScoring> command_;
  size_t num_layers_ = 0;
  std::map<std::string, std::vector<EvalTask>> tasks_;
  bool has_test_ = false;
  bool has_validation_ = false;
};

}  // namespace kintsugi
