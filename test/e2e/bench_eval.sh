#!/usr/bin/env bash
# `kintsugi bench eval` runs like a user runs it, on 2 ranks (T = 1 and 2): it
# verifies its own results (the task scores agree at every T, else exit 1), and
# its --json line carries the documented keys. Timings are not checked:
# benchmarks measure, tests do not. A missing --job is an error (exit 2).
source "$(dirname "$0")/service_lib.sh"
make_job "$work/job.yaml"
base="$KINTSUGI_SOURCE_DIR/examples/demo/pool/base"
mpi 2 -x OMP_NUM_THREADS=1 "$KINTSUGI" bench eval --checkpoint "$base" --job "$work/job.yaml" \
  --batch 2 --prompt 8 --decode 2 --repeats 1 --json >"$work/out.txt" 2>"$work/err.txt" ||
  { cat "$work/err.txt" >&2; fail "bench eval on 2 ranks failed"; }
grep -q "scores agree at every T measured (T = 1, 2)" "$work/out.txt" || { cat "$work/out.txt" >&2; fail "no agreement line"; }
/usr/bin/python3 - "$work/out.txt" <<'PY'
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
assert d["bench"] == "eval", d
assert [r["tensor_parallel"] for r in d["results"]] == [1, 2], d
for r in d["results"]:
    for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "matmul_share", "score_search_s"):
        assert r[k] > 0, (k, r)
assert sorted(d["scores"]) == ["add", "bal", "rev"], d["scores"]
print("ok: T = 1, 2 agree on", sorted(d["scores"]))
PY

# Bad input: exit 2, one line naming the file.
set +e
"$KINTSUGI" bench eval --checkpoint "$base" --job "$work/nope.yaml" --tp 1 >/dev/null 2>"$work/err2.txt"
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "missing --job: exit $rc, expected 2"
grep -q "nope.yaml" "$work/err2.txt" || { cat "$work/err2.txt" >&2; fail "missing --job: message does not name the file"; }
set +e
"$KINTSUGI" bench eval --checkpoint "$base" --job "$work/job.yaml" --tp 4 >/dev/null 2>"$work/err3.txt"
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "--tp 4 on one rank: exit $rc, expected 2"
echo "bench_eval: ok"
