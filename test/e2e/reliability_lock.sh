#!/usr/bin/env bash
# Issue 15, class 2: one writer per state. While an optimize holds a state,
# a second optimize or a baselines on it (by any spelling: a symbolic link,
# a relative path) is refused with exit 2 and one line naming the holder (pid
# and host); report and export read a consistent snapshot meanwhile; a holder
# killed with SIGKILL releases the lock (its stale line is no obstacle); a
# holder stopped with SIGUSR1 saves and releases it for --resume.
source "$(dirname "$0")/service_lib.sh"
source "$(dirname "$0")/reliability_lib.sh"
copy_demo "$work/src"
cd "$work"
demo_job "$work/src" job.yaml budget=100000 population=6 method=random  # runs until signalled: random search never converges
host=$(hostname)
holder=
# Never leave a holder running behind a failed check.
# (The whole session: mpirun puts each rank in a process group of its own.)
trap '[[ -n $holder ]] && pkill -KILL -s "$holder" 2>/dev/null; rm -rf "$work" "$shm"' EXIT

# start_holder LOG: an optimize on s.h5 in the background, until it has
# recorded itself in the lock and saved a first generation.
start_holder() {
  setsid "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np 2 \
    "$KINTSUGI" optimize job.yaml --state s.h5 "$@" 2>"$log" &
  holder=$!
  for _ in $(seq 600); do
    [[ -s s.h5.lock && $(evals_count s.h5) -ge 6 ]] && break
    kill -0 "$holder" 2>/dev/null || { cat "$log"; fail "the holder ended early"; }
    sleep 0.2
  done
  [[ -s s.h5.lock ]] || fail "no holder recorded in s.h5.lock"
  read -r _ pid _ _ h _ <s.h5.lock
  h=${h%,}
  [[ $h == "$host" ]] || fail "lock holder's host '$h' is not $host: $(cat s.h5.lock)"
  grep -q kintsugi "/proc/$pid/cmdline" || fail "lock holder pid $pid is not a kintsugi process"
}

log=$work/holder.log
start_holder
ln -s s.h5 link.h5
mkdir sub
for cmd in "optimize job.yaml --state s.h5" "optimize job.yaml --state s.h5 --resume" \
  "baselines job.yaml --state s.h5" "optimize job.yaml --state link.h5 --resume" \
  "baselines job.yaml --state sub/../s.h5"; do
  # shellcheck disable=SC2086
  refused "in use by another run (pid $pid on host $host, since " "kintsugi optimize" -- \
    "$KINTSUGI" $cmd
done
refused "in use by another run (pid $pid on host $host" -- mpi 2 "$KINTSUGI" optimize job.yaml --state "$work/s.h5" --resume
echo "ok: second writers refused, holder named"

# Readers while the holder saves after every generation: each report is
# complete, and the counts never go backwards.
last=0
for _ in $(seq 8); do
  "$KINTSUGI" report s.h5 --json >r.json 2>r.err || { cat r.err; fail "report while a run writes"; }
  n=$(python3 -c "import json,sys; r=json.load(open('r.json')); print(r['search']['evaluations'])") ||
    fail "report --json while a run writes is not complete JSON"
  [[ $n -ge $last ]] || fail "report went back from $last to $n evaluations"
  last=$n
  sleep 0.3
done
mpi 2 "$KINTSUGI" export s.h5 --out snap --dtype float32 2>e.err || { cat e.err; fail "export while a run writes"; }
grep -q "^# kintsugi export of evaluation" snap/kintsugi_recipe.yaml || fail "export wrote no recipe"
echo "ok: report and export read consistent snapshots while the run writes ($last evaluations seen)"

# SIGUSR1 (Slurm's warning before the time limit): the holder saves, exits 3,
# and the lock is free for --resume.
kill -USR1 "$holder"
rc=0; wait "$holder" || rc=$?
holder=
[[ $rc -eq 3 ]] || { cat "$log"; fail "the holder exited $rc on SIGUSR1 (want 3)"; }
[[ ! -s s.h5.lock ]] || fail "the lock still names a holder after the run: $(cat s.h5.lock)"
n=$(evals_count s.h5)
mpi 2 "$KINTSUGI" optimize job.yaml --state link.h5 --resume --budget $((n + 6)) --test-top 1 2>>"$log" ||
  { cat "$log"; fail "--resume after the holder stopped"; }
[[ $(evals_count s.h5) -eq $((n + 6)) ]] || fail "the resumed run did not continue the state"
echo "ok: after SIGUSR1 the next run takes the lock"

# SIGKILL of the holder's rank 0: the kernel drops the lock; the stale line stays.
start_holder --resume --budget 100000
kill -KILL "$pid"
wait "$holder" || true
pkill -KILL -s "$holder" 2>/dev/null || true
holder=
[[ -s s.h5.lock ]] || fail "expected the killed holder's stale line in s.h5.lock"
n=$(evals_count s.h5)
"$KINTSUGI" optimize job.yaml --state s.h5 --resume --budget $((n + 6)) --test-top 1 2>>"$log" ||
  { cat "$log"; fail "a stale lock file blocked the next run"; }
[[ ! -s s.h5.lock ]] || fail "the lock was not cleared at the end"
echo "all lock checks passed"
