// The external scorer: its guard and process group (exit codes, signals,
// timeouts, stop requests, a killed parent), its environment, and reading
// scores in each results layout, against files written as lm-eval writes them.
#include <fmt/format.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "kintsugi/common/error.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/eval/external_scorer.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;

namespace {

ScorerRun shell(const test::TempDir& dir, const std::string& script, double timeout_s = 30) {
  ScorerRun r;
  r.argv = {"/bin/sh", "-c", script};
  r.env = scorer_environment({}, "", false);
  r.stdout_path = dir / "out.txt";
  r.stderr_path = dir / "err.txt";
  r.timeout_s = timeout_s;
  r.grace_s = 2;
  r.guard = KINTSUGI_BINARY;
  return r;
}

bool alive(pid_t pid) {
  return kill(pid, 0) == 0;
}

// Waits up to `seconds` for `pid` to be gone.
bool gone_within(pid_t pid, double seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  while (alive(pid)) {
    if (std::chrono::steady_clock::now() - t0 > std::chrono::duration<double>(seconds))
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// The error message of `f`, or "" when it does not throw.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A results file as lm-eval 0.4 writes it (EvaluationTracker.save_results_aggregated):
// metric keys "<metric>,<filter>", stderr "N/A" when not computed.
const char* kLmEvalResults = R"({
  "results": {
    "arc_easy": {"alias": "arc_easy", "acc,none": 0.5, "acc_stderr,none": "N/A",
                 "acc_norm,none": 0.625, "acc_norm_stderr,none": 0.01},
    "wikitext": {"alias": "wikitext", "word_perplexity,none": 17.5,
                 "byte_perplexity,none": 1.6, "bits_per_byte,none": 0.68,
                 "bits_per_byte_stderr,none": "N/A"}
  },
  "group_subtasks": {"arc_easy": [], "wikitext": []},
  "configs": {}, "versions": {"arc_easy": 1.0, "wikitext": 2.0},
  "n-shot": {"arc_easy": 0, "wikitext": 0},
  "higher_is_better": {"arc_easy": {"acc": true, "acc_norm": true}},
  "n-samples": {"arc_easy": {"original": 2376, "effective": 2376}},
  "config": {"model": "vllm", "model_args": "pretrained=/scratch/m"},
  "date": 1733000000.0
})";

}  // namespace

TEST_CASE("external scorer: exit codes, signals and output files", "[eval]") {
  test::TempDir dir;
  auto ok = run_scorer(shell(dir, "echo to-stdout; echo to-stderr >&2; exit 0"));
  CHECK(ok.ok());
  CHECK(test::slurp(dir / "out.txt") == "to-stdout\n");
  CHECK(test::slurp(dir / "err.txt") == "to-stderr\n");

  auto failed = run_scorer(shell(dir, "exit 3"));
  CHECK(failed.how == ScorerExit::How::Exited);
  CHECK(failed.code == 3);
  CHECK(failed.describe(1) == "exit 3");

  auto killed = run_scorer(shell(dir, "kill -KILL $$"));
  CHECK(killed.how == ScorerExit::How::Signaled);
  CHECK(killed.code == SIGKILL);

  auto missing = run_scorer([&] {
    auto r = shell(dir, "");
    r.argv = {"/no/such/program"};
    return r;
  }());
  CHECK(missing.code == 127);
  CHECK(test::slurp(dir / "err.txt").find("cannot run the scorer /no/such/program") !=
        std::string::npos);
}

TEST_CASE("external scorer: a timeout ends the whole process group", "[eval]") {
  test::TempDir dir;
  // The scorer starts a grandchild that ignores SIGTERM: SIGKILL must reach it.
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_scorer(shell(
      dir, "sh -c 'trap \"\" TERM; echo $$ > " + (dir / "pid").string() + "; sleep 60' & wait",
      0.5));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(r.how == ScorerExit::How::TimedOut);
  CHECK(r.describe(0.5) == "timed out after 0.5 s (evaluator.timeout_s)");
  CHECK(secs < 10);
  const pid_t grandchild = std::stoi(test::slurp(dir / "pid"));
  CHECK(gone_within(grandchild, 5));
}

TEST_CASE("external scorer: a stop request ends it", "[eval]") {
  test::TempDir dir;
  std::atomic<bool> stop{false};
  auto r = shell(dir, "sleep 60");
  r.stop = &stop;
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop = true;
  });
  const auto exit = run_scorer(r);
  later.join();
  CHECK(exit.how == ScorerExit::How::Stopped);
  CHECK(exit.seconds < 10);
}

TEST_CASE("external scorer: the guard ends the scorer when kintsugi dies", "[eval]") {
  test::TempDir dir;
  // A stand-in parent (sh) starts the guard and is then killed by SIGKILL:
  // the guard must take the scorer with it.
  const std::string script =
      fmt::format("'{}' {} $$ -- sh -c 'echo $$ > {}; exec sleep 60' & sleep 30", KINTSUGI_BINARY,
                  kScorerGuardVerb, (dir / "pid").string());
  const pid_t parent = fork();
  REQUIRE(parent >= 0);
  if (parent == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 200 && !fs::exists(dir / "pid"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(fs::exists(dir / "pid"));
  const pid_t scorer = std::stoi(test::slurp(dir / "pid"));
  CHECK(alive(scorer));
  kill(parent, SIGKILL);
  int status = 0;
  waitpid(parent, &status, 0);
  CHECK(gone_within(scorer, 10));
}

TEST_CASE("external scorer: the environment leaves out the launcher's variables", "[eval]") {
  setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  setenv("SLURM_PROCID", "3", 1);
  setenv("SLURM_JOB_ID", "77", 1);
  setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3", 1);
  auto has = [](const std::vector<std::string>& env, const std::string& entry) {
    return std::find(env.begin(), env.end(), entry) != env.end();
  };
  const auto env = scorer_environment({{"HF_HOME", "/cache"}}, "2,3", true);
  CHECK_FALSE(has(env, "OMPI_COMM_WORLD_SIZE=4"));
  CHECK_FALSE(has(env, "SLURM_PROCID=3"));
  CHECK(has(env, "SLURM_JOB_ID=77"));
  CHECK(has(env, "CUDA_VISIBLE_DEVICES=2,3"));
  CHECK_FALSE(has(env, "CUDA_VISIBLE_DEVICES=0,1,2,3"));
  CHECK(has(env, "HF_HOME=/cache"));
  // No GPUs assigned: the devices the job sees stay as they are.
  CHECK(has(scorer_environment({}, "", false), "CUDA_VISIBLE_DEVICES=0,1,2,3"));
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("SLURM_PROCID");
  unsetenv("SLURM_JOB_ID");
  unsetenv("CUDA_VISIBLE_DEVICES");
}

TEST_CASE("external scorer: lm-eval results", "[eval]") {
  test::TempDir dir;
  const fs::path out = dir / "output";
  // An older results file of another run, and the newest one.
  test::write_file(out / "__scratch__m" / "results_2024-01-01T00-00-00.000000.json",
                   R"({"results": {"arc_easy": {"acc_norm,none": 0.1}}})");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  test::write_file(out / "__scratch__m" / "results_2024-12-01T10-11-12.123456.json",
                   kLmEvalResults);
  const auto scores = read_scores("lm_eval", out, dir / "none",
                                  {{"arc_easy", "acc_norm,none"},
                                   {"wikitext", "word_perplexity,none"},
                                   {"arc_easy", "acc,none"}});
  CHECK(scores == std::vector<double>{0.625, 17.5, 0.5});

  const fs::path newest = out / "__scratch__m" / "results_2024-12-01T10-11-12.123456.json";
  CHECK(error_of([&] {
          read_scores("lm_eval", out, "", {{"arc_challenge", "acc,none"}});
        }) ==
        newest.string() + ": no results for task 'arc_challenge' (it has: arc_easy, wikitext)");
  CHECK(error_of([&] {
          read_scores("lm_eval", out, "", {{"arc_easy", "acc"}});
        }) == newest.string() +
                  ": task 'arc_easy' has no metric 'acc' (it has: acc,none, acc_norm,none, "
                  "acc_norm_stderr,none, acc_stderr,none, alias)");
  CHECK(error_of([&] {
          read_scores("lm_eval", out, "", {{"arc_easy", "acc_stderr,none"}});
        }) == newest.string() +
                  ": task 'arc_easy' metric 'acc_stderr,none' is \"N/A\", not a finite number");

  test::TempDir empty;
  CHECK(error_of([&] {
          read_scores("lm_eval", empty.path(), "", {{"a", "b"}});
        }) == empty.path().string() +
                  ": no results_*.json anywhere under it (the scorer wrote no lm-eval results)");
  test::write_file(empty / "m" / "results_x.json", "{not json");
  CHECK(error_of([&] {
          read_scores("lm_eval", empty.path(), "", {{"a", "b"}});
        }) == (empty / "m" / "results_x.json").string() + ": not valid JSON");
}

TEST_CASE("external scorer: kintsugi eval --json and scores.json", "[eval]") {
  test::TempDir dir;
  test::write_file(dir / "out.txt",
                   "model task metric value\n"
                   R"({"results":[{"model":"m","tasks":{"add":{"exact_match":0.75,"n":4}}}]})"
                   "\n");
  CHECK(read_scores("kintsugi", dir.path(), dir / "out.txt", {{"add", "exact_match"}}) ==
        std::vector<double>{0.75});
  test::write_file(dir / "out.txt", "no summary here\n");
  CHECK(error_of([&] {
          read_scores("kintsugi", dir.path(), dir / "out.txt", {{"add", "x"}});
        }) == (dir / "out.txt").string() +
                  ": no JSON line with \"results\" (was `kintsugi eval` run with --json?)");

  test::write_file(dir / "scores.json", R"({"qa": {"f1": 0.25, "bad": null}})");
  CHECK(read_scores("json", dir.path(), "", {{"qa", "f1"}}) == std::vector<double>{0.25});
  CHECK(error_of([&] {
          read_scores("json", dir.path(), "", {{"qa", "bad"}});
        }) ==
        (dir / "scores.json").string() + ": task 'qa' metric 'bad' is null, not a finite number");
  fs::remove(dir / "scores.json");
  CHECK(error_of([&] {
          read_scores("json", dir.path(), "", {{"qa", "f1"}});
        }) == (dir / "scores.json").string() + ": the scorer did not write it");
}

TEST_CASE("command placeholders", "[config]") {
  const std::map<std::string, std::string> v = {{"model", "/m"}, {"tasks", "a,b"}};
  CHECK(expand_placeholders("pretrained={model},dtype=bf16", v) == "pretrained=/m,dtype=bf16");
  CHECK(expand_placeholders("{tasks}{model}", v) == "a,b/m");
  // Literal braces: doubled, JSON, shell variables.
  CHECK(expand_placeholders("{{model}}", v) == "{model}");
  CHECK(expand_placeholders(R"({"temperature": 0})", v) == R"({"temperature": 0})");
  CHECK(expand_placeholders("${HOME}/x", v) == "${HOME}/x");
  CHECK(expand_placeholders("a{", v) == "a{");
  CHECK_THROWS_AS(expand_placeholders("{modle}", v), InputError);
  CHECK(error_of([&] { expand_placeholders("x={output}", v); }) ==
        "unknown placeholder {output} in \"x={output}\" (write {{output}} for the literal text)");
  // Nested JSON keeps its closing braces.
  CHECK(expand_placeholders(R"({"a": {"b": "{model}"}})", v) == R"({"a": {"b": "/m"}})");
  CHECK(expand_placeholders("{{x}} {{ {model}", v) == "{x} {{ /m");
}
