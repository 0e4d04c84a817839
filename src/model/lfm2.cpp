#include "model/lfm2.h"

#include <algorithm>
#include <cmath>

#include "core/bf16.h"
#include "core/check.h"

namespace voxrt::model {

namespace {

std::string layer_name(const std::string& prefix, int i, const char* rest) {
    return prefix + "layers." + std::to_string(i) + "." + rest;
}

}  // namespace

Expected<Lfm2Network> Lfm2Network::load(const Lfm2Config& cfg, const io::SafeTensorsFile& f,
                                        const std::string& prefix, WeightStore& store,
                                        const Options& opt) {
    Lfm2Network n;
    n.cfg_ = cfg;
    const int64_t D = cfg.hidden_size, F = cfg.ff_dim, H = cfg.num_heads, Hkv = cfg.num_kv_heads,
                  Dh = cfg.head_dim, K = cfg.conv_kernel;
    // Projections are quantized when asked (opt.quantize and the store's WeightQuant); norms, the
    // conv taps and the embedding table stay as stored.
    auto matrix = [&](const std::string& name, const std::vector<int64_t>& shape) {
        return opt.quantize ? store.fetch_matrix(f, name, shape) : store.fetch(f, name, shape);
    };
    if (opt.need_embedding) {
        VOXRT_ASSIGN_OR_RETURN(n.embed_tokens_,
                               store.fetch(f, prefix + "embed_tokens.weight", {cfg.vocab_size, D}));
        // The tied text head: the table itself, or a quantized copy of it beside the table that
        // lookups keep reading.
        n.text_head_ = n.embed_tokens_;
        if (opt.quantize && store.quant() != WeightQuant::kNone) {
            VOXRT_ASSIGN_OR_RETURN(
                n.text_head_,
                store.fetch_matrix(f, prefix + "embed_tokens.weight", {cfg.vocab_size, D},
                                   /*tied=*/true));
        }
    }
    VOXRT_ASSIGN_OR_RETURN(n.final_norm_, store.fetch(f, prefix + "embedding_norm.weight", {D}));
    for (int i = 0; i < cfg.n_layers(); ++i) {
        Lfm2LayerWeights L;
        L.kind = cfg.layers[static_cast<size_t>(i)];
        VOXRT_ASSIGN_OR_RETURN(L.operator_norm,
                               store.fetch(f, layer_name(prefix, i, "operator_norm.weight"), {D}));
        VOXRT_ASSIGN_OR_RETURN(L.ffn_norm,
                               store.fetch(f, layer_name(prefix, i, "ffn_norm.weight"), {D}));
        VOXRT_ASSIGN_OR_RETURN(L.w1,
                               matrix(layer_name(prefix, i, "feed_forward.w1.weight"), {F, D}));
        VOXRT_ASSIGN_OR_RETURN(L.w3,
                               matrix(layer_name(prefix, i, "feed_forward.w3.weight"), {F, D}));
        VOXRT_ASSIGN_OR_RETURN(L.w2,
                               matrix(layer_name(prefix, i, "feed_forward.w2.weight"), {D, F}));
        if (L.kind == LayerKind::kConv) {
            VOXRT_ASSIGN_OR_RETURN(
                L.in_proj, matrix(layer_name(prefix, i, "conv.in_proj.weight"), {3 * D, D}));
            L.in_b = L.in_proj.rows(0, D);
            L.in_c = L.in_proj.rows(D, 2 * D);
            L.in_x = L.in_proj.rows(2 * D, 3 * D);
            VOXRT_ASSIGN_OR_RETURN(
                L.conv, store.fetch(f, layer_name(prefix, i, "conv.conv.weight"), {D, 1, K}));
            VOXRT_ASSIGN_OR_RETURN(L.out_proj,
                                   matrix(layer_name(prefix, i, "conv.out_proj.weight"), {D, D}));
        } else {
            VOXRT_ASSIGN_OR_RETURN(
                L.q_proj, matrix(layer_name(prefix, i, "self_attn.q_proj.weight"), {H * Dh, D}));
            VOXRT_ASSIGN_OR_RETURN(
                L.k_proj, matrix(layer_name(prefix, i, "self_attn.k_proj.weight"), {Hkv * Dh, D}));
            VOXRT_ASSIGN_OR_RETURN(
                L.v_proj, matrix(layer_name(prefix, i, "self_attn.v_proj.weight"), {Hkv * Dh, D}));
            VOXRT_ASSIGN_OR_RETURN(
                L.out_proj,
                matrix(layer_name(prefix, i, "self_attn.out_proj.weight"), {D, H * Dh}));
            VOXRT_ASSIGN_OR_RETURN(
                L.q_norm,
                store.fetch(f, layer_name(prefix, i, "self_attn.q_layernorm.weight"), {Dh}));
            VOXRT_ASSIGN_OR_RETURN(
                L.k_norm,
                store.fetch(f, layer_name(prefix, i, "self_attn.k_layernorm.weight"), {Dh}));
        }
        n.layers_.push_back(L);
    }
    // RoPE tables, as transformers computes them: inv_freq = 1 / θ^(2i/Dh) in fp32 (bf16-rounded
    // when the module was built in bf16; exact in the float32 load), freqs = inv_freq · position in
    // fp32, then cos/sin.
    const int64_t half = Dh / 2;
    const int P = opt.max_positions;
    n.window_ = opt.sliding_window;
    if (P <= 0) return n;  // the caller supplies RoPE tables to forward_rows()
    std::vector<float> inv(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
        float e = static_cast<float>(2 * i) / static_cast<float>(Dh);
        float v = 1.0f / std::pow(static_cast<float>(cfg.rope_theta), e);
        inv[static_cast<size_t>(i)] = opt.bf16_inv_freq ? round_bf16(v) : v;
    }
    std::vector<float> c(static_cast<size_t>(P * half)), s(static_cast<size_t>(P * half));
    for (int p = 0; p < P; ++p)
        for (int64_t i = 0; i < half; ++i) {
            const float fr = static_cast<float>(p) * inv[static_cast<size_t>(i)];
            c[static_cast<size_t>(p * half + i)] =
                static_cast<float>(std::cos(static_cast<double>(fr)));
            s[static_cast<size_t>(p * half + i)] =
                static_cast<float>(std::sin(static_cast<double>(fr)));
        }
    VOXRT_ASSIGN_OR_RETURN(n.rope_cos_, store.upload_f32(std::move(c), {P, half}));
    VOXRT_ASSIGN_OR_RETURN(n.rope_sin_, store.upload_f32(std::move(s), {P, half}));
    n.max_positions_ = P;
    return n;
}

Expected<Lfm2State> Lfm2Network::new_state(const ops::Context& ctx, int capacity) const {
    if (capacity > max_positions_)
        return make_error(StatusCode::kOutOfRange,
                          "[lfm2] state capacity %d exceeds the %d positions prepared", capacity,
                          max_positions_);
    Lfm2State st;
    st.capacity = capacity;
    const DType dt = ctx.act_dtype();
    const int64_t D = cfg_.hidden_size, Hkv = cfg_.num_kv_heads, Dh = cfg_.head_dim,
                  K = cfg_.conv_kernel;
    for (const auto& L : layers_) {
        if (L.kind == LayerKind::kAttention) {
            const size_t bytes = static_cast<size_t>(Hkv * capacity * Dh) * dtype_size(dt);
            Buffer kb = Buffer::allocate(ctx.device, bytes),
                   vb = Buffer::allocate(ctx.device, bytes);
            if (!kb.data() || !vb.data())
                return make_error(StatusCode::kOutOfMemory,
                                  "[lfm2] cannot allocate a KV cache of 2 x %zu bytes", bytes);
            st.k_cache.push_back(kb.view(dt, {Hkv, capacity, Dh}));
            st.v_cache.push_back(vb.view(dt, {Hkv, capacity, Dh}));
            st.conv_state.emplace_back();
            st.kv_buffers.push_back(std::move(kb));
            st.kv_buffers.push_back(std::move(vb));
        } else {
            Buffer cb =
                Buffer::allocate(ctx.device, static_cast<size_t>((K - 1) * D) * dtype_size(dt));
            if (!cb.data())
                return make_error(StatusCode::kOutOfMemory, "[lfm2] cannot allocate conv state");
            st.conv_state.push_back(cb.view(dt, {K - 1, D}));
            st.k_cache.emplace_back();
            st.v_cache.emplace_back();
            st.buffers.push_back(std::move(cb));
        }
    }
    for (size_t l = 0; l < layers_.size(); ++l) {
        const Lfm2LayerWeights& L = layers_[l];
        ops::Lfm2StepLayer f;
        f.attention = L.kind == LayerKind::kAttention;
        f.operator_norm = L.operator_norm;
        f.ffn_norm = L.ffn_norm;
        f.w1 = L.w1;
        f.w3 = L.w3;
        f.w2 = L.w2;
        f.out_proj = L.out_proj;
        f.in_proj = L.in_proj;
        f.conv = L.conv;
        f.conv_state = st.conv_state[l];
        f.q_proj = L.q_proj;
        f.k_proj = L.k_proj;
        f.v_proj = L.v_proj;
        f.q_norm = L.q_norm;
        f.k_norm = L.k_norm;
        f.k_cache = st.k_cache[l];
        f.v_cache = st.v_cache[l];
        st.fused.push_back(f);
    }
    reset_state(ctx, st);
    return st;
}

Status Lfm2Network::resize_kv(const ops::Context& ctx, Lfm2State& st, int capacity) const {
    if (capacity == st.capacity) return Status::ok();
    if (capacity < 1 || capacity > max_positions_)
        return make_error(StatusCode::kOutOfRange,
                          "[lfm2] KV capacity %d outside 1 .. the %d positions prepared", capacity,
                          max_positions_);
    const DType dt = ctx.act_dtype();
    const int64_t Hkv = cfg_.num_kv_heads, Dh = cfg_.head_dim,
                  keep = std::min(capacity, st.capacity);
    const size_t bytes = static_cast<size_t>(Hkv * capacity * Dh) * dtype_size(dt);
    std::vector<Buffer> fresh;  // every new buffer first: a failure changes nothing
    for (size_t l = 0; l < layers_.size(); ++l) {
        if (layers_[l].kind != LayerKind::kAttention) continue;
        for (int kv = 0; kv < 2; ++kv) {
            fresh.push_back(Buffer::allocate(ctx.device, bytes));  // zeroed
            if (!fresh.back().data())
                return make_error(StatusCode::kOutOfMemory,
                                  "[lfm2] cannot grow the KV cache to %d positions (2 x %zu bytes "
                                  "per attention layer)",
                                  capacity, bytes);
        }
    }
    size_t b = 0;
    for (size_t l = 0; l < layers_.size(); ++l) {
        if (layers_[l].kind != LayerKind::kAttention) continue;
        Tensor* caches[2] = {&st.k_cache[l], &st.v_cache[l]};
        for (Tensor* old : caches) {
            Tensor now = fresh[b++].view(dt, {Hkv, capacity, Dh});
            for (int64_t h = 0; h < Hkv && keep > 0; ++h) {  // a head's rows are contiguous
                const Tensor src = old->rows(h, h + 1).reshape({st.capacity, Dh}).rows(0, keep);
                Tensor dst = now.rows(h, h + 1).reshape({capacity, Dh}).rows(0, keep);
                ops::copy(ctx, src, dst);
            }
            *old = now;
        }
        if (l < st.fused.size()) {
            st.fused[l].k_cache = st.k_cache[l];
            st.fused[l].v_cache = st.v_cache[l];
        }
    }
    // The copies read the old caches: done before those are freed.
    const Status done = ops::synchronize(ctx);
    st.kv_buffers = std::move(fresh);
    st.capacity = capacity;
    return done;
}

void Lfm2Network::reset_state(const ops::Context& ctx, Lfm2State& st) const {
    for (auto& t : st.conv_state)
        if (!t.empty()) ops::zero(ctx, t);
    for (auto& t : st.k_cache)
        if (!t.empty()) ops::zero(ctx, t);
    for (auto& t : st.v_cache)
        if (!t.empty()) ops::zero(ctx, t);
}

size_t Lfm2Network::scratch_bytes(const ops::Context& ctx, int64_t T) const {
    const DType dt = ctx.act_dtype();
    const int64_t D = cfg_.hidden_size, F = cfg_.ff_dim;
    const int64_t Hd = cfg_.num_heads * cfg_.head_dim, Kd = cfg_.num_kv_heads * cfg_.head_dim;
    size_t b = 0;
    b += arena_bytes(dt, T * D) * 5;                                 // h, b, c, xx/conv, out
    b += arena_bytes(dt, T * Hd) * 2 + arena_bytes(dt, T * Kd) * 2;  // q, attn, k, v
    b += arena_bytes(dt, T * F) * 2;                                 // w1, w3 outputs
    b += arena_bytes(DType::kI64, batch_table_size(T));              // forward_batch's tables
    return b + 4096;
}

void Lfm2Network::forward(const ops::Context& ctx, Lfm2State& st, Tensor& x, const Tensor& pos,
                          Arena& scratch, Tensor& out) const {
    ops::ProfileRange range(ctx, x.shape[0] == 1 ? "backbone step" : "backbone rows");
    if (x.shape[0] == 1 && window_ == 0 && !st.fused.empty()) {
        // A decode step as one kernel where the backend has it (ops/fused_ops.h); forward_rows
        // below is its definition.
        ops::Lfm2Step s;
        s.layers = st.fused.data();
        s.n_layers = static_cast<int>(st.fused.size());
        s.final_norm = final_norm_;
        s.rope_cos = rope_cos_;
        s.rope_sin = rope_sin_;
        s.n_heads = cfg_.num_heads;
        s.n_kv_heads = cfg_.num_kv_heads;
        s.eps = static_cast<float>(cfg_.norm_eps);
        s.x = x;
        s.pos = pos;
        s.out = out;
        if (ops::lfm2_decode_step(ctx, s)) return;
    }
    const Memory mem{&st.conv_state, &st.k_cache, &st.v_cache};
    forward_rows(ctx, mem, x, pos, rope_cos_, rope_sin_, pos, scratch, out);
}

void Lfm2Network::forward_rows(const ops::Context& ctx, const Memory& mem, Tensor& x,
                               const Tensor& rope_pos, const Tensor& cos, const Tensor& sin,
                               const Tensor& rows, Arena& scratch, Tensor& out) const {
    const Segment seg{&mem, 0, x.shape[0]};
    forward_segments(ctx, &seg, 1, x, rope_pos, cos, sin, rows, scratch, out);
}

void Lfm2Network::batch_tables(const std::vector<Memory>& mems, BatchTables& t) const {
    const size_t L = layers_.size(), b = mems.size();
    t.host.assign(static_cast<size_t>(batch_table_size(static_cast<int64_t>(b))), 0);
    t.max_s = 0;
    for (size_t l = 0; l < L; ++l) {
        for (size_t i = 0; i < b; ++i) {
            const Memory& m = mems[i];
            if (layers_[l].kind == LayerKind::kConv) {
                t.host[3 * L * b + l * b + i] = reinterpret_cast<int64_t>((*m.conv_state)[l].data);
                continue;
            }
            const Tensor& k = (*m.k_cache)[l];
            int64_t* e = t.host.data() + (l * b + i) * 3;
            e[0] = reinterpret_cast<int64_t>(k.data);
            e[1] = reinterpret_cast<int64_t>((*m.v_cache)[l].data);
            e[2] = k.shape[1];
            t.max_s = std::max(t.max_s, k.shape[1]);
        }
    }
}

void Lfm2Network::forward_batch(const ops::Context& ctx, const std::vector<Memory>& mems, Tensor& x,
                                const Tensor& pos, Arena& scratch, Tensor& out) const {
    const size_t mark = scratch.mark();
    BatchTables t;
    batch_tables(mems, t);
    Tensor dev;  // on the CPU the ops take the rows' tensors themselves
    if (ctx.device != Device::kCPU) {
        dev = scratch.alloc(DType::kI64, {static_cast<int64_t>(t.host.size())});
        ops::upload_async(
            ctx, Tensor::make(t.host.data(), DType::kI64, Device::kCPU, {dev.shape[0]}), dev);
    }
    forward_batch_tables(ctx, mems, dev, t.max_s, x, pos, scratch, out);
    scratch.release(mark);
}

void Lfm2Network::forward_batch_tables(const ops::Context& ctx, const std::vector<Memory>& mems,
                                       const Tensor& table, int64_t max_s, Tensor& x,
                                       const Tensor& pos, Arena& scratch, Tensor& out) const {
    ops::ProfileRange range(ctx, "backbone batch step");
    const int64_t B = x.shape[0];
    VOXRT_ASSERT(static_cast<int64_t>(mems.size()) == B && pos.numel() == B,
                 "forward_batch: %lld rows, %zu memories, %lld positions",
                 static_cast<long long>(B), mems.size(), static_cast<long long>(pos.numel()));
    const bool on_device = !table.empty();
    VOXRT_ASSERT(!on_device || (table.dtype == DType::kI64 && table.numel() == batch_table_size(B)),
                 "forward_batch: table %s for %lld rows", table.describe().c_str(),
                 static_cast<long long>(B));
    std::vector<Segment> segs;
    segs.reserve(mems.size());
    for (int64_t i = 0; i < B; ++i)
        segs.push_back(Segment{&mems[static_cast<size_t>(i)], i, i + 1});
    const int64_t L = static_cast<int64_t>(layers_.size());
    std::vector<std::vector<Tensor>> ks(layers_.size()), vs(layers_.size());
    std::vector<Tensor> kv_tabs(layers_.size());
    RowTables rt;
    rt.kv.resize(layers_.size());
    if (on_device) rt.conv.resize(layers_.size());
    for (int64_t l = 0; l < L; ++l) {
        const size_t li = static_cast<size_t>(l);
        if (layers_[li].kind == LayerKind::kConv) {
            if (on_device) rt.conv[li] = table.rows(3 * L * B + l * B, 3 * L * B + (l + 1) * B);
            continue;
        }
        for (int64_t i = 0; i < B; ++i) {
            const Memory& m = mems[static_cast<size_t>(i)];
            ks[li].push_back((*m.k_cache)[li]);
            vs[li].push_back((*m.v_cache)[li]);
        }
        rt.kv[li] = ops::RowCaches{ks[li].data(), vs[li].data(), B, nullptr, max_s};
        if (on_device) {
            kv_tabs[li] = table.rows(l * B * 3, (l + 1) * B * 3);
            rt.kv[li].table = &kv_tabs[li];
        }
    }
    forward_segments(ctx, segs.data(), segs.size(), x, pos, rope_cos_, rope_sin_, pos, scratch, out,
                     &rt);
}

// The network over T rows that belong to one or more sequences (segments: consecutive rows with
// their memory). Everything but the short convolutions, the KV writes and attention runs once
// over all rows; those run per segment on its own memory, or (row_tables: a decode batch) once
// over all rows with each row's own state.
void Lfm2Network::forward_segments(const ops::Context& ctx, const Segment* segs, size_t n_segs,
                                   Tensor& x, const Tensor& rope_pos, const Tensor& cos,
                                   const Tensor& sin, const Tensor& rows, Arena& scratch,
                                   Tensor& out, const RowTables* row_tables) const {
    const Tensor& pos = rows;
    const int64_t T = x.shape[0], D = cfg_.hidden_size, F = cfg_.ff_dim;
    const int64_t H = cfg_.num_heads, Hkv = cfg_.num_kv_heads, Dh = cfg_.head_dim;
    const float eps = static_cast<float>(cfg_.norm_eps);
    const DType dt = ctx.act_dtype();
    const size_t mark = scratch.mark();
    Tensor h = scratch.alloc(dt, {T, D});
    Tensor o = scratch.alloc(dt, {T, D});
    for (size_t l = 0; l < layers_.size(); ++l) {
        const Lfm2LayerWeights& L = layers_[l];
        const size_t inner = scratch.mark();
        ops::rms_norm(ctx, x, L.operator_norm, eps, ops::RmsStyle::kLfm2, h);
        if (L.kind == LayerKind::kConv) {
            // ShortConv: B, C, x = in_proj(h); y = C ⊙ conv(B ⊙ x); out_proj(y)
            Tensor b, c, xx;
            if (T == 1) {  // decode: one GEMV over the whole in_proj; B, C, x are contiguous slices
                Tensor bcx = scratch.alloc(dt, {3, D});
                Tensor bcx_row = bcx.reshape({1, 3 * D});
                ops::linear(ctx, h, L.in_proj, nullptr, bcx_row);
                b = bcx.rows(0, 1);
                c = bcx.rows(1, 2);
                xx = bcx.rows(2, 3);
            } else {
                b = scratch.alloc(dt, {T, D});
                c = scratch.alloc(dt, {T, D});
                xx = scratch.alloc(dt, {T, D});
                ops::linear(ctx, h, L.in_b, nullptr, b);
                ops::linear(ctx, h, L.in_c, nullptr, c);
                ops::linear(ctx, h, L.in_x, nullptr, xx);
            }
            ops::mul(ctx, b, xx, b);
            if (row_tables) {  // a decode batch: one row per sequence, all at once
                std::vector<Tensor> states(n_segs);
                for (size_t i = 0; i < n_segs; ++i) states[i] = (*segs[i].mem->conv_state)[l];
                const Tensor* tab = row_tables->conv.empty() ? nullptr : &row_tables->conv[l];
                ops::short_conv_rows(ctx, b, L.conv, states.data(), xx, scratch, tab);
            } else {
                for (size_t i = 0; i < n_segs; ++i) {  // each sequence's own conv history
                    const Segment& g = segs[i];
                    const Tensor bi = b.rows(g.begin, g.end), pi = pos.rows(g.begin, g.end);
                    Tensor yi = xx.rows(g.begin, g.end);
                    ops::short_conv(ctx, bi, L.conv, (*g.mem->conv_state)[l], pi, yi);
                }
            }
            ops::mul(ctx, c, xx, c);
            ops::linear(ctx, c, L.out_proj, nullptr, o);
        } else {
            Tensor q = scratch.alloc(dt, {T, H, Dh});
            Tensor k = scratch.alloc(dt, {T, Hkv, Dh});
            Tensor v = scratch.alloc(dt, {T, Hkv, Dh});
            Tensor a = scratch.alloc(dt, {T, H * Dh});
            Tensor q2 = q.reshape({T, H * Dh}), k2 = k.reshape({T, Hkv * Dh}),
                   v2 = v.reshape({T, Hkv * Dh});
            ops::linear(ctx, h, L.q_proj, nullptr, q2);
            ops::linear(ctx, h, L.k_proj, nullptr, k2);
            ops::linear(ctx, h, L.v_proj, nullptr, v2);
            Tensor qr = q.reshape({T * H, Dh}), kr = k.reshape({T * Hkv, Dh});
            ops::rms_norm(ctx, qr, L.q_norm, eps, ops::RmsStyle::kLfm2, qr);
            ops::rms_norm(ctx, kr, L.k_norm, eps, ops::RmsStyle::kLfm2, kr);
            ops::rope(ctx, q, rope_pos, cos, sin, ops::RopeStyle::kNeox);
            ops::rope(ctx, k, rope_pos, cos, sin, ops::RopeStyle::kNeox);
            Tensor a3 = a.reshape({T, H, Dh});
            const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
            if (row_tables) {  // a decode batch: one row per sequence, all at once
                const ops::RowCaches& rc = row_tables->kv[l];
                ops::kv_write_rows(ctx, k, v, pos, rc);
                ops::attention_rows(ctx, q, rc, pos, scale, window_, a3);
            } else {
                for (size_t i = 0; i < n_segs; ++i) {  // each sequence's own cache
                    const Segment& g = segs[i];
                    const Tensor pi = pos.rows(g.begin, g.end);
                    const Tensor qi = q.rows(g.begin, g.end), ki = k.rows(g.begin, g.end),
                                 vi = v.rows(g.begin, g.end);
                    Tensor ai = a3.rows(g.begin, g.end);
                    ops::kv_write(ctx, ki, vi, pi, (*g.mem->k_cache)[l], (*g.mem->v_cache)[l]);
                    ops::attention(ctx, qi, (*g.mem->k_cache)[l], (*g.mem->v_cache)[l], pi, scale,
                                   window_, ai);
                }
            }
            ops::linear(ctx, a, L.out_proj, nullptr, o);
        }
        ops::add(ctx, o, x, x);
        scratch.release(inner);  // the operator's temporaries are dead: the FFN reuses the space
        ops::rms_norm(ctx, x, L.ffn_norm, eps, ops::RmsStyle::kLfm2, h);
        Tensor g1 = scratch.alloc(dt, {T, F}), g3 = scratch.alloc(dt, {T, F});
        ops::linear(ctx, h, L.w1, nullptr, g1);
        ops::linear(ctx, h, L.w3, nullptr, g3);
        ops::swiglu(ctx, g1, g3, g1);
        ops::linear(ctx, g1, L.w2, nullptr, o);
        ops::add(ctx, x, o, x);
        scratch.release(inner);
    }
    ops::rms_norm(ctx, x, final_norm_, eps, ops::RmsStyle::kLfm2, out);
    scratch.release(mark);
}

}  // namespace voxrt::model
