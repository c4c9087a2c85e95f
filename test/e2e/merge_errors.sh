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
expect "bad.yaml:4: breadcrumbs: rescale: true (L1 rescaling of magnitude-pruned deltas) is not supported" $'merge_method: breadcrumbs\nbase_model: pool/base\nparameters:\n  rescale: true\nmodels:\n  - model: pool/m1\n    parameters: {weight: 1}'
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
# An existing output folder is refused, and kept.
mkdir out && touch out/keep
set +e; "$KINTSUGI" merge <(printf 'merge_method: linear\nmodels:\n  - model: %s/pool/m1\n    parameters: {weight: 1}\n' "$work") --out out 2>/dev/null; rc=$?; set -e
[[ $rc -eq 2 && -f out/keep && -z $(compgen -G "out.partial*" || true) ]] || { echo "FAIL: existing folder (rc $rc)"; exit 1; }
echo "all merge error checks passed"
