// Cost of the persistent kernels' grid barrier (persistent.cuh), for tests/cuda/fused_cuda_test.cpp:
// one cooperative launch of 512-thread blocks, one per SM, doing nothing but `iters` barriers.
#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/persistent.cuh"

namespace voxrt::cuda {

namespace {

struct BenchArgs {
    unsigned* bar;
    int mode;
    int iters;
};

__global__ void __launch_bounds__(512, 1) barrier_bench_kernel(const BenchArgs a) {
    unsigned gen = 0;
    for (int i = 0; i < a.iters; ++i) persistent::grid_barrier(a.bar, a.mode, gen);
}

}  // namespace

double grid_barrier_bench_us(const ops::Context& ctx, int mode, int iters) {
    Handles& h = handles(ctx);
    if (h.scratch_bytes < persistent::kBarrierBytes || iters < 1) return -1.0;
    BenchArgs a{static_cast<unsigned*>(h.scratch), mode, iters};
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    if (cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess) return -1.0;
    double us = -1.0;
    // Warm-up launch, then the timed one.
    if (persistent::launch_persistent(ctx, barrier_bench_kernel, a, a.bar, 512, 0, "barrier bench") &&
        cudaEventRecord(e0, h.stream) == cudaSuccess &&
        persistent::launch_persistent(ctx, barrier_bench_kernel, a, a.bar, 512, 0, "barrier bench") &&
        cudaEventRecord(e1, h.stream) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess) us = 1000.0 * ms / iters;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return us;
}

}  // namespace voxrt::cuda
