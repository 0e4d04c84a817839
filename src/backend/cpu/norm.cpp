// CPU normalizations (RMSNorm in both reference flavours, LayerNorm).
#include <cmath>

#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"

namespace voxrt::cpu {

void rms_norm(const ops::Context& ctx, const Tensor& x, const Tensor& w, float eps,
              ops::RmsStyle style, Tensor& y) {
    const int64_t M = rows_of(x), D = cols_of(x);
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    parallel(ctx, M, 1, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
            const float* xr = xp + m * D;
            float* yr = yp + m * D;
            float ss = 0.0f;
            for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
            // torch: x * torch.rsqrt(mean + eps), in fp32
            const float r = 1.0f / std::sqrt(ss / static_cast<float>(D) + eps);
            if (style == ops::RmsStyle::kLfm2) {
                for (int64_t i = 0; i < D; ++i) yr[i] = rnd(load(w, i) * rnd(xr[i] * r));
            } else {
                for (int64_t i = 0; i < D; ++i) yr[i] = rnd(xr[i] * r * load(w, i));
            }
        }
    });
}

void layer_norm(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                float eps, Tensor& y) {
    const int64_t M = rows_of(x), D = cols_of(x);
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    parallel(ctx, M, 1, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
            const float* xr = xp + m * D;
            float* yr = yp + m * D;
            double mean = 0.0;
            for (int64_t i = 0; i < D; ++i) mean += xr[i];
            mean /= static_cast<double>(D);
            double var = 0.0;
            for (int64_t i = 0; i < D; ++i) {
                double d = xr[i] - mean;
                var += d * d;
            }
            var /= static_cast<double>(D);
            const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
            const float mu = static_cast<float>(mean);
            for (int64_t i = 0; i < D; ++i)
                yr[i] = rnd((xr[i] - mu) * inv * load(w, i) + load(b, i));
        }
    });
}

}  // namespace voxrt::cpu
