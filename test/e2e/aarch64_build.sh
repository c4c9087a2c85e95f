#!/usr/bin/env bash
# The aarch64 build (issue #17: "an aarch64 build still compiles, generic
# copy"): every source with x86-specific code (intrinsics, CPUID, per-ISA
# target attributes; found by grep, so a new one is covered) compiles for
# aarch64 with the cross compiler, with the project's flags and warnings as
# errors, into AArch64 objects. The merge engine's objects hold no fused
# multiply-add: GCC fuses a * b + c by default where the target has FMA, as
# aarch64 always does, which would change the merged bytes against an x86-64
# host (CMakeLists.txt turns contraction off; without it tensor_merge.cpp
# compiles to 17 fused instructions). install-deps.sh installs the compiler.
set -euo pipefail
: "${KINTSUGI_SOURCE_DIR:?}" "${KINTSUGI_BUILD_DIR:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
cxx=aarch64-linux-gnu-g++
command -v "$cxx" >/dev/null ||
  fail "$cxx not found (Debian: apt-get install g++-aarch64-linux-gnu; scripts/install-deps.sh does)"
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
    elif a not in ("-MD", "-Winvalid-pch"):
        out.append(a)
print(shlex.join(out))
PY
)
[[ $flags == *-Werror* && $flags == *-ffp-contract=off* ]] || fail "the library's flags lack -Werror or -ffp-contract=off: $flags"
mapfile -t sources < <(grep -rlE 'immintrin|cpuid\.h|__builtin_cpu_supports|target_clones|gnu::target|__x86_64__' src | sort)
((${#sources[@]} >= 3)) || fail "found only ${#sources[@]} x86-specific sources: ${sources[*]}"
pids=()
for f in "${sources[@]}"; do
  o="$work/$(basename "$f").o"
  # shellcheck disable=SC2086
  (eval "$cxx $flags -c $f -o $o" >"$o.log" 2>&1 || { cat "$o.log" >&2; echo "FAIL: $f does not compile for aarch64" >&2; exit 1; }) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || exit 1; done
for f in "${sources[@]}"; do
  o="$work/$(basename "$f").o"
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
