#!/usr/bin/env bash
# mergekit-parity methods end to end (breadcrumbs, breadcrumbs_ties, nearswap,
# nuslerp, multislerp, karcher; ties and the breadcrumbs methods with rescale):
# each recipe on a bf16 and an f32 pool on one rank, checked against an
# independent Python reference (test/e2e/merge_methods_ref.py): fp32 outputs
# bit for bit, bf16 outputs within 1 bf16 ulp (the reference does the same
# fp32 operations in the same order, so 0 is expected; the allowance only
# absorbs a summation order that the definitions leave open). The first
# recipe of each method on each pool also runs through mpirun (-np 3 for
# bf16, -np 2 for f32) and must give byte-identical output folders; every
# recipe's rank invariance is held in process by merge_np2..4
# (test/unit/test_merge_mpi.cpp), which cost no process start per recipe.
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
MPIEXEC=${MPIEXEC:-mpirun}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ref="$KINTSUGI_SOURCE_DIR/test/e2e/merge_methods_ref.py"
cases=$(python3 "$ref" make "$work")
cd "$work"
checks=()
declare -A launched=()
for c in $cases; do
  # np 1 without mpirun (a singleton MPI rank: the same code; mpirun's
  # start-up is most of this test's time).
  "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-1" --chunk-mib 1 --max-shard-size 20KB >/dev/null
  method=$(sed -n 's/^merge_method: //p' "$c.yaml")
  grep -q "\"merge_method\":\"$method\"" "out-$c-1/"*.safetensors ||
    { echo "FAIL: $c: merge_method missing from the metadata"; exit 1; }
  checks+=("$c" "out-$c-1")
  np=3
  [[ $c == *@f32 ]] && np=2
  # ties runs on 1 to 4 ranks in merge_invariance.sh, its rescale in
  # merge_np2..4: no launch of its own here.
  [[ $method == ties || -n ${launched[$method@$np]:-} ]] && continue
  launched[$method@$np]=1
  "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np $np \
    "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-$np" --chunk-mib 1 --max-shard-size 20KB >/dev/null
  diff -r "out-$c-1" "out-$c-$np" >/dev/null || { echo "FAIL: $c: np=$np differs from np=1"; exit 1; }
  echo "ok: $c: np=$np gives np=1's bytes"
done
(( ${#launched[@]} == 12 )) || { echo "FAIL: expected 6 methods x 2 pools under mpirun, got ${!launched[*]}"; exit 1; }
python3 "$ref" check "$work" "${checks[@]}"
# Shards so small that some hold only the ranges of ranks other than 0 (the
# f32 pool at 8 KB: 5 files): rank 0 still commits every file, and the
# output equals np 1's (this once aborted with "0 of 1 tensors written").
cat >shards.yaml <<'YAML'
merge_method: linear
models:
  - model: f32/m1
    parameters: {weight: 0.25}
  - model: f32/m2
    parameters: {weight: 0.75}
YAML
for np in 1 2 3; do
  "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np $np \
    "$KINTSUGI" -q merge shards.yaml --out "shards-$np" --chunk-mib 1 --max-shard-size 8KB >/dev/null
done
n=$(find shards-1 -name "model-*.safetensors" | wc -l)
(( n >= 4 )) || { echo "FAIL: expected at least 4 shards at 8 KB, got $n"; exit 1; }
for np in 2 3; do
  diff -r shards-1 "shards-$np" >/dev/null || { echo "FAIL: 8 KB shards: np=$np differs from np=1"; exit 1; }
done
echo "all merge method checks passed"
