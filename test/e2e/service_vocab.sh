#!/usr/bin/env bash
# The search over a pool whose checkpoints differ in added tokens
# (pool.tokenizer_source), end to end on demo checkpoints given 2, 5 and 5
# added tokens by test/e2e/merge_vocab_ref.py (some shared at other ids, some
# missing from one model but held by two others: averaged rows).
#  1. Without pool.tokenizer_source such a pool is refused: one line naming
#     the setting, exit 2, no state written.
#  2. On tasks whose texts use no added token, the union pool's search and
#     baselines score exactly as the same search over the checkpoints without
#     their added tokens (the base vocabulary keeps its ids; task-vector
#     baselines run, pool.base reconciled the same way).
#  3. On a task whose texts hold the added tokens (perplexity), the exported
#     best merge (written by the merge engine with its union tokenizer files)
#     scores in `kintsugi eval` exactly as the search recorded it in memory,
#     and so does `kintsugi eval --weights`; its vocabulary is the one the
#     independent reference computes; two ranks with tensor_parallel 2 (the
#     re-indexed rows split between them) record the same scores (to 1e-5
#     relative: their fp32 partial sums add in another order).
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
src=$KINTSUGI_SOURCE_DIR
MPIEXEC=${MPIEXEC:-mpirun}
pyref="$src/test/e2e/merge_vocab_ref.py"
demo="$src/examples/demo"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
cd "$work"
python3 "$pyref" make "$demo/pool/base" "$demo/pool/sft-add-lr1e-4-step200" \
  "$demo/pool/sft-rev-lr1e-4-step200" . >/dev/null
# A third checkpoint with b's added tokens: a lacks <x1>..<x4>, which b and c
# both hold, so a's rows of them are averages.
python3 - "$pyref" "$demo/pool/sft-sort-lr1e-4-step200" <<'PY'
import importlib.util, shutil, sys
spec = importlib.util.spec_from_file_location("ref", sys.argv[1])
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
ref.write_variant(sys.argv[2], "c", ref.ADDED_B, 3)
shutil.copytree(sys.argv[2], "c0")
PY
mkdir tasks
for t in add bal; do
  for s in search test; do head -40 "$demo/tasks/$t.$s.jsonl" >"tasks/$t.$s.jsonl"; done
done
python3 - <<'PY'
import json
texts = ["The answer<think>is 12+34=46<tool>done<x4>", "<x1>rev:abc=cba<x2> and <think> again<x3>",
         "plain text 7+8=15 with <think> inside", "sort:<x4>cab=abc<x1><x1>"]
for split in ("search", "test"):
    with open(f"tasks/ppl.{split}.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"ppl-{split}-{i}", "text": t}) + "\n")
PY
job() {  # job FILE CHECKPOINTS TOKENIZER_SOURCE TASKS STATE [TP]
  {
    echo "pool:"
    echo "  base: base"
    echo "  checkpoints: [$2]"
    [[ -n $3 ]] && echo "  tokenizer_source: $3"
    echo "tasks:"
    for t in $4; do
      case $t in
        add) echo '  - {name: add, file: "tasks/add.{split}.jsonl", kind: generate, max_new_tokens: 8, stop: ["\n"]}' ;;
        bal) echo '  - {name: bal, file: "tasks/bal.{split}.jsonl", kind: choice}' ;;
        ppl) echo '  - {name: ppl, file: "tasks/ppl.{split}.jsonl", kind: perplexity}' ;;
      esac
    done
    echo "search: {method: cmaes, budget: 8, seed: 3}"
    echo "parallel: {tensor_parallel: ${6:-1}}"
    echo "output: {state: $5}"
  } >"$1"
}

# 1. Refused without the setting.
job refused.yaml "a, b, c" "" "add bal" refused.h5
set +e
"$KINTSUGI" -q optimize refused.yaml 2>err.txt
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "differing vocabularies without pool.tokenizer_source: exit $rc, expected 2"
[[ $(wc -l <err.txt) -eq 1 ]] || fail "more than one line: $(cat err.txt)"
grep -q "incompatible pool: .*set pool.tokenizer_source in .*refused.yaml" err.txt ||
  fail "unexpected message: $(cat err.txt)"
[[ ! -e refused.h5 ]] || fail "a refused search wrote its state"
job badsource.yaml "a, b, c" base0 "add bal" bad.h5
set +e
"$KINTSUGI" -q optimize badsource.yaml 2>err.txt
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "pool.tokenizer_source naming no checkpoint: exit $rc, expected 2"
grep -q "badsource.yaml:4: pool.tokenizer_source: must be base, union or one of pool.checkpoints, got base0" err.txt ||
  fail "unexpected message: $(cat err.txt)"

# 2. Base-vocabulary tasks: the union pool scores as the plain one.
job union.yaml "a, b, c" union "add bal" union.h5
job plain.yaml "a0, b0, c0" "" "add bal" plain.h5
for j in union plain; do
  "$KINTSUGI" -q baselines $j.yaml 2>>log || { cat log >&2; fail "baselines $j"; }
  "$KINTSUGI" -q optimize $j.yaml 2>>log || { cat log >&2; fail "optimize $j"; }
  "$KINTSUGI" report $j.h5 --json >$j.json
done
python3 - <<'PY'
import json
u, p = json.load(open("union.json")), json.load(open("plain.json"))
key = lambda r: ([(e["objective"], e["scores"]) for e in r["evaluations"]],
                 [(b["name"], b["scores"]) for b in r["baselines"]],
                 [c["scores"] for c in r["checkpoints"]])
assert key(u) == key(p), "the union pool's scores differ from the plain pool's"
names = [b["name"] for b in u["baselines"]]
assert any(n.startswith("task_arithmetic") for n in names), names
assert any(n.startswith("ties") for n in names), names
print(f"ok: {len(u['evaluations'])} evaluations and {len(names)} baselines score as the plain pool's")
PY

# 3. Added tokens in the texts: export and eval reproduce the in-memory scores.
job ppl.yaml "a, b, c" union "ppl bal" ppl.h5
"$KINTSUGI" -q optimize ppl.yaml 2>>log || { cat log >&2; fail "optimize ppl"; }
"$KINTSUGI" -q export ppl.h5 --out best --dtype float32 2>>log || { cat log >&2; fail "export"; }
"$KINTSUGI" report ppl.h5 --json >ppl.json
weights=$(python3 -c 'import json; print(",".join(repr(x) for x in json.load(open("ppl.json"))["best"]["weights"]))')
"$KINTSUGI" eval ppl.yaml --checkpoint best --json 2>>log | tail -1 >eval-best.json
"$KINTSUGI" eval ppl.yaml --weights "$weights" --json 2>>log | tail -1 >eval-weights.json
job ppl2.yaml "a, b, c" union "ppl bal" ppl2.h5 2
"$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np 2 \
  "$KINTSUGI" -q optimize ppl2.yaml 2>>log || { cat log >&2; fail "optimize ppl on 2 ranks"; }
"$KINTSUGI" report ppl2.h5 --json >ppl2.json
python3 - "$pyref" <<'PY'
import importlib.util, json, sys
rep = json.load(open("ppl.json"))
best = rep["best"]
for f in ("eval-best.json", "eval-weights.json"):
    got = json.load(open(f))["results"][0]["tasks"]
    assert got["ppl"]["bits_per_byte"] == best["scores"]["ppl"]["search"], (f, got, best)
    assert got["bal"]["acc"] == best["scores"]["bal"]["search"], (f, got, best)
# The 2-rank, tensor_parallel 2 search records the same scores, up to the
# order of its fp32 partial sums (the same holds for a plain pool).
rep2 = json.load(open("ppl2.json"))
assert len(rep["evaluations"]) == len(rep2["evaluations"])
for e1, e2 in zip(rep["evaluations"], rep2["evaluations"]):
    assert e1["scores"]["bal"] == e2["scores"]["bal"], (e1, e2)
    x, y = e1["scores"]["ppl"], e2["scores"]["ppl"]
    assert abs(x - y) <= 1e-5 * abs(x), ("tensor_parallel 2 differs", x, y)
# The exported vocabulary: the reference's union of a, b and c in pool order.
spec = importlib.util.spec_from_file_location("ref", sys.argv[1])
ref = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ref)
want = {}
for m in ("a", "b", "c"):
    for tok, i in sorted(ref.vocab_of(m)[0].items(), key=lambda kv: kv[1]):
        if tok not in want:
            want[tok] = len(want)
got = ref.vocab_of("best")[0]
assert got == want, sorted(set(got.items()) ^ set(want.items()))[:6]
assert json.load(open("best/config.json"))["vocab_size"] == len(want)
print(f"ok: export and eval reproduce the search's scores; {len(want)} tokens")
PY
echo "all search vocabulary checks passed"
