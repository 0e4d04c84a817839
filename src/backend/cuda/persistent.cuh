// Building blocks of the persistent decode kernels (depthformer.cu, lfm2_step.cu): one launch runs
// many dependent phases, the grid meeting at a software barrier between them. The grid must be
// co-resident (cooperative launch). Data that other blocks wrote in an earlier phase is read
// through L2 (ld.global.cg), never from a possibly stale L1 line; weights stream with
// ld.global.nc. What decides their speed is the number of dependent memory round trips per phase
// (docs/cuda.md): loads that do not depend on each other are issued together (stage(), the
// unrolled row loads, first rows preloaded before a barrier).
#pragma once

#include <cuda/atomic>

#include <cstdlib>
#include <string>
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace voxrt::cuda::persistent {

// ---- element access ------------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ float ld_cross(const T* p);  // data written by other blocks: L2 only
template <>
__device__ __forceinline__ float ld_cross(const float* p) {
    return __ldcg(p);
}
template <>
__device__ __forceinline__ float ld_cross(const __nv_bfloat16* p) {
    return __bfloat162float(__ldcg(p));
}

template <class W>
__device__ __forceinline__ float ld_w(const W* p) {
    return to_float(__ldg(p));
}

// The value the op sequence would have stored in the activation dtype T.
template <class T>
__device__ __forceinline__ float act(float v) {
    if constexpr (sizeof(T) == 2) {
        return round_bf16(v);
    } else {
        return v;
    }
}
template <class T>
__device__ __forceinline__ void st_act(T* p, float v) {
    if constexpr (sizeof(T) == 2) {
        *p = __float2bfloat16_rn(v);
    } else {
        *p = v;
    }
}

__device__ __forceinline__ void prefetch_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// ---- grid barrier ------------------------------------------------------------------------------

// The barrier's memory (zeroed before each launch): a counter, then one flag per block.
constexpr int kMaxGridBlocks = 1024;
constexpr size_t kBarrierBytes = 128 + sizeof(unsigned) * kMaxGridBlocks;

enum BarrierMode : int {
    kBarrierCounter = 0,  // every block increments one counter, thread 0 spins on it
    kBarrierFlags = 1,    // every block publishes its generation in its own word; warp 0 polls all
};

// All blocks of the (co-resident, cooperative) grid meet here; `gen` counts barriers so far.
// The block's writes are ordered before the release (increment or flag store) by __syncthreads;
// the spin is relaxed and an acquire fence follows it.
__device__ __forceinline__ void grid_barrier(unsigned* bar, int mode, unsigned& gen) {
    ++gen;
    __syncthreads();
    if (mode == kBarrierCounter) {
        if (threadIdx.x == 0) {
            ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> c(*bar);
            const unsigned target = gen * gridDim.x;
            c.fetch_add(1u, ::cuda::memory_order_release);
            while (c.load(::cuda::memory_order_relaxed) < target) {
            }
            ::cuda::atomic_thread_fence(::cuda::memory_order_acquire, ::cuda::thread_scope_device);
        }
    } else if (threadIdx.x < 32) {
        unsigned* flags = bar + 32;
        if (threadIdx.x == 0) {
            ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> f(flags[blockIdx.x]);
            f.store(gen, ::cuda::memory_order_release);
        }
        for (;;) {
            bool ok = true;
            for (unsigned b = threadIdx.x; b < gridDim.x; b += 32) {
                ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> f(flags[b]);
                ok = ok && f.load(::cuda::memory_order_relaxed) >= gen;
            }
            if (__all_sync(0xffffffffu, ok)) break;
        }
        ::cuda::atomic_thread_fence(::cuda::memory_order_acquire, ::cuda::thread_scope_device);
    }
    __syncthreads();
}

// ---- tagged exchange words ------------------------------------------------------------------------

// A value handed from the block that computes it to every block that needs it, without a grid
// barrier: one 64-bit word {value bits, tag}, written and read with single 64-bit accesses (which
// are single-copy atomic), so a reader that sees the phase's tag also sees its value. Tags grow by
// one per producing phase and continue across launches (a counter in the exchange region), so a
// stale word never carries the tag a reader waits for. A buffer may be rewritten two producing
// phases after it was written: a block that produces phase p+2 has seen all of phase p+1, which
// every block produced only after reading phase p.
using Word = unsigned long long;

__device__ __forceinline__ void put_word(Word* p, float v, unsigned tag) {
    const Word w = (static_cast<Word>(tag) << 32) | __float_as_uint(v);
    asm volatile("st.relaxed.gpu.global.b64 [%0], %1;" ::"l"(p), "l"(w) : "memory");
}
__device__ __forceinline__ Word get_word(const Word* p) {
    Word w;
    asm volatile("ld.relaxed.gpu.global.b64 %0, [%1];" : "=l"(w) : "l"(p) : "memory");
    return w;
}
__device__ __forceinline__ unsigned tag_of(Word w) { return static_cast<unsigned>(w >> 32); }
__device__ __forceinline__ float value_of(Word w) { return __uint_as_float(static_cast<unsigned>(w)); }

// The value of *p once its tag is `tag` (spins).
__device__ __forceinline__ float await_word(const Word* p, unsigned tag) {
    Word w = get_word(p);
    while (tag_of(w) != tag) w = get_word(p);
    return value_of(w);
}

// dst[0..n) = the words' values once they carry `tag` (kAdd: dst[j] = act(dst[j] + value), dst
// float), by the whole block. All loads of a pass are issued before any is waited on, and the late
// ones are reloaded together: one round trip per pass, however many words were late.
template <class T, bool kAdd, class D>
__device__ void gather_words(const Word* src, int n, unsigned tag, D* dst) {
    constexpr int kPer = 8;
    for (int base = 0; base < n; base += kPer * static_cast<int>(blockDim.x)) {
        Word w[kPer];
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
            const int idx = base + threadIdx.x + j * blockDim.x;
            w[j] = idx < n ? get_word(src + idx) : (static_cast<Word>(tag) << 32);
        }
        for (;;) {
            bool all = true;
#pragma unroll
            for (int j = 0; j < kPer; ++j) all = all && tag_of(w[j]) == tag;
            if (all) break;
#pragma unroll
            for (int j = 0; j < kPer; ++j) {
                const int idx = base + threadIdx.x + j * blockDim.x;
                if (tag_of(w[j]) != tag) w[j] = get_word(src + idx);
            }
        }
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
            const int idx = base + threadIdx.x + j * blockDim.x;
            if (idx < n) {
                if constexpr (kAdd) {
                    dst[idx] = act<T>(dst[idx] + value_of(w[j]));
                } else {
                    st_act(dst + idx, value_of(w[j]));
                }
            }
        }
    }
    __syncthreads();
}

// ---- weights streamed into shared memory (cp.async.bulk + mbarrier) --------------------------------

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(unsigned long long* bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(bar)) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
// Thread 0, before refilling a buffer the block has read (after a __syncthreads): orders those
// reads before the asynchronous copy's writes.
__device__ __forceinline__ void async_proxy_fence() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
__device__ __forceinline__ void mbar_expect(unsigned long long* bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes) : "memory");
}
// bytes (a multiple of 16, both addresses 16-byte aligned) from global src to shared dst,
// completing on `bar`.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, unsigned bytes, unsigned long long* bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                     smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
}
__device__ __forceinline__ bool mbar_try_wait(unsigned long long* bar, unsigned parity) {
    unsigned ok;
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
        : "=r"(ok)
        : "r"(smem_addr(bar)), "r"(parity)
        : "memory");
    return ok != 0;
}
__device__ __forceinline__ void mbar_wait(unsigned long long* bar, unsigned parity) {
    while (!mbar_try_wait(bar, parity)) {
    }
}

// ---- block / warp building blocks ----------------------------------------------------------------

// dst[0..n) = src (written by other blocks) as floats, by the whole block, four independent loads
// per thread in flight (a plain loop would wait out one L2 round trip per element).
template <class T>
__device__ __forceinline__ void stage(const T* src, int n, float* dst) {
    const int bd = blockDim.x;
    int i = threadIdx.x;
    for (; i + 3 * bd < n; i += 4 * bd) {
        const float a0 = ld_cross(src + i), a1 = ld_cross(src + i + bd), a2 = ld_cross(src + i + 2 * bd),
                    a3 = ld_cross(src + i + 3 * bd);
        dst[i] = a0;
        dst[i + bd] = a1;
        dst[i + 2 * bd] = a2;
        dst[i + 3 * bd] = a3;
    }
    for (; i < n; i += bd) dst[i] = ld_cross(src + i);
}

// xs[0..D) = the RMSNorm of x as the op sequence stores it: kFused act(x·r·w), or lfm2 (kLfm2)
// act(w·act(x·r)). x is read across blocks, or from shared memory when `x_shared` (xs may then
// be x_shared itself). The weights are loaded together with x (one memory latency, not two).
// Contains __syncthreads: call from all threads of the block.
template <class T, class W>
__device__ void norm_into(const float* x_shared, const T* x, const W* w, int D, float eps, bool lfm2, float* xs,
                          float* red) {
    constexpr int kPer = 4;  // elements per thread kept in registers; the rest is re-read
    float wr[kPer];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
        const int i = threadIdx.x + j * blockDim.x;
        if (i < D) {
            const float v = x_shared ? x_shared[i] : ld_cross(x + i);
            wr[j] = ld_w(w + i);
            xs[i] = v;
            ss = fmaf(v, v, ss);
        }
    }
    for (int i = threadIdx.x + kPer * blockDim.x; i < D; i += blockDim.x) {
        const float v = x_shared ? x_shared[i] : ld_cross(x + i);
        xs[i] = v;
        ss = fmaf(v, v, ss);
    }
    ss = block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
        const int i = threadIdx.x + j * blockDim.x;
        if (i < D) xs[i] = lfm2 ? act<T>(wr[j] * act<T>(xs[i] * r)) : act<T>(xs[i] * r * wr[j]);
    }
    for (int i = threadIdx.x + kPer * blockDim.x; i < D; i += blockDim.x)
        xs[i] = lfm2 ? act<T>(ld_w(w + i) * act<T>(xs[i] * r)) : act<T>(xs[i] * r * ld_w(w + i));
    __syncthreads();
}

// 16 bytes of weights as floats (8-bit codes: decoded, before their row's scale).
template <class W>
__device__ __forceinline__ void unpack16(const uint4& u, float (&f)[16 / sizeof(W)]) {
    if constexpr (std::is_same_v<W, QI8>) {
        unpack_i8x16(u, f);
    } else if constexpr (std::is_same_v<W, QE4M3>) {
        unpack_e4m3x16(u, f);
    } else if constexpr (sizeof(W) == 2) {
        const uint32_t q[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            f[2 * j] = __uint_as_float(q[j] << 16);
            f[2 * j + 1] = __uint_as_float(q[j] & 0xffff0000u);
        }
    } else {
        f[0] = __uint_as_float(u.x);
        f[1] = __uint_as_float(u.y);
        f[2] = __uint_as_float(u.z);
        f[3] = __uint_as_float(u.w);
    }
}

// acc + Σ_j f[j]·x[j], in j order, x in shared memory (16-byte aligned). x is read with 16-byte
// loads: the lanes of a warp read x at a stride of V floats, so element-wise loads would serialize
// on shared-memory banks (8-way for V = 8) and bound the GEMV far below the memory bandwidth.
template <int V>
__device__ __forceinline__ float dot_xs(const float (&f)[V], const float* x, float acc) {
#pragma unroll
    for (int j = 0; j < V; j += 4) {
        const float4 q = *reinterpret_cast<const float4*>(x + j);
        acc = fmaf(f[j], q.x, acc);
        acc = fmaf(f[j + 1], q.y, acc);
        acc = fmaf(f[j + 2], q.z, acc);
        acc = fmaf(f[j + 3], q.w, acc);
    }
    return acc;
}

// The first N 16-byte pieces a lane reads of a weight row, loaded ahead of time (typically before
// the grid barrier that precedes the phase, since weights never depend on the previous phase).
template <int N>
struct Pre {
    uint4 v[N];
};
template <int N, class W>
__device__ __forceinline__ void preload(Pre<N>& p, const W* w, int K, int lane) {
    constexpr int V = 16 / sizeof(W);
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const int k = (lane + 32 * i) * V;
        if (k < K) p.v[i] = ld_stream16(w + k);
    }
}

// Σ_k w[k]·xs[k] over one row (K a multiple of V = 16 / sizeof(W): 8 for BF16, 4 for F32, 16 for
// 8-bit codes, whose row scale the caller applies to the result, row_scaled()); w 16-byte aligned), each lane
// summing its pieces k = (lane + 32·i)·V in order, then over the warp; every lane gets the result.
// From piece `first` on (the pieces before come from a Pre).
template <class W>
__device__ __forceinline__ float warp_dot_from(float acc, const W* w, const float* xs, int K, int lane, int first) {
    constexpr int V = 16 / sizeof(W);
#pragma unroll 8
    for (int k = (lane + 32 * first) * V; k < K; k += 32 * V) {
        const uint4 u = ld_stream16(w + k);
        float f[V];
        unpack16<W>(u, f);
        acc = dot_xs<V>(f, xs + k, acc);
    }
    return warp_sum(acc);
}
template <class W>
__device__ __forceinline__ float warp_dot(const W* w, const float* xs, int K, int lane) {
    return warp_dot_from(0.0f, w, xs, K, lane, 0);
}
template <int N, class W>
__device__ __forceinline__ float warp_dot_pre(const Pre<N>& p, const W* w, const float* xs, int K, int lane) {
    constexpr int V = 16 / sizeof(W);
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const int k = (lane + 32 * i) * V;
        if (k < K) {
            float f[V];
            unpack16<W>(p.v[i], f);
            acc = dot_xs<V>(f, xs + k, acc);
        }
    }
    return warp_dot_from(acc, w, xs, K, lane, N);
}

// Two rows of the same length at once: (Σ_k wa[k]·xs[k], Σ_k wb[k]·xs[k]), each sum in exactly the
// order warp_dot gives it (so the results are bit for bit warp_dot's), but with both rows' loads in
// flight together: a warp waits out one memory round trip per pair of rows, not one per row. An
// 8-bit row of K codes is half the pieces of a bf16 row, so one row at a time keeps half the
// bytes in flight; measured on an H100 (full-size w1/w3 phase), int8 rows one at a time took as
// long as bf16 rows (22.5 µs a layer), bound by the chain of round trips, not by the bytes.
template <class W>
__device__ __forceinline__ float2 warp_dot2(const W* wa, const W* wb, const float* xs, int K, int lane) {
    constexpr int V = 16 / sizeof(W);
    float acc_a = 0.0f, acc_b = 0.0f;
#pragma unroll 4
    for (int k = lane * V; k < K; k += 32 * V) {
        const uint4 ua = ld_stream16(wa + k);
        const uint4 ub = ld_stream16(wb + k);
        float f[V];
        unpack16<W>(ua, f);
        acc_a = dot_xs<V>(f, xs + k, acc_a);
        unpack16<W>(ub, f);
        acc_b = dot_xs<V>(f, xs + k, acc_b);
    }
    return make_float2(warp_sum(acc_a), warp_sum(acc_b));
}

// A row's finished dot product y times the row's scale for 8-bit weights (scale: the matrix's
// [rows] F32 scales); y itself for BF16 / F32 weights, whose arithmetic stays as it was.
template <class W>
__device__ __forceinline__ float row_scaled(float y, const float* scale, int64_t row) {
    if constexpr (kQuantized<W>) {
        return y * __ldg(scale + row);
    } else {
        return y;
    }
}

// The type of a call's small weights (norms, conv taps, q/k-norms, embedding tables): the
// projection matrices' type W for BF16 / F32 weights; the activation type T when the projections
// are 8-bit codes (those small tensors are not quantized).
template <class T, class W>
using SmallW = std::conditional_t<kQuantized<W>, T, W>;

// Asks L2 for rows gw, gw+nw, … of w [N, K] (the rows this warp reads in a coming phase).
template <class W>
__device__ __forceinline__ void prefetch_rows(const W* w, int N, int K, int gw, int nw, int lane) {
    const int64_t row_bytes = static_cast<int64_t>(K) * sizeof(W);
    for (int r = gw; r < N; r += nw) {
        const char* p = reinterpret_cast<const char*>(w) + r * row_bytes;
        for (int64_t off = static_cast<int64_t>(lane) * 128; off < row_bytes; off += 32 * 128) prefetch_l2(p + off);
    }
}

// ---- launch ------------------------------------------------------------------------------------

// Launches `kernel` with one block of `threads` per SM as a cooperative grid (all blocks
// co-resident, which the barrier needs), after zeroing the barrier counter (if `bar`); both are stream
// operations, so a CUDA graph captures them. Returns false (nothing launched) when a block of
// this size and shared memory cannot be resident; launch failures are recorded on ctx.
template <class Args>
bool launch_persistent(const ops::Context& ctx, void (*kernel)(Args), const Args& a, unsigned* bar, int threads,
                       size_t smem, const char* name) {
    Handles& h = handles(ctx);
    if (smem > 48 * 1024 &&
        !check(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
               name))
        return true;
    int per_sm = 0;
    if (!check(ctx, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem), name)) return true;
    if (per_sm < 1) return false;
    if (h.persistent_blocks > kMaxGridBlocks) return false;
    if (bar && !check(ctx, cudaMemsetAsync(bar, 0, kBarrierBytes, h.stream), name)) return true;
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(static_cast<unsigned>(h.persistent_blocks));
    cfg.blockDim = dim3(static_cast<unsigned>(threads));
    cfg.dynamicSmemBytes = smem;
    cfg.stream = h.stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    check(ctx, cudaLaunchKernelEx(&cfg, kernel, a), name);
    check_launch(ctx, name);
    return true;
}

// A weight matrix the kernels can stream: on the device, dtype wt, rows × cols, 16-byte aligned;
// 8-bit codes (kI8, kF8E4M3) only with their row scales.
inline bool weight_ok(const Tensor& t, DType wt, int64_t rows, int64_t cols) {
    const bool q = wt == DType::kI8 || wt == DType::kF8E4M3;
    return t.data && t.dtype == wt && t.device == Device::kCUDA && t.numel() == rows * cols && aligned16(t.data) &&
           (!q || (t.scale != nullptr && t.ndim == 2 && t.shape[0] == rows));
}

// The projection weight types the persistent kernels take, and the element count of one 16-byte
// load (rows must hold a whole number of them). 0: not a weight type they take.
inline int weight_vec(DType wt) {
    switch (wt) {
        case DType::kBF16: return 8;
        case DType::kF32: return 4;
        case DType::kI8:
        case DType::kF8E4M3: return 16;
        default: return 0;
    }
}
// The dtype the small weights must have (SmallW): the weights' own for BF16 / F32, else act.
inline DType small_weight_dtype(DType wt, DType act) {
    return wt == DType::kI8 || wt == DType::kF8E4M3 ? act : wt;
}

inline size_t align256(size_t n) { return (n + 255) & ~static_cast<size_t>(255); }

}  // namespace voxrt::cuda::persistent
