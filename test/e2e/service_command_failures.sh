#!/usr/bin/env bash
# evaluator.kind: command when things go wrong, on the demo pool:
#  3. every failure (exit 1, timeout, garbage output, a missing metric, a full
#     scratch) is a failed candidate with its reason, the search finishes and
#     the scratch is left empty; keep: failed keeps exactly the failed folders;
#  4. SIGKILL during a scorer run, then --resume, equals an uninterrupted run,
#     and no scorer outlives kintsugi; SIGUSR1 during a scorer run exits 3 and
#     resumes to the same evaluations.
source "$(dirname "$0")/service_lib.sh"
command_setup

# The reference: the builtin evaluator's search (service_command.sh shows the
# command evaluator's equals it).
make_job "$work/builtin.yaml" budget=12
"$KINTSUGI" optimize "$work/builtin.yaml" --state "$work/builtin.h5" --test-top 1 2>"$work/builtin.log" ||
  { cat "$work/builtin.log" >&2; fail "builtin search"; }

echo "--- 3. failures are failed candidates; the search finishes"
# Checkpoints (scored from the pool's folders) pass; merged candidates (in
# the scratch) fail in the way named.
# two_checkpoints JOB: the job's pool cut to its first two checkpoints (fewer
# scorer runs before the failing candidates).
two_checkpoints() {
  /usr/bin/python3 -c 'import json, sys
j = json.load(open(sys.argv[1])); j["pool"]["checkpoints"] = j["pool"]["checkpoints"][:2]
json.dump(j, open(sys.argv[1], "w"), indent=1)' "$1"
}
# pass.sh RESULTS OUTPUT ARGV...: scores for real, as `results` expects.
cat >"$work/pass.sh" <<'SH'
results=$1 output=$2
shift 2
[[ $results == json ]] || exec "$@"
"$@" | tail -n 1 | /usr/bin/python3 -c \
  'import json, sys; json.dump(json.load(sys.stdin)["results"][0]["tasks"], open(sys.argv[1], "w"))' \
  "$output/scores.json"
SH
# The checkpoints are scored for real (pass.sh) within timeout_s: 60 s, which a
# loaded CI machine never reaches; the timeout case alone sets TIMEOUT_S=8.
run_failing() {  # [TIMEOUT_S=S] run_failing NAME RESULTS KEEP EXPECTED-REASON MODE
  local name=$1 results=$2 keep=$3 reason=$4 mode=$5 timeout_s=${TIMEOUT_S:-60}
  make_job "$work/f.yaml" budget=2 population=2
  two_checkpoints "$work/f.yaml"
  command_job "$work/f.yaml" "$work/$name.yaml" "$results" "$scratch" "$keep" "$timeout_s" -- \
    bash -c "case {model} in $scratch/*) $mode ;; *) exec bash $work/pass.sh $results {output} \"\$@\" ;; esac" \
    pass "${kintsugi_eval[@]}"
  "$KINTSUGI" optimize "$work/$name.yaml" --state "$work/$name.h5" 2>"$work/$name.log" ||
    { cat "$work/$name.log" >&2; fail "$name: the search must finish"; }
  /usr/bin/python3 - "$work/$name.h5" "$reason" <<'PY' || { cat "$work/$name.log" >&2; fail "$name"; }
import sys, h5py
e = h5py.File(sys.argv[1], "r")["evals"]
status, errors = e["status"][()], [x.decode() for x in e["error"][()]]
assert len(status) == 2 and (status == 1).all(), f"expected 2 failed candidates: {status}"
assert all(sys.argv[2] in x for x in errors), f"reason {sys.argv[2]!r} missing: {errors[0]!r}"
print(f"2 failed candidates: {errors[0][:150]}")
PY
}
run_failing exit1 kintsugi none "the scorer exit 1 (bash); its log ends: broken" 'echo broken >&2; exit 1'
scratch_empty "exit 1"
TIMEOUT_S=8 run_failing timeout kintsugi none "timed out after 8 s (evaluator.timeout_s)" 'sleep 30'
scratch_empty "timeout"
run_failing garbage kintsugi none 'no JSON line with "results"' 'echo "{not json"'
scratch_empty "garbage"
run_failing garbage_json json none "scores.json: not valid JSON" 'echo "{nope" > {output}/scores.json'
scratch_empty "garbage scores.json"
run_failing metric json none "task 'add' has no metric 'exact_match' (it has: accuracy)" \
  "echo '{\"add\": {\"accuracy\": 1}}' > {output}/scores.json"
scratch_empty "missing metric"
# keep: failed keeps the failed candidates' folders (named in the reason), with the log.
run_failing kept kintsugi failed "[kept: $scratch/kintsugi-" 'echo kept-log >&2; exit 1'
kept=$(find "$scratch" -mindepth 1 -maxdepth 1 -type d | wc -l)
[[ $kept == 2 ]] || fail "keep: failed should keep 2 folders, found $kept"
grep -q kept-log "$scratch"/kintsugi-*/scorer.stderr || fail "kept folders hold no log"
[[ -f $(ls -d "$scratch"/kintsugi-*/model | head -1)/model.safetensors ]] || fail "kept folder has no model"
rm -rf "${scratch:?}"/*
# A scratch too small for a candidate: each one fails before anything is written.
mkdir -p "$work/tiny"
make_job "$work/f.yaml" budget=2 population=2
two_checkpoints "$work/f.yaml"
command_job "$work/f.yaml" "$work/full.yaml" kintsugi "$work/tiny" none 60 -- "${kintsugi_eval[@]}"
unshare -m bash -c "mount -t tmpfs -o size=64k tmpfs '$work/tiny' &&
  '$KINTSUGI' optimize '$work/full.yaml' --state '$work/full.h5'" 2>"$work/full.log" ||
  { cat "$work/full.log" >&2; fail "full scratch: the search must finish"; }
/usr/bin/python3 - "$work/full.h5" <<'PY' || { cat "$work/full.log" >&2; fail "full scratch"; }
import sys, h5py
e = h5py.File(sys.argv[1], "r")["evals"]
errors = [x.decode() for x in e["error"][()]]
assert (e["status"][()] == 1).all() and all("free, a candidate needs" in x for x in errors), errors
print(f"full scratch: {errors[0]}")
PY

echo "--- 4. SIGKILL during a scorer run, then --resume; SIGUSR1 exits 3"
# While $work/hold exists, a scorer first sleeps 60 s (a long lm-eval run):
# the kill lands while one is running, and one that survived would still be
# there when the check looks.
slow=(bash -c 'if [[ -e '"$work/hold"' ]]; then echo $$ >> '"$work/held"'; sleep 60; fi; exec "$0" "$@"'
  "${kintsugi_eval[@]}")
command_job "$work/builtin.yaml" "$work/slow.yaml" kintsugi "$scratch" none 120 -- "${slow[@]}"
: >"$work/held"
setsid "$KINTSUGI" optimize "$work/slow.yaml" --state "$work/killed.h5" --test-top 1 2>"$work/killed.log" &
pid=$!
for _ in $(seq 600); do
  (( $(evals_count "$work/killed.h5") >= 6 )) && break
  sleep 0.05
done
(( $(evals_count "$work/killed.h5") >= 6 )) || { cat "$work/killed.log" >&2; fail "no progress before the kill"; }
touch "$work/hold"
for _ in $(seq 600); do [[ -s "$work/held" ]] && break; sleep 0.05; done
held=$(head -n 1 "$work/held")
[[ -n $held ]] && kill -0 "$held" || { cat "$work/killed.log" >&2; fail "no scorer was held"; }
kill_group "$pid"
rm -f "$work/hold"
for _ in $(seq 100); do kill -0 "$held" 2>/dev/null || break; sleep 0.05; done
kill -0 "$held" 2>/dev/null && fail "scorer $held outlived the killed search by 5 s (it would run 60 s)"
echo "killed at $(evals_count "$work/killed.h5") saved evaluations during a scorer run; the scorer ended with it"
"$KINTSUGI" optimize "$work/slow.yaml" --state "$work/killed.h5" --resume --test-top 1 2>>"$work/killed.log" ||
  { cat "$work/killed.log" >&2; fail "resume after SIGKILL"; }
same_evals "$work/builtin.h5" "$work/killed.h5"
scratch_empty "resume after SIGKILL"

"$KINTSUGI" optimize "$work/slow.yaml" --state "$work/usr1.h5" --test-top 1 2>"$work/usr1.log" &
pid=$!
for _ in $(seq 600); do
  (( $(evals_count "$work/usr1.h5") >= 6 )) && [[ -n "$(ls -A "$scratch")" ]] && break
  sleep 0.05
done
stop_and_check "$pid" "$work/usr1.log" "during a scorer run"
"$KINTSUGI" optimize "$work/slow.yaml" --state "$work/usr1.h5" --resume --test-top 1 2>>"$work/usr1.log" ||
  { cat "$work/usr1.log" >&2; fail "resume after SIGUSR1"; }
same_evals "$work/builtin.h5" "$work/usr1.h5"
scratch_empty "resume after SIGUSR1"
echo "service_command_failures: all passed"
