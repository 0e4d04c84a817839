// Entry points of the CUDA backend in a build without CUDA. Sessions refuse Device::kCUDA before
// any op runs (see runtime/device.h), so reaching one of these is a bug: fail loudly.
#include "backend/backend_ops.h"
#include "core/check.h"

namespace voxrt::cuda {

#define VOXRT_NO_CUDA() VOXRT_ABORT("%s: this build of voxrt has no CUDA backend", __func__)

void linear(const ops::Context&, const Tensor&, const Tensor&, const Tensor*, Tensor&) {
    VOXRT_NO_CUDA();
}
void rms_norm(const ops::Context&, const Tensor&, const Tensor&, float, ops::RmsStyle, Tensor&) {
    VOXRT_NO_CUDA();
}
void layer_norm(const ops::Context&, const Tensor&, const Tensor&, const Tensor&, float, Tensor&) {
    VOXRT_NO_CUDA();
}
void add(const ops::Context&, const Tensor&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void add_scaled(const ops::Context&, const Tensor&, const Tensor&, float, Tensor&) {
    VOXRT_NO_CUDA();
}
void mul(const ops::Context&, const Tensor&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void activation(const ops::Context&, ops::Activation, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void swiglu(const ops::Context&, const Tensor&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void glu(const ops::Context&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void embedding(const ops::Context&, const Tensor&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void embedding_bag(const ops::Context&, const Tensor&, const Tensor&, int64_t, bool, Tensor&) {
    VOXRT_NO_CUDA();
}
void rope(const ops::Context&, Tensor&, const Tensor&, const Tensor&, const Tensor&,
          ops::RopeStyle) {
    VOXRT_NO_CUDA();
}
void kv_write(const ops::Context&, const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void attention(const ops::Context&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
               float, int, Tensor&) {
    VOXRT_NO_CUDA();
}
void short_conv(const ops::Context&, const Tensor&, const Tensor&, Tensor&, const Tensor&,
                Tensor&) {
    VOXRT_NO_CUDA();
}
void argmax(const ops::Context&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void sample_top_k(const ops::Context&, const Tensor&, float, int, uint64_t, const Tensor&,
                  Tensor&) {
    VOXRT_NO_CUDA();
}
void set_value(const ops::Context&, Tensor&, int64_t, float) {
    VOXRT_NO_CUDA();
}
void increment(const ops::Context&, Tensor&, int32_t) {
    VOXRT_NO_CUDA();
}
void fill_rows_led_by(const ops::Context&, Tensor&, int32_t) {
    VOXRT_NO_CUDA();
}
void copy(const ops::Context&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void copy_to_host_async(const ops::Context&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
void zero(const ops::Context&, Tensor&) {
    VOXRT_NO_CUDA();
}
void round_to_act(const ops::Context&, Tensor&) {
    VOXRT_NO_CUDA();
}
void transpose(const ops::Context&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}
Status synchronize(const ops::Context&) {
    VOXRT_NO_CUDA();
}
bool depthformer_frame(const ops::Context&, const ops::DepthformerFrame&) {
    return false;  // no fused kernel: the caller runs the op sequence
}
bool lfm2_decode_step(const ops::Context&, const ops::Lfm2Step&) {
    return false;
}
double grid_barrier_bench_us(const ops::Context&, int, int) {
    return -1.0;
}
std::string depthformer_profile_report(const ops::Context&) {
    return "no CUDA backend";
}
std::string lfm2_step_profile_report(const ops::Context&) {
    return "no CUDA backend";
}

Status log_mel(const ops::Context&, const LogMelArgs&) {
    return make_error(StatusCode::kUnsupported, "this build of voxrt has no CUDA backend");
}
void istft_step(const ops::Context&, const IstftStepArgs&) {
    VOXRT_NO_CUDA();
}

}  // namespace voxrt::cuda
