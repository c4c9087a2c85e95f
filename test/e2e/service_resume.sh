#!/usr/bin/env bash
# Resume is exact: a search killed (SIGKILL) at random moments and resumed
# each time, and one stopped by SIGUSR1 (exit 3) and resumed, end with the
# same evaluations as an uninterrupted run.
source "$(dirname "$0")/service_lib.sh"
make_job "$work/job.yaml" budget=60
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/whole.h5" 2>"$work/whole.log" ||
  { cat "$work/whole.log" >&2; fail "uninterrupted run"; }

# Runs the search in its own process group and SIGKILLs the whole group once
# the state holds at least $1 evaluations (0: after $2 seconds, whatever the state).
run_killed() {
  local target=$1 delay=$2 resume=()
  [[ -f "$work/killed.h5" ]] && resume=(--resume)
  setsid "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np 2 \
    "$KINTSUGI" optimize "$work/job.yaml" --state "$work/killed.h5" "${resume[@]}" \
    2>>"$work/killed.log" &
  local pid=$!
  if (( target == 0 )); then
    sleep "$delay"
  else
    for _ in $(seq 600); do
      (( $(evals_count "$work/killed.h5") >= target )) && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.02
    done
    sleep "$delay"  # land somewhere inside the next generation (or its save)
  fi
  kill_group "$pid"
  echo "killed at $(evals_count "$work/killed.h5") saved evaluations (target $target, +${delay}s)"
}
RANDOM=42
run_killed 0 0.5  # during start-up, before any state exists
for target in 6 18 30; do
  run_killed "$target" "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", (r % 15) / 100 }')"
done
n=$(evals_count "$work/killed.h5")
(( n > 0 && n < 60 )) || fail "the kills did not interrupt the search ($n of 60 evaluations saved)"
resume=()
[[ -f "$work/killed.h5" ]] && resume=(--resume)
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/killed.h5" "${resume[@]}" 2>>"$work/killed.log" ||
  { cat "$work/killed.log" >&2; fail "final resume"; }
same_evals "$work/whole.h5" "$work/killed.h5"

# SIGUSR1 (what Slurm sends before the time limit): save, exit 3, resume.
setsid "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np 2 \
  "$KINTSUGI" optimize "$work/job.yaml" --state "$work/usr1.h5" 2>"$work/usr1.log" &
pid=$!
for _ in $(seq 200); do
  [[ -f "$work/usr1.h5" ]] && (( $(evals_count "$work/usr1.h5") >= 6 )) && break
  sleep 0.1
done
stop_and_check "$pid" "$work/usr1.log" "mid-search"
grep -q "resume with --resume" "$work/usr1.log" || fail "no message on SIGUSR1"
n=$(evals_count "$work/usr1.h5")
(( n < 60 )) || fail "the search finished before the signal ($n evaluations)"
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/usr1.h5" --resume 2>>"$work/usr1.log" ||
  { cat "$work/usr1.log" >&2; fail "resume after SIGUSR1"; }
same_evals "$work/whole.h5" "$work/usr1.h5"

# --budget extends a finished search exactly like a longer run.
make_job "$work/job80.yaml" budget=80
mpi 2 "$KINTSUGI" optimize "$work/job80.yaml" --state "$work/long.h5" 2>/dev/null
mpi 2 "$KINTSUGI" optimize "$work/job.yaml" --state "$work/whole.h5" --resume --budget 80 2>/dev/null
same_evals "$work/long.h5" "$work/whole.h5"
