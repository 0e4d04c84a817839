// CUDA embedding lookups (ids read on the device).
#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"

namespace voxrt::cuda {

namespace {

// y[n, :] = table[clamp(ids[n])]: values copied exactly (BF16 storage of an F32 table rounds).
__global__ void embedding_kernel(Ptr table, const int32_t* ids, Ptr y, int64_t V, int64_t D) {
    const int64_t n = blockIdx.x;
    int64_t id = ids[n];
    id = id < 0 ? 0 : (id >= V ? V - 1 : id);
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) y.store(n * D + d, table.load(id * D + d), false);
}

// y[n, :] = Σ_q table[clamp(ids[n, q] + q·stride)] in fp32 (q in order), divided by Q if mean,
// rounded once.
__global__ void embedding_bag_kernel(Ptr table, const int32_t* ids, Ptr y, int64_t V, int64_t D, int64_t Q,
                                     int64_t stride, bool mean, bool round) {
    const int64_t n = blockIdx.x;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float s = 0.0f;
        for (int64_t q = 0; q < Q; ++q) {
            int64_t id = ids[n * Q + q] + q * stride;
            id = id < 0 ? 0 : (id >= V ? V - 1 : id);
            s += table.load(id * D + d);
        }
        y.store(n * D + d, mean ? s / static_cast<float>(Q) : s, round);
    }
}

int threads_for(int64_t D) { return D >= 1024 ? 256 : 128; }

}  // namespace

void embedding(const ops::Context& ctx, const Tensor& table, const Tensor& ids, Tensor& y) {
    const int64_t N = ids.numel(), V = table.shape[0], D = table.shape[1];
    if (N == 0) return;
    embedding_kernel<<<static_cast<unsigned>(N), threads_for(D), 0, stream_of(ctx)>>>(
        ptr_of(table), static_cast<const int32_t*>(ids.data), ptr_of(y), V, D);
    check_launch(ctx, "embedding");
}

void embedding_bag(const ops::Context& ctx, const Tensor& table, const Tensor& ids, int64_t stride, bool mean,
                   Tensor& y) {
    const int64_t N = ids.shape[0], Q = ids.shape[1], V = table.shape[0], D = table.shape[1];
    if (N == 0) return;
    embedding_bag_kernel<<<static_cast<unsigned>(N), threads_for(D), 0, stream_of(ctx)>>>(
        ptr_of(table), static_cast<const int32_t*>(ids.data), ptr_of(y), V, D, Q, stride, mean, ctx.round_bf16());
    check_launch(ctx, "embedding_bag");
}

}  // namespace voxrt::cuda
