// CPU linear layer: y = x · wᵀ (+ b), weights F32 or BF16, fp32 accumulation.
#include <algorithm>
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

float* thread_scratch(int slot, size_t n) {
    thread_local std::vector<float> bufs[4];
    std::vector<float>& b = bufs[slot];
    if (b.size() < n) b.resize(n);
    return b.data();
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

namespace {

constexpr int kTile = 8;  // weight rows processed together: x is read once per tile

// out[j] = dot(x, w[j]) for j < n (n <= kTile), each w[j] a row of K floats.
void dot_tile(const float* x, const float* const* w, int n, int64_t K, float* out) {
#if defined(__AVX2__) && defined(__FMA__)
    if (n == kTile) {
        __m256 acc[kTile];
        for (int j = 0; j < kTile; ++j) acc[j] = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) {
            const __m256 xv = _mm256_loadu_ps(x + k);
            for (int j = 0; j < kTile; ++j)
                acc[j] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w[j] + k), acc[j]);
        }
        for (int j = 0; j < kTile; ++j) {
            __m128 lo = _mm256_castps256_ps128(acc[j]), hi = _mm256_extractf128_ps(acc[j], 1);
            __m128 sum = _mm_add_ps(lo, hi);
            sum = _mm_hadd_ps(sum, sum);
            sum = _mm_hadd_ps(sum, sum);
            float r = _mm_cvtss_f32(sum);
            for (int64_t kk = k; kk < K; ++kk) r += x[kk] * w[j][kk];
            out[j] = r;
        }
        return;
    }
#endif
    for (int j = 0; j < n; ++j) out[j] = dot(x, w[j], K);
}

}  // namespace

void linear(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
            Tensor& y) {
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    const bool w_f32 = w.dtype == DType::kF32;
    const int64_t tiles = (N + kTile - 1) / kTile;
    // Parallel over tiles of output features: each tile of weight rows is converted to fp32 once
    // and reused for all M input rows, and each input row is read once per tile.
    parallel(ctx, tiles, 1, [&](int64_t t0, int64_t t1) {
        float* wbuf = w_f32 ? nullptr : thread_scratch(0, static_cast<size_t>(kTile * K));
        const float* rows[kTile];
        float out[kTile];
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t n0 = t * kTile;
            const int n = static_cast<int>(std::min<int64_t>(kTile, N - n0));
            for (int j = 0; j < n; ++j) {
                if (w_f32) {
                    rows[j] = static_cast<const float*>(w.data) + (n0 + j) * K;
                } else {
                    load_row(w, (n0 + j) * K, K, wbuf + j * K);
                    rows[j] = wbuf + j * K;
                }
            }
            float b[kTile];
            for (int j = 0; j < n; ++j) b[j] = bias ? load(*bias, n0 + j) : 0.0f;
            for (int64_t m = 0; m < M; ++m) {
                dot_tile(xp + m * K, rows, n, K, out);
                for (int j = 0; j < n; ++j) yp[m * N + n0 + j] = rnd(out[j] + b[j]);
            }
        }
    });
}

}  // namespace voxrt::cpu
