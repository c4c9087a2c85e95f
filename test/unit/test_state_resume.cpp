// Resume compatibility: a state made for one job refuses another job whose
// pool, tasks or search settings differ, and accepts harmless changes.
#include <catch2/catch.hpp>
#include <fstream>

#include "kintsugi/common/error.hpp"
#include "kintsugi/config/job.hpp"
#include "kintsugi/pool/xxhash64.hpp"
#include "kintsugi/state/run_state.hpp"
#include "test_support.hpp"

using namespace kintsugi;

namespace {

const std::string kJob = R"(pool:
  checkpoints: [a, b, c]
tasks:
  - {name: add, file: "add.{split}.jsonl", max_new_tokens: 8}
  - {name: caps, file: "caps.{split}.jsonl", kind: choice}
search:
  budget: 100
  sigma0: 0.3
  seed: 5
)";

JobConfig job_from(const std::string& text) {
  return parse_job(text, "job.yaml", "/jobs");
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

const std::vector<std::string> kNames = {"a", "b", "c"};
const std::vector<std::string> kPrints = {"fp-a", "fp-b", "fp-c"};

std::string refusal(const RunState& st, const JobConfig& job,
                    const std::vector<std::string>& prints = kPrints,
                    const std::vector<std::string>& names = kNames) {
  try {
    check_resume_compatible("run.h5", st, job, names, prints);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("resume: make_meta records the job", "[state]") {
  const JobConfig job = job_from(kJob);
  const StateMeta m = make_meta(job, kNames, kPrints);
  CHECK(m.config == kJob);
  CHECK(m.config_hash == fnv1a64_hex(kJob));
  CHECK(m.seed == 5);
  CHECK(m.task_names == std::vector<std::string>{"add", "caps"});
  CHECK(m.pool_fingerprints == kPrints);
  CHECK(m.created.size() == 20);
  CHECK(m.created.back() == 'Z');
  // Settings hold exact values; the budget is not among them.
  const auto has = [&](const std::string& k, const std::string& v) {
    for (const auto& [key, val] : m.settings)
      if (key == k) return val == v;
    return false;
  };
  CHECK(has("search.sigma0", "0.3"));
  CHECK(has("search.seed", "5"));
  CHECK(has("tasks.add.max_new_tokens", "8"));
  CHECK(has("tasks.add.stop", "[\"\\n\"]"));
  CHECK(has("tasks.caps.metric", "acc"));
  CHECK(has("parallel.tensor_parallel", "1"));
  for (const auto& [k, v] : m.settings) CHECK(k != "search.budget");
}

TEST_CASE("resume: the same job, or harmless changes, are accepted", "[state]") {
  RunState st;
  st.meta = make_meta(job_from(kJob), kNames, kPrints);
  CHECK(refusal(st, job_from(kJob)) == "");
  // A larger budget, other output paths, comments and a moved pool folder are fine.
  std::string moved = replace(kJob, "budget: 100", "budget: 500");
  moved = replace(moved, "checkpoints: [a, b, c]", "checkpoints: [/new/a, /new/b, /new/c]");
  moved += "output: {state: elsewhere.h5}\n# a comment\n";
  CHECK(refusal(st, job_from(moved), kPrints, {"/new/a", "/new/b", "/new/c"}) == "");
}

TEST_CASE("resume: changed pool, tasks or settings are refused clearly", "[state]") {
  RunState st;
  st.meta = make_meta(job_from(kJob), kNames, kPrints);
  const JobConfig same = job_from(kJob);

  CHECK(refusal(st, same, {"fp-a", "fp-X", "fp-c"}) ==
        "run.h5: cannot resume: pool checkpoint 1 (b) is not the one the state was made with (b): "
        "fingerprint fp-X vs fp-b");
  CHECK(refusal(st, same, {"fp-a", "fp-b"}, {"a", "b"}) ==
        "run.h5: cannot resume: the state was made with a pool of 3 checkpoints, the job's pool "
        "has 2");
  CHECK(refusal(st, job_from(replace(kJob, "name: caps", "name: capitals"))) ==
        "run.h5: cannot resume: the job's tasks [\"add\", \"capitals\"] differ from the state's "
        "[\"add\", \"caps\"]");
  CHECK(refusal(st, job_from(replace(kJob, "sigma0: 0.3", "sigma0: 0.5"))) ==
        "run.h5: cannot resume: search.sigma0 is 0.5 in the job but 0.3 in the state");
  CHECK(refusal(st, job_from(replace(kJob, "seed: 5", "seed: 6"))) ==
        "run.h5: cannot resume: search.seed is 6 in the job but 5 in the state");
  CHECK(refusal(st, job_from(kJob + "parallel: {tensor_parallel: 2}\n")) ==
        "run.h5: cannot resume: parallel.tensor_parallel is 2 in the job but 1 in the state");
  CHECK(refusal(st, job_from(replace(kJob, "max_new_tokens: 8", "max_new_tokens: 9"))) ==
        "run.h5: cannot resume: tasks.add.max_new_tokens is 9 in the job but 8 in the state");
  CHECK(refusal(st, job_from(kJob + "objective: {kind: weighted, weights: {add: 2}}\n")) ==
        "run.h5: cannot resume: objective.kind is weighted in the job but mean in the state");
  // A setting only the state has (here: written by a newer job) is refused too.
  RunState extra = st;
  extra.meta.settings.emplace_back("search.future_knob", "1");
  CHECK(refusal(extra, same) ==
        "run.h5: cannot resume: search.future_knob is 1 in the state but not set in the job");
  // A near-equal float is still a different setting (values are exact).
  CHECK(refusal(st, job_from(replace(kJob, "sigma0: 0.3", "sigma0: 0.30000000000000004"))) ==
        "run.h5: cannot resume: search.sigma0 is 0.30000000000000004 in the job but 0.3 in the "
        "state");
}

TEST_CASE("resume: changed task data is refused; states without task data are accepted",
          "[state]") {
  test::TempDir tmp;
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(tmp / name, std::ios::binary) << text;
  };
  write("add.search.jsonl", "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n");
  write("add.test.jsonl", "{\"prompt\": \"2+2=\", \"answer\": \"4\"}\n");
  write("caps.search.jsonl", "{\"prompt\": \"a\", \"choices\": [\"A\", \"b\"], \"answer\": 0}\n");
  const JobConfig job = parse_job(kJob, (tmp / "job.yaml").string(), tmp.path());
  const auto data = task_data_fingerprints(job);
  // One entry per existing file: add's two splits, caps's search split only.
  REQUIRE(data.size() == 3);
  CHECK(data[0].first == "data.tasks.add.search");
  CHECK(data[1].first == "data.tasks.add.test");
  CHECK(data[2].first == "data.tasks.caps.search");
  // XXH64 of the bytes (independent reference: the xxhsum of the text above,
  // computed by the pool module's xxh64 over the whole buffer).
  const std::string add = "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n";
  CHECK(data[0].second ==
        fmt::format("xxh64:{:016x} {} bytes", xxh64(add.data(), add.size()), add.size()));

  RunState st;
  st.meta = make_meta(job, kNames, kPrints);
  for (const auto& kv : data) st.meta.settings.push_back(kv);
  auto why = [&](const std::vector<std::pair<std::string, std::string>>& now) -> std::string {
    try {
      check_resume_compatible("run.h5", st, job, kNames, kPrints, now);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  CHECK(why(data).empty());
  // One byte changed in the search split of add (same size).
  write("add.search.jsonl", "{\"prompt\": \"1+1=\", \"answer\": \"3\"}\n");
  const auto changed = task_data_fingerprints(job);
  CHECK(changed[0].second != data[0].second);
  CHECK(why(changed).rfind("run.h5: cannot resume: task file " +
                               (tmp / "add.search.jsonl").string() + " changed since the state",
                           0) == 0);
  // A test split that appeared, or went away.
  write("caps.test.jsonl", "{}\n");
  write("add.search.jsonl", add);
  const auto more = task_data_fingerprints(job);
  CHECK(more.size() == 4);
  CHECK(why(more).find("caps.test.jsonl (data.tasks.caps.test) was not there") !=
        std::string::npos);
  CHECK(why({data[0], data[2]}).find("no longer has") != std::string::npos);
  // A state written before task data fingerprints: accepted (nothing to compare).
  RunState old;
  old.meta = make_meta(job, kNames, kPrints);
  CHECK_NOTHROW(check_resume_compatible("run.h5", old, job, kNames, kPrints, changed));
  // Task data keys are not settings a job must have (an old job's text resumes).
  CHECK_NOTHROW(check_resume_compatible("run.h5", st, job, kNames, kPrints, data));
}
