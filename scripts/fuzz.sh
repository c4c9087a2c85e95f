#!/usr/bin/env bash
# Fuzzes three readers with libFuzzer (Debian's clang, with ASan+UBSan) for
# SECONDS in all (default 60), one after the other, a third each:
#   fuzz_safetensors_header  the safetensors header parser; seeds made from the
#                            real files in test/data/fixtures/safetensors, plus
#                            a few written here;
#   fuzz_state_reader        the HDF5 state reader (load_state); seeds are
#                            states written by kintsugi's own save_state (the
#                            target writes them) and the real states of a demo
#                            run committed in test/fuzz/states/;
#   fuzz_yaml_readers        the job file and recipe readers (parse_job,
#                            parse_recipe); seeds written by the target and
#                            the demo job.
# Usage: scripts/fuzz.sh [SECONDS]. Builds and corpora live in build-fuzz/.
# Exits non-zero when a fuzzer finds a crash (the input is saved in build-fuzz/).
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

mkdir -p "$out/corpus" "$out/seeds" "$out/state-corpus" "$out/state-seeds"
build() {  # build BIN EXTRA_FLAGS -- SOURCES...: rebuilt when a source or header is newer
  local bin=$1; shift
  local flags=()
  while [[ $1 != -- ]]; do flags+=("$1"); shift; done
  shift
  if [[ ! -x "$bin" ]] || [[ -n "$(find "$@" include/kintsugi -newer "$bin" -print -quit)" ]]; then
    echo "fuzz.sh: building $bin with $cxx" >&2
    # -O0: half the compile time of -O1 (CI compiles all three each run), at
    # about a third of the executions per second; line tables for reports.
    # spdlog as Debian's compiled library, as the CMake build links it: as a
    # header-only library it was compiled into every source that logs (a
    # third of recipe.cpp's 24 CPU-s).
    "$cxx" -std=c++20 -O0 -gline-tables-only -fno-omit-frame-pointer \
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -DSPDLOG_COMPILED_LIB -DSPDLOG_SHARED_LIB -DSPDLOG_FMT_EXTERNAL -DFMT_SHARED \
      -Iinclude "$@" "${flags[@]}" -lspdlog -o "$bin"
  fi
}
bin="$out/fuzz_safetensors_header"
build "$bin" -lfmt -- test/fuzz/fuzz_safetensors_header.cpp src/io/safetensors_header.cpp \
  src/io/dtype.cpp src/io/utf8.cpp
# The state reader with the smallest set of sources it links against: the
# state module's reader and writer, the atomic-file helper the writer uses,
# and the input-file check (no MPI, no job config: resume.cpp, which needs
# them, is left out). Debian's serial libhdf5.
state_bin="$out/fuzz_state_reader"
build "$state_bin" -I/usr/include/hdf5/serial -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -lfmt -- \
  test/fuzz/fuzz_state_reader.cpp src/state/run_state.cpp src/state/hdf5.cpp \
  src/state/record_io.cpp src/io/atomic_file.cpp src/common/input_file.cpp

# The two strict YAML readers (job files and recipes) with the sources they
# link: the reader, the job and recipe parsers and their helpers.
yaml_bin="$out/fuzz_yaml_readers"
build "$yaml_bin" -lyaml-cpp -lfmt -- test/fuzz/fuzz_yaml_readers.cpp src/config/job.cpp \
  src/config/yaml_reader.cpp src/merge/recipe.cpp src/merge/sha256.cpp src/io/utf8.cpp \
  src/common/input_file.cpp

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

# State seeds: written by kintsugi's save_state, and the committed real states.
KINTSUGI_FUZZ_WRITE_SEEDS="$out/state-seeds" "$state_bin" >/dev/null 2>&1 ||
  { echo "fuzz.sh: $state_bin could not write its seed states" >&2; exit 1; }
cp test/fuzz/states/*.h5 "$out/state-seeds/"

# YAML seeds: the target's own (a job, a command-evaluator job, a recipe of
# every method), and the demo job.
mkdir -p "$out/yaml-corpus" "$out/yaml-seeds"
KINTSUGI_FUZZ_WRITE_SEEDS="$out/yaml-seeds" "$yaml_bin" >/dev/null 2>&1 ||
  { echo "fuzz.sh: $yaml_bin could not write its seeds" >&2; exit 1; }
{ printf '\0'; cat examples/demo/job.yaml; } >"$out/yaml-seeds/demo-job"

# SECONDS split between the three targets (CI's fuzzing time stays what it was).
header_s=$((seconds / 3))
state_s=$((seconds / 3))
yaml_s=$((seconds - header_s - state_s))
echo "fuzz.sh: fuzzing the safetensors header for ${header_s}s" >&2
"$bin" -max_total_time="$header_s" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -dict=test/fuzz/safetensors.dict -artifact_prefix="$out/" -print_final_stats=1 \
  "$out/corpus" "$out/seeds" 2>"$out/fuzz.log" || { tail -n 60 "$out/fuzz.log" >&2; exit 1; }
grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|Done)' "$out/fuzz.log" >&2 || tail -n 3 "$out/fuzz.log" >&2

echo "fuzz.sh: fuzzing the state reader for ${state_s}s" >&2
# libhdf5 (uninstrumented) leaks small blocks of its own on some error paths:
# suppressed by library name only (test/fuzz/lsan-hdf5.supp).
LSAN_OPTIONS="suppressions=$PWD/test/fuzz/lsan-hdf5.supp:print_suppressions=0" \
  TMPDIR="$out" "$state_bin" -max_total_time="$state_s" -max_len=65536 -timeout=10 \
  -rss_limit_mb=2048 -artifact_prefix="$out/state-" -print_final_stats=1 \
  "$out/state-corpus" "$out/state-seeds" 2>"$out/fuzz-state.log" ||
  { tail -n 60 "$out/fuzz-state.log" >&2; exit 1; }
grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|Done)' "$out/fuzz-state.log" >&2 ||
  tail -n 3 "$out/fuzz-state.log" >&2

echo "fuzz.sh: fuzzing the job and recipe readers for ${yaml_s}s" >&2
"$yaml_bin" -max_total_time="$yaml_s" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$out/yaml-" -print_final_stats=1 "$out/yaml-corpus" "$out/yaml-seeds" \
  2>"$out/fuzz-yaml.log" || { tail -n 60 "$out/fuzz-yaml.log" >&2; exit 1; }
grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|Done)' "$out/fuzz-yaml.log" >&2 ||
  tail -n 3 "$out/fuzz-yaml.log" >&2
