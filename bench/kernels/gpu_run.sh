#!/usr/bin/env bash
# One call on the GPU machine: record the environment, build the CUDA backend standalone
# (bench/kernels), run its tests and the GEMV benchmark, check the kernels with compute-sanitizer,
# dump the GEMV SASS loads, and try the top-level configure + build. Logs go to $OUT.
# Usage (repo root, on the device): bash bench/kernels/gpu_run.sh [full]
set -u
OUT=${OUT:-/tmp/voxrt_out}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
JOBS=$(nproc)
export PATH=/usr/local/cuda/bin:$PATH

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv
    cmake --version | head -1
    nvcc --version | tail -2
    g++ --version | head -1
    echo "ninja $(ninja --version)"
    for d in /usr/include/nlohmann /usr/include/gtest /usr/src/googletest /usr/lib/x86_64-linux-gnu/cmake/GTest; do
        [ -e "$d" ] && echo "present: $d" || echo "missing: $d"
    done
    pkg-config --exists libpcre2-8 && echo "pcre2 (pkg-config): present" || echo "pcre2 (pkg-config): missing"
    which cuobjdump compute-sanitizer
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# ---- standalone backend build + tests -----------------------------------------------------------
GT=""
[ -d /usr/include/gtest ] || GT="-DGTEST_SOURCE_DIR=$ROOT/.carry/googletest"
BK=/tmp/voxrt_bk
t0=$(date +%s)
if ! { cmake -S bench/kernels -B $BK -G Ninja $GT && ninja -C $BK -j "$JOBS"; } > "$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"
    exit 1
fi
echo "kernels build: $(( $(date +%s) - t0 )) s"
timeout 240 $BK/ops_cuda_test > "$OUT/ops_cuda_test.log" 2>&1
echo "ops_cuda_test rc=$?"
grep -E "FAILED|Failure|PASSED|SKIPPED|device:|differing: [1-9]|graph:" "$OUT/ops_cuda_test.log" | head -60
timeout 150 $BK/gemv_bench_test > "$OUT/gemv_bench.log" 2>&1
echo "gemv_bench_test rc=$?"
grep gemv_bench "$OUT/gemv_bench.log"

cuobjdump -sass $BK/libvoxrt_kernels.a 2>/dev/null |
    awk '/Function : .*gemv_kernel/{p=1; print; next} /Function :/{p=0} p && /LDG|LD\./' > "$OUT/sass_gemv.txt"
echo "gemv SASS loads: $(grep -c 'LDG.E.128' "$OUT/sass_gemv.txt") LDG.E.128, $(grep -c 'LDG' "$OUT/sass_gemv.txt") LDG total"

timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 \
    $BK/ops_cuda_test --gtest_filter=-CudaOps.ErrorsBecomeStatuses > "$OUT/memcheck.log" 2>&1
echo "memcheck rc=$? (0 clean, 9 errors, 124 timeout)"
grep -E "ERROR SUMMARY|Invalid|out of bounds" "$OUT/memcheck.log" | head -10

[ "${1:-}" = "full" ] || exit 0
# ---- top-level configure + build (needs nlohmann-json, GoogleTest, PCRE2 dev files) --------------
P=/tmp/voxrt_deps
EXTRA=""
if [ ! -d /usr/include/nlohmann ] || [ ! -d /usr/include/gtest ] || ! pkg-config --exists libpcre2-8; then
    for f in .carry/debs/*.deb; do dpkg -x "$f" $P; done
    sed -i "s|^prefix=.*|prefix=$P/usr|" $P/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
    export PKG_CONFIG_PATH=$P/usr/lib/x86_64-linux-gnu/pkgconfig
    EXTRA="-DCMAKE_PREFIX_PATH=$P/usr"
fi
FULL=/tmp/voxrt_full
t0=$(date +%s)
{
    cmake -S . -B $FULL -G Ninja -DVOXRT_CUDA=ON -DVOXRT_CUDA_ARCHS=90a $EXTRA \
        -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20 \
        -DCMAKE_CXX_STANDARD_LIBRARIES=$FULL/libvoxrt.a &&
        timeout 150 ninja -C $FULL -j "$JOBS" -k 0 ops_cuda_test
} > "$OUT/full.log" 2>&1
echo "full configure+build rc=$? in $(( $(date +%s) - t0 )) s"
grep -E "error|Error|FAILED|undefined reference" "$OUT/full.log" | head -15
