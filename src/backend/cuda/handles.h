// Host-side internals of the CUDA backend: its entry points (backend/entry_points.h), what
// ctx.backend_state of a CUDA context points to, and the error helpers that turn CUDA / cuBLAS
// return codes into Status. Included by the backend's .cpp and .cu files; never by model code.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "backend/entry_points.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace voxrt::cuda {

// Every entry point of backend/entry_points.h (defined in this folder).
VOXRT_DECLARE_BACKEND_ENTRY_POINTS

// Microseconds per grid barrier of the persistent kernels (mode: persistent.cuh BarrierMode), from
// one launch doing `iters` barriers; < 0 on failure. For tests and tuning.
double grid_barrier_bench_us(const ops::Context& ctx, int mode, int iters);

#ifdef VOXRT_KERNEL_PHASE_STAMPS
// Built by the kernel sandbox (bench/kernels, -DVOXRT_KERNEL_PHASE_STAMPS=ON) only: every launch
// of the persistent kernels stamps its phases (block 0), and these read the last launch's stamps
// back (synchronizing the context's stream).
std::string depthformer_profile_report(const ops::Context& ctx);
std::string lfm2_step_profile_report(const ops::Context& ctx);
#endif

struct LtPlanCache;  // cuBLASLt descriptors + chosen algorithms per GEMM shape (linear.cu)

// Everything a CUDA ops::Context owns. Ops on one context run in issue order on `stream`, so the
// scratch and the GEMM workspace are never used by two ops at once.
struct Handles {
    int device = 0;
    int sm_count = 0;
    // Blocks of a persistent (cooperative, one block per SM) kernel: sm_count less the SMs left to
    // other streams (ContextOptions::gpu.reserve_sms).
    int persistent_blocks = 0;
    bool l2_prefetch = false;   // ContextOptions::gpu.l2_prefetch (lfm2_step.cu)
    size_t max_smem_optin = 0;  // per-block shared memory after cudaFuncSetAttribute
    cudaStream_t stream = nullptr;
    cublasHandle_t cublas = nullptr;
    cublasLtHandle_t lt = nullptr;
    void* gemm_workspace = nullptr;
    size_t gemm_workspace_bytes = 0;
    void* scratch = nullptr;
    size_t scratch_bytes = 0;
    LtPlanCache* lt_plans = nullptr;
    // Zeroed once at creation and owned by the persistent kernels between their launches (their
    // tagged exchange words and tag counters: depthformer.cu below 1 MB, lfm2_step.cu above); no
    // other op touches it.
    void* exchange = nullptr;
    size_t exchange_bytes = 0;

    // upload_async's page-locked staging area (allocated at first use): bytes [0, upload_used)
    // hold sources of copies that may still be queued; synchronize() frees them all.
    void* upload_ring = nullptr;
    size_t upload_bytes = 0;
    size_t upload_used = 0;

    // First failure recorded by an op since the last synchronize(); returned (and cleared) there.
    std::mutex error_mu;
    Status first_error;
};

// The handles of a CUDA context, ctx.backend_state (asserts that ctx is one).
Handles& handles(const ops::Context& ctx);

// Graph capture against device-synchronizing calls. cudaFree, cudaFreeHost, cudaMalloc(Host), stream
// and handle creation and cuFFT plans may synchronize the whole device, and a synchronization that
// reaches a stream being captured invalidates that capture, whichever thread asked for it (seen as
// cudaErrorStreamCaptureInvalidated when sessions on several threads share a GPU). A capture holds
// this lock shared from graph_begin to graph_end; those calls hold it exclusively.
std::shared_mutex& capture_guard();
// The context's stream; the legacy default stream for a context without handles (e.g. a CPU
// context passed to copy() with a device tensor).
cudaStream_t stream_of(const ops::Context& ctx);

// Status for a CUDA runtime / cuBLAS return code, naming the call. Allocation failures map to
// kOutOfMemory, the rest to kDevice.
Status cuda_status(cudaError_t err, const char* call);
Status cublas_status(cublasStatus_t err, const char* call);

// Records a failure on the context (the first one wins) so that synchronize() can return it.
void record_error(const ops::Context& ctx, Status status);
// Checks `err`; on failure records it (naming `call`) and returns false.
bool check(const ops::Context& ctx, cudaError_t err, const char* call);
bool check(const ops::Context& ctx, cublasStatus_t err, const char* call);
// Checks for a failed kernel launch (cudaGetLastError) after launching kernels of `op`.
void check_launch(const ops::Context& ctx, const char* op);

// Frees the cuBLASLt plan cache (linear.cu).
void destroy_lt_plans(LtPlanCache* cache);

}  // namespace voxrt::cuda
