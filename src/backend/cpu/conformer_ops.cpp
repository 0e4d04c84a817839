// CPU implementations of the FastConformer encoder ops (semantics in ops/conformer_ops.h).
// Accumulation is fp32; Rounder applies the bf16 roundings of the reference.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"
#include "ops/conformer_ops.h"

namespace voxrt::cpu {

namespace {

const float* param(const Tensor& t) {
    return static_cast<const float*>(t.data);
}

// Valid length after a kernel-3, stride-2, padding-1 convolution: (L + 2 - 3) // 2 + 1.
int64_t next_valid(int64_t len) {
    return (len + 1) / 2;
}

float silu(float v) {
    return v / (1.0f + std::exp(-v));
}

}  // namespace

void subsample_conv_in(const ops::Context& ctx, const Tensor& mel, int64_t t_valid, const Tensor& w,
                       const Tensor& b, Tensor& y, int64_t y_row0) {
    const int64_t F = mel.shape[0], T = mel.shape[1];
    const int64_t rows = y.shape[0], F1 = y.shape[1], C = y.shape[2];
    const int64_t t1_valid = next_valid(t_valid);
    const float* mp = static_cast<const float*>(mel.data);
    const float* wp = param(w);  // [C, 9]
    const float* bp = param(b);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    // Kernel transposed to [9, C] so that the channel loop is contiguous.
    std::vector<float> wt(static_cast<size_t>(9 * C));
    for (int64_t c = 0; c < C; ++c)
        for (int k = 0; k < 9; ++k) wt[k * C + c] = wp[c * 9 + k];
    (void)T;
    parallel(ctx, rows, 1, [&](int64_t r0, int64_t r1) {
        std::vector<float> acc(static_cast<size_t>(C));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t to = y_row0 + r;  // global output row
            for (int64_t fo = 0; fo < F1; ++fo) {
                float* yr = yp + (r * F1 + fo) * C;
                if (to >= t1_valid) {
                    std::fill(yr, yr + C, 0.0f);
                    continue;
                }
                std::fill(acc.begin(), acc.end(), 0.0f);
                for (int dt = 0; dt < 3; ++dt) {
                    const int64_t t = 2 * to - 1 + dt;
                    if (t < 0 || t >= t_valid) continue;
                    for (int df = 0; df < 3; ++df) {
                        const int64_t f = 2 * fo - 1 + df;
                        if (f < 0 || f >= F) continue;
                        const float xv = rnd(mp[f * T + t]);
                        const float* wk = wt.data() + (dt * 3 + df) * C;
                        for (int64_t c = 0; c < C; ++c) acc[c] += wk[c] * xv;
                    }
                }
                for (int64_t c = 0; c < C; ++c) yr[c] = std::max(rnd(acc[c] + bp[c]), 0.0f);
            }
        }
    });
}

void subsample_dw_conv(const ops::Context& ctx, const Tensor& x, int64_t x_row0, int64_t t_valid,
                       const Tensor& w, const Tensor& b, Tensor& y, int64_t y_row0) {
    const int64_t F = x.shape[1], C = x.shape[2];
    const int64_t rows = y.shape[0], F2 = y.shape[1];
    const int64_t t2_valid = next_valid(t_valid);
    const float* xp = act(x);
    const float* wp = param(w);
    const float* bp = param(b);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    std::vector<float> wt(static_cast<size_t>(9 * C));
    for (int64_t c = 0; c < C; ++c)
        for (int k = 0; k < 9; ++k) wt[k * C + c] = wp[c * 9 + k];
    parallel(ctx, rows, 1, [&](int64_t r0, int64_t r1) {
        std::vector<float> acc(static_cast<size_t>(C));
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t to = y_row0 + r;
            for (int64_t fo = 0; fo < F2; ++fo) {
                float* yr = yp + (r * F2 + fo) * C;
                if (to >= t2_valid) {
                    std::fill(yr, yr + C, 0.0f);
                    continue;
                }
                std::fill(acc.begin(), acc.end(), 0.0f);
                for (int dt = 0; dt < 3; ++dt) {
                    const int64_t t = 2 * to - 1 + dt;  // global input row
                    if (t < 0 || t >= t_valid) continue;
                    for (int df = 0; df < 3; ++df) {
                        const int64_t f = 2 * fo - 1 + df;
                        if (f < 0 || f >= F) continue;
                        const float* xr = xp + ((t - x_row0) * F + f) * C;
                        const float* wk = wt.data() + (dt * 3 + df) * C;
                        for (int64_t c = 0; c < C; ++c) acc[c] += wk[c] * xr[c];
                    }
                }
                for (int64_t c = 0; c < C; ++c) yr[c] = rnd(acc[c] + bp[c]);
            }
        }
    });
}

void subsample_flatten(const ops::Context& ctx, const Tensor& x, int64_t t_valid, Tensor& y) {
    const int64_t T = x.shape[0], F = x.shape[1], C = x.shape[2];
    const float* xp = act(x);
    float* yp = act(y);
    parallel(ctx, T, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            float* yr = yp + t * C * F;
            if (t >= t_valid) {
                std::fill(yr, yr + C * F, 0.0f);
                continue;
            }
            const float* xr = xp + t * F * C;
            for (int64_t f = 0; f < F; ++f)
                for (int64_t c = 0; c < C; ++c) yr[c * F + f] = xr[f * C + c];
        }
    });
}

void rel_pos_embed(const ops::Context& ctx, const Tensor& table, int64_t T, bool round_table,
                   Tensor& y) {
    const int64_t D = table.shape[1], P = (table.shape[0] + 1) / 2;
    const float* src = static_cast<const float*>(table.data) + (P - T) * D;
    float* yp = act(y);
    const int64_t n = (2 * T - 1) * D;
    for (int64_t i = 0; i < n; ++i) yp[i] = round_table ? round_bf16(src[i]) : src[i];
    (void)ctx;
}

void rel_pos_attention(const ops::Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& p, const Tensor& pos_bias_u, const Tensor& pos_bias_v,
                       int n_heads, Tensor& out) {
    const int64_t T = q.shape[0], D = q.shape[1], H = n_heads, Dk = D / H;
    const float* qp = act(q);
    const float* kp = act(k);
    const float* vp = act(v);
    const float* pp = act(p);
    const float* up = param(pos_bias_u);
    const float* vbp = param(pos_bias_v);
    float* op = act(out);
    const Rounder rnd = rounder(ctx);
    const float s_d_k = static_cast<float>(std::sqrt(static_cast<double>(Dk)));
    // Tasks: (head, block of query rows), head-major. A task copies its head's K and P transposed
    // ([Dk][T] and [Dk][2T-1]) so that the scores of one query row are accumulated for all keys
    // at once in contiguous, vectorizable loops (fp32, one sum per score in d order).
    constexpr int64_t kRows = 32;
    const int64_t n_blocks = (T + kRows - 1) / kRows, P = 2 * T - 1;
    parallel(ctx, H * n_blocks, 1, [&](int64_t t0, int64_t t1) {
        std::vector<float> kt(static_cast<size_t>(Dk * T)), pt(static_cast<size_t>(Dk * P));
        std::vector<float> ac(static_cast<size_t>(T)), bd(static_cast<size_t>(T));
        std::vector<float> qu(static_cast<size_t>(Dk)), qv(static_cast<size_t>(Dk));
        std::vector<float> acc(static_cast<size_t>(Dk));
        int64_t packed_head = -1;
        for (int64_t task = t0; task < t1; ++task) {
            const int64_t h = task / n_blocks, i0 = (task % n_blocks) * kRows;
            if (h != packed_head) {
                for (int64_t j = 0; j < T; ++j)
                    for (int64_t d = 0; d < Dk; ++d) kt[d * T + j] = kp[j * D + h * Dk + d];
                for (int64_t r = 0; r < P; ++r)
                    for (int64_t d = 0; d < Dk; ++d) pt[d * P + r] = pp[r * D + h * Dk + d];
                packed_head = h;
            }
            for (int64_t i = i0; i < std::min(T, i0 + kRows); ++i) {
                const float* qi = qp + i * D + h * Dk;
                for (int64_t d = 0; d < Dk; ++d) {
                    qu[d] = rnd(qi[d] + up[h * Dk + d]);
                    qv[d] = rnd(qi[d] + vbp[h * Dk + d]);
                }
                // ac[j] = qu · k_j;  bd[j] = qv · p[T-1-i+j]  (rel_shift)
                std::fill(ac.begin(), ac.end(), 0.0f);
                std::fill(bd.begin(), bd.end(), 0.0f);
                for (int64_t d = 0; d < Dk; ++d) {
                    const float a = qu[d], c = qv[d];
                    const float* kr = kt.data() + d * T;
                    const float* pr = pt.data() + d * P + (T - 1 - i);
                    float* acp = ac.data();
                    float* bdp = bd.data();
                    for (int64_t j = 0; j < T; ++j) acp[j] += a * kr[j];
                    for (int64_t j = 0; j < T; ++j) bdp[j] += c * pr[j];
                }
                float mx = -INFINITY;
                for (int64_t j = 0; j < T; ++j) {
                    ac[j] = rnd(rnd(rnd(ac[j]) + rnd(bd[j])) / s_d_k);  // scores
                    mx = std::max(mx, ac[j]);
                }
                float sum = 0.0f;
                for (int64_t j = 0; j < T; ++j) {
                    ac[j] = std::exp(ac[j] - mx);
                    sum += ac[j];
                }
                const float inv = 1.0f / sum;
                std::fill(acc.begin(), acc.end(), 0.0f);
                for (int64_t j = 0; j < T; ++j) {
                    const float a = rnd(ac[j] * inv);
                    const float* vj = vp + j * D + h * Dk;
                    for (int64_t d = 0; d < Dk; ++d) acc[d] += a * vj[d];
                }
                float* oi = op + i * D + h * Dk;
                for (int64_t d = 0; d < Dk; ++d) oi[d] = rnd(acc[d]);
            }
        }
    });
}

void conv_dw_bn_silu(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                     const Tensor& bn_scale, const Tensor& bn_shift, Tensor& y) {
    const int64_t T = x.shape[0], C = x.shape[1], K = w.shape[1], pad = (K - 1) / 2;
    const float* xp = act(x);
    const float* wp = param(w);
    const float* bp = param(b);
    const float* sc = param(bn_scale);
    const float* sh = param(bn_shift);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    std::vector<float> wt(static_cast<size_t>(K * C));  // [K, C]
    for (int64_t c = 0; c < C; ++c)
        for (int64_t k = 0; k < K; ++k) wt[k * C + c] = wp[c * K + k];
    parallel(ctx, T, 4, [&](int64_t t0, int64_t t1) {
        std::vector<float> acc(static_cast<size_t>(C));
        for (int64_t t = t0; t < t1; ++t) {
            std::fill(acc.begin(), acc.end(), 0.0f);
            for (int64_t kk = 0; kk < K; ++kk) {
                const int64_t ts = t + kk - pad;
                if (ts < 0 || ts >= T) continue;
                const float* xr = xp + ts * C;
                const float* wk = wt.data() + kk * C;
                for (int64_t c = 0; c < C; ++c) acc[c] += wk[c] * xr[c];
            }
            float* yr = yp + t * C;
            for (int64_t c = 0; c < C; ++c) {
                const float d = rnd(acc[c] + bp[c]);
                const float n = rnd(d * sc[c] + sh[c]);
                yr[c] = rnd(silu(n));
            }
        }
    });
}

}  // namespace voxrt::cpu
