// What a state records about the job, and the refusal of an incompatible resume.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <ctime>
#include <fstream>
#include <map>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/system.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/pool/xxhash64.hpp"
#include "kintsugi/state/run_state.hpp"

namespace kintsugi {

std::string fnv1a64_hex(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return fmt::format("{:016x}", h);
}

namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string list_text(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + quote(v[i]);
  return out + "]";
}

std::string map_text(const std::map<std::string, double>& m) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : m) {
    out += fmt::format("{}{}: {}", first ? "" : ", ", quote(k), v);
    first = false;
  }
  return out + "}";
}

std::string opt_text(const std::optional<double>& v) {
  return v ? fmt::format("{}", *v) : "none";
}

}  // namespace

std::vector<std::pair<std::string, std::string>> resume_settings(const JobConfig& job) {
  std::vector<std::pair<std::string, std::string>> s;
  auto add = [&](std::string k, std::string v) { s.emplace_back(std::move(k), std::move(v)); };
  for (const TaskConfig& t : job.tasks) {
    const std::string p = "tasks." + t.name + ".";
    if (job.evaluator.kind == "command") {
      add(p + "task", quote(t.task));
      add(p + "metric", quote(t.metric));
      add(p + "higher_is_better", t.higher_is_better() ? "true" : "false");
      add(p + "split", t.split);
      continue;
    }
    add(p + "kind", std::string(task_kind_name(t.kind)));
    add(p + "metric", t.metric);
    add(p + "split", t.split);
    add(p + "limit", fmt::format("{}", t.limit));
    if (t.kind == TaskKind::Generate) {
      add(p + "max_new_tokens", fmt::format("{}", t.max_new_tokens));
      add(p + "stop", list_text(t.stop));
      add(p + "regex", quote(t.regex));
      add(p + "ignore_case", t.ignore_case ? "true" : "false");
    }
  }
  add("evaluator.kind", job.evaluator.kind);
  if (job.evaluator.kind == "command") {
    // What decides a candidate's scores; scratch, timeout, env and keep may
    // change between runs (a resumed job on another cluster).
    add("evaluator.command", list_text(job.evaluator.command));
    add("evaluator.results", job.evaluator.results);
    add("evaluator.dtype", job.evaluator.dtype.empty() ? "pool" : job.evaluator.dtype);
  } else {
    add("evaluator.batch_size", fmt::format("{}", job.evaluator.batch_size));
  }
  const SearchConfig& c = job.search;
  add("search.method", c.method);
  add("search.parameterization", c.parameterization);
  add("search.granularity", c.granularity);
  add("search.layer_groups", fmt::format("{}", c.layer_groups));
  add("search.population", fmt::format("{}", c.population));
  add("search.sigma0", fmt::format("{}", c.sigma0));
  add("search.seed", fmt::format("{}", c.seed));
  add("search.active", c.active ? "true" : "false");
  add("search.restarts", fmt::format("{}", c.restarts));
  add("search.lower", opt_text(c.lower));
  add("search.upper", opt_text(c.upper));
  // Recorded only when on, so that states from before the option resume.
  if (c.uniform_penalty > 0) add("search.uniform_penalty", fmt::format("{}", c.uniform_penalty));
  if (c.rescore_top > 0) {
    add("search.rescore_top", fmt::format("{}", c.rescore_top));
    add("search.first_pass", fmt::format("{}", c.first_pass));
  }
  const ObjectiveConfig& o = job.objective;
  add("objective.kind", o.kind);
  if (o.kind == "weighted") add("objective.weights", map_text(o.weights));
  if (o.kind == "chebyshev") {
    add("objective.preference", map_text(o.preference));
    add("objective.chebyshev_rho", fmt::format("{}", o.chebyshev_rho));
  }
  if (o.kind == "constrained") {
    add("objective.maximize", quote(o.maximize));
    add("objective.floors", map_text(o.floors));
    add("objective.penalty", fmt::format("{}", o.penalty));
  }
  add("parallel.tensor_parallel", fmt::format("{}", job.parallel.tensor_parallel));
  return s;
}

StateMeta make_meta(const JobConfig& job, std::vector<std::string> pool_names,
                    std::vector<std::string> pool_fingerprints) {
  KS_CHECK(pool_names.size() == pool_fingerprints.size(), "one fingerprint per checkpoint");
  StateMeta m;
  m.kintsugi_version = KINTSUGI_VERSION;
  m.config = job.yaml_text;
  m.config_hash = fnv1a64_hex(job.yaml_text);
  m.seed = job.search.seed;
  m.created = now_utc();
  m.job_file = job.file.empty() ? std::string() : std::filesystem::absolute(job.file).string();
  m.pool_names = std::move(pool_names);
  m.pool_fingerprints = std::move(pool_fingerprints);
  for (const auto& t : job.tasks) m.task_names.push_back(t.name);
  m.settings = resume_settings(job);
  return m;
}

namespace {

std::string file_fingerprint(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw_input("{}: cannot read the task file", p.string());
  Xxh64 h(0);
  uint64_t size = 0;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(in.gcount());
    h.update(buf.data(), n);
    size += n;
  }
  if (in.bad()) throw_input("{}: cannot read the task file", p.string());
  return fmt::format("xxh64:{:016x} {} bytes", h.digest(), size);
}

bool is_task_data_key(const std::string& k) {
  return k.rfind(kTaskDataKeyPrefix, 0) == 0;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> task_data_fingerprints(const JobConfig& job) {
  std::vector<std::pair<std::string, std::string>> out;
  if (job.evaluator.kind == "command") return out;
  for (const TaskConfig& t : job.tasks) {
    if (t.file.empty()) continue;
    const std::string key = fmt::format("{}tasks.{}.", kTaskDataKeyPrefix, t.name);
    // A missing search file is the task loader's error to report.
    if (std::filesystem::exists(t.file_for(t.split)))
      out.emplace_back(key + t.split, file_fingerprint(t.file_for(t.split)));
    if (t.split != "validation" && t.file_for("validation") != t.file_for(t.split) &&
        std::filesystem::exists(t.file_for("validation")))
      out.emplace_back(key + "validation", file_fingerprint(t.file_for("validation")));
    if (t.split != "test" && std::filesystem::exists(t.file_for("test")))
      out.emplace_back(key + "test", file_fingerprint(t.file_for("test")));
  }
  return out;
}

void check_resume_compatible(const std::filesystem::path& state_path, const RunState& state,
                             const JobConfig& job, const std::vector<std::string>& pool_names,
                             const std::vector<std::string>& pool_fingerprints,
                             const std::vector<std::pair<std::string, std::string>>& task_data) {
  const std::string sp = state_path.string();
  const StateMeta& m = state.meta;
  KS_CHECK(pool_names.size() == pool_fingerprints.size(), "one fingerprint per checkpoint");
  if (m.pool_fingerprints.size() != pool_fingerprints.size())
    throw_input(
        "{}: cannot resume: the state was made with a pool of {} checkpoints, the job's "
        "pool has {}",
        sp, m.pool_fingerprints.size(), pool_fingerprints.size());
  for (size_t i = 0; i < pool_fingerprints.size(); ++i) {
    if (m.pool_fingerprints[i] != pool_fingerprints[i])
      throw_input(
          "{}: cannot resume: pool checkpoint {} ({}) is not the one the state was made "
          "with ({}): fingerprint {} vs {}",
          sp, i, pool_names[i], m.pool_names[i], pool_fingerprints[i], m.pool_fingerprints[i]);
  }
  std::vector<std::string> tasks;
  for (const auto& t : job.tasks) tasks.push_back(t.name);
  if (tasks != m.task_names)
    throw_input("{}: cannot resume: the job's tasks {} differ from the state's {}", sp,
                list_text(tasks), list_text(m.task_names));
  const auto now = resume_settings(job);
  std::map<std::string, std::string> then, then_data;
  for (const auto& [k, v] : m.settings) (is_task_data_key(k) ? then_data : then).emplace(k, v);
  std::map<std::string, std::string> cur(now.begin(), now.end());
  for (const auto& [k, v] : now) {
    auto it = then.find(k);
    const std::string old = it == then.end() ? "(not set)" : it->second;
    if (old != v)
      throw_input("{}: cannot resume: {} is {} in the job but {} in the state", sp, k, v, old);
  }
  for (const auto& [k, v] : then)
    if (!cur.count(k))
      throw_input("{}: cannot resume: {} is {} in the state but not set in the job", sp, k, v);

  // Task data: the bytes of the task files, not only their names and options.
  if (then_data.empty()) {
    if (!task_data.empty())
      spdlog::warn(
          "{}: the state predates task data fingerprints: the task files cannot be checked "
          "against the ones the search used",
          sp);
    return;
  }
  std::map<std::string, std::string> cur_data(task_data.begin(), task_data.end());
  auto file_of = [&](const std::string& key) {
    // "data.tasks.<name>.<split>" -> that task's file for that split.
    const std::string rest = key.substr(kTaskDataKeyPrefix.size() + 6);
    const auto dot = rest.rfind('.');
    for (const auto& t : job.tasks)
      if (dot != std::string::npos && t.name == rest.substr(0, dot) && !t.file.empty())
        return t.file_for(rest.substr(dot + 1)).string();
    return rest;
  };
  for (const auto& [k, v] : cur_data) {
    auto it = then_data.find(k);
    if (it == then_data.end())
      throw_input("{}: cannot resume: task file {} ({}) was not there when the state was made", sp,
                  file_of(k), k);
    if (it->second != v)
      throw_input(
          "{}: cannot resume: task file {} changed since the state was made ({} now, {} "
          "then)",
          sp, file_of(k), v, it->second);
  }
  for (const auto& [k, v] : then_data)
    if (!cur_data.count(k))
      throw_input(
          "{}: cannot resume: the state was made with task data {} ({}), which the job "
          "no longer has",
          sp, k, v);
}

}  // namespace kintsugi
