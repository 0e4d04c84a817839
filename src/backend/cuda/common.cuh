// Device-side helpers shared by the CUDA kernels: dtype-generic element access with the bf16
// rounding rules of ops/ops.h, warp and block reductions, launch geometry.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/handles.h"
#include "core/check.h"
#include "core/tensor.h"

namespace voxrt::cuda {

// ---- dtype-generic element access ---------------------------------------------------------------

// An activation, weight or parameter pointer whose dtype (F32 or BF16) is known at run time. The
// branch on `bf16` is uniform across a launch; kernels where it matters are templated instead.
struct Ptr {
    void* p;
    bool bf16;
    __device__ __forceinline__ float load(int64_t i) const {
        return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
    }
    // Stores v: BF16 storage rounds to nearest even; F32 storage rounds to a bf16 value when `round`
    // (the CPU backend's representation of bf16 activations), else stores v exactly.
    __device__ __forceinline__ void store(int64_t i, float v, bool round) const;
};

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
// The CPU backend's Rounder: identity unless the context rounds to bf16.
__device__ __forceinline__ float rnd(float v, bool round) { return round ? round_bf16(v) : v; }

__device__ __forceinline__ void Ptr::store(int64_t i, float v, bool round) const {
    if (bf16) {
        static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
    } else {
        static_cast<float*>(p)[i] = rnd(v, round);
    }
}

inline Ptr ptr_of(const Tensor& t) {
    VOXRT_ASSERT(t.dtype == DType::kF32 || t.dtype == DType::kBF16, "CUDA op: tensor %s is not F32/BF16",
                 t.describe().c_str());
    return Ptr{t.data, t.dtype == DType::kBF16};
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// 8 consecutive elements starting at a 16-byte aligned address.
__device__ __forceinline__ void load8(const Ptr& x, int64_t i, float (&out)[8]) {
    if (x.bf16) {
        const uint4 u = *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(x.p) + i);
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            out[2 * j] = __uint_as_float(w[j] << 16);
            out[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
        }
    } else {
        const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(x.p) + i);
        const float4 b = *reinterpret_cast<const float4*>(static_cast<const float*>(x.p) + i + 4);
        out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
        out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
    }
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const uint32_t l = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
    const uint32_t h = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
    return l | (h << 16);
}

__device__ __forceinline__ void store8(const Ptr& y, int64_t i, const float (&v)[8], bool round) {
    if (y.bf16) {
        uint4 u;
        u.x = pack_bf16x2(v[0], v[1]);
        u.y = pack_bf16x2(v[2], v[3]);
        u.z = pack_bf16x2(v[4], v[5]);
        u.w = pack_bf16x2(v[6], v[7]);
        *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(y.p) + i) = u;
    } else {
        float r[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) r[j] = rnd(v[j], round);
        float* p = static_cast<float*>(y.p) + i;
        *reinterpret_cast<float4*>(p) = make_float4(r[0], r[1], r[2], r[3]);
        *reinterpret_cast<float4*>(p + 4) = make_float4(r[4], r[5], r[6], r[7]);
    }
}

// 16 bytes of read-only data (weights) streamed past L1 (ld.global.nc.L1::no_allocate). Not
// volatile: a variant that forced the loads of a step to issue back to back (volatile asm,
// predicated tail) measured 5-20% slower on the mid-size GEMV shapes (H100, docs/cuda.md).
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- 8-bit weight codes (core/quant.h) -------------------------------------------------------------

// Element types of weight-only quantized matrices (DType kI8, kF8E4M3): one byte per code. Kernels
// template on them like on __nv_bfloat16 / float; the matrix's per-row F32 scale is applied to a
// row's finished dot product, never to single codes.
struct QI8 {
    uint8_t bits;
};
struct QE4M3 {
    uint8_t bits;
};
template <class W>
inline constexpr bool kQuantized = sizeof(W) == 1;

// The value of one code, as core/quant.h decode() gives it. int8: exact in float. e4m3: the
// hardware convert to half (exact: every e4m3 value is a half) and then to float (exact).
__device__ __forceinline__ float decode_i8(uint32_t byte) {
    return static_cast<float>(static_cast<int>(byte << 24) >> 24);
}
__device__ __forceinline__ float decode_e4m3(uint32_t byte) {
    const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(byte), __NV_E4M3);
    return __half2float(__half(h));
}

// 16 codes (16 bytes, element j in byte j) as floats. int8: byte b - 128 placed in the low
// mantissa bits of 2^23 (exact), minus 2^23 + 128; one byte permute and one add per element.
__device__ __forceinline__ void unpack_i8x16(const uint4& u, float (&f)[16]) {
    const uint32_t w[4] = {u.x ^ 0x80808080u, u.y ^ 0x80808080u, u.z ^ 0x80808080u, u.w ^ 0x80808080u};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int b = 0; b < 4; ++b)
            f[4 * j + b] = __uint_as_float(__byte_perm(w[j], 0x4b000000u, 0x7440u | b)) - 8388736.0f;
    }
}
// e4m3: two codes per hardware convert (cvt.rn.f16x2.e4m3x2; the low byte is the first element).
__device__ __forceinline__ void unpack_e4m3x16(const uint4& u, float (&f)[16]) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const __half2_raw r =
                __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>((w[j] >> (16 * h)) & 0xffffu), __NV_E4M3);
            const float2 v = __half22float2(__half2(r));
            f[4 * j + 2 * h] = v.x;
            f[4 * j + 2 * h + 1] = v.y;
        }
    }
}

// ---- reductions ------------------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `shared` holds 32 values of T. Contains __syncthreads: call from all threads.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // `shared` may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    T r = lane < n_warps ? shared[lane] : T(0);
    return warp_sum(r);
}

__device__ __forceinline__ float block_max(float v, float* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float r = lane < n_warps ? shared[lane] : -INFINITY;
    return warp_max(r);
}

// ---- argmax -------------------------------------------------------------------------------------

// A candidate of an argmax: value and index.
struct Best {
    float v;
    int i;
};

// The CPU rule: the first maximum wins; a NaN beats any number (the first NaN wins among NaNs).
__device__ __forceinline__ Best better(Best a, Best b) {
    const bool an = isnan(a.v), bn = isnan(b.v);
    if (an || bn) {
        if (an && bn) return a.i < b.i ? a : b;
        return an ? a : b;
    }
    if (a.v > b.v) return a;
    if (b.v > a.v) return b;
    return a.i < b.i ? a : b;
}

// ---- launch geometry -------------------------------------------------------------------------------

inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 32) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > max_blocks) b = max_blocks;
    return static_cast<unsigned>(b);
}

inline int64_t rows_of(const Tensor& t) { return t.ndim ? t.numel() / t.shape[t.ndim - 1] : 0; }
inline int64_t cols_of(const Tensor& t) { return t.ndim ? t.shape[t.ndim - 1] : 0; }

}  // namespace voxrt::cuda
