#!/usr/bin/env bash
# Formats the C++ and CUDA sources with the repository's .clang-format.
# --check: changes nothing, lists the files that differ, exits 1 if any do.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.cu' '*.cuh')
if [[ "${1:-}" == --check ]]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [[ ${#bad[@]} -gt 0 ]]; then
    printf 'not clang-formatted: %s\n' "${bad[@]}" >&2
    echo "run: bash scripts/format.sh" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files clean"
else
  clang-format -i "${files[@]}"
fi
