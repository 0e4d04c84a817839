// AudioEncoder: the FastConformer encoder (NeMo ConformerEncoder as vendored by liquid-audio)
// and the audio adapter MLP. Turns one segment of log-mel frames into one backbone embedding per
// 8 frames (80 ms).
//
//   mel [F=128, T] ─ pre_encode (dw_striding ×8: conv3×3/2 → ReLU → {dw3×3/2 → pw1×1 → ReLU}×2
//                    → flatten channel-major → Linear C·F/8 → D)             x [T', D]
//                  ─ rel. positional table P [2T'-1, D] (positions T'-1 … -(T'-1))
//                  ─ n_layers × ConformerLayer (pre-LN macaron):
//                       x += ½·FF1(LN(x));  x += MHSA_relpos(LN(x), P);  x += Conv(LN(x));
//                       x += ½·FF2(LN(x));  x = LN_out(x)
//                  → enc_out [T', D]
//   adapter: LN → Linear D→A → GELU(erf) → Linear A→A          adapter_out [T', A = lfm.hidden]
//
// T' = ceil(T / 8) (mel2emb_len of liquid-audio). Source of truth: liquid_audio/model/conformer/
// {encoder,subsampling,mha,modules}.py and model/mlp.py; numerics and tolerances: docs/encoder.md.
//
// Precision. With ctx.precision == kBF16 the forward rounds to bfloat16 wherever the official
// bf16 model (LFM2AudioModel.from_pretrained) holds a bf16 tensor, starting with the mel itself.
// With kF32 nothing is rounded: the official float32 load
// (LFM2AudioModel.from_pretrained(dir, dtype=torch.float32)) keeps the positional table exact.
// bf16_pos_table (internal, tests only) reproduces the bf16 load cast back to float
// (`.to(bf16)` then `.float()`), whose pe buffer is bf16-rounded for segments of up to
// pos_emb_max_len mel frames.
//
// Immutable after load; encode() is const and may run concurrently from several threads as long
// as each call has its own arena (and, on the CPU, the thread pool serializes the calls).
#pragma once

#include <cstdint>
#include <vector>

#include "core/arena.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "ops/ops.h"

namespace voxrt::model {

class AudioEncoder {
public:
    // Fetches conformer.* and audio_adapter.* from model_file with the shapes the config implies.
    // Fails (kUnsupported) for encoder variants this implementation does not cover (anything but
    // dw_striding subsampling, rel_pos attention, batch_norm conv norm, xscaling off, no out_proj).
    static Expected<AudioEncoder> load(const AudioModelConfig& config,
                                       const io::SafeTensorsFile& model_file, WeightStore& store,
                                       bool bf16_pos_table = false);

    // Number of output frames for T mel frames: ceil(T / subsampling_factor).
    int64_t output_frames(int64_t n_mel_frames) const;
    // Longest segment encode() accepts, in mel frames: a recording as long as the WAV reader
    // accepts (600 s), or pos_emb_max_len if longer. The positional table is sized for it.
    int64_t max_mel_frames() const { return max_mel_frames_; }
    int d_model() const { return d_model_; }
    int adapter_dim() const { return adapter_dim_; }

    // Arena bytes encode() needs for n_mel_frames frames (its peak, with the arena's alignment).
    size_t workspace_bytes(int64_t n_mel_frames, const ops::Context& ctx) const;

    // Encodes one segment. mel: host pointer, [feat_in, T] row-major F32 (the preprocessor's
    // output). enc_out [T', d_model] and adapter_out [T', adapter_dim], act dtype on ctx.device,
    // allocated by the caller. scratch: an arena on ctx.device with workspace_bytes(T) free; it is
    // returned to its mark on exit. T must be in [1, max_mel_frames()].
    Status encode(const ops::Context& ctx, const float* mel, int64_t T, Arena& scratch,
                  Tensor& enc_out, Tensor& adapter_out) const;
    // The same with the mel as a tensor [feat_in, T] F32, on the host or on ctx.device (used in
    // place there: ops::log_mel made it).
    Status encode(const ops::Context& ctx, const Tensor& mel, Arena& scratch, Tensor& enc_out,
                  Tensor& adapter_out) const;

private:
    struct Layer {
        Tensor ff1_norm_w, ff1_norm_b;    // [D]
        Tensor ff1_w1, ff1_b1;            // [Dff, D], [Dff]
        Tensor ff1_w2, ff1_b2;            // [D, Dff], [D]
        Tensor att_norm_w, att_norm_b;    // [D]
        Tensor wq, bq, wk, bk, wv, bv;    // [D, D], [D]
        Tensor wo, bo;                    // [D, D], [D]
        Tensor w_pos;                     // [D, D] linear_pos (no bias)
        Tensor pos_bias_u, pos_bias_v;    // [H, Dk] F32
        Tensor conv_norm_w, conv_norm_b;  // [D]
        Tensor pw1_w, pw1_b;              // [2D, D] (pointwise_conv1 [2D, D, 1] viewed), [2D]
        Tensor dw_w, dw_b;                // [D, K] F32 (depthwise_conv [D, 1, K]), [D] F32
        Tensor bn_scale, bn_shift;        // [D] F32, BatchNorm (eval) as an affine map
        Tensor pw2_w, pw2_b;              // [D, D], [D]
        Tensor ff2_norm_w, ff2_norm_b;    // [D]
        Tensor ff2_w1, ff2_b1;            // [Dff, D], [Dff]
        Tensor ff2_w2, ff2_b2;            // [D, Dff], [D]
        Tensor out_norm_w, out_norm_b;    // [D]
    };

    struct Dims;     // per-encode sizes
    struct Buffers;  // per-encode buffers
    Dims dims_for(int64_t T) const;
    // Carves every buffer of one encode from arena (null: only counts). The single place that
    // allocates, shared by encode() and workspace_bytes() so that the two cannot disagree.
    Buffers carve(Arena* arena, const Dims& d, const ops::Context& ctx, size_t* bytes) const;

    void subsample(const ops::Context& ctx, const Tensor& mel, const Dims& d, const Buffers& b,
                   Tensor& x) const;
    void conformer_layer(const ops::Context& ctx, const Layer& l, const Buffers& b,
                         Tensor& x) const;

    int feat_in_ = 0;              // F (128)
    int d_model_ = 0;              // D (512)
    int d_ff_ = 0;                 // Dff (2048)
    int n_heads_ = 0;              // H (8)
    int conv_channels_ = 0;        // C (256)
    int n_stages_ = 0;             // log2(subsampling_factor) (3)
    int conv_kernel_ = 0;          // K (9)
    int adapter_dim_ = 0;          // lfm.hidden_size (2048)
    int pos_emb_max_len_ = 0;      // reference pe buffer length (5000)
    bool bf16_pos_table_ = false;  // kF32: round the table as the bf16-then-float load does
    int64_t max_mel_frames_ = 0;

    // pre_encode
    Tensor sub_conv0_w_, sub_conv0_b_;         // [C, 9] F32, [C] F32
    std::vector<Tensor> sub_dw_w_, sub_dw_b_;  // per stage ≥ 1: [C, 9] F32, [C] F32
    std::vector<Tensor> sub_pw_w_, sub_pw_b_;  // per stage ≥ 1: [C, C], [C]
    Tensor sub_out_w_, sub_out_b_;             // [D, C·F'], [D]
    Tensor pos_table_;  // [2P-1, D] F32, row i = position P-1-i (unrounded sinusoids)
    std::vector<Layer> layers_;
    // adapter
    Tensor ad_norm_w_, ad_norm_b_;  // [D]
    Tensor ad_w1_, ad_b1_;          // [hidden, D], [hidden]
    Tensor ad_w2_, ad_b2_;          // [hidden, hidden], [hidden]
};

// NeMo's sinusoid table (RelPositionalEncoding.create_pe) for positions n_pos-1 … -(n_pos-1),
// computed in fp32 as PyTorch does: row i = position n_pos-1-i, [2·n_pos-1, d_model] row-major,
// pe[:, 2m] = sin(pos·div_m), pe[:, 2m+1] = cos(pos·div_m), div_m = exp(2m · -(ln 10000 /
// d_model)).
std::vector<float> conformer_pos_table(int64_t n_pos, int d_model);

}  // namespace voxrt::model
