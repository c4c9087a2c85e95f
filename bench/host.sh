#!/usr/bin/env bash
# Every per-host figure that bench/RESULTS.md records (issue #17), in one run,
# printed as a Markdown block to paste into RESULTS with the host it ran on:
#
#   1. the host: CPU model, family and model numbers, the ISA flags the
#      kernels care about, cores, transparent huge pages, the commit;
#   2. the merge kernels: `bench merge --isa all` on bf16 (kernel_ratio, every
#      copy, the file merge against `cat` + `cp`), the same on fp16, and the
#      TIES and DARE methods file to file;
#   3. start-up: `kintsugi --version`, wall time per run;
#   4. the CLI merge against the PyTorch peer (tools/torch_linear_merge.py):
#      alternated pairs on the 8 checkpoints step 2 wrote, the median of the
#      pairs' ratios (a shared host drifts: each pair sees one moment of it),
#      the slowest kintsugi run against the fastest PyTorch one, and --check;
#   5. the evaluator against its PyTorch peer (`bench eval --torch`, whose
#      repetitions alternate too).
#
# Usage: bench/host.sh [--quick] [--dir DIR] [--kintsugi BIN] [--python PY]
#   --quick       small sizes and few repeats (the test runs it so); the
#                 figures are then not comparable with RESULTS' ones
#   --dir DIR     scratch folder for checkpoints and outputs, best on tmpfs
#                 (default /dev/shm/kintsugi-host; removed at the end)
#   --kintsugi    the binary (default build/kintsugi)
#   --python      the Python with torch (default /usr/bin/python3)
# Progress goes to stderr, the Markdown to stdout, the raw JSON of each bench
# to DIR/../kintsugi-host-json (named on stderr). Exit 0 when every step ran,
# whether or not the targets are met (the table says which); 2 for bad usage
# or a missing tool, 1 when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 dir=/dev/shm/kintsugi-host kintsugi=build/kintsugi python=/usr/bin/python3
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) quick=1; shift ;;
    --dir) dir=${2:?--dir needs a folder}; shift 2 ;;
    --kintsugi) kintsugi=${2:?--kintsugi needs a path}; shift 2 ;;
    --python) python=${2:?--python needs a path}; shift 2 ;;
    *) echo "bench/host.sh: unknown argument $1 (see the usage at the top of the script)" >&2; exit 2 ;;
  esac
done
[[ -x $kintsugi ]] || { echo "bench/host.sh: $kintsugi: not an executable (build first: bash scripts/build.sh)" >&2; exit 2; }
"$python" -c "import torch" 2>/dev/null ||
  { echo "bench/host.sh: $python: cannot import torch (Debian: apt-get install python3-torch)" >&2; exit 2; }
if ((quick)); then
  mib=4 repeat=2 pairs=1 versions=5 eval_repeats=1
else
  mib=64 repeat=10 pairs=5 versions=30 eval_repeats=10
fi
json=$(dirname "$dir")/kintsugi-host-json
rm -rf "$dir" "$json"
mkdir -p "$dir" "$json"
trap 'rm -rf "$dir"' EXIT
log() { echo "host.sh: $*" >&2; }

# 1. The host.
lscpu >"$json/lscpu.txt"
field() { sed -n "s/^$1:[[:space:]]*//p" "$json/lscpu.txt" | head -1; }
flags=$(field Flags)
isa=""
for f in avx2 f16c fma avx512f avx512bw avx512vl avx512_bf16 amx_tile; do
  [[ " $flags " == *" $f "* ]] && isa+="$f "
done
thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
log "host: $(field 'Model name'), $(nproc) cores, THP $thp, commit $commit"

# 2. The merge kernels: bf16 (it leaves the 8 checkpoints step 4 merges),
# fp16, and the masked TIES / DARE methods file to file.
bench_merge() {  # name, then bench merge's arguments
  local name=$1
  shift
  log "bench merge $* ..."
  "$kintsugi" bench merge --checkpoints 8 --mib "$mib" --repeat "$repeat" --json "$@" \
    >"$json/$name.json" 2>"$json/$name.txt" ||
    { cat "$json/$name.txt" >&2; echo "bench/host.sh: bench merge $* failed" >&2; exit 1; }
}
bench_merge bf16 --dtype bf16 --dir "$dir/bf16" --isa all
bench_merge fp16 --dtype fp16 --dir "$dir/fp16" --isa all
bench_merge methods --dtype bf16 --dir "$dir/methods" --methods ties,dare_ties
rm -rf "$dir/fp16" "$dir/methods"

# 3. Start-up: wall time of `kintsugi --version`, the mean of many runs.
log "kintsugi --version, $versions runs ..."
t0=$(date +%s%N)
for ((i = 0; i < versions; ++i)); do "$kintsugi" --version >/dev/null; done
t1=$(date +%s%N)
echo "{\"runs\": $versions, \"mean_s\": $(((t1 - t0) / versions))e-9}" >"$json/version.json"

# 4. The CLI merge against the PyTorch peer, alternated, each as a user runs it.
log "CLI merge against PyTorch, $pairs pair(s) ..."
ckpts=()
for i in 0 1 2 3 4 5 6 7; do ckpts+=("$dir/bf16/ckpt$i"); done
wall() {  # seconds of one command's wall time
  local s e
  s=$(date +%s%N)
  "$@" >/dev/null 2>"$dir/wall.err" || { cat "$dir/wall.err" >&2; echo "bench/host.sh: $* failed" >&2; exit 1; }
  e=$(date +%s%N)
  echo "$(((e - s) / 1000))e-6"
}
k_runs=() t_runs=()
for ((i = 0; i < pairs; ++i)); do
  rm -rf "$dir/kout" "$dir/tout"
  k_runs+=("$(wall "$kintsugi" -q merge "$dir/bf16/recipe.yaml" --out "$dir/kout")")
  t_runs+=("$(wall "$python" tools/torch_linear_merge.py --out "$dir/tout" "${ckpts[@]}")")
done
check=identical
"$python" tools/torch_linear_merge.py --out "$dir/tout" --check "$dir/kout" "${ckpts[@]}" \
  >"$json/check.txt" 2>&1 || check="DIFFERENT ($(tail -1 "$json/check.txt"))"
printf '{"kintsugi_s": [%s], "torch_s": [%s], "check": "%s"}\n' "$(IFS=,; echo "${k_runs[*]}")" \
  "$(IFS=,; echo "${t_runs[*]}")" "$check" >"$json/cli_merge.json"
rm -rf "$dir/kout" "$dir/tout" "$dir/bf16"

# 5. The evaluator against its PyTorch peer, one thread each.
log "bench eval --tp 1 --repeats $eval_repeats --torch ..."
"$kintsugi" bench eval --tp 1 --repeats "$eval_repeats" --torch tools/torch_eval_bench.py \
  --python "$python" --json >"$json/eval.json" 2>"$json/eval.txt" ||
  { cat "$json/eval.txt" >&2; echo "bench/host.sh: bench eval failed" >&2; exit 1; }

# The Markdown block.
log "raw figures in $json"
python3 - "$json" "$(field 'Model name')" "$(field 'CPU family')" "$(field 'Model')" "$(nproc)" \
  "$isa" "$thp" "$commit" "$quick" <<'EOF'
import json, statistics, sys
d, model, family, number, cores, isa, thp, commit, quick = sys.argv[1:]
def last_json(name):
    lines = [l for l in open(f"{d}/{name}.json") if l.startswith("{")]
    return json.loads(lines[-1])
bf16, fp16, methods = last_json("bf16"), last_json("fp16"), last_json("methods")
version, cli, ev = last_json("version"), last_json("cli_merge"), last_json("eval")
k, t = cli["kintsugi_s"], cli["torch_s"]
cli_ratio = statistics.median(ti / ki for ti, ki in zip(t, k))  # the pairs ran back to back
worst = min(t) / max(k)
tv = ev["torch"]
def verdict(ok): return "met" if ok else "**not met**"
print(f"### {model} (family {family}, model {number}), {cores} cores, THP `{thp}`, commit {commit}"
      + (" — QUICK RUN, sizes too small to compare" if quick == "1" else ""))
print()
print(f"ISA flags: {isa.strip() or 'none of avx2/avx512'}. Copy that runs: `{bf16['cpu_kernels']}` "
      f"({bf16['cpu_kernel_choice']}).")
print()
print("| target | figure | |")
print("|---|---|---|")
print(f"| kernel_ratio ≥ 0.9 (bf16) | {bf16['kernel_ratio']:.2f} (median of {bf16['ratio_pairs']} "
      f"paired repetitions; best kernel {bf16['kernel_gbps']:.1f} GB/s, best triad "
      f"{bf16['stream_gbps']:.1f} GB/s) | {verdict(bf16['kernel_ratio'] >= 0.9)} |")
print(f"| file merge ≥ `cat` + `cp` | {bf16['file_vs_catcp']:.2f}× ({bf16['file_gbps']:.2f} against "
      f"{bf16['catcp_gbps']:.2f} GB/s) | {verdict(bf16['file_vs_catcp'] >= 1.0)} |")
print(f"| `kintsugi --version` < 0.05 s | {version['mean_s'] * 1e3:.1f} ms (mean of {version['runs']}) "
      f"| {verdict(version['mean_s'] < 0.05)} |")
print(f"| CLI merge ≥ 20× PyTorch | {cli_ratio:.1f}× (median of {len(k)} alternated pairs; medians "
      f"{statistics.median(k) * 1e3:.0f} ms against {statistics.median(t):.2f} s; slowest against fastest "
      f"{worst:.1f}×; outputs {cli['check']}) | {verdict(cli_ratio >= 20)} |")
print(f"| evaluator ≥ 2× PyTorch | prefill {tv['prefill_ratio']:.2f}×, decode {tv['decode_ratio']:.2f}× "
      f"(medians of {tv['pairs']} alternated pairs) "
      f"| {verdict(tv['prefill_ratio'] >= 2 and tv['decode_ratio'] >= 2)} |")
print()
print("| copy | bf16 GB/s (of triad) | fp16 GB/s (of triad) |")
print("|---|---|---|")
f16 = {c["isa"]: c for c in fp16["kernels"]}
for c in bf16["kernels"]:
    o = f16.get(c["isa"])
    mark = "**" if c["isa"] == bf16["cpu_kernels"] else ""
    fp = f"{o['gbps']:.1f} ({o['ratio']:.2f})" if o else "–"
    print(f"| {mark}{c['isa']}{mark} | {c['gbps']:.1f} ({c['ratio']:.2f}) | {fp} |")
print()
print("Methods file to file (8 checkpoints of bf16): " + ", ".join(
    f"{m['method']} {m['seconds']:.2f} s" for m in methods["methods"]) + ".")
EOF
