// CUDA argmax and temperature / top-k sampling, one block per row. Both read everything they need
// (logits, the draw counter) on the device, so they can be captured in a graph.
#include <climits>

#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"
#include "ops/rng.h"

namespace voxrt::cuda {

namespace {

// ---- argmax -----------------------------------------------------------------------------------------


constexpr int kArgmaxThreads = 512;

// The first index of the largest value of row [base, base + N) into *out, by the whole block.
__device__ void argmax_row(Ptr logits, int64_t base, int64_t N, int32_t* out) {
    __shared__ Best red[32];
    Best b{-INFINITY, INT_MAX};
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) b = better(b, Best{logits.load(base + n), int(n)});
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        Best other{__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.i, o)};
        b = better(b, other);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) red[warp] = b;
    __syncthreads();
    if (warp == 0) {
        b = lane < static_cast<int>(blockDim.x >> 5) ? red[lane] : Best{-INFINITY, INT_MAX};
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            Best other{__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.i, o)};
            b = better(b, other);
        }
        if (lane == 0) *out = b.i == INT_MAX ? 0 : b.i;
    }
}

__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(Ptr logits, int64_t N, int32_t* out) {
    argmax_row(logits, static_cast<int64_t>(blockIdx.x) * N, N, out + blockIdx.x);
}

// ---- sampling --------------------------------------------------------------------------------------

constexpr int kSampleThreads = 1024;
constexpr int kListCap = 2048;  // kept candidates drawn exactly like the CPU (sequential sums)

// Order-preserving map of floats to unsigned keys (larger float <-> larger key).
__device__ __forceinline__ uint32_t order_key(float f) {
    const uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Exclusive prefix sum over the block (in thread order); `total` gets the sum. `tot` holds 32 T.
template <class T>
__device__ T block_exclusive_scan(T v, T* tot, T& total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    T incl = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const T n = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += n;
    }
    T excl = __shfl_up_sync(0xffffffffu, incl, 1);
    if (lane == 0) excl = T(0);
    __syncthreads();
    if (lane == 31) tot[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        T w = lane < n_warps ? tot[lane] : T(0);
        T wi = w;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const T n = __shfl_up_sync(0xffffffffu, wi, o);
            if (lane >= o) wi += n;
        }
        T we = __shfl_up_sync(0xffffffffu, wi, 1);
        if (lane == 0) we = T(0);
        __syncwarp();
        if (lane < n_warps) tot[lane] = we;
        if (lane == n_warps - 1) tot[32] = wi;
    }
    __syncthreads();
    total = tot[32];
    return tot[warp] + excl;
}

// One row's draw: row `row` of logits [.., N] with these choices; `key` is the row index the
// draw's uniform is keyed by (uniform_from_key(seed, counter, key)).
struct SampleArgs {
    Ptr logits;
    int64_t N;
    float temperature;
    int top_k;
    uint64_t seed;
    uint32_t counter;
    int32_t* out;  // this row's output
    bool round;
};

__device__ void sample_row(const SampleArgs& a, int m, uint32_t key) {
    __shared__ unsigned hist[256];
    __shared__ uint32_t sel[3];
    __shared__ float redf[32];
    __shared__ int redi_tot[33];
    __shared__ double redd_tot[33];
    __shared__ int list_idx[kListCap];
    __shared__ float list_v[kListCap];
    const int tid = threadIdx.x;
    const int64_t N = a.N, base = static_cast<int64_t>(m) * N;
    auto value = [&](int64_t n) { return rnd(a.logits.load(base + n) / a.temperature, a.round); };

    // 1. Threshold: the top_k-th largest value, counting ties (radix select over order keys).
    float thr = -INFINITY;
    if (a.top_k > 0 && a.top_k < N) {
        uint32_t prefix = 0, mask = 0, k = static_cast<uint32_t>(a.top_k);
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
            __syncthreads();
            for (int64_t n = tid; n < N; n += blockDim.x) {
                const uint32_t key = order_key(value(n));
                if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (tid == 0) {
                uint32_t above = 0;
                int bin = 0;
                for (int b = 255; b >= 0; --b) {
                    if (above + hist[b] >= k) {
                        bin = b;
                        break;
                    }
                    above += hist[b];
                }
                sel[0] = prefix | (static_cast<uint32_t>(bin) << shift);
                sel[1] = mask | (255u << shift);
                sel[2] = k - above;
            }
            __syncthreads();
            prefix = sel[0];
            mask = sel[1];
            k = sel[2];
            __syncthreads();
        }
        thr = key_value(prefix);
    }

    // 2. Max of the kept values; count of kept values per contiguous chunk of indices.
    const int64_t chunk = (N + blockDim.x - 1) / blockDim.x;
    const int64_t n0 = tid * chunk, n1 = min(N, n0 + chunk);
    float mx = -INFINITY;
    int cnt = 0;
    for (int64_t n = n0; n < n1; ++n) {
        const float v = value(n);
        if (v >= thr) {
            mx = fmaxf(mx, v);
            ++cnt;
        }
    }
    mx = block_max(mx, redf);
    int total = 0;
    const int offset = block_exclusive_scan(cnt, redi_tot, total);
    const float u01 = ops::uniform_from_key(a.seed, a.counter, key);

    if (total <= kListCap) {
        // 3a. Few candidates: gather them in index order and draw exactly as the CPU does.
        int o = offset;
        for (int64_t n = n0; n < n1; ++n) {
            const float v = value(n);
            if (v >= thr) {
                list_idx[o] = static_cast<int>(n);
                list_v[o] = v;
                ++o;
            }
        }
        __syncthreads();
        if (tid == 0) {
            double sum = 0.0;
            for (int i = 0; i < total; ++i) sum += exp(static_cast<double>(list_v[i] - mx));
            const double u = static_cast<double>(u01) * sum;
            double c = 0.0;
            int pick = -1;
            for (int i = 0; i < total; ++i) {
                c += exp(static_cast<double>(list_v[i] - mx));
                pick = list_idx[i];
                if (c > u) break;
            }
            *a.out = pick < 0 ? 0 : pick;
        }
        return;
    }
    // 3b. Many candidates: per-chunk sequential sums, scanned across the block in index order.
    double part = 0.0;
    int last = -1;
    for (int64_t n = n0; n < n1; ++n) {
        const float v = value(n);
        if (v >= thr) {
            part += exp(static_cast<double>(v - mx));
            last = static_cast<int>(n);
        }
    }
    double sum = 0.0;
    const double start = block_exclusive_scan(part, redd_tot, sum);
    const double u = static_cast<double>(u01) * sum;
    int cand = INT_MAX;
    double c = start;
    for (int64_t n = n0; n < n1 && cand == INT_MAX; ++n) {
        const float v = value(n);
        if (v >= thr) {
            c += exp(static_cast<double>(v - mx));
            if (c > u) cand = static_cast<int>(n);
        }
    }
    // First crossing over the block, else the last kept index (the CPU's fall-through).
    __shared__ int wmin[32], wmax[32];
    int cmin = cand, lmax = last;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        cmin = min(cmin, __shfl_xor_sync(0xffffffffu, cmin, o));
        lmax = max(lmax, __shfl_xor_sync(0xffffffffu, lmax, o));
    }
    if ((tid & 31) == 0) {
        wmin[tid >> 5] = cmin;
        wmax[tid >> 5] = lmax;
    }
    __syncthreads();
    if (tid == 0) {
        int best = INT_MAX, lastk = -1;
        for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) {
            best = min(best, wmin[w]);
            lastk = max(lastk, wmax[w]);
        }
        const int pick = best != INT_MAX ? best : lastk;
        *a.out = pick < 0 ? 0 : pick;
    }
}

__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(Ptr logits, int64_t N, float temperature, int top_k, uint64_t seed, const int32_t* counter,
                  int32_t* out, bool round) {
    const int m = blockIdx.x;
    const SampleArgs a{logits, N, temperature, top_k, seed, static_cast<uint32_t>(counter[0]), out + m, round};
    sample_row(a, m, static_cast<uint32_t>(m));
}

// Row m of a batch by its own entry of table [B, 4] (ops::upload_sample_rows): forbid, then argmax
// or its own draw, keyed as row 0 (as sample_top_k of that row alone).
__global__ void __launch_bounds__(kSampleThreads)
    sample_rows_kernel(Ptr logits, int64_t N, const int64_t* table, int counter_index, int32_t* out, bool round) {
    const int m = blockIdx.x;
    const int64_t* e = table + 4 * static_cast<int64_t>(m);
    const uint64_t tk = static_cast<uint64_t>(e[0]);
    const float temperature = __uint_as_float(static_cast<uint32_t>(tk));
    const int top_k = static_cast<int>(static_cast<uint32_t>(tk >> 32));
    const int64_t base = static_cast<int64_t>(m) * N, forbid = e[3];
    if (forbid >= 0) {
        if (threadIdx.x == 0) logits.store(base + forbid, -INFINITY, false);
        __syncthreads();
    }
    if (temperature <= 0.0f || top_k == 1) {
        argmax_row(logits, base, N, out + m);
        return;
    }
    const int32_t* counters = reinterpret_cast<const int32_t*>(e[2]);
    const SampleArgs a{logits, N, temperature, top_k, static_cast<uint64_t>(e[1]),
                       static_cast<uint32_t>(counters[counter_index]), out + m, round};
    sample_row(a, m, 0u);
}

}  // namespace

void argmax(const ops::Context& ctx, const Tensor& logits, Tensor& out) {
    const int64_t M = rows_of(logits), N = cols_of(logits);
    if (M == 0) return;
    VOXRT_ASSERT(N < INT_MAX, "argmax: row of %lld", static_cast<long long>(N));
    argmax_kernel<<<static_cast<unsigned>(M), kArgmaxThreads, 0, stream_of(ctx)>>>(ptr_of(logits), N,
                                                                                  static_cast<int32_t*>(out.data));
    check_launch(ctx, "argmax");
}

// Identical draws to the CPU for identical logits: with at most 2048 candidates (any top_k <= 2048
// without massive ties) the draw is the CPU's own sequential double sum. Beyond that the sums are
// taken per chunk and scanned, which can differ from the CPU in the last bits of a double, i.e. a
// different pick only when the draw lands within ~1e-16 of a boundary. CUDA's double exp() may
// also differ from glibc's by one ulp, with the same consequence.
void sample_top_k(const ops::Context& ctx, const Tensor& logits, float temperature, int top_k, uint64_t seed,
                  const Tensor& counter, Tensor& out) {
    const int64_t M = rows_of(logits), N = cols_of(logits);
    if (M == 0) return;
    VOXRT_ASSERT(N < INT_MAX, "sample_top_k: row of %lld", static_cast<long long>(N));
    sample_kernel<<<static_cast<unsigned>(M), kSampleThreads, 0, stream_of(ctx)>>>(
        ptr_of(logits), N, temperature, top_k, seed, static_cast<const int32_t*>(counter.data),
        static_cast<int32_t*>(out.data), ctx.round_bf16());
    check_launch(ctx, "sample_top_k");
}

bool sample_rows(const ops::Context& ctx, Tensor& logits, const Tensor& table, int counter_index, Tensor& out) {
    const int64_t M = rows_of(logits), N = cols_of(logits);
    if (N >= INT_MAX) return false;
    if (M == 0) return true;
    sample_rows_kernel<<<static_cast<unsigned>(M), kSampleThreads, 0, stream_of(ctx)>>>(
        ptr_of(logits), N, static_cast<const int64_t*>(table.data), counter_index,
        static_cast<int32_t*>(out.data), ctx.round_bf16());
    check_launch(ctx, "sample_rows");
    return true;
}

}  // namespace voxrt::cuda
