#!/usr/bin/env bash
# baselines -> optimize -> export -> report like a user. The exported fp32
# checkpoint, scored by `kintsugi eval`, reproduces the scores the search
# recorded for that evaluation (the merge engine and the in-memory merge agree).
# The report's standard errors and held-out comparisons (issue #20) are
# recomputed from the per-example results in the state (h5py) with
# tools/paired_bootstrap.py, an independent implementation.
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
/usr/bin/python3 - "$work" "$KINTSUGI_SOURCE_DIR" <<'PY'
import json, math, sys
import h5py
w, src = sys.argv[1], sys.argv[2]
sys.path.insert(0, f"{src}/tools")
import paired_bootstrap as pb
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
        assert set(s) == {"search", "test", "test_stderr"}, s
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
head = rows[0].split(",")
assert head[-6:] == ["generation", "status", "seconds", "merge_seconds", "score_seconds", "value"], head
tasks = head[4:-6]
ref = [min(c["scores"][t]["search"] for c in rep["checkpoints"]) for t in tasks]
assert rep["hypervolume_reference"] == ref, (rep["hypervolume_reference"], ref)
flat = [t for t, r in zip(tasks, ref) if all(p["scores"][t]["search"] <= r for p in rep["pareto"])]
assert rep["hypervolume_flat_tasks"] == flat, (rep["hypervolume_flat_tasks"], flat)
assert not flat or rep["hypervolume"] == 0, rep["hypervolume"]
line = [l for l in open(f"{w}/report.txt").read().splitlines() if l.startswith("Pareto front")][0]
assert ("no front member beats it on " + ", ".join(flat)) in line if flat else "beats it" not in line, line
# Per-example test results: each test score and its standard error follow
# from them (binomial for these proportions).
st = h5py.File(f"{w}/s.h5", "r")
counts = st["baselines/test_example_counts"][()].tolist()
assert counts == [30, 30, 30], counts
assert st["test/example_counts"][()].tolist() == counts
def rows_of(values, weights, r):
    out, at = [], 0
    for n in counts:
        out.append({"transform": "mean", "value": values[r][at:at + n].tolist()})
        at += n
    return out
names = [n.decode() for n in st["baselines/names"][()]]
base = {n: rows_of(st["baselines/test_example_values"], st["baselines/test_example_weights"], i)
        for i, n in enumerate(names)}
ti = st["test/eval_index"][()].tolist().index(best["evaluation"])
merged = rows_of(st["test/example_values"], st["test/example_weights"], ti)
order = ["add", "rev", "bal"]
for e in rep["checkpoints"] + rep["baselines"]:
    for k, t in enumerate(order):
        v = base[e["name"]][k]["value"]
        p = sum(v) / len(v)
        assert abs(p - e["scores"][t]["test"]) < 1e-12, (e["name"], t)
        assert abs(math.sqrt(p * (1 - p) / len(v)) - e["scores"][t]["test_stderr"]) < 1e-12
# The comparisons: against the best checkpoint and recipe on search and
# uniform soup; the first one recomputed in full by the reference.
comp = rep["comparisons"]
assert [c["role"] for c in comp] == ["best_checkpoint", "best_recipe", "uniform_soup"], comp
best_ckpt = max(rep["checkpoints"], key=lambda c: c["objective"]["search"])["name"]
assert comp[0]["reference"] == best_ckpt and comp[2]["reference"] == "uniform_soup", comp
for c in comp:
    for i in [c["objective"]] + [c["tasks"][t] for t in order]:
        assert i["low"] <= i["difference"] <= i["high"], i
        assert i["significant"] == (i["low"] > 0 or i["high"] < 0), i
        assert i["unit"] == "points", i
c = comp[0]
ref = base[c["reference"]]
for k, t in enumerate(order):
    d, lo, hi = pb.paired([merged[k]], [ref[k]], [1.0], [True], 2000, 0)
    got = c["tasks"][t]
    assert all(abs(100 * x - y) < 1e-9 for x, y in
               zip((d, lo, hi), (got["difference"], got["low"], got["high"]))), (t, d, lo, hi, got)
d, lo, hi = pb.paired(merged, ref, [1.0] * 3, [True] * 3, 2000, 0)
got = c["objective"]
assert all(abs(100 * x - y) < 1e-9 for x, y in
           zip((d, lo, hi), (got["difference"], got["low"], got["high"]))), (d, lo, hi, got)
assert rep["selection"] == {"split": "search", "in_sample": True, "rescoring": None}, rep["selection"]
text = open(f"{w}/report.txt").read()
assert "selection: in-sample" in text and "held-out comparisons (test split" in text, text
assert f"vs the best checkpoint on search ({best_ckpt})" in text, text
print("export reproduces the search's scores:", best["scores"], "; hypervolume", rep["hypervolume"], "flat on", flat)
PY
