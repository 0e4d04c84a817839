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
    return arena_bytes(dt, B * Q_ * Dd_) + arena_bytes(dt, B * Dd_) * 6 +
           arena_bytes(dt, B * (Dd_ + 2 * Hkv_ * Dh_)) + arena_bytes(dt, B * 2 * F_) +
           arena_bytes(dt, B * V_) + 4096;
}

void AudioHead::sample_frame(const ops::Context& ctx, AudioHeadState& st, const Tensor& h,
                             const FrameSampling& s, Arena& scratch, Tensor& codes,
                             Tensor* logits_out, const Tensor* forced) const {
    ops::ProfileRange range(ctx, "audio frame");
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
    if (ops::depthformer_frame(ctx, f)) {
        scratch.release(mark);
        return;
    }
    // The op sequence: the frame of one row, as sample_frames runs it for many.
    AudioHeadState* one[] = {&st};
    const std::vector<AudioHeadState*> sts(one, one + 1);
    const std::vector<FrameSampling> ss(1, s);
    Tensor codes1 = codes.reshape({1, Q_});
    Tensor lg1;
    if (logits_out) lg1 = logits_out->reshape({1, Q_, V_});
    Tensor forced1;
    if (forced) forced1 = forced->reshape({1, Q_});
    run_frames(ctx, sts, dall, ss, scratch, codes1, logits_out ? &lg1 : nullptr,
               forced ? &forced1 : nullptr);
    scratch.release(mark);
}

void AudioHead::sample_frames(const ops::Context& ctx, const std::vector<AudioHeadState*>& st,
                              const Tensor& h, const std::vector<FrameSampling>& s, Arena& scratch,
                              Tensor& codes, Tensor* logits_out) const {
    ops::ProfileRange range(ctx, "audio frames (batch)");
    const size_t mark = scratch.mark();
    Tensor dall = scratch.alloc(ctx.act_dtype(), {h.shape[0], Q_ * Dd_});
    ops::linear(ctx, h, depth_w_, &depth_b_, dall);
    run_frames(ctx, st, dall, s, scratch, codes, logits_out, nullptr);
    scratch.release(mark);
}

// The op sequence of a frame for B rows (sample_frame is B = 1, sample_frames any B), from
// dall [B, Q·Dd] = depth_linear(h). forced: [B, Q] codes fed back instead of the chosen ones
// (teacher forcing), or null.
void AudioHead::run_frames(const ops::Context& ctx, const std::vector<AudioHeadState*>& st,
                           const Tensor& dall, const std::vector<FrameSampling>& s, Arena& scratch,
                           Tensor& codes, Tensor* logits_out, const Tensor* forced) const {
    const int64_t B = dall.shape[0];
    VOXRT_ASSERT(static_cast<int64_t>(st.size()) == B && static_cast<int64_t>(s.size()) == B,
                 "sample_frames: %lld rows, %zu states, %zu samplings", static_cast<long long>(B),
                 st.size(), s.size());
    const DType dt = ctx.act_dtype();
    const int64_t QKV = Dd_ + 2 * Hkv_ * Dh_;
    const size_t esz = dtype_size(dt);
    const size_t mark = scratch.mark();
    Tensor prev = scratch.alloc(dt, {B, Dd_});
    Tensor x = scratch.alloc(dt, {B, Dd_});
    Tensor n = scratch.alloc(dt, {B, Dd_});
    Tensor qkv = scratch.alloc(dt, {B, QKV});
    Tensor att = scratch.alloc(dt, {B, H_ * Dh_});
    Tensor o = scratch.alloc(dt, {B, Dd_});
    Tensor g1 = scratch.alloc(dt, {B, F_}), g3 = scratch.alloc(dt, {B, F_});
    Tensor logits = scratch.alloc(dt, {B, V_});
    ops::zero(ctx, prev);
    const Tensor codes2 = codes.reshape({B, Q_});
    for (int i = 0; i < Q_; ++i) {
        // x[b] = depthformer_in[b][i] + previous code embedding[b]
        for (int64_t b = 0; b < B; ++b) {
            const Tensor di = Tensor::make(
                static_cast<char*>(dall.data) + static_cast<size_t>(b * Q_ * Dd_ + i * Dd_) * esz,
                dt, ctx.device, {1, Dd_});
            const Tensor pb = prev.rows(b, b + 1);
            Tensor xb = x.rows(b, b + 1);
            ops::add(ctx, di, pb, xb);
        }
        for (size_t l = 0; l < layers_.size(); ++l) {
            const DepthLayerWeights& L = layers_[l];
            ops::rms_norm(ctx, x, L.operator_norm, eps_, ops::RmsStyle::kFused, n);
            ops::linear(ctx, n, L.qkv, nullptr, qkv);
            for (int64_t b = 0; b < B; ++b) {  // each sequence's own frame cache
                AudioHeadState& sb = *st[static_cast<size_t>(b)];
                char* row = static_cast<char*>(qkv.data) + static_cast<size_t>(b * QKV) * esz;
                Tensor q = Tensor::make(row, dt, ctx.device, {1, H_, Dh_});
                Tensor k = Tensor::make(row + static_cast<size_t>(Dd_) * esz, dt, ctx.device,
                                        {1, Hkv_, Dh_});
                Tensor v = Tensor::make(row + static_cast<size_t>(Dd_ + Hkv_ * Dh_) * esz, dt,
                                        ctx.device, {1, Hkv_, Dh_});
                Tensor qr = q.reshape({H_, Dh_}), kr = k.reshape({Hkv_, Dh_});
                Tensor pos = sb.positions.rows(i, i + 1);
                Tensor ab = att.rows(b, b + 1).reshape({1, H_, Dh_});
                ops::rms_norm(ctx, qr, L.q_norm, eps_, ops::RmsStyle::kFused, qr);
                ops::rms_norm(ctx, kr, L.k_norm, eps_, ops::RmsStyle::kFused, kr);
                ops::rope(ctx, q, pos, rope_cos_, rope_sin_, ops::RopeStyle::kPairs);
                ops::rope(ctx, k, pos, rope_cos_, rope_sin_, ops::RopeStyle::kPairs);
                ops::kv_write(ctx, k, v, pos, sb.k_cache[l], sb.v_cache[l]);
                ops::attention(ctx, q, sb.k_cache[l], sb.v_cache[l], pos,
                               1.0f / std::sqrt(static_cast<float>(Dh_)), 0, ab);
            }
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
        for (int64_t b = 0; b < B; ++b) {
            const FrameSampling& sb = s[static_cast<size_t>(b)];
            Tensor lg = logits.rows(b, b + 1);
            if (sb.suppress_eos) ops::set_value(ctx, lg, V_ - 1, -INFINITY);
            Tensor ci = codes2.row(b).rows(i, i + 1);
            if (sb.greedy()) {
                ops::argmax(ctx, lg, ci);
            } else {
                Tensor ctr = sb.counters->rows(i, i + 1);
                ops::sample_top_k(ctx, lg, sb.temperature, sb.top_k, sb.seed, ctr, ci);
            }
            if (logits_out) {
                Tensor dst = logits_out->reshape({B, Q_, V_}).row(b).rows(i, i + 1);
                ops::copy(ctx, lg, dst);
            }
            Tensor pb = prev.rows(b, b + 1);
            const Tensor fed = forced ? forced->reshape({B, Q_}).row(b).rows(i, i + 1) : ci;
            ops::embedding(ctx, emb_[static_cast<size_t>(i)], fed, pb);
        }
    }
    scratch.release(mark);
}

void AudioHead::embed_frames(const ops::Context& ctx, const Tensor& codes, Tensor& y) const {
    ops::embedding_bag(ctx, audio_embedding_, codes, V_, /*mean=*/false, y);
}

}  // namespace voxrt::model
