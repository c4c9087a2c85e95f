#!/usr/bin/env bash
# search.rescore_top: each generation is scored on search.first_pass examples
# per task, then its fittest candidates on the whole search split. Checked
# against what a user can run alone: the re-scored evaluations' scores equal
# `kintsugi eval` of their exported merge on the job, the others' equal it
# with `limit` = first_pass; the re-scored ones are their generation's
# fittest on the first pass; only they are returned; a stopped and resumed
# search equals an uninterrupted one.
source "$(dirname "$0")/service_lib.sh"
cd "$work"
make_job job.yaml budget=36 population=6 rescore_top=2 first_pass=10
# The first pass's tasks (limit 10 of the job's 30), for `kintsugi eval`.
/usr/bin/python3 - job.yaml <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))
assert all(t["limit"] == 30 for t in job["tasks"])
for t in job["tasks"]:
    t["limit"] = 10
del job["search"]["rescore_top"], job["search"]["first_pass"]
json.dump(job, open("first.yaml", "w"), indent=1)
PY

mpi 2 "$KINTSUGI" optimize job.yaml --state whole.h5 2>whole.log ||
  { cat whole.log >&2; fail "optimize with rescore_top"; }
grep -q "search.rescore_top 2: first pass on 30 search examples, re-scoring on 90" whole.log ||
  { cat whole.log >&2; fail "no line saying what is re-scored"; }

# The state: per generation, the 2 fittest on the first pass were re-scored.
/usr/bin/python3 - whole.h5 >rescored.txt <<'PY'
import math, sys, h5py
e = h5py.File(sys.argv[1], "r")["evals"]
gen, obj, fp = e["generation"][()], e["objective"][()], e["first_pass_objective"][()]
ok = e["status"][()] == 0
assert len(obj) == 36 and ok.all(), (len(obj), ok)
re = [i for i in range(len(obj)) if math.isfinite(fp[i])]
for g in sorted(set(gen.tolist())):
    rows = [i for i in range(len(obj)) if gen[i] == g]
    mine = [i for i in rows if i in re]
    rest = [i for i in rows if i not in re]
    assert len(mine) == 2, (g, mine)
    # The objective of a candidate not re-scored is its first-pass one.
    assert min(fp[i] for i in mine) >= max(obj[i] for i in rest), (g, fp[mine], obj[rest])
# Most re-scorings change the objective (90 examples instead of 30).
assert sum(obj[i] != fp[i] for i in re) >= len(re) // 2, [(obj[i], fp[i]) for i in re]
# The Pareto front compares scores on the same examples: re-scored ones only.
front = h5py.File(sys.argv[1], "r")["pareto/indices"][()].tolist()
assert front and set(front) <= set(re), (front, re)
print(" ".join(map(str, re)))
print(max(range(len(obj)), key=lambda i: obj[i]))
PY
read -r -a rescored < <(sed -n 1p rescored.txt)
(( ${#rescored[@]} == 12 )) || fail "expected 12 re-scored evaluations, got ${rescored[*]}"

# Independent scores: export each evaluation (a file merge) and run eval on it.
check_eval() {  # INDEX JOB
  local dir="exp$1"
  rm -rf "$dir"
  "$KINTSUGI" -q export whole.h5 --eval "$1" --out "$dir" >/dev/null
  "$KINTSUGI" -q eval "$2" --checkpoint "$dir" --json | tail -n 1 >"eval$1.json"
  /usr/bin/python3 - whole.h5 "$1" "eval$1.json" <<'PY' || fail "evaluation $1: scores differ from kintsugi eval"
import json, sys, h5py
f = h5py.File(sys.argv[1], "r")
e, got = int(sys.argv[2]), json.load(open(sys.argv[3]))["results"][0]["tasks"]
names = f["meta/task_names"].asstr()[()].tolist()
want = f["evals/scores"][e].tolist()
# add, rev: exact_match; bal: acc (the job's primary metrics)
have = [got[n]["exact_match" if "exact_match" in got[n] else "acc"] for n in names]
assert want == have, (e, want, have)
PY
}
for i in "${rescored[@]:0:2}"; do check_eval "$i" job.yaml; done
for i in 0 1 2 3 4 5; do
  [[ " ${rescored[*]} " == *" $i "* ]] || { check_eval "$i" first.yaml; break; }
done

# The report: only a re-scored evaluation is returned, and it says so.
"$KINTSUGI" -q report whole.h5 --json >report.json
"$KINTSUGI" -q report whole.h5 >report.txt
/usr/bin/python3 - report.json "${rescored[@]}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
re = [int(x) for x in sys.argv[2:]]
rs = r["selection"]["rescoring"]
assert rs["top"] == 2 and rs["evaluations"] == 12, rs
assert r["best"]["evaluation"] in re, (r["best"]["evaluation"], re)
fp = [ev["first_pass_objective"] for ev in r["evaluations"]]
assert [i for i, v in enumerate(fp) if v is not None] == re, fp
PY
grep -q "^re-scoring: the 2 fittest of each generation" report.txt || { cat report.txt >&2; fail "report text"; }

# Stopped by SIGUSR1 (after the first of six generations: the signal must
# arrive before the last one ends) and resumed: the same evaluations.
setsid "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np 2 \
  "$KINTSUGI" optimize job.yaml --state usr1.h5 2>usr1.log &
pid=$!
for _ in $(seq 300); do
  [[ -f usr1.h5 ]] && (( $(evals_count usr1.h5) >= 6 )) && break
  sleep 0.05
done
stop_and_check "$pid" usr1.log "mid-search"
mpi 2 "$KINTSUGI" optimize job.yaml --state usr1.h5 --resume 2>>usr1.log ||
  { cat usr1.log >&2; fail "resume"; }
same_evals whole.h5 usr1.h5
/usr/bin/python3 -c "
import sys, h5py
a, b = (h5py.File(p, 'r')['evals/first_pass_objective'][()] for p in ('whole.h5', 'usr1.h5'))
sys.exit(0 if a.tobytes() == b.tobytes() else 'first_pass_objective differs after resume')"

# One group (np 1) gives the same bytes.
mpi 1 "$KINTSUGI" optimize job.yaml --state one.h5 2>one.log || { cat one.log >&2; fail "np 1"; }
same_evals whole.h5 one.h5
echo "PASS"
