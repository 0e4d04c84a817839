// Fused decode kernels: one call that does the work of a fixed sequence of ops/ops.h calls, for
// backends that have a kernel for it. Each entry point returns false when the backend has none for
// these shapes / options (the CPU never has one); the caller then runs the op sequence written
// next to the call, which is the definition of what the fused kernel computes. The numerics
// contract is that of ops/ops.h: every intermediate that the op sequence stores in the activation
// dtype is rounded to it at the same place; sums may be ordered differently.
#pragma once

#include <cstdint>

#include "ops/ops.h"

namespace voxrt::ops {

// One layer of the depthformer (liquid-audio StandardBlock with MHA, QK-RMSNorm, pair RoPE and
// SwiGLU). Weights [out, in]; caches [Hkv, Q, Dh] in the activation dtype.
struct DepthformerLayer {
    Tensor operator_norm, ffn_norm;  // [Dd]
    Tensor qkv;                      // [Dd + 2·Hkv·Dh, Dd]
    Tensor out_proj;                 // [Dd, Dd]
    Tensor q_norm, k_norm;           // [Dh]
    Tensor w1, w3;                   // [F, Dd]
    Tensor w2;                       // [Dd, F]
    Tensor k_cache, v_cache;         // [Hkv, Q, Dh]
};

// The whole 8-codebook loop of one audio frame (model/audio_head.cpp AudioHead::sample_frame):
//   prev = 0
//   for i in 0..Q-1:
//     x = in[i] + prev                               (add)
//     for each layer: x = x + out_proj(attn(rope(qk_norm(qkv(rms_norm(x))))))
//                     x = x + w2(swiglu(w1(rms_norm(x)), w3(rms_norm(x))))
//     logits_i = to_logits[i](rms_norm_i(x))          (-inf at V-1 when suppress_eos)
//     codes[i] = argmax / top-k sample(logits_i, counter = counters[i])
//     prev = emb[i][forced ? forced[i] : codes[i]]
struct DepthformerFrame {
    const DepthformerLayer* layers = nullptr;
    int n_layers = 0;
    const Tensor* emb = nullptr;        // [Q] tables [V, Dd]
    const Tensor* emb_norm = nullptr;   // [Q] [Dd] (RmsStyle::kFused)
    const Tensor* to_logits = nullptr;  // [Q] [V, Dd]
    Tensor rope_cos, rope_sin;          // F32 [Q, Dh/2] (RopeStyle::kPairs)
    int n_heads = 0, n_kv_heads = 0;
    float eps = 1e-5f;
    Tensor in;  // [Q, Dd] activation dtype
    // Sampling: greedy when temperature <= 0 or top_k == 1, else ops::sample_top_k.
    float temperature = 0.0f;
    int top_k = 0;
    uint64_t seed = 0;
    const Tensor* counters = nullptr;  // device I32 [≥ Q]
    bool suppress_eos = false;
    Tensor codes;                    // out: device I32 [Q]
    Tensor* logits_out = nullptr;    // optional out: [Q, V] activation dtype
    const Tensor* forced = nullptr;  // optional: device I32 [Q] codes fed back instead
};

// Returns false (and does nothing) when ctx's backend has no fused kernel for `f`.
bool depthformer_frame(const Context& ctx, const DepthformerFrame& f);

// One layer of the LFM2 backbone (model/lfm2.h Lfm2LayerWeights) with its state.
struct Lfm2StepLayer {
    bool attention = false;
    Tensor operator_norm, ffn_norm;  // [D]
    Tensor w1, w3, w2;               // [F, D], [F, D], [D, F]
    Tensor out_proj;                 // [D, D] or [D, H·Dh]
    Tensor in_proj, conv;            // conv: [3D, D] (B, C, x rows), [D, 1, K]
    Tensor conv_state;               // conv: [K-1, D] activation dtype
    Tensor q_proj, k_proj, v_proj;   // attention: [H·Dh, D], [Hkv·Dh, D], [Hkv·Dh, D]
    Tensor q_norm, k_norm;           // attention: [Dh]
    Tensor k_cache, v_cache;         // attention: [Hkv, S, Dh] activation dtype
};

// One decode step of the LFM2 backbone (model/lfm2.cpp Lfm2Network::forward_rows with T = 1,
// no sliding window, rope rows = cache rows = pos): every layer
//   conv:      x += out_proj(C ⊙ short_conv(B ⊙ x'))   with B, C, x' = in_proj(rms_norm(x))
//   attention: x += out_proj(attention(rope(qk_norm(q, k)), v))   (KV written at pos)
//   both:      x += w2(swiglu(w1(rms_norm(x)), w3(rms_norm(x))))
// then out = rms_norm(x) (all RmsStyle::kLfm2, RopeStyle::kNeox).
struct Lfm2Step {
    const Lfm2StepLayer* layers = nullptr;
    int n_layers = 0;
    Tensor final_norm;          // [D]
    Tensor rope_cos, rope_sin;  // F32 [P, Dh/2]
    int n_heads = 0, n_kv_heads = 0;
    float eps = 1e-5f;
    Tensor x;    // [1, D] activation dtype, clobbered
    Tensor pos;  // device I32 [1]
    Tensor out;  // [1, D] activation dtype
};

bool lfm2_decode_step(const Context& ctx, const Lfm2Step& s);

}  // namespace voxrt::ops
