// CPU short causal convolution with carried state (LFM2 ShortConv).
#include <cstring>
#include <vector>

#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"

namespace voxrt::cpu {

void short_conv(const ops::Context& ctx, const Tensor& x, const Tensor& w, Tensor& state,
                const Tensor& /*pos*/, Tensor& y) {
    const int64_t T = x.shape[0], C = x.shape[1];
    const int64_t K = w.numel() / C, Ks = K - 1;
    const float* xp = act(x);
    float* sp = act(state);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    // xe = [state; x]: rows 0..Ks-1 from state, Ks.. from x.
    auto xe = [&](int64_t r, int64_t c) { return r < Ks ? sp[r * C + c] : xp[(r - Ks) * C + c]; };
    float* wf = thread_scratch(0, static_cast<size_t>(C * K));
    load_row(w, 0, C * K, wf);
    float* out = thread_scratch(1, static_cast<size_t>(T * C));
    parallel(ctx, C, 64, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c)
            for (int64_t t = 0; t < T; ++t) {
                float s = 0.0f;
                for (int64_t k = 0; k < K; ++k) {
                    s += wf[c * K + k] * xe(t + k, c);
                }
                out[t * C + c] = rnd(s);
            }
    });
    // New state: the last Ks rows of xe (computed before y may overwrite x when aliased).
    float* ns = thread_scratch(2, static_cast<size_t>(Ks * C));
    for (int64_t r = 0; r < Ks; ++r)
        for (int64_t c = 0; c < C; ++c) ns[r * C + c] = xe(T + r, c);
    std::memcpy(sp, ns, static_cast<size_t>(Ks * C) * 4);
    std::memcpy(yp, out, static_cast<size_t>(T * C) * 4);
}

}  // namespace voxrt::cpu
