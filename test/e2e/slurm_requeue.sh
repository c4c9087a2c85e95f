#!/usr/bin/env bash
# slurm/optimize.sbatch on a real (one-node, localhost) Slurm: the time-limit
# signal arrives mid-run (scancel --signal=USR1 --batch); the job saves its
# state, requeues itself, resumes, and finishes with the same evaluations as an
# uninterrupted run. Every daemon started here is stopped, by PID, on exit.
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
jobid=$(sbatch --parsable --nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --time=10 \
  --output="$log" --chdir="$work" \
  --export=ALL,JOB="$work/job.yaml",STATE="$work/slurm.h5",KINTSUGI="$KINTSUGI",MAX_RESTARTS=3 \
  "$KINTSUGI_SOURCE_DIR/slurm/optimize.sbatch")
echo "submitted job $jobid"

job_state() { scontrol show job "$jobid" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }

# Wait until the search has saved a few generations, then send the signal
# Slurm sends before the time limit.
for _ in $(seq 1200); do
  (( $(evals_count "$work/slurm.h5") >= 12 )) && break
  [[ $(job_state) == RUNNING || $(job_state) == PENDING || $(job_state) == CONFIGURING ]] ||
    { cat "$log" >&2; fail "job ended before the signal: $(job_state)"; }
  sleep 0.1
done
(( $(evals_count "$work/slurm.h5") >= 12 )) || { cat "$log" >&2; fail "the search made no progress"; }
scancel --signal=USR1 --batch "$jobid"
echo "sent USR1 at $(evals_count "$work/slurm.h5") evaluations"

# Slurm holds a requeued batch job back for a few minutes while the old step
# is cleaned up; starting it sooner (scontrol update StartTime=now) makes its
# step launch fail, so the test waits.
for _ in $(seq 3000); do
  st=$(job_state)
  [[ $st == COMPLETED || $st == FAILED || $st == CANCELLED || $st == TIMEOUT || $st == NODE_FAIL ]] && break
  sleep 0.1
done
cat "$log"
[[ $(job_state) == COMPLETED ]] || fail "job ended as $(job_state)"
grep -q "requeueing to resume" "$log" || fail "the job did not requeue itself"
grep -q "resuming from" "$log" || fail "the requeued job did not resume"
grep -q "exited with code 3" "$log" || fail "kintsugi did not stop with code 3 on the signal"
restarts=$(scontrol show job "$jobid" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')
[[ $restarts == 1 ]] || fail "expected 1 restart, got $restarts"
same_evals "$work/whole.h5" "$work/slurm.h5"
