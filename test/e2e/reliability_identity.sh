#!/usr/bin/env bash
# Issue 15, class 3: identities checked, not counts. export verifies the pool
# by names and fingerprints (a reordered pool, a checkpoint with other weights
# under the same name: exit 2); --resume notices task files whose bytes
# changed (and still resumes a state written before task data was recorded);
# every MPI rank must read the same job text, checkpoints and task files (a
# stale copy on one node: exit 2 naming the rank, its host and the file).
source "$(dirname "$0")/service_lib.sh"
source "$(dirname "$0")/reliability_lib.sh"
cd "$work"
host=$(hostname)
# Two copies of the demo: a/ and b/, jobs with paths relative to the job file.
copy_demo "$work/src"
demo_job "$work/src" abs.yaml budget=6
mkdir a
cp -r "$work/src/examples/demo/pool" "$work/src/examples/demo/tasks" a/
sed "s#$work/src/examples/demo/##g" abs.yaml >a/job.yaml
grep -q '"pool/sft-add-lr1e-4-step200"' a/job.yaml || fail "a/job.yaml has no relative paths"
cp -r a b
names=$(python3 -c "import json; print(' '.join(c.split('/')[-1] for c in json.load(open('a/job.yaml'))['pool']['checkpoints']))")
read -r c0 c1 _ <<<"$names"

mpi 2 "$KINTSUGI" optimize a/job.yaml --state s.h5 2>log || { cat log; fail "optimize"; }
h5ls s.h5/meta >/dev/null
/usr/bin/python3 - s.h5 <<'PY' || fail "the state records no task data fingerprints"
import h5py, sys
f = h5py.File(sys.argv[1], "r")
keys = list(f["meta/settings_keys"].asstr()[()])
vals = dict(zip(keys, f["meta/settings_values"].asstr()[()]))
data = sorted(k for k in keys if k.startswith("data."))
assert data == sorted(f"data.tasks.{t}.{s}" for t in ("add", "rev", "bal") for s in ("search", "test")), data
PY
echo "ok: the state records the task files' fingerprints"

# --- export --job: names and fingerprints -----------------------------------
python3 - a/job.yaml swapped.yaml <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); c = j["pool"]["checkpoints"]
c[0], c[1] = c[1], c[0]
for t in j["tasks"]: t["file"] = "a/" + t["file"]
j["pool"]["checkpoints"] = ["a/" + p for p in c]; j["pool"]["base"] = "a/" + j["pool"]["base"]
json.dump(j, open(sys.argv[2], "w"), indent=1)
PY
refused "swapped.yaml: checkpoint 0 of the pool is $c1" "the search ran with $c0 there" "reordered" -- \
  "$KINTSUGI" export s.h5 --job swapped.yaml --out e1
refused "rank 0 on $host: swapped.yaml: checkpoint 0 of the pool is $c1" -- \
  mpi 2 "$KINTSUGI" export s.h5 --job swapped.yaml --out e1
# b/: checkpoint 1 holds checkpoint 2's weights under checkpoint 1's name.
c2=$(echo "$names" | cut -d' ' -f3)
rm -r "b/pool/$c1" && cp -r "b/pool/$c2" "b/pool/$c1"
refused "b/job.yaml: checkpoint 1 (" "pool/$c1) is not the one the search ran with: fingerprint" -- \
  "$KINTSUGI" export s.h5 --job b/job.yaml --out e1
[[ ! -e e1 && -z $(compgen -G "e1.*" || true) ]] || fail "a refused export left a folder"
# The recorded job (a/job.yaml), its checkpoint changed in place.
cp -r a a.orig
cp "b/pool/$c1/model.safetensors" "a/pool/$c1/model.safetensors"
refused "checkpoint 1 (" "$c1) is not the one the search ran with" -- mpi 2 "$KINTSUGI" export s.h5 --out e1
rm -r a && mv a.orig a
mpi 2 "$KINTSUGI" export s.h5 --out e1 --dtype float32 2>log || { cat log; fail "export of the unchanged pool"; }
"$KINTSUGI" export s.h5 --job a/job.yaml --out e2 --dtype float32 2>log || { cat log; fail "export --job of the same pool"; }
cmp e1/model.safetensors e2/model.safetensors || fail "export with and without --job differ"
echo "ok: export checks the pool's names and fingerprints"

# --- --resume: task data ----------------------------------------------------
cp a/tasks/add.search.jsonl add.orig
python3 - a/tasks/add.search.jsonl <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
ex = json.loads(lines[0]); ex["target"] += "0"  # one answer changed
lines[0] = json.dumps(ex)
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
before=$(tree_sum s.h5)
refused "s.h5: cannot resume: task file " "a/tasks/add.search.jsonl changed since the state was made" -- \
  mpi 2 "$KINTSUGI" optimize a/job.yaml --state s.h5 --resume --budget 12
cp add.orig a/tasks/add.search.jsonl
mv a/tasks/rev.test.jsonl rev.test.orig
refused "cannot resume: the state was made with task data data.tasks.rev.test" -- \
  "$KINTSUGI" optimize a/job.yaml --state s.h5 --resume --budget 12
mv rev.test.orig a/tasks/rev.test.jsonl
[[ $(tree_sum s.h5) == "$before" ]] || fail "a refused resume changed the state"
# A state from before task data was recorded resumes (with a warning) and
# records it from then on.
cp s.h5 old.h5
/usr/bin/python3 - old.h5 <<'PY'
import h5py, sys
with h5py.File(sys.argv[1], "r+") as f:
    m = f["meta"]
    keys = list(m["settings_keys"].asstr()[()]); vals = list(m["settings_values"].asstr()[()])
    kept = [(k, v) for k, v in zip(keys, vals) if not k.startswith("data.")]
    assert len(kept) < len(keys)
    # kintsugi's states hold fixed-length strings (docs/state.md): keep each
    # column's own type.
    for name, col in (("settings_keys", [k for k, _ in kept]), ("settings_values", [v for _, v in kept])):
        dt = m[name].dtype
        del m[name]
        m.create_dataset(name, data=[x.encode() for x in col], dtype=dt)
PY
mpi 2 "$KINTSUGI" optimize a/job.yaml --state old.h5 --resume --budget 12 --test-top 1 2>log ||
  { cat log; fail "resume of a state without task data"; }
grep -q "predates task data fingerprints" log || fail "no warning for a state without task data"
/usr/bin/python3 -c "
import h5py, sys
k = list(h5py.File('old.h5', 'r')['meta/settings_keys'].asstr()[()])
sys.exit(0 if any(x.startswith('data.') for x in k) else 1)" || fail "the resumed old state did not record task data"
[[ $(evals_count old.h5) == 12 ]] || fail "the old state's search did not continue"
echo "ok: --resume checks task data; old states resume"

# --- every rank reads the same job, checkpoints and task files --------------
on_ranks() {  # DIR0 DIR1 VERB...: rank 0 runs with DIR0/job.yaml, rank 1 with DIR1/job.yaml
  local d0=$1 d1=$2; shift 2
  mpi 2 bash -c 'd=$0; [[ $OMPI_COMM_WORLD_RANK == 1 ]] && d=$1; shift; exec "$KINTSUGI" "$1" "$d/job.yaml" "${@:2}"' \
    "$d0" "$d1" "$@"
}
# b/ differs from a/ in checkpoint 1 (above): the same job text, other bytes.
refused "rank 1 on $host reads checkpoint 1 ($work/b/pool/$c1) with fingerprint" "rank 0 on $host reads $work/a/pool/$c1 with" "stale copy" -- \
  on_ranks a b optimize --state "$work/r1.h5"
[[ ! -e r1.h5 ]] || fail "a refused start wrote a state"
refused "rank 1 on $host reads checkpoint 1" -- on_ranks a b baselines --state "$work/r1.h5"
mkdir c && cp -r a/pool a/tasks c/ && cp a/job.yaml c/job.yaml && echo "# a comment" >>c/job.yaml
refused "rank 1 on $host read the job file " "c/job.yaml with another text than rank 0 on $host read " "a/job.yaml (FNV-1a" -- \
  on_ranks a c optimize --state "$work/r1.h5"
rm c/job.yaml && cp a/job.yaml c/job.yaml && echo '{"prompt": "x", "answer": "y"}' >>c/tasks/bal.test.jsonl
refused "rank 1 on $host reads task data data.tasks.bal.test as xxh64:" "every rank must read the same task files" -- \
  on_ranks a c optimize --state "$work/r1.h5"
rm -r c && cp -r a c && printf ' ' >>"c/pool/$c0/tokenizer.json"
refused "rank 1 on $host reads $work/c/pool/$c0/tokenizer.json as xxh64:" "every rank must read the same checkpoint files" -- \
  on_ranks a c optimize --state "$work/r1.h5"
rm -r c && cp -r a c && cp "c/pool/$c0/model.safetensors" c/pool/base/model.safetensors
refused "rank 1 on $host reads $work/c/pool/base as " -- on_ranks a c baselines --state "$work/r1.h5"
rm -r c && cp -r a c
on_ranks a c optimize --state "$work/r2.h5" --budget 6 --test-top 1 2>log || { cat log; fail "identical copies on two ranks"; }
echo "all identity checks passed"
