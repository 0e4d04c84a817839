// Shared helpers of the CPU backend: element access across dtypes, bf16 output rounding and the
// parallel loop. CPU activations are always F32 (see ops/ops.h).
#pragma once

#include <cstdint>
#include <functional>

#include "backend/entry_points.h"
#include "core/bf16.h"
#include "core/check.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "ops/ops.h"

namespace voxrt::cpu {

// Every entry point of backend/entry_points.h (defined in this folder).
VOXRT_DECLARE_BACKEND_ENTRY_POINTS

inline float* act(const Tensor& t) {
    VOXRT_ASSERT(t.dtype == DType::kF32, "CPU activations must be F32, got %s",
                 t.describe().c_str());
    return static_cast<float*>(t.data);
}

// Element i of a weight/parameter tensor stored as F32, BF16 or F16, as float.
inline float load(const Tensor& t, int64_t i) {
    switch (t.dtype) {
        case DType::kF32:
            return static_cast<const float*>(t.data)[i];
        case DType::kBF16:
            return bf16_to_f32(static_cast<const uint16_t*>(t.data)[i]);
        case DType::kF16:
            return f16_to_f32(static_cast<const uint16_t*>(t.data)[i]);
        default:
            VOXRT_ABORT("load: unsupported dtype %s", dtype_name(t.dtype));
    }
}

// Converts n elements starting at element offset into dst (F32).
void load_row(const Tensor& t, int64_t offset, int64_t n, float* dst);

struct Rounder {
    bool on;
    float operator()(float v) const { return on ? round_bf16(v) : v; }
};
inline Rounder rounder(const ops::Context& ctx) {
    return Rounder{ctx.round_bf16()};
}

inline void parallel(const ops::Context& ctx, int64_t n, int64_t min_chunk,
                     const std::function<void(int64_t, int64_t)>& fn) {
    if (ctx.pool) {
        ctx.pool->parallel_for(n, min_chunk, fn);
    } else {
        fn(0, n);
    }
}

inline int64_t rows_of(const Tensor& t) {
    return t.ndim ? t.numel() / t.shape[t.ndim - 1] : 0;
}
inline int64_t cols_of(const Tensor& t) {
    return t.ndim ? t.shape[t.ndim - 1] : 0;
}

// Per-thread scratch that only grows: ops take their temporaries from here, so that a steady-state
// decode step allocates nothing after the first step has sized the buffers. `slot` separates
// temporaries that are alive at the same time in one op (slots 0..3).
float* thread_scratch(int slot, size_t n);

// Dot product of two float arrays (fp32 accumulation, vectorized).
float dot(const float* a, const float* b, int64_t n);

}  // namespace voxrt::cpu
