// CPU linear layer: y = x · wᵀ (+ b), weights F32 or BF16, fp32 accumulation.
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "backend/backend_ops.h"
#include "backend/cpu/cpu_common.h"

namespace voxrt::cpu {

void load_row(const Tensor& t, int64_t offset, int64_t n, float* dst) {
    if (t.dtype == DType::kF32) {
        std::memcpy(dst, static_cast<const float*>(t.data) + offset, static_cast<size_t>(n) * 4);
        return;
    }
    if (t.dtype == DType::kBF16) {
        const uint16_t* s = static_cast<const uint16_t*>(t.data) + offset;
        for (int64_t i = 0; i < n; ++i) {
            uint32_t bits = static_cast<uint32_t>(s[i]) << 16;
            std::memcpy(&dst[i], &bits, 4);
        }
        return;
    }
    for (int64_t i = 0; i < n; ++i) dst[i] = load(t, offset + i);
}

float dot(const float* a, const float* b, int64_t n) {
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    float sum = _mm_cvtss_f32(s);
#else
    float sum = 0.0f;
#endif
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

void linear(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    const bool w_f32 = w.dtype == DType::kF32;
    // Parallel over output features: each weight row is converted once and reused for all M rows.
    parallel(ctx, N, 16, [&](int64_t n0, int64_t n1) {
        std::vector<float> wrow(w_f32 ? 0 : static_cast<size_t>(K));
        for (int64_t n = n0; n < n1; ++n) {
            const float* wr;
            if (w_f32) {
                wr = static_cast<const float*>(w.data) + n * K;
            } else {
                load_row(w, n * K, K, wrow.data());
                wr = wrow.data();
            }
            const float b = bias ? load(*bias, n) : 0.0f;
            for (int64_t m = 0; m < M; ++m) yp[m * N + n] = rnd(dot(xp + m * K, wr, K) + b);
        }
    });
}

}  // namespace voxrt::cpu
