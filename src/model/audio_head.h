// The audio output path of LFM2-Audio: the "depthformer" (an RQ-transformer that emits the 8
// codebook codes of one 80 ms frame one after another) and the audio-frame embedding that feeds a
// generated frame back into the backbone.
//
//   D = depth_linear(h).view(Q, Dd)           h: normalized backbone output [1, D]
//   prev = 0
//   for i in 0..Q-1:
//       y = depthformer(D[i] + prev)           position i, KV cache over this frame only
//       logits_i = to_logits_i(rmsnorm_i(y))   [2049]
//       c_i = sample(logits_i)
//       prev = embedding_i[c_i]
//   next backbone input = Σ_i audio_embedding[c_i + 2049·i]
//
// Weights are immutable; AudioHeadState (per session) holds the per-frame KV cache.
#pragma once

#include <vector>

#include "core/arena.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "ops/fused_ops.h"
#include "ops/ops.h"

namespace voxrt::model {

struct DepthLayerWeights {
    Tensor operator_norm, ffn_norm;  // [Dd]
    Tensor qkv;                      // [Dd + 2·Hkv·Dh, Dd] (q rows, then k, then v)
    Tensor out_proj;                 // [Dd, Dd]
    Tensor q_norm, k_norm;           // [Dh]
    Tensor w1, w3;                   // [F, Dd]
    Tensor w2;                       // [Dd, F]
};

struct AudioHeadState {
    std::vector<Buffer> buffers;
    std::vector<Tensor> k_cache, v_cache;      // per layer [Hkv, Q, Dh]
    Tensor positions;                          // device I32 [Q] = 0..Q-1
    std::vector<ops::DepthformerLayer> fused;  // weights + these caches, for ops::depthformer_frame
};

// The depthformer's frame cache for a batch of up to max_rows sequences (sample_frames): the
// cache lives only within one frame, so a batch keeps one for all its rows instead of touching
// each sequence's own. Row b's codebook i sits at cache position b·Q + i.
struct AudioHeadBatchState {
    std::vector<Buffer> buffers;
    std::vector<Tensor> k_cache, v_cache;  // per layer [Hkv, max_rows·Q, Dh]
    Tensor positions;                      // device I32 [Q, max_rows]: b·Q + i (cache slots)
    Tensor rope_positions;                 // device I32 [Q, max_rows]: i (RoPE angles)
    int64_t max_rows = 0;
};

// How codes are chosen for one frame. Greedy when temperature <= 0 or top_k == 1 (as the
// reference). counters: device I32 [Q], the draw counter for each codebook (see ops::sample_top_k).
struct FrameSampling {
    float temperature = 0.0f;
    int top_k = 0;
    uint64_t seed = 0;
    const Tensor* counters = nullptr;
    // Never choose code 2048 (end of audio) in any codebook (benchmarks on random weights: keeps
    // generating, and every frame stays decodable).
    bool suppress_eos = false;
    bool greedy() const { return temperature <= 0.0f || top_k == 1; }
};

class AudioHead {
public:
    static Expected<AudioHead> load(const AudioModelConfig& cfg, const io::SafeTensorsFile& file,
                                    WeightStore& store);

    int codebooks() const { return Q_; }
    int vocab() const { return V_; }  // 2049

    Expected<AudioHeadState> new_state(const ops::Context& ctx) const;
    Expected<AudioHeadBatchState> new_batch_state(const ops::Context& ctx, int64_t max_rows) const;
    // Scratch for sample_frame (B = 1) or sample_frames of B sequences.
    size_t scratch_bytes(const ops::Context& ctx, int64_t B = 1) const;

    // h [1, D] → codes (device I32 [Q]). logits_out (optional, [Q, V] activation dtype) receives
    // each codebook's logits. forced (optional, device I32 [Q]): feed these codes back instead of
    // the chosen ones (teacher forcing for parity tests); codes still receives the choices.
    void sample_frame(const ops::Context& ctx, AudioHeadState& st, const Tensor& h,
                      const FrameSampling& s, Arena& scratch, Tensor& codes, Tensor* logits_out,
                      const Tensor* forced) const;

    // One frame for each of B <= bs.max_rows sequences at once (continuous batching): h [B, D]
    // (row i: sequence i's backbone output) → codes [B, Q] (device I32), each sequence with its own
    // sampling (s[i], counters included); the frame cache is the batch's (bs). Every op runs once
    // over the B rows (attention: each row sees only its own cache positions) except the
    // end-of-audio suppression and top-k draws, per row. Row i equals sample_frame() of that
    // sequence alone up to summation order (the op sequence, not the fused frame kernel).
    // logits_out (optional): [B, Q, V].
    void sample_frames(const ops::Context& ctx, AudioHeadBatchState& bs, const Tensor& h,
                       const std::vector<FrameSampling>& s, Arena& scratch, Tensor& codes,
                       Tensor* logits_out) const;
    // The rows' sampling as sample_frames uses it, uploaded once (on a GPU a table in `scratch`,
    // which must stay until the stream has passed the frame); `host` keeps the rows' entries.
    // Uploaded before a graph capture, it lets the frame itself be captured and replayed: the
    // table is data, so a replay takes the new rows' temperatures, seeds and counters.
    ops::SampleRows upload_frame_rows(const ops::Context& ctx, const std::vector<FrameSampling>& s,
                                      std::vector<ops::RowSampling>& host, Arena& scratch) const;
    // sample_frames with rows from upload_frame_rows: nothing is uploaded, so it may be captured.
    void sample_frames(const ops::Context& ctx, AudioHeadBatchState& bs, const Tensor& h,
                       const ops::SampleRows& rows, Arena& scratch, Tensor& codes,
                       Tensor* logits_out) const;

    // codes [N, Q] (device I32) → y [N, D] = Σ_i audio_embedding[codes[n,i] + 2049·i]
    void embed_frames(const ops::Context& ctx, const Tensor& codes, Tensor& y) const;

private:
    // The frame cache and positions run_frames uses: per layer [Hkv, S, Dh]; positions [Q, >= B]
    // (row i: each row's position for codebook i); window: attention sees only positions
    // p - i .. p (a batch's rows share the cache), 0 for a lone sequence's own cache.
    struct FrameCache {
        std::vector<Tensor>* k;
        std::vector<Tensor>* v;
        Tensor positions;       // cache slots
        Tensor rope_positions;  // RoPE angles (the codebook index)
        bool windowed;
    };
    void run_frames(const ops::Context& ctx, const FrameCache& fc, const Tensor& h,
                    const ops::SampleRows& rows, Arena& scratch, Tensor& codes, Tensor* logits_out,
                    const Tensor* forced) const;
    ops::RowSampling row_sampling(const FrameSampling& s) const;
    int Q_ = 8, V_ = 2049, Dd_ = 0, H_ = 0, Hkv_ = 0, Dh_ = 0, F_ = 0, D_ = 0;
    float eps_ = 1e-5f;
    Tensor depth_w_, depth_b_;  // [Q·Dd, D], [Q·Dd]
    std::vector<DepthLayerWeights> layers_;
    std::vector<Tensor> emb_, emb_norm_, to_logits_;  // per codebook [V, Dd], [Dd], [V, Dd]
    Tensor audio_embedding_;                          // [Q·V, D]
    Tensor rope_cos_, rope_sin_;                      // [Q, Dh/2] F32
};

}  // namespace voxrt::model
