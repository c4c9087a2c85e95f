#!/usr/bin/env bash
# A candidate whose evaluation fails (here: merge weights so large that the
# forward pass overflows and bits per byte is not finite) is recorded with
# status 1 and its error text, gets the documented penalty (the worst
# checkpoint's objective minus 1), and the search goes on: it ends normally,
# by its budget or a stop rule (all-equal penalties trip tolfun), exit 0.
source "$(dirname "$0")/service_lib.sh"
make_job "$work/base.yaml"
failing_job "$work/base.yaml" "$work/job.yaml"
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/s.h5" 2>"$work/log" ||
  { cat "$work/log" >&2; fail "the search did not survive failing candidates"; }
grep -q "failed:" "$work/log" || { cat "$work/log" >&2; fail "no warning logged for a failed candidate"; }
/usr/bin/python3 - "$work/s.h5" <<'PY'
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
st = f["evals"]["status"][()]
assert len(st) in (6, 12), len(st)  # whole generations, until the budget or a stop rule
failed = np.flatnonzero(st == 1)
assert len(failed) >= 1, "expected failing candidates"
errors = [e.decode() if isinstance(e, bytes) else e for e in f["evals"]["error"][()]]
assert all("bits_per_byte" in errors[i] for i in failed), [errors[i] for i in failed]
assert all(errors[i] == "" for i in np.flatnonzero(st == 0))
# bits per byte is lower-is-better: the objective is its negation; the
# penalty is the worst checkpoint's objective minus 1.
recipes = [r.decode() if isinstance(r, bytes) else r for r in f["baselines"]["recipes"][()]]
ck = np.array([o for o, r in zip(f["baselines"]["objective"][()], recipes) if r == "checkpoint"])
penalty = ck.min() - 1.0
obj = f["evals"]["objective"][()]
assert np.all(obj[failed] == penalty), (obj[failed], penalty)
assert np.all(np.isnan(f["evals"]["scores"][()][failed]))
print(f"{len(failed)} of {len(st)} candidates failed and got the penalty {penalty:.4f}")
PY
