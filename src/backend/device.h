// The device-neutral side of the backends, for model and runtime code: whether a device is there
// and what it is called, creating the per-session context behind ops::Context, capturing a
// sequence of ops into a graph that can be replayed, and the options a context is made with.
// Every call here goes through the backend's entry points (backend/entry_points.h), like the ops;
// nothing here or in its callers names a vendor API. A device kind whose backend this build lacks
// is simply not available: create_context returns kUnsupported and nothing aborts.
//
// Errors: every failure of the device's runtime or libraries becomes a Status that names the
// device kind and the failing call ("[cuda] <call>(67108864 bytes): out of memory"); allocation
// failures are kOutOfMemory, the rest kDevice. Ops themselves return nothing: a failure inside an
// op is recorded in the context and returned by the next ops::synchronize(ctx) (or Graph::end),
// never an abort.
#pragma once

#include <cstddef>
#include <string>

#include "core/status.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace voxrt::backend {

// Options of GPU backends; backends without the feature ignore them. The defaults are the tuned
// behaviour: change them only to measure an alternative.
struct GpuOptions {
    // Streaming multiprocessors (compute units) left free by the persistent decode kernels, which
    // otherwise run one block on every one: room for work on other streams (e.g. the
    // detokenizer's kernels beside decode). Clamped so that at least one is used.
    int reserve_sms = 0;
    // The persistent backbone step prefetches the next phase's weights into L2 while it waits at
    // a phase boundary. Measured no faster on H100 (the weights stream at full bandwidth anyway).
    bool l2_prefetch = false;
};

struct ContextOptions {
    // Scratch owned by the context for ops that need temporaries (attention partial results,
    // staging for aliased short_conv, bias conversion). Ops never allocate; an op whose scratch
    // need exceeds this takes a slower path that needs none.
    size_t scratch_bytes = size_t{64} << 20;
    // Workspace of the backend's GEMM libraries (shared by them; they run on the context's queue).
    size_t gemm_workspace_bytes = size_t{32} << 20;
    // The context's queue gets the device's highest priority: its ready work is scheduled before
    // that of normal queues (the session's detokenizer, whose short kernels would otherwise each
    // wait for a whole persistent decode kernel).
    bool high_priority = false;
    GpuOptions gpu;
};

// Device memory a GPU context holds besides its queue and library handles: the persistent kernels'
// exchange block (fixed) plus the options' op scratch and GEMM workspace.
inline constexpr size_t kPersistentExchangeBytes = size_t{2} << 20;
// Bytes create_context(device, …, options) allocates on the device for itself (the op scratch,
// the GEMM workspace and the exchange block); 0 for the CPU, whose contexts own no memory. The GEMM
// libraries' handles may allocate a little more that is not counted here.
size_t context_device_bytes(Device device, const ContextOptions& options);

// Free memory of device `index` of kind `device` now, in bytes: for a GPU what its driver reports
// (known once the backend has made a context: the query is installed with its allocator), for the
// CPU the host's available RAM (MemAvailable of /proc/meminfo, else the free pages); 0 when
// unknown.
size_t free_memory_bytes(Device device, int index = 0);
// Installed by a GPU backend (like its allocator): the query behind free_memory_bytes().
void set_free_memory_query(Device device, size_t (*query)(int index));

// True when this build has a backend for `device` and at least one such device is visible
// (always true for Device::kCPU).
bool device_available(Device device);

// The hardware's name ("NVIDIA H100 80GB HBM3", "cpu"), or "" when the device is not available.
std::string hardware_name(Device device, int index = 0);

// Creates a context on device `index` of kind `device`. For the CPU that is a plain context
// (single-threaded until the caller sets ctx.pool). For a GPU: an in-order queue (stream) of its
// own, the GEMM library handles bound to it, the GEMM workspace and the op scratch, all behind
// ctx.backend_state; the first call installs the device allocator used by Buffer (memory zeroed
// like the CPU's) and the page-locked host allocator of Buffer::allocate_pinned, and the calling
// thread's current device becomes `index`.
Expected<ops::Context> create_context(Device device, ops::Precision precision, int index = 0,
                                      const ContextOptions& options = {});

// Waits for the context's queue, then frees everything create_context made. Safe on a context
// that owns nothing (a CPU context) and idempotent.
void destroy_context(ops::Context& ctx);

// Records the ops issued on a context between begin() and end() into a graph, and replays them
// with replay(). Inputs that change between replays (positions, token ids, sampling counters)
// must live in device tensors that the captured ops read, written with ops::copy outside the
// capture or by captured ops themselves (ops::increment). Host<->device copies and synchronize()
// are not allowed during capture. Backends without graphs (the CPU) return kUnsupported.
// Not thread-safe; one capture per object; move-only.
class Graph {
public:
    Graph() = default;
    ~Graph();
    Graph(const Graph&) = delete;
    Graph& operator=(const Graph&) = delete;
    Graph(Graph&& o) noexcept;
    Graph& operator=(Graph&& o) noexcept;

    // Starts capturing the context's queue (discarding an earlier graph of this object).
    Status begin(const ops::Context& ctx);
    // Ends the capture and instantiates the graph. Fails (and leaves nothing captured) if any op
    // recorded an error during the capture.
    Status end(const ops::Context& ctx);
    // Launches the captured graph on the context's queue (asynchronous, like the ops).
    Status replay(const ops::Context& ctx) const;
    bool captured() const { return state_ != nullptr; }
    // Frees the graph.
    void reset();

private:
    Device device_ = Device::kCPU;  // the backend that owns state_
    void* state_ = nullptr;         // the backend's instantiated graph
    bool capturing_ = false;
};

}  // namespace voxrt::backend
