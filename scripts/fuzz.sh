#!/usr/bin/env bash
# Fuzzes the safetensors header parser with libFuzzer (Debian's clang, with
# ASan+UBSan) for SECONDS (default 60). Usage: scripts/fuzz.sh [SECONDS]
# Build and corpus live in build-fuzz/; the seeds are made from the real files
# in test/data/fixtures/safetensors, plus a few written here.
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
# One perl step per seed, no pipes: `tail | head` under pipefail killed CI with
# SIGPIPE when head exited before tail's buffered second write.
seed_from_file() {  # seed_from_file SAFETENSORS SEED; skips a file whose header overruns it
  perl -e '
    open(my $in, "<", $ARGV[0]) or die "$ARGV[0]: $!\n"; binmode $in;
    my $size = -s $in;
    read($in, my $len, 8) == 8 or exit 0;
    my $n = unpack("Q<", $len);
    exit 0 if $n > $size - 8;
    read($in, my $header, $n) == $n or die "$ARGV[0]: short read\n";
    open(my $out, ">", $ARGV[1]) or die "$ARGV[1]: $!\n"; binmode $out;
    print $out $header, pack("Q<", $size - 8 - $n);
    close($out) or die "$ARGV[1]: $!\n";' "$1" "$2"
}
seed_from_text() {  # seed_from_text SEED HEADER DATA_SIZE
  perl -e 'open(my $o, ">", $ARGV[0]) or die "$ARGV[0]: $!\n"; binmode $o;
    print $o $ARGV[1], pack("Q<", $ARGV[2]); close($o) or die "$ARGV[0]: $!\n"' "$out/seeds/$1" "$2" "$3"
}
fixtures=test/data/fixtures/safetensors
[[ -d "$fixtures" ]] || { echo "fuzz.sh: $fixtures: no such folder (part of the repository)" >&2; exit 1; }
while IFS= read -r -d '' f; do
  seed_from_file "$f" "$out/seeds/$(basename "$(dirname "$f")")_$(basename "$f")"
done < <(find "$fixtures" -name '*.safetensors' -print0)
seed_from_text builtin_two '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]}}' 14
seed_from_text builtin_empty '{}' 0

echo "fuzz.sh: fuzzing for ${seconds}s" >&2
"$bin" -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -dict=test/fuzz/safetensors.dict -artifact_prefix="$out/" -print_final_stats=1 \
  "$out/corpus" "$out/seeds" 2>"$out/fuzz.log" || { tail -n 60 "$out/fuzz.log" >&2; exit 1; }
grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|Done)' "$out/fuzz.log" >&2 || tail -n 3 "$out/fuzz.log" >&2
