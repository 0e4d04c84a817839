// The CUDA backend's device entry points (contexts, the device allocator, error recording,
// synchronize(), graph capture, NVTX ranges) and its entry-point table.
#include <cuda_runtime.h>
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "backend/cuda/handles.h"
#include "backend/device.h"
#include "backend/entry_points.h"
#include "core/check.h"

namespace voxrt::cuda {

namespace {

// Failures of ops issued with a context that has no handles (a CPU context passed to copy() with
// a device tensor); reported by the next synchronize() of such a context.
std::mutex g_orphan_mu;
Status g_orphan_error;

}  // namespace

std::shared_mutex& capture_guard() {
    static std::shared_mutex mu;
    return mu;
}

Handles& handles(const ops::Context& ctx) {
    VOXRT_ASSERT(ctx.device == Device::kCUDA && ctx.backend_state != nullptr,
                 "CUDA op called with a context that is not a CUDA context (device %s)",
                 device_name(ctx.device));
    return *static_cast<Handles*>(ctx.backend_state);
}

cudaStream_t stream_of(const ops::Context& ctx) {
    return ctx.backend_state ? static_cast<Handles*>(ctx.backend_state)->stream : cudaStream_t{};
}

Status cuda_status(cudaError_t err, const char* call) {
    if (err == cudaSuccess) return Status::ok();
    const StatusCode code = err == cudaErrorMemoryAllocation ? StatusCode::kOutOfMemory : StatusCode::kDevice;
    return make_error(code, "[cuda] %s: %s (%s)", call, cudaGetErrorString(err), cudaGetErrorName(err));
}

Status cublas_status(cublasStatus_t err, const char* call) {
    if (err == CUBLAS_STATUS_SUCCESS) return Status::ok();
    const StatusCode code = err == CUBLAS_STATUS_ALLOC_FAILED ? StatusCode::kOutOfMemory : StatusCode::kDevice;
    return make_error(code, "[cuda] %s: %s (%s)", call, cublasGetStatusString(err), cublasGetStatusName(err));
}

void record_error(const ops::Context& ctx, Status status) {
    if (status.is_ok()) return;
    if (ctx.backend_state) {
        Handles& h = *static_cast<Handles*>(ctx.backend_state);
        std::lock_guard<std::mutex> lock(h.error_mu);
        if (h.first_error.is_ok()) h.first_error = std::move(status);
    } else {
        std::lock_guard<std::mutex> lock(g_orphan_mu);
        if (g_orphan_error.is_ok()) g_orphan_error = std::move(status);
    }
}

bool check(const ops::Context& ctx, cudaError_t err, const char* call) {
    if (err == cudaSuccess) return true;
    record_error(ctx, cuda_status(err, call));
    return false;
}

bool check(const ops::Context& ctx, cublasStatus_t err, const char* call) {
    if (err == CUBLAS_STATUS_SUCCESS) return true;
    record_error(ctx, cublas_status(err, call));
    return false;
}

void check_launch(const ops::Context& ctx, const char* op) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) {
        char call[96];
        std::snprintf(call, sizeof call, "kernel launch in %s", op);
        record_error(ctx, cuda_status(err, call));
    }
}

Status synchronize(const ops::Context& ctx) {
    Status st = cuda_status(cudaStreamSynchronize(stream_of(ctx)), "cudaStreamSynchronize");
    Status recorded;
    if (ctx.backend_state) {
        Handles& h = *static_cast<Handles*>(ctx.backend_state);
        if (st.is_ok()) h.upload_used = 0;  // every staged upload has been consumed
        std::lock_guard<std::mutex> lock(h.error_mu);
        recorded = std::exchange(h.first_error, Status());
    } else {
        std::lock_guard<std::mutex> lock(g_orphan_mu);
        recorded = std::exchange(g_orphan_error, Status());
    }
    return recorded.is_ok() ? st : recorded;
}

// Staged through the context's page-locked ring, so the copy is queued without waiting and src is
// free at once. A full ring waits for the stream (its copies are done) and starts over, growing if
// one table is larger than it.
void upload_async(const ops::Context& ctx, const Tensor& src, Tensor& dst) {
    const size_t n = src.nbytes();
    if (n == 0) return;
    if (!ctx.backend_state) {  // no context of ours: an ordinary (waiting) upload
        cuda::copy(ctx, src, dst);
        return;
    }
    Handles& h = *static_cast<Handles*>(ctx.backend_state);
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(h.stream, &cap) == cudaSuccess && cap != cudaStreamCaptureStatusNone) {
        record_error(ctx, make_error(StatusCode::kInternal, "[cuda] upload_async during a graph capture"));
        return;
    }
    const size_t need = (n + 255) / 256 * 256;
    if (h.upload_used + need > h.upload_bytes) {
        if (!check(ctx, cudaStreamSynchronize(h.stream), "cudaStreamSynchronize (upload ring full)")) return;
        h.upload_used = 0;
        if (need > h.upload_bytes) {
            std::unique_lock<std::shared_mutex> guard(capture_guard());
            if (h.upload_ring) cudaFreeHost(h.upload_ring);
            h.upload_ring = nullptr;
            h.upload_bytes = 0;
            const size_t bytes = std::max(need, size_t{2} << 20);
            if (cudaMallocHost(&h.upload_ring, bytes) != cudaSuccess) {
                (void)cudaGetLastError();
                h.upload_ring = nullptr;
                record_error(ctx, make_error(StatusCode::kOutOfMemory,
                                             "[cuda] cannot allocate %zu bytes of page-locked memory", bytes));
                return;
            }
            h.upload_bytes = bytes;
        }
    }
    char* stage = static_cast<char*>(h.upload_ring) + h.upload_used;
    std::memcpy(stage, src.data, n);
    h.upload_used += need;
    check(ctx, cudaMemcpyAsync(dst.data, stage, n, cudaMemcpyHostToDevice, h.stream), "cudaMemcpyAsync (upload)");
}

namespace {

void* device_alloc(size_t bytes) {
    std::unique_lock<std::shared_mutex> guard(capture_guard());
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError();  // allocation failures are not sticky; clear the last error
        return nullptr;
    }
    // Zeroed like CPU buffers (sessions rely on zero-initialized conv/KV state). The memset runs on
    // the legacy stream, which the contexts' non-blocking streams do not wait for: wait here.
    if (cudaMemset(p, 0, bytes) != cudaSuccess || cudaStreamSynchronize(nullptr) != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(p);
        return nullptr;
    }
    return p;
}

// backend::free_memory_bytes for CUDA devices: what the driver reports free on device `index`.
size_t free_memory_query(int index) {
    int current = 0;
    if (cudaGetDevice(&current) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (current != index && cudaSetDevice(index) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    size_t free = 0, total = 0;
    const bool ok = cudaMemGetInfo(&free, &total) == cudaSuccess;
    if (!ok) (void)cudaGetLastError();
    if (current != index) cudaSetDevice(current);
    return ok ? free : 0;
}

void device_free(void* p) {
    std::unique_lock<std::shared_mutex> guard(capture_guard());
    cudaFree(p);
}

// Page-locked host memory (Buffer::allocate_pinned): what a stream copies into asynchronously.
void* pinned_alloc(size_t bytes) {
    std::unique_lock<std::shared_mutex> guard(capture_guard());
    void* p = nullptr;
    if (cudaMallocHost(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        return nullptr;
    }
    return p;
}

void pinned_free(void* p) {
    std::unique_lock<std::shared_mutex> guard(capture_guard());
    cudaFreeHost(p);
}

// Caller holds capture_guard() exclusively.
void destroy_handles_locked(Handles* h) {
    if (!h) return;
    if (h->stream) cudaStreamSynchronize(h->stream);
    destroy_lt_plans(h->lt_plans);
    if (h->cublas) cublasDestroy(h->cublas);
    if (h->lt) cublasLtDestroy(h->lt);
    if (h->gemm_workspace) cudaFree(h->gemm_workspace);
    if (h->scratch) cudaFree(h->scratch);
    if (h->exchange) cudaFree(h->exchange);
    if (h->upload_ring) cudaFreeHost(h->upload_ring);
    if (h->stream) cudaStreamDestroy(h->stream);
    delete h;
}

void destroy_handles(Handles* h) {
    std::unique_lock<std::shared_mutex> guard(capture_guard());
    destroy_handles_locked(h);
}

Status alloc_or_fail(void** p, size_t bytes, const char* what) {
    if (cudaMalloc(p, bytes) == cudaSuccess) return Status::ok();
    (void)cudaGetLastError();
    *p = nullptr;
    return make_error(StatusCode::kOutOfMemory, "[cuda] cudaMalloc(%zu bytes) for the %s: out of memory",
                      bytes, what);
}

}  // namespace

bool available() {
    static const bool present = [] {
        int n = 0;
        const cudaError_t err = cudaGetDeviceCount(&n);
        if (err != cudaSuccess) (void)cudaGetLastError();
        return err == cudaSuccess && n > 0;
    }();
    return present;
}

std::string hardware_name(int device_index) {
    if (!available()) return "";
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device_index) != cudaSuccess) {
        (void)cudaGetLastError();
        return "";
    }
    return prop.name;
}

Expected<ops::Context> create_context(ops::Precision precision, int device_index,
                                      const backend::ContextOptions& options) {
    if (!available()) {
        return make_error(StatusCode::kUnsupported, "[cuda] no CUDA device is available");
    }
    int n_devices = 0;
    VOXRT_RETURN_IF_ERROR(cuda_status(cudaGetDeviceCount(&n_devices), "cudaGetDeviceCount"));
    if (device_index < 0 || device_index >= n_devices) {
        return make_error(StatusCode::kInvalidArgument, "[cuda] device %d requested, %d present",
                          device_index, n_devices);
    }
    VOXRT_RETURN_IF_ERROR(cuda_status(cudaSetDevice(device_index), "cudaSetDevice"));

    static std::once_flag allocator_once;
    std::call_once(allocator_once, [] {
        set_device_allocator(Device::kCUDA, {&device_alloc, &device_free});
        set_pinned_host_allocator({&pinned_alloc, &pinned_free});
        backend::set_free_memory_query(Device::kCUDA, &free_memory_query);
    });

    // Stream, handles and allocations: calls that may synchronize the device (capture_guard()).
    std::unique_lock<std::shared_mutex> guard(capture_guard());
    auto* h = new Handles();
    h->device = device_index;
    auto fail = [h](Status st) {
        destroy_handles_locked(h);
        return st;
    };
    Status st = cuda_status(
        cudaDeviceGetAttribute(&h->sm_count, cudaDevAttrMultiProcessorCount, device_index),
        "cudaDeviceGetAttribute(MultiProcessorCount)");
    if (!st) return fail(st);
    h->persistent_blocks = std::clamp(h->sm_count - std::max(options.gpu.reserve_sms, 0), 1, h->sm_count);
    h->l2_prefetch = options.gpu.l2_prefetch;
    int smem_optin = 0;
    st = cuda_status(
        cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_index),
        "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
    if (!st) return fail(st);
    h->max_smem_optin = static_cast<size_t>(smem_optin);
    int prio = 0;
    if (options.high_priority) {
        int least = 0, greatest = 0;
        st = cuda_status(cudaDeviceGetStreamPriorityRange(&least, &greatest), "cudaDeviceGetStreamPriorityRange");
        if (!st) return fail(st);
        prio = greatest;
    }
    st = cuda_status(cudaStreamCreateWithPriority(&h->stream, cudaStreamNonBlocking, prio), "cudaStreamCreate");
    if (!st) return fail(st);
    st = cublas_status(cublasLtCreate(&h->lt), "cublasLtCreate");
    if (!st) return fail(st);
    st = cublas_status(cublasCreate(&h->cublas), "cublasCreate");
    if (!st) return fail(st);
    h->gemm_workspace_bytes = options.gemm_workspace_bytes;
    if (h->gemm_workspace_bytes) {
        st = alloc_or_fail(&h->gemm_workspace, h->gemm_workspace_bytes, "GEMM workspace");
        if (!st) return fail(st);
    }
    h->scratch_bytes = options.scratch_bytes;
    if (h->scratch_bytes) {
        st = alloc_or_fail(&h->scratch, h->scratch_bytes, "op scratch");
        if (!st) return fail(st);
    }
    h->exchange_bytes = backend::kPersistentExchangeBytes;
    st = alloc_or_fail(&h->exchange, h->exchange_bytes, "persistent-kernel exchange");
    if (!st) return fail(st);
    st = cuda_status(cudaMemset(h->exchange, 0, h->exchange_bytes), "cudaMemset(exchange)");
    if (!st) return fail(st);
    st = cublas_status(cublasSetStream(h->cublas, h->stream), "cublasSetStream");
    if (!st) return fail(st);
    // A user-provided workspace keeps cuBLAS from allocating (required for graph capture).
    st = cublas_status(cublasSetWorkspace(h->cublas, h->gemm_workspace, h->gemm_workspace_bytes),
                             "cublasSetWorkspace");
    if (!st) return fail(st);

    ops::Context ctx;
    ctx.device = Device::kCUDA;
    ctx.precision = precision;
    ctx.backend_state = h;
    return ctx;
}

void destroy_context(ops::Context& ctx) {
    if (ctx.device != Device::kCUDA || !ctx.backend_state) return;
    destroy_handles(static_cast<Handles*>(ctx.backend_state));
    ctx.backend_state = nullptr;
}

// ---- graph capture ---------------------------------------------------------------------------

namespace {

// What a backend::Graph holds for a CUDA capture.
struct CapturedGraph {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
};

}  // namespace

void graph_destroy(void* state) {
    auto* g = static_cast<CapturedGraph*>(state);
    if (!g) return;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    if (g->graph) cudaGraphDestroy(g->graph);
    delete g;
}

Status graph_begin(const ops::Context& ctx) {
    if (ctx.device != Device::kCUDA || !ctx.backend_state) {
        return make_error(StatusCode::kUnsupported, "[cuda] graph capture needs a CUDA context");
    }
    // Errors recorded before the capture belong to earlier work: report them now.
    VOXRT_RETURN_IF_ERROR(cuda::synchronize(ctx));
    // Held (shared) until graph_end on this thread: another thread's cudaFree or plan creation
    // would synchronize the device and invalidate this capture (capture_guard()).
    capture_guard().lock_shared();
    Status st = cuda_status(cudaStreamBeginCapture(stream_of(ctx), cudaStreamCaptureModeThreadLocal),
                            "cudaStreamBeginCapture");
    if (!st) capture_guard().unlock_shared();
    return st;
}

Status graph_end(const ops::Context& ctx, void** out) {
    *out = nullptr;
    if (ctx.device != Device::kCUDA || !ctx.backend_state) {
        return make_error(StatusCode::kUnsupported, "[cuda] graph capture needs a CUDA context");
    }
    cudaGraph_t graph = nullptr;
    Status st = cuda_status(cudaStreamEndCapture(stream_of(ctx), &graph), "cudaStreamEndCapture");
    capture_guard().unlock_shared();  // taken by graph_begin
    Status recorded;
    {
        Handles& h = handles(ctx);
        std::lock_guard<std::mutex> lock(h.error_mu);
        recorded = std::exchange(h.first_error, Status());
    }
    if (!recorded.is_ok() || !st.is_ok()) {
        if (graph) cudaGraphDestroy(graph);
        (void)cudaGetLastError();
        return recorded.is_ok() ? st : recorded.with_context("[cuda] during graph capture");
    }
    auto* g = new CapturedGraph();
    g->graph = graph;
    st = cuda_status(cudaGraphInstantiate(&g->exec, graph, 0), "cudaGraphInstantiate");
    if (!st) {
        graph_destroy(g);
        return st;
    }
    *out = g;
    return Status::ok();
}

Status graph_replay(const ops::Context& ctx, void* state) {
    if (ctx.device != Device::kCUDA || !ctx.backend_state) {
        return make_error(StatusCode::kUnsupported, "[cuda] graph replay needs a CUDA context");
    }
    return cuda_status(cudaGraphLaunch(static_cast<CapturedGraph*>(state)->exec, stream_of(ctx)),
                       "cudaGraphLaunch");
}

// ---- profiler ranges ---------------------------------------------------------------------------

// NVTX ranges: without a tool attached (Nsight Systems) each call is a test of a null pointer.
void range_push(const ops::Context&, const char* name) { nvtxRangePushA(name); }

void range_pop(const ops::Context&) { nvtxRangePop(); }

}  // namespace voxrt::cuda

namespace voxrt::backend {

namespace {
#define VOXRT_BACKEND_TABLE_NS cuda
const EntryPoints kCudaEntryPoints = VOXRT_BACKEND_TABLE("cuda");
#undef VOXRT_BACKEND_TABLE_NS
}  // namespace

template <>
const EntryPoints* backend_for<Device::kCUDA>() {
    return &kCudaEntryPoints;
}

}  // namespace voxrt::backend
