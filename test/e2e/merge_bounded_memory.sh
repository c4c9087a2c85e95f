#!/usr/bin/env bash
# kintsugi merge streams: what a rank allocates is bounded by the chunk size,
# not by the model. Each rank runs under a data-segment limit (RLIMIT_DATA,
# which counts the heap and private writable mappings but not the read-only
# mappings of the inputs) smaller than one tensor of the pool, and merges a
# pool of 640 MiB: linear (checked against a double-precision reference) and
# TIES (its per-tensor statistics stream too), on 1 and 2 ranks, byte-identical.
# Control: the same limit with a chunk larger than it fails cleanly (exit 1,
# "out of memory", nothing left behind), so the limit is known to bite.
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
MPIEXEC=${MPIEXEC:-mpirun}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

MODELS=4 TENSORS=2 MIB=80  # one tensor: 80 MiB; one checkpoint: 160 MiB
LIMIT_KIB=$((64 * 1024))   # per rank, below one tensor
py="$KINTSUGI_SOURCE_DIR/test/e2e/big_pool.py"
python3 "$py" make pool $MODELS $TENSORS $MIB

export OMP_NUM_THREADS=2

cat > linear.yaml <<'YAML'
merge_method: linear
models:
  - model: pool/m0
    parameters: {weight: 0.4}
  - model: pool/m1
    parameters: {weight: 0.3}
  - model: pool/m2
    parameters: {weight: 0.2}
  - model: pool/m3
    parameters: {weight: 0.1}
YAML
cat > ties.yaml <<'YAML'
merge_method: ties
base_model: pool/m0
models:
  - model: pool/m1
    parameters: {weight: 1.0, density: 0.3}
  - model: pool/m2
    parameters: {weight: 0.6, density: 0.5}
  - model: pool/m3
    parameters: {weight: 0.8, density: 0.7}
YAML

limited() {  # np, then the kintsugi arguments
  local np=$1
  shift
  "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np "$np" \
    bash -c 'ulimit -d '$LIMIT_KIB'; exec "$@"' limited "$KINTSUGI" -q "$@"
}

for r in linear ties; do
  for np in 1 2; do
    limited $np merge $r.yaml --out out-$r-$np >/dev/null
  done
  diff -r out-$r-1 out-$r-2 >/dev/null || { echo "FAIL: $r: np=2 differs from np=1"; exit 1; }
  echo "ok: $r of $((MODELS * TENSORS * MIB)) MiB under a ${LIMIT_KIB} KiB data limit per rank, np 1 and 2 identical"
done
python3 "$py" check out-linear-2 $MODELS $TENSORS $MIB 0.4,0.3,0.2,0.1

# Control: a 256 MiB chunk cannot fit under the same limit. On one thread:
# with more, a linear merge cuts each tensor into a few chunks per thread,
# each well under the limit.
set +e
OMP_NUM_THREADS=1 limited 1 merge linear.yaml --out control --chunk-mib 256 >/dev/null 2>err.txt
rc=$?
set -e
[[ $rc -eq 1 ]] || { echo "FAIL: an oversized chunk under the limit exited $rc, expected 1"; cat err.txt; exit 1; }
grep -q "out of memory merging tensor .* --chunk-mib" err.txt || { echo "FAIL: message"; cat err.txt; exit 1; }
[[ ! -e control && -z $(compgen -G "control.partial*" || true) ]] || { echo "FAIL: a failed merge left a folder"; exit 1; }
echo "ok: control (chunk over the limit) fails with: $(head -1 err.txt)"
echo "all bounded-memory merge checks passed"
