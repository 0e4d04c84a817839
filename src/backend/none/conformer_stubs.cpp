// CUDA entry points of the conformer ops in a build without CUDA: reaching one is a bug.
#include "core/check.h"
#include "ops/conformer_ops.h"

namespace voxrt::cuda {

#define VOXRT_NO_CUDA() VOXRT_ABORT("%s: this build of voxrt has no CUDA backend", __func__)

void subsample_conv_in(const ops::Context&, const Tensor&, int64_t, const Tensor&, const Tensor&,
                       Tensor&, int64_t) {
    VOXRT_NO_CUDA();
}
void subsample_dw_conv(const ops::Context&, const Tensor&, int64_t, int64_t, const Tensor&,
                       const Tensor&, Tensor&, int64_t) {
    VOXRT_NO_CUDA();
}
void subsample_flatten(const ops::Context&, const Tensor&, int64_t, Tensor&) {
    VOXRT_NO_CUDA();
}
void rel_pos_embed(const ops::Context&, const Tensor&, int64_t, bool, Tensor&) {
    VOXRT_NO_CUDA();
}
void rel_pos_attention(const ops::Context&, const Tensor&, const Tensor&, const Tensor&,
                       const Tensor&, const Tensor&, const Tensor&, int, Tensor&) {
    VOXRT_NO_CUDA();
}
void conv_dw_bn_silu(const ops::Context&, const Tensor&, const Tensor&, const Tensor&,
                     const Tensor&, const Tensor&, Tensor&) {
    VOXRT_NO_CUDA();
}

}  // namespace voxrt::cuda
