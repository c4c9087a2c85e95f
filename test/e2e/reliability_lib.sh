# Shared by the reliability end-to-end tests (sourced after service_lib.sh).

# copy_demo DIR: a private copy of the demo pool and tasks (the tests change
# and remove files in it; the checkout's copy is never a test's input),
# without the validation split (the search selects in-sample, as make_job's).
copy_demo() {
  mkdir -p "$1/examples"
  cp -r "$KINTSUGI_SOURCE_DIR/examples/demo" "$1/examples/demo"
  rm -f "$1"/examples/demo/tasks/*.validation.jsonl
}

# demo_job SRC OUT [KEY=VALUE ...]: make_job (service_lib.sh) on the copy at
# SRC, naming its task files in place.
demo_job() {
  local src=$1; shift
  KINTSUGI_SOURCE_DIR=$src KINTSUGI_DEMO_IN_PLACE=1 make_job "$@"
}

# tree_sum DIR|FILE: one hash of a folder's (or a file's) names and bytes.
tree_sum() {
  if [[ -d $1 ]]; then
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum
  else
    sha256sum <"$1"
  fi
}

# fails_with RC WANT... -- CMD...: CMD exits RC with one "kintsugi: error:"
# line on stderr that holds every WANT, and no raw internal text (a crash, a
# JSON type_error, libstdc++'s "filesystem error").
fails_with() {
  local want_rc=$1
  shift
  local wants=()
  while [[ $1 != -- ]]; do wants+=("$1"); shift; done
  shift
  local err rc
  set +e
  err=$("$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  # mpirun adds its own lines after an MPI_Abort: keep kintsugi's.
  local line
  line=$(printf '%s\n' "$err" | grep '^kintsugi: error:' | sort -u || true)
  [[ $rc -eq $want_rc ]] || fail "exit $rc (want $want_rc) from: $* :: $err"
  [[ -n $line && $(printf '%s\n' "$line" | wc -l) -eq 1 ]] || fail "not one error line from: $* :: $err"
  for w in "${wants[@]}"; do
    [[ $line == *"$w"* ]] || fail "'$line' lacks '$w'"
  done
  [[ $err != *"Segmentation"* && $err != *"type_error"* && $err != *"filesystem error"* ]] ||
    fail "raw internal text from: $* :: $err"
  echo "ok (exit $want_rc): $line"
}

# refused WANT... -- CMD...: fails_with 2 (bad input).
refused() { fails_with 2 "$@"; }
