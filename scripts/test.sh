#!/usr/bin/env bash
# The README's second command (and CI's): install what is needed, check formatting, build everything (the CUDA
# backend too when a CUDA toolkit is present; GPU tests skip without a GPU), run every test, then
# build the CPU library and tests again with AddressSanitizer + UndefinedBehaviorSanitizer and run
# them again, then run each fuzz target for a bounded time (scripts/fuzz.sh; VOXRT_FUZZ_SECONDS,
# default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)

echo "== format (clang-format 14) ==" >&2
bash scripts/format.sh --check

echo "== build (Release) ==" >&2
BUILD_DIR=build bash scripts/build.sh
echo "== tests (Release) ==" >&2
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== build (ASan + UBSan, CPU) ==" >&2
BUILD_DIR=build-asan bash scripts/build.sh -DVOXRT_SANITIZE=ON -DVOXRT_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== tests (ASan + UBSan) ==" >&2
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== fuzz (libFuzzer + ASan + UBSan, ${VOXRT_FUZZ_SECONDS:-30} s a target) ==" >&2
bash scripts/fuzz.sh "${VOXRT_FUZZ_SECONDS:-30}"
