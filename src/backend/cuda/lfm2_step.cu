// One decode step of the LFM2 backbone as one persistent kernel (ops/fused_ops.h,
// ops::lfm2_decode_step).
//
// Done op by op, a step is ~230 kernels (16 layers × 13–16 ops) and each costs ~2–3 µs of launch
// and drain inside a CUDA graph, on top of ~0.7 ms of weight reads. Here the grid runs the layers
// phase after phase and meets at a software barrier (persistent.cuh) between dependent phases:
//
//   conv layer:       A  n = rms_norm(x); in_proj rows (B, C, x')                        | barrier
//                     C  every block: y = C ⊙ conv(B ⊙ x') over its state; out_proj rows,
//                        x += o                                                          | barrier
//   attention layer:  A  n = rms_norm(x); q, k, v rows                                   | barrier
//                     B  one warp per (query head, 128-position chunk): q/k RMSNorm and
//                        RoPE, the KV write (first head of the group, chunk holding pos),
//                        the chunk's softmax partial (max, sum, Σ p·v)                   | barrier
//                     B2 one warp per head: merge the partials                           | barrier
//                     C  out_proj rows, x += o                                           | barrier
//   both:             D  n = rms_norm(x); w1, w3 rows, g = silu(w1)·w3 (block 0 also
//                        shifts the conv state)                                          | barrier
//                     E  w2 rows, x += o                                                 | barrier
//   end:              block 0: out = rms_norm(x)
//
// Numerics are the op sequence's (ops/ops.h): the same roundings to the activation dtype, fp32
// sums; the attention partial/merge is the decode attention kernel's, with the same 128-row chunks.
#include <algorithm>
#include <climits>
#include <cstdlib>

#include "backend/backend_ops.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/persistent.cuh"
#include "ops/fused_ops.h"

namespace voxrt::cuda {

namespace {

using namespace persistent;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxLayers = 24;
constexpr int kMaxDh = 64;
constexpr int kMaxK = 8;
constexpr int kChunk = 128;  // attention positions per work item (as the decode attention kernel)

struct LayerPtrs {
    int attention;
    const void *opn, *ffn, *w1, *w3, *w2, *o;
    const void *in_proj, *conv;
    void* conv_state;
    const void *q, *k, *v, *qn, *kn;
    void *kc, *vc;
};

struct Args {
    LayerPtrs layer[kMaxLayers];
    const void* final_norm;
    const float* cos;
    const float* sin;
    void* x;           // [D] residual stream (the caller's input, clobbered)
    const int32_t* pos;
    void* out;         // [D]
    void* proj;        // [max(3D, H·Dh + 2·KV)]
    void* att;         // [H·Dh]
    void* g;           // [F]
    float* part;       // [H][max_chunks][Dh + 2] attention partials
    unsigned* bar;
    int barrier_mode;
    int L, D, F, H, Hkv, Dh, K, S, P, max_chunks;
    float eps, scale;
    int prefetch;  // L2 prefetch of the next phase's weights (VOXRT_L2_PREFETCH=1: on; measured no better)
};

template <class T, class W>
__global__ void __launch_bounds__(kThreads, 1) lfm2_step_kernel(const Args a) {
    extern __shared__ __align__(16) float smem[];
    const int D = a.D, F = a.F, H = a.H, Hkv = a.Hkv, Dh = a.Dh, K = a.K, S = a.S;
    const int HD = H * Dh, KV = Hkv * Dh, G = H / Hkv, half = Dh / 2;
    int maxv = D > F ? D : F;
    maxv = maxv > HD ? maxv : HD;
    float* xs = smem;                            // [max(D, F, H·Dh)]
    float* red = xs + maxv;                      // [32]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* qw = red + 32 + warp * 3 * kMaxDh;    // per warp: q, k, v of one head
    float* kw = qw + kMaxDh;
    float* vw = kw + kMaxDh;

    const int gw = blockIdx.x * kWarps + warp, nw = gridDim.x * kWarps;
    unsigned gen = 0;
    T* x = static_cast<T*>(a.x);
    T* proj = static_cast<T*>(a.proj);
    T* att = static_cast<T*>(a.att);
    T* g = static_cast<T*>(a.g);
    const int p_raw = a.pos[0];
    const int p = p_raw < S ? p_raw : S - 1;                        // attention: keys 0..p
    const int prow = p_raw < 0 ? 0 : (p_raw >= a.P ? a.P - 1 : p_raw);  // RoPE table row
    const bool write_kv = p_raw >= 0 && p_raw < S;
    const int nc = p >= 0 ? p / kChunk + 1 : 0;

    // Each warp's first row of the coming phase's matrices, loaded before the barrier before it.
    Pre<8> pa;
    Pre<4> pb;
    auto preload_layer = [&](const LayerPtrs& N) {  // phase A's first row
        if (N.attention) {
            const int r = gw;
            if (r < HD) preload(pa, static_cast<const W*>(N.q) + static_cast<int64_t>(r) * D, D, lane);
            else if (r < HD + KV) preload(pa, static_cast<const W*>(N.k) + static_cast<int64_t>(r - HD) * D, D, lane);
            else if (r < HD + 2 * KV) preload(pa, static_cast<const W*>(N.v) + static_cast<int64_t>(r - HD - KV) * D, D, lane);
        } else if (gw < 3 * D) {
            preload(pa, static_cast<const W*>(N.in_proj) + static_cast<int64_t>(gw) * D, D, lane);
        }
    };
    preload_layer(a.layer[0]);

    for (int l = 0; l < a.L; ++l) {
        const LayerPtrs& P = a.layer[l];
        if (!P.attention) {
            // ---- A: n = rms_norm(x); B, C, x' = in_proj(n)
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.o), D, D, gw, nw, lane);
            norm_into<T, W>(nullptr, x, static_cast<const W*>(P.opn), D, a.eps, true, xs, red);
            {
                const W* w = static_cast<const W*>(P.in_proj);
                for (int r = gw; r < 3 * D; r += nw) {
                    const W* row = w + static_cast<int64_t>(r) * D;
                    const float y = r == gw ? warp_dot_pre(pa, row, xs, D, lane) : warp_dot(row, xs, D, lane);
                    if (lane == 0) st_act(proj + r, y);
                }
            }
            if (gw < D) preload(pa, static_cast<const W*>(P.o) + static_cast<int64_t>(gw) * D, D, lane);
            grid_barrier(a.bar, a.barrier_mode, gen);

            // ---- C: y = C ⊙ short_conv(B ⊙ x') (every block, all channels); out_proj, x += o
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w1), F, D, gw, nw, lane);
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w3), F, D, gw, nw, lane);
            {
                const W* cw = static_cast<const W*>(P.conv);
                const T* st = static_cast<const T*>(P.conv_state);
#pragma unroll 4
                for (int d = threadIdx.x; d < D; d += blockDim.x) {
                    const float bx = act<T>(ld_cross(proj + d) * ld_cross(proj + 2 * D + d));
                    float s = 0.0f;
                    for (int k = 0; k + 1 < K; ++k)
                        s = fmaf(ld_w(cw + static_cast<int64_t>(d) * K + k), ld_cross(st + static_cast<int64_t>(k) * D + d), s);
                    s = fmaf(ld_w(cw + static_cast<int64_t>(d) * K + K - 1), bx, s);
                    xs[d] = act<T>(ld_cross(proj + D + d) * act<T>(s));
                }
                __syncthreads();
                const W* wo = static_cast<const W*>(P.o);
                for (int r = gw; r < D; r += nw) {
                    const W* row = wo + static_cast<int64_t>(r) * D;
                    const float y = act<T>(r == gw ? warp_dot_pre(pa, row, xs, D, lane) : warp_dot(row, xs, D, lane));
                    if (lane == 0) st_act(x + r, y + ld_cross(x + r));
                }
            }
            if (gw < F) {
                preload(pa, static_cast<const W*>(P.w1) + static_cast<int64_t>(gw) * D, D, lane);
                preload(pb, static_cast<const W*>(P.w3) + static_cast<int64_t>(gw) * D, D, lane);
            }
            grid_barrier(a.bar, a.barrier_mode, gen);
        } else {
            // ---- A: n = rms_norm(x); q, k, v
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.o), D, HD, gw, nw, lane);
            norm_into<T, W>(nullptr, x, static_cast<const W*>(P.opn), D, a.eps, true, xs, red);
            for (int r = gw; r < HD + 2 * KV; r += nw) {
                const W* w = r < HD ? static_cast<const W*>(P.q) + static_cast<int64_t>(r) * D
                           : r < HD + KV ? static_cast<const W*>(P.k) + static_cast<int64_t>(r - HD) * D
                                         : static_cast<const W*>(P.v) + static_cast<int64_t>(r - HD - KV) * D;
                const float y = r == gw ? warp_dot_pre(pa, w, xs, D, lane) : warp_dot(w, xs, D, lane);
                if (lane == 0) st_act(proj + r, y);
            }
            grid_barrier(a.bar, a.barrier_mode, gen);

            // ---- B: per (head, chunk): q/k norm + RoPE, KV write, softmax partial
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w1), F, D, gw, nw, lane);
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w3), F, D, gw, nw, lane);
            {
                T* kc = static_cast<T*>(P.kc);
                T* vc = static_cast<T*>(P.vc);
                const W* qn = static_cast<const W*>(P.qn);
                const W* kn = static_cast<const W*>(P.kn);
                // kLfm2 RMSNorm of proj[src..src+Dh) into dst, then RoPE (rotate_half) at prow.
                auto norm_rope = [&](int src, const W* nwt, float* dst) {
                    float ss = 0.0f;
                    for (int d = lane; d < Dh; d += 32) {
                        const float v = ld_cross(proj + src + d);
                        dst[d] = v;
                        ss = fmaf(v, v, ss);
                    }
                    ss = warp_sum(ss);
                    const float r = 1.0f / sqrtf(ss / static_cast<float>(Dh) + a.eps);
                    __syncwarp();
                    for (int d = lane; d < Dh; d += 32) dst[d] = act<T>(ld_w(nwt + d) * act<T>(dst[d] * r));
                    __syncwarp();
                    for (int i = lane; i < half; i += 32) {
                        const float c = act<T>(a.cos[static_cast<int64_t>(prow) * half + i]);
                        const float s = act<T>(a.sin[static_cast<int64_t>(prow) * half + i]);
                        const float x0 = dst[i], x1 = dst[i + half];
                        dst[i] = act<T>(act<T>(x0 * c) + act<T>(-x1 * s));
                        dst[i + half] = act<T>(act<T>(x1 * c) + act<T>(x0 * s));
                    }
                    __syncwarp();
                };
                for (int it = gw; it < H * nc; it += nw) {
                    const int h = it / nc, c = it - h * nc, hk = h / G;
                    norm_rope(h * Dh, qn, qw);
                    const bool has_new = c == nc - 1;  // the chunk holding position p
                    if (has_new) {
                        norm_rope(HD + hk * Dh, kn, kw);
                        for (int d = lane; d < Dh; d += 32) vw[d] = ld_cross(proj + HD + KV + hk * Dh + d);
                        __syncwarp();
                        if (h % G == 0 && write_kv) {
                            for (int d = lane; d < Dh; d += 32) {
                                st_act(kc + (static_cast<int64_t>(hk) * S + p_raw) * Dh + d, kw[d]);
                                st_act(vc + (static_cast<int64_t>(hk) * S + p_raw) * Dh + d, vw[d]);
                            }
                        }
                    }
                    // Scores: lane = position within each group of 32.
                    constexpr int R = kChunk / 32;
                    float sc[R];
                    float m = -INFINITY;
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        const int j = c * kChunk + r * 32 + lane;
                        sc[r] = -INFINITY;
                        if (j <= p) {
                            float s = 0.0f;
                            if (has_new && j == p && write_kv) {
                                for (int d = 0; d < Dh; ++d) s = fmaf(qw[d], kw[d], s);
                            } else {
                                const T* kr = kc + (static_cast<int64_t>(hk) * S + j) * Dh;
                                for (int d = 0; d < Dh; d += 8) {
                                    float kv8[8];
                                    if constexpr (sizeof(T) == 2) {
                                        const uint4 u = __ldcg(reinterpret_cast<const uint4*>(kr + d));
                                        const uint32_t q4[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
                                        for (int t = 0; t < 4; ++t) {
                                            kv8[2 * t] = __uint_as_float(q4[t] << 16);
                                            kv8[2 * t + 1] = __uint_as_float(q4[t] & 0xffff0000u);
                                        }
                                    } else {
                                        const float4 u0 = __ldcg(reinterpret_cast<const float4*>(kr + d));
                                        const float4 u1 = __ldcg(reinterpret_cast<const float4*>(kr + d + 4));
                                        kv8[0] = u0.x; kv8[1] = u0.y; kv8[2] = u0.z; kv8[3] = u0.w;
                                        kv8[4] = u1.x; kv8[5] = u1.y; kv8[6] = u1.z; kv8[7] = u1.w;
                                    }
#pragma unroll
                                    for (int t = 0; t < 8; ++t) s = fmaf(qw[d + t], kv8[t], s);
                                }
                            }
                            sc[r] = s * a.scale;
                        }
                        m = fmaxf(m, sc[r]);
                    }
                    m = warp_max(m);
                    float lsum = 0.0f;
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        sc[r] = sc[r] == -INFINITY ? 0.0f : expf(sc[r] - m);
                        lsum += sc[r];
                    }
                    lsum = warp_sum(lsum);
                    constexpr int E = kMaxDh / 32;
                    float acc[E];
#pragma unroll
                    for (int e = 0; e < E; ++e) acc[e] = 0.0f;
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        const int j0 = c * kChunk + r * 32;
                        if (j0 > p) break;  // uniform over the warp
                        const int n = min(32, p - j0 + 1);  // visible positions j0 .. j0+n-1
                        const bool fresh = has_new && write_kv && p < j0 + 32;  // p is the last
                        const int ncache = fresh ? n - 1 : n;
                        // Cached rows in groups of 8, the loads of a group issued together (rows
                        // past the last cached one re-read it; their weights are not applied).
                        for (int jb = 0; jb < ncache; jb += 8) {
                            float vv[8][E];
#pragma unroll
                            for (int u = 0; u < 8; ++u) {
                                const int j = j0 + min(jb + u, ncache - 1);
                                const T* vr = vc + (static_cast<int64_t>(hk) * S + j) * Dh;
#pragma unroll
                                for (int e = 0; e < E; ++e) {
                                    const int d = lane + 32 * e;
                                    vv[u][e] = d < Dh ? ld_cross(vr + d) : 0.0f;
                                }
                            }
#pragma unroll
                            for (int u = 0; u < 8; ++u) {
                                const float pj = __shfl_sync(0xffffffffu, sc[r], (jb + u) & 31);
                                if (jb + u < ncache) {
#pragma unroll
                                    for (int e = 0; e < E; ++e) acc[e] = fmaf(pj, vv[u][e], acc[e]);
                                }
                            }
                        }
                        if (fresh) {
                            const float pj = __shfl_sync(0xffffffffu, sc[r], p - j0);
#pragma unroll
                            for (int e = 0; e < E; ++e) {
                                const int d = lane + 32 * e;
                                if (d < Dh) acc[e] = fmaf(pj, vw[d], acc[e]);
                            }
                        }
                    }
                    float* out = a.part + (static_cast<int64_t>(h) * a.max_chunks + c) * (Dh + 2);
                    if (lane == 0) {
                        out[0] = m;
                        out[1] = lsum;
                    }
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        const int d = lane + 32 * e;
                        if (d < Dh) out[2 + d] = acc[e];
                    }
                    __syncwarp();
                }
            }
            grid_barrier(a.bar, a.barrier_mode, gen);

            // ---- B2: merge the partials of each head
            for (int h = gw; h < H; h += nw) {
                const float* ph = a.part + static_cast<int64_t>(h) * a.max_chunks * (Dh + 2);
                float M = -INFINITY;
                for (int c = 0; c < nc; ++c) M = fmaxf(M, __ldcg(ph + c * (Dh + 2)));
                for (int d = lane; d < Dh; d += 32) {
                    float Ls = 0.0f, acc = 0.0f;
                    if (M != -INFINITY) {
                        for (int c = 0; c < nc; ++c) {
                            const float mc = __ldcg(ph + c * (Dh + 2));
                            if (mc == -INFINITY) continue;
                            const float f = expf(mc - M);
                            Ls = fmaf(__ldcg(ph + c * (Dh + 2) + 1), f, Ls);
                            acc = fmaf(__ldcg(ph + c * (Dh + 2) + 2 + d), f, acc);
                        }
                    }
                    st_act(att + h * Dh + d, Ls > 0.0f ? acc / Ls : 0.0f);
                }
            }
            if (gw < D) preload(pa, static_cast<const W*>(P.o) + static_cast<int64_t>(gw) * HD, HD, lane);
            grid_barrier(a.bar, a.barrier_mode, gen);

            // ---- C: out_proj, x += o
            stage(att, HD, xs);
            __syncthreads();
            {
                const W* wo = static_cast<const W*>(P.o);
                for (int r = gw; r < D; r += nw) {
                    const W* row = wo + static_cast<int64_t>(r) * HD;
                    const float y = act<T>(r == gw ? warp_dot_pre(pa, row, xs, HD, lane) : warp_dot(row, xs, HD, lane));
                    if (lane == 0) st_act(x + r, y + ld_cross(x + r));
                }
            }
            if (gw < F) {
                preload(pa, static_cast<const W*>(P.w1) + static_cast<int64_t>(gw) * D, D, lane);
                preload(pb, static_cast<const W*>(P.w3) + static_cast<int64_t>(gw) * D, D, lane);
            }
            grid_barrier(a.bar, a.barrier_mode, gen);
        }

        // ---- D: n = rms_norm(x); g = silu(w1·n)·(w3·n); block 0 shifts the conv state
        if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w2), D, F, gw, nw, lane);
        norm_into<T, W>(nullptr, x, static_cast<const W*>(P.ffn), D, a.eps, true, xs, red);
        if (!P.attention && blockIdx.x == 0) {
            T* st = static_cast<T*>(P.conv_state);
            for (int d = threadIdx.x; d < D; d += blockDim.x) {
                const float bx = act<T>(ld_cross(proj + d) * ld_cross(proj + 2 * D + d));
                for (int k = 0; k + 2 < K; ++k)
                    st_act(st + static_cast<int64_t>(k) * D + d, ld_cross(st + static_cast<int64_t>(k + 1) * D + d));
                st_act(st + static_cast<int64_t>(K - 2) * D + d, bx);
            }
        }
        {
            const W* w1 = static_cast<const W*>(P.w1);
            const W* w3 = static_cast<const W*>(P.w3);
            for (int r = gw; r < F; r += nw) {
                const W* r1 = w1 + static_cast<int64_t>(r) * D;
                const W* r3 = w3 + static_cast<int64_t>(r) * D;
                const bool first = r == gw;
                const float y1 = act<T>(first ? warp_dot_pre(pa, r1, xs, D, lane) : warp_dot(r1, xs, D, lane));
                const float y3 = act<T>(first ? warp_dot_pre(pb, r3, xs, D, lane) : warp_dot(r3, xs, D, lane));
                if (lane == 0) st_act(g + r, act<T>(y1 / (1.0f + expf(-y1))) * y3);
            }
        }
        if (gw < D) preload(pa, static_cast<const W*>(P.w2) + static_cast<int64_t>(gw) * F, F, lane);
        grid_barrier(a.bar, a.barrier_mode, gen);

        // ---- E: x += w2·g
        if (l + 1 < a.L) {
            const LayerPtrs& N = a.layer[l + 1];
            if (N.attention) {
                if (a.prefetch) prefetch_rows(static_cast<const W*>(N.q), HD, D, gw, nw, lane);
                if (a.prefetch) prefetch_rows(static_cast<const W*>(N.k), KV, D, gw, nw, lane);
                if (a.prefetch) prefetch_rows(static_cast<const W*>(N.v), KV, D, gw, nw, lane);
            } else {
                if (a.prefetch) prefetch_rows(static_cast<const W*>(N.in_proj), 3 * D, D, gw, nw, lane);
            }
        }
        stage(g, F, xs);
        __syncthreads();
        {
            const W* w2 = static_cast<const W*>(P.w2);
            for (int r = gw; r < D; r += nw) {
                const W* row = w2 + static_cast<int64_t>(r) * F;
                const float y = act<T>(r == gw ? warp_dot_pre(pa, row, xs, F, lane) : warp_dot(row, xs, F, lane));
                if (lane == 0) st_act(x + r, ld_cross(x + r) + y);
            }
        }
        if (l + 1 < a.L) preload_layer(a.layer[l + 1]);
        grid_barrier(a.bar, a.barrier_mode, gen);
    }
    if (blockIdx.x == 0) {
        norm_into<T, W>(nullptr, x, static_cast<const W*>(a.final_norm), D, a.eps, true, xs, red);
        T* out = static_cast<T*>(a.out);
        for (int d = threadIdx.x; d < D; d += blockDim.x) st_act(out + d, xs[d]);
    }
}

size_t smem_bytes(int D, int F, int HD) {
    int m = D > F ? D : F;
    m = m > HD ? m : HD;
    return sizeof(float) * (static_cast<size_t>(m) + 32 + static_cast<size_t>(kWarps) * 3 * kMaxDh);
}

}  // namespace

bool lfm2_decode_step(const ops::Context& ctx, const ops::Lfm2Step& s) {
    if (!s.layers || s.n_layers < 1 || s.n_layers > kMaxLayers) return false;
    const DType at = ctx.act_dtype();
    const DType wt = s.layers[0].w1.dtype;
    if (wt != DType::kBF16 && wt != DType::kF32) return false;
    const int64_t D = s.x.numel(), H = s.n_heads, Hkv = s.n_kv_heads;
    const int64_t F = s.layers[0].w1.ndim == 2 ? s.layers[0].w1.shape[0] : 0;
    const int vec = wt == DType::kBF16 ? 8 : 4;
    if (D < 1 || D % vec || F < 1 || F % vec || s.x.dtype != at || s.out.dtype != at || s.out.numel() != D ||
        s.pos.dtype != DType::kI32 || s.pos.numel() != 1 || s.rope_cos.dtype != DType::kF32 || s.rope_cos.ndim != 2)
        return false;
    int64_t Dh = 0, S = -1, K = -1;
    for (int l = 0; l < s.n_layers; ++l) {
        const ops::Lfm2StepLayer& L = s.layers[l];
        if (!weight_ok(L.w1, wt, F, D) || !weight_ok(L.w3, wt, F, D) || !weight_ok(L.w2, wt, D, F) ||
            L.operator_norm.dtype != wt || L.ffn_norm.dtype != wt)
            return false;
        if (L.attention) {
            if (H < 1 || Hkv < 1 || H % Hkv || L.k_cache.ndim != 3 || L.k_cache.dtype != at || L.v_cache.dtype != at)
                return false;
            const int64_t dh = L.k_cache.shape[2], ss = L.k_cache.shape[1];
            if ((Dh && dh != Dh) || (S >= 0 && ss != S)) return false;
            Dh = dh;
            S = ss;
            if (!weight_ok(L.q_proj, wt, H * Dh, D) || !weight_ok(L.k_proj, wt, Hkv * Dh, D) ||
                !weight_ok(L.v_proj, wt, Hkv * Dh, D) || !weight_ok(L.out_proj, wt, D, H * Dh) ||
                L.q_norm.dtype != wt || L.k_norm.dtype != wt || L.k_cache.shape[0] != Hkv ||
                L.v_cache.numel() != L.k_cache.numel() || !aligned16(L.k_cache.data))
                return false;
        } else {
            if (L.conv.ndim < 2 || L.conv.dtype != wt || L.conv_state.dtype != at) return false;
            const int64_t k = L.conv.shape[L.conv.ndim - 1];
            if ((K >= 0 && k != K) || k < 2 || k > kMaxK || L.conv.numel() != D * k ||
                L.conv_state.numel() != (k - 1) * D || !weight_ok(L.in_proj, wt, 3 * D, D) ||
                !weight_ok(L.out_proj, wt, D, D))
                return false;
            K = k;
        }
    }
    if (Dh == 0) Dh = 8, S = 1;  // no attention layer: unused
    if (Dh > kMaxDh || Dh % 8 || S < 1 || s.rope_cos.shape[1] != Dh / 2) return false;
    if (K < 0) K = 2;
    Handles& h = handles(ctx);
    const size_t es = dtype_size(at);
    const int64_t HD = H * Dh, KVd = Hkv * Dh;
    const int64_t max_chunks = (S + kChunk - 1) / kChunk;
    const int64_t proj_n = std::max<int64_t>(3 * D, HD + 2 * KVd);
    const size_t need = align256(kBarrierBytes) + align256(proj_n * es) + align256(HD * es) + align256(F * es) +
                        align256(static_cast<size_t>(H * max_chunks * (Dh + 2)) * sizeof(float));
    const size_t smem = smem_bytes(static_cast<int>(D), static_cast<int>(F), static_cast<int>(HD));
    if (need > h.scratch_bytes || smem > h.max_smem_optin) return false;

    Args a{};
    for (int l = 0; l < s.n_layers; ++l) {
        const ops::Lfm2StepLayer& L = s.layers[l];
        LayerPtrs& P = a.layer[l];
        P.attention = L.attention ? 1 : 0;
        P.opn = L.operator_norm.data;
        P.ffn = L.ffn_norm.data;
        P.w1 = L.w1.data;
        P.w3 = L.w3.data;
        P.w2 = L.w2.data;
        P.o = L.out_proj.data;
        P.in_proj = L.in_proj.data;
        P.conv = L.conv.data;
        P.conv_state = L.conv_state.data;
        P.q = L.q_proj.data;
        P.k = L.k_proj.data;
        P.v = L.v_proj.data;
        P.qn = L.q_norm.data;
        P.kn = L.k_norm.data;
        P.kc = L.k_cache.data;
        P.vc = L.v_cache.data;
    }
    a.final_norm = s.final_norm.data;
    a.cos = static_cast<const float*>(s.rope_cos.data);
    a.sin = static_cast<const float*>(s.rope_sin.data);
    a.x = s.x.data;
    a.pos = static_cast<const int32_t*>(s.pos.data);
    a.out = s.out.data;
    char* p = static_cast<char*>(h.scratch);
    a.bar = reinterpret_cast<unsigned*>(p);
    p += align256(kBarrierBytes);
    a.proj = p;
    p += align256(proj_n * es);
    a.att = p;
    p += align256(HD * es);
    a.g = p;
    p += align256(F * es);
    a.part = reinterpret_cast<float*>(p);
    a.L = s.n_layers;
    a.D = static_cast<int>(D);
    a.F = static_cast<int>(F);
    a.H = static_cast<int>(H);
    a.Hkv = static_cast<int>(Hkv);
    a.Dh = static_cast<int>(Dh);
    a.K = static_cast<int>(K);
    a.S = static_cast<int>(S);
    a.P = static_cast<int>(s.rope_cos.shape[0]);
    a.max_chunks = static_cast<int>(max_chunks);
    a.eps = s.eps;
    a.scale = 1.0f / sqrtf(static_cast<float>(Dh));

    const char* pf = std::getenv("VOXRT_L2_PREFETCH");
    a.prefetch = pf && *pf == '1' ? 1 : 0;
    a.barrier_mode = barrier_mode_from_env();
    const char* name = "lfm2_decode_step (persistent kernel)";
    if (at == DType::kBF16) {
        return wt == DType::kBF16 ? launch_persistent(ctx, lfm2_step_kernel<__nv_bfloat16, __nv_bfloat16>, a, a.bar, kThreads, smem, name)
                                  : launch_persistent(ctx, lfm2_step_kernel<__nv_bfloat16, float>, a, a.bar, kThreads, smem, name);
    }
    return wt == DType::kBF16 ? launch_persistent(ctx, lfm2_step_kernel<float, __nv_bfloat16>, a, a.bar, kThreads, smem, name)
                              : launch_persistent(ctx, lfm2_step_kernel<float, float>, a, a.bar, kThreads, smem, name);
}

}  // namespace voxrt::cuda
