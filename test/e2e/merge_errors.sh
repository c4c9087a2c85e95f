#!/usr/bin/env bash
# kintsugi merge: bad recipes and pools exit 2 with one line naming file:line
# or the tensor; nothing is left behind.
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$KINTSUGI_SOURCE_DIR/test/e2e/merge_pool.py" make "$work/pool"
cd "$work"

expect() {  # expected-substring, recipe text
  printf '%s\n' "$2" > bad.yaml
  set +e
  err=$("$KINTSUGI" merge bad.yaml --out out 2>&1 >/dev/null)
  rc=$?
  set -e
  [[ $rc -eq 2 ]] || { echo "FAIL: exit $rc (want 2) for: $2"; echo "$err"; exit 1; }
  [[ $(printf '%s\n' "$err" | wc -l) -eq 1 ]] || { echo "FAIL: not one line: $err"; exit 1; }
  [[ $err == *"$1"* ]] || { echo "FAIL: '$err' lacks '$1'"; exit 1; }
  [[ ! -e out && -z $(compgen -G "out.partial*" || true) ]] || { echo "FAIL: output left behind"; exit 1; }
  echo "ok: $err"
}
expect "bad.yaml:4: modelz: unknown key (known keys: models," $'merge_method: linear\nmodels:\n  - model: pool/m1\nmodelz: []'
expect "bad.yaml:2: modelz: unknown key" $'merge_method: linear\nmodelz: 1\nmodels:\n  - model: pool/m1'
expect 'bad.yaml:1: merge_method: "frankenmerge" is not one of: linear, task_arithmetic,' $'merge_method: frankenmerge\nmodels:\n  - model: pool/m1'
expect "bad.yaml:1: merge_method: pcb (PCB merging) is not supported: mergekit's merge_methods/pcb.py is not registered" $'merge_method: pcb\nbase_model: pool/base\nmodels:\n  - model: pool/m1\nparameters: {density: 0.5}'
expect 'bad.yaml:4: models[0].parameters.weight: expected a number, got "heavy"' $'merge_method: linear\nmodels:\n  - model: pool/m1\n    parameters: {weight: heavy}'
expect "bad.yaml:5: models[0].parameters.density: unknown parameter for merge_method linear" $'merge_method: linear\nmodels:\n  - model: pool/m1\n    parameters:\n      density: 0.5\n      weight: 1'
expect 'bad.yaml:3: parameters.normalize: expected true or false, got "3"' $'merge_method: linear\nparameters:\n  normalize: 3\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}'
expect "needs base_model" $'merge_method: ties\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}'
expect "bad.yaml:4:1: YAML syntax error" $'merge_method: linear\nmodels: [ {model: pool/m1\n'
expect "incompatible pool: pool/odd: tensor model.layers.1.mlp.up_proj.weight: shape [32, 48] here," $'merge_method: task_arithmetic\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}\n  - model: pool/odd\n    parameters: {weight: 1}'
expect "pool/nothere" $'merge_method: linear\nmodels:\n  - model: pool/nothere\n    parameters: {weight: 1}'
expect "slerp merges the base with exactly one other model" $'merge_method: slerp\nbase_model: pool/base\nparameters: {t: 0.5}\nmodels:\n  - model: pool/m1\n  - model: pool/m2'
# breadcrumbs, breadcrumbs_ties, nearswap (mergekit parity, issue #19).
expect "bad.yaml:5: models[0].parameters.t: unknown parameter for merge_method breadcrumbs" $'merge_method: breadcrumbs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1, t: 0.5}'
expect "bad.yaml:5: gamma: 1.5 is outside [0, 1]" $'merge_method: breadcrumbs_ties\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1, gamma: 1.5}'
expect "bad.yaml:5: parameter rescale applies to the whole merge: put it under the top-level parameters" $'merge_method: breadcrumbs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1, rescale: true}'
expect "bad.yaml:4: models: nearswap merges base_model with exactly one other model, got 2" $'merge_method: nearswap\nbase_model: pool/base\nmodels:\n  - model: pool/base\n  - model: pool/m1\n  - model: pool/m2\nparameters: {t: 0.1}'
expect "bad.yaml:1: merge_method: nearswap needs base_model" $'merge_method: nearswap\nmodels:\n  - model: pool/m1\n  - model: pool/m2\nparameters: {t: 0.1}'
expect "bad.yaml:5: t: 0 is not > 0 (nearswap needs t > 0)" $'merge_method: nearswap\nbase_model: pool/base\nmodels:\n  - model: pool/m1\nparameters: {t: 0}'
expect "bad.yaml:5: t: -0.5 is not > 0" $'merge_method: nearswap\nbase_model: pool/base\nmodels:\n  - model: pool/m1\nparameters: {t: -0.5}'
# nuslerp, multislerp, karcher (issue #19).
expect "bad.yaml: nuslerp merges exactly two models (and an optional base_model), got 3" $'merge_method: nuslerp\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}\n  - model: pool/m2\n    parameters: {weight: 1}\n  - model: pool/m3\n    parameters: {weight: 1}'
expect "got 1 besides the base" $'merge_method: nuslerp\nbase_model: pool/base\nmodels:\n  - model: pool/base\n  - model: pool/m2\n    parameters: {weight: 1}'
expect "no value of parameter 'weight'" $'merge_method: nuslerp\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}\n  - model: pool/m2'
expect "multislerp: the weights of tensor" $'merge_method: multislerp\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}\n  - model: pool/m2\n    parameters: {weight: -1}'
expect "bad.yaml:5: max_iter: 2.5 is not a whole number >= 0" $'merge_method: karcher\nmodels:\n  - model: pool/m1\n  - model: pool/m2\nparameters: {max_iter: 2.5}'
expect "bad.yaml:6: parameters.weight: unknown parameter for merge_method karcher" $'merge_method: karcher\nmodels:\n  - model: pool/m1\n  - model: pool/m2\nparameters:\n  weight: 1'
expect "no value of parameter 'weight'" $'merge_method: linear\nmodels:\n  - model: pool/m1\n  - model: pool/m2'
# Vocabulary settings (tokenizer_source / tokenizer:, issue #19).
two=$'merge_method: linear\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}\n  - model: pool/m2\n    parameters: {weight: 1}'
expect "bad.yaml:8: tokenizer: give tokenizer_source or tokenizer, not both" "$two"$'\ntokenizer_source: union\ntokenizer: {source: base}'
expect "bad.yaml:7: tokenizer_source: \"pool/m3\" is not one of the recipe's models" "$two"$'\ntokenizer_source: pool/m3'
expect "bad.yaml:9: tokenizer.tokens.<x>.source: a model_token source needs token_id or token" "$two"$'\ntokenizer:\n  tokens:\n    "<x>": {source: {kind: model_token, model: pool/m1}}'
expect "bad.yaml:7: tokenizer.sourze: unknown key" "$two"$'\ntokenizer: {sourze: union}'
expect "bad.yaml:7: tokenizer.pad_to_multiple_of: must be >= 1, got 0" "$two"$'\ntokenizer: {pad_to_multiple_of: 0}'
expect "bad.yaml:9: tokenizer.tokens.<x>.source.model: a zero source takes no other key" "$two"$'\ntokenizer:\n  tokens:\n    "<x>": {source: {kind: zero, model: pool/m1}}'
expect "pool/m1/tokenizer.json: model: missing key 'vocab'" "$two"$'\ntokenizer_source: union'
# slices: and passthrough (mergekit parity, issue #19).
expect "bad.yaml:6: models: a recipe has models or slices, not both" $'merge_method: linear\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 2]}\nmodels:\n  - model: pool/m1'
expect "bad.yaml:4: layer_range [0, 3) is outside the 2 layers of pool/m1" $'merge_method: passthrough\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 3]}'
expect "bad.yaml:4: slices[0].sources[0].layer_range: [1, 1) is an empty or inverted range" $'merge_method: passthrough\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [1, 1]}'
expect "bad.yaml:4: slices[0].sources[0].layer_range: [2, 0) is an empty or inverted range" $'merge_method: passthrough\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [2, 0]}'
expect "bad.yaml:5: slices[0].sources[1]: layer_range [1, 2) has a length of 1, the slice's first source's 2" $'merge_method: linear\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 2]}\n      - {model: pool/m2, layer_range: [1, 2]}'
# Slices have no tiling rule (gaps and repeats are allowed, as in mergekit);
# each slice's own ranges must hold (docs/merge.md, "Slices").
expect "bad.yaml:4: slices[0].sources[0].layer_range: expected [first, end) (two layer indices), got 3 values" $'merge_method: passthrough\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 1, 2]}'
expect "bad.yaml:4: slices[0].sources[0].layer_range: layer -1 is negative" $'merge_method: passthrough\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [-1, 1]}'
expect "bad.yaml:5: slices[0].sources[1]: model pool/m1 is already a source of this slice (at bad.yaml:4)" $'merge_method: linear\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 1], parameters: {weight: 1}}\n      - {model: pool/m1, layer_range: [1, 2], parameters: {weight: 1}}'
# A gradient of the wrong length: an empty list (one value is that value, as in mergekit).
expect "bad.yaml:4: models[0].parameters.weight: a gradient needs at least one value, got an empty list" $'merge_method: linear\nmodels:\n  - model: pool/m1\n    parameters: {weight: []}'
expect "bad.yaml:6: slices[0].parameters.density[0].value: a gradient needs at least one value" $'merge_method: ties\nbase_model: pool/base\nslices:\n  - sources: [{model: pool/base, layer_range: [0, 2]}, {model: pool/m1, layer_range: [0, 2], parameters: {weight: 1}}]\n    parameters:\n      density: [{filter: mlp, value: []}]'
expect "bad.yaml:4: slices[0].sources: passthrough takes one source per slice, got 2" $'merge_method: passthrough\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 1]}\n      - {model: pool/m2, layer_range: [1, 2]}'
expect 'bad.yaml:5: slices[0].residual_weight: expected a number, got "half"' $'merge_method: linear\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 2], parameters: {weight: 1}}\n    residual_weight: half'
# A slice's own base_model: among its sources, and some base for every slice.
expect "bad.yaml:3: ties needs base_model (pool/m2) among this slice's sources" $'merge_method: ties\nslices:\n  - sources:\n      - {model: pool/base, layer_range: [0, 2]}\n      - {model: pool/m1, layer_range: [0, 2], parameters: {weight: 1}}\n    base_model: pool/m2'
expect "bad.yaml:7: ties needs base_model (in this slice or at the top level)" $'merge_method: ties\nslices:\n  - sources:\n      - {model: pool/base, layer_range: [0, 1]}\n      - {model: pool/m1, layer_range: [0, 1], parameters: {weight: 1}}\n    base_model: pool/base\n  - sources:\n      - {model: pool/m2, layer_range: [1, 2], parameters: {weight: 1}}'
expect "bad.yaml:4: slices[0].sources[0].layers: unknown key" $'merge_method: linear\nslices:\n  - sources:\n      - {model: pool/m1, layers: [0, 2]}'
expect "bad.yaml:4: ties needs base_model" $'merge_method: ties\nbase_model: pool/base\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 2], parameters: {weight: 1}}'
expect "bad.yaml:3: models: passthrough copies exactly one model, got 2" $'merge_method: passthrough\nmodels:\n  - model: pool/m1\n  - model: pool/m2'
expect "bad.yaml:4: models[0].parameters.scale: unknown parameter for merge_method linear" $'merge_method: linear\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1, scale: 2}'
expect "incompatible slice: pool/odd: tensor model.layers.1.mlp.up_proj.weight: BF16 [32, 48] here" $'merge_method: linear\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 2], parameters: {weight: 1}}\n      - {model: pool/odd, layer_range: [0, 2], parameters: {weight: 1}}'
expect "bad.yaml:5: tokenizer_source: \"pool/m3\" is not one of the recipe's models" $'merge_method: passthrough\nslices:\n  - sources:\n      - {model: pool/m1, layer_range: [0, 2]}\ntokenizer_source: pool/m3'
# della, della_linear, sce (mergekit parity, issue #19).
expect "bad.yaml:5: models[0].parameters.gamma: unknown parameter for merge_method della" $'merge_method: della\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1, density: 0.5, gamma: 0.1}'
expect "bad.yaml:5: epsilon: 0.6 is outside (-0.5, 0.5)" $'merge_method: della_linear\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1, density: 0.5, epsilon: 0.6}'
expect "bad.yaml:4: density 0.9 and epsilon 0.15 for tensor lm_head.weight: density -+ epsilon must lie in (0, 1)" $'merge_method: della\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1, density: 0.9}'
expect "bad.yaml:5: density: 1.2 is outside [0, 1]" $'merge_method: della\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1, density: 1.2}'
expect "bad.yaml:5: models[0].parameters.weight: unknown parameter for merge_method sce" $'merge_method: sce\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}'
expect "bad.yaml:6: select_topk: -0.1 is outside [0, 1]" $'merge_method: sce\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n  - model: pool/m2\nparameters: {select_topk: -0.1}'
expect "bad.yaml:1: merge_method: sce needs base_model" $'merge_method: sce\nmodels:\n  - model: pool/m1\n  - model: pool/m2'
expect "sce needs at least one model besides the base" $'merge_method: sce\nbase_model: pool/base\nmodels:\n  - model: pool/base'
# mergekit keys kintsugi does not support, by name (issue #19, mergekit's examples).
expect "bad.yaml:5: modules: mergekit's per-module merges (modules:, for multimodal models) are not supported" $'merge_method: linear\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}\nmodules:\n  text: {}'
expect "bad.yaml:4: models[0].lora: LoRA adapters (lora:) are not supported" $'merge_method: linear\nmodels:\n  - model: pool/m1\n    lora: pool/m2\n    parameters: {weight: 1}'
# ram, ramplus_tl, arcee_fusion (mergekit parity, issue #19).
expect "bad.yaml:6: epsilon: -0.1 is negative" $'merge_method: ram\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n  - model: pool/m2\nparameters: {epsilon: -0.1}'
expect "bad.yaml:6: alpha: -0.2 is negative" $'merge_method: ramplus_tl\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n  - model: pool/m2\nparameters: {alpha: -0.2}'
expect "bad.yaml:5: parameter r applies to the whole merge" $'merge_method: ramplus_tl\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {r: 0.3}'
expect "bad.yaml:1: merge_method: ram needs base_model" $'merge_method: ram\nmodels:\n  - model: pool/m1\n  - model: pool/m2'
expect "bad.yaml:1: merge_method: arcee_fusion needs base_model" $'merge_method: arcee_fusion\nmodels:\n  - model: pool/m1'
expect "arcee_fusion merges base_model with exactly one other model, got 2 besides the base" $'merge_method: arcee_fusion\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n  - model: pool/m2'
# core_space: LoRA factors (by name) refused; dense tensors are averaged (merge_ram.sh).
python3 - "$work" "$KINTSUGI_SOURCE_DIR/test/e2e" <<'PY'
import os, sys
sys.path.insert(0, sys.argv[2])
from merge_pool import write_typed
for m, v in (('la', 0.5), ('lb', -0.25)):
    write_typed(os.path.join(sys.argv[1], m + '.safetensors'), 'F32',
                [('model.layers.0.self_attn.q_proj.weight', [2, 2], [v] * 4),
                 ('model.layers.0.self_attn.q_proj.lora_A.weight', [1, 2], [v] * 2)])
PY
expect "core_space: tensor model.layers.0.self_attn.q_proj.lora_A.weight is a LoRA or adapter tensor" $'merge_method: core_space\nmodels:\n  - model: la.safetensors\n  - model: lb.safetensors'
# lrp and cabs (issue #19).
expect "bad.yaml:5: parameter density applies to the whole merge" $'merge_method: lrp\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {density: 0.5}'
expect "bad.yaml:6: density: 1.5 is outside [0, 1]" $'merge_method: lrp\nbase_model: pool/base\nmodels:\n  - model: pool/m1\nparameters:\n  density: 1.5'
expect "lrp: the weights of tensor" $'merge_method: lrp\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}\n  - model: pool/m2\n    parameters: {weight: -1}'
expect "bad.yaml:1: merge_method: lrp needs base_model" $'merge_method: lrp\nmodels:\n  - model: pool/m1'
expect "bad.yaml:5: cabs: n_val is given without m_val (they go together)" $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {n_val: 2}'
expect "bad.yaml:5: m_val: 0 is not a whole number in [1, 65536]" $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {n_val: 0, m_val: 0}'
expect "bad.yaml:5: n_val: 2.5 is not a whole number in [0, 65536]" $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {n_val: 2.5, m_val: 4}'
expect "cabs: n_val 5 and m_val 4 for tensor" $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {n_val: 5, m_val: 4}'
expect 'bad.yaml:6: pruning_order: "pool/m9" is not one of the recipe'"'"'s models' $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n  - model: pool/m2\npruning_order: [pool/m2, pool/m9]'
expect "pruning_order: model pool/m1 (at bad.yaml:4) is not listed" $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n  - model: pool/m2\nparameters:\n  pruning_order: [pool/base, pool/m2]'
expect 'bad.yaml:6: pruning_order: "pool/m2" is listed twice' $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n  - model: pool/m2\npruning_order: [pool/m2, pool/m1, pool/m2]'
expect "bad.yaml:7: default_n_val: given twice (also under parameters, at bad.yaml:5)" $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\nparameters: {default_n_val: 1, default_m_val: 2}\ndefault_m_val: 4\ndefault_n_val: 2'
expect "bad.yaml:4: default_n_val: a setting of merge_method cabs, not ties" $'merge_method: ties\nbase_model: pool/base\nmodels: [{model: pool/m1, parameters: {weight: 1}}]\ndefault_n_val: 2'
expect "cabs: the block sizes m_val of tensor" $'merge_method: cabs\nbase_model: pool/base\nmodels:\n  - model: pool/m1\n    parameters: {n_val: 1, m_val: 65521}\n  - model: pool/m2\n    parameters: {n_val: 1, m_val: 3}'
# An existing output folder is refused, and kept.
mkdir out && touch out/keep
set +e; "$KINTSUGI" merge <(printf 'merge_method: linear\nmodels:\n  - model: %s/pool/m1\n    parameters: {weight: 1}\n' "$work") --out out 2>/dev/null; rc=$?; set -e
[[ $rc -eq 2 && -f out/keep && -z $(compgen -G "out.partial*" || true) ]] || { echo "FAIL: existing folder (rc $rc)"; exit 1; }
echo "all merge error checks passed"
