#!/usr/bin/env bash
# Issue #18, `kintsugi report STATE --html OUT.html` and `optimize --html`:
# each page opens in headless Chromium (Debian's, driven by puppeteer-core:
# tools/report-web/check_report.js) from a file:// URL with every network
# request blocked; no console errors; every plot renders a non-empty SVG. The
# numbers drawn are the state's: the page's embedded data and the rendered
# marks are read back and compared with h5py reads of the state (one point
# per evaluation, one bar per checkpoint weight, the front equal to an
# independent non-dominated filter). States: a 3-task search written with
# --html while it ran; pages written by a reader looping while optimize
# writes the state; a layer_group search; one task with failed candidates;
# two tasks (a scatter, not a matrix). Bad input: exit 2, one line, nothing
# written.
source "$(dirname "$0")/service_lib.sh"
web=$KINTSUGI_SOURCE_DIR/tools/report-web
[[ -x /usr/bin/chromium ]] || fail "/usr/bin/chromium is missing (scripts/install-deps.sh)"
[[ -d $web/node_modules/puppeteer-core ]] || fail "$web/node_modules is missing (scripts/install-deps.sh)"

# check PAGE NAME: queues the page for the browser; render_all checks every
# queued page in one Chromium (its start is most of a check's time): each
# renders cleanly, and its result JSON is $work/NAME.json.
queued=() queued_names=()
check() {
  queued+=("$1" --screenshot "$work/$2.png" --out "$work/$2.json")
  queued_names+=("$2")
}
render_all() {
  node "$web/check_report.js" "${queued[@]}" 2>"$work/render.log" ||
    { cat "$work/render.log" >&2; fail "a page did not render cleanly (above: page: problem)"; }
  local name
  for name in "${queued_names[@]}"; do
    [[ -s $work/$name.png ]] || fail "$name: no screenshot"
    # The 3-task page's screenshot stays in the build folder, for the docs.
    if [[ $name == three && -n ${KINTSUGI_BUILD_DIR:-} ]]; then
      cp "$work/$name.png" "$KINTSUGI_BUILD_DIR/report_html.png"
    fi
    echo "$name: rendered, no console errors, no network requests"
  done
}

# same_numbers STATE RESULT.json: the drawn data are the state's.
same_numbers() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, math, sys
import h5py, numpy as np
st, res = h5py.File(sys.argv[1], "r"), json.load(open(sys.argv[2]))
d = res["data"]
ev = st["evals"]
obj, status, scores = ev["objective"][()], ev["status"][()], ev["scores"][()]
tasks = [t.decode() if isinstance(t, bytes) else t for t in st["meta"]["task_names"][()]]
E, K = len(obj), len(tasks)
# One point per evaluation, with the state's values.
assert len(d["evaluations"]) == E, (len(d["evaluations"]), E)
assert res["marks"]["evaluations"] == E, (res["marks"], E)
for e, row in enumerate(d["evaluations"]):
    assert row["index"] == e and row["ok"] == (status[e] == 0)
    if status[e] == 0:
        assert row["objective"] == obj[e], (e, row["objective"], obj[e])
        for k, t in enumerate(tasks):
            assert row["scores"][t] == scores[e, k] or (math.isnan(scores[e, k]) and row["scores"][t] is None)
# The front: an independent non-dominated filter over the successful
# evaluations (scores oriented so that higher is better).
# Each task's direction from its metric, as the job (kept in the state) names it.
settings = dict(zip(st["meta"]["settings_keys"].asstr()[()], st["meta"]["settings_values"].asstr()[()]))
lower = {"bits_per_byte", "perplexity", "word_perplexity", "byte_perplexity"}
sign = np.array([-1.0 if settings.get(f"tasks.{t}.metric") in lower else 1.0 for t in tasks])
ok = [e for e in range(E) if status[e] == 0]
pts = {e: scores[e] * sign for e in ok}
front = sorted(e for e in ok if not any(np.all(pts[f] >= pts[e]) and np.any(pts[f] > pts[e]) for f in ok))
drawn = sorted(r["index"] for r in d["evaluations"] if r["pareto"])
assert drawn == front, (drawn, front)  # equal score vectors are all on the front
if K >= 2:
    pairs = K * (K - 1) // 2  # the lower triangle of the scatter matrix (one panel for two tasks)
    assert res["marks"]["front"] == len(drawn) * pairs, (res["marks"]["front"], len(drawn), pairs)
# One bar per weight of the optimized merge (checkpoints x layer groups).
best = d["best"]
if best is not None:
    assert res["marks"]["weight_bars"] == len(best["weights"]), (res["marks"], len(best["weights"]))
    w = ev["weights"][()][best["evaluation"]]
    assert np.array_equal(np.array(best["weights"], dtype=float), w), "best weights differ"
# Per task: one mark per score of the task's best checkpoint (on search),
# every recipe and the optimized merge, on the search and test splits.
b = st["baselines"]
recipes = b["recipes"].asstr()[()]
bs, bt = b["scores"][()], b["test_scores"][()]
ck = [i for i, r in enumerate(recipes) if r == "checkpoint"]
rc = [i for i, r in enumerate(recipes) if r != "checkpoint"]
drawn_values = 0
for k in range(K):
    best_ck = max(ck, key=lambda i: bs[i, k] * sign[k]) if ck else None
    rows = ([best_ck] if best_ck is not None else []) + rc
    drawn_values += sum(int(np.isfinite(bs[i, k])) + int(np.isfinite(bt[i, k])) for i in rows)
    if best is not None:
        e = best["evaluation"]
        t = list(st["test"]["eval_index"][()]) if "test" in st else []
        drawn_values += int(np.isfinite(scores[e, k])) + (int(np.isfinite(st["test"]["scores"][()][t.index(e), k])) if e in t else 0)
assert res["marks"]["task_bars"] == drawn_values, (res["marks"]["task_bars"], drawn_values)
# ... with the state's values: every recipe's search scores as drawn.
for i in rc:
    e = next(x for x in d["baselines"] if x["name"] == b["names"].asstr()[i])
    for k, t in enumerate(tasks):
        assert e["scores"][t]["search"] == bs[i, k], (e["name"], t)
print(f"{sys.argv[2]}: {E} evaluations, front {drawn}, marks {res['marks']}")
PY
}

# searched_page NAME [LAUNCHER...]: optimize $work/NAME.yaml into $work/NAME.h5
# (under LAUNCHER, e.g. `mpi 2`; alone without one), then its page, queued for
# the browser; its drawn numbers are compared with the state after render_all.
searched_page() {
  local name=$1
  shift
  "$@" "$KINTSUGI" optimize "$work/$name.yaml" --state "$work/$name.h5" 2>"$work/$name.log" ||
    { cat "$work/$name.log" >&2; fail "$name: optimize"; }
  "$KINTSUGI" report "$work/$name.h5" --html "$work/$name.html"
  check "$work/$name.html" "$name"
  numbers+=("$name")
}
numbers=()

echo "--- 1. a 3-task search with optimize --html; report --html of its state"
make_job "$work/job.yaml" budget=18
mpi 2 "$KINTSUGI" baselines "$work/job.yaml" --state "$work/s.h5" 2>"$work/log" ||
  { cat "$work/log" >&2; fail "baselines"; }
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/s.h5" --html "$work/live.html" \
  2>"$work/log" || { cat "$work/log" >&2; fail "optimize --html"; }
[[ -s $work/live.html ]] || fail "optimize --html wrote no page"
"$KINTSUGI" report "$work/s.h5" --html "$work/report.html" 2>>"$work/log" || { cat "$work/log" >&2; fail "report --html"; }
check "$work/report.html" three
cmp -s "$work/live.html" "$work/report.html" || fail "the page optimize left differs from report --html of the same state"
# --csv carries the page's numbers too: every evaluation, sigma per generation.
"$KINTSUGI" report "$work/s.h5" --csv >"$work/report.csv"
/usr/bin/python3 - "$work/s.h5" "$work/report.csv" <<'PY'
import csv, sys
import h5py
st = h5py.File(sys.argv[1], "r")
rows = list(csv.DictReader(open(sys.argv[2], newline="")))
ev = [r for r in rows if r["kind"] == "evaluation"]
obj, status = st["evals"]["objective"][()], st["evals"]["status"][()]
assert len(ev) == len(obj), (len(ev), len(obj))
for e, r in enumerate(ev):
    assert r["status"] == ("ok" if status[e] == 0 else "failed")
    assert status[e] != 0 or float(r["objective"]) == obj[e], (e, r["objective"], obj[e])
sig = st["optimizer"]["sigma_history"][()]
got = [float(r["value"]) for r in rows if r["kind"] == "sigma"]
assert len(sig) > 0 and got == list(sig), (got, list(sig))
print(f"report.csv: {len(ev)} evaluations, {len(got)} generations' sigma, as the state holds them")
PY

echo "--- 2. pages written while optimize writes the state (a reader in a loop)"
make_job "$work/loop.yaml" budget=36 population=6
mpi 2 "$KINTSUGI" optimize "$work/loop.yaml" --state "$work/loop.h5" 2>"$work/loop.log" &
opt=$!
pages=0
while kill -0 "$opt" 2>/dev/null; do
  if [[ -f $work/loop.h5 ]]; then
    "$KINTSUGI" report "$work/loop.h5" --html "$work/loop-$pages.html" 2>"$work/loop-report.log" ||
      { cat "$work/loop-report.log" >&2; fail "report --html failed while optimize wrote the state"; }
    pages=$((pages + 1))
  fi
  sleep 0.05
done
wait "$opt" || { cat "$work/loop.log" >&2; fail "optimize (the loop's writer)"; }
((pages >= 3)) || fail "only $pages pages written while the search ran"
# Every page holds whole data (a state between two generations, never a torn one).
/usr/bin/python3 - "$work" "$pages" <<'PY'
import json, re, sys
w, n = sys.argv[1], int(sys.argv[2])
counts = []
for i in range(n):
    html = open(f"{w}/loop-{i}.html", encoding="utf-8").read()
    m = re.search(r'<script type="application/json" id="kintsugi-report-data">(.*?)</script>', html, re.S)
    assert m, f"loop-{i}.html: no data"
    d = json.loads(m.group(1))
    assert len(d["evaluations"]) % 6 == 0, (i, len(d["evaluations"]))  # whole generations
    counts.append(len(d["evaluations"]))
assert counts == sorted(counts), counts
print(f"{n} pages while the search ran, evaluations {counts[0]} .. {counts[-1]}")
PY
check "$work/loop-$((pages / 2)).html" loop-mid

echo "--- 3. a layer_group search (weights heatmap: checkpoints x 3 groups)"
make_job "$work/lg.yaml" budget=12 granularity=layer_group layer_groups=3
searched_page lg mpi 2

echo "--- 4. one task, failed candidates (bits per byte, lower is better)"
failing_job "$work/job.yaml" "$work/fail.yaml"
searched_page fail mpi 2

echo "--- 4b. three tasks, some candidates failed, some scored (a command scorer)"
# score.sh MODEL OUTPUT: every third candidate fails (its error text names it);
# the others get scores that vary with their order. Checkpoints always score.
command_setup
cat >"$work/score.sh" <<SH
n=\$(( \$(cat "$work/count" 2>/dev/null || echo 0) + 1 )); echo \$n >"$work/count"
if [[ \$1 == $scratch/* ]] && (( n % 3 == 0 )); then echo "candidate \$n refused by score.sh" >&2; exit 1; fi
printf '{"add": {"exact_match": %s}, "rev": {"exact_match": %s}, "bal": {"acc": %s}}' \\
  "0.\$(( (n * 37) % 90 + 10 ))" "0.\$(( (n * 53) % 90 + 10 ))" "0.\$(( (n * 71) % 90 + 10 ))" >"\$2/scores.json"
SH
make_job "$work/cmd-base.yaml" budget=12 population=6
command_job "$work/cmd-base.yaml" "$work/mixed.yaml" json "$scratch" none 60 -- bash "$work/score.sh" "{model}" "{output}"
searched_page mixed

echo "--- 5. two tasks: a scatter of the pair"
/usr/bin/python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
job = json.load(open(f"{w}/job.yaml"))
job["tasks"] = job["tasks"][:2]
json.dump(job, open(f"{w}/two.yaml", "w"))
PY
searched_page two mpi 2

echo "--- the pages in the browser; the numbers they draw against the states"
render_all
same_numbers "$work/s.h5" "$work/three.json"
for name in "${numbers[@]}"; do same_numbers "$work/$name.h5" "$work/$name.json"; done
# The layer_group page draws the weights heatmap (checkpoints x 3 groups).
/usr/bin/python3 -c "
import json, sys
r = json.load(open('$work/lg.json'))
assert 'weights-heatmap' in r['plots'], r['plots']
assert r['data']['run']['layer_groups'] == 3 and len(r['data']['best']['weights']) == 12
"
# One task: failed candidates carry their error, no trade-off plot.
/usr/bin/python3 -c "
import json
r = json.load(open('$work/fail.json'))
failed = [e for e in r['data']['evaluations'] if not e['ok']]
assert failed and all('bits_per_byte' in e['error'] for e in failed), failed
assert 'plot-tradeoffs' in r['notes'], r['notes']  # one task: no trade-off to draw
"
# A command scorer: failed and scored candidates side by side.
/usr/bin/python3 -c "
import json
r = json.load(open('$work/mixed.json'))
ev = r['data']['evaluations']
failed = [e for e in ev if not e['ok']]
assert failed and len(failed) < len(ev), [e['ok'] for e in ev]
assert all('refused by score.sh' in e['error'] for e in failed), failed
"

echo "--- 6. bad input: one line, exit 2, nothing written"
# expect_exit2 WHAT OUT -- ARGV...: exit 2, one stderr line naming WHAT, OUT not created
expect_exit2() {
  local what=$1 out=$2 rc=0
  shift 3
  "$@" >"$work/bad.out" 2>"$work/bad.err" || rc=$?
  [[ $rc -eq 2 ]] || { cat "$work/bad.err" >&2; fail "$*: exit $rc, not 2"; }
  [[ $(wc -l <"$work/bad.err") -eq 1 ]] || { cat "$work/bad.err" >&2; fail "$*: not one line"; }
  grep -qF -- "$what" "$work/bad.err" || { cat "$work/bad.err" >&2; fail "$*: does not name $what"; }
  [[ ! -e $out ]] || fail "$*: wrote $out"
}
expect_exit2 "$work/none.h5" "$work/a.html" -- "$KINTSUGI" report "$work/none.h5" --html "$work/a.html"
echo "not a state" >"$work/text.h5"
expect_exit2 "$work/text.h5" "$work/b.html" -- "$KINTSUGI" report "$work/text.h5" --html "$work/b.html"
expect_exit2 "$work/missing/c.html" "$work/missing/c.html" -- \
  "$KINTSUGI" report "$work/s.h5" --html "$work/missing/c.html"
expect_exit2 "$work/missing/d.html" "$work/missing/d.html" -- \
  "$KINTSUGI" optimize "$work/job.yaml" --state "$work/d.h5" --html "$work/missing/d.html"
[[ ! -e $work/d.h5 ]] || fail "optimize --html into a missing folder started a search"
# never_over INPUT -- ARGV...: exit 2, one line naming INPUT, INPUT unchanged
never_over() {
  local input=$1 rc=0
  shift 2
  cp "$input" "$work/before"
  "$@" >"$work/bad.out" 2>"$work/bad.err" || rc=$?
  [[ $rc -eq 2 && $(wc -l <"$work/bad.err") -eq 1 ]] || { cat "$work/bad.err" >&2; fail "$*: exit $rc"; }
  grep -qF "refusing to write over an input" "$work/bad.err" || { cat "$work/bad.err" >&2; fail "$*: message"; }
  cmp -s "$input" "$work/before" || fail "$*: wrote over $input"
}
never_over "$work/s.h5" -- "$KINTSUGI" report "$work/s.h5" --html "$work/s.h5"
never_over "$work/job.yaml" -- "$KINTSUGI" report "$work/s.h5" --html "$work/job.yaml"
never_over "$work/job.yaml" -- "$KINTSUGI" optimize "$work/job.yaml" --state "$work/e.h5" --html "$work/job.yaml"
echo "report_html: all checks passed"
