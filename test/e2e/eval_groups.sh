#!/usr/bin/env bash
# kintsugi eval on the demo pool: one process, mpirun -np 2 with T = 1 (two
# groups) and T = 2, and -np 4 with T = 2 print the same JSON scores.
set -euo pipefail
demo="${KINTSUGI_EVAL_DEMO:-$KINTSUGI_SOURCE_DIR/examples/demo}"
[[ -f "$demo/job.yaml" ]] || { echo "FAIL: $demo/job.yaml: no such file (the committed demo pool)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The job with absolute paths and a chosen tensor_parallel.
make_job() {
  sed -e "s#^\(\s*-\s*\)pool/#\1$demo/pool/#" -e "s#^\(\s*base:\s*\)pool/#\1$demo/pool/#" \
      -e "s#file: tasks/#file: $demo/tasks/#" -e '/^parallel:/,/^[a-z]/{/tensor_parallel/d}' \
      -e "s#^parallel:#parallel:\n  tensor_parallel: $1#" "$demo/job.yaml" > "$tmp/job_t$1.yaml"
  grep -q "tensor_parallel: $1" "$tmp/job_t$1.yaml" || printf 'parallel:\n  tensor_parallel: %s\n' "$1" >> "$tmp/job_t$1.yaml"
}
make_job 1
make_job 2
mpi=("$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none)
# Three models (the first three folders of the pool), dealt round-robin to groups.
models=()
folders=("$demo"/pool/*/)
for d in "${folders[@]:0:3}"; do models+=(--checkpoint "${d%/}"); done
"$KINTSUGI" eval "$tmp/job_t1.yaml" "${models[@]}" --json > "$tmp/one.txt"
"${mpi[@]}" -np 2 "$KINTSUGI" eval "$tmp/job_t1.yaml" "${models[@]}" --json > "$tmp/np2_t1.txt"
"${mpi[@]}" -np 2 "$KINTSUGI" eval "$tmp/job_t2.yaml" "${models[@]}" --json > "$tmp/np2_t2.txt"
"${mpi[@]}" -np 4 "$KINTSUGI" eval "$tmp/job_t2.yaml" "${models[@]}" --json --samples "$tmp/s.jsonl" > "$tmp/np4_t2.txt"
for f in np2_t1 np2_t2 np4_t2; do
  if ! diff <(tail -n 1 "$tmp/one.txt") <(tail -n 1 "$tmp/$f.txt"); then
    echo "FAIL: $f differs from the one-process scores" >&2
    exit 1
  fi
done
models=$(tail -n 1 "$tmp/one.txt" | grep -o '"model"' | wc -l)
[[ "$models" -ge 1 ]] || { echo "FAIL: no models in the JSON line" >&2; exit 1; }
[[ -s "$tmp/s.jsonl" ]] || { echo "FAIL: no samples written" >&2; exit 1; }
echo "ok: $models models, identical scores for 1 process, np 2 (T 1, 2) and np 4 (T 2)"
