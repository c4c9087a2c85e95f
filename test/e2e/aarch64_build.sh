#!/usr/bin/env bash
# The aarch64 build (issue #17: "an aarch64 build still compiles, generic
# copy"), and its merged bytes:
# - every source with x86-specific code (intrinsics, CPUID, per-ISA target
#   attributes; found by grep, so a new one is covered) compiles for aarch64
#   with the cross compiler, with the library's flags and warnings as errors,
#   into AArch64 objects;
# - the merge engine's objects hold no fused multiply-add: GCC fuses a * b + c
#   by default where the target has FMA, as aarch64 always does
#   (CMakeLists.txt turns contraction off; without it tensor_merge.cpp
#   compiles to 17 fused instructions);
# - test/arch/kernel_hashes.cpp, built for aarch64 with the kernels' file and
#   run under qemu, prints the same hash of every merge kernel's output as
#   this build's kintsugi_kernel_hashes with each x86-64 copy this CPU runs
#   (with contraction on, 20 of its 52 lines differed).
# fmt is header-only there (Debian has no arm64 libfmt to link). install-deps.sh
# installs the compiler and qemu-user.
set -euo pipefail
: "${KINTSUGI_SOURCE_DIR:?}" "${KINTSUGI_BUILD_DIR:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
cxx=aarch64-linux-gnu-g++
command -v "$cxx" >/dev/null ||
  fail "$cxx not found (Debian: apt-get install g++-aarch64-linux-gnu; scripts/install-deps.sh does)"
command -v qemu-aarch64 >/dev/null ||
  fail "qemu-aarch64 not found (Debian: apt-get install qemu-user; scripts/install-deps.sh does)"
hashes=$KINTSUGI_BUILD_DIR/test/kintsugi_kernel_hashes
[[ -x $hashes ]] || fail "$hashes not built"
cd "$KINTSUGI_SOURCE_DIR"
work=$(mktemp -d /tmp/kintsugi-aarch64.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The library's own flags (definitions, include paths, warnings, -Werror,
# -ffp-contract=off), as the release build compiles the merge kernels, minus
# the x86 build's precompiled header and output.
flags=$(/usr/bin/python3 - "$KINTSUGI_BUILD_DIR/compile_commands.json" <<'PY'
import json, shlex, sys
entry = next(e for e in json.load(open(sys.argv[1])) if e["file"].endswith("/src/kernels/merge_kernels_cpu.cpp"))
args, out, skip = shlex.split(entry["command"])[1:], [], 0
for a in args:
    if skip:
        skip -= 1
    elif a in ("-o", "-c", "-include", "-MF", "-MT"):
        skip = 1
    elif a == "-DFMT_SHARED":
        out.append("-DFMT_HEADER_ONLY")
    elif a not in ("-MD", "-Winvalid-pch"):
        out.append(a)
print(shlex.join(out))
PY
)
[[ $flags == *-Werror* && $flags == *-ffp-contract=off* ]] || fail "the library's flags lack -Werror or -ffp-contract=off: $flags"
mapfile -t sources < <(grep -rlE 'immintrin|cpuid\.h|__builtin_cpu_supports|target_clones|gnu::target|__x86_64__' src | sort)
((${#sources[@]} >= 3)) || fail "found only ${#sources[@]} x86-specific sources: ${sources[*]}"
pids=()
for f in "${sources[@]}" src/io/dtype.cpp test/arch/kernel_hashes.cpp; do
  o="$work/$(basename "$f").o"
  # The CLI's sources (built at -O2, the bench's triad their only x86 code)
  # are checked without code generation: a third of this test's time.
  mode="-c $f -o $o"
  [[ $f == src/cli/* ]] && mode="-fsyntax-only $f"
  # shellcheck disable=SC2086
  (eval "$cxx $flags $mode" >"$o.log" 2>&1 || { cat "$o.log" >&2; echo "FAIL: $f does not compile for aarch64" >&2; exit 1; }) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || exit 1; done
for f in "${sources[@]}"; do
  o="$work/$(basename "$f").o"
  [[ $f == src/cli/* ]] ||
    aarch64-linux-gnu-readelf -h "$o" | grep -q "Machine:.*AArch64" || fail "$o is not an AArch64 object"
  echo "ok: $f compiles for aarch64"
done
for f in src/kernels/merge_kernels_cpu.cpp src/merge/tensor_merge.cpp; do
  o="$work/$(basename "$f").o"
  [[ -s $o ]] || fail "$f is no longer among the x86-specific sources; compile it here"
  fused=$(aarch64-linux-gnu-objdump -d "$o" | grep -cE '\s(fmadd|fmsub|fnmadd|fnmsub|fmla|fmls)\s' || true)
  [[ $fused -eq 0 ]] || fail "$f: $fused fused multiply-adds in the aarch64 object (contraction must be off)"
  echo "ok: $f: no fused multiply-add on aarch64"
done

# The same merged bytes: every kernel's output hash, aarch64 against x86-64.
"$cxx" -fopenmp "$work/merge_kernels_cpu.cpp.o" "$work/dtype.cpp.o" "$work/kernel_hashes.cpp.o" \
  -o "$work/kernel_hashes" || fail "the aarch64 kernel_hashes does not link"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/kernel_hashes" >"$work/aarch64.txt" ||
  fail "kernel_hashes failed under qemu-aarch64"
[[ $(wc -l <"$work/aarch64.txt") -ge 50 ]] || { cat "$work/aarch64.txt" >&2; fail "too few hashes from aarch64"; }
copies=0
for isa in generic avx2 avx512; do
  if ! KINTSUGI_CPU_KERNELS=$isa "$hashes" >"$work/x86-$isa.txt" 2>"$work/x86-$isa.err"; then
    grep -q "this CPU does not run it" "$work/x86-$isa.err" || { cat "$work/x86-$isa.err" >&2; fail "kintsugi_kernel_hashes ($isa) failed"; }
    echo "(this CPU does not run the $isa copy)"
    continue
  fi
  diff "$work/x86-$isa.txt" "$work/aarch64.txt" >&2 || fail "aarch64's merged bytes differ from x86-64's $isa copy"
  echo "ok: aarch64 gives the $isa copy's bytes ($(wc -l <"$work/aarch64.txt") kernel outputs)"
  copies=$((copies + 1))
done
((copies >= 1)) || fail "no x86-64 copy ran"
