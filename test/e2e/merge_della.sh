#!/usr/bin/env bash
# della, della_linear and sce (mergekit parity) end to end, on bf16 and f32
# pools, checked against the independent Python reference
# (test/e2e/merge_della_ref.py): fp32 outputs bit for bit, bf16 outputs within
# 1 bf16 ulp (0 expected: the reference does the same fp32 operations and
# draws DELLA's coin flips from its own Philox). Four recipes (two of each
# kind, on the paths that cross ranks) also run under mpirun -np 2 and 3 and
# must give np 1's bytes; np 1 runs without mpirun (a singleton MPI rank: the
# same code, and mpirun's start-up is most of this test's time). Then the
# statistical check of DELLA, which needs no reference generator: keep rates
# per rank band against the probabilities, survivors rescaled by the L1
# factor of the mask observed.
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
MPIEXEC=${MPIEXEC:-mpirun}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ref="$KINTSUGI_SOURCE_DIR/test/e2e/merge_della_ref.py"
mapfile -t runs < <(python3 "$ref" make "$work")
cd "$work"
for run in "${runs[@]}"; do
  read -r c nps <<<"$run"
  for np in ${nps//,/ }; do
    if [[ $np == 1 ]]; then
      "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-1" --seed 7 --chunk-mib 1 --max-shard-size 20KB >/dev/null
    else
      "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np "$np" \
        "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-$np" --seed 7 --chunk-mib 1 --max-shard-size 20KB >/dev/null
      diff -r "out-$c-1" "out-$c-$np" >/dev/null || { echo "FAIL: $c: np=$np differs from np=1"; exit 1; }
      echo "ok: $c: np=$np gives np=1's bytes"
    fi
  done
done
python3 "$ref" check "$work"
echo "all della and sce checks passed"
