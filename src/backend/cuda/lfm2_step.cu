// One decode step of the LFM2 backbone as one persistent kernel (ops/fused_ops.h,
// ops::lfm2_decode_step).
//
// Done op by op, a step is ~230 kernels (16 layers × 13–16 ops) and each costs ~2–3 µs of launch
// and drain inside a CUDA graph, on top of ~0.7 ms of weight reads. Here the grid runs the layers
// phase after phase. A phase's outputs go to every block as tagged exchange words (persistent.cuh),
// and a block waits only for the words it reads; every block keeps the residual stream x in shared
// memory and adds the exchanged rows itself:
//
//   conv layer:       A  x += o (the last phase's rows), n = rms_norm(x); in_proj rows (B, C, x')
//                     C  every block: y = C ⊙ conv(B ⊙ x') over its state; out_proj rows → o
//   attention layer:  A  x += o, n = rms_norm(x); q, k, v rows
//                     B  one warp per (query head, 32-position chunk), a lane per position:
//                        q/k RMSNorm and RoPE, the KV write (first head of the group, chunk
//                        holding pos), the chunk's softmax partial (max, sum, Σ p·v) into
//                        scratch, then a tagged word per (head, chunk) after a fence
//                     B2 one warp per head: merge the partials
//                     C  out_proj rows → o
//   both:             D  x += o, n = rms_norm(x); w1, w3 rows, g = silu(w1)·w3 (block 0 also
//                        shifts the conv state)
//                     E  w2 rows → o
//   end:              block 0: x += o, out = rms_norm(x)
//
// The conv state is read by every block in C and shifted by block 0 in D: block 0 starts D only
// after every block's C rows, which come after that block's reads. The partials are ordinary
// memory published by a fence before their word and read after a fence that follows it.
//
// Numerics are the op sequence's (ops/ops.h): the same roundings to the activation dtype, fp32
// sums. Attention is split into 32-position chunks (the op sequence's decode attention kernel
// uses 128), so its sums are ordered differently: fp32 agrees to rounding, not bit for bit.
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cuda/handles.h"
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
constexpr int kChunk = 32;  // attention positions per work item (a lane each)
constexpr int kVGroup = 8;  // value rows loaded together
// This kernel's part of the context's exchange region (the depthformer's is below 1 MB): its tag
// counter, then its exchange words.
constexpr size_t kExchangeOffset = size_t{1} << 20;
// Block 0's phase stamps (VOXRT_KERNEL_PHASE_STAMPS builds), after the words.
constexpr size_t kStepProfileOffset = kExchangeOffset + (size_t{768} << 10);
constexpr int kMaxStamps = 16 * kMaxLayers + 4;
// Stamp kinds: a phase's inputs have arrived (its gather is done) or its rows are written.
enum StampKind : int {
    kAReady, kADone, kConvReady, kConvDone, kBReady, kBDone, kB2Done, kOReady, kODone, kDReady, kDDone,
    kEReady, kEDone, kStampKinds
};

struct LayerPtrs {
    int attention;
    const void *opn, *ffn, *w1, *w3, *w2, *o;
    const void *in_proj, *conv;
    void* conv_state;
    const void *q, *k, *v, *qn, *kn;
    void *kc, *vc;
    // 8-bit weights: the row scales of w1, w3, w2, out_proj, in_proj, q, k, v (null otherwise)
    const float *s_w1, *s_w3, *s_w2, *s_o, *s_in, *s_q, *s_k, *s_v;
};

struct Args {
    LayerPtrs layer[kMaxLayers];
    const void* final_norm;
    const float* cos;
    const float* sin;
    const void* x;     // [D] the step's input row
    const int32_t* pos;
    void* out;         // [D]
    float* part;       // [H][max_chunks][Dh + 2] attention partials (scratch)
    Word* w_proj;      // [max(3D, H·Dh + 2·KV)] exchange words
    Word* w_o;         // [D]
    Word* w_att;       // [H·Dh]
    Word* w_g;         // [F]
    Word* w_part;      // [H][max_chunks] one per partial, after it is written
    unsigned* tag_base;
    unsigned long long* prof;  // VOXRT_KERNEL_PHASE_STAMPS builds: block 0's stamps {count, (kind, ns)...}
    int L, D, F, H, Hkv, Dh, K, S, P, max_chunks;
    float eps, scale;
    int prefetch;  // L2 prefetch of the next phase's weights (ContextOptions::gpu.l2_prefetch)
};
// With the row-scale pointers the arguments pass 4 KB; kernels take up to 32,764 bytes of
// parameters since CUDA 12.1 (Volta and newer).
static_assert(sizeof(Args) <= 32764, "lfm2_step_kernel's parameters");

template <class T, class W>
__global__ void __launch_bounds__(kThreads, 1) lfm2_step_kernel(const __grid_constant__ Args a) {
    using SW = SmallW<T, W>;  // norms and conv taps
    extern __shared__ __align__(16) float smem[];
    const int D = a.D, F = a.F, H = a.H, Hkv = a.Hkv, Dh = a.Dh, K = a.K, S = a.S;
    const int HD = H * Dh, KV = Hkv * Dh, G = H / Hkv, half = Dh / 2;
    const int NP = 3 * D > HD + 2 * KV ? 3 * D : HD + 2 * KV;
    int maxv = D > F ? D : F;
    maxv = maxv > HD ? maxv : HD;
    float* xs = smem;                            // [max(D, F, H·Dh)] phase input
    float* xres = xs + maxv;                     // [D] residual stream
    float* projs = xres + D;                     // [NP] the A phase's rows
    float* red = projs + NP;                     // [32]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* qw = red + 32 + warp * 3 * kMaxDh;    // per warp: q, k, v of one head
    float* kw = qw + kMaxDh;
    float* vw = kw + kMaxDh;

    const int gw = blockIdx.x * kWarps + warp, nw = gridDim.x * kWarps;
    unsigned tag = *reinterpret_cast<volatile unsigned*>(a.tag_base);
    unsigned long long* prof = blockIdx.x == 0 && threadIdx.x == 0 ? a.prof : nullptr;
    int n_stamps = 0;
    auto mark = [&](int kind) {
        if (prof && n_stamps < kMaxStamps) {
            unsigned long long ns;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
            prof[1 + 2 * n_stamps] = static_cast<unsigned long long>(kind);
            prof[2 + 2 * n_stamps] = ns;
            ++n_stamps;
        }
    };
    const int p_raw = a.pos[0];
    const int p = p_raw < S ? p_raw : S - 1;                        // attention: keys 0..p
    const int prow = p_raw < 0 ? 0 : (p_raw >= a.P ? a.P - 1 : p_raw);  // RoPE table row
    const bool write_kv = p_raw >= 0 && p_raw < S;
    const int nc = p >= 0 ? p / kChunk + 1 : 0;

    // Each warp's first row of the coming phase's matrices, loaded before the wait for that
    // phase's inputs.
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
    {
        const T* x = static_cast<const T*>(a.x);
        for (int d = threadIdx.x; d < D; d += blockDim.x) xres[d] = to_float(x[d]);
        __syncthreads();
    }

    for (int l = 0; l < a.L; ++l) {
        const LayerPtrs& P = a.layer[l];
        // ---- A: x += o (after layer 0), n = rms_norm(x)
        if (l > 0) gather_words<T, true>(a.w_o, D, tag, xres);
        norm_into<T, SW>(xres, static_cast<const T*>(nullptr), static_cast<const SW*>(P.opn), D, a.eps, true, xs, red);
        mark(kAReady);
        ++tag;
        if (!P.attention) {
            // ---- A: B, C, x' = in_proj(n)
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.o), D, D, gw, nw, lane);
            {
                const W* w = static_cast<const W*>(P.in_proj);
                // The first row from its preloaded pieces, then the others two at a time.
                for (int r = gw; r < 3 * D;) {
                    const W* row = w + static_cast<int64_t>(r) * D;
                    if (r == gw || r + nw >= 3 * D) {
                        const float y = r == gw ? warp_dot_pre(pa, row, xs, D, lane) : warp_dot(row, xs, D, lane);
                        if (lane == 0) put_word(a.w_proj + r, act<T>(row_scaled<W>(y, P.s_in, r)), tag);
                        r += nw;
                    } else {
                        const float2 y = warp_dot2(row, row + static_cast<int64_t>(nw) * D, xs, D, lane);
                        if (lane == 0) {
                            put_word(a.w_proj + r, act<T>(row_scaled<W>(y.x, P.s_in, r)), tag);
                            put_word(a.w_proj + r + nw, act<T>(row_scaled<W>(y.y, P.s_in, r + nw)), tag);
                        }
                        r += 2 * nw;
                    }
                }
            }
            mark(kADone);
            if (gw < D) preload(pa, static_cast<const W*>(P.o) + static_cast<int64_t>(gw) * D, D, lane);

            // ---- C: y = C ⊙ short_conv(B ⊙ x') (every block, all channels); out_proj rows
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w1), F, D, gw, nw, lane);
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w3), F, D, gw, nw, lane);
            gather_words<T, false>(a.w_proj, 3 * D, tag, projs);
            mark(kConvReady);
            {
                const SW* cw = static_cast<const SW*>(P.conv);
                const T* st = static_cast<const T*>(P.conv_state);
#pragma unroll 4
                for (int d = threadIdx.x; d < D; d += blockDim.x) {
                    const float bx = act<T>(projs[d] * projs[2 * D + d]);
                    float s = 0.0f;
                    for (int k = 0; k + 1 < K; ++k)
                        s = fmaf(ld_w(cw + static_cast<int64_t>(d) * K + k), to_float(st[static_cast<int64_t>(k) * D + d]), s);
                    s = fmaf(ld_w(cw + static_cast<int64_t>(d) * K + K - 1), bx, s);
                    xs[d] = act<T>(projs[D + d] * act<T>(s));
                }
                __syncthreads();
                ++tag;
                const W* wo = static_cast<const W*>(P.o);
                for (int r = gw; r < D; r += nw) {
                    const W* row = wo + static_cast<int64_t>(r) * D;
                    const float y =
                        act<T>(row_scaled<W>(r == gw ? warp_dot_pre(pa, row, xs, D, lane) : warp_dot(row, xs, D, lane), P.s_o, r));
                    if (lane == 0) put_word(a.w_o + r, y, tag);
                }
            }
            mark(kConvDone);
            if (gw < F) {
                preload(pa, static_cast<const W*>(P.w1) + static_cast<int64_t>(gw) * D, D, lane);
                preload(pb, static_cast<const W*>(P.w3) + static_cast<int64_t>(gw) * D, D, lane);
            }
        } else {
            // ---- A: q, k, v rows
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.o), D, HD, gw, nw, lane);
            for (int r = gw; r < HD + 2 * KV; r += nw) {
                const W* w = r < HD ? static_cast<const W*>(P.q) + static_cast<int64_t>(r) * D
                           : r < HD + KV ? static_cast<const W*>(P.k) + static_cast<int64_t>(r - HD) * D
                                         : static_cast<const W*>(P.v) + static_cast<int64_t>(r - HD - KV) * D;
                float y = r == gw ? warp_dot_pre(pa, w, xs, D, lane) : warp_dot(w, xs, D, lane);
                y = r < HD ? row_scaled<W>(y, P.s_q, r)
                    : r < HD + KV ? row_scaled<W>(y, P.s_k, r - HD) : row_scaled<W>(y, P.s_v, r - HD - KV);
                if (lane == 0) put_word(a.w_proj + r, act<T>(y), tag);
            }
            mark(kADone);

            // ---- B: per (head, chunk): q/k norm + RoPE, KV write, softmax partial
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w1), F, D, gw, nw, lane);
            if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w3), F, D, gw, nw, lane);
            gather_words<T, false>(a.w_proj, HD + 2 * KV, tag, projs);
            mark(kBReady);
            ++tag;
            {
                T* kc = static_cast<T*>(P.kc);
                T* vc = static_cast<T*>(P.vc);
                const SW* qn = static_cast<const SW*>(P.qn);
                const SW* kn = static_cast<const SW*>(P.kn);
                // kLfm2 RMSNorm of projs[src..src+Dh) into dst, then RoPE (rotate_half) at prow.
                auto norm_rope = [&](int src, const SW* nwt, float* dst) {
                    float ss = 0.0f;
                    for (int d = lane; d < Dh; d += 32) {
                        const float v = projs[src + d];
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
                int q_head = -1;  // the query head whose normed, rotated q is in qw
                for (int it = gw; it < H * nc; it += nw) {
                    const int h = it / nc, c = it - h * nc, hk = h / G;
                    if (h != q_head) {
                        norm_rope(h * Dh, qn, qw);
                        q_head = h;
                    }
                    const bool has_new = c == nc - 1;  // the chunk holding position p
                    const bool fresh = has_new && write_kv;  // p's key and value come from kw, vw
                    if (has_new) {
                        norm_rope(HD + hk * Dh, kn, kw);
                        for (int d = lane; d < Dh; d += 32) vw[d] = projs[HD + KV + hk * Dh + d];
                        __syncwarp();
                        if (h % G == 0 && write_kv) {
                            for (int d = lane; d < Dh; d += 32) {
                                st_act(kc + (static_cast<int64_t>(hk) * S + p_raw) * Dh + d, kw[d]);
                                st_act(vc + (static_cast<int64_t>(hk) * S + p_raw) * Dh + d, vw[d]);
                            }
                        }
                    }
                    const int j0 = c * kChunk;
                    // Score of position j0 + lane: the row's loads are issued together.
                    const int j = j0 + lane;
                    float s = -INFINITY;
                    if (j <= p) {
                        float acc_s = 0.0f;
                        if (fresh && j == p) {
                            for (int d = 0; d < Dh; ++d) acc_s = fmaf(qw[d], kw[d], acc_s);
                        } else {
                            const T* kr = kc + (static_cast<int64_t>(hk) * S + j) * Dh;
                            if constexpr (sizeof(T) == 2) {
                                uint4 u[kMaxDh / 8];
#pragma unroll
                                for (int t = 0; t < kMaxDh / 8; ++t)
                                    u[t] = 8 * t < Dh ? __ldcg(reinterpret_cast<const uint4*>(kr + 8 * t)) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
                                for (int t = 0; t < kMaxDh / 8; ++t) {
                                    if (8 * t < Dh) {
                                        const uint32_t q4[4] = {u[t].x, u[t].y, u[t].z, u[t].w};
#pragma unroll
                                        for (int e = 0; e < 4; ++e) {
                                            acc_s = fmaf(qw[8 * t + 2 * e], __uint_as_float(q4[e] << 16), acc_s);
                                            acc_s = fmaf(qw[8 * t + 2 * e + 1], __uint_as_float(q4[e] & 0xffff0000u), acc_s);
                                        }
                                    }
                                }
                            } else {
                                float4 u[kMaxDh / 4];
#pragma unroll
                                for (int t = 0; t < kMaxDh / 4; ++t)
                                    u[t] = 4 * t < Dh ? __ldcg(reinterpret_cast<const float4*>(kr + 4 * t)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                                for (int t = 0; t < kMaxDh / 4; ++t) {
                                    if (4 * t < Dh) {
                                        acc_s = fmaf(qw[4 * t], u[t].x, acc_s);
                                        acc_s = fmaf(qw[4 * t + 1], u[t].y, acc_s);
                                        acc_s = fmaf(qw[4 * t + 2], u[t].z, acc_s);
                                        acc_s = fmaf(qw[4 * t + 3], u[t].w, acc_s);
                                    }
                                }
                            }
                        }
                        s = acc_s * a.scale;
                    }
                    const float m = warp_max(s);
                    const float e = s == -INFINITY ? 0.0f : expf(s - m);
                    const float lsum = warp_sum(e);
                    // Σ e_j·v_j: lane owns dimensions d0, d0 + 1; the cached rows' loads are
                    // issued kVGroup at a time (rows past the last cached one re-read it, unweighted).
                    const int n = min(kChunk, p - j0 + 1);
                    const int ncache = fresh ? n - 1 : n;
                    const int d0 = 2 * lane;
                    const bool own = d0 < Dh;
                    float a0 = 0.0f, a1 = 0.0f;
                    const T* vbase = vc + static_cast<int64_t>(hk) * S * Dh + d0;
                    for (int u0 = 0; u0 < ncache; u0 += kVGroup) {
                        float v0[kVGroup], v1[kVGroup];
#pragma unroll
                        for (int u = 0; u < kVGroup; ++u) {
                            const T* vr = vbase + static_cast<int64_t>(j0 + min(u0 + u, ncache - 1)) * Dh;
                            if constexpr (sizeof(T) == 2) {
                                const unsigned w2 = own ? __ldcg(reinterpret_cast<const unsigned*>(vr)) : 0u;
                                v0[u] = __uint_as_float(w2 << 16);
                                v1[u] = __uint_as_float(w2 & 0xffff0000u);
                            } else {
                                const float2 w2 = own ? __ldcg(reinterpret_cast<const float2*>(vr)) : make_float2(0.0f, 0.0f);
                                v0[u] = w2.x;
                                v1[u] = w2.y;
                            }
                        }
#pragma unroll
                        for (int u = 0; u < kVGroup; ++u) {
                            const float pj = __shfl_sync(0xffffffffu, e, (u0 + u) & 31);
                            if (u0 + u < ncache) {
                                a0 = fmaf(pj, v0[u], a0);
                                a1 = fmaf(pj, v1[u], a1);
                            }
                        }
                    }
                    if (fresh) {
                        const float pj = __shfl_sync(0xffffffffu, e, p - j0);
                        if (own) {
                            a0 = fmaf(pj, vw[d0], a0);
                            a1 = fmaf(pj, vw[d0 + 1], a1);
                        }
                    }
                    float* out = a.part + (static_cast<int64_t>(h) * a.max_chunks + c) * (Dh + 2);
                    if (lane == 0) {
                        out[0] = m;
                        out[1] = lsum;
                    }
                    if (own) {
                        out[2 + d0] = a0;
                        out[3 + d0] = a1;
                    }
                    __threadfence();  // the partial before its word
                    __syncwarp();
                    if (lane == 0) put_word(a.w_part + static_cast<int64_t>(h) * a.max_chunks + c, m, tag);
                    __syncwarp();  // qw/kw/vw are rewritten by the next item
                }
            }

            mark(kBDone);
            // ---- B2: merge the partials of each head (lane: chunks for the weights, then
            // dimensions d0, d0 + 1 summed over the chunks in order)
            {
                const unsigned tb = tag;
                ++tag;
                for (int h = gw; h < H; h += nw) {
                    const Word* wp = a.w_part + static_cast<int64_t>(h) * a.max_chunks;
                    for (int c = lane; c < nc; c += 32) await_word(wp + c, tb);
                    __syncwarp();
                    __threadfence();  // the partials after their words
                    const float* ph = a.part + static_cast<int64_t>(h) * a.max_chunks * (Dh + 2);
                    float M = -INFINITY;
                    for (int c = lane; c < nc; c += 32) M = fmaxf(M, __ldcg(ph + c * (Dh + 2)));
                    M = warp_max(M);
                    const int d0 = 2 * lane;
                    const bool own = d0 < Dh;
                    float Ls = 0.0f, a0 = 0.0f, a1 = 0.0f;
                    if (M != -INFINITY) {
                        for (int c0 = 0; c0 < nc; c0 += 32) {
                            float f = 0.0f, lc = 0.0f;
                            if (c0 + lane < nc) {
                                const float mc = __ldcg(ph + (c0 + lane) * (Dh + 2));
                                f = mc == -INFINITY ? 0.0f : expf(mc - M);
                                lc = __ldcg(ph + (c0 + lane) * (Dh + 2) + 1);
                            }
                            const int cn = min(32, nc - c0);
#pragma unroll 8
                            for (int i = 0; i < cn; ++i) {
                                const float fi = __shfl_sync(0xffffffffu, f, i);
                                const float li = __shfl_sync(0xffffffffu, lc, i);
                                Ls = fmaf(li, fi, Ls);
                                if (own) {
                                    const float2 v = __ldcg(reinterpret_cast<const float2*>(ph + (c0 + i) * (Dh + 2) + 2 + d0));
                                    a0 = fmaf(v.x, fi, a0);
                                    a1 = fmaf(v.y, fi, a1);
                                }
                            }
                        }
                    }
                    if (own) {
                        put_word(a.w_att + h * Dh + d0, act<T>(Ls > 0.0f ? a0 / Ls : 0.0f), tag);
                        put_word(a.w_att + h * Dh + d0 + 1, act<T>(Ls > 0.0f ? a1 / Ls : 0.0f), tag);
                    }
                }
            }
            mark(kB2Done);
            if (gw < D) preload(pa, static_cast<const W*>(P.o) + static_cast<int64_t>(gw) * HD, HD, lane);

            // ---- C: out_proj rows
            gather_words<T, false>(a.w_att, HD, tag, xs);
            mark(kOReady);
            ++tag;
            {
                const W* wo = static_cast<const W*>(P.o);
                for (int r = gw; r < D; r += nw) {
                    const W* row = wo + static_cast<int64_t>(r) * HD;
                    const float y = act<T>(
                        row_scaled<W>(r == gw ? warp_dot_pre(pa, row, xs, HD, lane) : warp_dot(row, xs, HD, lane), P.s_o, r));
                    if (lane == 0) put_word(a.w_o + r, y, tag);
                }
            }
            mark(kODone);
            if (gw < F) {
                preload(pa, static_cast<const W*>(P.w1) + static_cast<int64_t>(gw) * D, D, lane);
                preload(pb, static_cast<const W*>(P.w3) + static_cast<int64_t>(gw) * D, D, lane);
            }
        }

        // ---- D: x += o, n = rms_norm(x); g = silu(w1·n)·(w3·n); block 0 shifts the conv state
        if (a.prefetch) prefetch_rows(static_cast<const W*>(P.w2), D, F, gw, nw, lane);
        gather_words<T, true>(a.w_o, D, tag, xres);
        norm_into<T, SW>(xres, static_cast<const T*>(nullptr), static_cast<const SW*>(P.ffn), D, a.eps, true, xs, red);
        mark(kDReady);
        ++tag;
        if (!P.attention && blockIdx.x == 0) {
            // Every block has read the state in C: block 0 is here only after all their C rows.
            T* st = static_cast<T*>(P.conv_state);
            for (int d = threadIdx.x; d < D; d += blockDim.x) {
                const float bx = act<T>(projs[d] * projs[2 * D + d]);
                for (int k = 0; k + 2 < K; ++k)
                    st_act(st + static_cast<int64_t>(k) * D + d, to_float(st[static_cast<int64_t>(k + 1) * D + d]));
                st_act(st + static_cast<int64_t>(K - 2) * D + d, bx);
            }
        }
        {
            const W* w1 = static_cast<const W*>(P.w1);
            const W* w3 = static_cast<const W*>(P.w3);
            for (int r = gw; r < F; r += nw) {
                const W* r1 = w1 + static_cast<int64_t>(r) * D;
                const W* r3 = w3 + static_cast<int64_t>(r) * D;
                float y1, y3;
                if (r == gw) {  // from the pieces preloaded before the wait
                    y1 = warp_dot_pre(pa, r1, xs, D, lane);
                    y3 = warp_dot_pre(pb, r3, xs, D, lane);
                } else {  // both rows' loads in flight together
                    const float2 y = warp_dot2(r1, r3, xs, D, lane);
                    y1 = y.x;
                    y3 = y.y;
                }
                y1 = act<T>(row_scaled<W>(y1, P.s_w1, r));
                y3 = act<T>(row_scaled<W>(y3, P.s_w3, r));
                if (lane == 0) put_word(a.w_g + r, act<T>(act<T>(y1 / (1.0f + expf(-y1))) * y3), tag);
            }
        }
        mark(kDDone);
        if (gw < D) preload(pa, static_cast<const W*>(P.w2) + static_cast<int64_t>(gw) * F, F, lane);

        // ---- E: w2 rows
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
        __syncthreads();  // every warp is done reading n (D's rows) before g overwrites it
        gather_words<T, false>(a.w_g, F, tag, xs);
        mark(kEReady);
        ++tag;
        {
            const W* w2 = static_cast<const W*>(P.w2);
            for (int r = gw; r < D; r += nw) {
                const W* row = w2 + static_cast<int64_t>(r) * F;
                const float y =
                    act<T>(row_scaled<W>(r == gw ? warp_dot_pre(pa, row, xs, F, lane) : warp_dot(row, xs, F, lane), P.s_w2, r));
                if (lane == 0) put_word(a.w_o + r, y, tag);
            }
        }
        mark(kEDone);
        if (l + 1 < a.L) preload_layer(a.layer[l + 1]);
    }
    if (blockIdx.x == 0) {
        gather_words<T, true>(a.w_o, D, tag, xres);
        norm_into<T, SW>(xres, static_cast<const T*>(nullptr), static_cast<const SW*>(a.final_norm), D, a.eps, true, xs, red);
        T* out = static_cast<T*>(a.out);
        for (int d = threadIdx.x; d < D; d += blockDim.x) st_act(out + d, xs[d]);
        if (threadIdx.x == 0) *reinterpret_cast<volatile unsigned*>(a.tag_base) = tag;
    }
    if (prof) prof[0] = static_cast<unsigned long long>(n_stamps);
}

// The kernel's instantiation for the weight type (one per DType weight_vec() takes).
template <class T>
bool launch_for_weights(const ops::Context& ctx, DType wt, const Args& a, size_t smem, const char* name) {
    switch (wt) {
        case DType::kBF16:
            return launch_persistent(ctx, lfm2_step_kernel<T, __nv_bfloat16>, a, nullptr, kThreads, smem, name);
        case DType::kF32: return launch_persistent(ctx, lfm2_step_kernel<T, float>, a, nullptr, kThreads, smem, name);
        case DType::kI8: return launch_persistent(ctx, lfm2_step_kernel<T, QI8>, a, nullptr, kThreads, smem, name);
        case DType::kF8E4M3: return launch_persistent(ctx, lfm2_step_kernel<T, QE4M3>, a, nullptr, kThreads, smem, name);
        default: return false;
    }
}

size_t smem_bytes(int D, int F, int HD, int NP) {
    int m = D > F ? D : F;
    m = m > HD ? m : HD;
    return sizeof(float) * (static_cast<size_t>(m) + D + NP + 32 + static_cast<size_t>(kWarps) * 3 * kMaxDh);
}

}  // namespace

bool lfm2_decode_step(const ops::Context& ctx, const ops::Lfm2Step& s) {
    if (!s.layers || s.n_layers < 1 || s.n_layers > kMaxLayers) return false;
    const DType at = ctx.act_dtype();
    // One weight type for every projection matrix of the call (BF16, F32 or 8-bit codes with row
    // scales); the small weights (norms, conv taps) in SmallW's dtype.
    const DType wt = s.layers[0].w1.dtype;
    const int vec = weight_vec(wt);
    if (vec == 0) return false;
    const DType sd = small_weight_dtype(wt, at);
    const int64_t D = s.x.numel(), H = s.n_heads, Hkv = s.n_kv_heads;
    const int64_t F = s.layers[0].w1.ndim == 2 ? s.layers[0].w1.shape[0] : 0;
    if (D < 1 || D % vec || F < 1 || F % vec || s.x.dtype != at || s.out.dtype != at || s.out.numel() != D ||
        s.final_norm.dtype != sd ||
        s.pos.dtype != DType::kI32 || s.pos.numel() != 1 || s.rope_cos.dtype != DType::kF32 || s.rope_cos.ndim != 2)
        return false;
    int64_t Dh = 0, S = -1, K = -1;
    for (int l = 0; l < s.n_layers; ++l) {
        const ops::Lfm2StepLayer& L = s.layers[l];
        if (!weight_ok(L.w1, wt, F, D) || !weight_ok(L.w3, wt, F, D) || !weight_ok(L.w2, wt, D, F) ||
            L.operator_norm.dtype != sd || L.ffn_norm.dtype != sd)
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
                L.q_norm.dtype != sd || L.k_norm.dtype != sd || L.k_cache.shape[0] != Hkv || (H * Dh) % vec ||
                L.v_cache.numel() != L.k_cache.numel() || !aligned16(L.k_cache.data))
                return false;
        } else {
            if (L.conv.ndim < 2 || L.conv.dtype != sd || L.conv_state.dtype != at) return false;
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
    const int64_t HD = H * Dh, KVd = Hkv * Dh;
    const int64_t max_chunks = (S + kChunk - 1) / kChunk;
    const int64_t proj_n = std::max<int64_t>(3 * D, HD + 2 * KVd);
    const size_t need = static_cast<size_t>(H * max_chunks * (Dh + 2)) * sizeof(float);
    const size_t smem = smem_bytes(static_cast<int>(D), static_cast<int>(F), static_cast<int>(HD), static_cast<int>(proj_n));
    const size_t words = static_cast<size_t>(proj_n + D + HD + F + H * max_chunks);
    if (need > h.scratch_bytes || smem > h.max_smem_optin || !h.exchange ||
        kExchangeOffset + 256 + words * sizeof(Word) > kStepProfileOffset ||
        kStepProfileOffset + 8 * (1 + 2 * static_cast<size_t>(kMaxStamps)) > h.exchange_bytes)
        return false;

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
        P.s_w1 = L.w1.scale;
        P.s_w3 = L.w3.scale;
        P.s_w2 = L.w2.scale;
        P.s_o = L.out_proj.scale;
        P.s_in = L.in_proj.scale;
        P.s_q = L.q_proj.scale;
        P.s_k = L.k_proj.scale;
        P.s_v = L.v_proj.scale;
    }
    a.final_norm = s.final_norm.data;
    a.cos = static_cast<const float*>(s.rope_cos.data);
    a.sin = static_cast<const float*>(s.rope_sin.data);
    a.x = s.x.data;
    a.pos = static_cast<const int32_t*>(s.pos.data);
    a.out = s.out.data;
    a.part = static_cast<float*>(h.scratch);
    char* e = static_cast<char*>(h.exchange) + kExchangeOffset;
    a.tag_base = reinterpret_cast<unsigned*>(e);
    Word* w = reinterpret_cast<Word*>(e + 256);
    a.w_proj = w;
    w += proj_n;
    a.w_o = w;
    w += D;
    a.w_att = w;
    w += HD;
    a.w_g = w;
    w += F;
    a.w_part = w;
#ifdef VOXRT_KERNEL_PHASE_STAMPS
    a.prof = reinterpret_cast<unsigned long long*>(static_cast<char*>(h.exchange) + kStepProfileOffset);
#else
    a.prof = nullptr;
#endif
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

    a.prefetch = h.l2_prefetch ? 1 : 0;
    const char* name = "lfm2_decode_step (persistent kernel)";
    if (at == DType::kBF16) return launch_for_weights<__nv_bfloat16>(ctx, wt, a, smem, name);
    return launch_for_weights<float>(ctx, wt, a, smem, name);
}

#ifdef VOXRT_KERNEL_PHASE_STAMPS
std::string lfm2_step_profile_report(const ops::Context& ctx) {
    Handles& h = handles(ctx);
    if (!h.exchange || h.exchange_bytes < kStepProfileOffset + 8 * (1 + 2 * static_cast<size_t>(kMaxStamps)))
        return "no exchange region";
    std::vector<unsigned long long> p(1 + 2 * static_cast<size_t>(kMaxStamps));
    if (cudaStreamSynchronize(h.stream) != cudaSuccess ||
        cudaMemcpy(p.data(), static_cast<char*>(h.exchange) + kStepProfileOffset, p.size() * 8,
                   cudaMemcpyDeviceToHost) != cudaSuccess)
        return "could not read the profile";
    const int n = static_cast<int>(p[0]);
    if (n < 2 || n > kMaxStamps) return "no profile (no fused step launched since the context was made)";
    // The interval before a stamp is charged to the stamp's kind: before "ready", waiting for the
    // phase's inputs (and any work between); before "done", the phase's rows.
    const char* names[kStampKinds] = {"A ready",  "A rows",   "conv ready", "conv rows", "B ready",
                                            "B items",  "B2 merge", "o ready",    "o rows",    "D ready",
                                            "D rows",   "E ready",  "E rows"};
    double sum[kStampKinds] = {}, cnt[kStampKinds] = {};
    for (int i = 1; i < n; ++i) {
        const int k = static_cast<int>(p[1 + 2 * i]);
        if (k < 0 || k >= kStampKinds) continue;
        sum[k] += static_cast<double>(p[2 + 2 * i] - p[2 + 2 * (i - 1)]) * 1e-3;
        cnt[k] += 1;
    }
    std::string r = "lfm2 step, block 0: mean us before each stamp (count)\n";
    char line[128];
    double total = 0;
    for (int k = 0; k < kStampKinds; ++k) {
        if (cnt[k] == 0) continue;
        std::snprintf(line, sizeof line, "  %-10s %7.2f  (x%.0f)\n", names[k], sum[k] / cnt[k], cnt[k]);
        r += line;
        total += sum[k];
    }
    std::snprintf(line, sizeof line, "  from the first stamp to the last: %.1f us\n", total);
    r += line;
    return r;
}
#endif  // VOXRT_KERNEL_PHASE_STAMPS

}  // namespace voxrt::cuda
