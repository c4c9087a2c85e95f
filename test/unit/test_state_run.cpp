// The run state: exact round trip, the documented layout as h5py sees it,
// clear errors on bad files, and atomic saves under SIGKILL.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include "kintsugi/common/error.hpp"
#include "kintsugi/io/atomic_file.hpp"
#include "kintsugi/state/hdf5.hpp"
#include "kintsugi/state/run_state.hpp"
#include "test_state_support.hpp"
#include "test_support.hpp"

using namespace kintsugi;
namespace fs = std::filesystem;
using kintsugi::test::same_bits;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The temporary files that saves left beside `path` ("NAME.tmp-XXXXXX", also
// "NAME.prev.tmp-XXXXXX"); with `remove`, they are deleted.
int leftover_tmps(const fs::path& path, bool remove = false) {
  int n = 0;
  const std::string name = path.filename().string();
  for (const auto& e : fs::directory_iterator(path.parent_path())) {
    const std::string f = e.path().filename().string();
    if (f.rfind(name + ".tmp-", 0) == 0 || f.rfind(name + ".prev.tmp-", 0) == 0) {
      ++n;
      if (remove) fs::remove(e.path());
    }
  }
  return n;
}

// A state whose every value depends on `k` (so two saves are told apart), with
// 3 checkpoints, 2 layer groups (W = 6), 2 tasks, D = 6 and k % 5 + 3 evaluations.
RunState make_state(int64_t k, size_t extra_reals = 0) {
  RunState s;
  StateMeta& m = s.meta;
  m.kintsugi_version = "0.1.0";
  m.config = "pool: {checkpoints: [a, b, c]}\n# run " + std::to_string(k) + "\n";
  m.config_hash = fnv1a64_hex(m.config);
  m.seed = static_cast<uint64_t>(k) * 1000003u;
  m.created = "2024-05-01T12:00:00Z";
  m.pool_names = {"a", "b", "c"};
  m.pool_fingerprints = {"fa", "fb", "fc" + std::to_string(k)};
  m.task_names = {"add", "caps"};
  m.settings = {{"search.sigma0", "0.3"}, {"search.seed", std::to_string(k)}};
  EvalTable& e = s.evals;
  e.dims = 6;
  e.n_weights = 6;
  e.n_tasks = 2;
  const int64_t rows = k % 5 + 3;
  for (int64_t i = 0; i < rows; ++i) {
    const double x = static_cast<double>(k * 100 + i);
    std::vector<double> z(6), w(6);
    for (size_t j = 0; j < 6; ++j) {
      z[j] = x / 7.0 + static_cast<double>(j);
      w[j] = 1.0 / (x + static_cast<double>(j) + 1.0);
    }
    const bool failed = i == 1;
    const std::vector<double> sc = failed ? std::vector<double>{kNaN, kNaN}
                                          : std::vector<double>{x / 1000.0, 1.0 - x / 1000.0};
    // Rows 0 and 2 re-scored (search.rescore_top): a first-pass objective.
    e.append(z, w, sc, failed ? -1e30 : x / 3.0, failed ? EvalStatus::Failed : EvalStatus::Ok,
             failed ? "evaluation failed: NaN score in task add" : "", i / 2, 0.25 * x, kNaN, kNaN,
             i % 2 == 0 && i < 3 ? x / 3.0 + 0.5 : kNaN);
  }
  s.optimizer.reals["mean"] = {static_cast<double>(k), 0.5, -0.5};
  s.optimizer.reals["sigma"] = {0.3 / static_cast<double>(k + 1)};
  if (extra_reals)
    s.optimizer.reals["C"] = std::vector<double>(extra_reals, static_cast<double>(k));
  s.optimizer.ints["counter"] = {k, std::numeric_limits<int64_t>::max()};
  s.optimizer.strings["kind"] = "cmaes";
  Baselines& b = s.baselines;
  b.n_weights = 3;
  b.n_tasks = 2;
  b.append("uniform_soup", "linear 1/3 each", std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 3},
           std::vector<double>{0.5, 0.25}, std::vector<double>{0.4, 0.2}, 0.375, 0.3);
  b.append("a", "checkpoint a alone", std::vector<double>{1, 0, 0}, std::vector<double>{0.75, 0.0},
           std::vector<double>{kNaN, kNaN}, 0.375, kNaN);
  s.pareto = {0, rows - 1};
  s.test.n_tasks = 2;
  s.test.eval_index = {rows - 1};
  s.test.scores = {0.125, static_cast<double>(k)};
  s.test.objective = {0.0625};
  return s;
}

bool same_state(const RunState& a, const RunState& b) {
  const auto& ma = a.meta;
  const auto& mb = b.meta;
  const bool meta = ma.format_version == mb.format_version &&
                    ma.kintsugi_version == mb.kintsugi_version && ma.config == mb.config &&
                    ma.config_hash == mb.config_hash && ma.seed == mb.seed &&
                    ma.created == mb.created && ma.pool_names == mb.pool_names &&
                    ma.pool_fingerprints == mb.pool_fingerprints &&
                    ma.task_names == mb.task_names && ma.settings == mb.settings;
  const auto& ea = a.evals;
  const auto& eb = b.evals;
  const bool evals = ea.dims == eb.dims && ea.n_weights == eb.n_weights &&
                     ea.n_tasks == eb.n_tasks && same_bits(ea.z, eb.z) &&
                     same_bits(ea.weights, eb.weights) && same_bits(ea.scores, eb.scores) &&
                     same_bits(ea.objective, eb.objective) && ea.status == eb.status &&
                     ea.error == eb.error && ea.generation == eb.generation &&
                     same_bits(ea.seconds, eb.seconds) &&
                     same_bits(ea.first_pass_objective, eb.first_pass_objective);
  const auto& ba = a.baselines;
  const auto& bb = b.baselines;
  const bool base =
      ba.n_weights == bb.n_weights && ba.n_tasks == bb.n_tasks && ba.names == bb.names &&
      ba.recipes == bb.recipes && same_bits(ba.weights, bb.weights) &&
      same_bits(ba.scores, bb.scores) && same_bits(ba.test_scores, bb.test_scores) &&
      same_bits(ba.objective, bb.objective) && same_bits(ba.test_objective, bb.test_objective);
  const bool test = a.test.n_tasks == b.test.n_tasks && a.test.eval_index == b.test.eval_index &&
                    same_bits(a.test.scores, b.test.scores) &&
                    same_bits(a.test.objective, b.test.objective);
  return meta && evals && base && test && same_bits(a.optimizer, b.optimizer) &&
         a.pareto == b.pareto;
}

}  // namespace

TEST_CASE("state: FNV-1a 64 matches published test vectors", "[state]") {
  // Vectors from the FNV reference (Noll's test suite).
  CHECK(fnv1a64_hex("") == "cbf29ce484222325");
  CHECK(fnv1a64_hex("a") == "af63dc4c8601ec8c");
  CHECK(fnv1a64_hex("foobar") == "85944171f73967e8");
}

TEST_CASE("state: a RunState round-trips exactly", "[state]") {
  test::TempDir tmp;
  const auto path = tmp / "s.h5";
  const RunState s = make_state(7);
  save_state(path, s);
  const RunState back = load_state(path);
  CHECK(same_state(back, s));
  CHECK(back.evals.size() == 5);
  CHECK(std::isnan(back.evals.scores[2]));
  CHECK(back.evals.error[1] == "evaluation failed: NaN score in task add");
  CHECK(leftover_tmps(path) == 0);
  CHECK_FALSE(fs::exists(prev_path_of(path)));  // nothing before the first save

  // An empty run (no evaluations, no baselines yet) keeps its dimensions.
  RunState empty;
  empty.meta = make_state(1).meta;
  empty.evals.dims = 4;
  empty.evals.n_weights = 6;  // a multiple of the 3 checkpoints (load_state checks it)
  empty.evals.n_tasks = 2;
  empty.baselines.n_weights = 3;
  empty.baselines.n_tasks = 2;
  empty.test.n_tasks = 2;
  save_state(path, empty);
  const RunState e = load_state(path);
  CHECK(same_state(e, empty));
  CHECK(e.evals.dims == 4);
  CHECK(e.evals.n_weights == 6);
  // The second save kept the first as .prev.
  REQUIRE(fs::exists(prev_path_of(path)));
  CHECK(same_state(load_state(prev_path_of(path)), s));
}

TEST_CASE("state: appending generations and truncating", "[state]") {
  EvalTable t;
  t.dims = 2;
  t.n_weights = 3;
  t.n_tasks = 1;
  t.append(std::vector<double>{1, 2}, std::vector<double>{3, 4, 5}, std::vector<double>{6}, 7,
           EvalStatus::Ok, "", 0, 0.5);
  t.append(std::vector<double>{8, 9}, std::vector<double>{10, 11, 12}, std::vector<double>{13}, 14,
           EvalStatus::Failed, "boom", 1, 1.5);
  CHECK(t.size() == 2);
  CHECK(t.weights == std::vector<double>{3, 4, 5, 10, 11, 12});
  CHECK(t.status == std::vector<int64_t>{0, 1});
  CHECK_THROWS_AS(t.append(std::vector<double>{1}, std::vector<double>{3, 4, 5},
                           std::vector<double>{6}, 7, EvalStatus::Ok, "", 0, 0.5),
                  RuntimeError);
  t.truncate(1);
  CHECK(t.size() == 1);
  CHECK(t.z == std::vector<double>{1, 2});
  CHECK(t.error == std::vector<std::string>{""});
  t.check();
}

TEST_CASE("state: bad state files give an InputError naming the file", "[state]") {
  test::TempDir tmp;
  CHECK_THROWS_WITH(load_state(tmp / "none.h5"),
                    Catch::Contains("none.h5: cannot open the state: no such file"));
  std::ofstream(tmp / "text.h5") << "this is not HDF5\n";
  CHECK_THROWS_WITH(load_state(tmp / "text.h5"), Catch::Contains("text.h5: not an HDF5 file"));
  std::ofstream(tmp / "empty.h5");
  CHECK_THROWS_WITH(load_state(tmp / "empty.h5"), Catch::Contains("empty.h5: not an HDF5 file"));
  CHECK_THROWS_WITH(load_state(tmp.path()), Catch::Contains("not a regular file"));

  // A truncated state (a crash without the atomic save would leave this).
  save_state(tmp / "full.h5", make_state(3, 20000));
  const auto size = fs::file_size(tmp / "full.h5");
  for (double frac : {0.1, 0.5, 0.9}) {
    fs::copy_file(tmp / "full.h5", tmp / "cut.h5", fs::copy_options::overwrite_existing);
    fs::resize_file(tmp / "cut.h5", static_cast<uintmax_t>(static_cast<double>(size) * frac));
    INFO(frac);
    CHECK_THROWS_AS(load_state(tmp / "cut.h5"), InputError);
    CHECK_THROWS_WITH(load_state(tmp / "cut.h5"), Catch::Contains((tmp / "cut.h5").string()));
  }

  // A valid HDF5 file that is not a state.
  {
    h5::Id f = h5::create_memory_file("other.h5");
    h5::create_group({f.get(), "other.h5", "/"}, "data");
    test::write_file(tmp / "other.h5", h5::file_image(f.get(), "other.h5"));
  }
  CHECK_THROWS_WITH(load_state(tmp / "other.h5"), Catch::Contains("other.h5: /meta: missing"));
}

TEST_CASE("state: the layout of docs/state.md, read with h5py", "[state]") {
  test::require_h5py();
  test::TempDir tmp;
  const auto path = tmp / "s.h5";
  save_state(path, make_state(7));
  // Expected values worked out from make_state(7) by hand: 7 % 5 + 3 = 5 rows;
  // row i has x = 700 + i, z[j] = x/7 + j, w[j] = 1/(x + j + 1), scores (x/1000, 1 - x/1000)
  // except row 1 (failed: NaN scores, objective -1e30), generation i // 2, seconds x/4.
  const std::string script = R"PY(
import sys, math, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert sorted(f.keys()) == ["baselines", "evals", "meta", "optimizer", "pareto", "test"], list(f.keys())
assert f.id.get_create_plist().get_version()[0] == 3, "superblock version 3 (HDF5 1.10 format)"
m = f["meta"]
text = lambda k: m.attrs[k].decode("utf-8")  # fixed-length strings come back as bytes
assert m.attrs["format_version"] == 2
assert text("kintsugi_version") == "0.1.0"
assert text("config") == "pool: {checkpoints: [a, b, c]}\n# run 7\n"
assert m.attrs["seed"] == 7000021 and m.attrs["seed"].dtype == np.uint64
assert text("created") == "2024-05-01T12:00:00Z"
assert len(text("config_hash")) == 16
assert h5py.check_string_dtype(m["pool_names"].dtype).length is not None, "fixed-length strings"
assert m["pool_names"].asstr()[()].tolist() == ["a", "b", "c"]
assert m["pool_fingerprints"].asstr()[()].tolist() == ["fa", "fb", "fc7"]
assert m["task_names"].asstr()[()].tolist() == ["add", "caps"]
assert m["settings_keys"].asstr()[()].tolist() == ["search.sigma0", "search.seed"]
assert m["settings_values"].asstr()[()].tolist() == ["0.3", "7"]
e = f["evals"]
assert e["z"].shape == (5, 6) and e["weights"].shape == (5, 6) and e["scores"].shape == (5, 2)
assert e["z"][3, 2] == 703 / 7 + 2
assert e["weights"][4, 5] == 1 / (704 + 5 + 1)
assert e["scores"][0].tolist() == [0.7, 1 - 0.7]
assert all(math.isnan(v) for v in e["scores"][1])
assert e["objective"][()].tolist() == [700 / 3, -1e30, 702 / 3, 703 / 3, 704 / 3]
assert e["status"][()].tolist() == [0, 1, 0, 0, 0] and e["status"].dtype == np.int64
assert e["error"].asstr()[()].tolist() == ["", "evaluation failed: NaN score in task add", "", "", ""]
assert e["generation"][()].tolist() == [0, 0, 1, 1, 2]
assert e["seconds"][()].tolist() == [175.0, 175.25, 175.5, 175.75, 176.0]
fp = e["first_pass_objective"][()].tolist()
assert fp[0] == 700 / 3 + 0.5 and fp[2] == 702 / 3 + 0.5, fp
assert all(math.isnan(fp[i]) for i in (1, 3, 4)), fp
o = f["optimizer"]
assert o["mean"][()].tolist() == [7.0, 0.5, -0.5]
assert o["sigma"][()].tolist() == [0.3 / 8]
assert o["counter"][()].tolist() == [7, 2**63 - 1]
assert o["kind"].asstr()[()] == "cmaes"
b = f["baselines"]
assert b["names"].asstr()[()].tolist() == ["uniform_soup", "a"]
assert b["recipes"].asstr()[()].tolist() == ["linear 1/3 each", "checkpoint a alone"]
assert b["weights"].shape == (2, 3) and b["weights"][1].tolist() == [1, 0, 0]
assert b["scores"][()].tolist() == [[0.5, 0.25], [0.75, 0.0]]
assert b["test_scores"][0].tolist() == [0.4, 0.2] and math.isnan(b["test_scores"][1, 0])
assert b["objective"][()].tolist() == [0.375, 0.375]
assert b["test_objective"][0] == 0.3 and math.isnan(b["test_objective"][1])
assert f["pareto/indices"][()].tolist() == [0, 4]
t = f["test"]
assert t["eval_index"][()].tolist() == [4]
assert t["scores"][()].tolist() == [[0.125, 7.0]]
assert t["objective"][()].tolist() == [0.0625]
print("OK")
)PY";
  std::ofstream(tmp / "check.py") << script;
  const auto r =
      test::run_shell("/usr/bin/python3 " + (tmp / "check.py").string() + " " + path.string());
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output == "OK\n");
}

TEST_CASE("state: a SIGKILL during save never loses the last good state", "[state]") {
  test::TempDir tmp;
  const auto path = tmp / "s.h5";
  const auto prev = prev_path_of(path);
  // Large enough (~1.6 MB) that a save takes a while and kills land mid-write.
  constexpr size_t kExtra = 200000;
  save_state(path, make_state(0, kExtra));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 1; i <= 3; ++i) save_state(path, make_state(i, kExtra));
  const double per_save_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 3;

  std::mt19937 rng(12345);
  int64_t next = 4;
  int killed_mid_write = 0;
  // Under the sanitizers a save is several times slower: half the rounds.
#if defined(KINTSUGI_TEST_ASAN)
  constexpr int kRounds = 15;
#else
  constexpr int kRounds = 30;
#endif
  // A busy host can let every kill of kRounds land between saves: up to four
  // times as many rounds run until one lands mid-write.
  int round = 0;
  for (; round < 4 * kRounds && (round < kRounds || killed_mid_write == 0); ++round) {
    const int64_t first = next;
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child saves states first, first+1, ... until it is killed.
      try {
        for (int64_t k = first;; ++k) save_state(path, make_state(k, kExtra));
      } catch (...) {
      }
      _exit(3);
    }
    std::uniform_real_distribution<double> delay(0.2, 4.0);
    usleep(static_cast<useconds_t>(delay(rng) * per_save_us));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    if (leftover_tmps(path, /*remove=*/true) > 0) ++killed_mid_write;

    // The state is complete and equals one of the states that were saved.
    const RunState s = load_state(path);
    const int64_t k = s.optimizer.ints.at("counter").at(0);
    INFO("round " << round << " loaded state " << k);
    CHECK(k >= first - 1);
    CHECK(same_state(s, make_state(k, kExtra)));
    // .prev is complete too: the state before it, or the same one mid-swap.
    const RunState p = load_state(prev);
    const int64_t kp = p.optimizer.ints.at("counter").at(0);
    CHECK((kp == k || kp == k - 1));
    CHECK(same_state(p, make_state(kp, kExtra)));
    next = k + 2;
    // A new save after the crash works (it overwrites any leftover .tmp).
    save_state(path, make_state(next - 1, kExtra));
  }
  INFO("kills that left a half-written .tmp: " << killed_mid_write << " of " << round);
  CHECK(killed_mid_write > 0);
}

TEST_CASE("state: the h5py example in docs/state.md runs", "[state]") {
  test::require_h5py();
  std::ifstream in(test::source_dir() / "docs" / "state.md");
  REQUIRE(in);
  std::string line, code;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line == "```python") {
      inside = true;
    } else if (inside && line == "```") {
      break;
    } else if (inside) {
      code += line + "\n";
    }
  }
  REQUIRE_FALSE(code.empty());
  test::TempDir tmp;
  save_state(tmp / "kintsugi-state.h5", make_state(7));
  std::ofstream(tmp / "example.py") << code;
  const auto r = test::run_shell("cd " + tmp.path().string() + " && /usr/bin/python3 example.py");
  INFO(r.output);
  CHECK(r.status == 0);
  // make_state(7): the best ok row is the last (x = 704, objective 704/3).
  CHECK_THAT(r.output, Catch::Contains("best objective 234.66666666666"));
}

TEST_CASE("state: a failed save leaves the previous state in place", "[state]") {
  test::TempDir tmp;
  const auto path = tmp / "s.h5";
  save_state(path, make_state(2));
  RunState broken = make_state(3);
  broken.evals.seconds.pop_back();  // columns disagree: the writer refuses midway
  CHECK_THROWS_AS(save_state(path, broken), RuntimeError);
  CHECK(leftover_tmps(path) == 0);
  CHECK(same_state(load_state(path), make_state(2)));
  CHECK_FALSE(fs::exists(prev_path_of(path)));
  // A folder that does not exist: a RuntimeError naming the file.
  CHECK_THROWS_WITH(save_state(tmp / "no" / "s.h5", make_state(1)),
                    Catch::Contains((tmp / "no" / "s.h5").string() +
                                    ": cannot create a temporary file beside it"));
}

TEST_CASE("state: per-example test results round-trip; states without them read as before",
          "[state]") {
  test::TempDir tmp;
  const auto path = tmp / "s.h5";
  RunState s = make_state(4);
  ExampleScores acc;
  acc.value = {1, 0, 1};
  ExampleScores bpb;
  bpb.transform = ExampleScores::Transform::BitsPerByte;
  bpb.value = {3.5, 2.0};
  bpb.weight = {10, 7};
  // Two baseline rows were appended without them: they become NaN rows.
  s.baselines.append("ties", "ties d0.5", std::vector<double>{0.2, 0.3, 0.5},
                     std::vector<double>{0.5, 0.5}, std::vector<double>{0.4, 0.3}, 0.5, 0.35,
                     {acc, bpb});
  s.test.examples.append(0, {acc, bpb});
  save_state(path, s);
  const RunState back = load_state(path);
  CHECK(same_state(back, s));
  const ExampleTable& t = back.baselines.test_examples;
  CHECK(t.counts == std::vector<int64_t>{3, 2});
  CHECK(t.transforms == std::vector<int64_t>{0, 1});
  CHECK(t.columns() == 5);
  CHECK(t.row(0).empty());
  CHECK(t.row(1).empty());
  for (const auto& row : {t.row(2), back.test.examples.row(0)}) {
    REQUIRE(row.size() == 2);
    CHECK(row[0].value == acc.value);
    CHECK(row[0].weight.empty());  // unit weights of a proportion
    CHECK(row[0].transform == ExampleScores::Transform::Mean);
    CHECK(row[1].value == bpb.value);
    CHECK(row[1].weight == bpb.weight);
    CHECK(row[1].transform == ExampleScores::Transform::BitsPerByte);
    CHECK(row[1].score() == Approx(5.5 / std::log(2.0) / 17.0));
  }
  // Another layout in the same table is an error, not a silent misread.
  ExampleScores longer = acc;
  longer.value.push_back(0);
  RunState other = back;
  CHECK_THROWS_AS(other.test.examples.append(1, {longer, bpb}), RuntimeError);
  // A state written before per-example results: none, and nothing breaks.
  save_state(path, make_state(7));
  const RunState old = load_state(path);
  CHECK(old.test.examples.empty());
  CHECK(old.baselines.test_examples.empty());
  CHECK(old.baselines.test_examples.row(0).empty());
}

TEST_CASE("state: with validation scores the returned merge is the best on validation", "[state]") {
  test::TempDir tmp;
  RunState s = make_state(7);  // 5 rows; row 1 failed; the search objective grows with the row
  REQUIRE(best_evaluation(s) == 4);
  REQUIRE(best_on_search(s) == 4);
  s.validation.n_tasks = 2;
  // Rows 4, 3 and 0 scored on validation; row 3 is best there, row 4 on search.
  for (auto [e, v] : {std::pair{4, 0.50}, std::pair{3, 0.75}, std::pair{0, std::nan("")}}) {
    s.validation.eval_index.push_back(e);
    s.validation.scores.insert(s.validation.scores.end(), {v, v});
    s.validation.objective.push_back(v);
  }
  CHECK(best_evaluation(s) == 3);
  CHECK(best_on_search(s) == 4);
  // Recorded in the state: a reader (report, export) makes the same choice.
  save_state(tmp / "s.h5", s);
  const RunState back = load_state(tmp / "s.h5");
  CHECK(back.validation.eval_index == s.validation.eval_index);
  CHECK(best_evaluation(back) == 3);
  // A tie on validation goes to the candidate listed first.
  s.validation.objective[0] = 0.75;
  CHECK(best_evaluation(s) == 4);
  // No finite validation objective: back to the search's best.
  s.validation.objective = {std::nan(""), std::nan(""), std::nan("")};
  CHECK(best_evaluation(s) == 4);
  // States without /validation read with an empty table.
  save_state(tmp / "old.h5", make_state(7));
  CHECK(load_state(tmp / "old.h5").validation.size() == 0);
}

TEST_CASE("state: with search.rescore_top only re-scored evaluations are returned", "[state]") {
  RunState s = make_state(7);  // rows 0 and 2 re-scored, row 4 the best objective
  REQUIRE(best_on_search(s) == 4);
  s.meta.settings.emplace_back("search.rescore_top", "2");
  CHECK(selectable(s, 0));
  CHECK_FALSE(selectable(s, 1));  // failed
  CHECK_FALSE(selectable(s, 3));  // first pass only
  CHECK(best_on_search(s) == 2);
  CHECK(best_evaluation(s) == 2);
  s.evals.status[2] = static_cast<int64_t>(EvalStatus::Failed);
  CHECK(best_on_search(s) == 0);
  // A state without the setting (no re-scoring) ranks every success.
  s.meta.settings.pop_back();
  CHECK(best_on_search(s) == 4);
}

TEST_CASE("state: search.uniform_penalty makes the search's best the fitter one", "[state]") {
  RunState s = make_state(7);  // weights 1 / (x + j + 1), near 0: distance about 0.5
  REQUIRE(best_on_search(s) == 4);
  const size_t w = s.evals.n_weights;
  // Make row 3 one-hot and slightly better on the objective.
  for (size_t j = 0; j < w; ++j) s.evals.weights[3 * w + j] = j % 3 == 0 ? 1.0 : 0.0;
  s.evals.objective[3] = s.evals.objective[4] + 0.01;
  CHECK(best_on_search(s) == 3);
  s.meta.settings.emplace_back("search.uniform_penalty", "0.5");
  CHECK(search_fitness(s, 3) == Approx(s.evals.objective[3] - 0.5));
  CHECK(best_on_search(s) == 4);
  CHECK(best_evaluation(s) == 4);
}
