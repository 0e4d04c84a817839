#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) into build-fuzz/ and runs each for a
# bounded time, starting from its seed corpus in fuzz/corpus/<target>/. Fails on any crash, leak,
# sanitizer report, timeout (an input taking more than 10 s) or out-of-memory (over 2 GB resident,
# or one allocation over 2 GB); the input that caused it is left in build-fuzz/artifacts/.
#
#   bash scripts/fuzz.sh [seconds-per-target] [target...]     (default 30 s each, all targets)
#
# New inputs the fuzzer finds go to build-fuzz/corpus/<target>/ (kept between runs), never into
# the repository's seed corpora.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
all=(wav safetensors config tokenizer_json bpe server)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
build_dir=${FUZZ_BUILD_DIR:-build-fuzz}

# The longest input each target is given: a few times its largest seed.
declare -A max_len=([wav]=16384 [safetensors]=16384 [config]=8192 [tokenizer_json]=16384 [bpe]=4096 [server]=65536)

echo "== build (libFuzzer + ASan + UBSan, clang) ==" >&2
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DVOXRT_FUZZ=ON -DVOXRT_CUDA=OFF -DVOXRT_TESTS=OFF >/dev/null
ninja -C "$build_dir" -j"$(nproc)" "${targets[@]/#/fuzz_}"

mkdir -p "$build_dir/artifacts"
failed=()
for t in "${targets[@]}"; do
  echo "== fuzz_$t: ${seconds} s ==" >&2
  work="$build_dir/corpus/$t"
  mkdir -p "$work"
  log="$build_dir/fuzz_$t.log"
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$build_dir/fuzz/fuzz_$t" -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=10 \
       -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$build_dir/artifacts/$t-" "$work" "fuzz/corpus/$t" >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$log" | tr '\n' ' ' >&2 || true
    echo "corpus: $(find "$work" -type f | wc -l) files" >&2
  else
    echo "fuzz_$t FAILED; the last lines of $log:" >&2
    tail -n 40 "$log" >&2
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]} (inputs in $build_dir/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no findings in ${targets[*]} (${seconds} s each)" >&2
