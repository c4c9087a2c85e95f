// evaluator.kind: command — write the candidate, run the scorer, read scores.
#include "kintsugi/service/command_scoring.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/system.hpp"
#include "kintsugi/dist/mpi.hpp"
#include "kintsugi/eval/external_scorer.hpp"
#include "kintsugi/merge/engine.hpp"
#include "kintsugi/merge/recipe.hpp"
#include "kintsugi/service/export.hpp"

namespace kintsugi {

namespace fs = std::filesystem;

struct CommandScoring::Candidate {
  fs::path dir;  // <scratch>/kintsugi-<host>-<pid>-<n>
};

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The file that marks a candidate folder as kintsugi's own.
constexpr const char* kCandidateMarker = ".kintsugi-candidate";

// "kintsugi-<host>-<pid>-": the prefix of this process's candidate folders.
std::string folder_prefix(const std::string& host, long pid) {
  return fmt::format("kintsugi-{}-{}-", host, pid);
}

uint64_t free_bytes(const fs::path& dir) {
  struct statvfs st {};
  if (statvfs(dir.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

std::string gb(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  return b >= 1e9 ? fmt::format("{:.2f} GB", b / 1e9) : fmt::format("{:.1f} MB", b / 1e6);
}

// Bytes of one candidate written in `dtype` (empty: the pool's own types):
// tensors, their headers (generously), and the files copied from the first
// checkpoint.
uint64_t candidate_bytes(const HfCheckpoint& first, const std::string& dtype) {
  uint64_t bytes = 1 << 20;
  const uint64_t out_size = dtype == "float32" ? 4 : dtype.empty() ? 0 : 2;
  for (const auto& name : first.tensor_names()) {
    const TensorInfo& info = first.info(name);
    const bool floating =
        info.dtype == DType::BF16 || info.dtype == DType::F16 || info.dtype == DType::F32;
    const uint64_t size = floating && out_size ? out_size : dtype_size(info.dtype);
    bytes += info.numel() * size + 256;
  }
  std::error_code ec;
  for (const auto& p : first.passthrough_files()) bytes += fs::file_size(p, ec);
  return bytes;
}

// The scratch folder when evaluator.scratch is not set (decided by the
// group's leader, so that its ranks agree).
fs::path default_scratch(const JobConfig& job, uint64_t candidate) {
  if (const char* t = std::getenv("TMPDIR"); t && *t) return t;
  if (fs::is_directory("/dev/shm") && free_bytes("/dev/shm") > 2 * candidate) return "/dev/shm";
  return job.output.dir;
}

// The non-empty items of a comma-separated list.
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = s.find(',', pos);
    const std::string item =
        s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

// The CUDA devices this process may use: CUDA_VISIBLE_DEVICES when set, else
// the /dev/nvidiaN device files.
std::vector<std::string> visible_devices(bool& any_setting) {
  std::vector<std::string> out;
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) {
    any_setting = true;
    std::string list(v);
    std::erase(list, ' ');
    return split_list(list);
  }
  std::vector<int> ids;
  std::error_code ec;
  for (fs::directory_iterator it("/dev", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.size() > 6 && n.rfind("nvidia", 0) == 0 &&
        std::all_of(n.begin() + 6, n.end(), [](char c) { return c >= '0' && c <= '9'; }))
      ids.push_back(std::stoi(n.substr(6)));
  }
  std::sort(ids.begin(), ids.end());
  for (int i : ids) out.push_back(std::to_string(i));
  any_setting = !out.empty();
  return out;
}

// Each group's devices on its leader's node. When every rank of the node
// sees the same devices, the groups present there split them evenly, in
// group order; when ranks see different devices (srun --gpus-per-task), a
// group takes the union of its ranks' devices.
std::vector<std::string> assign_gpus(const EvalGroups& groups, bool& set_gpus) {
  bool any = false;
  const std::vector<std::string> mine = visible_devices(any);
  MPI_Comm node = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank(), MPI_INFO_NULL,
                                &node));
  const std::string line = fmt::format("{}:{}", groups.group, fmt::join(mine, ","));
  std::string all = fmt::to_string(fmt::join(gather_strings(line, node), "\n"));
  all = broadcast_string(all, node);
  MPI_CHECK(MPI_Comm_free(&node));
  const bool any_anywhere = [&] {
    int a = any ? 1 : 0, r = 0;
    MPI_CHECK(MPI_Allreduce(&a, &r, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return r != 0;
  }();
  set_gpus = any_anywhere;
  std::vector<std::pair<int, std::string>> ranks;  // (group, devices) per rank of the node
  size_t pos = 0;
  while (pos < all.size()) {
    size_t nl = all.find('\n', pos);
    if (nl == std::string::npos) nl = all.size();
    const std::string l = all.substr(pos, nl - pos);
    const size_t colon = l.find(':');
    ranks.emplace_back(std::stoi(l.substr(0, colon)), l.substr(colon + 1));
    pos = nl + 1;
  }
  const bool same = std::all_of(ranks.begin(), ranks.end(),
                                [&](const auto& r) { return r.second == ranks.front().second; });
  std::vector<std::string> out;
  if (same) {
    std::set<int> present;
    for (const auto& r : ranks) present.insert(r.first);
    const auto devices = split_list(ranks.front().second);
    const size_t k = present.size(), n = devices.size();
    const size_t i =
        static_cast<size_t>(std::distance(present.begin(), present.find(groups.group)));
    if (n > 0 && n < k)
      throw_input(
          "evaluator.kind command: this node has {} GPUs for {} evaluation groups; each group "
          "needs one at least (raise parallel.tensor_parallel or use fewer ranks per node)",
          n, k);
    for (size_t d = i * n / k; d < (i + 1) * n / k; ++d) out.push_back(devices[d]);
  } else {
    std::set<std::string> seen;
    for (const auto& r : ranks)
      if (r.first == groups.group)
        for (const auto& d : split_list(r.second))
          if (seen.insert(d).second) out.push_back(d);
  }
  return out;
}

// Every rank of the group must see and write the folder its leader made.
void check_shared(const fs::path& scratch, const EvalGroups& groups, const std::string& host) {
  fs::path probe;
  run_on_root(groups.comm, [&] {
    std::error_code ec;
    fs::create_directories(scratch, ec);
    if (!fs::is_directory(scratch))
      throw_input("evaluator.scratch {}: cannot create the folder on {}", scratch.string(), host);
    probe = scratch / (folder_prefix(host, getpid()) + "probe");
    fs::create_directories(probe, ec);
    if (ec)
      throw_input("evaluator.scratch {}: cannot write there on {}: {}", scratch.string(), host,
                  ec.message());
  });
  probe = broadcast_string(probe.string(), groups.comm);
  run_everywhere(groups.comm, [&] {
    const fs::path mine = probe / fmt::format("rank-{}", groups.tp_rank);
    std::ofstream f(mine);
    if (!fs::is_directory(probe) || !f)
      throw_input(
          "evaluator.scratch {}: rank {} of evaluation group {} on {} cannot write in the folder "
          "its leader made; a group that spans nodes needs a scratch on a filesystem all of its "
          "ranks share (set evaluator.scratch)",
          scratch.string(), groups.tp_rank, groups.group, host);
  });
  sleeping_barrier(groups.comm);
  if (groups.tp_rank == 0) {
    std::error_code ec;
    fs::remove_all(probe, ec);
  }
}

// Candidate folders of kintsugi processes on this host that no longer run
// (a search killed by SIGKILL): nobody else will remove them.
void remove_stale(const fs::path& scratch, const std::string& host) {
  const std::string prefix = fmt::format("kintsugi-{}-", host);
  std::error_code ec;
  for (fs::directory_iterator it(scratch, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.rfind(prefix, 0) != 0) continue;
    const std::string rest = n.substr(prefix.size());
    const size_t dash = rest.find('-');
    if (dash == std::string::npos || dash == 0) continue;
    const std::string pid_text = rest.substr(0, dash);
    if (!std::all_of(pid_text.begin(), pid_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    const long pid = std::stol(pid_text);
    if (pid == getpid() || kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    // Only what a kintsugi run made: a folder of this name without the
    // marker is somebody else's.
    if (!fs::exists(it->path() / kCandidateMarker)) continue;
    std::error_code rm;
    fs::remove_all(it->path(), rm);
    if (!rm)
      spdlog::info("removed {}: left by a kintsugi run that was killed", it->path().string());
  }
}

// config.json's num_hidden_layers (0 when absent: only layer-group weights need it).
size_t num_layers_of(const HfCheckpoint& ck) {
  const auto& cfg = ck.config();
  if (cfg.is_object() && cfg.contains("num_hidden_layers") &&
      cfg["num_hidden_layers"].is_number_unsigned())
    return cfg["num_hidden_layers"].get<size_t>();
  return 0;
}

// Weights that select checkpoint i alone in every layer group.
std::optional<size_t> one_hot(const std::vector<double>& w, size_t n) {
  if (n == 0 || w.size() % n != 0) return std::nullopt;
  for (size_t i = 0; i < n; ++i) {
    bool hit = true;
    for (size_t k = 0; k < w.size() && hit; ++k) hit = w[k] == (k % n == i ? 1.0 : 0.0);
    if (hit) return i;
  }
  return std::nullopt;
}

}  // namespace

CommandScoring::CommandScoring(const JobConfig& job, const std::vector<HfCheckpoint>& pool,
                               const EvalGroups& groups, const std::atomic<bool>* stop)
    : job_(job), pool_(pool), groups_(groups), stop_(stop) {
  const HfCheckpoint& first = pool_.front();
  out_dtype_ = job_.evaluator.dtype.empty() ? pool_dtype_name(first) : job_.evaluator.dtype;
  candidate_bytes_ = candidate_bytes(first, out_dtype_);
  num_layers_ = num_layers_of(first);
  std::error_code ec;
  guard_ = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw_runtime("cannot find this executable (/proc/self/exe): {}", ec.message());
  const std::string host = host_name();
  scratch_ = job_.evaluator.scratch;
  if (scratch_.empty())
    scratch_ = broadcast_string(
        groups_.tp_rank == 0 ? default_scratch(job_, candidate_bytes_).string() : std::string(),
        groups_.comm);
  scratch_ = fs::absolute(scratch_);
  check_shared(scratch_, groups_, host);
  gpus_ = assign_gpus(groups_, set_gpus_);
  if (groups_.tp_rank == 0) {
    remove_stale(scratch_, host);
    spdlog::info("group {}: candidates in {} ({} each), scorer on GPUs [{}]", groups_.group,
                 scratch_.string(), gb(candidate_bytes_), fmt::join(gpus_, ","));
  }
}

fs::path CommandScoring::model_for(const std::vector<double>& weights, const Candidate& c,
                                   double& merge_seconds) {
  if (auto i = one_hot(weights, pool_.size())) return pool_[*i].path();
  const auto t0 = Clock::now();
  run_on_root(groups_.comm, [&] {
    const uint64_t free = free_bytes(scratch_);
    if (free < candidate_bytes_)
      throw_runtime("scratch {} has {} free, a candidate needs {}", scratch_.string(), gb(free),
                    gb(candidate_bytes_));
  });
  std::vector<std::string> paths;
  for (const auto& ck : pool_) paths.push_back(ck.path().string());
  const std::string text =
      linear_recipe_text(paths, weights, num_layers_, out_dtype_, "kintsugi candidate",
                         recipe_tokenizer_source(job_.pool));
  const Recipe recipe = parse_recipe(text, c.dir / "candidate.yaml");
  MergeOptions opt;
  opt.out_dir = c.dir / "model";
  opt.seed = job_.search.seed;
  opt.progress = false;
  run_merge(recipe, opt, groups_.comm);
  merge_seconds = since(t0);
  return opt.out_dir;
}

std::vector<double> CommandScoring::run_command(const Candidate& c, const fs::path& model,
                                                const std::string& split, Scored& s) {
  // "search" is the tasks' own search split (the same for every task).
  const std::string split_name = split == "search" ? job_.tasks.front().split : split;
  std::vector<std::string> names;
  std::vector<WantedScore> wanted;
  for (const auto& t : job_.tasks) {
    const std::string ext = t.external_name(split_name);
    if (std::find(names.begin(), names.end(), ext) == names.end()) names.push_back(ext);
    wanted.push_back({ext, t.metric});
  }
  const fs::path output = c.dir / "output";
  fs::create_directories(output);
  const std::map<std::string, std::string> values = {
      {"model", model.string()},
      {"output", output.string()},
      {"tasks", fmt::to_string(fmt::join(names, ","))},
      {"gpus", fmt::to_string(fmt::join(gpus_, ","))},
      {"num_gpus", std::to_string(gpus_.size())},
      {"seed", std::to_string(job_.search.seed)},
      {"split", split_name}};
  ScorerRun run;
  for (const auto& a : job_.evaluator.command) run.argv.push_back(expand_placeholders(a, values));
  run.env =
      scorer_environment(job_.evaluator.env, fmt::to_string(fmt::join(gpus_, ",")), set_gpus_);
  run.stdout_path = c.dir / "scorer.stdout";
  run.stderr_path = c.dir / "scorer.stderr";
  run.timeout_s = job_.evaluator.timeout_s;
  run.stop = stop_;
  run.guard = guard_;
  const ScorerExit exit = run_scorer(run);
  s.score_seconds = exit.seconds;
  if (exit.how == ScorerExit::How::Stopped) s.stopped = true;
  if (!exit.ok()) {
    std::string tail = file_tail(run.stderr_path, 1500);
    if (tail.empty()) tail = file_tail(run.stdout_path, 1500);
    throw_runtime("the scorer {} ({}); its log ends: {}", exit.describe(run.timeout_s),
                  run.argv.front(), tail.empty() ? "(empty)" : tail);
  }
  return read_scores(job_.evaluator.results, output, run.stdout_path, wanted);
}

Scored CommandScoring::score(const std::vector<double>& weights, const fs::path& folder,
                             const std::string& split) {
  Scored s;
  const auto t0 = Clock::now();
  const bool leader = groups_.tp_rank == 0;
  Candidate c;
  try {
    run_on_root(groups_.comm, [&] {
      c.dir = scratch_ / fmt::format("{}{}", folder_prefix(host_name(), getpid()), next_);
      if (!fs::create_directory(c.dir))
        throw_runtime("{}: exists already (not made by this run)", c.dir.string());
      std::ofstream marker(c.dir / kCandidateMarker);
      marker << "a kintsugi candidate; removed by the next run on this host if its process died\n";
      if (!marker.flush()) throw_runtime("{}: cannot write in the scratch", c.dir.string());
    });
    ++next_;
    c.dir = broadcast_string(c.dir.string(), groups_.comm);
    const fs::path model = folder.empty() ? model_for(weights, c, s.merge_seconds) : folder;
    if (leader) s.scores = run_command(c, model, split, s);
  } catch (const std::exception& e) {
    s.ok = false;
    s.error = e.what();
    s.scores.assign(job_.tasks.size(), std::nan(""));
  }
  // The other ranks wait for the leader's scorer without spinning.
  sleeping_barrier(groups_.comm);
  if (leader && !c.dir.empty()) {
    const std::string& keep = job_.evaluator.keep;
    std::error_code ec;
    if (keep == "all" || (keep == "failed" && !s.ok && !s.stopped)) {
      if (!s.ok) s.error += fmt::format(" [kept: {}]", c.dir.string());
    } else {
      fs::remove_all(c.dir, ec);
    }
  }
  if (s.ok) s.scores.resize(job_.tasks.size(), std::nan(""));
  s.seconds = since(t0);
  return s;
}

}  // namespace kintsugi
