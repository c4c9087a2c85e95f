#!/usr/bin/env bash
# The Slurm scripts on a real (one-node, localhost) Slurm.
# slurm/optimize.sbatch: the time-limit signal arrives mid-run (scancel
# --signal=USR1 --batch); the job saves its state, requeues itself, resumes,
# and finishes with the same evaluations as an uninterrupted run.
# slurm/optimize-gpu.sbatch, at the same time (both jobs --oversubscribe on the
# node's 2 CPUs, so that Slurm's holds on the two requeued jobs overlap): the
# same signal, requeue and resume for a search whose evaluator is `kind:
# command` (the scorer is `kintsugi eval --checkpoint {model} --json`; on this
# CPU-only cluster, sbatch --gpus-per-node=0), against an uninterrupted mpirun
# run of that job; no candidate folder is left in the scratch.
# slurm/merge.sbatch: submitted while the requeued job is held back, it merges
# on 2 ranks through srun into the same bytes as `kintsugi merge` on 1.
# Every daemon started here is stopped, by PID, on exit.
source "$(dirname "$0")/service_lib.sh"
for tool in slurmctld slurmd munged sbatch; do
  command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps.sh installs slurm-wlm and munge)"
done
cluster="$work/slurm"
trap 'bash "$KINTSUGI_SOURCE_DIR/scripts/slurm-local.sh" stop "$cluster"; rm -rf "$work" "$shm"' EXIT
eval "$(bash "$KINTSUGI_SOURCE_DIR/scripts/slurm-local.sh" start "$cluster")"

make_job "$work/job.yaml" budget=60
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/whole.h5" 2>"$work/whole.log" ||
  { cat "$work/whole.log" >&2; fail "uninterrupted run"; }

# The same search scored by an external command: the scorer is kintsugi's own
# builtin evaluator (job.yaml) run on each candidate folder. One job file per
# run, differing only in the scratch folder, so that each run's leftovers can
# be checked.
make_command_job() {
  /usr/bin/python3 - "$work/job.yaml" "$1" "$2" "$KINTSUGI" <<'PY'
import json, sys
src, out, scratch, kintsugi = sys.argv[1:5]
job = json.load(open(src))
metrics = {t["name"]: t.get("metric") or {"choice": "acc"}.get(t.get("kind"), "exact_match")
           for t in job["tasks"]}
job["tasks"] = [{"name": n, "metric": m} for n, m in metrics.items()]
job["evaluator"] = {
    "kind": "command",
    "command": [kintsugi, "-q", "eval", src, "--checkpoint", "{model}", "--split", "{split}",
                "--json"],
    "results": "kintsugi", "dtype": "float32", "scratch": scratch, "timeout_s": 120}
json.dump(job, open(out, "w"), indent=1)
PY
}
make_command_job "$work/cmd-slurm.yaml" "$work/scratch-slurm"
make_command_job "$work/cmd-mpi.yaml" "$work/scratch-mpi"

# Both searches share the node's 2 CPUs (--oversubscribe), so that they run,
# are signalled and wait out Slurm's requeue hold at the same time.
log="$work/job.log"
jobid=$(sbatch --parsable --oversubscribe --nodes=1 --ntasks-per-node=2 --time=10 \
  --output="$log" --chdir="$work" \
  --export=ALL,JOB="$work/job.yaml",STATE="$work/slurm.h5",KINTSUGI="$KINTSUGI",MAX_RESTARTS=3 \
  "$KINTSUGI_SOURCE_DIR/slurm/optimize.sbatch")
echo "submitted job $jobid"
# The GPU template on this CPU-only node: no GPUs (--gpus-per-node=0 overrides
# its #SBATCH line), --oversubscribe overrides its --exclusive, and the CPU
# template's signal margin, since the test's time limit is 10 minutes.
gpu_log="$work/gpu-job.log"
gpu_id=$(sbatch --parsable --gpus-per-node=0 --oversubscribe --signal=B:USR1@120 \
  --nodes=1 --ntasks-per-node=2 --time=10 --output="$gpu_log" --chdir="$work" \
  --export=ALL,JOB="$work/cmd-slurm.yaml",STATE="$work/cmd-slurm.h5",KINTSUGI="$KINTSUGI",MAX_RESTARTS=3,KINTSUGI_SLURM_DIR="$KINTSUGI_SOURCE_DIR/slurm" \
  "$KINTSUGI_SOURCE_DIR/slurm/optimize-gpu.sbatch")
echo "submitted GPU-template job $gpu_id"

state_of() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
# wait_ended ID SECONDS: polls once a second (each scontrol costs 12 ms of
# CPU, and the requeue hold lasts minutes) until job ID is in a final state.
wait_ended() {
  local st
  for _ in $(seq "$2"); do
    st=$(state_of "$1")
    [[ $st == COMPLETED || $st == FAILED || $st == CANCELLED || $st == TIMEOUT || $st == NODE_FAIL ]] && return
    sleep 1
  done
}

# Wait until each search has saved a few generations, then send it the signal
# Slurm sends before the time limit.
declare -A job_state=(["$jobid"]="$work/slurm.h5" ["$gpu_id"]="$work/cmd-slurm.h5")
declare -A job_log=(["$jobid"]="$log" ["$gpu_id"]="$gpu_log")
declare -A signalled=()
for _ in $(seq 1200); do
  for id in "$jobid" "$gpu_id"; do
    [[ -n "${signalled[$id]:-}" ]] && continue
    n=$(evals_count "${job_state[$id]}")
    if (( n >= 12 )); then
      scancel --signal=USR1 --batch "$id"
      signalled[$id]=1
      echo "sent USR1 to job $id at $n evaluations"
      continue
    fi
    st=$(state_of "$id")
    [[ $st == RUNNING || $st == PENDING || $st == CONFIGURING ]] ||
      { cat "${job_log[$id]}" >&2; fail "job $id ended before the signal: $st"; }
  done
  (( ${#signalled[@]} == 2 )) && break
  sleep 0.1
done
for id in "$jobid" "$gpu_id"; do
  [[ -n "${signalled[$id]:-}" ]] || { cat "${job_log[$id]}" >&2; fail "job $id: the search made no progress"; }
done

# The uninterrupted run of the command-evaluator search, while Slurm holds the
# requeued jobs back.
mpi 2 "$KINTSUGI" optimize "$work/cmd-mpi.yaml" --state "$work/cmd-whole.h5" 2>"$work/cmd-whole.log" ||
  { cat "$work/cmd-whole.log" >&2; fail "uninterrupted command-evaluator run"; }

# A merge job, run while Slurm holds the requeued one back.
python3 "$KINTSUGI_SOURCE_DIR/test/e2e/merge_pool.py" make "$work/pool"
cat >"$work/merge.yaml" <<YAML
merge_method: ties
base_model: $work/pool/base
models:
  - model: $work/pool/m1
    parameters: {weight: 1.0, density: 0.5}
  - model: $work/pool/m2
    parameters: {weight: 0.7, density: 0.4}
YAML
"$KINTSUGI" -q merge "$work/merge.yaml" --out "$work/merged-1" --max-shard-size 200KB >/dev/null
merge_log="$work/merge.log"
merge_id=$(sbatch --parsable --nodes=1 --ntasks-per-node=2 --time=5 --output="$merge_log" \
  --chdir="$work" --export=ALL,RECIPE="$work/merge.yaml",OUT="$work/merged-slurm",KINTSUGI="$KINTSUGI",MAX_SHARD_SIZE=200KB \
  "$KINTSUGI_SOURCE_DIR/slurm/merge.sbatch")
echo "submitted merge job $merge_id"

# A sweep: a job array of two one-rank searches with seeds 3 and 4.
sweep_id=$(SEEDS="3 4" STATE_PREFIX="$work/sweep" KINTSUGI_SLURM_DIR="$KINTSUGI_SOURCE_DIR/slurm" \
  sbatch --parsable --array=0-1 --nodes=1 --ntasks-per-node=1 --time=10 \
  --output="$work/sweep-%a.log" --chdir="$work" \
  --export=ALL,JOB="$work/job.yaml",KINTSUGI="$KINTSUGI" "$KINTSUGI_SOURCE_DIR/slurm/sweep.sbatch")
echo "submitted sweep job array $sweep_id"
mpi 1 "$KINTSUGI" -q optimize "$work/job.yaml" --state "$work/seed4.h5" --seed 4 >/dev/null 2>"$work/seed4.log" ||
  { cat "$work/seed4.log" >&2; fail "seed 4 run"; }

# Slurm holds a requeued batch job back for a few minutes while the old step
# is cleaned up; starting it sooner (scontrol update StartTime=now) makes its
# step launch fail, so the test waits.
# check_requeued ID LOG: the job stopped on the signal with code 3, requeued
# itself once, resumed and completed.
check_requeued() {
  local id=$1 log=$2 restarts
  wait_ended "$id" 300
  cat "$log"
  [[ $(state_of "$id") == COMPLETED ]] || fail "job $id ended as $(state_of "$id")"
  grep -q "requeueing to resume" "$log" || fail "job $id did not requeue itself"
  grep -q "resuming from" "$log" || fail "the requeued job $id did not resume"
  grep -q "exited with code 3" "$log" || fail "job $id: kintsugi did not stop with code 3 on the signal"
  restarts=$(scontrol show job "$id" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
  [[ $restarts == 1 ]] || fail "job $id: expected 1 restart, got $restarts"
}
check_requeued "$jobid" "$log"
same_evals "$work/whole.h5" "$work/slurm.h5"

check_requeued "$gpu_id" "$gpu_log"
grep -q "optimize-gpu.sbatch job $gpu_id: nodes .* GPUs per node 0" "$gpu_log" ||
  fail "job $gpu_id did not run through slurm/optimize-gpu.sbatch"
same_evals "$work/cmd-whole.h5" "$work/cmd-slurm.h5"
for run in slurm mpi; do
  [[ -d "$work/scratch-$run" ]] || fail "the $run run made no scratch folder $work/scratch-$run"
  left=$(find "$work/scratch-$run" -mindepth 1 -maxdepth 1 -printf '%f ')
  [[ -z "$left" ]] || fail "the $run run left candidate folders in its scratch: $left"
done
echo "ok: slurm/optimize-gpu.sbatch with evaluator.kind command: signal, requeue, resume; same evaluations as mpirun; scratch empty"

wait_ended "$merge_id" 600
cat "$merge_log"
[[ $(state_of "$merge_id") == COMPLETED ]] || fail "merge job ended as $(state_of "$merge_id")"
grep -q "on 2 rank(s)" "$merge_log" || fail "the merge job did not run on 2 ranks"
[[ -z $(compgen -G "$work/merged-slurm.partial*" || true) ]] || fail "the merge job left a .partial folder"
diff -r "$work/merged-1" "$work/merged-slurm" >/dev/null || fail "merge.sbatch on 2 ranks differs from kintsugi merge on 1"
echo "ok: slurm/merge.sbatch (2 ranks) gives the same bytes as kintsugi merge (1 rank)"

for i in 0 1; do wait_ended "${sweep_id}_$i" 600; done
cat "$work"/sweep-*.log
for i in 0 1; do
  st=$(state_of "${sweep_id}_$i")
  [[ $st == COMPLETED ]] || fail "sweep task $i ended as $st"
  [[ -f "$work/sweep-$i.h5" ]] || fail "sweep task $i wrote no sweep-$i.h5"
done
same_evals "$work/seed4.h5" "$work/sweep-1.h5"
if same_evals "$work/sweep-0.h5" "$work/sweep-1.h5" 2>/dev/null; then fail "seeds 3 and 4 gave the same search"; fi
echo "ok: slurm/sweep.sbatch: one state per array task; task 1 (seed 4) equals kintsugi optimize --seed 4"
