#!/usr/bin/env bash
# baselines -> optimize -> export -> report like a user. The exported fp32
# checkpoint, scored by `kintsugi eval`, reproduces the scores the search
# recorded for that evaluation (the merge engine and the in-memory merge agree).
source "$(dirname "$0")/service_lib.sh"
make_job "$work/job.yaml" budget=12
mpi 2 "$KINTSUGI" baselines "$work/job.yaml" --state "$work/s.h5" 2>"$work/log" ||
  { cat "$work/log" >&2; fail "baselines"; }
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/s.h5" 2>>"$work/log" ||
  { cat "$work/log" >&2; fail "optimize"; }
mpi 2 "$KINTSUGI" export "$work/s.h5" --out "$work/best" --dtype float32 2>>"$work/log" ||
  { cat "$work/log" >&2; fail "export"; }
"$KINTSUGI" inspect "$work/best" --json >"$work/inspect.json"
"$KINTSUGI" eval "$work/job.yaml" --checkpoint "$work/best" --json >"$work/eval.out" 2>>"$work/log"
"$KINTSUGI" report "$work/s.h5" --json >"$work/report.json"
"$KINTSUGI" report "$work/s.h5" >"$work/report.txt"
"$KINTSUGI" report "$work/s.h5" --csv >"$work/report.csv"
/usr/bin/python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
rep = json.load(open(f"{w}/report.json"))
for key in ("checkpoints", "baselines", "best", "pareto", "hypervolume"):
    assert key in rep, key
names = [b["name"] for b in rep["baselines"]]
for n in ("uniform_soup", "greedy_soup", "task_arithmetic_l0.3", "ties_d0.5_l1", "dare_ties_d0.5_l1"):
    assert n in names, (n, names)
assert len(rep["checkpoints"]) == 4
best = rep["best"]
for e in rep["checkpoints"] + rep["baselines"] + [best]:
    assert set(e) >= {"name", "weights", "scores", "objective"}, e.keys()
    for t, s in e["scores"].items():
        assert set(s) == {"search", "test"}
ev = json.loads(open(f"{w}/eval.out").read().strip().splitlines()[-1])["results"][0]["tasks"]
for task, s in best["scores"].items():
    metric = "acc" if task == "bal" else "exact_match"
    got = ev[task][metric]
    assert got == s["search"], (task, got, s["search"])
insp = json.load(open(f"{w}/inspect.json"))
assert all(t["dtype"] == "F32" for t in insp["tensors"])
assert "optimized" in open(f"{w}/report.txt").read()
rows = open(f"{w}/report.csv").read().splitlines()
assert rows[0].startswith("kind,name,split,objective,add,rev,bal"), rows[0]
# hypervolume_flat_tasks, recomputed from the front and the worst checkpoint
# score per task (every task here is higher-is-better; the reference is in the
# CSV header's task order).
tasks = rows[0].split(",")[4:]
ref = [min(c["scores"][t]["search"] for c in rep["checkpoints"]) for t in tasks]
assert rep["hypervolume_reference"] == ref, (rep["hypervolume_reference"], ref)
flat = [t for t, r in zip(tasks, ref) if all(p["scores"][t]["search"] <= r for p in rep["pareto"])]
assert rep["hypervolume_flat_tasks"] == flat, (rep["hypervolume_flat_tasks"], flat)
assert not flat or rep["hypervolume"] == 0, rep["hypervolume"]
line = [l for l in open(f"{w}/report.txt").read().splitlines() if l.startswith("Pareto front")][0]
assert ("no front member beats it on " + ", ".join(flat)) in line if flat else "beats it" not in line, line
print("export reproduces the search's scores:", best["scores"], "; hypervolume", rep["hypervolume"], "flat on", flat)
PY
