#!/usr/bin/env bash
# mergekit's own examples/ as a test suite: every recipe of
# test/data/mergekit_examples (mergekit's examples with the model names as
# placeholders) against tiny stand-in checkpoints of each model's layout
# (test/e2e/mergekit_examples.py). Those that run: complete output folders,
# values against an independent Python reference (linear, ties, slerp with
# gradients over slices, passthrough frankenmerge, arcee_fusion); gradient-slerp also
# through mpirun -np 2 with the same bytes. Those refused: exit 2, one line
# naming the file and the part, nothing written.
set -euo pipefail
: "${KINTSUGI:?}" "${KINTSUGI_SOURCE_DIR:?}"
MPIEXEC=${MPIEXEC:-mpirun}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gen="$KINTSUGI_SOURCE_DIR/test/e2e/mergekit_examples.py"
python3 "$gen" make "$work" > "$work/cases.tsv"
mkdir "$work/out"
cd "$work/out"
runs=0 refused=0
while IFS=$'\t' read -r name outcome message; do
  set +e
  err=$("$KINTSUGI" -q merge "$work/recipes/$name" --out "$name" 2>&1 >/dev/null)
  rc=$?
  set -e
  if [[ $outcome == runs ]]; then
    [[ $rc -eq 0 ]] || { echo "FAIL: $name: exit $rc (want 0): $err"; exit 1; }
    runs=$((runs + 1))
    continue
  fi
  [[ $rc -eq 2 ]] || { echo "FAIL: $name: exit $rc (want 2): $err"; exit 1; }
  [[ $(printf '%s\n' "$err" | wc -l) -eq 1 ]] || { echo "FAIL: $name: not one line: $err"; exit 1; }
  # Every message starts with the recipe's file:line, but an incompatible
  # pool's, which names the checkpoints and the first difference.
  if [[ $message == "incompatible pool: "* ]]; then
    [[ $err == *"error: $message"* ]] || { echo "FAIL: $name: '$err' lacks '$message'"; exit 1; }
  else
    [[ $err == *": $work/recipes/$message"* ]] || { echo "FAIL: $name: '$err' lacks '$message'"; exit 1; }
  fi
  [[ ! -e $name && -z $(compgen -G "$name.partial*" || true) ]] || { echo "FAIL: $name: output left behind"; exit 1; }
  refused=$((refused + 1))
  echo "ok (refused): $err"
done < "$work/cases.tsv"
python3 "$gen" check "$work" "$work/out"
"$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none -np 2 \
  "$KINTSUGI" -q merge "$work/recipes/gradient-slerp.yml" --out slerp-np2 >/dev/null
diff -r gradient-slerp.yml slerp-np2 >/dev/null || { echo "FAIL: gradient-slerp: np=2 differs from np=1"; exit 1; }
echo "all mergekit examples checks passed: $runs run, $refused refused"
