#!/usr/bin/env bash
# ram, ramplus_tl, arcee_fusion, lrp and cabs (mergekit parity) end to end, on bf16 and
# f32 pools, checked against the independent Python reference
# (test/e2e/merge_ram_ref.py): fp32 outputs bit for bit, bf16 outputs within
# 1 bf16 ulp (0 expected: the reference does the same fp32 operations, and
# arcee_fusion's row divergences the same double operations in the same
# order). Recipes whose statistics cross ranks (ramplus_tl's counts,
# arcee_fusion's quartiles and rows) also run under mpirun -np 2 and 3, and
# cabs (superblocks split between ranks) under -np 3 (lrp's top-k is TIES's,
# held to every rank count in-process by merge_np2..4), and
# must give np 1's bytes; np 1 runs without mpirun (a singleton MPI rank).
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
MPIEXEC=${MPIEXEC:-mpirun}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ref="$KINTSUGI_SOURCE_DIR/test/e2e/merge_ram_ref.py"
mapfile -t runs < <(python3 "$ref" make "$work")
cd "$work"
for run in "${runs[@]}"; do
  read -r c nps <<<"$run"
  for np in ${nps//,/ }; do
    if [[ $np == 1 ]]; then
      "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-1" --chunk-mib 1 --max-shard-size 20KB >/dev/null
    else
      "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np "$np" \
        "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-$np" --chunk-mib 1 --max-shard-size 20KB >/dev/null
      diff -r "out-$c-1" "out-$c-$np" >/dev/null || { echo "FAIL: $c: np=$np differs from np=1"; exit 1; }
      echo "ok: $c: np=$np gives np=1's bytes"
    fi
  done
done
python3 "$ref" check "$work"
echo "all ram, ramplus_tl, arcee_fusion, lrp and cabs checks passed"
