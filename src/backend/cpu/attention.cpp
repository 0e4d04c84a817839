// CPU rotary embeddings, KV-cache writes and grouped-query attention.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"

namespace voxrt::cpu {

void rope(const ops::Context& ctx, Tensor& x, const Tensor& pos, const Tensor& cos,
          const Tensor& sin, ops::RopeStyle style) {
    const int64_t T = x.shape[0], H = x.shape[1], Dh = x.shape[2], half = Dh / 2;
    const int64_t P = cos.shape[0];
    float* xp = act(x);
    const int32_t* pp = static_cast<const int32_t*>(pos.data);
    const float* cp = static_cast<const float*>(cos.data);
    const float* sp = static_cast<const float*>(sin.data);
    const Rounder rnd = rounder(ctx);
    parallel(ctx, T, 1, [&](int64_t t0, int64_t t1) {
        float* tmp = thread_scratch(0, static_cast<size_t>(Dh));
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t p = std::clamp<int64_t>(pp[t], 0, P - 1);
            const float* c = cp + p * half;
            const float* s = sp + p * half;
            for (int64_t h = 0; h < H; ++h) {
                float* v = xp + (t * H + h) * Dh;
                if (style == ops::RopeStyle::kNeox) {
                    for (int64_t i = 0; i < half; ++i) {
                        const float ci = rnd(c[i]), si = rnd(s[i]);
                        tmp[i] = rnd(rnd(v[i] * ci) + rnd(-v[i + half] * si));
                        tmp[i + half] = rnd(rnd(v[i + half] * ci) + rnd(v[i] * si));
                    }
                } else {
                    for (int64_t i = 0; i < half; ++i) {
                        const float a = v[2 * i], b = v[2 * i + 1];
                        tmp[2 * i] = rnd(a * c[i] - b * s[i]);
                        tmp[2 * i + 1] = rnd(a * s[i] + b * c[i]);
                    }
                }
                std::memcpy(v, tmp, static_cast<size_t>(Dh) * sizeof(float));
            }
        }
    });
}

void kv_write(const ops::Context& ctx, const Tensor& k, const Tensor& v, const Tensor& pos,
              Tensor& k_cache, Tensor& v_cache) {
    const int64_t T = k.shape[0], Hkv = k.shape[1], Dh = k.shape[2], S = k_cache.shape[1];
    const int32_t* pp = static_cast<const int32_t*>(pos.data);
    const float* kp = act(k);
    const float* vp = act(v);
    float* kc = act(k_cache);
    float* vc = act(v_cache);
    for (int64_t t = 0; t < T; ++t) {
        const int64_t p = pp[t];
        VOXRT_ASSERT(p >= 0 && p < S, "kv_write: position %lld outside cache of %lld", (long long)p,
                     (long long)S);
        for (int64_t h = 0; h < Hkv; ++h) {
            std::memcpy(kc + (h * S + p) * Dh, kp + (t * Hkv + h) * Dh,
                        static_cast<size_t>(Dh) * 4);
            std::memcpy(vc + (h * S + p) * Dh, vp + (t * Hkv + h) * Dh,
                        static_cast<size_t>(Dh) * 4);
        }
    }
    (void)ctx;
}

void attention(const ops::Context& ctx, const Tensor& q, const Tensor& k_cache,
               const Tensor& v_cache, const Tensor& pos, float scale, int window, Tensor& out) {
    const int64_t T = q.shape[0], H = q.shape[1], Dh = q.shape[2];
    const int64_t Hkv = k_cache.shape[0], S = k_cache.shape[1];
    const int64_t group = H / Hkv;
    const float* qp = act(q);
    const float* kc = act(k_cache);
    const float* vc = act(v_cache);
    float* op = act(out);
    const int32_t* pp = static_cast<const int32_t*>(pos.data);
    const Rounder rnd = rounder(ctx);
    parallel(ctx, T * H, 1, [&](int64_t i0, int64_t i1) {
        float* acc = thread_scratch(1, static_cast<size_t>(Dh));
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t t = i / H, h = i % H, hk = h / group;
            const int64_t p = std::min<int64_t>(pp[t], S - 1);
            const int64_t j0 = window > 0 ? std::max<int64_t>(0, p - window + 1) : 0;
            const float* qv = qp + (t * H + h) * Dh;
            const float* kb = kc + hk * S * Dh;
            const float* vb = vc + hk * S * Dh;
            float* scores = thread_scratch(0, static_cast<size_t>(p - j0 + 1));
            const int64_t n_scores = p - j0 + 1;
            float mx = -INFINITY;
            for (int64_t j = j0; j <= p; ++j) {
                const float s = dot(qv, kb + j * Dh, Dh) * scale;
                scores[j - j0] = s;
                mx = std::max(mx, s);
            }
            float sum = 0.0f;
            for (int64_t j = 0; j < n_scores; ++j) {
                scores[j] = std::exp(scores[j] - mx);
                sum += scores[j];
            }
            std::fill(acc, acc + Dh, 0.0f);
            for (int64_t j = j0; j <= p; ++j) {
                const float w = scores[j - j0] / sum;
                const float* vv = vb + j * Dh;
                for (int64_t d = 0; d < Dh; ++d) acc[d] += w * vv[d];
            }
            float* o = op + (t * H + h) * Dh;
            for (int64_t d = 0; d < Dh; ++d) o[d] = rnd(acc[d]);
        }
    });
}

}  // namespace voxrt::cpu
