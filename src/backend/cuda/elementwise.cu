// CUDA elementwise ops, copies, dtype conversion and transpose.
#include <cstring>
#include <vector>

#include "backend/cuda/handles.h"
#include <cuda_fp16.h>

#include "backend/cuda/common.cuh"

namespace voxrt::cuda {

namespace {

constexpr int kThreads = 256;

enum class Binary : uint8_t { kAdd, kAddScaled, kMul, kSwiglu };

__device__ __forceinline__ float apply(ops::Activation act, float v) {
    switch (act) {
        case ops::Activation::kSilu: return v / (1.0f + expf(-v));
        case ops::Activation::kRelu: return v > 0.0f ? v : 0.0f;
        case ops::Activation::kGeluErf: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        case ops::Activation::kSigmoid: return 1.0f / (1.0f + expf(-v));
        case ops::Activation::kExp: return expf(v);
    }
    return v;
}

__device__ __forceinline__ float binary(Binary op, float p, float q, float alpha, bool round) {
    switch (op) {
        case Binary::kAdd: return p + q;
        case Binary::kAddScaled: return p + rnd(alpha * q, round);
        case Binary::kMul: return p * q;
        case Binary::kSwiglu: return rnd(apply(ops::Activation::kSilu, p), round) * q;
    }
    return 0.0f;
}

// Eight elements per thread with 16-byte accesses when every pointer allows it, else one.
__global__ void binary_kernel(Ptr a, Ptr b, Ptr y, int64_t n, Binary op, float alpha, bool round, bool vec8) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (vec8) {
        for (; i * 8 < n; i += stride) {
            float va[8], vb[8], vy[8];
            load8(a, i * 8, va);
            load8(b, i * 8, vb);
#pragma unroll
            for (int j = 0; j < 8; ++j) vy[j] = binary(op, va[j], vb[j], alpha, round);
            store8(y, i * 8, vy, round);
        }
    } else {
        for (; i < n; i += stride) y.store(i, binary(op, a.load(i), b.load(i), alpha, round), round);
    }
}

__global__ void unary_kernel(Ptr x, Ptr y, int64_t n, ops::Activation act, bool round, bool vec8) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (vec8) {
        for (; i * 8 < n; i += stride) {
            float v[8];
            load8(x, i * 8, v);
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = apply(act, v[j]);
            store8(y, i * 8, v, round);
        }
    } else {
        for (; i < n; i += stride) y.store(i, apply(act, x.load(i)), round);
    }
}

__global__ void glu_kernel(Ptr x, Ptr y, int64_t M, int64_t C, bool round) {
    const int64_t n = M * C, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int64_t m = i / C, c = i - m * C;
        const float a = x.load(m * 2 * C + c), g = x.load(m * 2 * C + C + c);
        y.store(i, a * (1.0f / (1.0f + expf(-g))), round);
    }
}

__global__ void round_kernel(float* p, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        p[i] = round_bf16(p[i]);
}

// Conversion between numeric dtypes through double, like the CPU copy.
__device__ __forceinline__ double load_any(const void* p, DType dt, int64_t i) {
    switch (dt) {
        case DType::kF32: return static_cast<const float*>(p)[i];
        case DType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
        case DType::kF16: return __half2float(static_cast<const __half*>(p)[i]);
        case DType::kF64: return static_cast<const double*>(p)[i];
        case DType::kI64: return static_cast<double>(static_cast<const int64_t*>(p)[i]);
        case DType::kI32: return static_cast<const int32_t*>(p)[i];
        default: return 0.0;
    }
}

__global__ void convert_kernel(const void* src, DType st, void* dst, DType dt, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const double v = load_any(src, st, i);
        switch (dt) {
            case DType::kF32: static_cast<float*>(dst)[i] = static_cast<float>(v); break;
            case DType::kBF16: static_cast<__nv_bfloat16*>(dst)[i] = __float2bfloat16_rn(static_cast<float>(v)); break;
            case DType::kI32: static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(v); break;
            case DType::kI64: static_cast<int64_t*>(dst)[i] = static_cast<int64_t>(v); break;
            case DType::kF64: static_cast<double*>(dst)[i] = v; break;
            default: break;
        }
    }
}

__global__ void set_value_kernel(Ptr t, int64_t index, float value) { t.store(index, value, false); }

__global__ void increment_kernel(uint32_t* t, int64_t n, uint32_t delta) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) t[i] += delta;
}

// Copy i of table [n, 3] (src, dst, bytes) in block row blockIdx.y: 16-byte words where all three
// allow, else bytes.
__global__ void copy_many_kernel(const int64_t* table) {
    const int64_t* e = table + 3 * static_cast<int64_t>(blockIdx.y);
    const char* src = reinterpret_cast<const char*>(e[0]);
    char* dst = reinterpret_cast<char*>(e[1]);
    const int64_t bytes = e[2];
    const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    if (((e[0] | e[1] | bytes) & 15) == 0) {
        const uint4* s4 = reinterpret_cast<const uint4*>(src);
        uint4* d4 = reinterpret_cast<uint4*>(dst);
        for (int64_t i = start; i < bytes / 16; i += stride) d4[i] = s4[i];
    } else {
        for (int64_t i = start; i < bytes; i += stride) dst[i] = src[i];
    }
}

// Tensor i of table [n, 2] (address, count) in block blockIdx.x.
__global__ void increment_many_kernel(const int64_t* table, uint32_t delta) {
    uint32_t* t = reinterpret_cast<uint32_t*>(table[2 * blockIdx.x]);
    const int64_t n = table[2 * blockIdx.x + 1];
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) t[i] += delta;
}

// One thread per row: it alone reads the row's first element and writes the row.
__global__ void fill_rows_led_by_kernel(int32_t* t, int64_t M, int64_t N, int32_t value) {
    const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (m >= M || t[m * N] != value) return;
    for (int64_t j = 1; j < N; ++j) t[m * N + j] = value;
}

bool convertible(DType dt) {
    return dt == DType::kF32 || dt == DType::kBF16 || dt == DType::kF16 || dt == DType::kF64 ||
           dt == DType::kI64 || dt == DType::kI32;
}

// 32x32 tiles through shared memory; E is an unsigned type of the element's size.
template <class E>
__global__ void transpose_kernel(const E* x, E* y, int64_t A, int64_t B) {
    __shared__ E tile[32][33];
    const int64_t a0 = static_cast<int64_t>(blockIdx.y) * 32, b0 = static_cast<int64_t>(blockIdx.x) * 32;
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        const int64_t a = a0 + r, b = b0 + threadIdx.x;
        if (a < A && b < B) tile[r][threadIdx.x] = x[a * B + b];
    }
    __syncthreads();
    for (int r = threadIdx.y; r < 32; r += blockDim.y) {
        const int64_t b = b0 + r, a = a0 + threadIdx.x;
        if (a < A && b < B) y[b * A + a] = tile[threadIdx.x][r];
    }
}

bool vec8_ok(int64_t n, std::initializer_list<const void*> ptrs) {
    if (n % 8 != 0) return false;
    for (const void* p : ptrs)
        if (!aligned16(p)) return false;
    return true;
}

void launch_binary(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y, Binary op, float alpha,
                   const char* name) {
    const int64_t n = a.numel();
    if (n == 0) return;
    const bool v8 = vec8_ok(n, {a.data, b.data, y.data});
    binary_kernel<<<grid_for(v8 ? n / 8 : n, kThreads), kThreads, 0, stream_of(ctx)>>>(
        ptr_of(a), ptr_of(b), ptr_of(y), n, op, alpha, ctx.round_bf16(), v8);
    check_launch(ctx, name);
}

}  // namespace

void add(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    launch_binary(ctx, a, b, y, Binary::kAdd, 0.0f, "add");
}

void add_scaled(const ops::Context& ctx, const Tensor& a, const Tensor& b, float alpha, Tensor& y) {
    launch_binary(ctx, a, b, y, Binary::kAddScaled, alpha, "add_scaled");
}

void mul(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    launch_binary(ctx, a, b, y, Binary::kMul, 0.0f, "mul");
}

void swiglu(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    launch_binary(ctx, a, b, y, Binary::kSwiglu, 0.0f, "swiglu");
}

void activation(const ops::Context& ctx, ops::Activation act, const Tensor& x, Tensor& y) {
    const int64_t n = x.numel();
    if (n == 0) return;
    const bool v8 = vec8_ok(n, {x.data, y.data});
    unary_kernel<<<grid_for(v8 ? n / 8 : n, kThreads), kThreads, 0, stream_of(ctx)>>>(ptr_of(x), ptr_of(y), n, act,
                                                                                      ctx.round_bf16(), v8);
    check_launch(ctx, "activation");
}

void glu(const ops::Context& ctx, const Tensor& x, Tensor& y) {
    const int64_t M = rows_of(y), C = cols_of(y);
    if (M * C == 0) return;
    glu_kernel<<<grid_for(M * C, kThreads), kThreads, 0, stream_of(ctx)>>>(ptr_of(x), ptr_of(y), M, C,
                                                                           ctx.round_bf16());
    check_launch(ctx, "glu");
}

void round_to_act(const ops::Context& ctx, Tensor& t) {
    if (t.dtype != DType::kF32 || t.numel() == 0) return;  // BF16 storage is already rounded
    round_kernel<<<grid_for(t.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(static_cast<float*>(t.data),
                                                                                 t.numel());
    check_launch(ctx, "round_to_act");
}

// A kernel rather than a host write, so that it can be part of a captured graph.
void set_value(const ops::Context& ctx, Tensor& t, int64_t index, float value) {
    set_value_kernel<<<1, 1, 0, stream_of(ctx)>>>(ptr_of(t), index, value);
    check_launch(ctx, "set_value");
}

void increment(const ops::Context& ctx, Tensor& t, int32_t delta) {
    const int64_t n = t.numel();
    if (n == 0) return;
    increment_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(ctx)>>>(static_cast<uint32_t*>(t.data), n,
                                                                             static_cast<uint32_t>(delta));
    check_launch(ctx, "increment");
}

bool copy_many(const ops::Context& ctx, const Tensor& table, int64_t n) {
    if (n > 65535) return false;
    if (n == 0) return true;
    // Batch rows are a few KB: 4 blocks of 256 threads move 64 KB per pass.
    copy_many_kernel<<<dim3(4, static_cast<unsigned>(n)), 256, 0, stream_of(ctx)>>>(
        static_cast<const int64_t*>(table.data));
    check_launch(ctx, "copy_many");
    return true;
}

bool increment_many(const ops::Context& ctx, const Tensor& table, int64_t n, int32_t delta) {
    if (n > 65535) return false;
    if (n == 0) return true;
    increment_many_kernel<<<static_cast<unsigned>(n), 32, 0, stream_of(ctx)>>>(static_cast<const int64_t*>(table.data),
                                                                               static_cast<uint32_t>(delta));
    check_launch(ctx, "increment_many");
    return true;
}

void fill_rows_led_by(const ops::Context& ctx, Tensor& t, int32_t value) {
    const int64_t N = t.shape[t.ndim - 1], M = N ? t.numel() / N : 0;
    if (M == 0) return;
    fill_rows_led_by_kernel<<<grid_for(M, kThreads), kThreads, 0, stream_of(ctx)>>>(t.ptr<int32_t>(), M, N, value);
    check_launch(ctx, "fill_rows_led_by");
}

void zero(const ops::Context& ctx, Tensor& t) {
    if (t.nbytes() == 0) return;
    check(ctx, cudaMemsetAsync(t.data, 0, t.nbytes(), stream_of(ctx)), "cudaMemsetAsync (zero)");
}

void transpose(const ops::Context& ctx, const Tensor& x, Tensor& y) {
    const int64_t A = x.shape[0], B = x.shape[1];
    if (A * B == 0) return;
    const dim3 grid(static_cast<unsigned>((B + 31) / 32), static_cast<unsigned>((A + 31) / 32)), block(32, 8);
    cudaStream_t s = stream_of(ctx);
    switch (dtype_size(x.dtype)) {
        case 1: transpose_kernel<<<grid, block, 0, s>>>(static_cast<const uint8_t*>(x.data), static_cast<uint8_t*>(y.data), A, B); break;
        case 2: transpose_kernel<<<grid, block, 0, s>>>(static_cast<const uint16_t*>(x.data), static_cast<uint16_t*>(y.data), A, B); break;
        case 4: transpose_kernel<<<grid, block, 0, s>>>(static_cast<const uint32_t*>(x.data), static_cast<uint32_t*>(y.data), A, B); break;
        case 8: transpose_kernel<<<grid, block, 0, s>>>(static_cast<const uint64_t*>(x.data), static_cast<uint64_t*>(y.data), A, B); break;
        default: VOXRT_ABORT("transpose: unsupported element size %zu", dtype_size(x.dtype));
    }
    check_launch(ctx, "transpose");
}

// Device<->device copies are asynchronous on the context's stream. Copies that touch host memory
// (which may be pageable) wait for the stream before returning, so the host buffer can be reused or
// read at once; they are therefore not allowed inside a graph capture. A dtype conversion with a
// host side converts on the host (through the CPU backend) in a temporary buffer.
void copy(const ops::Context& ctx, const Tensor& src, Tensor& dst) {
    const int64_t n = src.numel();
    if (n == 0) return;
    cudaStream_t s = stream_of(ctx);
    const bool src_dev = src.device == Device::kCUDA, dst_dev = dst.device == Device::kCUDA;
    if (src_dev && dst_dev) {
        if (src.dtype == dst.dtype) {
            if (src.data != dst.data)
                check(ctx, cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDeviceToDevice, s),
                      "cudaMemcpyAsync (device to device)");
            return;
        }
        VOXRT_ASSERT(convertible(src.dtype) && convertible(dst.dtype) && dst.dtype != DType::kF16,
                     "copy: unsupported conversion %s -> %s", dtype_name(src.dtype), dtype_name(dst.dtype));
        convert_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(src.data, src.dtype, dst.data, dst.dtype, n);
        check_launch(ctx, "copy (convert)");
        return;
    }
    ops::Context host_ctx;  // CPU conversions run single-threaded here (uploads are not hot)
    host_ctx.precision = ctx.precision;
    if (!src_dev) {  // host -> device
        const void* from = src.data;
        std::vector<unsigned char> tmp;
        if (src.dtype != dst.dtype) {
            tmp.resize(dst.nbytes());
            Tensor t = src;
            t.data = tmp.data();
            t.dtype = dst.dtype;
            ops::copy(host_ctx, src, t);  // host to host: the CPU backend converts
            from = tmp.data();
        }
        if (check(ctx, cudaMemcpyAsync(dst.data, from, dst.nbytes(), cudaMemcpyHostToDevice, s),
                  "cudaMemcpyAsync (host to device)"))
            check(ctx, cudaStreamSynchronize(s), "cudaStreamSynchronize (after upload)");
        return;
    }
    // device -> host
    if (src.dtype == dst.dtype) {
        if (check(ctx, cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDeviceToHost, s),
                  "cudaMemcpyAsync (device to host)"))
            check(ctx, cudaStreamSynchronize(s), "cudaStreamSynchronize (after download)");
        return;
    }
    std::vector<unsigned char> tmp(src.nbytes());
    if (!check(ctx, cudaMemcpyAsync(tmp.data(), src.data, src.nbytes(), cudaMemcpyDeviceToHost, s),
               "cudaMemcpyAsync (device to host)") ||
        !check(ctx, cudaStreamSynchronize(s), "cudaStreamSynchronize (after download)"))
        return;
    Tensor t = src;
    t.data = tmp.data();
    t.device = Device::kCPU;
    ops::copy(host_ctx, t, dst);  // host to host: the CPU backend converts
}

// No synchronize: the caller's next synchronize() waits for it (with a page-locked dst the copy
// is truly asynchronous; with pageable memory the driver makes it synchronous by itself).
void copy_to_host_async(const ops::Context& ctx, const Tensor& src, Tensor& dst) {
    if (src.nbytes() == 0) return;
    check(ctx, cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDeviceToHost, stream_of(ctx)),
          "cudaMemcpyAsync (device to host, async)");
}

}  // namespace voxrt::cuda
