// CPU elementwise ops, copies and layout changes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"

namespace voxrt::cpu {

namespace {

template <class F>
void map2(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y, F f) {
    const float* ap = act(a);
    const float* bp = act(b);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    parallel(ctx, a.numel(), 1 << 14, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) yp[i] = rnd(f(ap[i], bp[i]));
    });
}

float apply(ops::Activation act_kind, float v) {
    switch (act_kind) {
        case ops::Activation::kSilu:
            return v / (1.0f + std::exp(-v));
        case ops::Activation::kRelu:
            return v > 0.0f ? v : 0.0f;
        case ops::Activation::kGeluErf:
            return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
        case ops::Activation::kSigmoid:
            return 1.0f / (1.0f + std::exp(-v));
        case ops::Activation::kExp:
            return std::exp(v);
    }
    return v;
}

}  // namespace

void add(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    map2(ctx, a, b, y, [](float p, float q) { return p + q; });
}

void add_scaled(const ops::Context& ctx, const Tensor& a, const Tensor& b, float alpha, Tensor& y) {
    const Rounder rnd = rounder(ctx);
    map2(ctx, a, b, y, [&](float p, float q) { return p + rnd(alpha * q); });
}

void mul(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    map2(ctx, a, b, y, [](float p, float q) { return p * q; });
}

void activation(const ops::Context& ctx, ops::Activation kind, const Tensor& x, Tensor& y) {
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    parallel(ctx, x.numel(), 1 << 13, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) yp[i] = rnd(apply(kind, xp[i]));
    });
}

void swiglu(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    const Rounder rnd = rounder(ctx);
    map2(ctx, a, b, y, [&](float p, float q) { return rnd(apply(ops::Activation::kSilu, p)) * q; });
}

void glu(const ops::Context& ctx, const Tensor& x, Tensor& y) {
    const int64_t M = rows_of(y), C = cols_of(y);
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    parallel(ctx, M, 1, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m)
            for (int64_t c = 0; c < C; ++c) {
                const float a = xp[m * 2 * C + c], g = xp[m * 2 * C + C + c];
                yp[m * C + c] = rnd(a * (1.0f / (1.0f + std::exp(-g))));
            }
    });
}

void copy(const ops::Context& ctx, const Tensor& src, Tensor& dst) {
    const int64_t n = src.numel();
    if (src.dtype == dst.dtype) {
        if (src.data != dst.data) std::memmove(dst.data, src.data, src.nbytes());
        return;
    }
    auto load_any = [&](int64_t i) -> double {
        switch (src.dtype) {
            case DType::kI32:
                return static_cast<const int32_t*>(src.data)[i];
            case DType::kI64:
                return static_cast<double>(static_cast<const int64_t*>(src.data)[i]);
            case DType::kF64:
                return static_cast<const double*>(src.data)[i];
            default:
                return load(src, i);
        }
    };
    for (int64_t i = 0; i < n; ++i) {
        const double v = load_any(i);
        switch (dst.dtype) {
            case DType::kF32:
                static_cast<float*>(dst.data)[i] = static_cast<float>(v);
                break;
            case DType::kBF16:
                static_cast<uint16_t*>(dst.data)[i] = f32_to_bf16(static_cast<float>(v));
                break;
            case DType::kI32:
                static_cast<int32_t*>(dst.data)[i] = static_cast<int32_t>(v);
                break;
            case DType::kI64:
                static_cast<int64_t*>(dst.data)[i] = static_cast<int64_t>(v);
                break;
            case DType::kF64:
                static_cast<double*>(dst.data)[i] = v;
                break;
            default:
                VOXRT_ABORT("copy: unsupported destination dtype %s", dtype_name(dst.dtype));
        }
    }
}

void set_value(const ops::Context&, Tensor& t, int64_t index, float value) {
    if (t.dtype == DType::kBF16) {
        static_cast<uint16_t*>(t.data)[index] = f32_to_bf16(value);
    } else {
        static_cast<float*>(t.data)[index] = value;
    }
}

void increment(const ops::Context&, Tensor& t, int32_t delta) {
    // Through uint32_t: wraps instead of overflowing (as the CUDA kernel does).
    auto* p = static_cast<uint32_t*>(t.data);
    for (int64_t i = 0; i < t.numel(); ++i) p[i] += static_cast<uint32_t>(delta);
}

void fill_rows_led_by(const ops::Context&, Tensor& t, int32_t value) {
    const int64_t N = t.shape[t.ndim - 1], M = N ? t.numel() / N : 0;
    int32_t* p = t.ptr<int32_t>();
    for (int64_t m = 0; m < M; ++m)
        if (p[m * N] == value) std::fill(p + m * N, p + (m + 1) * N, value);
}

void zero(const ops::Context&, Tensor& t) {
    std::memset(t.data, 0, t.nbytes());
}

void round_to_act(const ops::Context& ctx, Tensor& t) {
    float* p = act(t);
    parallel(ctx, t.numel(), 1 << 14, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) p[i] = round_bf16(p[i]);
    });
}

void transpose(const ops::Context& ctx, const Tensor& x, Tensor& y) {
    const int64_t A = x.shape[0], B = x.shape[1];
    const size_t es = dtype_size(x.dtype);
    const char* xp = static_cast<const char*>(x.data);
    char* yp = static_cast<char*>(y.data);
    parallel(ctx, B, 16, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
            for (int64_t a = 0; a < A; ++a)
                std::memcpy(yp + (b * A + a) * es, xp + (a * B + b) * es, es);
    });
}

Status synchronize(const ops::Context&) {
    return Status::ok();
}

}  // namespace voxrt::cpu
