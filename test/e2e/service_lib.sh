# Shared by the service's end-to-end tests (sourced). Needs KINTSUGI,
# KINTSUGI_SOURCE_DIR and MPIEXEC from ctest (test/CMakeLists.txt).
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
MPIEXEC=${MPIEXEC:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d /tmp/kintsugi-e2e.XXXXXX)
# Open MPI's shared-memory segments of this test's jobs: ranks killed on
# purpose never remove theirs, which would pile up in /dev/shm (4 MiB each).
shm=$(mktemp -d /dev/shm/kintsugi-e2e.XXXXXX)
export OMPI_MCA_btl_vader_backing_directory=$shm
trap 'rm -rf "$work" "$shm"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
mpi() { local np=$1; shift; "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np "$np" "$@"; }

# make_job OUT.yaml [KEY=VALUE ...]: a small job on the demo pool: its first
# four checkpoints, three task families with 30 examples each, budget 20.
# Their search and test files are copied beside OUT without the demo's
# validation split, so the search selects in-sample (service_validation adds
# one of its own); with KINTSUGI_DEMO_IN_PLACE=1 (a private copy of the demo
# that has none, reliability_lib.sh) the job names the demo's own files.
# With 12 examples 49 of 60 candidates tie on this pool (two distinct scores
# in all), so the search would mostly widen its step on flat generations
# instead of exercising ranked updates.
# KEY=VALUE pairs override search settings (e.g. seed=9).
make_job() {
  local out=$1; shift
  /usr/bin/python3 - "$KINTSUGI_SOURCE_DIR/examples/demo/job.yaml" "$out" "$@" <<'PY'
import json, os, shutil, sys, yaml
src, out, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
demo = yaml.safe_load(open(src))
root = os.path.dirname(os.path.abspath(src))
absp = lambda p: os.path.join(root, p)
files = os.path.join(os.path.dirname(os.path.abspath(out)), "demo-tasks")
if not os.environ.get("KINTSUGI_DEMO_IN_PLACE"):
    os.makedirs(files, exist_ok=True)
tasks = []
for t in demo["tasks"]:
    if t["name"] not in ("add", "rev", "bal"):
        continue
    if os.environ.get("KINTSUGI_DEMO_IN_PLACE"):
        t = dict(t, file=absp(t["file"]), limit=30)
        tasks.append(t)
        continue
    for split in ("search", "test"):
        shutil.copyfile(absp(t["file"]).replace("{split}", split),
                        os.path.join(files, os.path.basename(t["file"]).replace("{split}", split)))
    t = dict(t, file=os.path.join(files, os.path.basename(t["file"])), limit=30)
    tasks.append(t)
search = {"method": "cmaes", "parameterization": "simplex", "budget": 20, "population": 6,
          "sigma0": 0.5, "seed": 7}
for kv in overrides:
    k, v = kv.split("=", 1)
    search[k] = yaml.safe_load(v)
job = {"pool": {"base": absp(demo["pool"]["base"]),
                "checkpoints": [absp(c) for c in demo["pool"]["checkpoints"][:4]]},
       "tasks": tasks, "search": search, "objective": {"kind": "mean"},
       "parallel": {"tensor_parallel": 1}, "output": {"state": "state.h5"}}
json.dump(job, open(out, "w"), indent=1)  # JSON is YAML, and keeps "\n" exact
PY
}

# failing_job BASE.yaml OUT.yaml: BASE's pool with one perplexity task (bits
# per byte, lower is better; $work/ppl.{search,test}.jsonl) and a free
# search whose steps are so large (sigma0 1e300) that candidates fail: their
# forward pass overflows and bits per byte is not finite.
failing_job() {
  for split in search test; do
    for i in 1 2 3 4 5 6; do echo "{\"text\": \"the quick brown fox $i jumps over the lazy dog\"}"; done \
      >"$work/ppl.$split.jsonl"
  done
  /usr/bin/python3 - "$1" "$2" "$work" <<'PY'
import json, sys
base, out, w = sys.argv[1:4]
job = json.load(open(base))
job["tasks"] = [{"name": "ppl", "file": w + "/ppl.{split}.jsonl", "kind": "perplexity",
                 "metric": "bits_per_byte"}]
job["search"] = {"method": "cmaes", "parameterization": "free", "budget": 12, "population": 6,
                 "sigma0": 1e300, "seed": 3}
json.dump(job, open(out, "w"))
PY
}

# same_evals A.h5 B.h5: the evaluation arrays of two states are identical
# (every column but the wall-clock seconds), bit for bit.
same_evals() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
for k in ("z", "weights", "scores", "objective", "status", "generation"):
    x, y = a["evals"][k][()], b["evals"][k][()]
    if x.shape != y.shape or x.tobytes() != y.tobytes():
        # What a flaky difference needs to be understood: the first row that
        # differs, and each run's status and errors.
        rows = [i for i in range(min(len(x), len(y))) if x[i].tobytes() != y[i].tobytes()]
        err = lambda f: [e.decode()[:200] for e in f["evals"]["error"][()] if e]
        sys.exit(f"/evals/{k} differs: {x.shape} vs {y.shape}, first at row "
                 f"{rows[:1]}; status {a['evals']['status'][()].tolist()} vs "
                 f"{b['evals']['status'][()].tolist()}; errors {err(a)} vs {err(b)}")
print(f"{a['evals']['objective'].shape[0]} evaluations identical")
PY
}

# evals_count STATE: rows in /evals (0 when the state has none).
evals_count() {
  local line
  line=$(h5ls "$1/evals/objective" 2>/dev/null || true)
  [[ $line =~ \{([0-9]+) ]] && echo "${BASH_REMATCH[1]}" || echo 0
}

# command_job BUILTIN.yaml OUT.yaml RESULTS SCRATCH KEEP TIMEOUT -- ARGV...:
# the builtin job's pool and search with the command evaluator.
command_job() {
  local builtin=$1 out=$2 results=$3 scratch=$4 keep=$5 timeout=$6
  shift 7
  /usr/bin/python3 - "$builtin" "$out" "$results" "$scratch" "$keep" "$timeout" "$@" <<'PY'
import json, sys
builtin, out, results, scratch, keep, timeout, *argv = sys.argv[1:]
job = json.load(open(builtin))
suffix = {"kintsugi": "", "json": "", "lm_eval": ",none"}[results]
job["tasks"] = [{"name": t["name"], "task": t["name"],
                 "metric": t.get("metric", {"choice": "acc"}.get(t.get("kind"), "exact_match")) + suffix}
                for t in job["tasks"]]
job["evaluator"] = {"kind": "command", "command": argv, "results": results, "dtype": "float32",
                    "scratch": scratch, "keep": keep, "timeout_s": float(timeout)}
json.dump(job, open(out, "w"), indent=1)
PY
}

# command_setup: for the command evaluator's tests, kintsugi_eval (the scorer
# command `kintsugi eval` on $work/builtin.yaml), an empty $scratch, and
# scratch_empty WHAT, which fails when anything is left in it.
command_setup() {
  kintsugi_eval=("$KINTSUGI" -q eval "$work/builtin.yaml" --checkpoint "{model}" --split "{split}" --json)
  scratch="$work/scratch"
  mkdir -p "$scratch"
}
scratch_empty() {
  [[ -z "$(ls -A "$scratch")" ]] || { ls -lR "$scratch" >&2; fail "$1: scratch not empty"; }
}

# kill_group PID: SIGKILL the session PID leads (a setsid launcher and its
# ranks) and return once no member is left. Not the process group: Open MPI's
# mpirun starts each rank in a process group of its own (same session), so a
# signal to the launcher's group left the ranks running, holding the state's
# lock when the next run started (service_resume failed so, 2 times in 15).
kill_group() {
  pkill -KILL -s "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for _ in $(seq 200); do
    pgrep -s "$1" >/dev/null || return 0
    pkill -KILL -s "$1" 2>/dev/null || true
    sleep 0.05
  done
  fail "session $1 still has processes 10 s after SIGKILL"
}

# stop_and_check PID LOG WHAT: SIGUSR1 to PID, which must exit 3 (state saved).
stop_and_check() {
  local rc=0
  kill -USR1 "$1"
  wait "$1" || rc=$?
  [[ $rc == 3 ]] || { cat "$2" >&2; fail "$3: SIGUSR1 should exit 3, got $rc"; }
}
