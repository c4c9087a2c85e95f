// Reading and validating the job file (docs/config.md). Each section is read by
// one function; every value goes through YamlField so errors carry file:line.
#include "kintsugi/config/job.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/common/input_file.hpp"
#include "kintsugi/config/yaml_reader.hpp"

namespace kintsugi {

namespace fs = std::filesystem;

std::filesystem::path TaskConfig::file_for(const std::string& split_name) const {
  static const std::string placeholder = "{split}";
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = file.find(placeholder, pos);
    if (hit == std::string::npos) break;
    out.append(file, pos, hit - pos);
    out += split_name;
    pos = hit + placeholder.size();
  }
  out.append(file, pos, std::string::npos);
  return out;
}

std::string TaskConfig::external_name(const std::string& split_name) const {
  return expand_placeholders(task, {{"split", split_name}});
}

std::string expand_placeholders(std::string_view text,
                                const std::map<std::string, std::string>& values) {
  auto is_ident = [](std::string_view s) {
    if (s.empty() || !(std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
    for (char c : s)
      if (!(std::islower(static_cast<unsigned char>(c)) ||
            std::isdigit(static_cast<unsigned char>(c)) || c == '_'))
        return false;
    return true;
  };
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] != '{') {
      out += text[i++];
      continue;
    }
    // "{{name}}": the literal text "{name}".
    if (text.compare(i, 2, "{{") == 0) {
      const size_t close = text.find("}}", i + 2);
      if (close != std::string_view::npos && is_ident(text.substr(i + 2, close - i - 2))) {
        out.append(text.substr(i + 1, close - i));
        i = close + 2;
        continue;
      }
    }
    const size_t close = text.find('}', i + 1);
    if (close != std::string_view::npos && is_ident(text.substr(i + 1, close - i - 1))) {
      const std::string name(text.substr(i + 1, close - i - 1));
      const auto it = values.find(name);
      if (it == values.end())
        throw_input("unknown placeholder {{{}}} in \"{}\" (write {{{{{}}}}} for the literal text)",
                    name, text, name);
      out += it->second;
      i = close + 1;
      continue;
    }
    out += text[i++];
  }
  return out;
}

std::string_view task_kind_name(TaskKind k) {
  switch (k) {
    case TaskKind::Generate:
      return "generate";
    case TaskKind::Choice:
      return "choice";
    case TaskKind::Perplexity:
      return "perplexity";
  }
  return "?";
}

std::string_view default_metric(TaskKind k) {
  switch (k) {
    case TaskKind::Generate:
      return "exact_match";
    case TaskKind::Choice:
      return "acc";
    case TaskKind::Perplexity:
      return "bits_per_byte";
  }
  return "?";
}

bool metric_higher_is_better(std::string_view metric) {
  // lm-eval's metric keys carry a filter ("word_perplexity,none"): the name
  // before the comma decides.
  const std::string_view name = metric.substr(0, metric.find(','));
  return name != "bits_per_byte" && name != "perplexity" && name != "word_perplexity" &&
         name != "byte_perplexity";
}

std::string TaskConfig::primary_metric() const {
  return metric.empty() ? std::string(default_metric(kind)) : metric;
}

namespace {

fs::path resolve(const fs::path& base_dir, const std::string& p) {
  fs::path path(p);
  if (path.is_relative()) path = base_dir / path;
  return path.lexically_normal();
}

fs::path path_value(const YamlField& f, const fs::path& base_dir) {
  const std::string s = f.as_string();
  if (s.empty()) f.fail("must not be empty");
  return resolve(base_dir, s);
}

PoolConfig read_pool(const YamlField& f, const fs::path& base_dir) {
  const YamlMap m = f.as_map({"checkpoints", "base", "tokenizer_source"});
  PoolConfig pool;
  const YamlField cps = m.require("checkpoints");
  std::set<fs::path> seen;
  for (const auto& item : cps.items()) {
    fs::path p = path_value(item, base_dir);
    if (!seen.insert(p).second) item.fail(fmt::format("{} is listed twice", p.string()));
    pool.checkpoints.push_back(std::move(p));
  }
  if (pool.checkpoints.empty()) cps.fail("needs at least one checkpoint");
  if (auto b = m.get("base")) {
    pool.base = path_value(*b, base_dir);
    if (seen.count(*pool.base)) b->fail("the base must not also be a pool checkpoint");
  }
  if (auto t = m.get("tokenizer_source")) {
    pool.tokenizer_where = fmt::format("{}:{}", t->origin(), t->line());
    const std::string v = t->as_string();
    if (v == "base" || v == "union") {
      pool.tokenizer_source = v;
    } else {
      const fs::path p = path_value(*t, base_dir);
      const auto it = std::find(pool.checkpoints.begin(), pool.checkpoints.end(), p);
      if (it == pool.checkpoints.end())
        t->fail(fmt::format("must be base, union or one of pool.checkpoints, got {}", v));
      pool.tokenizer_source = "model";
      pool.tokenizer_model = static_cast<size_t>(it - pool.checkpoints.begin());
    }
  }
  return pool;
}

std::string read_split(const YamlMap& m) {
  if (auto s = m.get("split")) {
    const std::string split = s->as_string();
    if (split.empty()) s->fail("must not be empty");
    return split;
  }
  return "search";
}

// A task of the command evaluator: the external task's name and the metric
// key to read from the scorer's results.
TaskConfig read_command_task(const YamlField& f) {
  const YamlMap m = f.as_map({"name", "task", "metric", "higher_is_better", "split"});
  TaskConfig t;
  const YamlField name = m.require("name");
  t.name = name.as_string();
  if (t.name.empty()) name.fail("must not be empty");
  t.task = t.name;
  if (auto v = m.get("task")) {
    t.task = v->as_string();
    if (t.task.empty()) v->fail("must not be empty");
    try {
      t.external_name("search");
    } catch (const InputError& e) {
      v->fail(e.what());
    }
  }
  const YamlField metric = m.require("metric");
  t.metric = metric.as_string();
  if (t.metric.empty()) metric.fail("must not be empty");
  if (auto v = m.get("higher_is_better")) t.higher_is_better_setting = v->as_bool();
  t.split = read_split(m);
  return t;
}

TaskConfig read_task(const YamlField& f, const fs::path& base_dir, const std::string& evaluator) {
  if (evaluator == "command") return read_command_task(f);
  const YamlMap m = f.as_map({"name", "file", "kind", "metric", "split", "limit", "max_new_tokens",
                              "stop", "regex", "ignore_case"});
  TaskConfig t;
  const YamlField name = m.require("name");
  t.name = name.as_string();
  if (t.name.empty()) name.fail("must not be empty");
  const YamlField file = m.require("file");
  t.file = path_value(file, base_dir).string();
  if (auto k = m.get("kind")) {
    const std::string kind = k->as_enum({"generate", "choice", "perplexity"});
    t.kind = kind == "generate" ? TaskKind::Generate
             : kind == "choice" ? TaskKind::Choice
                                : TaskKind::Perplexity;
  }
  t.metric = std::string(default_metric(t.kind));
  if (auto mf = m.get("metric")) {
    switch (t.kind) {
      case TaskKind::Generate:
        t.metric = mf->as_enum({"exact_match"});
        break;
      case TaskKind::Choice:
        t.metric = mf->as_enum({"acc", "acc_norm"});
        break;
      case TaskKind::Perplexity:
        t.metric = mf->as_enum({"bits_per_byte"});
        break;
    }
  }
  t.split = read_split(m);
  if (auto l = m.get("limit")) t.limit = l->as_uint();
  // The generation keys make no sense for the other kinds; say so rather than ignore them.
  for (const char* key : {"max_new_tokens", "stop", "regex", "ignore_case"}) {
    if (t.kind != TaskKind::Generate && m.has(key))
      m.get(key)->fail(
          fmt::format("only applies to kind: generate (this task is {})", task_kind_name(t.kind)));
  }
  if (auto v = m.get("max_new_tokens")) t.max_new_tokens = v->as_uint(1, 1u << 20);
  if (auto v = m.get("stop")) {
    t.stop = v->as_string_list();
    for (size_t i = 0; i < t.stop.size(); ++i)
      if (t.stop[i].empty()) v->items()[i].fail("a stop string must not be empty");
  }
  if (auto v = m.get("regex")) {
    t.regex = v->as_string();
    try {
      std::regex re(t.regex, std::regex::ECMAScript);
      if (re.mark_count() > 1) v->fail("may have at most one capture group");
    } catch (const std::regex_error& e) {
      v->fail(fmt::format("invalid regular expression: {}", e.what()));
    }
  }
  if (auto v = m.get("ignore_case")) t.ignore_case = v->as_bool();
  return t;
}

EvaluatorConfig read_evaluator(const YamlField& f, const fs::path& base_dir) {
  const YamlMap m = f.as_map(
      {"kind", "batch_size", "command", "results", "scratch", "dtype", "timeout_s", "env", "keep"});
  EvaluatorConfig e;
  if (auto k = m.get("kind")) e.kind = k->as_enum({"builtin", "command"});
  const bool command = e.kind == "command";
  // The keys of one kind make no sense for the other; say so rather than ignore them.
  for (const char* key : {"command", "results", "scratch", "dtype", "timeout_s", "env", "keep"})
    if (!command && m.has(key)) m.get(key)->fail("only applies to kind: command");
  if (command && m.has("batch_size")) m.get("batch_size")->fail("only applies to kind: builtin");
  if (auto b = m.get("batch_size")) e.batch_size = b->as_uint(1);
  if (!command) return e;

  const YamlField c = m.require("command");
  e.command = c.as_string_list();
  if (e.command.empty() || e.command[0].empty()) c.fail("needs a program to run");
  std::map<std::string, std::string> probe;
  for (auto p : kCommandPlaceholders) probe.emplace(p, "");
  for (size_t i = 0; i < e.command.size(); ++i) {
    try {
      expand_placeholders(e.command[i], probe);
    } catch (const InputError& err) {
      c.items()[i].fail(err.what());
    }
  }
  if (auto r = m.get("results")) e.results = r->as_enum({"lm_eval", "kintsugi", "json"});
  if (auto v = m.get("scratch")) e.scratch = path_value(*v, base_dir);
  if (auto v = m.get("dtype")) e.dtype = v->as_enum({"bfloat16", "float16", "float32"});
  if (auto t = m.get("timeout_s")) {
    e.timeout_s = t->as_finite_double();
    if (!(e.timeout_s > 0)) t->fail("must be > 0");
  }
  if (auto v = m.get("env")) {
    for (const auto& [k, val] : v->entries()) {
      if (k.empty() || k.find('=') != std::string::npos)
        val.fail(fmt::format("\"{}\" is not an environment variable name", k));
      e.env[k] = val.as_string();
    }
  }
  if (auto v = m.get("keep")) e.keep = v->as_enum({"failed", "all", "none"});
  return e;
}

// `job` holds the evaluator already (search.rescore_top needs the builtin).
SearchConfig read_search(const YamlField& f, const JobConfig& job) {
  const YamlMap m = f.as_map({"method", "parameterization", "granularity", "layer_groups", "budget",
                              "population", "sigma0", "seed", "active", "restarts", "lower",
                              "upper", "uniform_penalty", "rescore_top", "first_pass"});
  SearchConfig s;
  if (auto v = m.get("method")) s.method = v->as_enum({"cmaes", "random"});
  if (auto v = m.get("parameterization"))
    s.parameterization = v->as_enum({"simplex", "nonnegative", "free"});
  if (auto v = m.get("granularity")) s.granularity = v->as_enum({"checkpoint", "layer_group"});
  if (auto v = m.get("layer_groups")) {
    if (s.granularity != "layer_group") v->fail("only applies to granularity: layer_group");
    s.layer_groups = v->as_uint(1);
  } else if (s.granularity == "layer_group") {
    m.require("layer_groups");
  }
  if (auto v = m.get("budget")) s.budget = v->as_uint(1);
  if (auto v = m.get("population")) {
    s.population = v->as_uint();
    if (s.population == 1) v->fail("must be 0 (the CMA-ES default) or >= 2");
  }
  if (auto v = m.get("uniform_penalty")) {
    s.uniform_penalty = v->as_finite_double();
    if (s.uniform_penalty < 0) v->fail(fmt::format("must be >= 0, got {}", s.uniform_penalty));
  }
  // The re-scoring reads the search split past the first pass: the builtin
  // evaluator's examples (a command scorer chooses its own).
  if (auto v = m.get("rescore_top")) {
    s.rescore_top = v->as_uint();
    if (s.rescore_top > 0 && job.evaluator.kind != "builtin")
      v->fail("needs evaluator.kind builtin (it re-scores on more of each task's examples)");
    if (s.rescore_top > 0 && !m.get("first_pass"))
      v->fail("needs search.first_pass, the examples per task of the first pass");
  }
  if (auto v = m.get("first_pass")) {
    s.first_pass = v->as_uint(1);
    if (s.rescore_top == 0)
      v->fail("only applies with search.rescore_top (the candidates re-scored on every example)");
  }
  if (auto v = m.get("sigma0")) {
    s.sigma0 = v->as_finite_double();
    if (!(s.sigma0 > 0)) v->fail(fmt::format("must be > 0, got {}", s.sigma0));
  }
  if (auto v = m.get("seed")) s.seed = v->as_uint();
  if (auto v = m.get("active")) {
    s.active = v->as_bool();
    if (s.active && s.method != "cmaes") v->fail("only applies to method: cmaes");
  }
  if (auto v = m.get("restarts")) {
    s.restarts = v->as_uint();
    if (s.restarts > 0 && s.method != "cmaes") v->fail("only applies to method: cmaes");
  }
  if (auto v = m.get("lower")) s.lower = v->as_finite_double();
  if (auto v = m.get("upper")) s.upper = v->as_finite_double();
  if (s.lower && s.upper && !(*s.lower < *s.upper))
    m.get("upper")->fail(
        fmt::format("must be greater than search.lower ({} >= {})", *s.lower, *s.upper));
  return s;
}

// A map task -> number whose keys must be task names.
std::map<std::string, double> task_map(const YamlField& f, const std::set<std::string>& tasks) {
  std::map<std::string, double> out;
  for (const auto& [k, v] : f.entries()) {
    if (!tasks.count(k)) v.fail("no task has this name");
    out[k] = v.as_finite_double();
  }
  return out;
}

ObjectiveConfig read_objective(const YamlField& f, const std::set<std::string>& tasks) {
  const YamlMap m =
      f.as_map({"kind", "weights", "preference", "chebyshev_rho", "maximize", "floors", "penalty"});
  ObjectiveConfig o;
  if (auto v = m.get("kind")) o.kind = v->as_enum({"mean", "weighted", "chebyshev", "constrained"});
  auto only_for = [&](const char* key, const char* kind) -> std::optional<YamlField> {
    auto v = m.get(key);
    if (v && o.kind != kind) v->fail(fmt::format("only applies to kind: {}", kind));
    return v;
  };
  if (auto v = only_for("weights", "weighted")) {
    o.weights = task_map(*v, tasks);
    double sum = 0;
    for (const auto& [k, w] : o.weights) {
      if (w < 0) v->fail(fmt::format("{}: weight must be >= 0, got {}", k, w));
      sum += w;
    }
    if (!(sum > 0)) v->fail("weights must not all be zero");
  } else if (o.kind == "weighted") {
    m.require("weights");
  }
  if (auto v = only_for("preference", "chebyshev")) {
    o.preference = task_map(*v, tasks);
    for (const auto& [k, p] : o.preference)
      if (!(p > 0)) v->fail(fmt::format("{}: preference must be > 0, got {}", k, p));
  }
  if (auto v = only_for("chebyshev_rho", "chebyshev")) {
    o.chebyshev_rho = v->as_finite_double();
    if (o.chebyshev_rho < 0) v->fail("must be >= 0");
  }
  if (auto v = only_for("maximize", "constrained")) {
    o.maximize = v->as_string();
    if (!tasks.count(o.maximize)) v->fail(fmt::format("no task is named \"{}\"", o.maximize));
  } else if (o.kind == "constrained") {
    m.require("maximize");
  }
  if (auto v = only_for("floors", "constrained")) o.floors = task_map(*v, tasks);
  if (auto v = only_for("penalty", "constrained")) {
    o.penalty = v->as_finite_double();
    if (o.penalty < 0) v->fail("must be >= 0");
  }
  return o;
}

ParallelConfig read_parallel(const YamlField& f) {
  const YamlMap m = f.as_map({"tensor_parallel"});
  ParallelConfig p;
  if (auto v = m.get("tensor_parallel")) p.tensor_parallel = v->as_uint(1, 1u << 16);
  return p;
}

void read_output(const YamlField& f, const fs::path& base_dir, OutputConfig& o) {
  const YamlMap m = f.as_map({"state", "dir"});
  if (auto v = m.get("state")) o.state = path_value(*v, base_dir);
  if (auto v = m.get("dir")) o.dir = path_value(*v, base_dir);
}

}  // namespace

JobConfig parse_job(const std::string& yaml_text, const std::string& origin,
                    const std::filesystem::path& base_dir) {
  const fs::path base = fs::absolute(base_dir).lexically_normal();
  const YAML::Node root = parse_yaml(yaml_text, origin);
  const YamlField top(origin, root, "", 1);
  if (!root.IsMap()) top.fail("a job file must be a map with keys pool, tasks, ...");
  const YamlMap m =
      top.as_map({"pool", "tasks", "evaluator", "search", "objective", "parallel", "output"});

  JobConfig job;
  job.yaml_text = yaml_text;
  job.pool = read_pool(m.require("pool"), base);

  // The evaluator decides what a task entry holds.
  if (auto v = m.get("evaluator")) job.evaluator = read_evaluator(*v, base);
  const YamlField tasks = m.require("tasks");
  std::set<std::string> names;
  for (const auto& item : tasks.items()) {
    TaskConfig t = read_task(item, base, job.evaluator.kind);
    if (!names.insert(t.name).second)
      item.fail(fmt::format("task name \"{}\" is used twice", t.name));
    // The scorer gets one {split}: every task of a command evaluator shares it.
    if (job.evaluator.kind == "command" && !job.tasks.empty() && t.split != job.tasks.front().split)
      item.fail(fmt::format(
          "split \"{}\" differs from the first task's \"{}\": with evaluator.kind command "
          "every task is scored on the same split",
          t.split, job.tasks.front().split));
    job.tasks.push_back(std::move(t));
  }
  if (job.tasks.empty()) tasks.fail("needs at least one task");

  if (auto v = m.get("search")) job.search = read_search(*v, job);
  if (auto v = m.get("objective")) job.objective = read_objective(*v, names);
  if (auto v = m.get("parallel")) job.parallel = read_parallel(*v);
  // Defaults resolve against the job folder too.
  job.output.state = resolve(base, job.output.state.string());
  job.output.dir = resolve(base, job.output.dir.string());
  if (auto v = m.get("output")) read_output(*v, base, job.output);
  return job;
}

JobConfig load_job(const std::filesystem::path& path) {
  const std::string text = read_input_file(path, "job file", kMaxTextFileBytes);
  const fs::path abs = fs::absolute(path).lexically_normal();
  JobConfig job = parse_job(text, path.string(), abs.parent_path());
  job.file = abs;
  return job;
}

}  // namespace kintsugi
