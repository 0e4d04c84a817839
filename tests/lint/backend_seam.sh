#!/usr/bin/env bash
# The backend seam, checked on the sources (docs/architecture.md, "Backend seam"):
#  1. Above the CUDA backend (every C/C++ file of src/, include/ and tools/ outside src/backend/cuda/)
#     nothing includes a CUDA header or the CUDA backend's internals, and nothing names a CUDA API
#     type or function, the backend's namespace or a CUDA-named seam function (cudaStream_t,
#     cublasHandle_t, nvtxRangePushA, cuda::, cuda_available, CudaContextOptions, ...). The device
#     kind Device::kCUDA is the one CUDA name allowed: it is how callers pick the backend.
#  2. src/ reads no environment variable except the user-facing settings of ALLOWED_GETENV below,
#     each read with a literal name from the file listed and documented in README.md or docs/.
#
# Usage: backend_seam.sh [ROOT]   (default: the repository this script is in)
#        backend_seam.sh --self-test   (the check must fail on planted violations and pass without)
set -euo pipefail

# "path variable" pairs: which file may read which environment variable. Empty today: the library
# is configured through its options (ModelOptions, SessionOptions, backend::ContextOptions).
ALLOWED_GETENV=()

# Files above the seam that may carry a CUDA compiler marker, with the reason.
#  src/ops/rng.h: the sampler's generator is compiled by both backends' compilers; under nvcc its
#  functions are marked __host__ __device__ (#ifdef __CUDACC__).
ALLOWED_CUDA_MARKER=(src/ops/rng.h)

check() {
    local root=$1 fail=0
    cd "$root"
    local dirs=()
    for d in src include tools; do [ -d "$d" ] && dirs+=("$d"); done
    mapfile -t files < <(find "${dirs[@]}" -type f \
        \( -name '*.h' -o -name '*.hpp' -o -name '*.cpp' -o -name '*.cc' -o -name '*.cu' \
        -o -name '*.cuh' \) -not -path 'src/backend/cuda/*' | sort)

    # 1. CUDA headers, types and names.
    local include_re='#[[:space:]]*include[[:space:]]*[<"](cuda|cublas|cufft|curand|cudnn|cusparse|cusolver|nvtx|nvrtc|cooperative_groups|thrust/|cub/|backend/cuda/)'
    local name_re='\b(cuda[A-Z][A-Za-z0-9_]*|cu(blas|blasLt|fft|rand|dnn|sparse|solver)[A-Za-z0-9_]*|CU(BLAS|FFT|DA)_[A-Z0-9_]+|CU[a-z][A-Za-z0-9_]*|nvtx[A-Za-z0-9_]*|cuda::|cuda_[A-Za-z0-9_]+|Cuda[A-Z][A-Za-z0-9_]*|__nv_bfloat16|__global__|__shared__)'
    local marker_re='\b(__CUDACC__|__host__|__device__)\b'
    local f hits
    for f in "${files[@]}"; do
        if hits=$(grep -nE "$include_re" "$f"); then
            echo "backend seam: $f includes a CUDA header or the CUDA backend's internals:" >&2
            echo "$hits" | sed 's/^/    /' >&2
            fail=1
        fi
        if hits=$(grep -nE "$name_re" "$f"); then
            echo "backend seam: $f names a CUDA type or function (move it into src/backend/cuda/):" >&2
            echo "$hits" | sed 's/^/    /' >&2
            fail=1
        fi
        if hits=$(grep -nE "$marker_re" "$f") && ! printf '%s\n' "${ALLOWED_CUDA_MARKER[@]}" | grep -qxF "$f"; then
            echo "backend seam: $f uses a CUDA compiler marker:" >&2
            echo "$hits" | sed 's/^/    /' >&2
            fail=1
        fi
    done

    # 2. getenv in src/.
    local line file var
    while IFS= read -r line; do
        [ -z "$line" ] && continue
        file=${line%%:*}
        var=$(echo "$line" | sed -nE 's/.*getenv[[:space:]]*\([[:space:]]*"([^"]*)".*/\1/p')
        if [ -z "$var" ]; then
            echo "backend seam: $line: getenv without a literal variable name" >&2
            fail=1
            continue
        fi
        if ! printf '%s\n' "${ALLOWED_GETENV[@]}" | grep -qxF "$file $var"; then
            echo "backend seam: $line: $var is not an allowed setting (tests/lint/backend_seam.sh ALLOWED_GETENV)" >&2
            fail=1
            continue
        fi
        if ! grep -rqF "$var" README.md docs 2>/dev/null; then
            echo "backend seam: $line: $var is not documented in README.md or docs/" >&2
            fail=1
        fi
    done < <(grep -rnE '\b(secure_)?getenv[[:space:]]*\(' src 2>/dev/null || true)
    return $fail
}

self_test() {
    local tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    mkdir -p "$tmp/src/model" "$tmp/src/backend/cuda" "$tmp/src/ops" "$tmp/docs"
    # Clean: CUDA names inside the backend, the device kind and the allowed marker above it.
    printf '#include <cuda_runtime.h>\ncudaStream_t s; namespace voxrt::cuda {}\n' >"$tmp/src/backend/cuda/a.cpp"
    printf 'bool on_gpu(Device d) { return d == Device::kCUDA; }  // the CUDA device kind\n' >"$tmp/src/model/ok.cpp"
    printf '#ifdef __CUDACC__\n#define HD __host__ __device__\n#endif\n' >"$tmp/src/ops/rng.h"
    if ! (check "$tmp") 2>/dev/null; then
        echo "backend seam self-test: a clean tree was rejected" >&2
        return 1
    fi
    local bad
    for bad in '#include <cuda_runtime.h>' '#include "backend/cuda/handles.h"' 'void* s = (cudaStream_t)0;' \
        'cublasHandle_t h;' 'nvtxRangePop();' 'ctx.cuda_stream = 0;' 'backend::CudaContextOptions o;' \
        'cuda::linear(ctx, x, w, b, y);' '__global__ void k() {}' 'const char* e = std::getenv("VOXRT_X");' \
        'const char* e = getenv(name);'; do
        printf '%s\n' "$bad" >"$tmp/src/model/bad.cpp"
        if (check "$tmp") 2>/dev/null; then
            echo "backend seam self-test: not caught: $bad" >&2
            return 1
        fi
    done
    rm "$tmp/src/model/bad.cpp"
    # An allowed, documented setting passes; undocumented it fails.
    printf 'const char* e = std::getenv("VOXRT_DOC");\n' >"$tmp/src/model/env.cpp"
    ALLOWED_GETENV=("src/model/env.cpp VOXRT_DOC")
    if (check "$tmp") 2>/dev/null; then
        echo "backend seam self-test: an undocumented setting passed" >&2
        return 1
    fi
    echo "VOXRT_DOC: a documented setting" >"$tmp/docs/settings.md"
    if ! (check "$tmp") 2>/dev/null; then
        echo "backend seam self-test: an allowed, documented setting was rejected" >&2
        return 1
    fi
    echo "backend seam self-test: ok" >&2
}

if [ "${1:-}" = "--self-test" ]; then
    self_test
    exit $?
fi
root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
if check "$root"; then
    echo "backend seam: clean" >&2
else
    exit 1
fi
