// The LFM2 network (transformers Lfm2Model): a stack of short-convolution and grouped-query
// attention blocks with SwiGLU feed-forwards and RMSNorms, followed by the final norm. Used twice:
// as the audio model's backbone ("lfm.*", bf16) and inside the LFM2.5 detokenizer ("lfm.*" of
// audio_detokenizer/, fp32, sliding window).
//
// Lfm2Network holds immutable weights (shared by sessions); Lfm2State holds one sequence's
// per-layer memory: KV caches [Hkv, S, Dh] for attention layers and [K-1, D] input history for
// conv layers. forward() appends T positions to the state, so prefill, incremental multi-turn
// prefill and single-step decode are the same call.
#pragma once

#include <string>
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

struct Lfm2LayerWeights {
    LayerKind kind = LayerKind::kConv;
    Tensor operator_norm;  // [D]
    Tensor ffn_norm;       // [D]
    Tensor w1, w3;         // [F, D]
    Tensor w2;             // [D, F]
    // conv layers: in_proj [3D, D] and its rows split into the B, C and x projections (views)
    Tensor in_proj, in_b, in_c, in_x;
    Tensor conv;      // [D, 1, K]
    Tensor out_proj;  // [D, D]
    // attention layers
    Tensor q_proj;          // [H·Dh, D]
    Tensor k_proj, v_proj;  // [Hkv·Dh, D]
    Tensor q_norm, k_norm;  // [Dh]
};

struct Lfm2State {
    std::vector<Buffer> buffers;            // conv states
    std::vector<Buffer> kv_buffers;         // per attention layer: its K, then its V
    std::vector<Tensor> k_cache, v_cache;   // per layer (empty for conv layers) [Hkv, S, Dh]
    std::vector<Tensor> conv_state;         // per layer (empty for attention layers) [K-1, D]
    int capacity = 0;                       // S: positions the caches hold now
    std::vector<ops::Lfm2StepLayer> fused;  // weights + this state, for ops::lfm2_decode_step
};

class Lfm2Network {
public:
    struct Options {
        // The official bf16 load builds the model (and with it the RoPE inv_freq buffer) in bf16,
        // its float32 load in fp32; the detokenizer stays fp32. true: round inv_freq to bf16
        // before building cos/sin (LfmAudioModel sets it for kBF16 only).
        bool bf16_inv_freq = true;
        int max_positions = 4096;  // rows of the cos/sin tables (0: none; callers of forward_rows
                                   // bring their own)
        bool need_embedding = true;
        // > 0: attention sees only the last `sliding_window` positions (the detokenizer's mask);
        // 0: full causal attention (the backbone; its layer_types say "full_attention").
        int sliding_window = 0;
        // Quantize the projections (attention q/k/v/out, conv in/out, FFN w1/w2/w3) and the tied
        // text head with the store's WeightQuant (WeightStore::fetch_matrix).
        bool quantize = false;
    };

    static Expected<Lfm2Network> load(const Lfm2Config& cfg, const io::SafeTensorsFile& file,
                                      const std::string& prefix, WeightStore& store,
                                      const Options& opt);

    const Lfm2Config& config() const { return cfg_; }
    const Tensor& embed_tokens() const { return embed_tokens_; }  // [V, D] (lookups)
    // The tied text head [V, D]: embed_tokens(), or its quantized copy (Options::quantize).
    const Tensor& text_head() const { return text_head_; }
    int max_positions() const { return max_positions_; }

    // Allocates a state with room for `capacity` positions (activation dtype of ctx).
    Expected<Lfm2State> new_state(const ops::Context& ctx, int capacity) const;
    // Reallocates the KV caches to S = `capacity` rows, keeping the first min(old S, capacity)
    // rows of every head (queued on ctx, then synchronized so that the old caches can go) and
    // zeroing the rest. The caches' addresses change: anything that captured them (a replayed
    // graph) must be made again. kOutOfMemory leaves the state as it was.
    Status resize_kv(const ops::Context& ctx, Lfm2State& st, int capacity) const;
    void reset_state(const ops::Context& ctx, Lfm2State& st) const;

    // Scratch bytes forward() needs for T rows.
    size_t scratch_bytes(const ops::Context& ctx, int64_t T) const;

    // x [T, D] (activation dtype) at positions pos (device I32 [T], consecutive, continuing the
    // state) → out [T, D] after the final norm. x is clobbered.
    void forward(const ops::Context& ctx, Lfm2State& st, Tensor& x, const Tensor& pos,
                 Arena& scratch, Tensor& out) const;

    // Per-layer memory as forward_rows() uses it (an Lfm2State's, or a caller's own arrangement):
    // conv_state[l] for conv layers, k_cache[l] / v_cache[l] for attention layers.
    struct Memory {
        std::vector<Tensor>* conv_state;
        std::vector<Tensor>* k_cache;
        std::vector<Tensor>* v_cache;
    };
    // The general form of forward(): RoPE angles come from rows `rope_pos` of the caller's tables
    // cos/sin [P, Dh/2]; KV writes and attention use cache rows `rows` (device I32 [T]), which may
    // differ from positions (the detokenizer keeps a compacted sliding window).
    void forward_rows(const ops::Context& ctx, const Memory& mem, Tensor& x, const Tensor& rope_pos,
                      const Tensor& cos, const Tensor& sin, const Tensor& rows, Arena& scratch,
                      Tensor& out) const;

    // One decode step for each of B sequences at once (continuous batching): row i of x [B, D]
    // is sequence i's input at position pos[i] (device I32 [B]), appended to mems[i]; out [B, D].
    // The projections and the FFN run once over the B rows (the weights are read once for the
    // batch); each attention layer's KV writes and attention, and each conv layer's short
    // convolution, run once over all rows, each row on its own cache or conv state
    // (ops::kv_write_rows / attention_rows / short_conv_rows).
    // Row i equals forward() of that sequence alone up to summation order (the op sequence, not
    // the fused decode kernel). x is clobbered. Uses scratch_bytes(ctx, B).
    void forward_batch(const ops::Context& ctx, const std::vector<Memory>& mems, Tensor& x,
                       const Tensor& pos, Arena& scratch, Tensor& out) const;

    // forward_batch in two halves, for a caller that replays the step from a graph (a GPU): the
    // per-row tables made on the host, then the step reading them from a device tensor the caller
    // uploaded them to, uploading nothing itself (so it can be captured). The tables are I64
    // [batch_table_size(B)]: for layer l and row i, at (l·B + i)·3 an attention layer's K and V
    // cache addresses and cache length S; at 3·L·B + l·B + i a conv layer's state address.
    // max_s: the largest S of any row (the attention's chunk count depends on it, so a graph
    // holds for one B and one max_s).
    struct BatchTables {
        std::vector<int64_t> host;
        int64_t max_s = 0;
    };
    int64_t batch_table_size(int64_t B) const {
        return static_cast<int64_t>(layers_.size()) * B * 4;
    }
    void batch_tables(const std::vector<Memory>& mems, BatchTables& t) const;
    void forward_batch_tables(const ops::Context& ctx, const std::vector<Memory>& mems,
                              const Tensor& table, int64_t max_s, Tensor& x, const Tensor& pos,
                              Arena& scratch, Tensor& out) const;

    // Rows [begin, end) of a forward_many call: consecutive positions of one sequence, on *mem.
    struct Segment {
        const Memory* mem;
        int64_t begin, end;
    };
    // forward_rows for several sequences at once (the detokenizer of many conversations): rows of
    // x [T, D] are grouped in segments, each continuing its own memory; rope_pos, cos, sin and
    // rows as in forward_rows, over all T rows. The norms, projections and FFN run once over the
    // T rows; each segment's short convolutions, KV writes and attention on its own memory. A
    // segment's rows equal forward_rows of that sequence alone up to the products' summation
    // order (the same bits where the products' row results do not depend on the row count).
    void forward_many(const ops::Context& ctx, const Segment* segs, size_t n_segs, Tensor& x,
                      const Tensor& rope_pos, const Tensor& cos, const Tensor& sin,
                      const Tensor& rows, Arena& scratch, Tensor& out) const {
        forward_segments(ctx, segs, n_segs, x, rope_pos, cos, sin, rows, scratch, out);
    }

    // The prefill of several sequences at once (a batch's new turns): rows of x [T, D] in
    // segments, each continuing its own memory at positions pos (device I32 [T]); the network's
    // own RoPE tables. A segment's rows equal forward() of that sequence alone up to the
    // products' summation order. x is clobbered; uses scratch_bytes(ctx, T).
    void forward_prefill_many(const ops::Context& ctx, const Segment* segs, size_t n_segs,
                              Tensor& x, const Tensor& pos, Arena& scratch, Tensor& out) const {
        forward_segments(ctx, segs, n_segs, x, pos, rope_cos_, rope_sin_, pos, scratch, out);
    }

private:
    // A decode batch's per-row state (forward_batch: one row per segment): each attention
    // layer's per-row caches, so that its KV writes and attention run once over all rows, and on
    // a GPU each conv layer's table of state addresses (empty on the CPU, whose ops take the
    // states themselves).
    struct RowTables {
        std::vector<ops::RowCaches> kv;
        std::vector<Tensor> conv;
    };
    void forward_segments(const ops::Context& ctx, const Segment* segs, size_t n_segs, Tensor& x,
                          const Tensor& rope_pos, const Tensor& cos, const Tensor& sin,
                          const Tensor& rows, Arena& scratch, Tensor& out,
                          const RowTables* row_tables = nullptr) const;

    Lfm2Config cfg_;
    Tensor embed_tokens_;
    Tensor text_head_;
    Tensor final_norm_;
    Tensor rope_cos_, rope_sin_;  // [P, Dh/2] F32
    int max_positions_ = 0;
    int window_ = 0;
    std::vector<Lfm2LayerWeights> layers_;
};

}  // namespace voxrt::model
