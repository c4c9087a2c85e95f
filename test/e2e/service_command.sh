#!/usr/bin/env bash
# evaluator.kind: command on the demo pool, as a user runs it:
#  1. `kintsugi eval --checkpoint {model} --json` as the command (float32
#     candidates) gives the builtin evaluator's search, score for score, on 1
#     and 2 groups; report shows the merge and scorer shares; export works;
#     each group's scorer runs on its share of the node's GPUs;
#  2. baselines scored through the lm-eval stand-in (lm-eval's results layout)
#     equal the builtin evaluator's baselines.
# Failures, kills and stops: service_command_failures.sh.
source "$(dirname "$0")/service_lib.sh"
command_setup

echo "--- 1. kintsugi eval as the command reproduces the builtin search (1 and 2 groups)"
make_job "$work/builtin.yaml" budget=12
command_job "$work/builtin.yaml" "$work/cmd.yaml" kintsugi "$scratch" none 120 -- "${kintsugi_eval[@]}"
"$KINTSUGI" optimize "$work/builtin.yaml" --state "$work/builtin.h5" 2>"$work/builtin.log" ||
  { cat "$work/builtin.log" >&2; fail "builtin search"; }
"$KINTSUGI" optimize "$work/cmd.yaml" --state "$work/cmd1.h5" 2>"$work/cmd1.log" ||
  { cat "$work/cmd1.log" >&2; fail "command search, 1 group"; }
same_evals "$work/builtin.h5" "$work/cmd1.h5"
mpi 2 "$KINTSUGI" optimize "$work/cmd.yaml" --state "$work/cmd2.h5" 2>"$work/cmd2.log" ||
  { cat "$work/cmd2.log" >&2; fail "command search, 2 groups"; }
same_evals "$work/builtin.h5" "$work/cmd2.h5"
/usr/bin/python3 - "$work/builtin.h5" "$work/cmd2.h5" <<'PY'
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
x, y = a["test"]["scores"][()], b["test"]["scores"][()]
assert x.shape == y.shape and x.tobytes() == y.tobytes(), "held-out scores differ"
m, s = b["evals"]["merge_seconds"][()], b["evals"]["score_seconds"][()]
assert (m > 0).all() and (s > 0).all(), "merge/score seconds not recorded"
print(f"held-out scores identical; merge {m.sum():.2f} s, scorer {s.sum():.2f} s")
PY
scratch_empty "command search"
"$KINTSUGI" report "$work/cmd2.h5" >"$work/report.txt" 2>"$work/report.log" ||
  { cat "$work/report.log" >&2; fail "report"; }
grep -E "merging and writing [0-9.]+%.*scorer [0-9.]+%" "$work/report.txt" ||
  { cat "$work/report.txt" >&2; fail "report shows no merge/scorer shares"; }

# export reads the command job from the state like any other.
"$KINTSUGI" export "$work/cmd2.h5" --out "$work/best" 2>"$work/export.log" ||
  { cat "$work/export.log" >&2; fail "export of a command-evaluator state"; }
[[ -f "$work/best/model.safetensors" && -f "$work/best/config.json" ]] || fail "export wrote no model"

echo "--- 1b. each group's scorer gets its own GPUs"
# gpus.sh LOG ARGV...: notes {gpus}, {num_gpus} and CUDA_VISIBLE_DEVICES, then scores.
gpu_job() {  # gpu_job OUT.yaml T
  make_job "$work/g.yaml" budget=2 population=2
  command_job "$work/g.yaml" "$1" kintsugi "$scratch" none 120 -- bash -c \
    'echo "{gpus} {num_gpus} $CUDA_VISIBLE_DEVICES" >> '"$work/gpus.log"'; exec "$0" "$@"' "${kintsugi_eval[@]}"
  /usr/bin/python3 -c 'import json, sys
j = json.load(open(sys.argv[1])); j["parallel"]["tensor_parallel"] = int(sys.argv[2])
json.dump(j, open(sys.argv[1], "w"), indent=1)' "$1" "$2"
}
gpus_seen() { sort -u "$work/gpus.log" | tr '\n' ';'; }
gpu_job "$work/g1.yaml" 1
: >"$work/gpus.log"
CUDA_VISIBLE_DEVICES=0,1,2,3 mpi 2 "$KINTSUGI" optimize "$work/g1.yaml" --state "$work/g1.h5" 2>"$work/g.log" ||
  { cat "$work/g.log" >&2; fail "2 groups, 4 GPUs"; }
[[ $(gpus_seen) == "0,1 2 0,1;2,3 2 2,3;" ]] || fail "2 groups sharing 4 GPUs: $(gpus_seen)"
# Each rank sees its own device (srun --gpus-per-task): a group of two ranks
# takes both, two groups of one take one each.
# own_devices JOB STATE WHAT: rank 0 sees device 5, rank 1 device 7.
own_devices() {
  : >"$work/gpus.log"
  "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np 1 -x CUDA_VISIBLE_DEVICES=5 \
    "$KINTSUGI" optimize "$1" --state "$2" : -np 1 -x CUDA_VISIBLE_DEVICES=7 \
    "$KINTSUGI" optimize "$1" --state "$2" 2>"$work/g.log" ||
    { cat "$work/g.log" >&2; fail "$3"; }
}
gpu_job "$work/g2.yaml" 2
own_devices "$work/g2.yaml" "$work/g2.h5" "1 group, a device per rank"
[[ $(gpus_seen) == "5,7 2 5,7;" ]] || fail "a group of two ranks with a device each: $(gpus_seen)"
own_devices "$work/g1.yaml" "$work/g3.h5" "2 groups, a device per rank"
[[ $(gpus_seen) == "5 1 5;7 1 7;" ]] || fail "two groups with a device each: $(gpus_seen)"
rc=0
CUDA_VISIBLE_DEVICES=0 mpi 2 "$KINTSUGI" optimize "$work/g1.yaml" --state "$work/g4.h5" 2>"$work/g.log" || rc=$?
[[ $rc == 2 ]] && grep -q "this node has 1 GPUs for 2 evaluation groups" "$work/g.log" ||
  { cat "$work/g.log" >&2; fail "fewer GPUs than groups should be exit 2, got $rc"; }
scratch_empty "GPU runs"

echo "--- 2. baselines through the lm-eval stand-in equal the builtin baselines"
standin=(/usr/bin/python3 "$KINTSUGI_SOURCE_DIR/test/scorers/lm_eval_standin.py" --model vllm
  --model_args "pretrained={model},tensor_parallel_size={num_gpus}" --tasks "{tasks}"
  --output_path "{output}" --seed "{seed}" --kintsugi "$KINTSUGI" --job "$work/builtin.yaml"
  --split "{split}" --group demo)
command_job "$work/builtin.yaml" "$work/lm.yaml" lm_eval "$scratch" none 120 -- "${standin[@]}"
"$KINTSUGI" baselines "$work/builtin.yaml" --state "$work/base-builtin.h5" 2>"$work/bb.log" ||
  { cat "$work/bb.log" >&2; fail "builtin baselines"; }
"$KINTSUGI" baselines "$work/lm.yaml" --state "$work/base-lm.h5" 2>"$work/bl.log" ||
  { cat "$work/bl.log" >&2; fail "stand-in baselines"; }
/usr/bin/python3 - "$work/base-builtin.h5" "$work/base-lm.h5" <<'PY'
import sys, h5py
a, b = (h5py.File(p, "r")["baselines"] for p in sys.argv[1:3])
assert [n for n in a["names"][()]] == [n for n in b["names"][()]], "baseline names differ"
for k in ("scores", "test_scores", "objective"):
    x, y = a[k][()], b[k][()]
    assert x.shape == y.shape and x.tobytes() == y.tobytes(), f"baselines/{k} differ:\n{x}\n{y}"
print(f"{len(a['names'][()])} baselines identical through lm-eval's results layout")
PY
scratch_empty "baselines"

echo "service_command: all passed"
