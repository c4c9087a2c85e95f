#!/usr/bin/env bash
# `kintsugi bench eval` runs like a user runs it, on 2 ranks (T = 1 and 2): it
# verifies its own results (the task scores agree at every T, else exit 1), and
# its --json line carries the documented keys. With --torch it also runs the
# PyTorch peer (tools/torch_eval_bench.py, an independent forward pass of the
# same checkpoint), whose log-probabilities after the prompts must agree with
# kintsugi's. Timings are not checked: benchmarks measure, tests do not. A
# missing --job or --torch script is an error (exit 2).
source "$(dirname "$0")/service_lib.sh"
make_job "$work/job.yaml"
base="$KINTSUGI_SOURCE_DIR/examples/demo/pool/base"
mpi 2 -x OMP_NUM_THREADS=1 "$KINTSUGI" bench eval --checkpoint "$base" --job "$work/job.yaml" \
  --batch 2 --prompt 8 --decode 2 --repeats 2 --json \
  --torch "$KINTSUGI_SOURCE_DIR/tools/torch_eval_bench.py" >"$work/out.txt" 2>"$work/err.txt" ||
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
assert d["cpu_model"] and d["eval_kernels"] in ("generic", "avx2", "avx512"), d
t = d["torch"]
assert t["prefill_tokens_per_s"] > 0 and t["decode_tokens_per_s"] > 0, t
assert 0 <= t["max_logprob_difference"] <= 1e-4, t  # fp32 both sides: ~1e-5 at most
assert t["greedy_total"] == 2 * 3 and t["greedy_identical"] == t["greedy_total"], t
assert t["pairs"] == 2, t  # --repeats 2: each of kintsugi's repetitions has PyTorch's beside it
print("ok: T = 1, 2 agree on", sorted(d["scores"]), "; PyTorch within", t["max_logprob_difference"])
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
set +e
"$KINTSUGI" bench eval --checkpoint "$base" --job "$work/job.yaml" --tp 1 --batch 1 --prompt 4 \
  --decode 1 --repeats 1 --torch "$work/no-such-peer.py" >/dev/null 2>"$work/err4.txt"
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "missing --torch script: exit $rc, expected 2"
grep -q "no-such-peer.py" "$work/err4.txt" || { cat "$work/err4.txt" >&2; fail "missing --torch: message does not name the file"; }
# A peer that breaks off (it exits after its ready line, or answers a
# repetition with something else) is exit 1 and one line naming it.
cat >"$work/quitter.py" <<'PY'
import json, sys
print(json.dumps({"ready": True}), flush=True)
sys.exit(3)
PY
cat >"$work/babbler.py" <<'PY'
import json, sys
print(json.dumps({"ready": True}), flush=True)
sys.stdin.readline()
print("what repetition?", flush=True)
sys.stdin.read()
PY
for peer in quitter babbler; do
  set +e
  "$KINTSUGI" bench eval --checkpoint "$base" --job "$work/job.yaml" --tp 1 --batch 1 --prompt 4 \
    --decode 1 --repeats 2 --torch "$work/$peer.py" >/dev/null 2>"$work/err-$peer.txt"
  rc=$?
  set -e
  [[ $rc -eq 1 ]] || { cat "$work/err-$peer.txt" >&2; fail "$peer peer: exit $rc, expected 1"; }
  grep -v "^\[" "$work/err-$peer.txt" >"$work/lines-$peer.txt" || true  # log lines aside
  if [[ $(wc -l <"$work/lines-$peer.txt") -ne 1 ]] || ! grep -q "$peer.py" "$work/lines-$peer.txt"; then
    cat "$work/err-$peer.txt" >&2
    fail "$peer peer: not one line naming the script"
  fi
done
grep -q "ended without answering (exit status 3)" "$work/err-quitter.txt" ||
  { cat "$work/err-quitter.txt" >&2; fail "quitter peer: its exit status is not named"; }
grep -q 'answered "what repetition?"' "$work/err-babbler.txt" ||
  { cat "$work/err-babbler.txt" >&2; fail "babbler peer: its answer is not quoted"; }
# KINTSUGI_CPU_KERNELS is checked for the evaluator's kernels as for the
# merge kernels: a name of no copy is one line and exit 2, not ignored.
set +e
KINTSUGI_CPU_KERNELS=avx3 "$KINTSUGI" eval "$work/job.yaml" --checkpoint "$base" >/dev/null 2>"$work/err5.txt"
rc=$?
set -e
[[ $rc -eq 2 ]] || { cat "$work/err5.txt" >&2; fail "KINTSUGI_CPU_KERNELS=avx3: exit $rc, expected 2"; }
grep -q "^kintsugi: error: KINTSUGI_CPU_KERNELS=avx3: expected one of generic" "$work/err5.txt" ||
  { cat "$work/err5.txt" >&2; fail "KINTSUGI_CPU_KERNELS=avx3: no clear line"; }
[[ $(wc -l <"$work/err5.txt") -eq 1 ]] || { cat "$work/err5.txt" >&2; fail "KINTSUGI_CPU_KERNELS=avx3: more than one line"; }
echo "bench_eval: ok"
