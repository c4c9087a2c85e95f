#!/usr/bin/env bash
# The Slurm scripts on a real (one-node, localhost) Slurm.
# slurm/optimize.sbatch: the time-limit signal arrives mid-run (scancel
# --signal=USR1 --batch); the job saves its state, requeues itself, resumes,
# and finishes with the same evaluations as an uninterrupted run.
# slurm/merge.sbatch: submitted while the requeued job is held back, it merges
# on 2 ranks through srun into the same bytes as `kintsugi merge` on 1.
# Every daemon started here is stopped, by PID, on exit.
source "$(dirname "$0")/service_lib.sh"
for tool in slurmctld slurmd munged sbatch; do
  command -v "$tool" >/dev/null || fail "$tool not installed (scripts/install-deps.sh installs slurm-wlm and munge)"
done
cluster="$work/slurm"
trap 'bash "$KINTSUGI_SOURCE_DIR/scripts/slurm-local.sh" stop "$cluster"; rm -rf "$work"' EXIT
eval "$(bash "$KINTSUGI_SOURCE_DIR/scripts/slurm-local.sh" start "$cluster")"

make_job "$work/job.yaml" budget=60
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/whole.h5" 2>"$work/whole.log" ||
  { cat "$work/whole.log" >&2; fail "uninterrupted run"; }

log="$work/job.log"
jobid=$(sbatch --parsable --nodes=1 --ntasks-per-node=2 --time=10 \
  --output="$log" --chdir="$work" \
  --export=ALL,JOB="$work/job.yaml",STATE="$work/slurm.h5",KINTSUGI="$KINTSUGI",MAX_RESTARTS=3 \
  "$KINTSUGI_SOURCE_DIR/slurm/optimize.sbatch")
echo "submitted job $jobid"

state_of() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
# wait_ended ID TRIES: polls every 0.1 s until job ID is in a final state.
wait_ended() {
  local st
  for _ in $(seq "$2"); do
    st=$(state_of "$1")
    [[ $st == COMPLETED || $st == FAILED || $st == CANCELLED || $st == TIMEOUT || $st == NODE_FAIL ]] && return
    sleep 0.1
  done
}

# Wait until the search has saved a few generations, then send the signal
# Slurm sends before the time limit.
for _ in $(seq 1200); do
  (( $(evals_count "$work/slurm.h5") >= 12 )) && break
  st=$(state_of "$jobid")
  [[ $st == RUNNING || $st == PENDING || $st == CONFIGURING ]] ||
    { cat "$log" >&2; fail "job ended before the signal: $st"; }
  sleep 0.1
done
(( $(evals_count "$work/slurm.h5") >= 12 )) || { cat "$log" >&2; fail "the search made no progress"; }
scancel --signal=USR1 --batch "$jobid"
echo "sent USR1 at $(evals_count "$work/slurm.h5") evaluations"

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
wait_ended "$jobid" 3000
cat "$log"
[[ $(state_of "$jobid") == COMPLETED ]] || fail "job ended as $(state_of "$jobid")"
grep -q "requeueing to resume" "$log" || fail "the job did not requeue itself"
grep -q "resuming from" "$log" || fail "the requeued job did not resume"
grep -q "exited with code 3" "$log" || fail "kintsugi did not stop with code 3 on the signal"
restarts=$(scontrol show job "$jobid" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
[[ $restarts == 1 ]] || fail "expected 1 restart, got $restarts"
same_evals "$work/whole.h5" "$work/slurm.h5"

wait_ended "$merge_id" 600
cat "$merge_log"
[[ $(state_of "$merge_id") == COMPLETED ]] || fail "merge job ended as $(state_of "$merge_id")"
grep -q "on 2 rank(s)" "$merge_log" || fail "the merge job did not run on 2 ranks"
[[ ! -e "$work/merged-slurm.partial" ]] || fail "the merge job left a .partial folder"
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
