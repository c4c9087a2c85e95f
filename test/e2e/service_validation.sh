#!/usr/bin/env bash
# Issue #20, selection on a validation split: with validation files beside the
# search and test ones, optimize scores the best candidates on search (and
# the Pareto set) on validation and returns the best there; the state records
# it (/validation), report and export follow it, and a run stopped before the
# validation scoring was saved resumes to the same state as an uninterrupted
# one. Checked with h5py against the state's own numbers.
source "$(dirname "$0")/service_lib.sh"
mkdir -p "$work/tasks"
# Task files: search and test as the demo's; validation = the last 30 test
# examples in reverse order (make_job keeps the first 30 of each file, so
# validation and test share no example).
for t in add rev bal; do
  for s in search test; do
    cp "$KINTSUGI_SOURCE_DIR/examples/demo/tasks/$t.$s.jsonl" "$work/tasks/"
  done
  # (tail before tac: `tac | head` would die of SIGPIPE under pipefail)
  tail -n 30 "$KINTSUGI_SOURCE_DIR/examples/demo/tasks/$t.test.jsonl" | tac >"$work/tasks/$t.validation.jsonl"
done
make_job "$work/job.yaml" budget=18
/usr/bin/python3 - "$work/job.yaml" "$work/tasks" <<'PY'
import json, os, sys
job = json.load(open(sys.argv[1]))
for t in job["tasks"]:
    t["file"] = os.path.join(sys.argv[2], os.path.basename(t["file"]))
json.dump(job, open(sys.argv[1], "w"), indent=1)
PY
# The references first: every checkpoint and recipe is scored on validation too.
mpi 2 "$KINTSUGI" baselines "$work/job.yaml" --state "$work/s.h5" 2>"$work/log" ||
  { cat "$work/log" >&2; fail "baselines with a validation split"; }
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/s.h5" --validation-top 4 \
  2>>"$work/log" || { cat "$work/log" >&2; fail "optimize with a validation split"; }
# The same references, scored by `kintsugi eval` on its own (one checkpoint,
# and uniform soup as an in-memory merge of the pool).
ckpt0=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pool"]["checkpoints"][0])' "$work/job.yaml")
"$KINTSUGI" -q eval "$work/job.yaml" --checkpoint "$ckpt0" --split validation --json >"$work/ckpt0.json"
"$KINTSUGI" -q eval "$work/job.yaml" --weights 0.25,0.25,0.25,0.25 --split validation --json >"$work/soup.json"
grep -q "validation: evaluation" "$work/log" || { cat "$work/log" >&2; fail "no validation line in the log"; }
"$KINTSUGI" report "$work/s.h5" --json >"$work/report.json"
"$KINTSUGI" report "$work/s.h5" >"$work/report.txt"
grep -q "selection: on the validation split" "$work/report.txt" ||
  { cat "$work/report.txt" >&2; fail "the report does not say the merge was chosen on validation"; }
mpi 2 "$KINTSUGI" export "$work/s.h5" --out "$work/best" --dtype float32 2>>"$work/log" ||
  { cat "$work/log" >&2; fail "export"; }
/usr/bin/python3 - "$work" <<'PY'
import json, sys
import h5py, numpy as np
w = sys.argv[1]
st = h5py.File(f"{w}/s.h5", "r")
ev = st["evals"]
obj, status = ev["objective"][()], ev["status"][()]
ok = [e for e in range(len(obj)) if status[e] == 0]
# The candidates: the 4 best on search (earlier first on ties), then the Pareto set.
top = sorted(ok, key=lambda e: (-obj[e], e))[:4]
cand = top + [int(e) for e in st["pareto/indices"][()] if int(e) not in top]
val = st["validation"]
assert val["eval_index"][()].tolist() == cand, (val["eval_index"][()].tolist(), cand)
vobj = val["objective"][()].tolist()
chosen = cand[max(range(len(cand)), key=lambda i: (vobj[i], -i))]
rep = json.load(open(f"{w}/report.json"))
sel = rep["selection"]
assert sel["split"] == "validation" and not sel["in_sample"], sel
assert sel["chosen"] == chosen == rep["best"]["evaluation"], (sel, chosen)
assert sel["best_on_search"] == top[0], (sel, top)
assert rep["best"]["objective"]["validation"] == max(vobj), rep["best"]["objective"]
# Test scores were given to the chosen merge, which is what export wrote.
assert chosen in st["test/eval_index"][()].tolist()
recipe = open(f"{w}/best/kintsugi_recipe.yaml").read()
assert f"evaluation {chosen}" in recipe.splitlines()[0], recipe.splitlines()[0]
# Every reference has validation scores, equal to kintsugi eval's own.
b = st["baselines"]
names = b["names"].asstr()[()].tolist()
vs = b["validation_scores"][()]
assert np.isfinite(vs).all(), vs
tasks = st["meta/task_names"].asstr()[()].tolist()
def eval_scores(path):
    r = json.loads(open(path).read().strip().splitlines()[-1])["results"][0]["tasks"]
    return [r[t]["acc" if t == "bal" else "exact_match"] for t in tasks]
assert vs[0].tolist() == eval_scores(f"{w}/ckpt0.json"), (vs[0], eval_scores(f"{w}/ckpt0.json"))
u = names.index("uniform_soup")
assert vs[u].tolist() == eval_scores(f"{w}/soup.json"), (vs[u], eval_scores(f"{w}/soup.json"))
assert len(names) > 6 and all(x["scores"]["add"]["validation"] is not None
                              for x in rep["checkpoints"] + rep["baselines"])
print(f"validation: {len(cand)} candidates, chose evaluation {chosen} "
      f"(best on search: {top[0]})")
PY

# A run stopped before its validation scoring was saved (a stop abandons the
# round and records nothing) resumes to the uninterrupted run's state.
/usr/bin/python3 - "$work/s.h5" "$work/cut.h5" <<'PY'
import shutil, sys
import h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
f = h5py.File(sys.argv[2], "r+")
del f["validation"]
k = f["test/scores"].shape[1]
del f["test"]
g = f.create_group("test")
g.create_dataset("eval_index", data=np.zeros(0, dtype=np.int64))
g.create_dataset("scores", data=np.zeros((0, k)))
g.create_dataset("objective", data=np.zeros(0))
PY
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/cut.h5" --resume --validation-top 4 \
  2>>"$work/log" || { cat "$work/log" >&2; fail "--resume before the validation scoring"; }
/usr/bin/python3 - "$work/s.h5" "$work/cut.h5" <<'PY'
import sys
import h5py
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
for g in ("validation", "test"):
    for k in a[g]:
        x, y = a[g][k][()], b[g][k][()]
        assert x.shape == y.shape and x.tobytes() == y.tobytes(), (g, k)
assert a["evals/objective"][()].tobytes() == b["evals/objective"][()].tobytes()
print("resumed before validation: /validation and /test equal the uninterrupted run's")
PY
echo "service_validation: ok"
