#!/usr/bin/env bash
# `kintsugi bench merge` runs like a user runs it, on 1 and 2 ranks and with
# both copies of the CPU kernels: it verifies every result itself (kernel vs
# naive, file merge vs kernel: a mismatch exits non-zero), and its --json line
# carries the documented keys. Timings are not checked: benchmarks measure,
# tests do not.
set -euo pipefail
: "${KINTSUGI:?}" "${MPIEXEC:?}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check_json() {
  python3 - "$1" "$2" <<'PY'
import json, sys
line = open(sys.argv[1]).read().strip().splitlines()[-1]
d = json.loads(line)
for k in ["stream_gbps", "kernel_gbps", "kernel_ratio", "file_gbps", "file_ratio", "naive_gbps",
          "naive_ratio", "pagecache_write_gbps", "map_first_touch_gbps", "file_ceiling_gbps"]:
    assert k in d, f"missing key {k}: {line}"
for k in ["stream_gbps", "kernel_gbps", "file_gbps", "naive_gbps"]:
    assert d[k] > 0, f"{k} is not positive: {line}"
assert d["ranks"] == int(sys.argv[2]), line
assert abs(d["kernel_ratio"] - d["kernel_gbps"] / d["stream_gbps"]) < 2e-3, line
assert d["cpu_kernels"] in ("avx2", "generic"), line
print("ok", d["ranks"], "rank(s),", d["cpu_kernels"])
PY
}

for isa in generic avx2; do
  set +e
  KINTSUGI_CPU_KERNELS=$isa "$KINTSUGI" bench merge --checkpoints 5 --mib 2 --dtype bf16 --repeat 1 \
    --dir "$work/b1" --json >"$work/out1.txt" 2>"$work/err1.txt"
  rc=$?
  set -e
  if [[ $isa == avx2 && $rc -eq 2 ]] && grep -q "has no AVX2" "$work/err1.txt"; then
    echo "no AVX2 here: only the generic copy runs"
    continue
  fi
  [[ $rc -eq 0 ]] || { cat "$work/err1.txt" >&2; echo "bench merge ($isa): exit $rc" >&2; exit 1; }
  check_json "$work/out1.txt" 1
  grep -q "\"cpu_kernels\":\"$isa\"" "$work/out1.txt" || { echo "asked for $isa, ran another copy" >&2; exit 1; }
done
"$MPIEXEC" --bind-to none -np 2 -x OMP_NUM_THREADS=1 "$KINTSUGI" bench merge --checkpoints 3 --mib 1 \
  --dtype fp16 --repeat 1 --dir "$work/b2" --json >"$work/out2.txt"
check_json "$work/out2.txt" 2

# Bad input: exit 2 with a message, nothing written.
set +e
"$KINTSUGI" bench merge --dtype int8 --dir "$work/b3" 2>"$work/err.txt"
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "bad --dtype: exit $rc, expected 2" >&2; exit 1; }
grep -q "int8" "$work/err.txt" || { echo "bad --dtype: message does not name it" >&2; exit 1; }
[[ ! -e "$work/b3" ]] || { echo "bad --dtype: wrote $work/b3" >&2; exit 1; }
# A misspelt kernel choice is an error, not silently the default.
set +e
KINTSUGI_CPU_KERNELS=Generic "$KINTSUGI" bench merge --checkpoints 2 --mib 1 --repeat 1 \
  --dir "$work/b4" 2>"$work/err4.txt" >/dev/null
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "KINTSUGI_CPU_KERNELS=Generic: exit $rc, expected 2" >&2; exit 1; }
grep -q "KINTSUGI_CPU_KERNELS=Generic" "$work/err4.txt" || { echo "message does not name the variable" >&2; exit 1; }

# --dir naming a file: exit 2 before any work.
touch "$work/a-file"
set +e
"$KINTSUGI" bench merge --checkpoints 2 --mib 1 --repeat 1 --dir "$work/a-file" 2>"$work/err5.txt" >/dev/null
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "--dir a file: exit $rc, expected 2" >&2; exit 1; }
grep -q "not a folder" "$work/err5.txt" || { echo "--dir a file: unclear message" >&2; cat "$work/err5.txt" >&2; exit 1; }
echo "bench_merge: ok"
