#!/usr/bin/env bash
# della, della_linear, dare_linear, dare_ties and sce (mergekit parity) end
# to end, on bf16 and f32 pools, checked against the independent Python reference
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
source "$KINTSUGI_SOURCE_DIR/test/e2e/merge_cases.sh"
run_reference_cases "$KINTSUGI_SOURCE_DIR/test/e2e/merge_della_ref.py" --seed 7
echo "all della, dare and sce checks passed"
