#!/usr/bin/env bash
# kintsugi merge end to end: every method, output files byte-identical for
# mpirun -np 1, 2, 3, 4 and for a process run alone, which does not start MPI
# (docs/operations.md, "Start-up"); the folder's contents; linear against a
# Python double-precision reference.
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
MPIEXEC=${MPIEXEC:-mpirun}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py="$KINTSUGI_SOURCE_DIR/test/e2e/merge_pool.py"
python3 "$py" make "$work/pool"
cd "$work"

recipe() {  # name, method, body
  cat > "$work/$1.yaml" <<YAML
merge_method: $2
$3
YAML
}
recipe linear linear "models:
  - model: pool/m1
    parameters: {weight: 0.2}
  - model: pool/m2
    parameters: {weight: 0.5}
  - model: pool/m3
    parameters: {weight: 0.3}"
recipe gradient linear "models:
  - model: pool/m1
    parameters:
      weight: [1.0, 0.0]
  - model: pool/m2
    parameters:
      weight:
        - filter: mlp
          value: [0.0, 1.0]
        - value: 0.5
dtype: float32"
recipe task task_arithmetic "base_model: pool/base
models:
  - model: pool/m1
    parameters: {weight: 0.7}
  - model: pool/m2
    parameters: {weight: 0.4}
parameters: {lambda: 0.8}"
recipe ties ties "base_model: pool/base
models:
  - model: pool/base
  - model: pool/m1
    parameters: {weight: 1.0, density: 0.3}
  - model: pool/m2
    parameters: {weight: 0.6, density: 0.5}
  - model: pool/m3
    parameters: {weight: 0.8, density: 0.7}
out_dtype: float16"
recipe dare_ties dare_ties "base_model: pool/base
models:
  - model: pool/m1
    parameters: {weight: 1.0, density: 0.4}
  - model: pool/m2
    parameters: {weight: 0.5, density: 0.6}
parameters: {normalize: true}"
recipe dare_linear dare_linear "base_model: pool/base
models:
  - model: pool/m1
    parameters: {weight: 0.5, density: 0.5}
  - model: pool/m3
    parameters: {weight: 0.5, density: 0.5}"
recipe stock model_stock "base_model: pool/base
models:
  - model: pool/m1
  - model: pool/m2
  - model: pool/m3"
recipe slerp slerp "base_model: pool/base
models:
  - model: pool/base
  - model: pool/m2
parameters:
  t:
    - filter: self_attn
      value: [0.1, 0.9]
    - value: 0.4"

for r in linear gradient task ties dare_ties dare_linear stock slerp; do
  for np in 1 2 3 4; do
    "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np $np \
      "$KINTSUGI" -q merge "$r.yaml" --out "out-$r-$np" --seed 7 --max-shard-size 200KB --chunk-mib 1 >/dev/null
    [[ -z $(compgen -G "out-$r-$np.partial*" || true) ]] || { echo "FAIL: $r np=$np left a .partial folder"; exit 1; }
  done
  # Alone, without MPI: a messaging layer that does not exist would make
  # MPI_Init fail, so this run passes only if MPI is never started.
  OMPI_MCA_pml=no-such-layer "$KINTSUGI" -q merge "$r.yaml" --out "out-$r-alone" --seed 7 \
    --max-shard-size 200KB --chunk-mib 1 >/dev/null || { echo "FAIL: $r alone (did it start MPI?)"; exit 1; }
  for np in 2 3 4 alone; do
    diff -r "out-$r-1" "out-$r-$np" >/dev/null || { echo "FAIL: $r: np=$np differs from np=1"; exit 1; }
  done
  echo "ok: $r byte-identical for np 1..4 and alone ($(ls "out-$r-1" | grep -c safetensors$) shard files)"
done

# The folder: shards + index, config with torch_dtype, tokenizer, recipe, metadata.
o=out-ties-1
[[ -f $o/model.safetensors.index.json ]] || { echo "FAIL: no index"; exit 1; }
grep -q '"torch_dtype": "float16"' $o/config.json || { echo "FAIL: torch_dtype"; cat $o/config.json; exit 1; }
grep -q '"from": "base"' $o/tokenizer.json || { echo "FAIL: tokenizer not from the base"; exit 1; }
cmp -s $o/kintsugi_recipe.yaml ties.yaml || { echo "FAIL: recipe not copied"; exit 1; }
sha=$(sha256sum ties.yaml | cut -d' ' -f1)
meta=$(python3 "$py" meta $o)  # a variable, not a pipe: grep -q's early exit must not SIGPIPE python
[[ $meta == *"\"recipe_sha256\": \"$sha\""* ]] || { echo "FAIL: recipe hash"; exit 1; }
[[ $meta == *'"merged_by": "kintsugi"'* ]] || { echo "FAIL: merged_by"; exit 1; }
grep -q '"torch_dtype": "bfloat16"' out-linear-1/config.json || { echo "FAIL: bf16 torch_dtype"; exit 1; }
grep -q '"torch_dtype": "float32"' out-gradient-1/config.json || { echo "FAIL: fp32 torch_dtype"; exit 1; }

# Linear against an independent reference.
python3 "$py" linear-check out-linear-3 0.2,0.5,0.3 pool/m1 pool/m2 pool/m3

# Different seeds give different DARE masks; the same seed the same bytes.
"$KINTSUGI" -q merge dare_ties.yaml --out seed8 --seed 8 --chunk-mib 1 --max-shard-size 200KB >/dev/null
if diff -r seed8 out-dare_ties-1 >/dev/null; then echo "FAIL: seed has no effect"; exit 1; fi
echo "all merge e2e checks passed"
