#!/usr/bin/env bash
# `kintsugi bench merge` runs like a user runs it, on 1 and 2 ranks and with
# both copies of the CPU kernels: it verifies every result itself (kernel vs
# naive, file merge vs kernel: a mismatch exits non-zero), and its --json line
# carries the documented keys: the CPU model (as lscpu names it), each copy
# measured (--isa all: every copy this CPU runs), the copy that runs and how
# it was chosen (timed: the fastest of those it reports), and with --methods
# each merge method's file-to-file run (verified by the bench). Timings are not
# checked otherwise: benchmarks measure, tests do not.
set -euo pipefail
: "${KINTSUGI:?}" "${MPIEXEC:?}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The copies this CPU runs: avx2, and avx512 with AVX-512 F, BW, VL and DQ.
avx2=no avx512=no
grep -qw avx2 /proc/cpuinfo && avx2=yes
flags=$(grep -m1 '^flags' /proc/cpuinfo)
[[ $flags =~ \ avx512f\  && $flags =~ \ avx512bw\  && $flags =~ \ avx512vl\  &&
  $flags =~ \ avx512dq\  ]] && avx512=yes
model=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)

# check_json OUT RANKS [CHOICE]: the JSON line's keys; CHOICE "measured" (the
# copy was timed) or the expected cpu_kernel_choice.
check_json() {
  MODEL=$model AVX2=$avx2 AVX512=$avx512 python3 - "$1" "$2" "${3:-}" <<'PY'
import json, os, re, sys
line = open(sys.argv[1]).read().strip().splitlines()[-1]
d = json.loads(line)
for k in ["stream_gbps", "kernel_gbps", "kernel_ratio", "file_gbps", "file_ratio", "naive_gbps",
          "naive_ratio", "pagecache_write_gbps", "map_first_touch_gbps", "file_ceiling_gbps"]:
    assert k in d, f"missing key {k}: {line}"
for k in ["stream_gbps", "kernel_gbps", "file_gbps", "naive_gbps"]:
    assert d[k] > 0, f"{k} is not positive: {line}"
assert d["ranks"] == int(sys.argv[2]), line
# Figures are printed to 3 decimals: a ratio against a slow stream (one cold
# repeat) carries the stream's rounding times the ratio.
def close(ratio, gbps, stream):
    return abs(ratio - gbps / stream) < 2e-3 * max(1.0, gbps / stream)
def at_least(ratio, gbps, stream):
    return ratio > gbps / stream - 2e-3 * max(1.0, gbps / stream)
# A copy's ratio is the median over the repetitions of its rate over the
# triad's run just before it; the best of the GB/s figures give
# kernel_ratio_of_bests. With one repetition (these runs) a copy's ratio is
# its one pair's: its rate over a triad run no faster than the best one, and
# exactly the bests' ratio when one copy is measured (its triad run is the
# only one).
assert d["ratio_pairs"] == 1, line
assert close(d["kernel_ratio_of_bests"], d["kernel_gbps"], d["stream_gbps"]), line
assert at_least(d["kernel_ratio"], d["kernel_gbps"], d["stream_gbps"]), line
if len(d["kernels"]) == 1:
    assert close(d["kernel_ratio"], d["kernel_gbps"], d["stream_gbps"]), line
# The triad with streaming stores: measured on x86-64 (null elsewhere), with
# each copy's ratio to it.
import platform
nt = d["stream_nt_gbps"]
if platform.machine() == "x86_64":
    assert nt is not None and nt > 0, f"no streaming triad on x86-64: {line}"
    assert at_least(d["kernel_ratio_nt"], d["kernel_gbps"], nt), line
    assert all(at_least(k["ratio_nt"], k["gbps"], nt) for k in d["kernels"]), line
    if len(d["kernels"]) == 1:
        assert close(d["kernel_ratio_nt"], d["kernel_gbps"], nt), line
else:
    assert nt is None and d["kernel_ratio_nt"] is None, line
copies = [c + v for c in ("generic", "avx2", "avx512") for v in ("", "+prefetch")]
assert d["cpu_kernels"] in copies, line
assert d["cpu_model"] == os.environ["MODEL"], f"cpu_model is not lscpu's {os.environ['MODEL']!r}: {line}"
# The cat + cp reference of the same run, and the file merge's ratio to it.
assert d["catcp_gbps"] > 0, line
assert close(d["file_vs_catcp"], d["file_gbps"], d["catcp_gbps"]), line
# The host's transparent huge pages mode, as the kernel states it.
try:
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().split("[")[1].split("]")[0]
except (OSError, IndexError):
    thp = "unavailable"
assert d["transparent_huge_pages"] == thp, f"transparent_huge_pages is not {thp!r}: {line}"
ks = d["kernels"]
assert ks and all(k["gbps"] > 0 and at_least(k["ratio"], k["gbps"], d["stream_gbps"]) for k in ks), line
runs = [k for k in ks if k["isa"] == d["cpu_kernels"]]
assert not runs or runs[0]["gbps"] == d["kernel_gbps"], f"kernel_gbps is not the running copy's: {line}"
assert not runs or runs[0]["ratio"] == d["kernel_ratio"], f"kernel_ratio is not the running copy's: {line}"
assert not runs or runs[0]["ratio_nt"] == d["kernel_ratio_nt"], line
want = sys.argv[3]
if want == "measured":
    # "measured: A x GB/s, B y GB/s, ...", fastest first, every copy here once:
    # each ISA this CPU runs, with and without software prefetch.
    m = re.fullmatch(r"measured: (.*)", d["cpu_kernel_choice"])
    assert m, line
    timed = [re.fullmatch(r"([a-z0-9+]+) ([0-9.]+) GB/s", t) for t in m.group(1).split(", ")]
    assert all(timed), line
    speed = {t.group(1): float(t.group(2)) for t in timed}
    isas = ["generic"] + (["avx2"] if os.environ["AVX2"] == "yes" else []) + \
        (["avx512"] if os.environ["AVX512"] == "yes" else [])
    here = [c + v for c in isas for v in ("", "+prefetch")]
    assert sorted(speed) == sorted(here) and len(timed) == len(here), f"timed {list(speed)}: {line}"
    assert list(speed.values()) == sorted(speed.values(), reverse=True), f"not fastest first: {line}"
    # The figures are printed to 0.1 GB/s: equal ones may hide either winner.
    faster = {k for k, v in speed.items() if v == max(speed.values())}
    assert d["cpu_kernels"] in faster, f"runs {d['cpu_kernels']}, but {faster} was timed faster: {line}"
elif want:
    assert d["cpu_kernel_choice"] == want, line
print("ok", d["ranks"], "rank(s),", d["cpu_kernels"], "of", [k["isa"] for k in ks], "-", d["cpu_kernel_choice"])
PY
}

for isa in generic avx2 avx512 generic+prefetch avx2+prefetch avx512+prefetch; do
  set +e
  KINTSUGI_CPU_KERNELS=$isa "$KINTSUGI" bench merge --checkpoints 5 --mib 2 --dtype bf16 --repeat 1 \
    --dir "$work/b1" --json >"$work/out1.txt" 2>"$work/err1.txt"
  rc=$?
  set -e
  if [[ $isa != generic && $rc -eq 2 ]] && grep -q "this CPU does not run it" "$work/err1.txt"; then
    have=$avx2
    [[ $isa == avx512* ]] && have=$avx512
    [[ $have == no ]] || { echo "$isa: refused, but /proc/cpuinfo lists it" >&2; exit 1; }
    echo "no $isa here: that copy does not run"
    continue
  fi
  [[ $rc -eq 0 ]] || { cat "$work/err1.txt" >&2; echo "bench merge ($isa): exit $rc" >&2; exit 1; }
  check_json "$work/out1.txt" 1 "KINTSUGI_CPU_KERNELS=$isa"
  grep -q "\"cpu_kernels\":\"$isa\"" "$work/out1.txt" || { echo "asked for $isa, ran another copy" >&2; exit 1; }
done
# No choice forced: the copy is timed; --isa all measures every copy here.
"$KINTSUGI" bench merge --checkpoints 4 --mib 2 --repeat 1 --isa all --dir "$work/b0" --json \
  >"$work/out0.txt"
check_json "$work/out0.txt" 1 measured
want=generic,generic+prefetch
[[ $avx2 == yes ]] && want=$want,avx2,avx2+prefetch
[[ $avx512 == yes ]] && want=$want,avx512,avx512+prefetch
got=$(python3 -c 'import json, sys; print(",".join(k["isa"] for k in json.loads(open(sys.argv[1]).read().splitlines()[-1])["kernels"]))' "$work/out0.txt")
[[ $got == "$want" ]] || { echo "--isa all measured $got, expected $want" >&2; exit 1; }
grep -q "fused kernel \[generic\]" "$work/out0.txt" || { echo "no generic line in the table" >&2; exit 1; }

"$MPIEXEC" --bind-to none -np 2 -x OMP_NUM_THREADS=1 "$KINTSUGI" bench merge --checkpoints 3 --mib 1 \
  --dtype fp16 --repeat 1 --dir "$work/b2" --json --methods linear,ties,della,nuslerp,passthrough \
  >"$work/out2.txt"
check_json "$work/out2.txt" 2

# --methods all: every method merged file to file (each run's bytes equal,
# linear's the kernel's, passthrough's its input), one JSON entry each.
"$KINTSUGI" bench merge --checkpoints 3 --mib 1 --repeat 1 --methods all --dir "$work/b7" --json \
  >"$work/out7.txt"
python3 - "$work/out7.txt" "$work/out2.txt" <<'PY'
import json, sys
every = ["linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "model_stock", "slerp",
         "breadcrumbs", "breadcrumbs_ties", "nearswap", "passthrough", "della", "della_linear",
         "sce", "nuslerp", "multislerp", "karcher", "ram", "ramplus_tl", "arcee_fusion", "lrp",
         "cabs", "encoder_decoder_weighted", "core_space"]
for path, want in ((sys.argv[1], every), (sys.argv[2], ["linear", "ties", "della", "nuslerp", "passthrough"])):
    d = json.loads(open(path).read().splitlines()[-1])
    ms = d["methods"]
    assert [m["method"] for m in ms] == want, (path, ms)
    for m in ms:
        assert m["gbps"] > 0 and abs(m["ratio"] - m["gbps"] / d["stream_gbps"]) < 2e-3 * max(1.0, m["gbps"] / d["stream_gbps"]), m
    inputs = {m["method"]: m["inputs"] for m in ms}
    assert inputs["passthrough"] == 1 and inputs["nuslerp"] == 2 and inputs["linear"] == 3, inputs
    assert path != sys.argv[1] or (inputs["arcee_fusion"] == 2 and inputs["cabs"] == 3 and
                                   inputs["encoder_decoder_weighted"] == 3 and
                                   inputs["core_space"] == 3), inputs
print("ok: --methods", len(every), "methods")
PY
set +e
"$KINTSUGI" bench merge --checkpoints 2 --mib 1 --repeat 1 --methods linear,frankenmerge \
  --dir "$work/b8" 2>"$work/err8.txt" >/dev/null
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "--methods frankenmerge: exit $rc, expected 2" >&2; exit 1; }
grep -q "unknown merge method 'frankenmerge'" "$work/err8.txt" || { echo "--methods: unclear message" >&2; cat "$work/err8.txt" >&2; exit 1; }
[[ ! -e "$work/b8" ]] || { echo "--methods frankenmerge: wrote $work/b8" >&2; exit 1; }

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

# --isa naming no copy of this CPU: exit 2, naming it.
set +e
"$KINTSUGI" bench merge --checkpoints 2 --mib 1 --repeat 1 --isa generic,avx9 \
  --dir "$work/b6" 2>"$work/err6.txt" >/dev/null
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "--isa avx9: exit $rc, expected 2" >&2; exit 1; }
grep -q "'avx9' is not a copy" "$work/err6.txt" || { echo "--isa avx9: unclear message" >&2; cat "$work/err6.txt" >&2; exit 1; }
[[ ! -e "$work/b6" ]] || { echo "--isa avx9: wrote $work/b6" >&2; exit 1; }

# --dir naming a file: exit 2 before any work.
touch "$work/a-file"
set +e
"$KINTSUGI" bench merge --checkpoints 2 --mib 1 --repeat 1 --dir "$work/a-file" 2>"$work/err5.txt" >/dev/null
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "--dir a file: exit $rc, expected 2" >&2; exit 1; }
grep -q "not a folder" "$work/err5.txt" || { echo "--dir a file: unclear message" >&2; cat "$work/err5.txt" >&2; exit 1; }
echo "bench_merge: ok"
