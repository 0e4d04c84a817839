// The depthformer's whole 8-codebook loop for one audio frame as one persistent kernel
// (ops/fused_ops.h, ops::depthformer_frame).
//
// Why: done op by op, a frame is ~860 small kernels (6 layers × ~17 ops × 8 codebooks); inside a
// CUDA graph each costs ~3 µs of launch and drain, far more than its data (the depthformer's
// matrices are 2–6 MB). Here one cooperative launch runs the loop. What then sets the frame's time
// is the chain of dependent phases (25 per codebook) and, within a phase, the memory round trips
// that wait on each other (docs/cuda.md has the measurements that shaped this design).
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/persistent.cuh"
#include "ops/fused_ops.h"
#include "ops/rng.h"

namespace voxrt::cuda {

namespace {

using namespace persistent;

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxLayers = 16;
constexpr int kMaxQ = 8;
constexpr int kMaxTopK = 8;
constexpr int kMaxDh = 64;
constexpr int kListCap = 256;  // kept sampling candidates gathered in index order

struct LayerPtrs {
    const void *opn, *qkv, *o, *qn, *kn, *ffn, *w1, *w3, *w2;
    void *kc, *vc;
    const float *s_qkv, *s_o, *s_w1, *s_w3, *s_w2;  // 8-bit weights: row scales (null otherwise)
};

// ---- the kernel -------------------------------------------------------------------------------------
//
// (1) No grid barriers: a phase's outputs go to every block as tagged exchange
// words (persistent.cuh), and each block waits only for the words it reads; (2) the residual
// stream, the attention and the KV cache kept by every block for itself in shared memory (the
// attention of 8 positions costs less than a phase), which leaves 4 phases per layer; (3) each
// block's weight rows for a coming phase copied into shared memory by cp.async.bulk as soon as
// their buffer is free, up to four phases ahead, so HBM streams while the grid synchronizes;
// (4) nothing a phase needs besides its input words is fetched after they arrive (norm weights
// are loaded before the wait, q/k-norm weights and RoPE tables sit in shared memory).
// Per codebook i and layer l:
//   P1  x (l = 0: in[i] + emb[i-1][code]; else x += the last phase's rows), n = rms_norm(x),
//       qkv rows                                                      → words qkv
//   P2  q/k norm, RoPE, attention of every head (each block), out_proj rows → words o
//   P3  x += o, n = rms_norm(x), g = silu(w1·n)·(w3·n) rows          → words g
//   P4  w2 rows                                                       → words o
//   PL  x += o, n = rms_norm_i(x), to_logits rows                     → words logits
//   S   every block picks the code from all logits (all its warps; pick_block).
// Buffers (each block's contiguous row range of the phase's matrices): Z qkv; Y out_proj, w2;
// X w1+w3, to_logits. Consecutive phases use different buffers, and a buffer is refilled right
// after the phase that read it.
// The phase input n is kept in the activation dtype (its values are rounded to it anyway): the
// row loops are bound by shared-memory bandwidth, and bf16 halves what they read of n.

// The exchange region: tag counter at 0, words from 256, block 0's phase stamps at kProfileOffset
// (a header {L, Q, staged, -} then 4 stamps per phase).
constexpr size_t kProfileOffset = size_t{512} << 10;
constexpr size_t kProfileBytes = 8 * (4 + 4 * static_cast<size_t>(kMaxQ) * (4 * kMaxLayers + 1));
constexpr int kRedWords = 32 + kWarps * kMaxTopK + 2 * kWarps;

struct StreamArgs {
    LayerPtrs layer[kMaxLayers];  // kc/vc: the caches as the op sequence leaves them (block 0 writes)
    const void* emb[kMaxQ];
    const void* emb_norm[kMaxQ];
    const void* to_logits[kMaxQ];
    const float* to_logits_scale[kMaxQ];  // 8-bit weights: row scales (null otherwise)
    const float* cos;
    const float* sin;
    const void* in;     // [Q, Dd]
    void* logits_out;   // [Q, V] or null
    int32_t* codes;
    const int32_t* forced;
    const int32_t* counters;
    Word* w_qkv;        // [Dd + 2·KV]
    Word* w_o;          // [Dd]
    Word* w_g;          // [F]
    Word* w_logits;     // [V]
    unsigned* tag_base; // the last tag of the previous launch
    unsigned long long* prof;  // phase timestamps of block 0, or null
    int L, Q, V, Dd, H, Hkv, Dh, F;
    float eps, scale, temperature;
    int top_k;
    uint64_t seed;
    bool greedy, suppress_eos;
    // Shared-memory layout (bytes): buffers Z at 0, Y at off_y, X at off_x (staged only), then the
    // KV cache, x (float), n (T; the sampling lists alias it), the float vector (qkv, logits),
    // q/k-norm weights and RoPE tables, and the reduction scratch.
    unsigned off_y, off_x, off_kv, off_res, off_n, off_vec, off_par, off_red;
};

// This block's share [r0, r1) of n rows.
__device__ __forceinline__ void block_rows(int n, int& r0, int& r1) {
    r0 = static_cast<int>(static_cast<int64_t>(n) * blockIdx.x / gridDim.x);
    r1 = static_cast<int>(static_cast<int64_t>(n) * (blockIdx.x + 1) / gridDim.x);
}
inline int max_block_rows(int n, int blocks) { return (n + blocks - 1) / blocks; }

// acc + Σ_j f[j]·x[j] in j order; x (16-byte aligned, in shared memory) in float or bf16.
template <int V>
__device__ __forceinline__ float dot_piece(const float (&f)[V], const float* x, float acc) {
    return dot_xs<V>(f, x, acc);
}
template <int V>
__device__ __forceinline__ float dot_piece(const float (&f)[V], const __nv_bfloat16* x, float acc) {
    uint32_t q[V / 2];
    if constexpr (V == 16) {
        const uint4 u = *reinterpret_cast<const uint4*>(x);
        const uint4 t = *reinterpret_cast<const uint4*>(x + 8);
        q[0] = u.x, q[1] = u.y, q[2] = u.z, q[3] = u.w;
        q[4] = t.x, q[5] = t.y, q[6] = t.z, q[7] = t.w;
    } else if constexpr (V == 8) {
        const uint4 u = *reinterpret_cast<const uint4*>(x);
        q[0] = u.x, q[1] = u.y, q[2] = u.z, q[3] = u.w;
    } else {
        const uint2 u = *reinterpret_cast<const uint2*>(x);
        q[0] = u.x, q[1] = u.y;
    }
#pragma unroll
    for (int j = 0; j < V / 2; ++j) {
        acc = fmaf(f[2 * j], __uint_as_float(q[j] << 16), acc);
        acc = fmaf(f[2 * j + 1], __uint_as_float(q[j] & 0xffff0000u), acc);
    }
    return acc;
}

// Σ_k w[k]·xs[k] over one row that may live in shared or global memory (generic loads), each lane
// summing its 16-byte pieces in order, then over the warp.
template <class W, class X>
__device__ __forceinline__ float row_dot(const W* w, const X* xs, int K, int lane) {
    constexpr int V = 16 / sizeof(W);
    float acc = 0.0f;
#pragma unroll 4
    for (int k = lane * V; k < K; k += 32 * V) {
        const uint4 u = *reinterpret_cast<const uint4*>(w + k);
        float f[V];
        unpack16<W>(u, f);
        acc = dot_piece<V>(f, xs + k, acc);
    }
    return warp_sum(acc);
}
// Two rows against the same vector, each piece of xs read once (same sums as two row_dot calls).
template <class W, class X>
__device__ __forceinline__ void row_dot2(const W* w1, const W* w3, const X* xs, int K, int lane, float& y1, float& y3) {
    constexpr int V = 16 / sizeof(W);
    float a1 = 0.0f, a3 = 0.0f;
#pragma unroll 4
    for (int k = lane * V; k < K; k += 32 * V) {
        const uint4 u1 = *reinterpret_cast<const uint4*>(w1 + k);
        const uint4 u3 = *reinterpret_cast<const uint4*>(w3 + k);
        float x[V];
        if constexpr (sizeof(X) == 4) {
#pragma unroll
            for (int j = 0; j < V; j += 4) {
                const float4 q = *reinterpret_cast<const float4*>(reinterpret_cast<const float*>(xs) + k + j);
                x[j] = q.x, x[j + 1] = q.y, x[j + 2] = q.z, x[j + 3] = q.w;
            }
        } else if constexpr (V == 16) {
            const uint4 u = *reinterpret_cast<const uint4*>(xs + k);
            const uint4 t = *reinterpret_cast<const uint4*>(xs + k + 8);
            const uint32_t q[8] = {u.x, u.y, u.z, u.w, t.x, t.y, t.z, t.w};
#pragma unroll
            for (int j = 0; j < 8; ++j) x[2 * j] = __uint_as_float(q[j] << 16), x[2 * j + 1] = __uint_as_float(q[j] & 0xffff0000u);
        } else if constexpr (V == 8) {
            const uint4 u = *reinterpret_cast<const uint4*>(xs + k);
            const uint32_t q[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int j = 0; j < 4; ++j) x[2 * j] = __uint_as_float(q[j] << 16), x[2 * j + 1] = __uint_as_float(q[j] & 0xffff0000u);
        } else {
            const uint2 u = *reinterpret_cast<const uint2*>(xs + k);
            const uint32_t q[2] = {u.x, u.y};
#pragma unroll
            for (int j = 0; j < 2; ++j) x[2 * j] = __uint_as_float(q[j] << 16), x[2 * j + 1] = __uint_as_float(q[j] & 0xffff0000u);
        }
        float f1[V], f3[V];
        unpack16<W>(u1, f1);
        unpack16<W>(u3, f3);
#pragma unroll
        for (int j = 0; j < V; ++j) {
            a1 = fmaf(f1[j], x[j], a1);
            a3 = fmaf(f3[j], x[j], a3);
        }
    }
    y1 = warp_sum(a1);
    y3 = warp_sum(a3);
}

// RMSNorm weights: the first kNormPer·blockDim elements are loaded ahead into registers (before
// the wait for the phase's inputs); the rest, if any, are read when applied.
constexpr int kNormPer = 4;
template <class W>
__device__ __forceinline__ void norm_weights(const W* w, int D, float (&wr)[kNormPer]) {
#pragma unroll
    for (int j = 0; j < kNormPer; ++j) {
        const int i = threadIdx.x + j * blockDim.x;
        wr[j] = i < D ? ld_w(w + i) : 0.0f;
    }
}
// out = act(x·r·w), r = 1/sqrt(mean(x²) + eps); x in shared memory (float).
template <class T, class W, class X>
__device__ void norm_apply(const float* x, const float (&wr)[kNormPer], const W* w, int D, float eps, X* out,
                           float* red) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x) ss = fmaf(x[i], x[i], ss);
    ss = block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
#pragma unroll
    for (int j = 0; j < kNormPer; ++j) {
        const int i = threadIdx.x + j * blockDim.x;
        if (i < D) st_act(out + i, act<T>(x[i] * r * wr[j]));
    }
    for (int i = threadIdx.x + kNormPer * blockDim.x; i < D; i += blockDim.x) st_act(out + i, act<T>(x[i] * r * ld_w(w + i)));
    __syncthreads();
}

// Shared scalars of the block-wide pick.
struct PickShared {
    float thr, mx;
    int pick;
};

// The code of codebook i from the logits in vs[0..V) (floats; overwritten with the sampling
// values), by all threads of the block, each of which gets it. The rules of the op sequence:
// greedy = ops::argmax; else top_k <= kMaxTopK with values act(l / T), threshold = the top_k-th
// largest (ties counted), kept = v >= threshold, drawn with the counter-based uniform `ctr` over
// exp(v - max) summed in double in index order. Each thread owns a contiguous slice of indices,
// so thread order is index order.
template <class T, class A>
__device__ int pick_block(const A& a, float* vs, unsigned ctr, float* red, int* list_idx, float* list_v,
                          PickShared& sh) {
    const int V = a.V, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int per = (V + kThreads - 1) / kThreads, n0 = min(V, tid * per), n1 = min(V, n0 + per);
    float* cand_v = red + 32;                                             // [kWarps][kMaxTopK]
    int* cand_i = reinterpret_cast<int*>(red + 32 + kWarps * kMaxTopK);  // [kWarps]
    int* wcnt = cand_i + kWarps;                                          // [kWarps]
    if (a.greedy) {
        Best b{-INFINITY, INT_MAX};
        for (int n = n0; n < n1; ++n) b = better(b, Best{vs[n], n});
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const Best other{__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.i, o)};
            b = better(b, other);
        }
        if (lane == 0) {
            cand_v[warp] = b.v;
            cand_i[warp] = b.i;
        }
        __syncthreads();
        Best r{-INFINITY, INT_MAX};
        for (int w = 0; w < kWarps; ++w) r = better(r, Best{cand_v[w], cand_i[w]});
        __syncthreads();
        return r.i == INT_MAX ? 0 : r.i;
    }
    float top[kMaxTopK];
#pragma unroll
    for (int j = 0; j < kMaxTopK; ++j) top[j] = -INFINITY;
    float m = -INFINITY;
    for (int n = n0; n < n1; ++n) {
        const float v = act<T>(vs[n] / a.temperature);
        vs[n] = v;
        m = fmaxf(m, v);
        if (v > top[kMaxTopK - 1]) {
            top[kMaxTopK - 1] = v;
#pragma unroll
            for (int j = kMaxTopK - 1; j > 0; --j) {
                if (top[j] > top[j - 1]) {
                    const float t = top[j];
                    top[j] = top[j - 1];
                    top[j - 1] = t;
                }
            }
        }
    }
    const int k = a.top_k < V ? a.top_k : 0;  // top_k >= V keeps everything (thr = -inf)
    if (k > 0) {
        // The warp's k largest (every one of the block's k largest is in its warp's list).
        for (int r = 0; r < k; ++r) {
            const float best = warp_max(top[0]);
            const unsigned ball = __ballot_sync(0xffffffffu, top[0] == best);
            if (lane == __ffs(ball) - 1) {
#pragma unroll
                for (int j = 0; j < kMaxTopK - 1; ++j) top[j] = top[j + 1];
                top[kMaxTopK - 1] = -INFINITY;
            }
            if (lane == 0) cand_v[warp * kMaxTopK + r] = best;
        }
        __syncthreads();
        if (warp == 0) {
            float t2[kMaxTopK];
#pragma unroll
            for (int j = 0; j < kMaxTopK; ++j) t2[j] = lane < kWarps && j < k ? cand_v[lane * kMaxTopK + j] : -INFINITY;
            float thr = -INFINITY, mx = -INFINITY;
            for (int r = 0; r < k; ++r) {
                const float best = warp_max(t2[0]);
                if (r == 0) mx = best;
                const unsigned ball = __ballot_sync(0xffffffffu, t2[0] == best);
                if (lane == __ffs(ball) - 1) {
#pragma unroll
                    for (int j = 0; j < kMaxTopK - 1; ++j) t2[j] = t2[j + 1];
                    t2[kMaxTopK - 1] = -INFINITY;
                }
                thr = best;
            }
            if (lane == 0) {
                sh.thr = thr;
                sh.mx = mx;
            }
        }
        __syncthreads();
    } else {
        const float mx = block_max(m, red);
        if (tid == 0) {
            sh.thr = -INFINITY;
            sh.mx = mx;
        }
        __syncthreads();
    }
    const float thr = sh.thr, mx = sh.mx;
    // Kept candidates in index order: a block-wide exclusive scan of the per-thread counts.
    int cnt = 0;
    for (int n = n0; n < n1; ++n) cnt += vs[n] >= thr;
    int incl = cnt;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    if (lane == 31) wcnt[warp] = incl;
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < kWarps; ++w) {
        before += w < warp ? wcnt[w] : 0;
        total += wcnt[w];
    }
    const float u01 = ops::uniform_from_key(a.seed, ctr, 0u);
    if (total <= kListCap) {
        int o = before + incl - cnt;
        for (int n = n0; n < n1; ++n) {
            if (vs[n] >= thr) {
                list_idx[o] = n;
                list_v[o] = vs[n];
                ++o;
            }
        }
        __syncthreads();
        if (tid == 0) {
            double sum = 0.0;
            for (int j = 0; j < total; ++j) sum += exp(static_cast<double>(list_v[j] - mx));
            const double u = static_cast<double>(u01) * sum;
            double c = 0.0;
            int pick = -1;
            for (int j = 0; j < total; ++j) {
                c += exp(static_cast<double>(list_v[j] - mx));
                pick = list_idx[j];
                if (c > u) break;
            }
            sh.pick = pick;
        }
    } else if (tid == 0) {  // many ties: the CPU's sequential scan over the whole row
        double sum = 0.0;
        for (int n = 0; n < V; ++n)
            if (vs[n] >= thr) sum += exp(static_cast<double>(vs[n] - mx));
        const double u = static_cast<double>(u01) * sum;
        double c = 0.0;
        int pick = -1;
        for (int n = 0; n < V; ++n) {
            if (vs[n] < thr) continue;
            c += exp(static_cast<double>(vs[n] - mx));
            pick = n;
            if (c > u) break;
        }
        sh.pick = pick;
    }
    __syncthreads();
    const int pick = sh.pick;
    __syncthreads();
    return pick < 0 ? 0 : pick;
}

template <class T, class W, bool kStaged>
__global__ void __launch_bounds__(kThreads, 1) depthformer_streamed_kernel(const __grid_constant__ StreamArgs a) {
    using SW = SmallW<T, W>;  // norms, q/k-norms, embedding tables
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __shared__ unsigned long long bars[3];  // Z, Y, X
    __shared__ PickShared pick_sh;
    const int Dd = a.Dd, F = a.F, V = a.V, H = a.H, Hkv = a.Hkv, Dh = a.Dh, KV = Hkv * Dh, L = a.L, Q = a.Q;
    const int NQ = Dd + 2 * KV;
    unsigned char* p = smem_raw;
    W* bz = reinterpret_cast<W*>(p);
    W* by = reinterpret_cast<W*>(p + a.off_y);
    W* bx = reinterpret_cast<W*>(p + a.off_x);
    T* kvs = reinterpret_cast<T*>(p + a.off_kv);  // [L][Q][2][KV]
    float* xres = reinterpret_cast<float*>(p + a.off_res);
    T* xn = reinterpret_cast<T*>(p + a.off_n);
    float* list_v = reinterpret_cast<float*>(p + a.off_n);  // aliases n during sampling
    int* list_idx = reinterpret_cast<int*>(list_v + kListCap);
    float* vec = reinterpret_cast<float*>(p + a.off_vec);
    const int half = Dh / 2, G = H / Hkv;
    float* qn_s = reinterpret_cast<float*>(p + a.off_par);  // [L][Dh]
    float* kn_s = qn_s + L * Dh;                           // [L][Dh]
    float* cos_s = kn_s + L * Dh;                          // [Q][half]
    float* sin_s = cos_s + Q * half;                       // [Q][half]
    float* red = reinterpret_cast<float*>(p + a.off_red);

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int q0, q1, d0, d1, f0, f1, v0, v1;
    block_rows(NQ, q0, q1);
    block_rows(Dd, d0, d1);
    block_rows(F, f0, f1);
    block_rows(V, v0, v1);
    const int nq = q1 - q0, nd = d1 - d0, nf = f1 - f0, nv = v1 - v0;
    unsigned par[3] = {0u, 0u, 0u};
    auto lay = [&](int l) -> const LayerPtrs& { return a.layer[l]; };
    // Refills, by thread 0, after a __syncthreads that follows the buffer's last reads.
    auto fill = [&](int s, W* dst, const W* src0, int rows, int K, const W* src1) {
        const unsigned b = static_cast<unsigned>(rows) * K * sizeof(W);
        async_proxy_fence();
        mbar_expect(&bars[s], src1 ? 2 * b : b);
        if (b) {
            bulk_load(dst, src0, b, &bars[s]);
            if (src1) bulk_load(reinterpret_cast<unsigned char*>(dst) + b, src1, b, &bars[s]);
        }
    };
    auto fill_qkv = [&](int l) { fill(0, bz, static_cast<const W*>(lay(l).qkv) + static_cast<int64_t>(q0) * Dd, nq, Dd, nullptr); };
    auto fill_o = [&](int l) { fill(1, by, static_cast<const W*>(lay(l).o) + static_cast<int64_t>(d0) * Dd, nd, Dd, nullptr); };
    auto fill_w2 = [&](int l) { fill(1, by, static_cast<const W*>(lay(l).w2) + static_cast<int64_t>(d0) * F, nd, F, nullptr); };
    auto fill_w13 = [&](int l) {
        fill(2, bx, static_cast<const W*>(lay(l).w1) + static_cast<int64_t>(f0) * Dd, nf, Dd,
             static_cast<const W*>(lay(l).w3) + static_cast<int64_t>(f0) * Dd);
    };
    auto fill_logits = [&](int i) {
        fill(2, bx, static_cast<const W*>(a.to_logits[i]) + static_cast<int64_t>(v0) * Dd, nv, Dd, nullptr);
    };
    auto wait_buf = [&](int s) {
        mbar_wait(&bars[s], par[s]);
        par[s] ^= 1u;
    };

    unsigned tag = *reinterpret_cast<volatile unsigned*>(a.tag_base);
    // VOXRT_KERNEL_PHASE_STAMPS builds: block 0 stamps each phase (start, inputs ready, weights ready, outputs
    // written) for depthformer_profile_report().
    unsigned long long* prof = blockIdx.x == 0 && threadIdx.x == 0 ? a.prof : nullptr;
    int ph = 0;
    auto mark = [&](int s) {
        if (prof) {
            unsigned long long ns;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
            prof[4 + ph * 4 + s] = ns;
            if (s == 3) ++ph;
        }
    };

    if constexpr (kStaged) {
        if (threadIdx.x == 0) {
            for (int s = 0; s < 3; ++s) mbar_init(&bars[s]);
            mbar_init_fence();
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            fill_qkv(0);
            fill_o(0);
            fill_w13(0);
        }
    }
    for (int j = threadIdx.x; j < L * Dh; j += kThreads) {
        const int l = j / Dh, d = j % Dh;
        qn_s[j] = ld_w(static_cast<const SW*>(lay(l).qn) + d);
        kn_s[j] = ld_w(static_cast<const SW*>(lay(l).kn) + d);
    }
    for (int j = threadIdx.x; j < Q * half; j += kThreads) {
        cos_s[j] = a.cos[j];
        sin_s[j] = a.sin[j];
    }
    __syncthreads();

    int fed = -1;
    float wr[kNormPer];
    for (int i = 0; i < Q; ++i) {
        const int forced_i = a.forced ? a.forced[i] : 0;
        const unsigned ctr_i = a.counters ? static_cast<unsigned>(a.counters[i]) : 0u;
        for (int l = 0; l < L; ++l) {
            const LayerPtrs& P = lay(l);
            const bool last = i + 1 == Q && l + 1 == L;
            // ---- P1
            mark(0);
            norm_weights(static_cast<const SW*>(P.opn), Dd, wr);
            if (l == 0) {
                const SW* e = i > 0 ? static_cast<const SW*>(a.emb[i - 1]) + static_cast<int64_t>(fed) * Dd : nullptr;
                const T* in = static_cast<const T*>(a.in) + static_cast<int64_t>(i) * Dd;
                for (int d = threadIdx.x; d < Dd; d += kThreads) xres[d] = act<T>(to_float(in[d]) + (e ? ld_w(e + d) : 0.0f));
                __syncthreads();
            } else {
                gather_words<T, true>(a.w_o, Dd, tag, xres);
            }
            norm_apply<T, SW>(xres, wr, static_cast<const SW*>(P.opn), Dd, a.eps, xn, red);
            mark(1);
            if constexpr (kStaged) wait_buf(0);
            mark(2);
            ++tag;
            {
                const W* base = kStaged ? bz : static_cast<const W*>(P.qkv) + static_cast<int64_t>(q0) * Dd;
                for (int rr = warp; rr < nq; rr += kWarps) {
                    const float y = row_scaled<W>(row_dot(base + static_cast<int64_t>(rr) * Dd, xn, Dd, lane), P.s_qkv, q0 + rr);
                    if (lane == 0) put_word(a.w_qkv + q0 + rr, act<T>(y), tag);
                }
            }
            __syncthreads();
            mark(3);
            if (kStaged && threadIdx.x == 0 && !last) fill_qkv(l + 1 < L ? l + 1 : 0);

            // ---- P2: attention of every head in this block, out_proj rows (its stamps: inputs
            // ready, then attention done and weights ready)
            mark(0);
            gather_words<T, false>(a.w_qkv, NQ, tag, vec);
            mark(1);
            {
                T* ks = kvs + static_cast<int64_t>((l * Q + i) * 2) * KV;
                T* vsv = ks + KV;
                const float* qn = qn_s + l * Dh;
                const float* kn = kn_s + l * Dh;
                for (int h = warp; h < H; h += kWarps) {
                    const int hk = h / G;
                    constexpr int E = kMaxDh / 32;
                    float q[E], k[E], v[E];
                    float sq = 0.0f, sk = 0.0f;
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        const int d = lane + 32 * e;
                        const bool on = d < Dh;
                        q[e] = on ? vec[h * Dh + d] : 0.0f;
                        k[e] = on ? vec[Dd + hk * Dh + d] : 0.0f;
                        v[e] = on ? vec[Dd + KV + hk * Dh + d] : 0.0f;
                        sq = fmaf(q[e], q[e], sq);
                        sk = fmaf(k[e], k[e], sk);
                    }
                    sq = warp_sum(sq);
                    sk = warp_sum(sk);
                    const float rq = 1.0f / sqrtf(sq / static_cast<float>(Dh) + a.eps);
                    const float rk = 1.0f / sqrtf(sk / static_cast<float>(Dh) + a.eps);
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        const int d = lane + 32 * e;
                        const bool on = d < Dh;
                        q[e] = on ? act<T>(q[e] * rq * qn[d]) : 0.0f;
                        k[e] = on ? act<T>(k[e] * rk * kn[d]) : 0.0f;
                        const float qp = __shfl_xor_sync(0xffffffffu, q[e], 1);
                        const float kp = __shfl_xor_sync(0xffffffffu, k[e], 1);
                        if (on) {
                            const float c = cos_s[i * half + (d >> 1)], s = sin_s[i * half + (d >> 1)];
                            if ((d & 1) == 0) {
                                q[e] = act<T>(q[e] * c - qp * s);
                                k[e] = act<T>(k[e] * c - kp * s);
                            } else {
                                q[e] = act<T>(qp * s + q[e] * c);
                                k[e] = act<T>(kp * s + k[e] * c);
                            }
                        }
                    }
                    if (h % G == 0) {
#pragma unroll
                        for (int e = 0; e < E; ++e) {
                            const int d = lane + 32 * e;
                            if (d < Dh) {
                                st_act(ks + hk * Dh + d, k[e]);
                                st_act(vsv + hk * Dh + d, v[e]);
                                if (blockIdx.x == 0) {
                                    st_act(static_cast<T*>(P.kc) + (static_cast<int64_t>(hk) * Q + i) * Dh + d, k[e]);
                                    st_act(static_cast<T*>(P.vc) + (static_cast<int64_t>(hk) * Q + i) * Dh + d, v[e]);
                                }
                            }
                        }
                    }
                    // Rows 0..i-1 were written by this block in earlier codebooks. All kMaxQ
                    // dot products are formed (rows past i, of no use, masked after), so their warp
                    // reductions are independent and overlap.
                    float s[kMaxQ];
#pragma unroll
                    for (int j = 0; j < kMaxQ; ++j) {
                        const T* kj = kvs + static_cast<int64_t>((l * Q + min(j, Q - 1)) * 2) * KV + hk * Dh;
                        float pp = 0.0f;
#pragma unroll
                        for (int e = 0; e < E; ++e) {
                            const int d = lane + 32 * e;
                            const float kv = j == i ? k[e] : (d < Dh && j < i ? to_float(kj[d]) : 0.0f);
                            pp = fmaf(q[e], kv, pp);
                        }
                        s[j] = pp;
                    }
#pragma unroll
                    for (int o = 16; o > 0; o >>= 1) {
#pragma unroll
                        for (int j = 0; j < kMaxQ; ++j) s[j] += __shfl_xor_sync(0xffffffffu, s[j], o);
                    }
                    float m = -INFINITY;
#pragma unroll
                    for (int j = 0; j < kMaxQ; ++j) {
                        s[j] = j <= i ? s[j] * a.scale : -INFINITY;
                        m = fmaxf(m, s[j]);
                    }
                    float Ls = 0.0f, o[E];
#pragma unroll
                    for (int e = 0; e < E; ++e) o[e] = 0.0f;
#pragma unroll
                    for (int j = 0; j < kMaxQ; ++j) {
                        if (j <= i) {
                            const T* vj = kvs + static_cast<int64_t>((l * Q + j) * 2 + 1) * KV + hk * Dh;
                            const float pj = expf(s[j] - m);
                            Ls += pj;
#pragma unroll
                            for (int e = 0; e < E; ++e) {
                                const int d = lane + 32 * e;
                                const float vv = j == i ? v[e] : (d < Dh ? to_float(vj[d]) : 0.0f);
                                o[e] = fmaf(pj, vv, o[e]);
                            }
                        }
                    }
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        const int d = lane + 32 * e;
                        if (d < Dh) st_act(xn + h * Dh + d, act<T>(o[e] / Ls));
                    }
                }
                __syncthreads();
                if constexpr (kStaged) wait_buf(1);
                mark(2);
                ++tag;
                const W* base = kStaged ? by : static_cast<const W*>(P.o) + static_cast<int64_t>(d0) * Dd;
                for (int rr = warp; rr < nd; rr += kWarps) {
                    const float y = row_scaled<W>(row_dot(base + static_cast<int64_t>(rr) * Dd, xn, Dd, lane), P.s_o, d0 + rr);
                    if (lane == 0) put_word(a.w_o + d0 + rr, act<T>(y), tag);
                }
                __syncthreads();
                mark(3);
                if (kStaged && threadIdx.x == 0) fill_w2(l);
            }

            // ---- P3: x += o, n = rms_norm(x), g rows
            mark(0);
            norm_weights(static_cast<const SW*>(P.ffn), Dd, wr);
            gather_words<T, true>(a.w_o, Dd, tag, xres);
            norm_apply<T, SW>(xres, wr, static_cast<const SW*>(P.ffn), Dd, a.eps, xn, red);
            mark(1);
            if constexpr (kStaged) wait_buf(2);
            mark(2);
            ++tag;
            {
                const W* b1 = kStaged ? bx : static_cast<const W*>(P.w1) + static_cast<int64_t>(f0) * Dd;
                const W* b3 = kStaged ? bx + static_cast<int64_t>(nf) * Dd
                                      : static_cast<const W*>(P.w3) + static_cast<int64_t>(f0) * Dd;
                for (int rr = warp; rr < nf; rr += kWarps) {
                    float y1, y3;
                    row_dot2(b1 + static_cast<int64_t>(rr) * Dd, b3 + static_cast<int64_t>(rr) * Dd, xn, Dd, lane, y1, y3);
                    y1 = act<T>(row_scaled<W>(y1, P.s_w1, f0 + rr));
                    y3 = act<T>(row_scaled<W>(y3, P.s_w3, f0 + rr));
                    if (lane == 0) put_word(a.w_g + f0 + rr, act<T>(act<T>(y1 / (1.0f + expf(-y1))) * y3), tag);
                }
            }
            __syncthreads();
            mark(3);
            if (kStaged && threadIdx.x == 0) {
                if (l + 1 < L) {
                    fill_w13(l + 1);
                } else {
                    fill_logits(i);
                }
            }

            // ---- P4: w2 rows
            mark(0);
            gather_words<T, false>(a.w_g, F, tag, xn);
            mark(1);
            if constexpr (kStaged) wait_buf(1);
            mark(2);
            ++tag;
            {
                const W* base = kStaged ? by : static_cast<const W*>(P.w2) + static_cast<int64_t>(d0) * F;
                for (int rr = warp; rr < nd; rr += kWarps) {
                    const float y = row_scaled<W>(row_dot(base + static_cast<int64_t>(rr) * F, xn, F, lane), P.s_w2, d0 + rr);
                    if (lane == 0) put_word(a.w_o + d0 + rr, act<T>(y), tag);
                }
            }
            __syncthreads();
            mark(3);
            if (kStaged && threadIdx.x == 0) {
                if (l + 1 < L) {
                    fill_o(l + 1);
                } else if (i + 1 < Q) {
                    fill_o(0);
                }
            }
        }

        // ---- PL: x += o, logits rows
        mark(0);
        norm_weights(static_cast<const SW*>(a.emb_norm[i]), Dd, wr);
        gather_words<T, true>(a.w_o, Dd, tag, xres);
        norm_apply<T, SW>(xres, wr, static_cast<const SW*>(a.emb_norm[i]), Dd, a.eps, xn, red);
        mark(1);
        if constexpr (kStaged) wait_buf(2);
        mark(2);
        ++tag;
        {
            const W* base = kStaged ? bx : static_cast<const W*>(a.to_logits[i]) + static_cast<int64_t>(v0) * Dd;
            T* out = a.logits_out ? static_cast<T*>(a.logits_out) + static_cast<int64_t>(i) * V : nullptr;
            for (int rr = warp; rr < nv; rr += kWarps) {
                float y = row_scaled<W>(row_dot(base + static_cast<int64_t>(rr) * Dd, xn, Dd, lane), a.to_logits_scale[i], v0 + rr);
                if (a.suppress_eos && v0 + rr == V - 1) y = -INFINITY;
                if (lane == 0) {
                    put_word(a.w_logits + v0 + rr, act<T>(y), tag);
                    if (out) st_act(out + v0 + rr, y);
                }
            }
        }
        __syncthreads();
        mark(3);
        if (kStaged && threadIdx.x == 0 && i + 1 < Q) fill_w13(0);

        // ---- S: the code (every block, identically)
        mark(0);
        gather_words<T, false>(a.w_logits, V, tag, vec);
        mark(1);
        mark(2);
        const int c = pick_block<T>(a, vec, ctr_i, red, list_idx, list_v, pick_sh);
        if (blockIdx.x == 0 && threadIdx.x == 0) a.codes[i] = c;
        fed = a.forced ? forced_i : c;
        fed = fed < 0 ? 0 : (fed >= V ? V - 1 : fed);  // as ops::embedding clamps
        mark(3);
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) *reinterpret_cast<volatile unsigned*>(a.tag_base) = tag;
    if (prof) {
        prof[0] = static_cast<unsigned long long>(L);
        prof[1] = static_cast<unsigned long long>(Q);
        prof[2] = kStaged ? 1ull : 0ull;
    }
}

// The kernel's instantiation for the weight type (one per DType weight_vec() takes).
template <class T, bool kStaged>
bool launch_for_weights(const ops::Context& ctx, DType wt, const StreamArgs& a, size_t smem, const char* name) {
    switch (wt) {
        case DType::kBF16:
            return launch_persistent(ctx, depthformer_streamed_kernel<T, __nv_bfloat16, kStaged>, a, nullptr, kThreads,
                                     smem, name);
        case DType::kF32:
            return launch_persistent(ctx, depthformer_streamed_kernel<T, float, kStaged>, a, nullptr, kThreads, smem, name);
        case DType::kI8:
            return launch_persistent(ctx, depthformer_streamed_kernel<T, QI8, kStaged>, a, nullptr, kThreads, smem, name);
        case DType::kF8E4M3:
            return launch_persistent(ctx, depthformer_streamed_kernel<T, QE4M3, kStaged>, a, nullptr, kThreads, smem, name);
        default: return false;
    }
}

// Launches the streamed kernel when its layout fits (shared memory, exchange region); false when
// it declines. The arguments are those depthformer_frame checked.
bool launch_streamed(const ops::Context& ctx, const ops::DepthformerFrame& f, DType at, DType wt, int Q, int Dd, int H,
                     int Hkv, int Dh, int F, int V, bool greedy) {
    Handles& h = handles(ctx);
    const int nb = h.persistent_blocks, KV = Hkv * Dh, NQ = Dd + 2 * KV, L = f.n_layers;
    const size_t ws = dtype_size(wt), es = dtype_size(at);
    auto a16 = [](size_t n) { return (n + 15) & ~static_cast<size_t>(15); };
    const size_t z = a16(static_cast<size_t>(max_block_rows(NQ, nb)) * Dd * ws);
    const size_t y = a16(static_cast<size_t>(max_block_rows(Dd, nb)) * std::max(Dd, F) * ws);
    const size_t x = a16(std::max(2 * static_cast<size_t>(max_block_rows(F, nb)) * Dd,
                                  static_cast<size_t>(max_block_rows(V, nb)) * Dd) *
                         ws);
    const size_t n_elems = static_cast<size_t>(std::max(std::max(Dd, F), H * Dh));
    const size_t kv = a16(es * static_cast<size_t>(L) * Q * 2 * KV);
    const size_t res = a16(4 * static_cast<size_t>(Dd));
    const size_t nvec = a16(std::max(es * n_elems, 8 * static_cast<size_t>(kListCap)));
    const size_t vec = a16(4 * static_cast<size_t>(std::max(V, NQ)));
    const size_t par = a16(4 * (2 * static_cast<size_t>(L) * Dh + static_cast<size_t>(Q) * Dh));
    const size_t red = 4 * static_cast<size_t>(kRedWords);
    const size_t rest = kv + res + nvec + vec + par + red;
    const size_t static_smem = 1024;  // the kernel's own __shared__ variables, with room to spare
    const bool staged = z + y + x + rest + static_smem <= h.max_smem_optin;
    if (!staged && rest + static_smem > h.max_smem_optin) return false;
    const size_t words = static_cast<size_t>(NQ) + Dd + F + V;
    if (256 + words * sizeof(Word) > kProfileOffset || kProfileOffset + kProfileBytes > h.exchange_bytes || !h.exchange)
        return false;

    StreamArgs a{};
    for (int l = 0; l < L; ++l) {
        const ops::DepthformerLayer& Ly = f.layers[l];
        a.layer[l] = LayerPtrs{Ly.operator_norm.data, Ly.qkv.data,      Ly.out_proj.data, Ly.q_norm.data,
                               Ly.k_norm.data,        Ly.ffn_norm.data, Ly.w1.data,       Ly.w3.data,
                               Ly.w2.data,            Ly.k_cache.data,  Ly.v_cache.data,  Ly.qkv.scale,
                               Ly.out_proj.scale,     Ly.w1.scale,      Ly.w3.scale,      Ly.w2.scale};
    }
    for (int i = 0; i < Q; ++i) {
        a.emb[i] = f.emb[i].data;
        a.emb_norm[i] = f.emb_norm[i].data;
        a.to_logits[i] = f.to_logits[i].data;
        a.to_logits_scale[i] = f.to_logits[i].scale;
    }
    a.cos = static_cast<const float*>(f.rope_cos.data);
    a.sin = static_cast<const float*>(f.rope_sin.data);
    a.in = f.in.data;
    a.logits_out = f.logits_out ? f.logits_out->data : nullptr;
    a.codes = static_cast<int32_t*>(f.codes.data);
    a.forced = f.forced ? static_cast<const int32_t*>(f.forced->data) : nullptr;
    a.counters = f.counters ? static_cast<const int32_t*>(f.counters->data) : nullptr;
    char* e = static_cast<char*>(h.exchange);
    a.tag_base = reinterpret_cast<unsigned*>(e);
    Word* w = reinterpret_cast<Word*>(e + 256);
    a.w_qkv = w;
    a.w_o = w + NQ;
    a.w_g = w + NQ + Dd;
    a.w_logits = w + NQ + Dd + F;
#ifdef VOXRT_KERNEL_PHASE_STAMPS
    a.prof = reinterpret_cast<unsigned long long*>(e + kProfileOffset);
#else
    a.prof = nullptr;
#endif
    a.L = L;
    a.Q = Q;
    a.V = V;
    a.Dd = Dd;
    a.H = H;
    a.Hkv = Hkv;
    a.Dh = Dh;
    a.F = F;
    a.eps = f.eps;
    a.scale = 1.0f / sqrtf(static_cast<float>(Dh));
    a.temperature = f.temperature;
    a.top_k = f.top_k;
    a.seed = f.seed;
    a.greedy = greedy;
    a.suppress_eos = f.suppress_eos;
    size_t off = 0;
    if (staged) {
        a.off_y = static_cast<unsigned>(z);
        a.off_x = static_cast<unsigned>(z + y);
        off = z + y + x;
    }
    a.off_kv = static_cast<unsigned>(off);
    off += kv;
    a.off_res = static_cast<unsigned>(off);
    off += res;
    a.off_n = static_cast<unsigned>(off);
    off += nvec;
    a.off_vec = static_cast<unsigned>(off);
    off += vec;
    a.off_par = static_cast<unsigned>(off);
    off += par;
    a.off_red = static_cast<unsigned>(off);
    off += red;
    const size_t smem = off;

    const char* name = "depthformer_frame (streamed persistent kernel)";
    if (at == DType::kBF16) {
        return staged ? launch_for_weights<__nv_bfloat16, true>(ctx, wt, a, smem, name)
                      : launch_for_weights<__nv_bfloat16, false>(ctx, wt, a, smem, name);
    }
    return staged ? launch_for_weights<float, true>(ctx, wt, a, smem, name)
                  : launch_for_weights<float, false>(ctx, wt, a, smem, name);
}

}  // namespace

bool depthformer_frame(const ops::Context& ctx, const ops::DepthformerFrame& f) {
    if (!f.layers || f.n_layers < 1 || f.n_layers > kMaxLayers) return false;
    const DType at = ctx.act_dtype();
    const Tensor& l0 = f.layers[0].w1;
    // One weight type for every projection matrix (qkv, out_proj, w1, w3, w2, to_logits): BF16,
    // F32 or 8-bit codes with row scales; the small weights (norms, embedding tables) in SmallW's.
    const DType wt = l0.dtype;
    const int vec = weight_vec(wt);
    if (vec == 0) return false;
    const DType sd = small_weight_dtype(wt, at);
    const int64_t Q = f.codes.numel(), Dd = f.in.ndim == 2 ? f.in.shape[1] : 0;
    const int64_t H = f.n_heads, Hkv = f.n_kv_heads;
    if (Q < 1 || Q > kMaxQ || Dd < 1 || H < 1 || Hkv < 1 || H % Hkv || Dd % H) return false;
    const int64_t Dh = Dd / H, KV = Hkv * Dh, F = l0.ndim == 2 ? l0.shape[0] : 0;
    const int64_t V = f.emb[0].ndim == 2 ? f.emb[0].shape[0] : 0;
    if (Dh > kMaxDh || Dh % 2 || Dd % vec || F < 1 || F % vec || V < 2 || V > 65536) return false;
    const bool greedy = f.temperature <= 0.0f || f.top_k == 1;
    if (!greedy && (f.top_k < 1 || f.top_k > kMaxTopK || !f.counters)) return false;
    if (f.in.dtype != at || f.in.shape[0] != Q || f.codes.dtype != DType::kI32) return false;
    if (f.rope_cos.dtype != DType::kF32 || f.rope_cos.numel() < Q * (Dh / 2)) return false;
    for (int l = 0; l < f.n_layers; ++l) {
        const ops::DepthformerLayer& L = f.layers[l];
        if (!weight_ok(L.qkv, wt, Dd + 2 * KV, Dd) || !weight_ok(L.out_proj, wt, Dd, Dd) ||
            !weight_ok(L.w1, wt, F, Dd) || !weight_ok(L.w3, wt, F, Dd) || !weight_ok(L.w2, wt, Dd, F) ||
            L.operator_norm.dtype != sd || L.ffn_norm.dtype != sd || L.q_norm.dtype != sd || L.k_norm.dtype != sd ||
            L.k_cache.dtype != at || L.v_cache.dtype != at || L.k_cache.numel() != Hkv * Q * Dh ||
            L.v_cache.numel() != Hkv * Q * Dh)
            return false;
    }
    for (int64_t i = 0; i < Q; ++i) {
        if (!weight_ok(f.emb[i], sd, V, Dd) || !weight_ok(f.to_logits[i], wt, V, Dd) || f.emb_norm[i].dtype != sd)
            return false;
    }
    if (f.logits_out && (f.logits_out->dtype != at || f.logits_out->numel() != Q * V)) return false;
    return launch_streamed(ctx, f, at, wt, static_cast<int>(Q), static_cast<int>(Dd), static_cast<int>(H),
                           static_cast<int>(Hkv), static_cast<int>(Dh), static_cast<int>(F), static_cast<int>(V), greedy);
}

#ifdef VOXRT_KERNEL_PHASE_STAMPS
std::string depthformer_profile_report(const ops::Context& ctx) {
    Handles& h = handles(ctx);
    if (!h.exchange) return "no exchange region";
    std::vector<unsigned long long> p(kProfileBytes / 8);
    if (cudaStreamSynchronize(h.stream) != cudaSuccess ||
        cudaMemcpy(p.data(), static_cast<char*>(h.exchange) + kProfileOffset, kProfileBytes, cudaMemcpyDeviceToHost) !=
            cudaSuccess)
        return "could not read the profile";
    const int L = static_cast<int>(p[0]), Q = static_cast<int>(p[1]);
    if (L < 1 || L > kMaxLayers || Q < 1 || Q > kMaxQ) return "no profile (no streamed depthformer launch since the context was made)";
    // Phase kinds in order per codebook: L × (P1 P2 P3 P4), PL, S.
    // P2's middle column is the attention plus any wait for its weights.
    const char* names[6] = {"P1 qkv", "P2 attn+o", "P3 w1w3", "P4 w2", "PL logits", "S sample"};
    double sum[6][3] = {}, cnt[6] = {};
    int ph = 0;
    auto add = [&](int kind) {
        const unsigned long long* s = &p[4 + 4 * static_cast<size_t>(ph)];
        for (int j = 0; j < 3; ++j) sum[kind][j] += static_cast<double>(s[j + 1] - s[j]) * 1e-3;
        cnt[kind] += 1;
        ++ph;
    };
    for (int i = 0; i < Q; ++i) {
        for (int l = 0; l < L; ++l)
            for (int k = 0; k < 4; ++k) add(k);
        add(4);
        add(5);
    }
    const double total = static_cast<double>(p[4 + 4 * static_cast<size_t>(ph - 1) + 3] - p[4]) * 1e-3;
    std::string r = "depthformer frame, block 0 (" + std::string(p[2] ? "staged" : "unstaged") +
                    "): us per phase = inputs / weights / compute+write\n";
    char line[160];
    for (int k = 0; k < 6; ++k) {
        std::snprintf(line, sizeof line, "  %-10s x%3.0f  %6.2f  %6.2f  %6.2f\n", names[k], cnt[k], sum[k][0] / cnt[k],
                      sum[k][1] / cnt[k], sum[k][2] / cnt[k]);
        r += line;
    }
    std::snprintf(line, sizeof line, "  frame %.1f us over %d phases\n", total, ph);
    r += line;
    return r;
}
#endif  // VOXRT_KERNEL_PHASE_STAMPS

}  // namespace voxrt::cuda
