// CPU linear layer: y = x · wᵀ (+ b), weights F32, BF16 or quantized (backend/cpu/linear_quant.h),
// fp32 accumulation.
#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"
#include "backend/cpu/linear_bf16.h"
#include "backend/cpu/linear_quant.h"

namespace voxrt::cpu {

void load_row(const Tensor& t, int64_t offset, int64_t n, float* dst) {
    if (t.dtype == DType::kF32) {
        std::memcpy(dst, static_cast<const float*>(t.data) + offset, static_cast<size_t>(n) * 4);
        return;
    }
    if (t.dtype == DType::kBF16) {
        const uint16_t* s = static_cast<const uint16_t*>(t.data) + offset;
        int64_t i = 0;
#if defined(__AVX2__)
        for (; i + 8 <= n; i += 8) {  // bf16 bits << 16, eight at a time
            const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                                _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        }
#endif
        for (; i < n; ++i) {
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
constexpr int64_t kPackedGemmMinRows = 64;  // ops::Context::cpu_packed_gemm

#if defined(__AVX2__) && defined(__FMA__)

constexpr int kMR = 6;   // rows of x per micro-tile
constexpr int kNR = 16;  // columns of w per panel (two 8-wide vectors)

// acc[r][0..15] = Σ_k x[r, k] · panel[k, 0..15] for MR rows, one fp32 FMA chain per output.
template <int MR>
void micro_tile(const float* x, int64_t ldx, const float* panel, int64_t K, float* out) {
    __m256 acc0[MR], acc1[MR];
    for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const __m256 b0 = _mm256_loadu_ps(panel + k * kNR);
        const __m256 b1 = _mm256_loadu_ps(panel + k * kNR + 8);
        for (int r = 0; r < MR; ++r) {
            const __m256 a = _mm256_broadcast_ss(x + r * ldx + k);
            acc0[r] = _mm256_fmadd_ps(a, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(a, b1, acc1[r]);
        }
    }
    for (int r = 0; r < MR; ++r) {
        _mm256_storeu_ps(out + r * kNR, acc0[r]);
        _mm256_storeu_ps(out + r * kNR + 8, acc1[r]);
    }
}

void micro_tile_rows(int rows, const float* x, int64_t ldx, const float* panel, int64_t K,
                     float* out) {
    switch (rows) {
        case 6:
            micro_tile<6>(x, ldx, panel, K, out);
            break;
        case 5:
            micro_tile<5>(x, ldx, panel, K, out);
            break;
        case 4:
            micro_tile<4>(x, ldx, panel, K, out);
            break;
        case 3:
            micro_tile<3>(x, ldx, panel, K, out);
            break;
        case 2:
            micro_tile<2>(x, ldx, panel, K, out);
            break;
        default:
            micro_tile<1>(x, ldx, panel, K, out);
            break;
    }
}

// The end of one dot product whose first k terms were accumulated lane-wise in acc: the lanes
// summed (the same order everywhere), then the remaining terms in order.
inline float finish_dot(__m256 acc, const float* x, const float* w, int64_t k, int64_t K) {
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    __m128 sum = _mm_add_ps(lo, hi);
    sum = _mm_hadd_ps(sum, sum);
    sum = _mm_hadd_ps(sum, sum);
    float r = _mm_cvtss_f32(sum);
    for (int64_t kk = k; kk < K; ++kk) r += x[kk] * w[kk];
    return r;
}

// out[r][j] = dot(x[r], w[j]) for R rows of x and 4 weight rows: 4R accumulators, so each step of
// eight k loads R + 4 vectors for 4R multiply-adds (dot_tile: 9 for 8). Every product is the
// same chain of lane-wise FMAs over k as in dot_tile, so the result does not depend on R (or on how
// many rows the call had): the detokenizer's streaming steps rely on that.
template <int R>
void dot_block(const float* const* x, const float* const* w, int64_t K, float (*out)[4]) {
    __m256 acc[R][4];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv[R];
        for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x[r] + k);
        for (int j = 0; j < 4; ++j) {
            const __m256 wv = _mm256_loadu_ps(w[j] + k);
            for (int r = 0; r < R; ++r) acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < 4; ++j) out[r][j] = finish_dot(acc[r][j], x[r], w[j], k, K);
}
#endif  // AVX2 && FMA

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
        for (int j = 0; j < kTile; ++j) out[j] = finish_dot(acc[j], x, w[j], k, K);
        return;
    }
#endif
    for (int j = 0; j < n; ++j) out[j] = dot(x, w[j], K);
}

#if defined(__AVX2__) && defined(__FMA__)
// Prefill-sized products: w packed into 16-column panels, 6×16 FMA micro-tiles over L2-sized
// (rows × panels) tiles. Each output is one sequential fp32 FMA chain over k, the same whatever M
// is, so results do not depend on how rows are batched (streaming == whole-utterance).
void gemm_packed(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                 Tensor& y) {
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    const int64_t n_panels = (N + kNR - 1) / kNR;
    const int64_t panel_floats = K * kNR;
    // w is packed into panels of 16 output features ([K][16] F32, zero past N), a chunk of panels
    // of about 2 MB at a time. The chunk buffer is kept per calling thread across calls: a fresh
    // multi-MB buffer per call costs more in page faults than the packing. (The lambdas run on
    // pool threads, so they use the pointer `packed`, not the thread_local's name.)
    constexpr int64_t kChunkBytes = 2 << 20;
    const int64_t chunk_panels = std::max<int64_t>(1, kChunkBytes / (panel_floats * 4));
    thread_local std::vector<float> t_packed;
    const size_t chunk_floats =
        static_cast<size_t>(std::min(chunk_panels, n_panels) * panel_floats);
    if (t_packed.size() < chunk_floats) t_packed.resize(chunk_floats);
    float* const packed = t_packed.data();
    std::vector<float> b(static_cast<size_t>(n_panels * kNR), 0.0f);
    for (int64_t n = 0; n < N; ++n) b[n] = bias ? load(*bias, n) : 0.0f;
    // Tiles of (rows × panels), about 256 KB of x and 256 KB of packed w each, so that both stay
    // in L2 while the micro-kernel sweeps the tile.
    constexpr int64_t kTileBytes = 256 * 1024;
    const int64_t row_block = std::max<int64_t>(kMR, kTileBytes / (K * 4) / kMR * kMR);
    const int64_t panel_block = std::max<int64_t>(1, kTileBytes / (panel_floats * 4));
    const int64_t n_row_blocks = (M + row_block - 1) / row_block;

    for (int64_t c0 = 0; c0 < n_panels; c0 += chunk_panels) {
        const int64_t c1 = std::min(n_panels, c0 + chunk_panels);
        parallel(ctx, c1 - c0, 4, [&](int64_t p0, int64_t p1) {
            for (int64_t pi = c0 + p0; pi < c0 + p1; ++pi) {
                float* panel = packed + (pi - c0) * panel_floats;
                const int64_t n0 = pi * kNR, nn = std::min<int64_t>(kNR, N - n0);
                if (nn < kNR) std::fill(panel, panel + panel_floats, 0.0f);
                if (w.quantized()) {  // dequantized as quant::dequantize_rows does
                    float* row = thread_scratch(0, static_cast<size_t>(K));
                    for (int64_t j = 0; j < nn; ++j) {
                        dequantize_row(w, n0 + j, row);
                        for (int64_t k = 0; k < K; ++k) panel[k * kNR + j] = row[k];
                    }
                } else if (w.dtype == DType::kBF16) {
                    const uint16_t* wp = static_cast<const uint16_t*>(w.data) + n0 * K;
                    for (int64_t j = 0; j < nn; ++j)
                        for (int64_t k = 0; k < K; ++k)
                            panel[k * kNR + j] = bf16_to_f32(wp[j * K + k]);
                } else {
                    const float* wp = static_cast<const float*>(w.data) + n0 * K;
                    for (int64_t j = 0; j < nn; ++j)
                        for (int64_t k = 0; k < K; ++k) panel[k * kNR + j] = wp[j * K + k];
                }
            }
        });
        const int64_t n_panel_blocks = (c1 - c0 + panel_block - 1) / panel_block;
        parallel(ctx, n_row_blocks * n_panel_blocks, 1, [&](int64_t t0, int64_t t1) {
            float tile[kMR * kNR];
            for (int64_t task = t0; task < t1; ++task) {
                const int64_t rb = task / n_panel_blocks, pb = task % n_panel_blocks;
                const int64_t m_begin = rb * row_block, m_end = std::min(M, m_begin + row_block);
                const int64_t p_begin = c0 + pb * panel_block;
                const int64_t p_end = std::min(c1, p_begin + panel_block);
                for (int64_t pi = p_begin; pi < p_end; ++pi) {
                    const int64_t n0 = pi * kNR, nn = std::min<int64_t>(kNR, N - n0);
                    const float* panel = packed + (pi - c0) * panel_floats;
                    for (int64_t m0 = m_begin; m0 < m_end; m0 += kMR) {
                        const int rows = static_cast<int>(std::min<int64_t>(kMR, m_end - m0));
                        micro_tile_rows(rows, xp + m0 * K, K, panel, K, tile);
                        for (int r = 0; r < rows; ++r) {
                            float* yr = yp + (m0 + r) * N + n0;
                            for (int64_t j = 0; j < nn; ++j)
                                yr[j] = rnd(tile[r * kNR + j] + b[n0 + j]);
                        }
                    }
                }
            }
        });
    }
}
#endif  // AVX2 && FMA

}  // namespace

void linear(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
            Tensor& y) {
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    // bf16 (or int8 / e4m3) weights and bf16 activations (Precision::kBF16), more than a few
    // rows: the bf16 dot-product GEMM where the host has it (backend/cpu/linear_bf16.h; exact
    // products, so only the sum order differs from the fp32 paths). It declines if x holds a value
    // that is not bf16.
    if (ctx.cpu_packed_gemm && ctx.round_bf16() && M >= kBf16GemmMinRows &&
        (w.dtype == DType::kBF16 || w.quantized()) && bf16_gemm_enabled() &&
        linear_bf16_gemm(ctx, x, w, bias, y))
        return;
#if defined(__AVX2__) && defined(__FMA__)
    // Many rows (prefill, encoder): the packed-panel GEMM, 1.7–2.4× the tiled path there. Fewer
    // (decode, the detokenizer's 6–48): the tiled GEMV below, which reads each weight once and
    // packs nothing (2.6× faster at 6 rows, even at 48; measured in docs/architecture.md).
    if (ctx.cpu_packed_gemm && M >= kPackedGemmMinRows) {
        gemm_packed(ctx, x, w, bias, y);
        return;
    }
#endif
    if (w.quantized()) {
        linear_quantized_gemv(ctx, best_quant_isa(), x, w, bias, y);
        return;
    }
    // bf16 weights and activations, fewer rows: the GEMV on the same dot-product instruction,
    // which reads the weight rows in place (the loop below widens each to fp32 first).
    if (ctx.round_bf16() && w.dtype == DType::kBF16 && bf16_gemm_enabled() &&
        linear_bf16_gemv(ctx, x, w, bias, y))
        return;
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
            int64_t m = 0;
#if defined(__AVX2__) && defined(__FMA__)
            // Full tiles: three input rows at a time against each half of the tile.
            if (n == kTile) {
                for (; m + 3 <= M; m += 3) {
                    const float* xr[3] = {xp + m * K, xp + (m + 1) * K, xp + (m + 2) * K};
                    float o[3][4];
                    for (int half = 0; half < 2; ++half) {
                        dot_block<3>(xr, rows + 4 * half, K, o);
                        for (int r = 0; r < 3; ++r)
                            for (int j = 0; j < 4; ++j)
                                yp[(m + r) * N + n0 + 4 * half + j] =
                                    rnd(o[r][j] + b[4 * half + j]);
                    }
                }
            }
#endif
            for (; m < M; ++m) {
                dot_tile(xp + m * K, rows, n, K, out);
                for (int j = 0; j < n; ++j) yp[m * N + n0 + j] = rnd(out[j] + b[j]);
            }
        }
    });
}

}  // namespace voxrt::cpu
