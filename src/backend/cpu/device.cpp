// The CPU backend's device entry points (a CPU context owns nothing; there are no graphs, no
// profiler ranges, no fused kernels and no on-device mel) and its entry-point table.
#include "backend/cpu/cpu_common.h"
#include "backend/entry_points.h"

namespace voxrt::cpu {

bool available() {
    return true;
}

std::string hardware_name(int) {
    return "cpu";
}

Expected<ops::Context> create_context(ops::Precision precision, int index,
                                      const backend::ContextOptions&) {
    if (index != 0)
        return make_error(StatusCode::kInvalidArgument, "[cpu] device %d requested, 1 present",
                          index);
    ops::Context ctx;
    ctx.device = Device::kCPU;
    ctx.precision = precision;
    return ctx;
}

void destroy_context(ops::Context&) {}

Status graph_begin(const ops::Context&) {
    return make_error(StatusCode::kUnsupported, "[cpu] graph capture needs a GPU context");
}

Status graph_end(const ops::Context&, void**) {
    return make_error(StatusCode::kUnsupported, "[cpu] graph capture needs a GPU context");
}

Status graph_replay(const ops::Context&, void*) {
    return make_error(StatusCode::kUnsupported, "[cpu] graph replay needs a GPU context");
}

void graph_destroy(void*) {}

void range_push(const ops::Context&, const char*) {}

void range_pop(const ops::Context&) {}

void copy_to_host_async(const ops::Context& ctx, const Tensor& src, Tensor& dst) {
    cpu::copy(ctx, src, dst);  // already on the host: done at once
}

void upload_async(const ops::Context& ctx, const Tensor& src, Tensor& dst) {
    cpu::copy(ctx, src, dst);  // host to host: done at once
}

Status log_mel(const ops::Context&, const LogMelArgs&) {
    return make_error(StatusCode::kUnsupported,
                      "[mel] no cpu implementation (use MelFrontend::compute)");
}

bool depthformer_frame(const ops::Context&, const ops::DepthformerFrame&) {
    return false;
}

bool lfm2_decode_step(const ops::Context&, const ops::Lfm2Step&) {
    return false;
}

// The per-row loop in ops:: is what the CPU would do anyway.
bool kv_write_rows(const ops::Context&, const Tensor&, const Tensor&, const Tensor&,
                   const ops::RowCaches&) {
    return false;
}

bool attention_rows(const ops::Context&, const Tensor&, const ops::RowCaches&, const Tensor&, float,
                    int, Tensor&) {
    return false;
}

bool copy_many(const ops::Context&, const Tensor&, int64_t) {
    return false;
}

bool increment_many(const ops::Context&, const Tensor&, int64_t, int32_t) {
    return false;
}

bool short_conv_rows(const ops::Context&, const Tensor&, const Tensor&, const Tensor&, DType,
                     Tensor&) {
    return false;
}

bool sample_rows(const ops::Context&, Tensor&, const Tensor&, int, Tensor&) {
    return false;
}

}  // namespace voxrt::cpu

namespace voxrt::backend {

namespace {
#define VOXRT_BACKEND_TABLE_NS cpu
const EntryPoints kCpuEntryPoints = VOXRT_BACKEND_TABLE("cpu");
#undef VOXRT_BACKEND_TABLE_NS
}  // namespace

template <>
const EntryPoints* backend_for<Device::kCPU>() {
    return &kCpuEntryPoints;
}

}  // namespace voxrt::backend
