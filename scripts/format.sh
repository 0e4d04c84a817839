#!/usr/bin/env bash
# Formats every tracked C++ and CUDA file with Debian 12's clang-format (14) and the repository's
# .clang-format. `--check` changes nothing and fails, listing the files, if any would change;
# scripts/test.sh runs it that way. Another clang-format version may format differently, so the
# check insists on version 14.
set -euo pipefail
cd "$(dirname "$0")/.."
fmt=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$fmt" ]; then
  echo "format: clang-format not found (Debian package clang-format)" >&2
  exit 1
fi
if ! "$fmt" --version | grep -q 'version 14\.'; then
  echo "format: $fmt is not clang-format 14: $("$fmt" --version)" >&2
  exit 1
fi
mapfile -t files < <(git ls-files '*.cpp' '*.cc' '*.h' '*.hpp' '*.cu' '*.cuh')
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    if ! "$fmt" --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "format: ${#bad[@]} file(s) need clang-format (run: bash scripts/format.sh):" >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files clean" >&2
else
  "$fmt" -i "${files[@]}"
fi
