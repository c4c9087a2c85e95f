#include "kintsugi/service/runtime.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/common/system.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/pool/pool.hpp"
#include "kintsugi/pool/vocab.hpp"
#include "kintsugi/pool/xxhash64.hpp"
#include "kintsugi/service/command_scoring.hpp"
#include "kintsugi/service/stop_signal.hpp"
#include "kintsugi/state/run_state.hpp"

namespace kintsugi {

Runtime::Runtime(JobConfig job) : job_(std::move(job)) {
  checkpoints_ = open_compatible_pool(job_);
  for (const auto& c : checkpoints_) fingerprints_.push_back(fingerprint(c));
  task_data_ = ::kintsugi::task_data_fingerprints(job_);
  check_ranks_agree();
  groups_ = std::make_unique<EvalGroups>(static_cast<int>(job_.parallel.tensor_parallel));
  if (job_.evaluator.kind == "command") {
    start_command_evaluator();
  } else {
    load_builtin_evaluator();
  }
  if (job_.search.granularity == "layer_group" && job_.search.layer_groups > num_layers_)
    throw_input("{}: search.layer_groups is {} but the model has {} layers", job_.file.string(),
                job_.search.layer_groups, num_layers_);
}

// The pool in memory (this rank's shard of every checkpoint), the tokenizer,
// and the task files of both splits.
void Runtime::load_builtin_evaluator() {
  vocab_ = pool_vocab(job_, checkpoints_);
  const VocabPlan* vocab = vocab_ ? &*vocab_ : nullptr;
  pool_ = std::make_unique<PoolShards>(load_pool_shards(checkpoints_, *groups_, vocab));
  num_layers_ = static_cast<size_t>(pool_->config().num_layers);
  scratch_ = std::make_unique<ModelShard>(pool_->config(), groups_->tp_rank, groups_->tp_size);
  tokenizer_ = std::make_unique<Tokenizer>(pool_tokenizer(checkpoints_, vocab));
  eos_ids_ = load_eos_ids(vocab_source(checkpoints_, vocab));
  // Task files are read now, so that a bad file is an input error before any
  // scoring starts. The test split is optional (reports then show no test scores).
  tasks("search");
  if (job_.search.rescore_top > 0) rescore_examples_note();
  has_test_ = std::all_of(job_.tasks.begin(), job_.tasks.end(), [](const TaskConfig& t) {
    return std::filesystem::exists(t.file_for("test"));
  });
  if (has_test_)
    tasks("test");
  else
    spdlog::warn("the tasks have no test split: held-out scores will be missing");
  has_validation_ = std::all_of(job_.tasks.begin(), job_.tasks.end(), [](const TaskConfig& t) {
    return t.file_for("validation") != t.file_for(t.split) &&
           std::filesystem::exists(t.file_for("validation"));
  });
  if (has_validation_) tasks("validation");
  spdlog::info("pool: {} checkpoints, {} MB of shards on this rank (T = {}, {} groups)",
               checkpoints_.size(), pool_->total_bytes() / 1000000, groups_->tp_size,
               groups_->num_groups);
}

// search.rescore_top: what the first pass and the re-scoring read, said once
// (and a first pass that already covers every example, warned about).
void Runtime::rescore_examples_note() {
  size_t first = 0, all = 0;
  const auto& limited = tasks(kFirstPassSplit);
  const auto& every = tasks("search");
  for (size_t k = 0; k < limited.size(); ++k) {
    first += limited[k].examples.size();
    all += every[k].examples.size();
  }
  if (first == all)
    spdlog::warn(
        "search.first_pass covers every task's whole search split ({} examples): re-scoring "
        "adds none",
        all);
  else
    spdlog::info("search.rescore_top {}: first pass on {} search examples, re-scoring on {}",
                 job_.search.rescore_top, first, all);
}

// Nothing in memory: the command scores every split, the held-out one too.
void Runtime::start_command_evaluator() {
  const auto& cfg = checkpoints_.front().config();
  if (cfg.is_object() && cfg.contains("num_hidden_layers") &&
      cfg["num_hidden_layers"].is_number_unsigned())
    num_layers_ = cfg["num_hidden_layers"].get<size_t>();
  if (job_.search.granularity == "layer_group" && num_layers_ == 0)
    throw_input("{}: search.granularity layer_group needs num_hidden_layers in {}",
                job_.file.string(), (checkpoints_.front().path() / "config.json").string());
  command_ = std::make_unique<CommandScoring>(job_, checkpoints_, *groups_, &stop_flag());
  has_test_ = true;
  spdlog::info("pool: {} checkpoints, scored by `{}` in {} groups of {} ranks", checkpoints_.size(),
               job_.evaluator.command.front(), groups_->num_groups, groups_->tp_size);
}

namespace {

// XXH64 of a small file's bytes, "missing" when it is not there.
std::string small_file_hash(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return "missing";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  return fmt::format("xxh64:{:016x}", xxh64(bytes.data(), bytes.size()));
}

// What besides the tensors decides a score: pool.base's tensors (task-vector
// baselines) and each checkpoint's config, tokenizer and generation files.
std::vector<std::pair<std::string, std::string>> side_files(
    const JobConfig& job, const std::vector<HfCheckpoint>& checkpoints) {
  std::vector<std::pair<std::string, std::string>> out;
  if (job.pool.base)
    out.emplace_back(job.pool.base->string(), std::filesystem::exists(*job.pool.base)
                                                  ? fingerprint(HfCheckpoint::open(*job.pool.base))
                                                  : std::string("missing"));
  for (const auto& c : checkpoints) {
    if (!std::filesystem::is_directory(c.path())) continue;
    for (const char* f :
         {"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"})
      out.emplace_back((c.path() / f).string(), small_file_hash(c.path() / f));
  }
  return out;
}

}  // namespace

// Rank 0 compares every rank's view with its own; the first difference is an
// InputError on every rank.
void Runtime::check_ranks_agree() const {
  std::vector<std::string> paths;
  for (const auto& c : checkpoints_) paths.push_back(c.path().string());
  const nlohmann::json mine = {{"host", host_name()},
                               {"file", job_.file.string()},
                               {"job", fnv1a64_hex(job_.yaml_text)},
                               {"paths", paths},
                               {"checkpoints", fingerprints_},
                               {"tasks", task_data_},
                               {"side", side_files(job_, checkpoints_)}};
  const auto all = gather_strings(mine.dump(), MPI_COMM_WORLD);
  run_on_root(MPI_COMM_WORLD, [&] {
    const std::string where0 = fmt::format("rank 0 on {}", mine["host"].get<std::string>());
    for (size_t r = 1; r < all.size(); ++r) {
      const auto other = nlohmann::json::parse(all[r]);
      const std::string where = fmt::format("rank {} on {}", r, other["host"].get<std::string>());
      if (other["job"] != mine["job"])
        throw_input(
            "{} read the job file {} with another text than {} read {} (FNV-1a {} vs {}): every "
            "rank must read the same job",
            where, other["file"].get<std::string>(), where0, job_.file.string(),
            other["job"].get<std::string>(), mine["job"].get<std::string>());
      for (size_t i = 0; i < fingerprints_.size(); ++i) {
        const std::string theirs = other["checkpoints"].at(i);
        if (theirs != fingerprints_[i])
          throw_input(
              "{} reads checkpoint {} ({}) with fingerprint {}, {} reads {} with {}: every rank "
              "must read the same checkpoint files (a stale copy on one node?)",
              where, i, other["paths"].at(i).get<std::string>(), theirs, where0, paths[i],
              fingerprints_[i]);
      }
      const auto theirs = other["tasks"].get<std::vector<std::pair<std::string, std::string>>>();
      for (size_t i = 0; i < std::max(task_data_.size(), theirs.size()); ++i) {
        const auto& key = i < task_data_.size() ? task_data_[i].first : theirs[i].first;
        const std::string a = i < theirs.size() ? theirs[i].second : std::string("nothing");
        const std::string b = i < task_data_.size() ? task_data_[i].second : std::string("nothing");
        if (a != b || (i < theirs.size() && i < task_data_.size() && theirs[i].first != key))
          throw_input(
              "{} reads task data {} as {}, {} as {}: every rank must read the same task files",
              where, key, a, where0, b);
      }
      const auto side = other["side"].get<std::vector<std::pair<std::string, std::string>>>();
      const auto mine_side = mine["side"].get<std::vector<std::pair<std::string, std::string>>>();
      for (size_t i = 0; i < std::min(side.size(), mine_side.size()); ++i)
        if (side[i].second != mine_side[i].second)
          throw_input(
              "{} reads {} as {}, {} reads {} as {}: every rank must read the same checkpoint "
              "files (a stale copy on one node?)",
              where, side[i].first, side[i].second, where0, mine_side[i].first,
              mine_side[i].second);
    }
  });
}

Runtime::~Runtime() = default;

std::vector<std::string> Runtime::checkpoint_names() const {
  std::vector<std::string> names;
  for (const auto& c : checkpoints_) names.push_back(c.name());
  return names;
}

size_t Runtime::num_layers() const {
  return num_layers_;
}

const PoolShards& Runtime::pool() const {
  KS_CHECK(pool_ != nullptr, "the pool is in memory only for the builtin evaluator");
  return *pool_;
}

const Tokenizer& Runtime::tokenizer() const {
  KS_CHECK(tokenizer_ != nullptr, "the tokenizer is loaded only for the builtin evaluator");
  return *tokenizer_;
}

ModelShard& Runtime::scratch() {
  KS_CHECK(scratch_ != nullptr, "the merge buffer exists only for the builtin evaluator");
  return *scratch_;
}

size_t Runtime::num_weights() const {
  const size_t g = job_.search.granularity == "layer_group" ? job_.search.layer_groups : 1;
  return checkpoints_.size() * g;
}

std::vector<std::string> Runtime::task_names() const {
  std::vector<std::string> names;
  for (const auto& t : job_.tasks) names.push_back(t.name);
  return names;
}

std::vector<bool> Runtime::higher_is_better() const {
  std::vector<bool> h;
  for (const auto& t : job_.tasks) h.push_back(t.higher_is_better());
  return h;
}

const std::vector<EvalTask>& Runtime::tasks(const std::string& split) {
  auto it = tasks_.find(split);
  if (it == tasks_.end()) {
    std::vector<EvalTask> loaded;
    // "search" means each task's own configured search split.
    const bool first = split == kFirstPassSplit;
    for (TaskConfig t : job_.tasks) {
      if (first) {
        const size_t n = job_.search.first_pass;
        t.limit = t.limit == 0 ? n : std::min(t.limit, n);
      }
      loaded.push_back(load_task(t, split == "search" || first ? t.split : split));
    }
    it = tasks_.emplace(split, std::move(loaded)).first;
  }
  return it->second;
}

MergeWeights Runtime::merge_weights(const std::vector<double>& weights) const {
  if (weights.size() != num_weights())
    throw_input("{} merge weights given, the job needs {}", weights.size(), num_weights());
  const std::vector<float> w(weights.begin(), weights.end());
  return merge_weights_for(job_.search, checkpoints_.size(), num_layers(), w, "merge weights");
}

namespace {

std::vector<const HfCheckpoint*> pointers_to(const std::vector<HfCheckpoint>& checkpoints) {
  std::vector<const HfCheckpoint*> ptrs;
  for (const auto& c : checkpoints) ptrs.push_back(&c);
  return ptrs;
}

}  // namespace

std::vector<HfCheckpoint> open_compatible_pool(const JobConfig& job) {
  Pool pool = Pool::open(job.pool.checkpoints);
  const auto ptrs = pointers_to(pool.members());
  if (!job.pool.tokenizer_source.empty()) {
    check_pool_compatible_vocab(ptrs);
    return pool.members();
  }
  const auto diffs = pool.differences();
  if (!diffs.empty() && std::all_of(diffs.begin(), diffs.end(),
                                    [](const auto& d) { return is_vocab_tensor(d.tensor); }))
    throw_input(
        "incompatible pool: {} (the checkpoints' vocabularies differ: set pool.tokenizer_source "
        "in {} to base, union or one of the checkpoints to reconcile them)",
        diffs[0].text(), job.file.string());
  check_no_differences(diffs);
  return pool.members();
}

std::optional<VocabPlan> pool_vocab(const JobConfig& job,
                                    const std::vector<HfCheckpoint>& checkpoints) {
  if (job.pool.tokenizer_source.empty()) return std::nullopt;
  VocabSpec spec;
  spec.where = job.pool.tokenizer_where;
  const std::string& s = job.pool.tokenizer_source;
  spec.source = s == "base"    ? VocabSpec::Source::Base
                : s == "union" ? VocabSpec::Source::Union
                               : VocabSpec::Source::Model;
  spec.model = job.pool.tokenizer_model;
  VocabPlan plan = plan_vocab(pointers_to(checkpoints), spec);
  spdlog::info("pool vocabulary ({}): {} tokens ({} added to the source's), {} rows", s, plan.vocab,
               plan.added, plan.rows);
  return plan;
}

const HfCheckpoint& vocab_source(const std::vector<HfCheckpoint>& checkpoints,
                                 const VocabPlan* vocab) {
  if (vocab)
    for (const auto& c : checkpoints)
      if (std::filesystem::equivalent(c.path(), vocab->tokenizer_folder)) return c;
  return checkpoints.front();
}

PoolShards load_pool_shards(const std::vector<HfCheckpoint>& checkpoints, const EvalGroups& groups,
                            const VocabPlan* vocab) {
  return PoolShards::load(pointers_to(checkpoints), groups.tp_rank, groups.tp_size, vocab);
}

Tokenizer load_tokenizer(const HfCheckpoint& checkpoint) {
  const auto tok = checkpoint.path() / "tokenizer.json";
  if (!std::filesystem::exists(tok))
    throw_input("{}: no tokenizer.json", checkpoint.path().string());
  return Tokenizer::load(checkpoint.path());
}

Tokenizer pool_tokenizer(const std::vector<HfCheckpoint>& checkpoints, const VocabPlan* vocab) {
  if (!vocab || !vocab->tokenizer_changed) return load_tokenizer(vocab_source(checkpoints, vocab));
  return Tokenizer::from_json(
      vocab->tokenizer_json,
      (vocab->tokenizer_folder / "tokenizer.json").string() + " (reconciled vocabulary)",
      vocab->tokenizer_config);
}

std::vector<int32_t> load_eos_ids(const HfCheckpoint& checkpoint) {
  for (const char* name : {"generation_config.json", "config.json"}) {
    const auto path = checkpoint.path() / name;
    if (!std::filesystem::exists(path)) continue;
    const nlohmann::json j =
        nlohmann::json::parse(read_input_file(path, name, kMaxJsonFileBytes), nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw_input("{}: not a valid JSON object", path.string());
    if (!j.contains("eos_token_id") || j["eos_token_id"].is_null()) continue;
    const auto& e = j["eos_token_id"];
    std::vector<int32_t> ids;
    for (const auto& v : e.is_array() ? e : nlohmann::json::array({e})) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
        throw_input("{}: eos_token_id must be a token id or a list of them", path.string());
      ids.push_back(v.get<int32_t>());
    }
    return ids;
  }
  return {};
}

MergeWeights merge_weights_for(const SearchConfig& search, size_t n, size_t layers,
                               const std::vector<float>& weights, const std::string& what) {
  if (weights.size() == n) return MergeWeights::per_checkpoint(weights, layers);
  if (search.granularity == "layer_group" && weights.size() == search.layer_groups * n)
    return MergeWeights::per_layer_group(weights, search.layer_groups, n, layers);
  throw_input("{}: {} values for a pool of {} checkpoints", what, weights.size(), n);
}

}  // namespace kintsugi
