#!/usr/bin/env bash
# bench/host.sh, the one command that measures every per-host figure of
# bench/RESULTS.md, runs through in its --quick mode: its Markdown names this
# host's CPU (lscpu's model name), has a row with a figure and a verdict for
# each of the five targets, a row per copy of the kernels with the running one
# in bold, the methods' times, and the CLI merge's outputs agree with the
# PyTorch peer's; it leaves the raw JSON beside its scratch folder and removes
# the folder. Timings are not checked: benchmarks measure, tests do not. Bad
# usage, a missing binary and a Python without torch are errors (exit 2) that
# name what is wrong.
source "$(dirname "$0")/service_lib.sh"
host="$KINTSUGI_SOURCE_DIR/bench/host.sh"
bash "$host" --quick --dir "$work/scratch" --kintsugi "$KINTSUGI" >"$work/out.md" 2>"$work/err.txt" ||
  { cat "$work/err.txt" >&2; fail "bench/host.sh --quick failed"; }
[[ ! -e $work/scratch ]] || fail "the scratch folder is left behind"
for f in lscpu.txt bf16.json fp16.json methods.json version.json cli_merge.json eval.json; do
  [[ -s $work/kintsugi-host-json/$f ]] || fail "no raw figures in kintsugi-host-json/$f"
done
/usr/bin/python3 - "$work/out.md" "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)" <<'PY'
import re, sys
text, model = open(sys.argv[1]).read(), sys.argv[2]
lines = text.splitlines()
assert lines[0].startswith(f"### {model} (family "), lines[0]
assert "QUICK RUN" in lines[0], lines[0]
num = r"[0-9]+(\.[0-9]+)?"
targets = {
    "kernel_ratio": rf"\| kernel_ratio ≥ 0\.9 \(bf16\) \| {num} \(median of [0-9]+ paired repetitions; best kernel {num} GB/s, best triad {num} GB/s\) \|",
    "file merge": rf"\| file merge ≥ `cat` \+ `cp` \| {num}× ",
    "version": rf"\| `kintsugi --version` < 0\.05 s \| {num} ms \(mean of 5\) \|",
    "cli merge": rf"\| CLI merge ≥ 20× PyTorch \| {num}× \(median of [0-9]+ alternated pairs; .*outputs identical\) \|",
    "evaluator": rf"\| evaluator ≥ 2× PyTorch \| prefill {num}×, decode {num}× \(medians of [0-9]+ alternated pairs\) \|",
}
for name, pattern in targets.items():
    row = [l for l in lines if re.match(pattern, l)]
    assert len(row) == 1, f"{name}: no row matching {pattern!r} in\n{text}"
    assert re.search(r"\| (met|\*\*not met\*\*) \|$", row[0]), f"{name}: no verdict: {row[0]}"
copies = [l for l in lines if re.match(rf"\| (\*\*)?(generic|avx2|avx512)(\+prefetch)?(\*\*)? \| {num} \({num}\) \|", l)]
assert any(l.startswith("| generic |") or l.startswith("| **generic** |") for l in copies), text
assert sum(l.startswith("| **") for l in copies) == 1, f"not one running copy in bold:\n{text}"
running = re.search(r"Copy that runs: `([a-z0-9+]+)`", text).group(1)
assert any(l.startswith(f"| **{running}** |") for l in copies), text
assert re.search(rf"Methods file to file .*: ties {num} s, dare_ties {num} s\.", text), text
print("ok", len(copies), "copies, running", running)
PY
# Bad usage and missing tools: exit 2, one line naming the problem.
for args in "--frobnicate" "--kintsugi $work/no-such-kintsugi" "--python /bin/false"; do
  rc=0
  # shellcheck disable=SC2086
  bash "$host" --quick --dir "$work/scratch2" --kintsugi "$KINTSUGI" $args >/dev/null 2>"$work/err2.txt" || rc=$?
  [[ $rc -eq 2 ]] || fail "bench/host.sh $args: exit $rc, expected 2"
  want=${args##* }
  [[ $args == --frobnicate ]] && want=--frobnicate
  grep -q -- "$want" "$work/err2.txt" || { cat "$work/err2.txt" >&2; fail "bench/host.sh $args: the message does not name $want"; }
done
echo "bench/host.sh: all checks passed"
