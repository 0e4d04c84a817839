#include "ops/fused_ops.h"

#include "core/check.h"
#include "ops/dispatch.h"

namespace voxrt::ops {

namespace {

// The fused kernels read weights as stored (BF16 / F32); a step over quantized matrices runs the op
// sequence, whose ops::linear takes them.
bool any_quantized(const DepthformerFrame& f) {
    for (int l = 0; l < f.n_layers; ++l) {
        const DepthformerLayer& L = f.layers[l];
        if (L.qkv.quantized() || L.out_proj.quantized() || L.w1.quantized() || L.w2.quantized() ||
            L.w3.quantized())
            return true;
    }
    // The codebook heads (one per codebook; quantized together with the layers or not at all).
    return f.to_logits[0].quantized();
}

bool any_quantized(const Lfm2Step& s) {
    for (int l = 0; l < s.n_layers; ++l) {
        const Lfm2StepLayer& L = s.layers[l];
        if (L.w1.quantized() || L.w2.quantized() || L.w3.quantized() || L.out_proj.quantized() ||
            L.in_proj.quantized() || L.q_proj.quantized() || L.k_proj.quantized() ||
            L.v_proj.quantized())
            return true;
    }
    return false;
}

}  // namespace

bool depthformer_frame(const Context& ctx, const DepthformerFrame& f) {
    VOXRT_ASSERT(f.layers && f.n_layers > 0 && f.emb && f.emb_norm && f.to_logits,
                 "depthformer_frame: missing weights");
    if (!ctx.fused || any_quantized(f)) return false;
    return VOXRT_DISPATCH(depthformer_frame(ctx, f));
}

bool lfm2_decode_step(const Context& ctx, const Lfm2Step& s) {
    VOXRT_ASSERT(s.layers && s.n_layers > 0, "lfm2_decode_step: missing layers");
    if (!ctx.fused || !ctx.fused_backbone || any_quantized(s)) return false;
    return VOXRT_DISPATCH(lfm2_decode_step(ctx, s));
}

}  // namespace voxrt::ops
