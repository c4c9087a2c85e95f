#!/usr/bin/env bash
# Issue 15, classes 4, 5, 8 and 9, end to end through the CLI:
# - generated recipes are YAML written by an emitter: checkpoint folders whose
#   names hold quotes, a newline, '#', ': ', a comma or non-ASCII export the
#   right weights onto the right folders (PyYAML, an independent reader, reads
#   the exported recipe back; the bytes equal a merge of plain copies);
# - numbers sane: NaN/inf/absurd recipe values, negative unsigned options, an
#   out-of-range --eval, a NaN in a saved optimizer state, a NaN model in eval;
# - every write checked: a full disk during a state save, eval --samples on a
#   full disk, results to a full stdout, a folder too full for a state before
#   the first evaluation;
# - messages: report --csv quotes as RFC 4180 says; a filesystem fault is one
#   line naming the path, not libstdc++'s text.
source "$(dirname "$0")/service_lib.sh"
source "$(dirname "$0")/reliability_lib.sh"
cd "$work"
copy_demo "$work/src"
demo=$work/src/examples/demo
c0=sft-add-lr1e-4-step200 c1=sft-rev-lr1e-4-step200

echo "--- 4. hostile folder names through optimize, baselines and export"
mkdir pool
odd0=$'pool/a "q" \'s\' b\nnl #x: -y'
odd1='pool/ünï, 模型 {x} [y] &z *w !t |p'
cp -r "$demo/pool/$c0" "$odd0"
cp -r "$demo/pool/$c1" "$odd1"
# A decoy: the folder a recipe cut at the newline would merge instead.
cp -r "$demo/pool/sft-bal-lr1e-4-step200" 'pool/a "q" '"'s'"' b'
cp -r "$demo/pool/$c0" plain0
cp -r "$demo/pool/$c1" plain1
demo_job "$work/src" j.yaml budget=4 population=2
/usr/bin/python3 - j.yaml "$work/$odd0" "$work/$odd1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["pool"]["checkpoints"] = sys.argv[2:4]
json.dump(j, open(sys.argv[1], "w"), indent=1)
PY
"$KINTSUGI" baselines j.yaml --state s.h5 2>log || { cat log; fail "baselines with odd names"; }
"$KINTSUGI" optimize j.yaml --state s.h5 2>>log || { cat log; fail "optimize with odd names"; }
"$KINTSUGI" export s.h5 --out out 2>>log || { cat log; fail "export with odd names"; }
/usr/bin/python3 - out/kintsugi_recipe.yaml "$work/$odd0" "$work/$odd1" "$work/plain0" "$work/plain1" \
  plain.yaml <<'PY'
import sys, yaml
r = yaml.safe_load(open(sys.argv[1]))
got = [m["model"] for m in r["models"]]
assert got == sys.argv[2:4], f"the exported recipe names {got!r}"
for m, p in zip(r["models"], sys.argv[4:6]):
    m["model"] = p
yaml.safe_dump(r, open(sys.argv[6], "w"))
print("the exported recipe reads back the two odd paths exactly")
PY
"$KINTSUGI" merge plain.yaml --out plain-out 2>>log || { cat log; fail "merge of the plain copies"; }
/usr/bin/python3 - out/model.safetensors plain-out/model.safetensors <<'PY' ||
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), "tensors differ"
print(f"{len(a)} tensors equal, bit for bit")
PY
  fail "export over the odd folders differs from the same merge of plain copies"
echo "export merged the odd folders, not the decoy"

echo "--- 9. report --csv quotes as RFC 4180 says"
"$KINTSUGI" report s.h5 --csv >report.csv
/usr/bin/python3 - report.csv "$work/$odd0" <<'PY'
import csv, os, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
assert rows[0][:4] == ["kind", "name", "split", "objective"], rows[0]
assert all(len(r) == len(rows[0]) for r in rows), [len(r) for r in rows]
names = {r[1] for r in rows[1:] if r[0] == "checkpoint"}
assert os.path.basename(sys.argv[2]) in names, names
print(f"{len(rows) - 1} rows, every one {len(rows[0])} fields; names with quotes and a newline intact")
PY

echo "--- 5. numbers: recipes, options, optimizer state, a NaN model"
for v in .nan .inf 1e400 1e7 '[0.5, .nan]'; do
  printf 'merge_method: linear\nmodels:\n  - model: %s\n    parameters:\n      weight: %s\n  - model: %s\n' \
    "$work/plain0" "$v" "$work/plain1" >bad.yaml
  fails_with 2 "bad.yaml:5: models[0].parameters.weight" -- "$KINTSUGI" merge bad.yaml --out m
done
[[ ! -e m ]] || fail "a refused merge left an output"
fails_with 2 "--budget" -- "$KINTSUGI" optimize j.yaml --state n.h5 --budget -3
fails_with 2 "--seed" -- "$KINTSUGI" optimize j.yaml --state n.h5 --seed -1
fails_with 2 "--test-top" -- "$KINTSUGI" optimize j.yaml --state n.h5 --test-top -2
fails_with 2 "--seed" -- "$KINTSUGI" merge plain.yaml --out m --seed -5
fails_with 2 "--eval" -- "$KINTSUGI" export s.h5 --out e --eval -1
fails_with 2 "--eval 99: " -- "$KINTSUGI" export s.h5 --out e --eval 99
[[ ! -e n.h5 && ! -e e ]] || fail "a refused command wrote an output"
cp s.h5 nan.h5
/usr/bin/python3 - nan.h5 <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    c = f["optimizer/C"]
    v = c[()]
    v[0] = float("nan")
    c[...] = v
PY
fails_with 2 "optimizer state: 'C'[0] is nan, not a finite number" -- \
  "$KINTSUGI" optimize j.yaml --state nan.h5 --resume --budget 8
# A checkpoint whose embeddings are NaN: a perplexity score is NaN (exit 1,
# named), a generation task stops at the NaN logits (exit 1).
cp -r plain0 nanmodel
/usr/bin/python3 - nanmodel/model.safetensors <<'PY'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
for k, v in h.items():
    if "embed" in k:
        s, e = v["data_offsets"]
        width = {"BF16": 2, "F16": 2, "F32": 4}[v["dtype"]]
        nan = {2: b"\xc0\x7f", 4: b"\x00\x00\xc0\x7f"}[width] if v["dtype"] != "F16" else b"\x00\x7e"
        for i in range(8 + n + s, 8 + n + e, width):
            b[i:i + width] = nan
open(p, "wb").write(b)
PY
/usr/bin/python3 - "$demo/tasks/add.search.jsonl" ppl.search.jsonl <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in list(open(sys.argv[1]))[:5]:
        e = json.loads(line)
        out.write(json.dumps({"text": e["context"] + e["target"]}) + "\n")
PY
/usr/bin/python3 - j.yaml ppl.yaml "$work/ppl.{split}.jsonl" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["tasks"] = [{"name": "ppl", "file": sys.argv[3], "kind": "perplexity", "split": "search"}]
json.dump(j, open(sys.argv[2], "w"), indent=1)
PY
fails_with 1 "nanmodel: task ppl: bits_per_byte is not a number" -- \
  "$KINTSUGI" eval ppl.yaml --checkpoint nanmodel --json
fails_with 1 "the model's logits are NaN" -- "$KINTSUGI" eval j.yaml --checkpoint nanmodel

echo "--- 8. every write checked: full disks and a full stdout"
mkdir tiny
# A folder too small for the state: refused before any evaluation is spent.
unshare -m bash -c "mount -t tmpfs -o size=16k tmpfs tiny && \
  '$KINTSUGI' optimize j.yaml --state tiny/s.h5 >/dev/null 2>tiny.log; echo \$? >tiny.rc; ls -A tiny >tiny.ls"
[[ $(cat tiny.rc) == 1 ]] || { cat tiny.log; fail "a state folder too small: exit $(cat tiny.rc)"; }
grep -q "No space left on device" tiny.log || { cat tiny.log; fail "no space: no clear line"; }
! grep -q "scoring the" tiny.log || { cat tiny.log; fail "evaluations ran before the state folder was checked"; }
[[ $(cat tiny.ls) == s.h5.lock ]] || fail "the full folder holds more than the lock: $(cat tiny.ls)"
echo "ok: a state folder with no room is refused before the first evaluation"
# A save that fails midway (the disk fills during the run): exit 1, one line,
# the previous state intact, no temporary file left.
cp s.h5 tiny-src.h5
size=$(( $(stat -c %s s.h5) * 3 + 65536 ))
before=$(evals_count s.h5)
unshare -m bash -c "mount -t tmpfs -o size=$size tmpfs tiny && cp tiny-src.h5 tiny/s.h5 && \
  ( '$KINTSUGI' optimize j.yaml --state tiny/s.h5 --resume --budget 40 >/dev/null 2>tiny.log; echo \$? >tiny.rc ) & \
  pid=\$!; \
  for _ in \$(seq 400); do grep -q 'generation' tiny.log 2>/dev/null && break; sleep 0.05; done; \
  head -c $size /dev/zero >tiny/filler 2>/dev/null; wait \$pid; rm -f tiny/filler; \
  ls -A tiny >tiny.ls; cp tiny/s.h5 tiny-after.h5"
[[ $(cat tiny.rc) == 1 ]] || { cat tiny.log; fail "a save on a full disk: exit $(cat tiny.rc)"; }
grep -q "^kintsugi: error: .*No space left on device" tiny.log || { cat tiny.log; fail "no clear line"; }
! grep -qE "Segmentation|signal" tiny.log || { cat tiny.log; fail "crashed"; }
! grep -q "tmp-" tiny.ls || fail "a temporary file was left: $(cat tiny.ls)"
# The state is the last good save: complete, and with every evaluation saved before.
"$KINTSUGI" report tiny-after.h5 >/dev/null || fail "the state left by a failed save does not read"
(( $(evals_count tiny-after.h5) >= before )) || fail "the failed save lost evaluations"
echo "ok: a save on a full disk fails with one line and keeps the previous state"
# eval --samples on a full disk: exit 1, and no file.
unshare -m bash -c "mount -t tmpfs -o size=4k tmpfs tiny && \
  '$KINTSUGI' eval j.yaml --checkpoint plain0 --samples tiny/s.jsonl >/dev/null 2>tiny.log; \
  echo \$? >tiny.rc; ls -A tiny >tiny.ls"
[[ $(cat tiny.rc) == 1 ]] || { cat tiny.log; fail "eval --samples on a full disk: exit $(cat tiny.rc)"; }
grep -q "No space left on device" tiny.log || { cat tiny.log; fail "no clear line"; }
[[ ! -s tiny.ls ]] || fail "eval --samples on a full disk left $(cat tiny.ls)"
echo "ok: eval --samples on a full disk fails with one line and leaves no file"
for cmd in "report s.h5" "report s.h5 --json" "inspect plain0" "eval j.yaml --checkpoint plain0" \
  "--version"; do
  # shellcheck disable=SC2086
  fails_with 1 "standard output: No space left on device" -- sh -c "exec \"\$0\" $cmd >/dev/full" \
    "$KINTSUGI"
done

echo "--- 9. the state tells a saved stop from a failure, whatever the exit code"
[[ $("$KINTSUGI" report s.h5 --status) == finished ]] || fail "a finished search: $("$KINTSUGI" report s.h5 --status)"
# stopped_run SIGNAL LAUNCHER...: a search stopped by SIGNAL sent to the
# launcher's process once the first generation is saved; prints the exit code.
# The search is random (stop.yaml): CMA-ES on these two checkpoints can end
# by itself (flat fitness: 86 evaluations, 2.7 s on 2 ranks), before the
# signal comes if the polling below is slow, and the
# faster the evaluator, the likelier; a random search runs its whole budget
# (4000 evaluations: about a minute on 2 ranks, killed long before).
/usr/bin/python3 - j.yaml stop.yaml <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["search"]["method"] = "random"
json.dump(j, open(sys.argv[2], "w"), indent=1)
PY
stopped_run() {
  local sig=$1 rc=0
  shift
  rm -f st.h5
  "$@" "$KINTSUGI" optimize stop.yaml --state st.h5 --budget 4000 2>st.log &
  local pid=$!
  for _ in $(seq 600); do (( $(evals_count st.h5) >= 2 )) && break; sleep 0.05; done
  kill -"$sig" "$pid"
  wait "$pid" || rc=$?
  echo "$rc"
}
rc=$(stopped_run USR1 env)
[[ $rc == 3 && $("$KINTSUGI" report st.h5 --status) == "stopped by signal 10" ]] ||
  { cat st.log; fail "SIGUSR1: exit $rc, status $("$KINTSUGI" report st.h5 --status)"; }
rc=$(stopped_run TERM "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np 2)
status=$("$KINTSUGI" report st.h5 --status)
[[ $status == "stopped by signal 15" ]] || { cat st.log; fail "SIGTERM to mpirun: status '$status'"; }
echo "ok: SIGTERM to mpirun ends with exit $rc; the state says '$status'"
"$KINTSUGI" report st.h5 --json | /usr/bin/python3 -c \
  'import json, sys; assert json.load(sys.stdin)["search"]["run_status"] == "stopped by signal 15"'

echo "--- 9. a filesystem fault names the path, in one line"
touch afile
# A file in the way of the output is the user's path: exit 2.
fails_with 2 "afile: cannot create the output's folder: Not a directory" -- "$KINTSUGI" merge plain.yaml --out afile/sub
echo "reliability_values: all passed"
