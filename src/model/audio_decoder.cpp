#include "model/audio_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/thread_pool.h"
#include "io/json.h"

namespace voxrt::model {

namespace {

constexpr int64_t kMaxPositions = int64_t{1} << 24;  // positions stay exact as fp32 (RoPE)
// KV rows kept per attention layer beyond the live window: the cache holds W-1 past keys plus
// (at least) this many frames of new ones, and is compacted (the last W-1 rows moved to the front)
// when the next step's frames would not fit. A step must always fit after a compaction.
constexpr int64_t kCacheFrames = 32;
static_assert(kCacheFrames >= kDetokMaxStepFrames, "a step's frames must fit the cache");

// The detokenizer's context: fp32 (as the reference runs it), and on the CPU one GEMM path for
// any row count, so that streaming steps of 6–48 rows and a whole-utterance decode of hundreds
// do the same arithmetic.
ops::Context fp32(const ops::Context& ctx) {
    ops::Context c = ctx;
    c.precision = ops::Precision::kF32;
    c.cpu_packed_gemm = false;
    return c;
}

// Host → device (or host → host) copy of a host array into a device tensor of the same numel.
template <class T>
void upload(const ops::Context& ctx, const T* host, DType dt, Tensor& dst) {
    Tensor src = dst;
    src.data = const_cast<T*>(host);
    src.device = Device::kCPU;
    src.dtype = dt;
    ops::copy(ctx, src, dst);
}

Status check_codes(const int32_t* codes, int64_t n_frames, int64_t frame0) {
    for (int64_t t = 0; t < n_frames; ++t)
        for (int q = 0; q < kDetokCodebooks; ++q) {
            const int32_t c = codes[t * kDetokCodebooks + q];
            if (c < 0 || c >= kDetokCodebookSize)
                return make_error(
                    StatusCode::kInvalidArgument,
                    "[detokenizer] frame %lld codebook %d: code %d is outside [0, %d]%s",
                    static_cast<long long>(frame0 + t), q, c, kDetokCodebookSize - 1,
                    c == kDetokCodebookSize ? " (end-of-audio frames must be dropped)" : "");
        }
    return Status::ok();
}

// The reference ISTFT asserts that the trimmed window² envelope is > 1e-11 everywhere. For
// utterances of >= 4 frames every sample's envelope equals one of those of the 1..4-frame cases.
Status check_window(const std::vector<float>& w) {
    const int n = kDetokNfft, hop = kDetokHop, pad = (n - hop) / 2;
    for (int frames = 1; frames <= n / hop; ++frames) {
        std::vector<float> env(static_cast<size_t>((frames - 1) * hop + n), 0.0f);
        for (int f = 0; f < frames; ++f)
            for (int i = 0; i < n; ++i) env[static_cast<size_t>(f * hop + i)] += w[i] * w[i];
        for (int i = pad; i < pad + frames * hop; ++i)
            if (!(env[static_cast<size_t>(i)] > 1e-11f))
                return make_error(
                    StatusCode::kInvalidFile,
                    "[detokenizer] istft.window: overlap-added window² is %g at sample %d of a "
                    "%d-frame utterance (the reference asserts > 1e-11)",
                    static_cast<double>(env[static_cast<size_t>(i)]), i - pad, frames);
    }
    return Status::ok();
}

}  // namespace

// ---- loading --------------------------------------------------------------------------------

Expected<Detokenizer> Detokenizer::load(const std::string& detok_dir, WeightStore& store) {
    const std::string cfg_path = detok_dir + "/config.json";
    Detokenizer d;
    VOXRT_ASSIGN_OR_RETURN(d.cfg_, load_detokenizer_config(cfg_path));
    const Lfm2Config& c = d.cfg_;
    // Fields the Lfm2Config parser does not keep, and the architecture the module hard-codes.
    {
        VOXRT_ASSIGN_OR_RETURN(io::Json json, io::read_json_file(cfg_path, 1u << 20));
        io::JsonView j(&json, cfg_path, "");
        VOXRT_ASSIGN_OR_RETURN(int64_t out, j.integer_or("output_size", kDetokOut, 1, 1 << 20));
        if (out != kDetokOut)
            return j.error(
                "output_size",
                "is " + std::to_string(out) +
                    "; the detokenizer hard-codes Linear(512, 1282) for ISTFT(1280, 320)");
    }
    if (c.hidden_size != kDetokDim)
        return make_error(
            StatusCode::kUnsupported,
            "%s: hidden_size is %d; the detokenizer hard-codes 512 (FusedEmbedding(512), "
            "Linear(512, 1282))",
            cfg_path.c_str(), c.hidden_size);
    if (c.sliding_window < 1)
        return make_error(StatusCode::kInvalidFile, "%s: sliding_window must be >= 1, got %d",
                          cfg_path.c_str(), c.sliding_window);
    d.window_ = c.sliding_window;

    const std::string st_path = detok_dir + "/model.safetensors";
    VOXRT_ASSIGN_OR_RETURN(d.file_, io::SafeTensorsFile::open(st_path));
    const io::SafeTensorsFile& f = d.file_;
    const int64_t D = c.hidden_size, Dh = c.head_dim;
    VOXRT_ASSIGN_OR_RETURN(
        d.emb_, store.fetch(f, "emb.emb.weight", {kDetokCodebooks * kDetokCodebookSize, D}));
    VOXRT_ASSIGN_OR_RETURN(d.lin_w_, store.fetch(f, "lin.weight", {kDetokOut, D}));
    VOXRT_ASSIGN_OR_RETURN(d.lin_b_, store.fetch(f, "lin.bias", {kDetokOut}));
    // The reference registers torch.hann_window(1280) and load_state_dict overwrites it with the
    // stored buffer (bf16-rounded in the published layout): use it as stored.
    VOXRT_ASSIGN_OR_RETURN(d.window_host_, store.fetch_host_f32(f, "istft.window", {kDetokNfft}));
    VOXRT_RETURN_IF_ERROR(check_window(d.window_host_).with_context(st_path));

    // The LFM2 layers: the same network as the backbone, in fp32, with the reference's sliding
    // window; RoPE tables are built per step by rope_table() (positions are unbounded).
    Lfm2Network::Options no;
    no.bf16_inv_freq = false;  // the detokenizer module is never cast to bf16
    no.max_positions = 0;
    no.need_embedding = false;  // lfm.embed_tokens is unused
    no.sliding_window = c.sliding_window;
    VOXRT_ASSIGN_OR_RETURN(Lfm2Network net, Lfm2Network::load(c, f, "lfm.", store, no));
    d.net_ = std::make_shared<const Lfm2Network>(std::move(net));
    // transformers' default RoPE: inv_freq = 1 / θ^(2i/Dh) in fp32. The detokenizer module is never
    // cast, so unlike the backbone the frequencies are not bf16-rounded.
    d.inv_freq_.resize(static_cast<size_t>(Dh / 2));
    for (int64_t i = 0; i < Dh / 2; ++i) {
        const float e = static_cast<float>(2 * i) / static_cast<float>(Dh);
        d.inv_freq_[static_cast<size_t>(i)] = 1.0f / std::pow(static_cast<float>(c.rope_theta), e);
    }
    return d;
}

// ---- the network ----------------------------------------------------------------------------

void Detokenizer::rope_table(int64_t base, int64_t T, float* cos, float* sin) const {
    // transformers: freqs = inv_freq ⊗ float(position) (one fp32 product), then cos/sin in fp32.
    const size_t half = inv_freq_.size();
    for (int64_t t = 0; t < T; ++t) {
        const float p = static_cast<float>(base + t);
        for (size_t i = 0; i < half; ++i) {
            const float fr = p * inv_freq_[i];
            cos[static_cast<size_t>(t) * half + i] =
                static_cast<float>(std::cos(static_cast<double>(fr)));
            sin[static_cast<size_t>(t) * half + i] =
                static_cast<float>(std::sin(static_cast<double>(fr)));
        }
    }
}

size_t Detokenizer::forward_scratch_bytes(int64_t T) const {
    const int64_t D = cfg_.hidden_size, F = cfg_.ff_dim;
    const int64_t Hd = cfg_.num_heads * cfg_.head_dim, Kd = cfg_.num_kv_heads * cfg_.head_dim;
    const DType dt = DType::kF32;
    const size_t conv = 3 * arena_bytes(dt, T * D);
    const size_t attn = 2 * arena_bytes(dt, T * Hd) + 2 * arena_bytes(dt, T * Kd);
    const size_t ffn = 2 * arena_bytes(dt, T * F);
    return 2 * arena_bytes(dt, T * D) + std::max({conv, attn, ffn});
}

void Detokenizer::head(const ops::Context& ctx, const Tensor& hidden, Tensor& spec_dev,
                       float* spec_host) const {
    ops::linear(ctx, hidden, lin_w_, &lin_b_, spec_dev);
    if (!spec_host) return;
    Tensor host = spec_dev;
    host.data = spec_host;
    host.device = Device::kCPU;
    ops::copy(ctx, spec_dev, host);
}

// ---- whole utterance ------------------------------------------------------------------------

size_t Detokenizer::decode_scratch_bytes(int64_t Tc) const {
    const int64_t T = kDetokUpsample * Tc, D = cfg_.hidden_size;
    const int64_t half = cfg_.head_dim / 2, K = cfg_.conv_kernel;
    size_t b = arena_bytes(DType::kI32, T * kDetokCodebooks) + arena_bytes(DType::kI32, T);
    b += 2 * arena_bytes(DType::kF32, T * half);
    b += 2 * arena_bytes(DType::kF32, T * D) + arena_bytes(DType::kF32, T * kDetokOut);
    for (LayerKind kind : cfg_.layers)
        if (kind == LayerKind::kConv) b += arena_bytes(DType::kF32, (K - 1) * D);
    // One KV cache pair serves every attention layer: each layer writes all T rows before reading.
    const bool any_attn = std::any_of(cfg_.layers.begin(), cfg_.layers.end(),
                                      [](LayerKind kind) { return kind == LayerKind::kAttention; });
    if (any_attn) b += 2 * arena_bytes(DType::kF32, cfg_.num_kv_heads * T * cfg_.head_dim);
    return b + forward_scratch_bytes(T);
}

Status Detokenizer::decode(const ops::Context& ctx_in, const int32_t* codes, int64_t Tc,
                           Arena& scratch, std::vector<float>& pcm_out,
                           DetokenizerStages* stages) const {
    const ops::Context ctx = fp32(ctx_in);
    ops::ProfileRange range(ctx, "detokenizer");
    if (Tc < 0 || kDetokUpsample * Tc > kMaxPositions)
        return make_error(
            StatusCode::kOutOfRange, "[detokenizer] %lld frames (at most %lld per utterance)",
            static_cast<long long>(Tc), static_cast<long long>(kMaxPositions / kDetokUpsample));
    VOXRT_RETURN_IF_ERROR(check_codes(codes, Tc, 0));
    pcm_out.clear();
    if (stages) *stages = {};
    if (Tc == 0) return Status::ok();
    if (scratch.device() != ctx.device)
        return make_error(StatusCode::kInvalidArgument,
                          "[detokenizer] scratch arena on %s, context on %s",
                          device_name(scratch.device()), device_name(ctx.device));
    const size_t need = decode_scratch_bytes(Tc);
    if (scratch.capacity() - scratch.mark() < need)
        return make_error(StatusCode::kOutOfRange,
                          "[detokenizer] decode of %lld frames needs %zu scratch bytes, %zu free",
                          static_cast<long long>(Tc), need, scratch.capacity() - scratch.mark());

    const int64_t T = kDetokUpsample * Tc, D = cfg_.hidden_size, half = cfg_.head_dim / 2;
    const int64_t Q = kDetokCodebooks;
    const ArenaMark release(scratch);  // decode's early error returns included

    // Upsampled ids (nearest-exact ×6 of the embedding = the embedding of repeated ids), positions
    // 0..T-1 (RoPE rows = cache rows), RoPE table.
    std::vector<int32_t> ids(static_cast<size_t>(T * Q)), iota(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
        std::memcpy(&ids[static_cast<size_t>(t * Q)], codes + (t / kDetokUpsample) * Q,
                    Q * sizeof(int32_t));
        iota[static_cast<size_t>(t)] = static_cast<int32_t>(t);
    }
    std::vector<float> rope(static_cast<size_t>(2 * T * half));
    rope_table(0, T, rope.data(), rope.data() + T * half);
    Tensor ids_d = scratch.alloc(DType::kI32, {T, Q});
    Tensor pos_d = scratch.alloc(DType::kI32, {T});
    Tensor cos_d = scratch.alloc(DType::kF32, {T, half});
    Tensor sin_d = scratch.alloc(DType::kF32, {T, half});
    upload(ctx, ids.data(), DType::kI32, ids_d);
    upload(ctx, iota.data(), DType::kI32, pos_d);
    upload(ctx, rope.data(), DType::kF32, cos_d);
    upload(ctx, rope.data() + T * half, DType::kF32, sin_d);

    std::vector<Tensor> conv_state(cfg_.layers.size()), k_cache(cfg_.layers.size()),
        v_cache(cfg_.layers.size());
    Tensor kc, vc;
    for (size_t l = 0; l < cfg_.layers.size(); ++l) {
        if (cfg_.layers[l] == LayerKind::kConv) {
            conv_state[l] = scratch.alloc(DType::kF32, {cfg_.conv_kernel - 1, D});
            ops::zero(ctx, conv_state[l]);  // the reference's left zero padding
        } else {
            if (kc.empty()) {
                kc = scratch.alloc(DType::kF32, {cfg_.num_kv_heads, T, cfg_.head_dim});
                vc = scratch.alloc(DType::kF32, {cfg_.num_kv_heads, T, cfg_.head_dim});
            }
            k_cache[l] = kc;
            v_cache[l] = vc;
        }
    }

    Tensor x = scratch.alloc(DType::kF32, {T, D});
    Tensor hidden = scratch.alloc(DType::kF32, {T, D});
    Tensor spec_d = scratch.alloc(DType::kF32, {T, kDetokOut});
    ops::embedding_bag(ctx, emb_, ids_d, kDetokCodebookSize, /*mean=*/true, x);
    if (stages) {
        std::vector<float> up(static_cast<size_t>(T * D));
        Tensor host = Tensor::make(up.data(), DType::kF32, Device::kCPU, {T, D});
        ops::copy(ctx, x, host);
        VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx));
        stages->emb.resize(static_cast<size_t>(Tc * D));
        for (int64_t t = 0; t < Tc; ++t)
            std::memcpy(&stages->emb[static_cast<size_t>(t * D)],
                        &up[static_cast<size_t>(t * kDetokUpsample * D)],
                        static_cast<size_t>(D) * sizeof(float));
    }
    const Memory mem{&conv_state, &k_cache, &v_cache};
    forward(ctx, x, pos_d, cos_d, sin_d, pos_d, mem, scratch, hidden);
    std::vector<float> spec(static_cast<size_t>(T * kDetokOut));
    head(ctx, hidden, spec_d, spec.data());
    if (stages) {
        stages->hidden.resize(static_cast<size_t>(T * D));
        Tensor host = Tensor::make(stages->hidden.data(), DType::kF32, Device::kCPU, {T, D});
        ops::copy(ctx, hidden, host);
    }
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx));

    // Host ISTFT: X = polar(exp(log|X|), ∠X) per position, then overlap-add.
    std::vector<float> X(static_cast<size_t>(T * kDetokBins * 2));
    for (int64_t t = 0; t < T; ++t) {
        const float* row = &spec[static_cast<size_t>(t * kDetokOut)];
        audio::spectrum_from_logmag_phase(row, row + kDetokBins, kDetokBins,
                                          &X[static_cast<size_t>(t * kDetokBins * 2)]);
    }
    const audio::IstftConfig icfg{kDetokNfft, kDetokHop, kDetokNfft};
    pcm_out = audio::istft_same(X.data(), static_cast<size_t>(T), icfg, window_host_.data());
    if (stages) stages->spec = std::move(spec);
    return Status::ok();
}

// ---- streaming ------------------------------------------------------------------------------

Expected<DetokenizerState> Detokenizer::new_state(const ops::Context& ctx_in) const {
    const ops::Context ctx = fp32(ctx_in);
    const int64_t R = kDetokUpsample, D = cfg_.hidden_size, Q = kDetokCodebooks;
    const int64_t half = cfg_.head_dim / 2, Hkv = cfg_.num_kv_heads, Dh = cfg_.head_dim;
    const int64_t M = R * kDetokMaxStepFrames;  // rows of the largest step
    // Cache rows: the W-1 keys a new query can still see, plus room for kCacheFrames frames, and at
    // least ceil((W-1)/6) + kDetokMaxStepFrames frames: compaction happens when a step of up to
    // kDetokMaxStepFrames frames would not fit, i.e. once fill > S - M, so the W-1 rows moved to
    // the front (from fill - (W-1) > S - M - (W-1) >= W-1) never overlap their source.
    const int64_t keep = window_ - 1;
    const int64_t frames =
        std::max<int64_t>(kCacheFrames, (keep + R - 1) / R + kDetokMaxStepFrames);
    const int64_t S = keep + R * frames;

    DetokenizerState st;
    st.device_ = ctx.device;
    st.cache_rows_ = static_cast<int>(S);
    const int64_t pcm_max = std::max<int64_t>(M * kDetokHop, (kDetokNfft - kDetokHop) / 2);
    size_t persist = arena_bytes(DType::kI32, S) + arena_bytes(DType::kI32, M * Q) +
                     2 * arena_bytes(DType::kF32, M * half) +
                     arena_bytes(DType::kF32, M * kDetokOut) + arena_bytes(DType::kF32, pcm_max);
    for (LayerKind kind : cfg_.layers)
        persist += kind == LayerKind::kConv ? arena_bytes(DType::kF32, (cfg_.conv_kernel - 1) * D)
                                            : 2 * arena_bytes(DType::kF32, Hkv * S * Dh);
    const size_t scratch = 2 * arena_bytes(DType::kF32, M * D) + forward_scratch_bytes(M);
    if (!st.persist_.reserve(ctx.device, persist) || !st.scratch_.reserve(ctx.device, scratch))
        return make_error(StatusCode::kOutOfMemory,
                          "[detokenizer] cannot allocate %zu bytes of state on %s",
                          persist + scratch, device_name(ctx.device));

    st.iota_ = st.persist_.alloc(DType::kI32, {S});
    st.ids_ = st.persist_.alloc(DType::kI32, {M, Q});
    st.cos_ = st.persist_.alloc(DType::kF32, {M, half});
    st.sin_ = st.persist_.alloc(DType::kF32, {M, half});
    st.spec_ = st.persist_.alloc(DType::kF32, {M, kDetokOut});
    st.pcm_ = st.persist_.alloc(DType::kF32, {pcm_max});
    st.conv_state_.resize(cfg_.layers.size());
    st.k_cache_.resize(cfg_.layers.size());
    st.v_cache_.resize(cfg_.layers.size());
    for (size_t l = 0; l < cfg_.layers.size(); ++l) {
        if (cfg_.layers[l] == LayerKind::kConv) {
            st.conv_state_[l] = st.persist_.alloc(DType::kF32, {cfg_.conv_kernel - 1, D});
        } else {
            st.k_cache_[l] = st.persist_.alloc(DType::kF32, {Hkv, S, Dh});
            st.v_cache_[l] = st.persist_.alloc(DType::kF32, {Hkv, S, Dh});
        }
    }
    std::vector<int32_t> iota(static_cast<size_t>(S));
    for (int64_t i = 0; i < S; ++i) iota[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    upload(ctx, iota.data(), DType::kI32, st.iota_);

    st.ids_host_.resize(static_cast<size_t>(M * Q));
    st.rope_host_.resize(static_cast<size_t>(2 * M * half));
    st.pcm_host_.resize(static_cast<size_t>(pcm_max));
    VOXRT_ASSIGN_OR_RETURN(st.istft_,
                           ops::StreamingIstft::create(ctx, {kDetokNfft, kDetokHop, kDetokNfft},
                                                       window_host_.data(), static_cast<int>(M)));
    VOXRT_ASSERT(
        st.istft_.max_step_samples() <= pcm_max && st.istft_.max_flush_samples() <= pcm_max,
        "detokenizer pcm buffer too small");
    reset(st);
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx));
    return st;
}

void Detokenizer::reset(DetokenizerState& st) const {
    st.frames_ = 0;
    st.fill_ = 0;
    st.zero_conv_ = true;
    st.istft_.reset();
}

Status Detokenizer::check_job(const ops::Context& ctx, const DetokenizerJob& job) const {
    const DetokenizerState& st = *job.state;
    if (st.device_ != ctx.device || st.conv_state_.size() != cfg_.layers.size())
        return make_error(StatusCode::kInvalidArgument,
                          "[detokenizer] state made for another model or device");
    if (job.n_frames < 1 || job.n_frames > kDetokMaxStepFrames)
        return make_error(StatusCode::kInvalidArgument,
                          "[detokenizer] step of %lld frames (1 to %d per call)",
                          static_cast<long long>(job.n_frames), kDetokMaxStepFrames);
    VOXRT_RETURN_IF_ERROR(check_codes(job.codes, job.n_frames, st.frames_));
    if (kDetokUpsample * (st.frames_ + job.n_frames) > kMaxPositions)
        return make_error(StatusCode::kOutOfRange,
                          "[detokenizer] utterance longer than %lld frames",
                          static_cast<long long>(kMaxPositions / kDetokUpsample));
    return Status::ok();
}

Status Detokenizer::step(const ops::Context& ctx_in, DetokenizerState& st, const int32_t* codes,
                         int64_t n_frames, std::vector<float>& pcm_out) const {
    const ops::Context ctx = fp32(ctx_in);
    ops::ProfileRange range(ctx, "detokenizer step");
    DetokenizerJob job{&st, codes, n_frames, &pcm_out, Status::ok()};
    // Everything is validated before the state is touched: a rejected step changes nothing.
    VOXRT_RETURN_IF_ERROR(check_job(ctx, job));
    StepBuffers b;
    b.ids = st.ids_;
    b.cos = st.cos_;
    b.sin = st.sin_;
    b.spec = st.spec_;
    b.rope_idx = st.iota_;
    b.scratch = &st.scratch_;
    b.ids_host = &st.ids_host_;
    b.rope_host = &st.rope_host_;
    DetokenizerJob* one = &job;
    return run_jobs(ctx, &one, 1, b);
}

Expected<DetokenizerBatch> Detokenizer::new_batch(const ops::Context& ctx_in,
                                                  int64_t max_rows) const {
    const ops::Context ctx = fp32(ctx_in);
    const int64_t M = max_rows, Q = kDetokCodebooks, D = cfg_.hidden_size;
    const int64_t half = cfg_.head_dim / 2;
    if (M < kDetokUpsample * kDetokMaxStepFrames)
        return make_error(StatusCode::kInvalidArgument,
                          "[detokenizer] a batch of %lld rows cannot hold one step of %d frames",
                          static_cast<long long>(M), kDetokMaxStepFrames);
    DetokenizerBatch b;
    b.device_ = ctx.device;
    b.max_rows_ = M;
    const size_t persist = arena_bytes(DType::kI32, M * Q) + 2 * arena_bytes(DType::kI32, M) +
                           2 * arena_bytes(DType::kF32, M * half) +
                           arena_bytes(DType::kF32, M * kDetokOut) +
                           arena_bytes(DType::kF32, M * kDetokHop);
    // The compaction copies' tables (copy_many) come first in the scratch, then the activations.
    const size_t scratch =
        (size_t{2} << 20) + 2 * arena_bytes(DType::kF32, M * D) + forward_scratch_bytes(M);
    if (!b.persist_.reserve(ctx.device, persist) || !b.scratch_.reserve(ctx.device, scratch))
        return make_error(StatusCode::kOutOfMemory,
                          "[detokenizer] cannot allocate %zu bytes for a batch of %lld rows on %s",
                          persist + scratch, static_cast<long long>(M), device_name(ctx.device));
    b.ids_ = b.persist_.alloc(DType::kI32, {M, Q});
    b.rows_ = b.persist_.alloc(DType::kI32, {M});
    b.iota_ = b.persist_.alloc(DType::kI32, {M});
    b.cos_ = b.persist_.alloc(DType::kF32, {M, half});
    b.sin_ = b.persist_.alloc(DType::kF32, {M, half});
    b.spec_ = b.persist_.alloc(DType::kF32, {M, kDetokOut});
    b.pcm_ = b.persist_.alloc(DType::kF32, {M * kDetokHop});
    b.ids_host_.resize(static_cast<size_t>(M * Q));
    b.rows_host_.resize(static_cast<size_t>(M));
    b.rope_host_.resize(static_cast<size_t>(2 * M * half));
    b.pcm_host_.resize(static_cast<size_t>(M * kDetokHop));
    std::vector<int32_t> iota(static_cast<size_t>(M));
    for (int64_t i = 0; i < M; ++i) iota[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    upload(ctx, iota.data(), DType::kI32, b.iota_);
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx));
    return b;
}

Status Detokenizer::step_many(const ops::Context& ctx_in, DetokenizerBatch& batch,
                              DetokenizerJob* jobs, size_t n_jobs) const {
    const ops::Context ctx = fp32(ctx_in);
    ops::ProfileRange range(ctx, "detokenizer batch step");
    if (batch.device_ != ctx.device || batch.max_rows_ == 0)
        return make_error(StatusCode::kInvalidArgument,
                          "[detokenizer] batch buffers made for another device");
    std::vector<DetokenizerJob*> ok;
    ok.reserve(n_jobs);
    int64_t rows = 0;
    for (size_t i = 0; i < n_jobs; ++i) {
        DetokenizerJob& j = jobs[i];
        j.status = j.state && j.pcm_out
                       ? check_job(ctx, j)
                       : make_error(StatusCode::kInvalidArgument,
                                    "[detokenizer] job %zu has no state or output", i);
        for (const DetokenizerJob* o : ok)
            if (j.status.is_ok() && o->state == j.state)
                j.status = make_error(StatusCode::kInvalidArgument,
                                      "[detokenizer] job %zu: its state is another job's too", i);
        if (!j.status.is_ok()) continue;
        ok.push_back(&j);
        rows += kDetokUpsample * j.n_frames;
    }
    if (rows > batch.max_rows_)
        return make_error(StatusCode::kOutOfRange,
                          "[detokenizer] batch step of %lld rows (at most %lld)",
                          static_cast<long long>(rows), static_cast<long long>(batch.max_rows_));
    if (ok.empty()) return Status::ok();
    StepBuffers b;
    b.ids = batch.ids_;
    b.cos = batch.cos_;
    b.sin = batch.sin_;
    b.spec = batch.spec_;
    b.rows = batch.rows_;
    b.rope_idx = batch.iota_;
    b.pcm = batch.pcm_;
    b.scratch = &batch.scratch_;
    b.ids_host = &batch.ids_host_;
    b.rows_host = &batch.rows_host_;
    b.rope_host = &batch.rope_host_;
    b.pcm_host = &batch.pcm_host_;
    const Status s = run_jobs(ctx, ok.data(), ok.size(), b);
    if (!s.is_ok())
        for (DetokenizerJob* j : ok) j->status = s;
    return Status::ok();
}

Status Detokenizer::run_jobs(const ops::Context& ctx, DetokenizerJob* const* jobs, size_t n,
                             StepBuffers& b) const {
    const int64_t R = kDetokUpsample, D = cfg_.hidden_size, Q = kDetokCodebooks;
    const int64_t half = cfg_.head_dim / 2, keep = window_ - 1;
    const int64_t Hkv = cfg_.num_kv_heads, Dh = cfg_.head_dim;
    Arena& scratch = *b.scratch;
    scratch.reset();

    // A state's first step zeroes its conv states; a state whose cache cannot take the step's
    // rows moves its last W-1 keys/values to rows [0, W-1) (compaction). Source rows start at
    // fill-keep >= keep (new_state's sizing), so the ranges never overlap. All the moves of the
    // step are one copy_many.
    std::vector<Tensor> from, to;
    int64_t T = 0;  // rows of the whole step
    for (size_t i = 0; i < n; ++i) {
        DetokenizerState& st = *jobs[i]->state;
        const int64_t S = st.cache_rows_, Ti = R * jobs[i]->n_frames;
        T += Ti;
        if (st.zero_conv_) {
            for (Tensor& t : st.conv_state_)
                if (!t.empty()) ops::zero(ctx, t);
            st.zero_conv_ = false;
        }
        if (st.fill_ + Ti > S) {
            const int64_t src = st.fill_ - keep;
            VOXRT_ASSERT(src >= keep, "detokenizer cache compaction overlaps (%lld < %lld)",
                         (long long)src, (long long)keep);
            for (size_t l = 0; l < cfg_.layers.size(); ++l) {
                if (cfg_.layers[l] != LayerKind::kAttention) continue;
                for (Tensor* cache : {&st.k_cache_[l], &st.v_cache_[l]})
                    for (int64_t h = 0; h < Hkv; ++h) {
                        float* base = cache->ptr<float>() + h * S * Dh;
                        from.push_back(
                            Tensor::make(base + src * Dh, DType::kF32, ctx.device, {keep, Dh}));
                        to.push_back(Tensor::make(base, DType::kF32, ctx.device, {keep, Dh}));
                    }
            }
            st.fill_ = keep;
        }
        VOXRT_ASSERT(st.fill_ + Ti <= S, "detokenizer cache too small (%lld + %lld > %lld)",
                     (long long)st.fill_, (long long)Ti, (long long)S);
    }
    if (n == 1) {  // a lone step: no table to upload
        for (size_t i = 0; i < from.size(); ++i) ops::copy(ctx, from[i], to[i]);
    } else if (!from.empty()) {
        ops::copy_many(ctx, from.data(), to.data(), from.size(), scratch);
    }
    VOXRT_ASSERT(T <= b.ids.dim(0), "detokenizer step of %lld rows, buffers for %lld", (long long)T,
                 (long long)b.ids.dim(0));

    // Each frame's codes repeated 6 times (the nearest ×6 upsample), RoPE for each state's
    // absolute positions 6·frames .. 6·(frames + n) - 1, each row's cache row.
    std::vector<int32_t>& ids_host = *b.ids_host;
    float* cos_host = b.rope_host->data();
    float* sin_host = cos_host + T * half;
    std::vector<Lfm2Network::Segment> segs(n);
    std::vector<Memory> mems(n);
    int64_t r0 = 0;
    for (size_t i = 0; i < n; ++i) {
        const DetokenizerJob& j = *jobs[i];
        DetokenizerState& st = *j.state;
        const int64_t Ti = R * j.n_frames;
        for (int64_t r = 0; r < Ti; ++r) {
            std::memcpy(&ids_host[static_cast<size_t>((r0 + r) * Q)], j.codes + (r / R) * Q,
                        Q * sizeof(int32_t));
            if (b.rows_host)
                (*b.rows_host)[static_cast<size_t>(r0 + r)] = static_cast<int32_t>(st.fill_ + r);
        }
        rope_table(R * st.frames_, Ti, cos_host + r0 * half, sin_host + r0 * half);
        mems[i] = Memory{&st.conv_state_, &st.k_cache_, &st.v_cache_};
        segs[i] = Lfm2Network::Segment{&mems[i], r0, r0 + Ti};
        r0 += Ti;
    }
    Tensor ids = b.ids.rows(0, T), cos_t = b.cos.rows(0, T), sin_t = b.sin.rows(0, T);
    upload(ctx, ids_host.data(), DType::kI32, ids);
    upload(ctx, cos_host, DType::kF32, cos_t);
    upload(ctx, sin_host, DType::kF32, sin_t);
    Tensor cache_rows;
    if (b.rows.empty()) {
        VOXRT_ASSERT(n == 1, "a detokenizer step of %zu states needs a rows buffer", n);
        cache_rows = jobs[0]->state->iota_.rows(jobs[0]->state->fill_, jobs[0]->state->fill_ + T);
    } else {
        cache_rows = b.rows.rows(0, T);
        upload(ctx, b.rows_host->data(), DType::kI32, cache_rows);
    }

    Tensor x = scratch.alloc(DType::kF32, {T, D});
    Tensor hidden = scratch.alloc(DType::kF32, {T, D});
    Tensor spec = b.spec.rows(0, T);
    ops::embedding_bag(ctx, emb_, ids, kDetokCodebookSize, /*mean=*/true, x);
    net_->forward_many(ctx, segs.data(), n, x, b.rope_idx.rows(0, T), cos_t, sin_t, cache_rows,
                       scratch, hidden);
    head(ctx, hidden, spec, nullptr);

    // Each state's ISTFT where the spectra are; only the samples come back.
    if (b.pcm.empty()) {
        DetokenizerState& st = *jobs[0]->state;
        VOXRT_ASSIGN_OR_RETURN(const int64_t got, st.istft_.step(ctx, spec, st.pcm_));
        VOXRT_RETURN_IF_ERROR(take_pcm(ctx, st, got, *jobs[0]->pcm_out));
    } else {
        std::vector<int64_t> count(n);
        std::vector<Tensor> src, dst;
        int64_t at = 0;
        r0 = 0;
        for (size_t i = 0; i < n; ++i) {
            DetokenizerState& st = *jobs[i]->state;
            const int64_t Ti = R * jobs[i]->n_frames;
            VOXRT_ASSIGN_OR_RETURN(count[i], st.istft_.step(ctx, spec.rows(r0, r0 + Ti), st.pcm_));
            if (count[i] > 0) {
                src.push_back(st.pcm_.rows(0, count[i]));
                dst.push_back(b.pcm.rows(at, at + count[i]));
            }
            at += count[i];
            r0 += Ti;
        }
        if (!src.empty()) ops::copy_many(ctx, src.data(), dst.data(), src.size(), scratch);
        if (at > 0) {
            Tensor host = Tensor::make(b.pcm_host->data(), DType::kF32, Device::kCPU, {at});
            ops::copy(ctx, b.pcm.rows(0, at), host);
        }
        VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx));
        at = 0;
        for (size_t i = 0; i < n; ++i) {
            const auto first = b.pcm_host->begin() + static_cast<std::ptrdiff_t>(at);
            jobs[i]->pcm_out->insert(jobs[i]->pcm_out->end(), first,
                                     first + static_cast<std::ptrdiff_t>(count[i]));
            at += count[i];
        }
    }
    for (size_t i = 0; i < n; ++i) {
        DetokenizerState& st = *jobs[i]->state;
        st.fill_ += R * jobs[i]->n_frames;
        st.frames_ += jobs[i]->n_frames;
    }
    return Status::ok();
}

Status Detokenizer::take_pcm(const ops::Context& ctx, DetokenizerState& st, int64_t n,
                             std::vector<float>& pcm_out) const {
    if (n > 0) {
        Tensor host = Tensor::make(st.pcm_host_.data(), DType::kF32, Device::kCPU, {n});
        ops::copy(ctx, st.pcm_.rows(0, n), host);
    }
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx));
    pcm_out.insert(pcm_out.end(), st.pcm_host_.begin(),
                   st.pcm_host_.begin() + static_cast<std::ptrdiff_t>(n));
    return Status::ok();
}

Status Detokenizer::flush(const ops::Context& ctx, DetokenizerState& st,
                          std::vector<float>& pcm_out) const {
    if (st.device_ != ctx.device || st.conv_state_.size() != cfg_.layers.size())
        return make_error(StatusCode::kInvalidArgument,
                          "[detokenizer] state made for another model or device");
    const ops::Context c = fp32(ctx);
    Expected<int64_t> n = st.istft_.flush(c, st.pcm_);
    Status s = n.is_ok() ? take_pcm(c, st, *n, pcm_out) : n.status();
    reset(st);
    return s;
}

Status Detokenizer::flush_many(const ops::Context& ctx_in, DetokenizerBatch& batch,
                               DetokenizerJob* jobs, size_t n_jobs) const {
    const ops::Context ctx = fp32(ctx_in);
    if (batch.device_ != ctx.device || batch.max_rows_ == 0)
        return make_error(StatusCode::kInvalidArgument,
                          "[detokenizer] batch buffers made for another device");
    const int64_t cap = batch.pcm_.numel();
    size_t at = 0;
    std::vector<int64_t> count;
    std::vector<Tensor> src, dst;
    while (at < n_jobs) {
        // As many flushes as the batch's sample buffer holds, then one copy back and one sync.
        count.assign(n_jobs - at, -1);
        src.clear();
        dst.clear();
        int64_t used = 0;
        size_t end = at;
        for (; end < n_jobs; ++end) {
            DetokenizerJob& j = jobs[end];
            DetokenizerState* st = j.state;
            j.status = Status::ok();
            if (!st || !j.pcm_out || st->device_ != ctx.device ||
                st->conv_state_.size() != cfg_.layers.size()) {
                j.status = make_error(StatusCode::kInvalidArgument,
                                      "[detokenizer] state made for another model or device");
                continue;
            }
            for (size_t k = at; k < end; ++k)
                if (jobs[k].state == st && count[k - at] >= 0)
                    j.status =
                        make_error(StatusCode::kInvalidArgument,
                                   "[detokenizer] flush %zu: its state is another's too", end);
            if (!j.status.is_ok()) continue;
            if (used + st->istft_.max_flush_samples() > cap) break;
            Expected<int64_t> n = st->istft_.flush(ctx, st->pcm_);
            if (!n.is_ok()) {
                j.status = n.status();
                reset(*st);
                continue;
            }
            count[end - at] = *n;
            if (*n > 0) {
                src.push_back(st->pcm_.rows(0, *n));
                dst.push_back(batch.pcm_.rows(used, used + *n));
            }
            used += *n;
        }
        batch.scratch_.reset();
        if (!src.empty()) ops::copy_many(ctx, src.data(), dst.data(), src.size(), batch.scratch_);
        if (used > 0) {
            Tensor host = Tensor::make(batch.pcm_host_.data(), DType::kF32, Device::kCPU, {used});
            ops::copy(ctx, batch.pcm_.rows(0, used), host);
        }
        const Status s = ops::synchronize(ctx);
        int64_t off = 0;
        for (size_t k = at; k < end; ++k) {
            const int64_t n = count[k - at];
            if (n < 0) continue;
            DetokenizerJob& j = jobs[k];
            if (!s.is_ok()) {
                j.status = s;
            } else {
                const auto first = batch.pcm_host_.begin() + static_cast<std::ptrdiff_t>(off);
                j.pcm_out->insert(j.pcm_out->end(), first, first + static_cast<std::ptrdiff_t>(n));
            }
            off += n;
            reset(*j.state);
        }
        at = end;
    }
    return Status::ok();
}

}  // namespace voxrt::model
