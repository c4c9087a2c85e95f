#!/usr/bin/env bash
# Formats the C++ and CUDA sources with the repository's .clang-format.
# --check: changes nothing, lists the files that differ, exits 1 if any do.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h' '*.cu' '*.cuh')
if [[ "${1:-}" == --check ]]; then
  # One clang-format process for every file (one per file cost CI 8 s); it
  # names each file that differs in its "code should be clang-formatted"
  # diagnostics.
  rc=0
  out=$(clang-format --dry-run --Werror "${files[@]}" 2>&1) || rc=$?
  mapfile -t bad < <(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' <<<"$out" | sort -u)
  if [[ $rc -ne 0 && ${#bad[@]} -eq 0 ]]; then
    printf '%s\n' "$out" >&2
    echo "format: clang-format failed (exit $rc)" >&2
    exit 1
  fi
  if [[ ${#bad[@]} -gt 0 ]]; then
    printf 'not clang-formatted: %s\n' "${bad[@]}" >&2
    echo "run: bash scripts/format.sh" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files clean"
else
  clang-format -i "${files[@]}"
fi
