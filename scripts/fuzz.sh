#!/usr/bin/env bash
# Fuzzes the safetensors header parser with libFuzzer (Debian's clang, with
# ASan+UBSan) for SECONDS (default 60). Usage: scripts/fuzz.sh [SECONDS]
# Build and corpus live in build-fuzz/; the seeds are made from the real files
# in ../shared/fixtures/safetensors when present, plus a few written here.
# Exits non-zero when the fuzzer finds a crash (the input is saved in build-fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=build-fuzz

cxx=${FUZZ_CXX:-}
if [[ -z "$cxx" ]]; then
  for c in clang++ clang++-14 clang++-15 clang++-16; do
    if command -v "$c" >/dev/null; then cxx=$c; break; fi
  done
fi
[[ -n "$cxx" ]] || { echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

mkdir -p "$out/corpus" "$out/seeds"
bin="$out/fuzz_safetensors_header"
srcs=(test/fuzz/fuzz_safetensors_header.cpp src/io/safetensors_header.cpp src/io/dtype.cpp src/io/utf8.cpp)
if [[ ! -x "$bin" ]] || [[ -n "$(find "${srcs[@]}" include/kintsugi -newer "$bin" -print -quit)" ]]; then
  echo "fuzz.sh: building $bin with $cxx" >&2
  "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -Iinclude "${srcs[@]}" -lfmt -o "$bin"
fi

# Seeds: each fixture's header + its data size (the target's input format).
seed() {  # seed NAME HEADER_FILE DATA_SIZE
  { cat "$2"; perl -e 'print pack("Q<", $ARGV[0])' "$3"; } >"$out/seeds/$1"
}
fixtures=../shared/fixtures/safetensors
if [[ -d "$fixtures" ]]; then
  while IFS= read -r -d '' f; do
    n=$(perl -e 'open(F, "<", $ARGV[0]) or die; binmode F; read(F, $b, 8) == 8 or exit; print unpack("Q<", $b)' "$f")
    size=$(stat -c %s "$f")
    [[ -n "$n" ]] && (( n <= size - 8 )) || continue
    tail -c +9 "$f" | head -c "$n" >"$out/seeds/.h"
    seed "$(basename "$(dirname "$f")")_$(basename "$f")" "$out/seeds/.h" $((size - 8 - n))
  done < <(find "$fixtures" -name '*.safetensors' -print0)
  rm -f "$out/seeds/.h"
else
  echo "fuzz.sh: $fixtures absent; using built-in seeds only" >&2
fi
printf '%s' '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]}}' >"$out/seeds/.h"
seed builtin_two "$out/seeds/.h" 14
printf '%s' '{}' >"$out/seeds/.h"
seed builtin_empty "$out/seeds/.h" 0
rm -f "$out/seeds/.h"

echo "fuzz.sh: fuzzing for ${seconds}s" >&2
"$bin" -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -dict=test/fuzz/safetensors.dict -artifact_prefix="$out/" -print_final_stats=1 \
  "$out/corpus" "$out/seeds" 2>"$out/fuzz.log" || { tail -n 60 "$out/fuzz.log" >&2; exit 1; }
grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|Done)' "$out/fuzz.log" >&2 || tail -n 3 "$out/fuzz.log" >&2
