// CUDA RMSNorm (both reference flavours) and LayerNorm: one block per row.
#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"

namespace voxrt::cuda {

namespace {

int norm_threads(int64_t D) { return D >= 2048 ? 256 : D >= 512 ? 128 : 64; }

__global__ void rms_norm_kernel(Ptr x, Ptr w, Ptr y, int64_t D, float eps, bool lfm2, bool round) {
    __shared__ float red[32];
    const int64_t base = static_cast<int64_t>(blockIdx.x) * D;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        const float v = x.load(base + i);
        ss = fmaf(v, v, ss);
    }
    ss = block_sum(ss, red);  // all reads of x in this row are done once this returns (y may alias x)
    // torch: x * torch.rsqrt(mean + eps) in fp32; 1/sqrtf is correctly rounded here, like the CPU's.
    const float r = 1.0f / sqrtf(ss / static_cast<float>(D) + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        const float v = x.load(base + i);
        const float o = lfm2 ? w.load(i) * rnd(v * r, round) : v * r * w.load(i);
        y.store(base + i, o, round);
    }
}

__global__ void layer_norm_kernel(Ptr x, Ptr w, Ptr b, Ptr y, int64_t D, float eps, bool round) {
    __shared__ double red[32];
    const int64_t base = static_cast<int64_t>(blockIdx.x) * D;
    // Two passes in double, as the CPU reference does.
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) s += x.load(base + i);
    const double mean = block_sum(s, red) / static_cast<double>(D);
    double v = 0.0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        const double d = x.load(base + i) - mean;
        v += d * d;
    }
    const double var = block_sum(v, red) / static_cast<double>(D);
    const float inv = static_cast<float>(1.0 / sqrt(var + eps));
    const float mu = static_cast<float>(mean);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        const float o = (x.load(base + i) - mu) * inv * w.load(i) + b.load(i);
        y.store(base + i, o, round);
    }
}

}  // namespace

void rms_norm(const ops::Context& ctx, const Tensor& x, const Tensor& w, float eps, ops::RmsStyle style, Tensor& y) {
    const int64_t M = rows_of(x), D = cols_of(x);
    if (M == 0) return;
    rms_norm_kernel<<<grid_for(M, 1, 1LL << 31), norm_threads(D), 0, stream_of(ctx)>>>(
        ptr_of(x), ptr_of(w), ptr_of(y), D, eps, style == ops::RmsStyle::kLfm2, ctx.round_bf16());
    check_launch(ctx, "rms_norm");
}

void layer_norm(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b, float eps, Tensor& y) {
    const int64_t M = rows_of(x), D = cols_of(x);
    if (M == 0) return;
    layer_norm_kernel<<<grid_for(M, 1, 1LL << 31), norm_threads(D), 0, stream_of(ctx)>>>(
        ptr_of(x), ptr_of(w), ptr_of(b), ptr_of(y), D, eps, ctx.round_bf16());
    check_launch(ctx, "layer_norm");
}

}  // namespace voxrt::cuda
