#include "backend/device.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <utility>

#include "backend/entry_points.h"

namespace voxrt::backend {

namespace {
Status no_backend_status(Device device, const char* what) {
    return make_error(StatusCode::kUnsupported, "[%s] %s: this build of voxrt has no %s backend",
                      device_name(device), what, device_name(device));
}
}  // namespace

size_t context_device_bytes(Device device, const ContextOptions& options) {
    if (device == Device::kCPU) return 0;
    return options.scratch_bytes + options.gemm_workspace_bytes + kPersistentExchangeBytes;
}

namespace {
std::atomic<size_t (*)(int)> g_free_query[kDeviceKinds] = {};

size_t host_available_bytes() {
    if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
        char line[256];
        unsigned long long kb = 0;
        bool found = false;
        while (!found && std::fgets(line, sizeof line, f))
            found = std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
        std::fclose(f);
        if (found) return static_cast<size_t>(kb) * 1024;
    }
#if defined(_SC_AVPHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) return static_cast<size_t>(pages) * static_cast<size_t>(page);
#endif
    return 0;
}
}  // namespace

void set_free_memory_query(Device device, size_t (*query)(int index)) {
    g_free_query[static_cast<int>(device)].store(query);
}

size_t free_memory_bytes(Device device, int index) {
    if (device == Device::kCPU) return host_available_bytes();
    size_t (*q)(int) = g_free_query[static_cast<int>(device)].load();
    return q ? q(index) : 0;
}

bool device_available(Device device) {
    const EntryPoints* e = entry_points(device);
    return e != nullptr && e->available();
}

std::string hardware_name(Device device, int index) {
    const EntryPoints* e = entry_points(device);
    return e != nullptr && e->available() ? e->hardware_name(index) : std::string();
}

Expected<ops::Context> create_context(Device device, ops::Precision precision, int index,
                                      const ContextOptions& options) {
    const EntryPoints* e = entry_points(device);
    if (e == nullptr) return no_backend_status(device, "create_context");
    if (!e->available())
        return make_error(StatusCode::kUnsupported, "[%s] no %s device is available",
                          device_name(device), device_name(device));
    return e->create_context(precision, index, options);
}

void destroy_context(ops::Context& ctx) {
    if (const EntryPoints* e = entry_points(ctx.device)) e->destroy_context(ctx);
}

// ---- graphs ----------------------------------------------------------------------------------

Graph::~Graph() {
    reset();
}

Graph::Graph(Graph&& o) noexcept {
    *this = std::move(o);
}

Graph& Graph::operator=(Graph&& o) noexcept {
    if (this != &o) {
        reset();
        device_ = o.device_;
        state_ = std::exchange(o.state_, nullptr);
        capturing_ = std::exchange(o.capturing_, false);
    }
    return *this;
}

void Graph::reset() {
    if (state_ != nullptr) {
        if (const EntryPoints* e = entry_points(device_)) e->graph_destroy(state_);
    }
    state_ = nullptr;
}

Status Graph::begin(const ops::Context& ctx) {
    const EntryPoints* e = entry_points(ctx.device);
    if (e == nullptr) return no_backend_status(ctx.device, "Graph::begin");
    if (capturing_)
        return make_error(StatusCode::kInternal, "[%s] graph capture already begun",
                          device_name(ctx.device));
    reset();
    VOXRT_RETURN_IF_ERROR(e->graph_begin(ctx));
    device_ = ctx.device;
    capturing_ = true;
    return Status::ok();
}

Status Graph::end(const ops::Context& ctx) {
    const EntryPoints* e = entry_points(ctx.device);
    if (e == nullptr) return no_backend_status(ctx.device, "Graph::end");
    if (!capturing_ || ctx.device != device_)
        return make_error(StatusCode::kInternal, "[%s] graph capture end() without begin()",
                          device_name(ctx.device));
    capturing_ = false;
    void* graph = nullptr;
    VOXRT_RETURN_IF_ERROR(e->graph_end(ctx, &graph));
    state_ = graph;
    return Status::ok();
}

Status Graph::replay(const ops::Context& ctx) const {
    if (state_ == nullptr)
        return make_error(StatusCode::kInternal, "[%s] replay() of a graph that was not captured",
                          device_name(ctx.device));
    if (ctx.device != device_)
        return make_error(StatusCode::kInvalidArgument, "[%s] replay() of a graph captured on %s",
                          device_name(ctx.device), device_name(device_));
    ops::ProfileRange range(ctx, "graph replay");
    return entry_points_of(ctx.device).graph_replay(ctx, state_);
}

}  // namespace voxrt::backend
