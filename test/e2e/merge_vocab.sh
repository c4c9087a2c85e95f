#!/usr/bin/env bash
# Checkpoints whose vocabularies differ (tokenizer_source / tokenizer:), end
# to end on the demo pool: two checkpoints with 2 and 5 added tokens (one
# shared, at different ids) merged with union, base and one model's
# vocabulary, token rules, forced rows and padding. Each output is checked
# against an independent Python reference of mergekit's rules
# (merge_vocab_ref.py): the vocabulary and the tokenizer files, every row
# within 1 bf16 ulp, rows of shared tokens and every other tensor bit for bit
# the plain pool's merge; slices (a frankenmerge and task_arithmetic), each
# token-indexed tensor filled from its own slice's inputs. Then: np 1, 2 and
# 3 give the same bytes; Hugging Face's tokenizers (Node binding) reads the
# union tokenizer.json and encodes the added tokens as kintsugi tokenize does;
# kintsugi eval scores the union merge as the plain one; without tokenizer
# settings the pool is refused, and so is a slices rule outside a tensor's inputs.
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
src=$KINTSUGI_SOURCE_DIR
MPIEXEC=${MPIEXEC:-mpirun}
ref="$src/tools/hf-reference"
pyref="$src/test/e2e/merge_vocab_ref.py"
pool="$src/examples/demo/pool"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
command -v node >/dev/null || fail "node is not installed (scripts/install-deps.sh)"
[[ -d $ref/node_modules/tokenizers ]] || fail "$ref/node_modules/tokenizers is missing: run scripts/install-deps.sh"

cases=$(python3 "$pyref" make "$pool/base" "$pool/sft-add-lr1e-4-step200" "$pool/sft-rev-lr1e-4-step200" "$work")
cd "$work"
for c in $cases; do
  "$KINTSUGI" -q merge "$c.yaml" --out "out-$c" >/dev/null
  "$KINTSUGI" -q merge "$c-plain.yaml" --out "plain-$c" >/dev/null
  python3 "$pyref" check "$work" "$c" "out-$c" "plain-$c"
done

# Any rank count, small shards: the same bytes.
for c in union_linear union_ta; do
  for np in 2 3; do
    "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np $np \
      "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-$np" --chunk-mib 1 --max-shard-size 300KB >/dev/null
    "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-1s" --chunk-mib 1 --max-shard-size 300KB --overwrite >/dev/null
    diff -r "out-$c-1s" "out-$c-$np" >/dev/null || fail "$c: np=$np differs from np=1"
  done
done

# Hugging Face reads the written tokenizer.json; its ids are kintsugi's.
printf '%s\n' '{"text": "a<think>b<tool>c<x4> <new><x2>"}' '{"text": "<x1><x3>12+34=46"}' >texts.jsonl
node "$ref/encode.js" out-union_ta/tokenizer.json --input texts.jsonl >hf.jsonl
"$KINTSUGI" tokenize out-union_ta --input texts.jsonl >ks.jsonl
cmp -s hf.jsonl ks.jsonl || fail "kintsugi tokenize differs from HF on the union tokenizer: $(diff hf.jsonl ks.jsonl | head -4)"
python3 - hf.jsonl <<'PY'
import json, sys
ids = [json.loads(l)['ids'] for l in open(sys.argv[1])]
want = {258, 259, 263, 264, 261}  # <think> <tool> <x4> <new> <x2> in union_ta's vocabulary
assert want <= set(ids[0]), ids[0]
assert {260, 262} <= set(ids[1]), ids[1]
PY

# The merge's scores: the added rows never win on the demo's texts, so the
# union merge scores as the plain pool's merge.
job="$src/examples/demo/job.yaml"
score() { "$KINTSUGI" eval "$job" --checkpoint "$1" --split search --json 2>/dev/null | tail -1 | sed 's/"model":"[^"]*"//'; }
[[ "$(score out-union_linear)" == "$(score plain-union_linear)" ]] || fail "kintsugi eval: the union merge scores differently from the plain merge"

# Without tokenizer settings, such a pool is refused: one line, exit 2, nothing written.
python3 -c '
import json, sys; r = json.load(sys.stdin); r.pop("tokenizer_source", None); print(json.dumps(r))' <union_linear.yaml >refused.yaml
set +e
"$KINTSUGI" -q merge refused.yaml --out refused-out 2>err.txt
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "a pool of differing vocabularies without tokenizer_source: exit $rc, expected 2"
grep -q "incompatible pool: .*embed_tokens\|incompatible pool: .*lm_head" err.txt || fail "unexpected message: $(cat err.txt)"
[[ $(wc -l <err.txt) -eq 1 ]] || fail "more than one line: $(cat err.txt)"
[[ ! -e refused-out ]] || fail "a refused merge wrote its output"
# slices: a tokens: rule whose row comes from a model that is not an input of
# the tensor it fills (mergekit asserts "referenced but not part of merge").
python3 -c '
import json, sys; r = json.load(sys.stdin); t = r.pop("tokenizer_source")
r["tokenizer"] = {"source": t, "tokens": {"<new>": {"source": {"kind": "model_token", "model": "a", "token": "<tool>"}}}}
print(json.dumps(r))' <slices_ta.yaml >slices-rule.yaml
set +e
"$KINTSUGI" -q merge slices-rule.yaml --out rule-out 2>err.txt
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "a tokens: rule outside a slice tensor's inputs: exit $rc, expected 2"
grep -q "slices-rule.yaml:.*: the row of a is not among the inputs of tensor lm_head.weight" err.txt ||
  fail "unexpected message: $(cat err.txt)"
[[ $(grep -vc "\[warning\]" err.txt) -eq 1 ]] || fail "more than one line: $(cat err.txt)"
[[ ! -e rule-out ]] || fail "a refused merge wrote its output"
echo "all vocabulary checks passed"
