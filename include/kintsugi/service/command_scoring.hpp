#pragma once
// evaluator.kind: command (docs/evaluator.md). Each candidate is written by its
// evaluation group as a complete HF folder in the scratch folder (the merge
// engine: every rank of the group writes its byte ranges, then one rename),
// and the group's leader runs the job's command on it under a guard
// (eval/external_scorer.hpp), then reads the scores. A checkpoint of the pool
// (one-hot weights) and a folder already on disk are scored where they are.
//
// Scratch layout, one folder per candidate:
//   <scratch>/kintsugi-<host>-<pid>-<n>/model/    the candidate ({model})
//                                      /output/   the scorer's results ({output})
//                                      /scorer.stdout, /scorer.stderr
// Removed after scoring unless evaluator.keep asks for it; folders of a
// kintsugi process on this host that no longer runs (killed) are removed when
// the next run starts.
#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "kintsugi/config/job.hpp"
#include "kintsugi/eval/eval_groups.hpp"
#include "kintsugi/io/hf_checkpoint.hpp"
#include "kintsugi/service/work.hpp"

namespace kintsugi {

class CommandScoring {
 public:
  // Collective over MPI_COMM_WORLD: picks the scratch folder (evaluator.scratch,
  // else $TMPDIR, else /dev/shm when it has room for a candidate, else
  // output.dir), checks that every rank of each group can write the same one
  // (InputError naming the host that cannot), assigns each group its GPUs,
  // and removes candidate folders left by killed runs.
  CommandScoring(const JobConfig& job, const std::vector<HfCheckpoint>& pool,
                 const EvalGroups& groups, const std::atomic<bool>* stop);

  // Collective over this rank's group: scores the merge of the pool with
  // `weights` (N x G), or the model in `folder` when it is not empty, on
  // `split`. Failures come back as a failed Scored with the reason (and the
  // scorer's log tail); the result is meaningful on the group's leader.
  Scored score(const std::vector<double>& weights, const std::filesystem::path& folder,
               const std::string& split);

  const std::filesystem::path& scratch() const { return scratch_; }
  // This group's CUDA devices, as the scorer sees them ({gpus}).
  const std::vector<std::string>& gpus() const { return gpus_; }

 private:
  struct Candidate;
  std::filesystem::path model_for(const std::vector<double>& weights, const Candidate& c,
                                  double& merge_seconds);
  std::vector<double> run_command(const Candidate& c, const std::filesystem::path& model,
                                  const std::string& split, Scored& s);

  const JobConfig& job_;
  const std::vector<HfCheckpoint>& pool_;
  const EvalGroups& groups_;
  const std::atomic<bool>* stop_;
  std::filesystem::path scratch_;
  std::filesystem::path guard_;  // this executable
  std::vector<std::string> gpus_;
  bool set_gpus_ = false;
  uint64_t candidate_bytes_ = 0;  // what one written candidate needs in scratch
  std::string out_dtype_;
  size_t num_layers_ = 0;
  size_t next_ = 0;  // candidate folders made by this process
};

}  // namespace kintsugi
