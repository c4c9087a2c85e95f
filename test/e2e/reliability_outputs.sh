#!/usr/bin/env bash
# Issue 15, class 1: outputs never touch what this run did not create.
# merge/export write through a temporary folder of their own (a user's
# DIR.partial or DIR.old is never removed, even when it is one of the merge's
# inputs); an output that is, contains or lies inside an input (a checkpoint,
# the recipe, the job file, the state) is refused with exit 2, one line naming
# both, and the input is left byte for byte; a --state that is a symbolic link
# is written through to its target and stays a link.
source "$(dirname "$0")/service_lib.sh"
source "$(dirname "$0")/reliability_lib.sh"
python3 "$KINTSUGI_SOURCE_DIR/test/e2e/merge_pool.py" make "$work/pool"
cd "$work"
recipe() {  # OUT W1 W2 [MODEL1]: a linear recipe of MODEL1 (default pool/m1) and pool/m2
  printf 'merge_method: linear\nmodels:\n  - model: %s\n    parameters: {weight: %s}\n  - model: %s/pool/m2\n    parameters: {weight: %s}\n' \
    "${4:-$work/pool/m1}" "$2" "$work" "$3" >"$1"
}
no_leftovers() {  # PREFIX: nothing named PREFIX.partial-* or PREFIX.old-* is left
  [[ -z $(compgen -G "$1.partial-*" || true) && -z $(compgen -G "$1.old-*" || true) ]] ||
    fail "temporary folders left: $(compgen -G "$1.*-*")"
}
recipe r1.yaml 1 1
recipe r2.yaml 1 3
m1=$(tree_sum pool/m1) m2=$(tree_sum pool/m2) pool_sum=$(tree_sum pool)

# 1. A user's out.partial (here holding a copy of an input model) survives a merge to out.
mkdir out.partial && cp -r pool/m3 out.partial/m3 && echo mine >out.partial/keep
before=$(tree_sum out.partial)
"$KINTSUGI" merge r1.yaml --out out >/dev/null 2>log || { cat log; fail "merge with a user's out.partial"; }
[[ $(tree_sum out.partial) == "$before" ]] || fail "the user's out.partial changed"
cmp -s r1.yaml out/kintsugi_recipe.yaml || fail "out is not the merge of r1.yaml"
no_leftovers out
echo "ok: a user's out.partial is untouched by merge --out out"

# 2. The user's folder named like our temporary one is one of the merge's inputs.
cp -r pool/m1 x.partial
recipe rx.yaml 1 1 "$work/x.partial"
"$KINTSUGI" merge rx.yaml --out x >/dev/null 2>log || { cat log; fail "merge of x.partial into x"; }
[[ $(tree_sum x.partial) == "$m1" ]] || fail "the input x.partial changed"
python3 "$KINTSUGI_SOURCE_DIR/test/e2e/merge_pool.py" linear-check x 1,1 pool/m1 pool/m2 >/dev/null ||
  fail "x is not the linear merge of its inputs"
no_leftovers x
echo "ok: an input named x.partial survives merge --out x and is merged correctly"

# 3. --overwrite replaces out, and leaves a user's out.old alone.
mkdir out.old && echo notes >out.old/notes
"$KINTSUGI" merge r2.yaml --out out --overwrite >/dev/null 2>log || { cat log; fail "--overwrite"; }
cmp -s r2.yaml out/kintsugi_recipe.yaml || fail "--overwrite did not replace out"
[[ $(cat out.old/notes) == notes && $(ls out.old) == notes ]] || fail "the user's out.old changed"
no_leftovers out
echo "ok: --overwrite replaces out and leaves out.old alone"

# 4. Outputs that are, contain or lie inside an input are refused; nothing changes.
ln -s pool/m2 alias
refused "output folder $work/pool/m1: is the checkpoint $work/pool/m1" -- \
  "$KINTSUGI" merge r1.yaml --out "$work/pool/m1" --overwrite
refused "output folder pool/m1/merged: lies inside the checkpoint $work/pool/m1" -- \
  "$KINTSUGI" merge r1.yaml --out pool/m1/merged
refused "output folder pool: contains the checkpoint $work/pool/m1" -- \
  "$KINTSUGI" merge r1.yaml --out pool --overwrite
refused "output folder alias: is the checkpoint $work/pool/m2" -- \
  "$KINTSUGI" merge r1.yaml --out alias --overwrite
refused "output folder r1.yaml: is the recipe" -- "$KINTSUGI" merge r1.yaml --out r1.yaml --overwrite
refused "output folder $work/pool/..: contains the recipe r1.yaml" -- "$KINTSUGI" merge r1.yaml --out "$work/pool/.." --overwrite
[[ $(tree_sum pool) == "$pool_sum" && $(tree_sum pool/m1) == "$m1" && $(tree_sum pool/m2) == "$m2" ]] ||
  fail "a refused merge changed the pool"
[[ ! -e pool/m1/merged && -L alias && -f r1.yaml ]] || fail "a refused merge left something"
no_leftovers pool/m1
no_leftovers pool
# Under MPI too (every rank gets the refusal, the job ends with exit 2).
refused "output folder $work/pool/m1: is the checkpoint" -- mpi 2 "$KINTSUGI" merge r1.yaml --out "$work/pool/m1" --overwrite
[[ $(tree_sum pool) == "$pool_sum" ]] || fail "a refused MPI merge changed the pool"

# 5. The service: a state behind a symbolic link, a user's folders beside the
# state, a state or an export that would overwrite an input.
copy_demo "$work/src"
demo="$work/src/examples/demo"
demo_job "$work/src" job.yaml budget=6
mkdir real && ln -s real/s.h5 s-link.h5
mkdir real/s.h5.baselines.partial && echo mine >real/s.h5.baselines.partial/keep
mpi 2 "$KINTSUGI" baselines job.yaml --state s-link.h5 2>log || { cat log; fail "baselines through a link"; }
mpi 2 "$KINTSUGI" optimize job.yaml --state s-link.h5 2>>log || { cat log; fail "optimize through a link"; }
[[ -L s-link.h5 && $(readlink s-link.h5) == real/s.h5 ]] || fail "the state's link was replaced"
h5ls real/s.h5/evals >/dev/null || fail "real/s.h5 is not the state"
[[ -f real/s.h5.prev && ! -e s-link.h5.prev ]] || fail ".prev is not beside the link's target"
[[ $(cat real/s.h5.baselines.partial/keep) == mine ]] || fail "the user's s.h5.baselines.partial changed"
[[ -z $(compgen -G "real/s.h5.baselines-*" || true) ]] || fail "baselines left its temporary folder"
"$KINTSUGI" report s-link.h5 --json >report.json || fail "report through the link"
[[ $(evals_count real/s.h5) == 6 ]] || fail "the search did not land in the link's target"
echo "ok: a --state link is written through; the user's s.h5.baselines.partial is untouched"

ck="$demo/pool/sft-add-lr1e-4-step200"
ck_sum=$(tree_sum "$ck") job_sum=$(tree_sum job.yaml) state_sum=$(tree_sum real/s.h5)
refused "--state $work/job.yaml: is the job file $work/job.yaml" -- "$KINTSUGI" baselines job.yaml --state job.yaml
refused "--state $ck/state.h5: lies inside the checkpoint $ck" -- \
  mpi 2 "$KINTSUGI" optimize job.yaml --state "$ck/state.h5"
refused "--state $ck/model.safetensors: lies inside the checkpoint $ck" -- \
  "$KINTSUGI" baselines job.yaml --state "$ck/model.safetensors"
refused "is the task file" -- "$KINTSUGI" baselines job.yaml --state "$demo/tasks/add.search.jsonl"
refused "output folder $ck: is the checkpoint $ck" -- "$KINTSUGI" export s-link.h5 --out "$ck" --overwrite
refused "output folder $demo: contains the checkpoint" -- mpi 2 "$KINTSUGI" export s-link.h5 --out "$demo" --overwrite
refused "output folder $ck/best: lies inside the checkpoint $ck" -- "$KINTSUGI" export s-link.h5 --out "$ck/best"
refused "output folder real/s.h5: is the state real/s.h5" -- "$KINTSUGI" export real/s.h5 --out real/s.h5 --overwrite
mkdir jobdir && cp job.yaml jobdir/job.yaml
refused "output folder jobdir: contains the job file jobdir/job.yaml" -- \
  "$KINTSUGI" export s-link.h5 --job jobdir/job.yaml --out jobdir --overwrite
[[ -f jobdir/job.yaml ]] || fail "a refused export removed the job file"
[[ $(tree_sum "$ck") == "$ck_sum" && $(tree_sum job.yaml) == "$job_sum" && $(tree_sum real/s.h5) == "$state_sum" ]] ||
  fail "a refused command changed an input"
[[ ! -e "$ck/state.h5" && ! -e "$ck/best" && ! -e "$ck/state.h5.lock" ]] || fail "a refused command wrote into a checkpoint"

# Export next to a user's best.partial and best.old, twice (the second replaces).
mkdir best.partial best.old && echo a >best.partial/a && echo b >best.old/b
mpi 2 "$KINTSUGI" export s-link.h5 --out best 2>log || { cat log; fail "export"; }
mpi 2 "$KINTSUGI" export s-link.h5 --out best --overwrite --dtype float32 2>log || { cat log; fail "export --overwrite"; }
grep -q '"torch_dtype": "float32"' best/config.json || fail "export --overwrite did not replace best"
[[ $(cat best.partial/a) == a && $(cat best.old/b) == b ]] || fail "export touched best.partial or best.old"
no_leftovers best
echo "all output-safety checks passed"
