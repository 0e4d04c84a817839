// CUDA implementations of the FastConformer encoder ops (semantics in ops/conformer_ops.h; the CPU
// versions in backend/cpu/conformer_ops.cpp are the reference). Simple one-thread-per-output
// kernels: the encoder runs once per audio segment and its time goes to the GEMMs (ops::linear).
// Activations are F32 or BF16 (Ptr); small parameters are F32. Accumulation is fp32.
#include "backend/cuda/common.cuh"
#include "ops/conformer_ops.h"

namespace voxrt::cuda {

namespace {

constexpr int kThreads = 256;

// Valid length after a kernel-3, stride-2, padding-1 convolution: (L + 2 - 3) // 2 + 1.
__host__ __device__ inline int64_t next_valid(int64_t len) { return (len + 1) / 2; }

__device__ inline float silu(float v) { return v / (1.0f + expf(-v)); }

// y[to, fo, c] = relu(round(Σ_{dt,df} w[c, 3dt+df] · x(2to-1+dt, 2fo-1+df) + b[c]))
// with x(t, f) = round(mel[f, t]) inside [0, t_valid) × [0, F), else 0.
// Output rows y_row0 … y_row0+rows-1.
__global__ void subsample_conv_in_kernel(const float* mel, int64_t F, int64_t T, int64_t t_valid,
                                         const float* w, const float* b, Ptr y, int64_t rows,
                                         int64_t y_row0, int64_t F1, int64_t C, bool round) {
    const int64_t n = rows * F1 * C, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    const int64_t t1_valid = next_valid(t_valid);
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const int64_t c = i % C, fo = (i / C) % F1, to = y_row0 + i / (C * F1);
        if (to >= t1_valid) {
            y.store(i, 0.0f, round);
            continue;
        }
        float acc = 0.0f;
        for (int dt = 0; dt < 3; ++dt) {
            const int64_t t = 2 * to - 1 + dt;
            if (t < 0 || t >= t_valid) continue;
            for (int df = 0; df < 3; ++df) {
                const int64_t f = 2 * fo - 1 + df;
                if (f < 0 || f >= F) continue;
                acc = fmaf(w[c * 9 + dt * 3 + df], rnd(mel[f * T + t], round), acc);
            }
        }
        y.store(i, fmaxf(rnd(acc + b[c], round), 0.0f), round);
    }
}

// Depthwise 3×3 stride 2: x holds input rows x_row0 …, y output rows y_row0 … (global indices);
// input rows >= t_valid read as 0.
__global__ void subsample_dw_conv_kernel(Ptr x, int64_t x_row0, int64_t F, int64_t t_valid,
                                         const float* w, const float* b, Ptr y, int64_t rows,
                                         int64_t y_row0, int64_t F2, int64_t C, bool round) {
    const int64_t n = rows * F2 * C, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    const int64_t t2_valid = next_valid(t_valid);
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const int64_t c = i % C, fo = (i / C) % F2, to = y_row0 + i / (C * F2);
        if (to >= t2_valid) {
            y.store(i, 0.0f, round);
            continue;
        }
        float acc = 0.0f;
        for (int dt = 0; dt < 3; ++dt) {
            const int64_t t = 2 * to - 1 + dt;
            if (t < 0 || t >= t_valid) continue;
            for (int df = 0; df < 3; ++df) {
                const int64_t f = 2 * fo - 1 + df;
                if (f < 0 || f >= F) continue;
                acc = fmaf(w[c * 9 + dt * 3 + df], x.load(((t - x_row0) * F + f) * C + c), acc);
            }
        }
        y.store(i, acc + b[c], round);
    }
}

// y[t, c·F + f] = x[t, f, c] (0 for t >= t_valid).
__global__ void subsample_flatten_kernel(Ptr x, int64_t T, int64_t F, int64_t C, int64_t t_valid,
                                         Ptr y, bool round) {
    const int64_t n = T * C * F, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const int64_t f = i % F, c = (i / F) % C, t = i / (F * C);
        y.store(i, t < t_valid ? x.load((t * F + f) * C + c) : 0.0f, round);
    }
}

__global__ void rel_pos_embed_kernel(const float* src, int64_t n, bool round_table, Ptr y,
                                     bool round) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride)
        y.store(i, round_table ? round_bf16(src[i]) : src[i], round);
}

// One block per (query row i, head h). Dynamic shared memory: scores [T], qu [Dk], qv [Dk].
// Scores: a warp per key position at a time, its lanes over the head dimension (the key and
// position rows are read whole by a warp, not one element per thread from a different row each),
// four positions' loads issued together.
constexpr int kRelPosThreads = 128;
__global__ void __launch_bounds__(kRelPosThreads) rel_pos_attention_kernel(Ptr q, Ptr k, Ptr v, Ptr p, const float* bias_u,
                                         const float* bias_v, Ptr out, int64_t T, int64_t D,
                                         int64_t Dk, float s_d_k, bool round) {
    extern __shared__ float smem[];
    __shared__ float red[32];
    float* scores = smem;
    float* qu = smem + T;
    float* qv = qu + Dk;
    const int64_t i = blockIdx.x, h = blockIdx.y;
    for (int64_t d = threadIdx.x; d < Dk; d += blockDim.x) {
        const float qd = q.load(i * D + h * Dk + d);
        qu[d] = rnd(qd + bias_u[h * Dk + d], round);
        qv[d] = rnd(qd + bias_v[h * Dk + d], round);
    }
    __syncthreads();
    // scores: s = round(round(round(ac) + round(bd)) / sqrt(Dk)), bd from the rel_shift-ed row.
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    constexpr int kJ = 4;  // positions per warp per round
    float mx = -INFINITY;
    for (int64_t j0 = static_cast<int64_t>(warp) * kJ; j0 < T; j0 += static_cast<int64_t>(n_warps) * kJ) {
        float ac[kJ], bd[kJ];
#pragma unroll
        for (int u = 0; u < kJ; ++u) {
            ac[u] = 0.0f;
            bd[u] = 0.0f;
        }
        for (int64_t d = lane; d < Dk; d += 32) {
            float kv[kJ], pv[kJ];
#pragma unroll
            for (int u = 0; u < kJ; ++u) {
                const int64_t j = j0 + u < T ? j0 + u : T - 1;
                kv[u] = k.load(j * D + h * Dk + d);
                pv[u] = p.load((T - 1 - i + j) * D + h * Dk + d);
            }
#pragma unroll
            for (int u = 0; u < kJ; ++u) {
                ac[u] = fmaf(qu[d], kv[u], ac[u]);
                bd[u] = fmaf(qv[d], pv[u], bd[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < kJ; ++u) {
            const float a = warp_sum(ac[u]), b = warp_sum(bd[u]);
            if (j0 + u < T) {
                const float s = rnd(rnd(rnd(a, round) + rnd(b, round), round) / s_d_k, round);
                if (lane == 0) scores[j0 + u] = s;
                mx = fmaxf(mx, s);
            }
        }
    }
    mx = block_max(mx, red);  // also orders the scores writes before the reads below
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < T; j += blockDim.x) {
        const float e = expf(scores[j] - mx);
        scores[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red);  // also orders the scores writes before the reads below
    const float inv = 1.0f / sum;
    for (int64_t j = threadIdx.x; j < T; j += blockDim.x) scores[j] = rnd(scores[j] * inv, round);
    __syncthreads();
    for (int64_t d = threadIdx.x; d < Dk; d += blockDim.x) {
        float acc = 0.0f;
#pragma unroll 8
        for (int64_t j = 0; j < T; ++j) acc = fmaf(scores[j], v.load(j * D + h * Dk + d), acc);
        out.store(i * D + h * Dk + d, acc, round);
    }
}

// y[t, c] = round(silu(round(round(Σ_k w[c,k]·x[t+k-pad, c] + b[c]) · scale[c] + shift[c])))
__global__ void conv_dw_bn_silu_kernel(Ptr x, const float* w, const float* b, const float* scale,
                                       const float* shift, Ptr y, int64_t T, int64_t C, int K,
                                       bool round) {
    const int64_t n = T * C, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    const int pad = (K - 1) / 2;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const int64_t c = i % C, t = i / C;
        float acc = 0.0f;
        for (int kk = 0; kk < K; ++kk) {
            const int64_t ts = t + kk - pad;
            if (ts >= 0 && ts < T) acc = fmaf(w[c * K + kk], x.load(ts * C + c), acc);
        }
        const float dv = rnd(acc + b[c], round);
        const float nv = rnd(dv * scale[c] + shift[c], round);
        y.store(i, silu(nv), round);
    }
}

const float* f32(const Tensor& t) { return static_cast<const float*>(t.data); }

}  // namespace

void subsample_conv_in(const ops::Context& ctx, const Tensor& mel, int64_t t_valid, const Tensor& w,
                       const Tensor& b, Tensor& y, int64_t y_row0) {
    const int64_t F = mel.shape[0], T = mel.shape[1];
    const int64_t rows = y.shape[0], F1 = y.shape[1], C = y.shape[2];
    const int64_t n = rows * F1 * C;
    if (n == 0) return;
    subsample_conv_in_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(ctx)>>>(
        f32(mel), F, T, t_valid, f32(w), f32(b), ptr_of(y), rows, y_row0, F1, C, ctx.round_bf16());
    check_launch(ctx, "subsample_conv_in");
}

void subsample_dw_conv(const ops::Context& ctx, const Tensor& x, int64_t x_row0, int64_t t_valid,
                       const Tensor& w, const Tensor& b, Tensor& y, int64_t y_row0) {
    const int64_t F = x.shape[1], C = x.shape[2], rows = y.shape[0], F2 = y.shape[1];
    const int64_t n = rows * F2 * C;
    if (n == 0) return;
    subsample_dw_conv_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(ctx)>>>(
        ptr_of(x), x_row0, F, t_valid, f32(w), f32(b), ptr_of(y), rows, y_row0, F2, C,
        ctx.round_bf16());
    check_launch(ctx, "subsample_dw_conv");
}

void subsample_flatten(const ops::Context& ctx, const Tensor& x, int64_t t_valid, Tensor& y) {
    const int64_t T = x.shape[0], F = x.shape[1], C = x.shape[2], n = T * F * C;
    if (n == 0) return;
    subsample_flatten_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(ctx)>>>(
        ptr_of(x), T, F, C, t_valid, ptr_of(y), ctx.round_bf16());
    check_launch(ctx, "subsample_flatten");
}

void rel_pos_embed(const ops::Context& ctx, const Tensor& table, int64_t T, bool round_table,
                   Tensor& y) {
    const int64_t D = table.shape[1], P = (table.shape[0] + 1) / 2, n = (2 * T - 1) * D;
    rel_pos_embed_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(ctx)>>>(
        f32(table) + (P - T) * D, n, round_table, ptr_of(y), ctx.round_bf16());
    check_launch(ctx, "rel_pos_embed");
}

void rel_pos_attention(const ops::Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& p, const Tensor& pos_bias_u, const Tensor& pos_bias_v,
                       int n_heads, Tensor& out) {
    const int64_t T = q.shape[0], D = q.shape[1], Dk = D / n_heads;
    if (T == 0) return;
    const size_t smem = static_cast<size_t>(T + 2 * Dk) * sizeof(float);
    if (smem > 48 * 1024) {
        // Past the default limit (T > ~12000 frames, far beyond the encoder's 3750): opt in.
        if (!check(ctx,
                   cudaFuncSetAttribute(rel_pos_attention_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)),
                   "cudaFuncSetAttribute(rel_pos_attention)"))
            return;
    }
    const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(n_heads));
    const float s_d_k = static_cast<float>(sqrt(static_cast<double>(Dk)));
    rel_pos_attention_kernel<<<grid, kRelPosThreads, smem, stream_of(ctx)>>>(
        ptr_of(q), ptr_of(k), ptr_of(v), ptr_of(p), f32(pos_bias_u), f32(pos_bias_v), ptr_of(out),
        T, D, Dk, s_d_k, ctx.round_bf16());
    check_launch(ctx, "rel_pos_attention");
}

void conv_dw_bn_silu(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                     const Tensor& bn_scale, const Tensor& bn_shift, Tensor& y) {
    const int64_t T = x.shape[0], C = x.shape[1], n = T * C;
    if (n == 0) return;
    conv_dw_bn_silu_kernel<<<grid_for(n, kThreads), kThreads, 0, stream_of(ctx)>>>(
        ptr_of(x), f32(w), f32(b), f32(bn_scale), f32(bn_shift), ptr_of(y), T, C,
        static_cast<int>(w.shape[1]), ctx.round_bf16());
    check_launch(ctx, "conv_dw_bn_silu");
}

}  // namespace voxrt::cuda
