#!/usr/bin/env bash
# The same job and seed give the same candidates and scores whatever the
# number of evaluation groups (1, 2 and 3 ranks with T = 1), and the state is
# the documented layout (read with h5py).
source "$(dirname "$0")/service_lib.sh"
make_job "$work/job.yaml"
for np in 1 2 3; do
  mpi "$np" "$KINTSUGI" optimize "$work/job.yaml" --state "$work/np$np.h5" 2>"$work/np$np.log" ||
    { cat "$work/np$np.log" >&2; fail "optimize on $np ranks"; }
done
grep -q "generation 0: 6/20 evaluations" "$work/np2.log" || fail "no progress line per generation"
same_evals "$work/np1.h5" "$work/np2.h5"
same_evals "$work/np1.h5" "$work/np3.h5"
[[ $(evals_count "$work/np1.h5") == 20 ]] || fail "budget of 20 not used exactly"
/usr/bin/python3 - "$work/np1.h5" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
w = f["evals"]["weights"][()]
assert w.shape == (20, 4), w.shape
assert np.allclose(w.sum(axis=1), 1.0, atol=1e-12), "simplex weights must sum to 1"
assert (f["evals"]["status"][()] == 0).all()
names = [n.decode() if isinstance(n, bytes) else n for n in f["baselines"]["names"][()]]
assert len(names) == 4, names  # the checkpoints alone
assert len(f["pareto"]["indices"][()]) >= 1
assert len(f["test"]["eval_index"][()]) >= 1
obj = f["evals"]["objective"][()]
sc = f["evals"]["scores"][()]
assert np.allclose(obj, sc.mean(axis=1)), "objective kind mean"
print("layout ok")
PY
