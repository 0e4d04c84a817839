// Device management for model and runtime code that must not include CUDA headers: whether a GPU
// is there, creating the per-session CUDA context behind ops::Context, and capturing a sequence of
// ops into a CUDA graph that can be replayed. A build without CUDA links backend/none/
// device_stubs.cpp, where cuda_available() is false and everything else returns kUnsupported.
//
// Errors: every CUDA, cuBLAS and cuBLASLt failure becomes a Status that names the failing call
// ("[cuda] cudaMalloc(67108864 bytes): out of memory"); allocation failures are kOutOfMemory, the
// rest kDevice. Ops themselves return nothing: a failure inside an op is recorded in the context
// and returned by the next ops::synchronize(ctx) (or GraphCapture::end), never an abort.
#pragma once

#include <cstddef>
#include <string>

#include "core/status.h"
#include "ops/ops.h"

namespace voxrt::backend {

// True when this build has the CUDA backend and at least one device is visible.
bool cuda_available();

// "NVIDIA H100 80GB HBM3", or "" without a device.
std::string cuda_device_name(int device_index = 0);

struct CudaContextOptions {
    // Scratch owned by the context for ops that need temporaries (attention partial results,
    // staging for aliased short_conv, bias conversion). Ops never allocate; an op whose scratch
    // need exceeds this takes a slower path that needs none.
    size_t scratch_bytes = size_t{64} << 20;
    // cuBLAS / cuBLASLt workspace (shared by both handles; they run on one stream).
    size_t gemm_workspace_bytes = size_t{32} << 20;
    // The stream gets the device's highest priority: its ready kernels are scheduled before those
    // of normal streams (the session's detokenizer, whose short kernels would otherwise each wait
    // for a whole persistent decode kernel).
    bool high_priority = false;
};

// Creates a context on device `device_index`: a non-blocking stream, cuBLAS + cuBLASLt handles
// bound to it, the GEMM workspace and the op scratch, all behind ctx.cuda_handles. The first call
// installs the Device::kCUDA allocator used by Buffer (cudaMalloc, memory zeroed like the CPU's)
// and the page-locked host allocator of Buffer::allocate_pinned (cudaMallocHost).
// The calling thread's current device is set to device_index.
Expected<ops::Context> create_cuda_context(ops::Precision precision, int device_index = 0,
                                           const CudaContextOptions& options = {});

// Waits for the context's stream, then frees everything create_cuda_context made. Safe on a
// context that is not a CUDA context (does nothing) and idempotent.
void destroy_cuda_context(ops::Context& ctx);

// Records the ops issued on a CUDA context between begin() and end() into a CUDA graph, and
// replays them with replay(). Inputs that change between replays (positions, token ids, sampling
// counters) must live in device tensors that the captured ops read, written with ops::copy
// outside the capture or by captured ops themselves (ops::increment). Host<->device copies and
// synchronize() are not allowed during capture.
// Not thread-safe; one capture per object; move-only.
class GraphCapture {
public:
    GraphCapture() = default;
    ~GraphCapture();
    GraphCapture(const GraphCapture&) = delete;
    GraphCapture& operator=(const GraphCapture&) = delete;
    GraphCapture(GraphCapture&& o) noexcept;
    GraphCapture& operator=(GraphCapture&& o) noexcept;

    // Starts capturing the context's stream (discarding an earlier graph of this object).
    Status begin(const ops::Context& ctx);
    // Ends the capture and instantiates the graph. Fails (and leaves nothing captured) if any op
    // recorded an error during the capture.
    Status end(const ops::Context& ctx);
    // Launches the captured graph on the context's stream (asynchronous, like the ops).
    Status replay(const ops::Context& ctx) const;
    bool captured() const { return exec_ != nullptr; }
    // Frees the graph.
    void reset();

private:
    void* graph_ = nullptr;  // cudaGraph_t
    void* exec_ = nullptr;   // cudaGraphExec_t
    bool capturing_ = false;
};

}  // namespace voxrt::backend
