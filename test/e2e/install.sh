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
