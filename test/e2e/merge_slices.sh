#!/usr/bin/env bash
# mergekit's slices: and passthrough end to end: frankenmerges (layer count,
# names, config.json, tensors bit for bit against the inputs) and linear over
# slices with gradients at every level against an independent Python reference
# (test/e2e/merge_slices_ref.py, exact); ties over slices with gradients equals
# the per-layer merges of scalar recipes written out by hand, byte for byte, and
# so does task_arithmetic over slices with their own base_model (each layer's
# recipe naming that base at the top level). Every recipe but that one through
# mpirun -np 1, 2 and 3 into small shards: identical bytes.
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
MPIEXEC=${MPIEXEC:-mpirun}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ref="$KINTSUGI_SOURCE_DIR/test/e2e/merge_slices_ref.py"
cases=$(python3 "$ref" make "$work")
one_rank=" $(python3 "$ref" one-rank) "
cd "$work"
for c in $cases; do
  if [[ $one_rank == *" $c "* ]]; then
    # np 1 without mpirun (a singleton MPI rank: the same code).
    "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-1" --chunk-mib 1 --max-shard-size 8KB >/dev/null
    continue
  fi
  for np in 1 2 3; do
    "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np $np \
      "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-$np" --chunk-mib 1 --max-shard-size 8KB >/dev/null
  done
  for np in 2 3; do
    diff -r "out-$c-1" "out-$c-$np" >/dev/null || { echo "FAIL: $c: np=$np differs from np=1"; exit 1; }
  done
  [[ -f "out-$c-1/model.safetensors.index.json" ]] || { echo "FAIL: $c: expected shards"; exit 1; }
done
for c in frank_bf16 frank_f32 grad_linear; do
  python3 "$ref" check "$work" "$c" "out-$c-3"
done
# Each output layer of grad_ties and slice_base as its own one-layer merge
# with scalar settings (slice_base: the slice's base as the top-level one).
for c in grad_ties slice_base; do
  for f in $(python3 "$ref" by-layer "$work" $c); do
    "$KINTSUGI" -q merge "$f" --out "${f%.yaml}.out" >/dev/null
  done
done
python3 "$ref" compare-layers "$work" grad_ties out-grad_ties-2
python3 "$ref" compare-layers "$work" slice_base out-slice_base-1
# residual_weight (accepted, no effect, as in mergekit) is named in a warning.
"$KINTSUGI" merge slice_base.yaml --out rw-out 2>rw.err >/dev/null
grep -q "slice_base.yaml:13: residual_weight has no effect" rw.err ||
  { echo "FAIL: no warning for residual_weight: $(cat rw.err)"; exit 1; }
echo "all merge slices checks passed"
