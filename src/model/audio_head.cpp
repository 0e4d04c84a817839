#include "model/audio_head.h"

#include <cmath>

#include "core/check.h"

namespace voxrt::model {

namespace {
std::string nm(const char* prefix, int i, const char* rest) {
    return std::string(prefix) + std::to_string(i) + "." + rest;
}
}  // namespace

Expected<AudioHead> AudioHead::load(const AudioModelConfig& cfg, const io::SafeTensorsFile& f,
                                    WeightStore& store) {
    AudioHead a;
    // The depth input projection, the depthformer's projections and the codebook heads go
    // through fetch_matrix (quantized when the store quantizes); embeddings and norms as stored.
    const DepthformerConfig& dc = cfg.depthformer;
    a.Q_ = cfg.codebooks;
    a.V_ = cfg.audio_vocab;
    a.Dd_ = dc.dim;
    a.H_ = dc.num_heads;
    a.Hkv_ = dc.num_kv_heads;
    a.Dh_ = dc.head_dim;
    a.F_ = dc.ff_dim;
    a.D_ = cfg.lfm.hidden_size;
    a.eps_ = static_cast<float>(dc.norm_eps);
    const int64_t Q = a.Q_, V = a.V_, Dd = a.Dd_, Dh = a.Dh_, KV = a.Hkv_ * a.Dh_, F = a.F_,
                  D = a.D_;
    VOXRT_ASSIGN_OR_RETURN(a.depth_w_, store.fetch_matrix(f, "depth_linear.weight", {Q * Dd, D}));
    VOXRT_ASSIGN_OR_RETURN(a.depth_b_, store.fetch(f, "depth_linear.bias", {Q * Dd}));
    for (int l = 0; l < dc.layers; ++l) {
        DepthLayerWeights L;
        VOXRT_ASSIGN_OR_RETURN(
            L.operator_norm,
            store.fetch(f, nm("depthformer.layers.", l, "operator_norm.weight"), {Dd}));
        VOXRT_ASSIGN_OR_RETURN(
            L.ffn_norm, store.fetch(f, nm("depthformer.layers.", l, "ffn_norm.weight"), {Dd}));
        VOXRT_ASSIGN_OR_RETURN(
            L.qkv, store.fetch_matrix(f, nm("depthformer.layers.", l, "operator.qkv_proj.weight"),
                                      {Dd + 2 * KV, Dd}));
        VOXRT_ASSIGN_OR_RETURN(
            L.out_proj, store.fetch_matrix(
                            f, nm("depthformer.layers.", l, "operator.out_proj.weight"), {Dd, Dd}));
        VOXRT_ASSIGN_OR_RETURN(
            L.q_norm,
            store.fetch(
                f, nm("depthformer.layers.", l, "operator.bounded_attention.q_layernorm.weight"),
                {Dh}));
        VOXRT_ASSIGN_OR_RETURN(
            L.k_norm,
            store.fetch(
                f, nm("depthformer.layers.", l, "operator.bounded_attention.k_layernorm.weight"),
                {Dh}));
        VOXRT_ASSIGN_OR_RETURN(
            L.w1,
            store.fetch_matrix(f, nm("depthformer.layers.", l, "feed_forward.w1.weight"), {F, Dd}));
        VOXRT_ASSIGN_OR_RETURN(
            L.w3,
            store.fetch_matrix(f, nm("depthformer.layers.", l, "feed_forward.w3.weight"), {F, Dd}));
        VOXRT_ASSIGN_OR_RETURN(
            L.w2,
            store.fetch_matrix(f, nm("depthformer.layers.", l, "feed_forward.w2.weight"), {Dd, F}));
        a.layers_.push_back(L);
    }
    for (int i = 0; i < a.Q_; ++i) {
        VOXRT_ASSIGN_OR_RETURN(
            Tensor e, store.fetch(f, nm("depth_embeddings.", i, "embedding.weight"), {V, Dd}));
        VOXRT_ASSIGN_OR_RETURN(
            Tensor n, store.fetch(f, nm("depth_embeddings.", i, "embedding_norm.weight"), {Dd}));
        // tied: to_logits.weight is embedding.weight (a quantized head is a copy beside the
        // table, which lookups keep reading as stored)
        Tensor lg = e;
        if (!dc.tie || store.quant() != WeightQuant::kNone) {
            const char* name = dc.tie ? "embedding.weight" : "to_logits.weight";
            VOXRT_ASSIGN_OR_RETURN(
                lg, store.fetch_matrix(f, nm("depth_embeddings.", i, name), {V, Dd}, dc.tie));
        }
        a.emb_.push_back(e);
        a.emb_norm_.push_back(n);
        a.to_logits_.push_back(lg);
    }
    VOXRT_ASSIGN_OR_RETURN(a.audio_embedding_,
                           store.fetch(f, "audio_embedding.embedding.weight", {Q * V, D}));
    // liquid-audio precompute_freqs_cis: freqs = 1/θ^(arange(0,Dh,2)/Dh) in fp32, angle = t·freqs
    // (fp32 outer product), polar → complex64; it is a plain attribute, never cast to bf16.
    const int64_t half = Dh / 2;
    std::vector<float> c(static_cast<size_t>(Q * half)), s(static_cast<size_t>(Q * half));
    for (int64_t i = 0; i < half; ++i) {
        const float fr = 1.0f / std::pow(static_cast<float>(dc.rope_theta),
                                         static_cast<float>(2 * i) / static_cast<float>(Dh));
        for (int64_t p = 0; p < Q; ++p) {
            const float ang = static_cast<float>(p) * fr;
            c[static_cast<size_t>(p * half + i)] =
                static_cast<float>(std::cos(static_cast<double>(ang)));
            s[static_cast<size_t>(p * half + i)] =
                static_cast<float>(std::sin(static_cast<double>(ang)));
        }
    }
    VOXRT_ASSIGN_OR_RETURN(a.rope_cos_, store.upload_f32(std::move(c), {Q, half}));
    VOXRT_ASSIGN_OR_RETURN(a.rope_sin_, store.upload_f32(std::move(s), {Q, half}));
    return a;
}

Expected<AudioHeadState> AudioHead::new_state(const ops::Context& ctx) const {
    AudioHeadState st;
    const DType dt = ctx.act_dtype();
    for (size_t l = 0; l < layers_.size(); ++l) {
        const size_t bytes = static_cast<size_t>(Hkv_ * Q_ * Dh_) * dtype_size(dt);
        Buffer kb = Buffer::allocate(ctx.device, bytes), vb = Buffer::allocate(ctx.device, bytes);
        if (!kb.data() || !vb.data())
            return make_error(StatusCode::kOutOfMemory,
                              "[depthformer] cannot allocate its KV cache");
        st.k_cache.push_back(kb.view(dt, {Hkv_, Q_, Dh_}));
        st.v_cache.push_back(vb.view(dt, {Hkv_, Q_, Dh_}));
        st.buffers.push_back(std::move(kb));
        st.buffers.push_back(std::move(vb));
    }
    Buffer pb = Buffer::allocate(ctx.device, static_cast<size_t>(Q_) * 4);
    if (!pb.data())
        return make_error(StatusCode::kOutOfMemory, "[depthformer] cannot allocate positions");
    std::vector<int32_t> host(static_cast<size_t>(Q_));
    for (int i = 0; i < Q_; ++i) host[static_cast<size_t>(i)] = i;
    st.positions = pb.view(DType::kI32, {Q_});
    ops::copy(ctx, Tensor::make(host.data(), DType::kI32, Device::kCPU, {Q_}), st.positions);
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx));
    st.buffers.push_back(std::move(pb));
    for (size_t l = 0; l < layers_.size(); ++l) {
        const DepthLayerWeights& L = layers_[l];
        st.fused.push_back(ops::DepthformerLayer{L.operator_norm, L.ffn_norm, L.qkv, L.out_proj,
                                                 L.q_norm, L.k_norm, L.w1, L.w3, L.w2,
                                                 st.k_cache[l], st.v_cache[l]});
    }
    return st;
}

size_t AudioHead::scratch_bytes(const ops::Context& ctx, int64_t B) const {
    const DType dt = ctx.act_dtype();
    return arena_bytes(dt, B * Q_ * Dd_) + arena_bytes(dt, B * Dd_) * 7 +
           arena_bytes(dt, B * (Dd_ + 2 * Hkv_ * Dh_)) + arena_bytes(dt, B * 2 * F_) +
           arena_bytes(dt, B * V_) + 2 * arena_bytes(DType::kI32, B * Q_) +
           arena_bytes(DType::kI64, 4 * B) + 8192;  // + the rows' sampling table
}

Expected<AudioHeadBatchState> AudioHead::new_batch_state(const ops::Context& ctx,
                                                         int64_t max_rows) const {
    AudioHeadBatchState bs;
    bs.max_rows = max_rows;
    const DType dt = ctx.act_dtype();
    const int64_t S = max_rows * Q_;
    for (size_t l = 0; l < layers_.size(); ++l) {
        const size_t bytes = static_cast<size_t>(Hkv_ * S * Dh_) * dtype_size(dt);
        Buffer kb = Buffer::allocate(ctx.device, bytes), vb = Buffer::allocate(ctx.device, bytes);
        if (!kb.data() || !vb.data())
            return make_error(StatusCode::kOutOfMemory,
                              "[depthformer] cannot allocate a batch frame cache of %lld rows",
                              static_cast<long long>(max_rows));
        bs.k_cache.push_back(kb.view(dt, {Hkv_, S, Dh_}));
        bs.v_cache.push_back(vb.view(dt, {Hkv_, S, Dh_}));
        bs.buffers.push_back(std::move(kb));
        bs.buffers.push_back(std::move(vb));
    }
    Buffer pb = Buffer::allocate(ctx.device, static_cast<size_t>(2 * S) * 4);
    if (!pb.data())
        return make_error(StatusCode::kOutOfMemory, "[depthformer] cannot allocate positions");
    std::vector<int32_t> host(static_cast<size_t>(2 * S));
    for (int64_t i = 0; i < Q_; ++i)
        for (int64_t b = 0; b < max_rows; ++b) {
            host[static_cast<size_t>(i * max_rows + b)] = static_cast<int32_t>(b * Q_ + i);
            host[static_cast<size_t>(S + i * max_rows + b)] = static_cast<int32_t>(i);
        }
    Tensor both = pb.view(DType::kI32, {2 * Q_, max_rows});
    ops::copy(ctx, Tensor::make(host.data(), DType::kI32, Device::kCPU, {2 * Q_, max_rows}), both);
    bs.positions = both.rows(0, Q_);
    bs.rope_positions = both.rows(Q_, 2 * Q_);
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx));
    bs.buffers.push_back(std::move(pb));
    return bs;
}

void AudioHead::sample_frame(const ops::Context& ctx, AudioHeadState& st, const Tensor& h,
                             const FrameSampling& s, Arena& scratch, Tensor& codes,
                             Tensor* logits_out, const Tensor* forced) const {
    ops::ProfileRange range(ctx, "audio frame");
    if (ctx.fused && ctx.device != Device::kCPU) {  // the CPU has no fused frame kernel
        const DType dt = ctx.act_dtype();
        const size_t mark = scratch.mark();
        Tensor dall = scratch.alloc(dt, {1, Q_ * Dd_});
        ops::linear(ctx, h, depth_w_, &depth_b_, dall);

        // The loop below as one kernel where the backend has it (ops/fused_ops.h).
        ops::DepthformerFrame f;
        f.layers = st.fused.data();
        f.n_layers = static_cast<int>(st.fused.size());
        f.emb = emb_.data();
        f.emb_norm = emb_norm_.data();
        f.to_logits = to_logits_.data();
        f.rope_cos = rope_cos_;
        f.rope_sin = rope_sin_;
        f.n_heads = H_;
        f.n_kv_heads = Hkv_;
        f.eps = eps_;
        f.in = dall.reshape({Q_, Dd_});
        f.temperature = s.temperature;
        f.top_k = s.top_k;
        f.seed = s.seed;
        f.counters = s.counters;
        f.suppress_eos = s.suppress_eos;
        f.codes = codes;
        f.logits_out = logits_out;
        f.forced = forced;
        const bool ran = ops::depthformer_frame(ctx, f);
        scratch.release(mark);
        if (ran) return;
    }
    // The op sequence: the frame of one row, as sample_frames runs it for many (on this
    // sequence's own cache).
    const ops::RowSampling rs = row_sampling(s);
    const ops::SampleRows rows{&rs, 1, Tensor()};  // the single-row ops: nothing uploaded
    Tensor codes1 = codes.reshape({1, Q_});
    Tensor lg1;
    if (logits_out) lg1 = logits_out->reshape({1, Q_, V_});
    Tensor forced1;
    if (forced) forced1 = forced->reshape({1, Q_});
    const Tensor p1 = st.positions.reshape({Q_, 1});
    const FrameCache fc{&st.k_cache, &st.v_cache, p1, p1, false};
    run_frames(ctx, fc, h, rows, scratch, codes1, logits_out ? &lg1 : nullptr,
               forced ? &forced1 : nullptr);
}

ops::RowSampling AudioHead::row_sampling(const FrameSampling& s) const {
    ops::RowSampling r;
    r.temperature = s.greedy() ? 0.0f : s.temperature;
    r.top_k = s.top_k;
    r.seed = s.seed;
    r.counters = s.counters;
    r.forbid = s.suppress_eos ? V_ - 1 : -1;
    return r;
}

ops::SampleRows AudioHead::upload_frame_rows(const ops::Context& ctx,
                                             const std::vector<FrameSampling>& s,
                                             std::vector<ops::RowSampling>& host,
                                             Arena& scratch) const {
    host.clear();
    for (const FrameSampling& f : s) host.push_back(row_sampling(f));
    return ops::upload_sample_rows(ctx, host.data(), static_cast<int64_t>(host.size()), scratch);
}

void AudioHead::sample_frames(const ops::Context& ctx, AudioHeadBatchState& bs, const Tensor& h,
                              const std::vector<FrameSampling>& s, Arena& scratch, Tensor& codes,
                              Tensor* logits_out) const {
    ops::ProfileRange range(ctx, "audio frames (batch)");
    VOXRT_ASSERT(h.shape[0] <= bs.max_rows, "sample_frames: %lld rows, batch state of %lld",
                 static_cast<long long>(h.shape[0]), static_cast<long long>(bs.max_rows));
    // Each row's choice (its own temperature, top-k, seed and counters; end of audio forbidden or
    // not), uploaded once for the 8 codebooks; kept in scratch until the frame's end.
    const size_t mark = scratch.mark();
    std::vector<ops::RowSampling> host;
    const ops::SampleRows rows = upload_frame_rows(ctx, s, host, scratch);
    sample_frames(ctx, bs, h, rows, scratch, codes, logits_out);
    scratch.release(mark);
}

void AudioHead::sample_frames(const ops::Context& ctx, AudioHeadBatchState& bs, const Tensor& h,
                              const ops::SampleRows& rows, Arena& scratch, Tensor& codes,
                              Tensor* logits_out) const {
    ops::ProfileRange range(ctx, "audio frames (batch)");
    VOXRT_ASSERT(h.shape[0] <= bs.max_rows && rows.rows == h.shape[0],
                 "sample_frames: %lld rows, %lld samplings, batch state of %lld",
                 static_cast<long long>(h.shape[0]), static_cast<long long>(rows.rows),
                 static_cast<long long>(bs.max_rows));
    const FrameCache fc{&bs.k_cache, &bs.v_cache, bs.positions, bs.rope_positions, true};
    run_frames(ctx, fc, h, rows, scratch, codes, logits_out, nullptr);
}

// The op sequence of a frame for B rows (sample_frame is B = 1 on its own cache, sample_frames
// any B on the batch's). forced: [B, Q] codes fed back instead of the chosen ones (teacher
// forcing), or null.
void AudioHead::run_frames(const ops::Context& ctx, const FrameCache& fc, const Tensor& h,
                           const ops::SampleRows& rows, Arena& scratch, Tensor& codes,
                           Tensor* logits_out, const Tensor* forced) const {
    const int64_t B = h.shape[0];
    VOXRT_ASSERT(rows.rows == B, "sample_frames: %lld rows, %lld samplings",
                 static_cast<long long>(B), static_cast<long long>(rows.rows));
    const DType dt = ctx.act_dtype();
    const int64_t KV = Hkv_ * Dh_;
    const size_t mark = scratch.mark();
    Tensor prev = scratch.alloc(dt, {B, Dd_});
    Tensor di = scratch.alloc(dt, {B, Dd_});
    Tensor x = scratch.alloc(dt, {B, Dd_});
    Tensor n = scratch.alloc(dt, {B, Dd_});
    Tensor q = scratch.alloc(dt, {B, H_, Dh_});
    Tensor k = scratch.alloc(dt, {B, Hkv_, Dh_});
    Tensor v = scratch.alloc(dt, {B, Hkv_, Dh_});
    Tensor att = scratch.alloc(dt, {B, H_ * Dh_});
    Tensor o = scratch.alloc(dt, {B, Dd_});
    Tensor g1 = scratch.alloc(dt, {B, F_}), g3 = scratch.alloc(dt, {B, F_});
    Tensor logits = scratch.alloc(dt, {B, V_});
    Tensor chosen = scratch.alloc(DType::kI32, {Q_, B});  // codebook-major: row i = codebook i
    Tensor fed_t;
    if (forced) {
        fed_t = scratch.alloc(DType::kI32, {Q_, B});
        ops::transpose(ctx, forced->reshape({B, Q_}), fed_t);
    }
    Tensor q2 = q.reshape({B, H_ * Dh_}), k2 = k.reshape({B, KV}), v2 = v.reshape({B, KV});
    Tensor qr = q.reshape({B * H_, Dh_}), kr = k.reshape({B * Hkv_, Dh_});
    const float scale = 1.0f / std::sqrt(static_cast<float>(Dh_));
    // rows: each row's choice, uploaded by the caller (a lone sequence, whose step a session may
    // be capturing into a graph, has no table: the single-row ops).
    ops::zero(ctx, prev);
    for (int i = 0; i < Q_; ++i) {
        // x = depth_linear(h)[:, codebook i] + the previous code's embedding
        const Tensor wi = depth_w_.rows(i * Dd_, (i + 1) * Dd_);
        const Tensor bi = depth_b_.rows(i * Dd_, (i + 1) * Dd_);
        ops::linear(ctx, h, wi, &bi, di);
        ops::add(ctx, di, prev, x);
        const Tensor pos = fc.positions.row(i).rows(0, B);
        const Tensor rpos = fc.rope_positions.row(i).rows(0, B);
        for (size_t l = 0; l < layers_.size(); ++l) {
            const DepthLayerWeights& L = layers_[l];
            ops::rms_norm(ctx, x, L.operator_norm, eps_, ops::RmsStyle::kFused, n);
            ops::linear(ctx, n, L.qkv.rows(0, Dd_), nullptr, q2);
            ops::linear(ctx, n, L.qkv.rows(Dd_, Dd_ + KV), nullptr, k2);
            ops::linear(ctx, n, L.qkv.rows(Dd_ + KV, Dd_ + 2 * KV), nullptr, v2);
            ops::rms_norm(ctx, qr, L.q_norm, eps_, ops::RmsStyle::kFused, qr);
            ops::rms_norm(ctx, kr, L.k_norm, eps_, ops::RmsStyle::kFused, kr);
            ops::rope(ctx, q, rpos, rope_cos_, rope_sin_, ops::RopeStyle::kPairs);
            ops::rope(ctx, k, rpos, rope_cos_, rope_sin_, ops::RopeStyle::kPairs);
            Tensor& kc = (*fc.k)[l];
            Tensor& vc = (*fc.v)[l];
            ops::kv_write(ctx, k, v, pos, kc, vc);
            Tensor a3 = att.reshape({B, H_, Dh_});
            ops::attention(ctx, q, kc, vc, pos, scale, fc.windowed ? i + 1 : 0, a3);
            ops::linear(ctx, att, L.out_proj, nullptr, o);
            ops::add(ctx, o, x, x);
            ops::rms_norm(ctx, x, L.ffn_norm, eps_, ops::RmsStyle::kFused, n);
            ops::linear(ctx, n, L.w1, nullptr, g1);
            ops::linear(ctx, n, L.w3, nullptr, g3);
            ops::swiglu(ctx, g1, g3, g1);
            ops::linear(ctx, g1, L.w2, nullptr, o);
            ops::add(ctx, x, o, x);
        }
        ops::rms_norm(ctx, x, emb_norm_[static_cast<size_t>(i)], eps_, ops::RmsStyle::kFused, n);
        ops::linear(ctx, n, to_logits_[static_cast<size_t>(i)], nullptr, logits);
        Tensor ci = chosen.row(i).rows(0, B);
        ops::sample_rows(ctx, logits, rows, i, ci);
        if (logits_out) {
            for (int64_t b = 0; b < B; ++b) {
                Tensor dst = logits_out->reshape({B, Q_, V_}).row(b).rows(i, i + 1);
                ops::copy(ctx, logits.rows(b, b + 1), dst);
            }
        }
        const Tensor fed = forced ? fed_t.row(i).rows(0, B) : ci;
        ops::embedding(ctx, emb_[static_cast<size_t>(i)], fed, prev);
    }
    Tensor out = codes.reshape({B, Q_});
    if (B == 1) {
        ops::copy(ctx, chosen.reshape({1, Q_}), out);
    } else {
        ops::transpose(ctx, chosen.rows(0, Q_), out);
    }
    scratch.release(mark);
}

void AudioHead::embed_frames(const ops::Context& ctx, const Tensor& codes, Tensor& y) const {
    ops::embedding_bag(ctx, audio_embedding_, codes, V_, /*mean=*/false, y);
}

}  // namespace voxrt::model
