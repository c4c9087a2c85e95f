#!/usr/bin/env bash
# Sourced by the method tests whose Python reference has `make` and `check`
# (merge_della.sh, merge_ram.sh): run_reference_cases REF [MERGE ARGS...]
# makes the pools and recipes in a new folder ($work, removed on exit), merges
# each recipe at every rank count its line names (np 1 without mpirun: a
# singleton MPI rank, the same code; mpirun's start-up is most of these tests'
# time), requires every other rank count to give np 1's bytes, then runs the
# reference's check on the np 1 outputs.
run_reference_cases() {
  local ref=$1
  shift
  : "${KINTSUGI:?}"
  local mpiexec=${MPIEXEC:-mpirun}
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  local runs run c nps np
  mapfile -t runs < <(python3 "$ref" make "$work")
  cd "$work"
  for run in "${runs[@]}"; do
    read -r c nps <<<"$run"
    for np in ${nps//,/ }; do
      if [[ $np == 1 ]]; then
        "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-1" "$@" --chunk-mib 1 --max-shard-size 20KB >/dev/null
      else
        "$mpiexec" --allow-run-as-root --oversubscribe --bind-to none -np "$np" \
          "$KINTSUGI" -q merge "$c.yaml" --out "out-$c-$np" "$@" --chunk-mib 1 --max-shard-size 20KB >/dev/null
        diff -r "out-$c-1" "out-$c-$np" >/dev/null || { echo "FAIL: $c: np=$np differs from np=1"; exit 1; }
        echo "ok: $c: np=$np gives np=1's bytes"
      fi
    done
  done
  python3 "$ref" check "$work"
}
