#!/usr/bin/env bash
# The demo: on a fresh Debian 12 machine, installs dependencies, builds, and
# runs the main job on the embedded example pool:
#   baselines  -> every checkpoint and the standard merge recipes
#   optimize   -> CMA-ES over the merge weights on 2 MPI ranks (2 groups)
#   report     -> the table: checkpoints, baselines, the optimized merge
# Output (state, report) goes to demo-out/ unless DEMO_OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

bash scripts/install-deps.sh
bash scripts/build.sh --cli

out=${DEMO_OUT:-demo-out}
ranks=${DEMO_RANKS:-2}
mkdir -p "$out"
state="$out/demo-state.h5"
rm -f "$state" "$state.prev"
job=examples/demo/job.yaml

echo "== baselines" >&2
mpirun --oversubscribe --bind-to none -np "$ranks" ./build/kintsugi baselines "$job" --state "$state"
echo "== optimize (mpirun -np $ranks)" >&2
mpirun --oversubscribe --bind-to none -np "$ranks" ./build/kintsugi optimize "$job" --state "$state"
echo "== report" >&2
./build/kintsugi report "$state" | tee "$out/report.txt"
./build/kintsugi report "$state" --json >"$out/report.json"
./build/kintsugi report "$state" --html "$out/report.html"
echo "state: $state; report: $out/report.txt, $out/report.json, $out/report.html (open it in a browser)" >&2
