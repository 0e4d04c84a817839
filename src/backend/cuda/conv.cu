// CUDA causal depthwise short convolution with carried state (LFM2 ShortConv).
//
// Decode-sized inputs (T <= 8) run one thread per channel over the time steps, keeping the last
// K-1 inputs in registers, which also makes y == x (aliasing) safe. Longer inputs run one thread
// per (t, c) output reading x directly; when y aliases x, x is first copied to the context scratch
// (and if it does not fit, the per-channel kernel is used).
#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"

namespace voxrt::cuda {

namespace {

constexpr int kMaxK = 8;

// y[t,c] = Σ_k w[c,k]·xe[t+k,c] with xe = [state; x], one fp32 sum in k order, rounded once;
// state <- last K-1 rows of xe.
__global__ void short_conv_seq_kernel(Ptr x, Ptr w, Ptr state, Ptr y, int64_t T, int64_t C, int K, bool round) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int Ks = K - 1;
    float win[kMaxK], wc[kMaxK];
    const float w_last = w.load(c * K + Ks);  // weight of the newest input
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) {
        wc[k] = k < K ? w.load(c * K + k) : 0.0f;
        win[k] = k < Ks ? state.load(k * C + c) : 0.0f;
    }
    for (int64_t t = 0; t < T; ++t) {
        const float xv = x.load(t * C + c);
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < kMaxK; ++k) {
            if (k < Ks) s = fmaf(wc[k], win[k], s);
        }
        s = fmaf(w_last, xv, s);
        y.store(t * C + c, s, round);
#pragma unroll
        for (int k = 0; k + 1 < kMaxK; ++k)
            if (k + 1 < Ks) win[k] = win[k + 1];
#pragma unroll
        for (int k = 0; k < kMaxK; ++k)
            if (k == Ks - 1) win[k] = xv;
    }
#pragma unroll
    for (int k = 0; k < kMaxK; ++k)
        if (k < Ks) state.store(k * C + c, win[k], false);
}

__global__ void short_conv_par_kernel(Ptr x, Ptr w, Ptr state, Ptr y, int64_t T, int64_t C, int K, bool round) {
    const int64_t n = T * C, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    const int Ks = K - 1;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int64_t t = i / C, c = i - t * C;
        float s = 0.0f;
        for (int k = 0; k < K; ++k) {
            const int64_t r = t + k;  // row of xe
            const float v = r < Ks ? state.load(r * C + c) : x.load((r - Ks) * C + c);
            s = fmaf(w.load(c * K + k), v, s);
        }
        y.store(i, s, round);
    }
}

// state[r] <- xe[T + r] for r < K-1, in increasing r (reads row T + r > r: safe in place).
__global__ void short_conv_state_kernel(Ptr x, Ptr state, int64_t T, int64_t C, int K) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int Ks = K - 1;
    for (int r = 0; r < Ks; ++r) {
        const int64_t e = T + r;
        const float v = e < Ks ? state.load(e * C + c) : x.load((e - Ks) * C + c);
        state.store(r * C + c, v, false);
    }
}

// One decode position for each row b of x [B, C], with row b's own state at rows[b] ([K-1, C]):
// short_conv_seq_kernel's arithmetic for T = 1.
__global__ void short_conv_rows_kernel(Ptr x, Ptr w, const int64_t* rows, bool state_bf16, Ptr y, int64_t C, int K,
                                       bool round) {
    const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t b = blockIdx.y;
    if (c >= C) return;
    const Ptr state{reinterpret_cast<void*>(rows[b]), state_bf16};
    const int Ks = K - 1;
    const float xv = x.load(b * C + c);
    float win[kMaxK];
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) win[k] = k < Ks ? state.load(k * C + c) : 0.0f;
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxK; ++k)
        if (k < Ks) s = fmaf(w.load(c * K + k), win[k], s);
    s = fmaf(w.load(c * K + Ks), xv, s);
    y.store(b * C + c, s, round);
#pragma unroll
    for (int k = 0; k < kMaxK; ++k) {
        if (k + 1 < Ks) state.store(k * C + c, win[k + 1], false);
        if (k == Ks - 1) state.store(k * C + c, xv, false);
    }
}

}  // namespace

void short_conv(const ops::Context& ctx, const Tensor& x, const Tensor& w, Tensor& state, const Tensor& /*pos*/,
                Tensor& y) {
    const int64_t T = x.shape[0], C = x.shape[1];
    const int K = static_cast<int>(w.numel() / C);
    VOXRT_ASSERT(K >= 1 && K <= kMaxK, "short_conv: kernel size %d (at most %d supported)", K, kMaxK);
    if (T == 0 || C == 0) return;
    const Handles& h = handles(ctx);
    const bool aliased = x.data == y.data;
    const bool fits = x.nbytes() <= h.scratch_bytes;
    const unsigned ch_blocks = grid_for(C, 128, 1LL << 31);
    if (T <= 8 || (aliased && !fits)) {
        short_conv_seq_kernel<<<ch_blocks, 128, 0, h.stream>>>(ptr_of(x), ptr_of(w), ptr_of(state), ptr_of(y), T,
                                                               C, K, ctx.round_bf16());
        check_launch(ctx, "short_conv");
        return;
    }
    Ptr xs = ptr_of(x);
    if (aliased) {
        if (!check(ctx, cudaMemcpyAsync(h.scratch, x.data, x.nbytes(), cudaMemcpyDeviceToDevice, h.stream),
                   "cudaMemcpyAsync (short_conv staging)"))
            return;
        xs.p = h.scratch;
    }
    short_conv_par_kernel<<<grid_for(T * C, 256), 256, 0, h.stream>>>(xs, ptr_of(w), ptr_of(state), ptr_of(y), T, C,
                                                                       K, ctx.round_bf16());
    short_conv_state_kernel<<<ch_blocks, 128, 0, h.stream>>>(xs, ptr_of(state), T, C, K);
    check_launch(ctx, "short_conv");
}

bool short_conv_rows(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor& table, DType state_dtype,
                     Tensor& y) {
    const int64_t B = x.shape[0], C = x.shape[1];
    const int K = static_cast<int>(w.numel() / C);
    if (K < 1 || K > kMaxK || B > 65535 || (state_dtype != DType::kBF16 && state_dtype != DType::kF32)) return false;
    if (B == 0 || C == 0) return true;
    const dim3 grid(grid_for(C, 128, 1LL << 31), static_cast<unsigned>(B));
    short_conv_rows_kernel<<<grid, 128, 0, stream_of(ctx)>>>(ptr_of(x), ptr_of(w),
                                                             static_cast<const int64_t*>(table.data),
                                                             state_dtype == DType::kBF16, ptr_of(y), C, K,
                                                             ctx.round_bf16());
    check_launch(ctx, "short_conv_rows");
    return true;
}

}  // namespace voxrt::cuda
