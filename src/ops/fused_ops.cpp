#include "ops/fused_ops.h"

#include "core/check.h"
#include "ops/dispatch.h"

namespace voxrt::ops {

bool depthformer_frame(const Context& ctx, const DepthformerFrame& f) {
    VOXRT_ASSERT(f.layers && f.n_layers > 0 && f.emb && f.emb_norm && f.to_logits,
                 "depthformer_frame: missing weights");
    if (!ctx.fused) return false;
    return VOXRT_DISPATCH(depthformer_frame(ctx, f));
}

bool lfm2_decode_step(const Context& ctx, const Lfm2Step& s) {
    VOXRT_ASSERT(s.layers && s.n_layers > 0, "lfm2_decode_step: missing layers");
    if (!ctx.fused || !ctx.fused_backbone) return false;
    return VOXRT_DISPATCH(lfm2_decode_step(ctx, s));
}

}  // namespace voxrt::ops
