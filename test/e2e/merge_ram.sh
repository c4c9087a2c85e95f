#!/usr/bin/env bash
# ram, ramplus_tl, arcee_fusion, lrp, cabs and core_space (mergekit parity) end to end, on bf16 and
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
source "$KINTSUGI_SOURCE_DIR/test/e2e/merge_cases.sh"
run_reference_cases "$KINTSUGI_SOURCE_DIR/test/e2e/merge_ram_ref.py"
echo "all ram, ramplus_tl, arcee_fusion, lrp, cabs and core_space checks passed"
