#!/usr/bin/env bash
# `cmake --install` puts the binary, the examples and the docs in a prefix, and
# the installed binary runs.
set -euo pipefail
: "${KINTSUGI_BUILD_DIR:?}"
prefix=$(mktemp -d /tmp/kintsugi-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$KINTSUGI_BUILD_DIR" --prefix "$prefix" >/dev/null
for f in bin/kintsugi share/kintsugi/examples/demo/job.yaml share/doc/kintsugi/README.md \
         share/doc/kintsugi/operations.md; do
  [[ -e "$prefix/$f" ]] || { echo "FAIL: $f not installed" >&2; exit 1; }
done
"$prefix/bin/kintsugi" --version
"$prefix/bin/kintsugi" inspect "$prefix/share/kintsugi/examples/demo/pool/base" >/dev/null

# Neither binary looks for its libraries in the working directory: no empty
# (or relative) RUNPATH entry, and a broken copy of each library it needs,
# left in the folder it runs from, changes nothing.
for bin in "$KINTSUGI_BUILD_DIR/kintsugi" "$prefix/bin/kintsugi"; do
  runpath=$(readelf -d "$bin" | sed -n 's/.*(\(RUNPATH\|RPATH\)).*\[\(.*\)\]/\2/p')
  IFS=: read -ra entries <<<"$runpath"
  [[ -z $runpath || ${runpath: -1} != ":" ]] || { echo "FAIL: $bin: RUNPATH '$runpath' ends in an empty entry" >&2; exit 1; }
  for e in "${entries[@]}"; do
    # shellcheck disable=SC2016 # $ORIGIN is the loader's, not the shell's
    [[ $e == /* || $e == '$ORIGIN'* ]] ||
      { echo "FAIL: $bin: RUNPATH '$runpath' has the entry '$e', relative to the working directory" >&2; exit 1; }
  done
  bin=$(realpath "$bin")
  trap_dir=$(mktemp -d /tmp/kintsugi-libs.XXXXXX)
  while read -r lib; do
    echo "not a library" >"$trap_dir/$lib"
  done < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  (cd "$trap_dir" && "$bin" --version >/dev/null) ||
    { echo "FAIL: $bin loads libraries from the working directory" >&2; rm -rf "$trap_dir"; exit 1; }
  rm -rf "$trap_dir"
done
