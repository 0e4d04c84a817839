// CUDA rotary embeddings, KV-cache writes and grouped-query attention over a cache.
//
// attention() has two kernels:
// - decode (T <= 16): split over keys. Each block takes one query position, one KV head with up
//   to 8 of its query heads, and a chunk of 128 cache rows; it writes the chunk's softmax partial
//   (max, sum, unnormalized output) to the context scratch, and a second kernel merges the chunks.
//   The number of chunks follows the cache capacity S (positions are only known on the device);
//   chunks past a query's position return at once.
// - prefill: a tiled SIMT flash-attention kernel (32 queries x 32 keys per step, online softmax in
//   fp32), for head dims 32, 64 and 128.
// Both compute softmax in fp32 and round the output once.
#include <algorithm>
#include <climits>
#include <mutex>

#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"

namespace voxrt::cuda {

namespace {

// ---- rope, kv_write ----------------------------------------------------------------------------------

__global__ void rope_kernel(Ptr x, const int32_t* pos, Ptr cos, Ptr sin, int64_t T, int64_t H, int64_t Dh,
                            int64_t P, bool neox, bool round) {
    const int64_t half = Dh / 2, n = T * H * half;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const int64_t i = idx % half, th = idx / half, t = th / H;
        int64_t p = pos[t];
        p = p < 0 ? 0 : (p >= P ? P - 1 : p);
        const float c = cos.load(p * half + i), s = sin.load(p * half + i);
        const int64_t base = th * Dh;
        if (neox) {
            const float a = x.load(base + i), b = x.load(base + i + half);
            const float ci = rnd(c, round), si = rnd(s, round);
            x.store(base + i, rnd(rnd(a * ci, round) + rnd(-b * si, round), round), round);
            x.store(base + i + half, rnd(rnd(b * ci, round) + rnd(a * si, round), round), round);
        } else {
            const float a = x.load(base + 2 * i), b = x.load(base + 2 * i + 1);
            x.store(base + 2 * i, a * c - b * s, round);
            x.store(base + 2 * i + 1, a * s + b * c, round);
        }
    }
}

// Rows at positions outside [0, S) are skipped (the CPU backend asserts on them).
template <class E>
__global__ void kv_write_kernel(const E* k, const E* v, const int32_t* pos, E* kc, E* vc, int64_t T, int64_t Hkv,
                                int64_t Dh, int64_t S) {
    const int64_t n = T * Hkv * Dh, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const int64_t d = idx % Dh, th = idx / Dh, h = th % Hkv, t = th / Hkv;
        const int64_t p = pos[t];
        if (p < 0 || p >= S) continue;
        kc[(h * S + p) * Dh + d] = k[idx];
        vc[(h * S + p) * Dh + d] = v[idx];
    }
}

// Row t of k, v into its own caches (rows[3t], rows[3t+1], length rows[3t+2]) at pos[t].
template <class E>
__global__ void kv_write_rows_kernel(const E* k, const E* v, const int32_t* pos, const int64_t* rows, int64_t T,
                                     int64_t Hkv, int64_t Dh) {
    const int64_t n = T * Hkv * Dh, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        const int64_t d = idx % Dh, th = idx / Dh, h = th % Hkv, t = th / Hkv;
        const int64_t p = pos[t], S = rows[3 * t + 2];
        if (p < 0 || p >= S) continue;
        E* kc = reinterpret_cast<E*>(rows[3 * t]);
        E* vc = reinterpret_cast<E*>(rows[3 * t + 1]);
        kc[(h * S + p) * Dh + d] = k[idx];
        vc[(h * S + p) * Dh + d] = v[idx];
    }
}

// ---- attention: shared helpers ----------------------------------------------------------------------

__device__ __forceinline__ void load8t(const __nv_bfloat16* p, float (&f)[8]) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        f[2 * j] = __uint_as_float(w[j] << 16);
        f[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
    }
}
__device__ __forceinline__ void load8t(const float* p, float (&f)[8]) {
    const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
    f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
    f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

struct AttnArgs {
    Ptr q, out;
    const void* kc;
    const void* vc;
    const int32_t* pos;
    float* part;  // decode partials
    int T, H, Hkv, S, Dh, window;
    float scale;
    bool round;
    int n_split;  // decode: chunks of the cache
    int gb;       // decode: query heads per block (<= kMaxGroup)
    // decode over per-row caches (attention_rows): [T][3] = k pointer, v pointer, S of row t;
    // null: every query uses kc / vc / S.
    const int64_t* rows = nullptr;
};

__device__ __forceinline__ int cache_len(const AttnArgs& a, int t) {
    return a.rows ? static_cast<int>(a.rows[3 * t + 2]) : a.S;
}

// Query t's visible keys are [j0, p] (empty when p < j0).
__device__ __forceinline__ void visible_range(const AttnArgs& a, int t, int& j0, int& p) {
    p = min(a.pos[t], cache_len(a, t) - 1);
    j0 = a.window > 0 ? max(0, p - a.window + 1) : 0;
}

// ---- decode ------------------------------------------------------------------------------------------

constexpr int kDecThreads = 128, kChunk = 128, kMaxGroup = 8;

template <class T>
__global__ void __launch_bounds__(kDecThreads) attn_decode_partial(AttnArgs a) {
    extern __shared__ float smem[];
    const int G = a.H / a.Hkv, n_gb = (G + a.gb - 1) / a.gb;
    const int split = blockIdx.x, hk = blockIdx.y / n_gb, h0 = hk * G + (blockIdx.y % n_gb) * a.gb;
    const int t = blockIdx.z, Dh = a.Dh;
    const int GB = min(a.gb, hk * G + G - h0);
    float* qs = smem;                      // [GB][Dh]
    float* sc = smem + a.gb * Dh;          // [GB][kChunk]
    float* stat_m = sc + a.gb * kChunk;    // [GB]
    int j0, p;
    visible_range(a, t, j0, p);
    const int S = cache_len(a, t);
    const int c0 = split * kChunk;
    const int lo = max(c0, j0), hi = min(min(c0 + kChunk, S) - 1, p);
    float* part = a.part + (static_cast<int64_t>(t) * a.H + h0) * a.n_split * (Dh + 2) +
                  static_cast<int64_t>(split) * (Dh + 2);
    const int64_t head_stride = static_cast<int64_t>(a.n_split) * (Dh + 2);
    if (lo > hi) {  // nothing visible in this chunk
        for (int i = threadIdx.x; i < GB * (Dh + 2); i += blockDim.x) {
            const int g = i / (Dh + 2), r = i % (Dh + 2);
            part[g * head_stride + r] = r == 0 ? -INFINITY : 0.0f;
        }
        return;
    }
    for (int i = threadIdx.x; i < GB * Dh; i += blockDim.x) {
        const int g = i / Dh, d = i % Dh;
        qs[g * Dh + d] = a.q.load((static_cast<int64_t>(t) * a.H + h0 + g) * Dh + d);
    }
    __syncthreads();
    const void* kbase = a.rows ? reinterpret_cast<const void*>(a.rows[3 * t]) : a.kc;
    const void* vbase = a.rows ? reinterpret_cast<const void*>(a.rows[3 * t + 1]) : a.vc;
    const T* kc = static_cast<const T*>(kbase) + static_cast<int64_t>(hk) * S * Dh;
    const T* vc = static_cast<const T*>(vbase) + static_cast<int64_t>(hk) * S * Dh;
    {
        const int j = c0 + threadIdx.x;
        float s[kMaxGroup];
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g) s[g] = 0.0f;
        const bool valid = j >= lo && j <= hi;
        if (valid) {
            const T* kr = kc + static_cast<int64_t>(j) * Dh;
            for (int d = 0; d < Dh; d += 8) {
                float kv[8];
                load8t(kr + d, kv);
#pragma unroll
                for (int g = 0; g < kMaxGroup; ++g) {
                    if (g < GB) {
#pragma unroll
                        for (int i = 0; i < 8; ++i) s[g] = fmaf(qs[g * Dh + d + i], kv[i], s[g]);
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < kMaxGroup; ++g)
            if (g < GB) sc[g * kChunk + threadIdx.x] = valid ? s[g] * a.scale : -INFINITY;
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int g = warp; g < GB; g += kDecThreads / 32) {
        float mx = -INFINITY;
        for (int i = lane; i < kChunk; i += 32) mx = fmaxf(mx, sc[g * kChunk + i]);
        mx = warp_max(mx);
        float l = 0.0f;
        for (int i = lane; i < kChunk; i += 32) {
            const float v = sc[g * kChunk + i];
            const float e = v == -INFINITY ? 0.0f : expf(v - mx);
            sc[g * kChunk + i] = e;
            l += e;
        }
        l = warp_sum(l);
        if (lane == 0) {
            stat_m[g] = mx;
            part[g * head_stride + 0] = mx;
            part[g * head_stride + 1] = l;
        }
    }
    __syncthreads();
    for (int o = threadIdx.x; o < GB * Dh; o += blockDim.x) {
        const int g = o / Dh, d = o % Dh;
        float acc = 0.0f;
        for (int j = lo; j <= hi; ++j) acc = fmaf(sc[g * kChunk + (j - c0)], to_float(vc[static_cast<int64_t>(j) * Dh + d]), acc);
        part[g * head_stride + 2 + d] = acc;
    }
}

__global__ void attn_decode_combine(AttnArgs a) {
    const int th = blockIdx.x, Dh = a.Dh;  // th = t * H + h
    const float* part = a.part + static_cast<int64_t>(th) * a.n_split * (Dh + 2);
    float M = -INFINITY;
    for (int s = 0; s < a.n_split; ++s) M = fmaxf(M, part[s * (Dh + 2)]);
    for (int d = threadIdx.x; d < Dh; d += blockDim.x) {
        float L = 0.0f, acc = 0.0f;
        if (M != -INFINITY) {
            for (int s = 0; s < a.n_split; ++s) {
                const float m = part[s * (Dh + 2)];
                if (m == -INFINITY) continue;
                const float f = expf(m - M);
                L = fmaf(part[s * (Dh + 2) + 1], f, L);
                acc = fmaf(part[s * (Dh + 2) + 2 + d], f, acc);
            }
        }
        a.out.store(static_cast<int64_t>(th) * Dh + d, L > 0.0f ? acc / L : 0.0f, a.round);
    }
}

// ---- short sliding windows ------------------------------------------------------------------------------

// Windows of at most kWindowMax keys (the depthformer's frame: query i of a row sees its row's first
// i + 1 keys; the detokenizer: 30): one warp per (query, head), keys in order with an online softmax,
// lane d holding output dims d, d + 32, … The tiled kernels would stage whole key tiles for a few
// visible keys each (the batched frame's queries sit 8 positions apart: a 32-query tile spans 256
// keys of which each query sees at most 8).
constexpr int kWindowMax = 64, kWindowWarps = 4;

template <class T>
__global__ void __launch_bounds__(32 * kWindowWarps) attn_window_kernel(AttnArgs a) {
    const int w = blockIdx.x * kWindowWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (w >= a.T * a.H) return;
    const int t = w / a.H, h = w % a.H, hk = h / (a.H / a.Hkv), Dh = a.Dh, per = Dh / 32;
    int j0, p;
    visible_range(a, t, j0, p);
    const T* kc = static_cast<const T*>(a.kc) + static_cast<int64_t>(hk) * a.S * Dh;
    const T* vc = static_cast<const T*>(a.vc) + static_cast<int64_t>(hk) * a.S * Dh;
    const int64_t qo = (static_cast<int64_t>(t) * a.H + h) * Dh;
    float q[4], acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = i < per ? a.q.load(qo + lane + 32 * i) : 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = j0; j <= p; ++j) {
        const T* kj = kc + static_cast<int64_t>(j) * Dh;
        const T* vj = vc + static_cast<int64_t>(j) * Dh;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; ++i)
            if (i < per) dot = fmaf(q[i], to_float(kj[lane + 32 * i]), dot);
        const float s = warp_sum(dot) * a.scale;
        const float m2 = fmaxf(m, s), c = expf(m - m2), e = expf(s - m2);
        l = fmaf(l, c, e);
#pragma unroll
        for (int i = 0; i < 4; ++i)
            if (i < per) acc[i] = fmaf(acc[i], c, e * to_float(vj[lane + 32 * i]));
        m = m2;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
        if (i < per) a.out.store(qo + lane + 32 * i, l > 0.0f ? acc[i] / l : 0.0f, a.round);
}

// ---- prefill ------------------------------------------------------------------------------------------

constexpr int kBQ = 32, kBK = 32, kPreThreads = 128;

template <int DH>
constexpr size_t prefill_smem_bytes() {
    return sizeof(float) * (kBQ * (DH + 1) + kBK * (DH + 1) + kBK * DH + kBQ * (kBK + 1)) + sizeof(int) * (2 * kBQ + 2);
}

// One block per (32 queries, query head). Thread (qi = tid/4, part = tid%4) owns query qi's
// scores for keys part + 4i and its output dims part + 4i.
template <int DH, class T>
__global__ void __launch_bounds__(kPreThreads) attn_prefill_kernel(AttnArgs a) {
    extern __shared__ float smem[];
    float* Qs = smem;                       // [kBQ][DH + 1]
    float* Ks = Qs + kBQ * (DH + 1);        // [kBK][DH + 1]
    float* Vs = Ks + kBK * (DH + 1);        // [kBK][DH]
    float* Ps = Vs + kBK * DH;              // [kBQ][kBK + 1]
    int* ps = reinterpret_cast<int*>(Ps + kBQ * (kBK + 1));  // [kBQ]
    int* j0s = ps + kBQ;                    // [kBQ]
    int* range = j0s + kBQ;                 // [2]: first key, last key of the block
    const int t0 = blockIdx.x * kBQ, h = blockIdx.y, hk = h / (a.H / a.Hkv);
    const int tid = threadIdx.x, qi = tid >> 2, part = tid & 3;

    for (int idx = tid; idx < kBQ * DH; idx += kPreThreads) {
        const int r = idx / DH, d = idx % DH, t = t0 + r;
        Qs[r * (DH + 1) + d] = t < a.T ? a.q.load((static_cast<int64_t>(t) * a.H + h) * DH + d) : 0.0f;
    }
    if (tid < kBQ) {
        int j0 = 0, p = -1;
        if (t0 + tid < a.T) visible_range(a, t0 + tid, j0, p);
        ps[tid] = p;
        j0s[tid] = j0;
    }
    __syncthreads();
    if (tid == 0) {
        int lo = INT_MAX, hi = -1;
        for (int r = 0; r < kBQ; ++r)
            if (ps[r] >= j0s[r]) {
                lo = min(lo, j0s[r]);
                hi = max(hi, ps[r]);
            }
        range[0] = lo;
        range[1] = hi;
    }
    __syncthreads();
    const int lo = range[0], hi = range[1], p = ps[qi], j0 = j0s[qi];
    const T* kc = static_cast<const T*>(a.kc) + static_cast<int64_t>(hk) * a.S * DH;
    const T* vc = static_cast<const T*>(a.vc) + static_cast<int64_t>(hk) * a.S * DH;

    float m = -INFINITY, l = 0.0f, acc[DH / 4];
#pragma unroll
    for (int i = 0; i < DH / 4; ++i) acc[i] = 0.0f;

    for (int kt = lo; kt <= hi; kt += kBK) {
        for (int idx = tid; idx < kBK * DH; idx += kPreThreads) {
            const int r = idx / DH, d = idx % DH, j = kt + r;
            const bool in = j < a.S;
            Ks[r * (DH + 1) + d] = in ? to_float(kc[static_cast<int64_t>(j) * DH + d]) : 0.0f;
            Vs[r * DH + d] = in ? to_float(vc[static_cast<int64_t>(j) * DH + d]) : 0.0f;
        }
        __syncthreads();
        float s[kBK / 4];
        float tile_max = -INFINITY;
#pragma unroll
        for (int i = 0; i < kBK / 4; ++i) {
            const int kk = part + 4 * i, j = kt + kk;
            float dot = 0.0f;
#pragma unroll 16
            for (int d = 0; d < DH; ++d) dot = fmaf(Qs[qi * (DH + 1) + d], Ks[kk * (DH + 1) + d], dot);
            s[i] = (j >= j0 && j <= p) ? dot * a.scale : -INFINITY;
            tile_max = fmaxf(tile_max, s[i]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        const float m_new = fmaxf(m, tile_max);
        float corr = 1.0f, rowsum = 0.0f;
        if (m_new != -INFINITY) {
            corr = m == -INFINITY ? 0.0f : expf(m - m_new);
#pragma unroll
            for (int i = 0; i < kBK / 4; ++i) {
                s[i] = s[i] == -INFINITY ? 0.0f : expf(s[i] - m_new);
                rowsum += s[i];
            }
        } else {
#pragma unroll
            for (int i = 0; i < kBK / 4; ++i) s[i] = 0.0f;
        }
        rowsum += __shfl_xor_sync(0xffffffffu, rowsum, 1);
        rowsum += __shfl_xor_sync(0xffffffffu, rowsum, 2);
        l = l * corr + rowsum;
        m = m_new;
#pragma unroll
        for (int i = 0; i < kBK / 4; ++i) Ps[qi * (kBK + 1) + part + 4 * i] = s[i];
#pragma unroll
        for (int i = 0; i < DH / 4; ++i) acc[i] *= corr;
        __syncwarp();
        for (int kk = 0; kk < kBK; ++kk) {
            const float pv = Ps[qi * (kBK + 1) + kk];
#pragma unroll
            for (int i = 0; i < DH / 4; ++i) acc[i] = fmaf(pv, Vs[kk * DH + part + 4 * i], acc[i]);
        }
        __syncthreads();
    }
    const int t = t0 + qi;
    if (t < a.T) {
        const int64_t base = (static_cast<int64_t>(t) * a.H + h) * DH;
#pragma unroll
        for (int i = 0; i < DH / 4; ++i) a.out.store(base + part + 4 * i, l > 0.0f ? acc[i] / l : 0.0f, a.round);
    }
}

template <int DH, class T>
bool launch_prefill(const ops::Context& ctx, const AttnArgs& a) {
    constexpr size_t smem = prefill_smem_bytes<DH>();
    const Handles& h = handles(ctx);
    if (smem > h.max_smem_optin) return false;
    static std::once_flag once;
    if (smem > 48 * 1024) {
        std::call_once(once, [] {
            cudaFuncSetAttribute(attn_prefill_kernel<DH, T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem));
        });
    }
    const dim3 grid((a.T + kBQ - 1) / kBQ, a.H);
    attn_prefill_kernel<DH, T><<<grid, kPreThreads, smem, h.stream>>>(a);
    check_launch(ctx, "attention (prefill)");
    return true;
}

// Any head dimension, any cache length, no scratch: one warp per (query, head), scores recomputed
// per pass. Slow (O(S·Dh²/32) per head); used only for shapes the fast kernels do not cover (e.g.
// the test checkpoints' head dims of 2 and 16).
template <class T>
__global__ void attn_generic_kernel(AttnArgs a) {
    const int th = blockIdx.x, t = th / a.H, h = th % a.H, hk = h / (a.H / a.Hkv), Dh = a.Dh;
    const int lane = threadIdx.x;
    int j0, p;
    visible_range(a, t, j0, p);
    const T* kc = static_cast<const T*>(a.kc) + static_cast<int64_t>(hk) * a.S * Dh;
    const T* vc = static_cast<const T*>(a.vc) + static_cast<int64_t>(hk) * a.S * Dh;
    const int64_t qo = (static_cast<int64_t>(t) * a.H + h) * Dh;
    auto score = [&](int j) {
        float s = 0.0f;
        for (int d = 0; d < Dh; ++d) s = fmaf(a.q.load(qo + d), to_float(kc[static_cast<int64_t>(j) * Dh + d]), s);
        return s * a.scale;
    };
    float mx = -INFINITY;
    for (int j = j0 + lane; j <= p; j += 32) mx = fmaxf(mx, score(j));
    mx = warp_max(mx);
    float l = 0.0f;
    for (int j = j0 + lane; j <= p; j += 32) l += expf(score(j) - mx);
    l = warp_sum(l);
    for (int d = 0; d < Dh; ++d) {
        float acc = 0.0f;
        for (int j = j0 + lane; j <= p; j += 32)
            acc = fmaf(expf(score(j) - mx), to_float(vc[static_cast<int64_t>(j) * Dh + d]), acc);
        acc = warp_sum(acc);
        if (lane == 0) a.out.store(qo + d, l > 0.0f ? acc / l : 0.0f, a.round);
    }
}

template <class T>
bool launch_attention(const ops::Context& ctx, AttnArgs a) {
    const Handles& h = handles(ctx);
    const int G = a.H / a.Hkv;
    if (a.window > 0 && a.window <= kWindowMax && a.Dh % 32 == 0 && a.Dh <= 128) {
        const int warps = a.T * a.H;
        attn_window_kernel<T><<<(warps + kWindowWarps - 1) / kWindowWarps, 32 * kWindowWarps, 0, h.stream>>>(a);
        check_launch(ctx, "attention (short window)");
        return true;
    }
    a.n_split = (a.S + kChunk - 1) / kChunk;
    a.gb = G < kMaxGroup ? G : kMaxGroup;
    const size_t part_bytes = sizeof(float) * static_cast<size_t>(a.T) * a.H * a.n_split * (a.Dh + 2);
    const bool decode_ok = a.Dh % 8 == 0 && a.Dh <= 256 && part_bytes <= h.scratch_bytes &&
                           aligned16(a.kc) && aligned16(a.vc);
    const bool prefill_dh = a.Dh == 32 || a.Dh == 64 || a.Dh == 128;
    if (decode_ok && (a.T <= 16 || !prefill_dh)) {
        a.part = static_cast<float*>(h.scratch);
        const int n_gb = (G + a.gb - 1) / a.gb;
        const dim3 grid(a.n_split, a.Hkv * n_gb, a.T);
        const size_t smem = sizeof(float) * (a.gb * a.Dh + a.gb * kChunk + a.gb);
        attn_decode_partial<T><<<grid, kDecThreads, smem, h.stream>>>(a);
        attn_decode_combine<<<a.T * a.H, a.Dh < 32 ? 32 : (a.Dh > 256 ? 256 : a.Dh), 0, h.stream>>>(a);
        check_launch(ctx, "attention (decode)");
        return true;
    }
    if (a.Dh == 32) return launch_prefill<32, T>(ctx, a);
    if (a.Dh == 64) return launch_prefill<64, T>(ctx, a);
    if (a.Dh == 128) return launch_prefill<128, T>(ctx, a);
    attn_generic_kernel<T><<<a.T * a.H, 32, 0, h.stream>>>(a);
    check_launch(ctx, "attention (generic)");
    return true;
}

// attention_rows: the decode kernels over per-row caches, in groups of rows whose partials fit the
// scratch. Each row's blocks and chunks are those of attention() on that row alone (chunks are
// absolute cache positions; chunks past a row's position contribute nothing), so the result is
// the same bits.
template <class T>
bool launch_attention_rows(const ops::Context& ctx, AttnArgs a, int64_t max_s) {
    const Handles& h = handles(ctx);
    const int G = a.H / a.Hkv;
    a.n_split = static_cast<int>((max_s + kChunk - 1) / kChunk);
    a.gb = G < kMaxGroup ? G : kMaxGroup;
    if (a.Dh % 8 != 0 || a.Dh > 256 || a.n_split < 1) return false;
    const size_t row_bytes = sizeof(float) * static_cast<size_t>(a.H) * a.n_split * (a.Dh + 2);
    const int per = static_cast<int>(std::min<size_t>(h.scratch_bytes / row_bytes, 1u << 16));
    if (per < 1) return false;
    a.part = static_cast<float*>(h.scratch);
    const int n_gb = (G + a.gb - 1) / a.gb;
    const size_t smem = sizeof(float) * (a.gb * a.Dh + a.gb * kChunk + a.gb);
    const int rows_total = a.T;
    for (int t0 = 0; t0 < rows_total; t0 += per) {
        AttnArgs g = a;
        g.T = std::min(per, rows_total - t0);
        g.q.p = static_cast<char*>(a.q.p) + static_cast<size_t>(t0) * a.H * a.Dh * (a.q.bf16 ? 2 : 4);
        g.out.p = static_cast<char*>(a.out.p) + static_cast<size_t>(t0) * a.H * a.Dh * (a.out.bf16 ? 2 : 4);
        g.pos = a.pos + t0;
        g.rows = a.rows + 3 * t0;
        const dim3 grid(g.n_split, g.Hkv * n_gb, g.T);
        attn_decode_partial<T><<<grid, kDecThreads, smem, h.stream>>>(g);
        attn_decode_combine<<<g.T * g.H, g.Dh < 32 ? 32 : (g.Dh > 256 ? 256 : g.Dh), 0, h.stream>>>(g);
    }
    check_launch(ctx, "attention_rows");
    return true;
}

}  // namespace

void rope(const ops::Context& ctx, Tensor& x, const Tensor& pos, const Tensor& cos, const Tensor& sin,
          ops::RopeStyle style) {
    const int64_t T = x.shape[0], H = x.shape[1], Dh = x.shape[2];
    if (T * H * Dh == 0) return;
    rope_kernel<<<grid_for(T * H * (Dh / 2), 256), 256, 0, stream_of(ctx)>>>(
        ptr_of(x), static_cast<const int32_t*>(pos.data), ptr_of(cos), ptr_of(sin), T, H, Dh, cos.shape[0],
        style == ops::RopeStyle::kNeox, ctx.round_bf16());
    check_launch(ctx, "rope");
}

void kv_write(const ops::Context& ctx, const Tensor& k, const Tensor& v, const Tensor& pos, Tensor& k_cache,
              Tensor& v_cache) {
    const int64_t T = k.shape[0], Hkv = k.shape[1], Dh = k.shape[2], S = k_cache.shape[1];
    const int64_t n = T * Hkv * Dh;
    if (n == 0) return;
    const int32_t* pp = static_cast<const int32_t*>(pos.data);
    cudaStream_t s = stream_of(ctx);
    if (dtype_size(k.dtype) == 2) {
        kv_write_kernel<<<grid_for(n, 256), 256, 0, s>>>(
            static_cast<const uint16_t*>(k.data), static_cast<const uint16_t*>(v.data), pp,
            static_cast<uint16_t*>(k_cache.data), static_cast<uint16_t*>(v_cache.data), T, Hkv, Dh, S);
    } else {
        VOXRT_ASSERT(dtype_size(k.dtype) == 4, "kv_write: dtype %s", dtype_name(k.dtype));
        kv_write_kernel<<<grid_for(n, 256), 256, 0, s>>>(
            static_cast<const uint32_t*>(k.data), static_cast<const uint32_t*>(v.data), pp,
            static_cast<uint32_t*>(k_cache.data), static_cast<uint32_t*>(v_cache.data), T, Hkv, Dh, S);
    }
    check_launch(ctx, "kv_write");
}

void attention(const ops::Context& ctx, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
               const Tensor& pos, float scale, int window, Tensor& out) {
    AttnArgs a{};
    a.q = ptr_of(q);
    a.out = ptr_of(out);
    a.kc = k_cache.data;
    a.vc = v_cache.data;
    a.pos = static_cast<const int32_t*>(pos.data);
    a.T = static_cast<int>(q.shape[0]);
    a.H = static_cast<int>(q.shape[1]);
    a.Dh = static_cast<int>(q.shape[2]);
    a.Hkv = static_cast<int>(k_cache.shape[0]);
    a.S = static_cast<int>(k_cache.shape[1]);
    a.window = window;
    a.scale = scale;
    a.round = ctx.round_bf16();
    if (a.T == 0) return;
    VOXRT_ASSERT(k_cache.dtype == v_cache.dtype && (k_cache.dtype == DType::kBF16 || k_cache.dtype == DType::kF32),
                 "attention: caches %s / %s", k_cache.describe().c_str(), v_cache.describe().c_str());
    const bool ok = k_cache.dtype == DType::kBF16 ? launch_attention<__nv_bfloat16>(ctx, a)
                                                  : launch_attention<float>(ctx, a);
    if (!ok) {
        record_error(ctx, make_error(StatusCode::kUnsupported,
                                     "[cuda] attention: head dim %d with T=%d has no kernel (scratch %zu bytes)",
                                     a.Dh, a.T, handles(ctx).scratch_bytes));
    }
}

bool kv_write_rows(const ops::Context& ctx, const Tensor& k, const Tensor& v, const Tensor& pos,
                   const ops::RowCaches& c) {
    if (!c.table || c.table->dtype != DType::kI64 || c.table->device != Device::kCUDA) return false;
    const int64_t T = k.shape[0], Hkv = k.shape[1], Dh = k.shape[2], n = T * Hkv * Dh;
    if (n == 0) return true;
    const int32_t* pp = static_cast<const int32_t*>(pos.data);
    const int64_t* rows = static_cast<const int64_t*>(c.table->data);
    cudaStream_t s = stream_of(ctx);
    if (dtype_size(k.dtype) == 2) {
        kv_write_rows_kernel<<<grid_for(n, 256), 256, 0, s>>>(static_cast<const uint16_t*>(k.data),
                                                               static_cast<const uint16_t*>(v.data), pp, rows, T,
                                                               Hkv, Dh);
    } else if (dtype_size(k.dtype) == 4) {
        kv_write_rows_kernel<<<grid_for(n, 256), 256, 0, s>>>(static_cast<const uint32_t*>(k.data),
                                                               static_cast<const uint32_t*>(v.data), pp, rows, T,
                                                               Hkv, Dh);
    } else {
        return false;
    }
    check_launch(ctx, "kv_write_rows");
    return true;
}

bool attention_rows(const ops::Context& ctx, const Tensor& q, const ops::RowCaches& c, const Tensor& pos,
                    float scale, int window, Tensor& out) {
    if (!c.table || c.table->dtype != DType::kI64 || c.table->device != Device::kCUDA || c.rows == 0) return false;
    const Tensor& k0 = c.k[0];
    if (k0.dtype != DType::kBF16 && k0.dtype != DType::kF32) return false;
    AttnArgs a{};
    a.q = ptr_of(q);
    a.out = ptr_of(out);
    a.pos = static_cast<const int32_t*>(pos.data);
    a.T = static_cast<int>(q.shape[0]);
    a.H = static_cast<int>(q.shape[1]);
    a.Dh = static_cast<int>(q.shape[2]);
    a.Hkv = static_cast<int>(k0.shape[0]);
    a.S = static_cast<int>(c.max_s);
    a.window = window;
    a.scale = scale;
    a.round = ctx.round_bf16();
    a.rows = static_cast<const int64_t*>(c.table->data);
    return k0.dtype == DType::kBF16 ? launch_attention_rows<__nv_bfloat16>(ctx, a, c.max_s)
                                    : launch_attention_rows<float>(ctx, a, c.max_s);
}

}  // namespace voxrt::cuda
