#!/usr/bin/env bash
# Bad input to the service verbs: one clear line on stderr, exit 2, and the
# state already written stays as it was.
source "$(dirname "$0")/service_lib.sh"
make_job "$work/job.yaml" budget=6
"$KINTSUGI" optimize "$work/job.yaml" --state "$work/s.h5" 2>/dev/null
cp "$work/s.h5" "$work/s.orig.h5"

# expect_error CODE PATTERN CMD...: exit CODE, one stderr line matching PATTERN.
expect_error() {
  local code=$1 pattern=$2; shift 2
  local rc=0
  "$@" >"$work/out" 2>"$work/err" || rc=$?
  [[ $rc == "$code" ]] || { cat "$work/err" >&2; fail "$* exited $rc, expected $code"; }
  local errors
  errors=$(grep -c "kintsugi: error:" "$work/err" || true)
  [[ $errors == 1 ]] || { cat "$work/err" >&2; fail "$*: expected one error line, got $errors"; }
  grep -q -- "$pattern" "$work/err" || { cat "$work/err" >&2; fail "$*: message does not match '$pattern'"; }
}

make_job "$work/seed9.yaml" budget=6 seed=9
expect_error 2 "cannot resume.*search.seed" "$KINTSUGI" optimize "$work/seed9.yaml" --state "$work/s.h5" --resume
expect_error 2 "already holds a search" "$KINTSUGI" optimize "$work/job.yaml" --state "$work/s.h5"
expect_error 2 "no state to resume" "$KINTSUGI" optimize "$work/job.yaml" --state "$work/none.h5" --resume
expect_error 2 "--budget must be at least 1" "$KINTSUGI" optimize "$work/job.yaml" --state "$work/x.h5" --budget 0
expect_error 2 "needs objective.kind chebyshev" "$KINTSUGI" optimize "$work/job.yaml" --state "$work/x.h5" --preference add=1
# A damaged optimizer state: the file and the entry, and the state untouched.
cp "$work/s.h5" "$work/damaged.h5"
/usr/bin/python3 -c "
import h5py, sys
with h5py.File(sys.argv[1], 'r+') as f:
    f['optimizer/flat_generations'][0] = -2" "$work/damaged.h5"
cp "$work/damaged.h5" "$work/damaged.orig.h5"
expect_error 2 "damaged.h5: optimizer state: flat_generations -2 is negative" \
  "$KINTSUGI" optimize "$work/job.yaml" --state "$work/damaged.h5" --resume --budget 12
cmp "$work/damaged.h5" "$work/damaged.orig.h5" || fail "a refused resume changed the state"
cmp "$work/s.h5" "$work/s.orig.h5" || fail "a refused command changed the state"

echo "not hdf5" >"$work/garbage.h5"
expect_error 2 "garbage.h5" "$KINTSUGI" report "$work/garbage.h5"
expect_error 2 "garbage.h5" "$KINTSUGI" export "$work/garbage.h5" --out "$work/o"
expect_error 2 "holds 6 evaluations" "$KINTSUGI" export "$work/s.h5" --eval 99 --out "$work/o"
[[ ! -e "$work/o" ]] || fail "a refused export left a folder"

# A job whose task file is broken names the file and line.
sed 's/"context"/"kontext"/' "$KINTSUGI_SOURCE_DIR/examples/demo/tasks/add.search.jsonl" >"$work/add.search.jsonl"
/usr/bin/python3 - "$work/job.yaml" "$work" <<'PY'
import json, sys, yaml
job = yaml.safe_load(open(sys.argv[1]))
job["tasks"][0]["file"] = sys.argv[2] + "/add.{split}.jsonl"
json.dump(job, open(sys.argv[2] + "/badtask.yaml", "w"))
PY
expect_error 2 "add.search.jsonl:1" "$KINTSUGI" optimize "$work/badtask.yaml" --state "$work/y.h5"

# An unknown key in the job: file and line.
printf 'pool:\n  checkpoints: [a]\n  bogus: 1\n' >"$work/bad.yaml"
expect_error 2 "bad.yaml:3" "$KINTSUGI" optimize "$work/bad.yaml"
