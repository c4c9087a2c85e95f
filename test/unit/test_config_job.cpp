// The job file parser: values, defaults, paths, and one error per kind of mistake
// with the exact file:line and key path (lines counted by hand in the snippets).
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/config/job.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

JobConfig parse(const std::string& text) {
  return parse_job(text, "job.yaml", "/jobs/demo");
}

// The InputError message for `text`, or "" when it parses.
std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

const char* kMinimal = R"(pool:
  checkpoints: [a, b]
tasks:
  - name: add
    file: tasks/add.{split}.jsonl
)";

}  // namespace

TEST_CASE("job: a full job parses to the values written", "[config]") {
  const std::string text = R"Y(# demo job
pool:
  checkpoints:
    - pool/ckpt-00
    - /abs/ckpt-01
    - ../other/ckpt-02
  base: pool/base
tasks:
  - name: addition
    file: tasks/addition.{split}.jsonl
    kind: generate
    metric: exact_match
    split: dev
    limit: 50
    max_new_tokens: 8
    stop: ["\n", "."]
    regex: "answer: (\\d+)"
    ignore_case: true
  - name: capitals
    file: /data/capitals.{split}.jsonl
    kind: choice
    metric: acc_norm
  - name: prose
    file: tasks/prose.jsonl
    kind: perplexity
evaluator:
  kind: builtin
  batch_size: 4
search:
  method: cmaes
  parameterization: nonnegative
  granularity: layer_group
  layer_groups: 4
  budget: 120
  population: 12
  sigma0: 0.25
  seed: 18446744073709551615
  active: yes
  restarts: 2
  lower: -1.5
  upper: 2
objective:
  kind: weighted
  weights: {addition: 2, capitals: 1.5, prose: 0}
parallel:
  tensor_parallel: 2
output:
  state: out/state.h5
  dir: /scratch/out
)Y";
  const JobConfig j = parse(text);
  CHECK(j.yaml_text == text);
  CHECK(j.file.empty());
  REQUIRE(j.pool.checkpoints.size() == 3);
  CHECK(j.pool.checkpoints[0] == fs::path("/jobs/demo/pool/ckpt-00"));
  CHECK(j.pool.checkpoints[1] == fs::path("/abs/ckpt-01"));
  CHECK(j.pool.checkpoints[2] == fs::path("/jobs/other/ckpt-02"));
  REQUIRE(j.pool.base);
  CHECK(*j.pool.base == fs::path("/jobs/demo/pool/base"));

  REQUIRE(j.tasks.size() == 3);
  const TaskConfig& a = j.tasks[0];
  CHECK(a.name == "addition");
  CHECK(a.file == "/jobs/demo/tasks/addition.{split}.jsonl");
  CHECK(a.file_for("test") == fs::path("/jobs/demo/tasks/addition.test.jsonl"));
  CHECK(a.kind == TaskKind::Generate);
  CHECK(a.metric == "exact_match");
  CHECK(a.split == "dev");
  CHECK(a.limit == 50);
  CHECK(a.max_new_tokens == 8);
  CHECK(a.stop == std::vector<std::string>{"\n", "."});
  CHECK(a.regex == "answer: (\\d+)");
  CHECK(a.ignore_case);
  CHECK(a.higher_is_better());
  const TaskConfig& c = j.tasks[1];
  CHECK(c.kind == TaskKind::Choice);
  CHECK(c.metric == "acc_norm");
  CHECK(c.file_for("search") == fs::path("/data/capitals.search.jsonl"));
  const TaskConfig& p = j.tasks[2];
  CHECK(p.kind == TaskKind::Perplexity);
  CHECK(p.metric == "bits_per_byte");
  CHECK_FALSE(p.higher_is_better());
  CHECK(p.file_for("test") == fs::path("/jobs/demo/tasks/prose.jsonl"));

  CHECK(j.evaluator.kind == "builtin");
  CHECK(j.evaluator.batch_size == 4);
  CHECK(j.search.method == "cmaes");
  CHECK(j.search.parameterization == "nonnegative");
  CHECK(j.search.granularity == "layer_group");
  CHECK(j.search.layer_groups == 4);
  CHECK(j.search.budget == 120);
  CHECK(j.search.population == 12);
  CHECK(j.search.sigma0 == 0.25);
  CHECK(j.search.seed == 18446744073709551615ull);
  CHECK(j.search.active);
  CHECK(j.search.restarts == 2);
  CHECK(j.search.lower == -1.5);
  CHECK(j.search.upper == 2.0);
  CHECK(j.objective.kind == "weighted");
  CHECK(j.objective.weights ==
        std::map<std::string, double>{{"addition", 2}, {"capitals", 1.5}, {"prose", 0}});
  CHECK(j.parallel.tensor_parallel == 2);
  CHECK(j.output.state == fs::path("/jobs/demo/out/state.h5"));
  CHECK(j.output.dir == fs::path("/scratch/out"));
}

TEST_CASE("job: defaults of every optional key", "[config]") {
  const JobConfig j = parse(kMinimal);
  REQUIRE(j.pool.checkpoints.size() == 2);
  CHECK_FALSE(j.pool.base);
  REQUIRE(j.tasks.size() == 1);
  const TaskConfig& t = j.tasks[0];
  CHECK(t.kind == TaskKind::Generate);
  CHECK(t.metric == "exact_match");
  CHECK(t.split == "search");
  CHECK(t.limit == 0);
  CHECK(t.max_new_tokens == 32);
  CHECK(t.stop == std::vector<std::string>{"\n"});
  CHECK(t.regex.empty());
  CHECK_FALSE(t.ignore_case);
  CHECK(j.evaluator.kind == "builtin");
  CHECK(j.evaluator.batch_size == 16);
  CHECK(j.evaluator.timeout_s == 3600);
  CHECK(j.search.method == "cmaes");
  CHECK(j.search.parameterization == "simplex");
  CHECK(j.search.granularity == "checkpoint");
  CHECK(j.search.layer_groups == 1);
  CHECK(j.search.budget == 300);
  CHECK(j.search.population == 0);
  CHECK(j.search.sigma0 == 0.3);
  CHECK(j.search.seed == 0);
  CHECK_FALSE(j.search.active);
  CHECK(j.search.restarts == 0);
  CHECK_FALSE(j.search.lower);
  CHECK_FALSE(j.search.upper);
  CHECK(j.objective.kind == "mean");
  CHECK(j.objective.chebyshev_rho == 1e-3);
  CHECK(j.objective.penalty == 10.0);
  CHECK(j.parallel.tensor_parallel == 1);
  CHECK(j.output.state == fs::path("/jobs/demo/kintsugi-state.h5"));
  CHECK(j.output.dir == fs::path("/jobs/demo/kintsugi-out"));

  // Default metrics per kind.
  const JobConfig k = parse(R"(pool: {checkpoints: [a]}
tasks:
  - {name: c, file: c.jsonl, kind: choice}
  - {name: p, file: p.jsonl, kind: perplexity}
)");
  CHECK(k.tasks[0].metric == "acc");
  CHECK(k.tasks[1].metric == "bits_per_byte");
}

TEST_CASE("job: other objectives and the command evaluator", "[config]") {
  const JobConfig j = parse(R"(pool: {checkpoints: [a]}
evaluator:
  kind: command
  command: [lm_eval, --model_args, "pretrained={model}", --tasks, "{tasks}", --gen_kwargs, '{"t": 0}']
  timeout_s: 90.5
  results: json
  scratch: scratch
  dtype: float32
  env: {HF_HOME: /cache}
  keep: all
tasks:
  - {name: x, task: "arc_{split}", metric: "acc_norm,none", split: dev}
  - {name: y, metric: "word_perplexity,none", split: dev}
  - {name: z, metric: score, higher_is_better: false, split: dev}
objective:
  kind: constrained
  maximize: x
  floors: {y: 0.4}
  penalty: 3
)");
  CHECK(j.evaluator.kind == "command");
  CHECK(j.evaluator.command == std::vector<std::string>{"lm_eval", "--model_args",
                                                        "pretrained={model}", "--tasks", "{tasks}",
                                                        "--gen_kwargs", "{\"t\": 0}"});
  CHECK(j.evaluator.timeout_s == 90.5);
  CHECK(j.evaluator.results == "json");
  CHECK(j.evaluator.scratch == fs::path("/jobs/demo/scratch"));
  CHECK(j.evaluator.dtype == "float32");
  CHECK(j.evaluator.env == std::map<std::string, std::string>{{"HF_HOME", "/cache"}});
  CHECK(j.evaluator.keep == "all");
  REQUIRE(j.tasks.size() == 3);
  CHECK(j.tasks[0].external_name("dev") == "arc_dev");
  CHECK(j.tasks[0].external_name("test") == "arc_test");
  CHECK(j.tasks[0].metric == "acc_norm,none");
  CHECK(j.tasks[0].higher_is_better());
  CHECK(j.tasks[1].external_name("dev") == "y");
  CHECK_FALSE(j.tasks[1].higher_is_better());  // lm-eval's perplexities: lower is better
  CHECK_FALSE(j.tasks[2].higher_is_better());  // as the job says
  CHECK(j.tasks[2].split == "dev");
  CHECK(j.objective.kind == "constrained");
  CHECK(j.objective.maximize == "x");
  CHECK(j.objective.floors == std::map<std::string, double>{{"y", 0.4}});
  CHECK(j.objective.penalty == 3);

  const JobConfig c = parse(R"(pool: {checkpoints: [a]}
tasks: [{name: x, file: x.jsonl}, {name: y, file: y.jsonl}]
objective: {kind: chebyshev, preference: {x: 1, y: 2}, chebyshev_rho: 0.01}
)");
  CHECK(c.objective.preference == std::map<std::string, double>{{"x", 1}, {"y", 2}});
  CHECK(c.objective.chebyshev_rho == 0.01);
}

TEST_CASE("job: file_for replaces every {split}", "[config]") {
  TaskConfig t;
  t.file = "/d/{split}/t.{split}.jsonl";
  CHECK(t.file_for("test") == fs::path("/d/test/t.test.jsonl"));
  t.file = "/d/plain.jsonl";
  CHECK(t.file_for("test") == fs::path("/d/plain.jsonl"));
  t.file = "/d/{spli}.jsonl";
  CHECK(t.file_for("x") == fs::path("/d/{spli}.jsonl"));
}

TEST_CASE("job: load_job resolves paths against the job file's folder", "[config]") {
  test::TempDir tmp;
  fs::create_directories(tmp / "jobs");
  const fs::path job = tmp / "jobs" / "job.yaml";
  std::ofstream(job) << kMinimal;
  const JobConfig j = load_job(job);
  CHECK(j.file == job);
  CHECK(j.pool.checkpoints[0] == tmp.path() / "jobs" / "a");
  CHECK(j.tasks[0].file == (tmp.path() / "jobs" / "tasks" / "add.{split}.jsonl").string());
  CHECK(j.output.state == tmp.path() / "jobs" / "kintsugi-state.h5");

  // Errors from a file name the file as given.
  std::ofstream(tmp / "jobs" / "bad.yaml") << "pool: {checkpoints: [a]}\ntasks: []\n";
  try {
    load_job(tmp / "jobs" / "bad.yaml");
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()) ==
          (tmp / "jobs" / "bad.yaml").string() + ":2: tasks: needs at least one task");
  }
  CHECK_THROWS_WITH(load_job(tmp / "missing.yaml"),
                    Catch::Contains("missing.yaml: cannot open the job file: no such file"));
  CHECK_THROWS_AS(load_job(tmp.path()), InputError);
}

TEST_CASE("job: every kind of error names file:line and the key", "[config]") {
  struct Case {
    const char* what;
    std::string yaml;
    std::string expected;  // the whole message
  };
  const std::string tasks = "tasks: [{name: t, file: t.jsonl}]\n";
  const std::string pool = "pool: {checkpoints: [a]}\n";
  const std::vector<Case> cases = {
      {"syntax", "pool: [a\n", "job.yaml:2:1: YAML syntax error: end of sequence flow not found"},
      // yaml-cpp 0.7's LoadAll never returns on these (the fuzzer's find).
      {"a leading comma", ", --tasks]\npool: {checkpoints: [a]}\n",
       "job.yaml: YAML syntax error: more than 64 documents, or a ',' outside a flow collection "
       "([...] or {...}) where a document starts"},
      {"a comma after ---", pool + "---\n,\n",
       "job.yaml: YAML syntax error: more than 64 documents, or a ',' outside a flow collection "
       "([...] or {...}) where a document starts"},
      {"not a map", "- a\n- b\n",
       "job.yaml:1: a job file must be a map with keys pool, tasks, ..."},
      {"empty file", "", "job.yaml:1: a job file must be a map with keys pool, tasks, ..."},
      {"unknown top key", pool + tasks + "serch: {budget: 3}\n",
       "job.yaml:3: serch: unknown key (known keys: pool, tasks, evaluator, search, objective, "
       "parallel, output)"},
      {"unknown nested key", pool + tasks + "search:\n  budget: 3\n  sigma: 0.1\n",
       "job.yaml:5: search.sigma: unknown key (known keys: method, parameterization, granularity, "
       "layer_groups, budget, population, sigma0, seed, active, restarts, lower, upper, "
       "uniform_penalty, rescore_top, first_pass)"},
      {"rescore_top without first_pass", pool + tasks + "search:\n  rescore_top: 3\n",
       "job.yaml:4: search.rescore_top: needs search.first_pass, the examples per task of the "
       "first pass"},
      {"first_pass without rescore_top", pool + tasks + "search:\n  first_pass: 30\n",
       "job.yaml:4: search.first_pass: only applies with search.rescore_top (the candidates "
       "re-scored on every example)"},
      {"first_pass 0", pool + tasks + "search:\n  rescore_top: 2\n  first_pass: 0\n",
       "job.yaml:5: search.first_pass: must be >= 1, got 0"},
      {"rescore_top with a command scorer",
       pool + "evaluator: {kind: command, command: [s, '{model}']}\n" +
           "tasks: [{name: t, metric: acc}]\nsearch:\n  rescore_top: 1\n  first_pass: 5\n",
       "job.yaml:5: search.rescore_top: needs evaluator.kind builtin (it re-scores on more of "
       "each task's examples)"},
      {"negative uniform_penalty", pool + tasks + "search:\n  uniform_penalty: -0.1\n",
       "job.yaml:4: search.uniform_penalty: must be >= 0, got -0.1"},
      {"unknown task key", pool + "tasks:\n  - name: t\n    file: t.jsonl\n    shots: 5\n",
       "job.yaml:5: tasks[0].shots: unknown key (known keys: name, file, kind, metric, split, "
       "limit, "
       "max_new_tokens, stop, regex, ignore_case)"},
      {"missing pool", tasks, "job.yaml:1: pool: missing required key"},
      {"missing tasks", pool, "job.yaml:1: tasks: missing required key"},
      {"missing checkpoints", "pool:\n  base: b\n" + tasks,
       "job.yaml:2: pool.checkpoints: missing required key"},
      {"empty checkpoints", "pool: {checkpoints: []}\n" + tasks,
       "job.yaml:1: pool.checkpoints: needs at least one checkpoint"},
      {"checkpoints not a list", "pool:\n  checkpoints: a\n" + tasks,
       "job.yaml:2: pool.checkpoints: expected a list, got a scalar"},
      {"checkpoint twice", "pool:\n  checkpoints:\n    - a\n    - ./a\n" + tasks,
       "job.yaml:4: pool.checkpoints[1]: /jobs/demo/a is listed twice"},
      {"base in pool", "pool: {checkpoints: [a, b], base: b}\n" + tasks,
       "job.yaml:1: pool.base: the base must not also be a pool checkpoint"},
      {"null string", pool + tasks + "output:\n  dir:\n  state: s.h5\n",
       "job.yaml:4: output.dir: expected a string, got null"},
      {"null list", pool + tasks + "search:\n  budget:\n",
       "job.yaml:4: search.budget: expected a non-negative integer, got null"},
      {"task missing name", pool + "tasks:\n  - file: t.jsonl\n",
       "job.yaml:3: tasks[0].name: missing required key"},
      {"task missing file", pool + "tasks:\n  - name: t\n",
       "job.yaml:3: tasks[0].file: missing required key"},
      {"duplicate task", pool + "tasks:\n  - {name: t, file: a}\n  - {name: t, file: b}\n",
       "job.yaml:4: tasks[1]: task name \"t\" is used twice"},
      {"bad kind", pool + "tasks:\n  - name: t\n    file: t\n    kind: mcq\n",
       "job.yaml:5: tasks[0].kind: \"mcq\" is not one of: generate, choice, perplexity"},
      {"metric does not fit kind",
       pool + "tasks:\n  - name: t\n    file: t\n    kind: choice\n    metric: exact_match\n",
       "job.yaml:6: tasks[0].metric: \"exact_match\" is not one of: acc, acc_norm"},
      {"generate key on choice",
       pool + "tasks:\n  - name: t\n    file: t\n    kind: choice\n    max_new_tokens: 4\n",
       "job.yaml:6: tasks[0].max_new_tokens: only applies to kind: generate (this task is choice)"},
      {"negative integer", pool + "tasks:\n  - {name: t, file: t, limit: -3}\n",
       "job.yaml:3: tasks[0].limit: must be >= 0, got -3"},
      {"zero max_new_tokens", pool + "tasks:\n  - {name: t, file: t, max_new_tokens: 0}\n",
       "job.yaml:3: tasks[0].max_new_tokens: must be >= 1, got 0"},
      {"stop not a list", pool + "tasks:\n  - {name: t, file: t, stop: {a: b}}\n",
       "job.yaml:3: tasks[0].stop: expected a list, got a map"},
      {"empty stop",
       pool + "tasks:\n  - name: t\n    file: t\n    stop:\n      - x\n      - \"\"\n",
       "job.yaml:7: tasks[0].stop[1]: a stop string must not be empty"},
      {"bad regex", pool + "tasks:\n  - {name: t, file: t, regex: \"(ab\"}\n",
       "job.yaml:3: tasks[0].regex: invalid regular expression: "},
      {"regex two groups", pool + "tasks:\n  - {name: t, file: t, regex: \"(a)(b)\"}\n",
       "job.yaml:3: tasks[0].regex: may have at most one capture group"},
      {"bool wrong", pool + "tasks:\n  - {name: t, file: t, ignore_case: maybe}\n",
       "job.yaml:3: tasks[0].ignore_case: expected true or false, got \"maybe\""},
      {"quoted number", pool + tasks + "search:\n  budget: \"300\"\n",
       "job.yaml:4: search.budget: expected a non-negative integer, got the quoted string \"300\""},
      {"float for integer", pool + tasks + "search:\n  budget: 2.5\n",
       "job.yaml:4: search.budget: expected a non-negative integer, got \"2.5\""},
      {"budget zero", pool + tasks + "search:\n  budget: 0\n",
       "job.yaml:4: search.budget: must be >= 1, got 0"},
      {"integer overflow", pool + tasks + "search:\n  seed: 18446744073709551616\n",
       "job.yaml:4: search.seed: 18446744073709551616 is too large"},
      {"list for number", pool + tasks + "search:\n  sigma0: [1]\n",
       "job.yaml:4: search.sigma0: expected a number, got a list"},
      {"sigma0 zero", pool + tasks + "search:\n  sigma0: 0\n",
       "job.yaml:4: search.sigma0: must be > 0, got 0"},
      {"sigma0 negative", pool + tasks + "search:\n  sigma0: -0.5\n",
       "job.yaml:4: search.sigma0: must be > 0, got -0.5"},
      {"sigma0 inf", pool + tasks + "search:\n  sigma0: .inf\n",
       "job.yaml:4: search.sigma0: must be a finite number, got .inf"},
      {"sigma0 text", pool + tasks + "search:\n  sigma0: big\n",
       "job.yaml:4: search.sigma0: expected a number, got \"big\""},
      {"bad method", pool + tasks + "search:\n  method: pso\n",
       "job.yaml:4: search.method: \"pso\" is not one of: cmaes, random"},
      {"bad parameterization", pool + tasks + "search: {parameterization: softmax}\n",
       "job.yaml:3: search.parameterization: \"softmax\" is not one of: simplex, nonnegative, "
       "free"},
      {"population one", pool + tasks + "search:\n  population: 1\n",
       "job.yaml:4: search.population: must be 0 (the CMA-ES default) or >= 2"},
      {"lower >= upper", pool + tasks + "search:\n  lower: 1\n  upper: 1\n",
       "job.yaml:5: search.upper: must be greater than search.lower (1 >= 1)"},
      {"layer_groups without granularity", pool + tasks + "search:\n  layer_groups: 4\n",
       "job.yaml:4: search.layer_groups: only applies to granularity: layer_group"},
      {"layer_group needs count", pool + tasks + "search:\n  granularity: layer_group\n",
       "job.yaml:4: search.layer_groups: missing required key"},
      {"active for random", pool + tasks + "search:\n  method: random\n  active: true\n",
       "job.yaml:5: search.active: only applies to method: cmaes"},
      {"tensor_parallel zero", pool + tasks + "parallel:\n  tensor_parallel: 0\n",
       "job.yaml:4: parallel.tensor_parallel: must be >= 1, got 0"},
      {"objective unknown task",
       pool + tasks + "objective:\n  kind: weighted\n  weights:\n    t: 1\n    u: 2\n",
       "job.yaml:7: objective.weights.u: no task has this name"},
      {"objective weights missing", pool + tasks + "objective:\n  kind: weighted\n",
       "job.yaml:4: objective.weights: missing required key"},
      {"objective weights all zero",
       pool + tasks + "objective:\n  kind: weighted\n  weights: {t: 0}\n",
       "job.yaml:5: objective.weights: weights must not all be zero"},
      {"objective key for other kind", pool + tasks + "objective:\n  weights: {t: 1}\n",
       "job.yaml:4: objective.weights: only applies to kind: weighted"},
      {"objective maximize unknown",
       pool + tasks + "objective:\n  kind: constrained\n  maximize: zz\n",
       "job.yaml:5: objective.maximize: no task is named \"zz\""},
      {"objective bad kind", pool + tasks + "objective: {kind: max}\n",
       "job.yaml:3: objective.kind: \"max\" is not one of: mean, weighted, chebyshev, constrained"},
      {"duplicate key", pool + tasks + "search:\n  budget: 3\n  budget: 4\n",
       "job.yaml:5: search.budget: duplicate key"},
      {"evaluator command missing", pool + tasks + "evaluator:\n  kind: command\n",
       "job.yaml:4: evaluator.command: missing required key"},
      {"command placeholder typo",
       pool + "evaluator:\n  kind: command\n  command: [run, \"{modle}\"]\n" +
           "tasks: [{name: a, metric: acc}]\n",
       "job.yaml:4: evaluator.command[1]: unknown placeholder {modle} in \"{modle}\" (write "
       "{{modle}} for the literal text)"},
      {"command task without metric",
       pool + "evaluator: {kind: command, command: [run]}\ntasks: [{name: a}]\n",
       "job.yaml:3: tasks[0].metric: missing required key"},
      {"command task with a file",
       pool +
           "evaluator: {kind: command, command: [run]}\ntasks: [{name: a, metric: m, file: f}]\n",
       "job.yaml:3: tasks[0].file: unknown key (known keys: name, task, metric, "
       "higher_is_better, split)"},
      {"command tasks on two splits",
       pool + "evaluator: {kind: command, command: [run]}\ntasks:\n  - {name: a, metric: m}\n" +
           "  - {name: b, metric: m, split: dev}\n",
       "job.yaml:5: tasks[1]: split \"dev\" differs from the first task's \"search\": with "
       "evaluator.kind command every task is scored on the same split"},
      {"command key for builtin", pool + tasks + "evaluator:\n  keep: all\n",
       "job.yaml:4: evaluator.keep: only applies to kind: command"},
      {"batch_size for command",
       pool + "evaluator: {kind: command, command: [run], batch_size: 4}\ntasks: [{name: a, "
              "metric: m}]\n",
       "job.yaml:2: evaluator.batch_size: only applies to kind: builtin"},
      {"bad results",
       pool + "evaluator: {kind: command, command: [run], results: csv}\ntasks: [{name: a, metric: "
              "m}]\n",
       "job.yaml:2: evaluator.results: \"csv\" is not one of: lm_eval, kintsugi, json"},
      {"evaluator command for builtin", pool + tasks + "evaluator:\n  command: [x]\n",
       "job.yaml:4: evaluator.command: only applies to kind: command"},
      {"section not a map", pool + tasks + "output: out\n",
       "job.yaml:3: output: expected a map, got a scalar"},
      {"empty path", pool + tasks + "output:\n  dir: \"\"\n",
       "job.yaml:4: output.dir: must not be empty"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const std::string msg = error_of(c.yaml);
    if (std::string(c.what) == "bad regex") {
      CHECK(msg.rfind(c.expected, 0) == 0);
    } else {
      CHECK(msg == c.expected);
    }
  }
}

TEST_CASE("job: the examples in docs/config.md parse", "[config]") {
  std::ifstream in(test::source_dir() / "docs" / "config.md");
  REQUIRE(in);
  std::vector<std::string> blocks;
  std::string line, block;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line == "```yaml") {
      inside = true;
      block.clear();
    } else if (inside && line == "```") {
      inside = false;
      blocks.push_back(block);
    } else if (inside) {
      block += line + "\n";
    }
  }
  REQUIRE(blocks.size() >= 2);
  for (const auto& b : blocks) {
    INFO(b);
    CHECK_NOTHROW(parse(b));
  }
  const JobConfig full = parse(blocks[0]);
  CHECK(full.pool.base == fs::path("/jobs/demo/pool/base"));
  CHECK(full.tasks.size() == 3);
}

TEST_CASE("job: hostile input gives an InputError, never a crash", "[config]") {
  // Deep nesting (yaml-cpp limits recursion depth and throws).
  CHECK_THROWS_AS(parse(std::string(100000, '[') + std::string(100000, ']')), InputError);
  CHECK_THROWS_AS(parse("pool: " + std::string(5000, '{') + std::string(5000, '}')), InputError);
  // Binary garbage, NUL bytes, a lone document marker, tabs.
  CHECK_THROWS_AS(parse(std::string("\x00\xff\xfe pool: [", 10)), InputError);
  CHECK_THROWS_AS(parse("---\n...\n"), InputError);
  CHECK_THROWS_AS(parse("pool:\n\t checkpoints: [a]\n"), InputError);
  // Aliases: a shared list used as a string.
  CHECK_THROWS_WITH(parse("x: &l [a, b]\npool: {checkpoints: [*l]}\ntasks: []\n"),
                    Catch::Contains("job.yaml:1: x: unknown key"));
  CHECK_THROWS_WITH(parse("pool: {checkpoints: &l [a, b]}\ntasks: [{name: *l, file: f}]\n"),
                    Catch::Contains("tasks[0].name: expected a string, got a list"));
}
