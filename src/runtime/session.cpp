#include "runtime/session.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>

#include "audio/resample.h"
#include "backend/device.h"
#include "core/check.h"
#include "ops/mel_ops.h"
#include "runtime/util.h"

namespace voxrt::runtime {

namespace {

Tensor host_i32(int32_t* p, int64_t n) {
    return Tensor::make(p, DType::kI32, Device::kCPU, {n});
}

}  // namespace

Session::~Session() {
    detok_worker_.reset();
    text_graph_.reset();
    frame_graph_.reset();
    detok_state_.reset();
    if (own_detok_ctx_) backend::destroy_context(detok_ctx_);
    lane_.reset();  // the last of its sessions destroys the context
}

Expected<std::unique_ptr<Session>> Session::create(const model::LfmAudioModel& model,
                                                   const SessionOptions& opt) {
    std::unique_ptr<Session> s(new Session(model));
    VOXRT_RETURN_IF_ERROR(s->init(opt));
    return s;
}

Status Session::init(const SessionOptions& opt) {
    const model::ModelOptions& mo = model_.options();
    capacity_ = opt.context > 0 ? std::min(opt.context, mo.max_context) : mo.max_context;
    if (capacity_ < 16)
        return make_error(StatusCode::kInvalidArgument, "context of %d positions is too small",
                          capacity_);
    if (opt.lane) {
        lane_ = opt.lane;
        own_lane_ = false;
    } else {
        VOXRT_ASSIGN_OR_RETURN(lane_, DeviceLane::create(model_));
        own_lane_ = true;
    }
    ctx_ = lane_->context();
    ctx_.fused = opt.fused_kernels;
    ctx_.fused_backbone = opt.fused_backbone;
    use_graphs_ = ctx_.device == Device::kCUDA && opt.device_graphs;
    mel_on_device_ = opt.mel_on_device;
    detok_ctx_ = ctx_;
    detok_ctx_.precision = ops::Precision::kF32;
    if (model_.detokenizer() && model_.detokenizer_device() != ctx_.device) {
        // The detokenizer lives on the host (ModelOptions::detokenizer_on_cpu).
        detok_ctx_ = ops::Context{};
        detok_ctx_.device = Device::kCPU;
        detok_ctx_.precision = ops::Precision::kF32;
        detok_ctx_.pool = model_.pool();
    } else if (ctx_.device == Device::kCUDA && model_.detokenizer() && own_lane_) {
        VOXRT_ASSIGN_OR_RETURN(detok_ctx_,
                               backend::create_context(Device::kCUDA, ops::Precision::kF32, 0,
                                                       detok_context_options(!own_lane_)));
        own_detok_ctx_ = true;
        detok_ctx_.pool = model_.pool();
        detok_ctx_.fused = ctx_.fused;
        detok_ctx_.fused_backbone = ctx_.fused_backbone;
    }
    chunk_ = std::min(DeviceLane::kChunk, capacity_);

    // The KV cache starts with one chunk of positions and grows by need (ensure_kv).
    const int kv0 = std::min(opt.kv_reserve > 0 ? opt.kv_reserve : kKvChunk, capacity_);
    VOXRT_ASSIGN_OR_RETURN(lfm_state_, model_.backbone().new_state(ctx_, kv0));
    VOXRT_ASSIGN_OR_RETURN(head_state_, model_.audio_head().new_state(ctx_));
    // Every conv layer's state in one block (the state's own per-layer buffers are freed), so
    // that a step's snapshot for truncation, and a restore, are one copy each.
    conv_layers_ = 0;
    conv_snapshot_bytes_ = 0;
    for (const Tensor& t : lfm_state_.conv_state) {
        if (t.empty()) continue;
        ++conv_layers_;
        conv_snapshot_bytes_ += t.nbytes();
    }
    if (conv_layers_ > 0) {
        conv_block_ = Buffer::allocate(ctx_.device, conv_snapshot_bytes_);
        if (!conv_block_.data())
            return make_error(StatusCode::kOutOfMemory, "session: cannot allocate %zu bytes",
                              conv_snapshot_bytes_);
        size_t off = 0;
        for (size_t l = 0; l < lfm_state_.conv_state.size(); ++l) {
            Tensor& t = lfm_state_.conv_state[l];
            if (t.empty()) continue;
            Tensor moved = conv_block_.view(t.dtype, {t.dim(0), t.dim(1)}, off);
            off += t.nbytes();
            ops::zero(ctx_, moved);
            t = moved;
            if (l < lfm_state_.fused.size()) lfm_state_.fused[l].conv_state = moved;
        }
        lfm_state_.buffers.clear();  // the per-layer conv states, now unused
    }
    if (const model::Detokenizer* det = model_.detokenizer()) {
        VOXRT_ASSIGN_OR_RETURN(model::DetokenizerState ds, det->new_state(detok_ctx_));
        detok_state_ = std::make_unique<model::DetokenizerState>(std::move(ds));
        if (own_lane_ || detok_ctx_.device != Device::kCUDA) {
            // On the CPU a shared lane's sessions keep a worker each: with the batcher, voxrt
            // serve's RSS grew by ~10 MiB a round in one run of test_load.py (cause not yet found;
            // docs/batching.md).
            detok_worker_ = std::make_unique<DetokWorker>(*det, detok_ctx_, *detok_state_);
        } else {
            // The lane's sessions share one detokenizer thread and one CUDA context, whose rounds
            // run their chunks together. The first frame's inline step uses the lane's
            // context (detok_ctx_: the lane's, in fp32).
            VOXRT_ASSIGN_OR_RETURN(
                DetokBatcher * b,
                lane_->detok_batcher(*det, detok_ctx_, detok_context_options(/*batched=*/true)));
            detok_worker_ = std::make_unique<DetokWorker>(*detok_state_, *b);
        }
        detok_.init(det, &detok_ctx_, detok_state_.get(), detok_worker_.get());
    }
    const model::AudioModelConfig& c = model_.config();
    const int64_t D = c.lfm.hidden_size, Q = c.codebooks, V = c.lfm.vocab_size;
    const DType dt = ctx_.act_dtype();
    auto alloc = [&](DType t, std::initializer_list<int64_t> dims, Tensor* out) {
        return alloc_tensor(ctx_.device, t, dims, buffers_, out, "session");
    };
    VOXRT_RETURN_IF_ERROR(alloc(dt, {1, D}, &x_));
    VOXRT_RETURN_IF_ERROR(alloc(dt, {1, D}, &h_));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {1}, &pos_));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {1, Q}, &codes_));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {1}, &token_));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {Q + 1}, &counters_));
    VOXRT_RETURN_IF_ERROR(alloc(dt, {1, V}, &text_logits_));
    {
        Buffer b = Buffer::allocate_pinned(static_cast<size_t>(Q) * sizeof(int32_t));
        if (!b.data())
            return make_error(StatusCode::kOutOfMemory,
                              "session: cannot allocate %lld bytes of page-locked host memory",
                              static_cast<long long>(Q * 4));
        choice_host_ = b.view(DType::kI32, {Q});
        buffers_.push_back(std::move(b));
    }
    return add_text("<|startoftext|>");
}

SessionMemory Session::memory() const {
    SessionMemory m;
    auto bytes = [](const std::vector<Buffer>& v) {
        size_t n = 0;
        for (const Buffer& b : v) n += b.size();
        return n;
    };
    for (size_t l = 0; l < lfm_state_.k_cache.size(); ++l) {
        const Tensor& k = lfm_state_.k_cache[l];
        if (k.empty()) continue;
        m.kv += 2 * k.nbytes();
        m.kv_full +=
            2 * k.nbytes() / static_cast<size_t>(k.dim(1)) * static_cast<size_t>(capacity_);
    }
    // The state's buffers: the KV cache and the per-layer conv states (unused: conv_block_).
    m.conv_state = bytes(lfm_state_.buffers) + conv_block_.size();
    m.conv_history = bytes(conv_hist_);
    m.conv_step = conv_snapshot_bytes_;
    m.buffers = 0;
    for (const Buffer& b : buffers_)
        if (b.device() == ctx_.device) m.buffers += b.size();
    m.buffers += audio_buf_.size();
    DeviceLane& lane = *lane_;
    const size_t lane_ctx =
        backend::context_device_bytes(ctx_.device, DeviceLane::context_options());
    if (own_lane_) {
        m.encoder_scratch = lane.encoder_scratch().capacity();
        m.context = lane_ctx;
        m.scratch = lane.device_bytes() - m.encoder_scratch - m.context;
    } else {
        m.shared = lane.device_bytes();
    }
    m.head_state = bytes(head_state_.buffers);
    m.detok_state = detok_state_ ? detok_state_->device_bytes() : 0;
    m.detok_context = own_detok_ctx_ ? backend::context_device_bytes(
                                           detok_ctx_.device, detok_context_options(!own_lane_))
                                     : 0;
    return m;
}

backend::ContextOptions Session::detok_context_options(bool batched) {
    // A session's own: small, its ops work on at most 6 · kDetokMaxStepFrames rows. A shared
    // lane's (DetokBatcher: the chunks of many sessions in one step): the default sizes.
    backend::ContextOptions dopt;
    if (!batched) {
        dopt.scratch_bytes = size_t{16} << 20;
        dopt.gemm_workspace_bytes = size_t{8} << 20;
    }
    // Alone, the session's audio comes before its own next step. In a batch (a shared lane) the
    // step that every session waits for comes first; each session's audio fills the gaps.
    dopt.high_priority = !batched;
    return dopt;
}

int Session::pending_positions() const {
    int64_t n = 0;
    for (const auto& p : pending_) {
        n += p.kind == Pending::kText      ? static_cast<int64_t>(p.ids.size())
             : p.kind == Pending::kAudioIn ? p.audio_rows
                                           : 1;
    }
    return static_cast<int>(n);
}

Status Session::reset() {
    if (responding_) {
        detok_.abort();
        responding_ = false;
        draining_ = false;
    }
    can_truncate_ = false;
    // Back to the memory of a fresh session: one chunk of KV positions, no snapshots.
    const int kv0 = std::min(kKvChunk, capacity_);
    if (lfm_state_.capacity > kv0) {
        VOXRT_RETURN_IF_ERROR(model_.backbone().resize_kv(ctx_, lfm_state_, kv0));
        text_graph_.reset();
        frame_graph_.reset();
    }
    model_.backbone().reset_state(ctx_, lfm_state_);  // zeroes the conv block too (its views)
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    conv_hist_.clear();
    conv_hist_cap_ = 0;
    conv_hist_n_ = 0;
    n_past_ = 0;
    pending_.clear();
    audio_rows_used_ = 0;
    last_turn_.clear();
    pending_mel_ms_ = pending_enc_ms_ = 0;
    return add_text("<|startoftext|>");
}

Status Session::add_tokens(const std::vector<int32_t>& ids) {
    const int32_t V = model_.config().lfm.vocab_size;
    for (int32_t id : ids)
        if (id < 0 || id >= V)
            return make_error(StatusCode::kInvalidArgument,
                              "token id %d outside the vocabulary of %d", id, V);
    const int64_t need =
        static_cast<int64_t>(n_past_) + pending_positions() + static_cast<int64_t>(ids.size());
    if (need > capacity_)
        return make_error(StatusCode::kOutOfRange,
                          "conversation needs %lld positions but the context holds %d",
                          static_cast<long long>(need), capacity_);
    if (responding_) return make_error(StatusCode::kInvalidArgument, "a response is running");
    if (ids.empty()) return Status::ok();
    can_truncate_ = false;
    Pending p{Pending::kText, ids, 0, 0, {}};
    pending_.push_back(std::move(p));
    return Status::ok();
}

Status Session::add_text(std::string_view text) {
    return add_tokens(model_.tokenizer().encode(text));
}

Status Session::new_turn(std::string_view role) {
    if (role != "system" && role != "user" && role != "assistant")
        return make_error(StatusCode::kInvalidArgument, "unknown role \"%.*s\"",
                          static_cast<int>(role.size()), role.data());
    return add_text("<|im_start|>" + std::string(role) + "\n");
}

Status Session::end_turn() {
    return add_text("<|im_end|>\n");
}

Status Session::add_frame(const std::array<int32_t, 8>& codes) {
    const int Q = model_.config().codebooks;
    for (int q = 0; q < Q; ++q)
        if (codes[static_cast<size_t>(q)] < 0 ||
            codes[static_cast<size_t>(q)] >= model_.config().audio_vocab)
            return make_error(StatusCode::kInvalidArgument,
                              "audio code %d of codebook %d is out of range",
                              codes[static_cast<size_t>(q)], q);
    if (n_past_ + pending_positions() + 1 > capacity_)
        return make_error(StatusCode::kOutOfRange,
                          "conversation exceeds the context of %d positions", capacity_);
    if (responding_) return make_error(StatusCode::kInvalidArgument, "a response is running");
    can_truncate_ = false;
    Pending p{Pending::kFrame, {}, 0, 0, codes};
    pending_.push_back(std::move(p));
    return Status::ok();
}

Status Session::add_audio(const float* pcm, size_t n, int sample_rate) {
    const auto t0 = Clock::now();
    if (n == 0) return make_error(StatusCode::kInvalidArgument, "audio has no samples");
    if (responding_) return make_error(StatusCode::kInvalidArgument, "a response is running");
    can_truncate_ = false;
    if (sample_rate < 1000 || sample_rate > 384000)
        return make_error(StatusCode::kInvalidArgument, "sample rate %d Hz is out of range",
                          sample_rate);
    const int target = model_.config().preprocessor.sample_rate;
    std::vector<float> resampled;
    const float* p16 = pcm;
    size_t n16 = n;
    if (sample_rate != target) {
        resampled = audio::resample(pcm, n, sample_rate, target, ctx_.pool);
        p16 = resampled.data();
        n16 = resampled.size();
    }
    const audio::MelFrontend& mf = model_.mel();
    if (n16 / static_cast<size_t>(mf.hop()) >=
        static_cast<size_t>(INT_MAX / std::max(mf.features(), 1)) - 1)
        return make_error(StatusCode::kOutOfRange, "[mel] %zu samples is too long", n16);
    const int64_t T = mf.shape(n16).frames;
    const int64_t factor = model_.config().encoder.subsampling_factor;
    const int64_t rows = (T + factor - 1) / factor;
    const int64_t need = static_cast<int64_t>(n_past_) + pending_positions() + rows;
    if (need > capacity_ || audio_rows_used_ + rows > capacity_)
        return make_error(StatusCode::kOutOfRange,
                          "audio of %.1f s needs %lld positions; with the conversation so far that "
                          "is %lld, but the "
                          "context holds %d",
                          static_cast<double>(n) / sample_rate, static_cast<long long>(rows),
                          static_cast<long long>(need), capacity_);
    const model::AudioEncoder& enc = model_.encoder();
    const bool mel_here = mel_on_device_ && ctx_.device != Device::kCPU;
    const size_t ws = enc.workspace_bytes(T, ctx_) +
                      arena_bytes(ctx_.act_dtype(), rows * model_.config().encoder.d_model) +
                      (mel_here ? arena_bytes(DType::kF32, static_cast<int64_t>(n16)) +
                                      arena_bytes(DType::kF32, mf.features() * T)
                                : 0) +
                      (1u << 20);
    VOXRT_RETURN_IF_ERROR(lane_->reserve_encoder(ws));
    VOXRT_RETURN_IF_ERROR(ensure_audio_rows(audio_rows_used_ + rows));
    Arena& enc_scratch = lane_->encoder_scratch();
    enc_scratch.reset();
    Tensor enc_out = enc_scratch.alloc(ctx_.act_dtype(), {rows, model_.config().encoder.d_model});
    Tensor adapter_out = audio_in_.rows(audio_rows_used_, audio_rows_used_ + rows);
    double mel_ms = 0;
    Clock::time_point t1;
    Status on_device = make_error(StatusCode::kUnsupported, "mel on the host");
    if (mel_here) {
        // The spectrogram on the GPU (ops::log_mel): only the samples are uploaded.
        Tensor pcm_dev = enc_scratch.alloc(DType::kF32, {static_cast<int64_t>(n16)});
        Tensor mel_dev = enc_scratch.alloc(DType::kF32, {mf.features(), T});
        ops::copy(ctx_,
                  Tensor::make(const_cast<float*>(p16), DType::kF32, Device::kCPU,
                               {static_cast<int64_t>(n16)}),
                  pcm_dev);
        on_device = ops::log_mel(ctx_, mf, pcm_dev, mel_dev);
        if (on_device.code() != StatusCode::kUnsupported) {
            VOXRT_RETURN_IF_ERROR(on_device);
            mel_ms = ms_since(t0);
            t1 = Clock::now();
            VOXRT_RETURN_IF_ERROR(enc.encode(ctx_, mel_dev, enc_scratch, enc_out, adapter_out));
        }
    }
    if (on_device.code() == StatusCode::kUnsupported) {
        VOXRT_ASSIGN_OR_RETURN(audio::MelSpectrogram mel, mf.compute(p16, n16, ctx_.pool));
        VOXRT_ASSERT(mel.frames == T, "mel frames %d, expected %lld", mel.frames,
                     static_cast<long long>(T));
        mel_ms = ms_since(t0);
        t1 = Clock::now();
        VOXRT_RETURN_IF_ERROR(
            enc.encode(ctx_, mel.data.data(), T, enc_scratch, enc_out, adapter_out));
    }
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    Pending p{Pending::kAudioIn, {}, audio_rows_used_, rows, {}};
    pending_.push_back(std::move(p));
    audio_rows_used_ += rows;
    pending_mel_ms_ += mel_ms;
    pending_enc_ms_ += ms_since(t1);
    return Status::ok();
}

Status Session::add_mel(const audio::MelSpectrogram& mel, double mel_ms, double seconds) {
    const auto t1 = Clock::now();
    if (responding_) return make_error(StatusCode::kInvalidArgument, "a response is running");
    if (mel.frames <= 0 || mel.features != model_.mel().features())
        return make_error(StatusCode::kInvalidArgument, "mel spectrogram of %d x %d frames",
                          mel.features, mel.frames);
    can_truncate_ = false;
    const int64_t T = mel.frames;
    const int64_t factor = model_.config().encoder.subsampling_factor;
    const int64_t rows = (T + factor - 1) / factor;
    const int64_t need = static_cast<int64_t>(n_past_) + pending_positions() + rows;
    if (need > capacity_ || audio_rows_used_ + rows > capacity_)
        return make_error(StatusCode::kOutOfRange,
                          "audio of %.1f s needs %lld positions; with the conversation so far that "
                          "is %lld, but the "
                          "context holds %d",
                          seconds, static_cast<long long>(rows), static_cast<long long>(need),
                          capacity_);
    const model::AudioEncoder& enc = model_.encoder();
    const size_t ws = enc.workspace_bytes(T, ctx_) +
                      arena_bytes(ctx_.act_dtype(), rows * model_.config().encoder.d_model) +
                      (1u << 20);
    VOXRT_RETURN_IF_ERROR(lane_->reserve_encoder(ws));
    VOXRT_RETURN_IF_ERROR(ensure_audio_rows(audio_rows_used_ + rows));
    Arena& enc_scratch = lane_->encoder_scratch();
    enc_scratch.reset();
    Tensor enc_out = enc_scratch.alloc(ctx_.act_dtype(), {rows, model_.config().encoder.d_model});
    Tensor adapter_out = audio_in_.rows(audio_rows_used_, audio_rows_used_ + rows);
    VOXRT_RETURN_IF_ERROR(enc.encode(ctx_, mel.data.data(), T, enc_scratch, enc_out, adapter_out));
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    Pending p{Pending::kAudioIn, {}, audio_rows_used_, rows, {}};
    pending_.push_back(std::move(p));
    audio_rows_used_ += rows;
    pending_mel_ms_ += mel_ms;
    pending_enc_ms_ += ms_since(t1);
    return Status::ok();
}

Status Session::forward_rows(Tensor& x, int64_t rows) {
    std::vector<int32_t> pos(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i)
        pos[static_cast<size_t>(i)] = static_cast<int32_t>(n_past_ + i);
    DeviceLane& lane = *lane_;
    Tensor pos_dev = lane.pos.rows(0, rows);
    ops::copy(ctx_, host_i32(pos.data(), rows), pos_dev);
    Tensor xr = x.rows(0, rows);
    Tensor out = rows == 1 ? h_ : lane.out.rows(0, rows);
    model_.backbone().forward(ctx_, lfm_state_, xr, pos_dev, lane.scratch(), out);
    if (rows > 1) {
        Tensor last = lane.out.rows(rows - 1, rows);
        ops::copy(ctx_, last, h_);
    }
    n_past_ += static_cast<int>(rows);
    return Status::ok();
}

Status Session::prefill_chunk(bool* done) {
    PrefillTake take;
    VOXRT_RETURN_IF_ERROR(
        prefill_take(lane_->x, &take));  // lane_->x: shared by the lane's sessions
    if (take.rows > 0) VOXRT_RETURN_IF_ERROR(forward_rows(lane_->x, take.rows));
    return prefill_consume(take, done);
}

Status Session::prefill_take(Tensor& x, PrefillTake* take) {
    // Fills x from the front of pending_ up to chunk_ rows (across items, as one whole prefill
    // would: the same backbone calls whether the rows go in one step() or several).
    int64_t row = 0;
    size_t whole = 0;     // items consumed entirely
    int64_t partial = 0;  // rows consumed of pending_[whole]
    const model::Lfm2Network& bb = model_.backbone();
    VOXRT_RETURN_IF_ERROR(ensure_kv(n_past_ + std::min(chunk_, pending_positions())));
    for (; whole < pending_.size() && row < chunk_; ++whole) {
        Pending& p = pending_[whole];
        if (p.kind == Pending::kText) {
            const int64_t n = static_cast<int64_t>(p.ids.size());
            const int64_t k = std::min<int64_t>(chunk_ - row, n);
            Tensor ids = lane_->ids.rows(0, k);
            ops::copy(ctx_, host_i32(p.ids.data(), k), ids);
            Tensor dst = x.rows(row, row + k);
            ops::embedding(ctx_, bb.embed_tokens(), ids, dst);
            // The ids buffer is reused by the next copy; on CUDA both are stream-ordered.
            row += k;
            if (k < n) {
                partial = k;
                break;
            }
        } else if (p.kind == Pending::kAudioIn) {
            const int64_t k = std::min<int64_t>(chunk_ - row, p.audio_rows);
            Tensor src = audio_in_.rows(p.audio_row, p.audio_row + k);
            Tensor dst = x.rows(row, row + k);
            ops::copy(ctx_, src, dst);
            row += k;
            if (k < p.audio_rows) {
                partial = k;
                break;
            }
        } else {
            const int Q = model_.config().codebooks;
            ops::copy(ctx_, Tensor::make(p.codes.data(), DType::kI32, Device::kCPU, {1, Q}),
                      codes_);
            Tensor dst = x.rows(row, row + 1);
            model_.audio_head().embed_frames(ctx_, codes_, dst);
            row += 1;
        }
    }
    take->rows = row;
    take->whole = whole;
    take->partial = partial;
    return Status::ok();
}

Status Session::prefill_consume(const PrefillTake& take, bool* done) {
    stats_.prefill_positions += static_cast<int>(take.rows);
    if (take.partial > 0) {
        Pending& p = pending_[take.whole];
        if (p.kind == Pending::kText) {
            p.ids.erase(p.ids.begin(), p.ids.begin() + take.partial);
        } else {
            p.audio_row += take.partial;
            p.audio_rows -= take.partial;
        }
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(take.whole));
    *done = pending_.empty();
    if (!*done) return Status::ok();
    audio_rows_used_ = 0;
    return ops::synchronize(ctx_);
}

void Session::step_ops(const GenerateOptions& opt, bool text, bool forward) {
    Tensor x1 = x_.rows(0, 1);
    if (forward) {
        Tensor p1 = pos_.rows(0, 1);
        model_.backbone().forward(ctx_, lfm_state_, x1, p1, lane_->scratch(), h_);
        ops::increment(ctx_, p1, 1);  // the next step's position
    }
    const model::AudioModelConfig& cfg = model_.config();
    const int Q = cfg.codebooks;
    if (text) {
        ops::linear(ctx_, h_, model_.backbone().text_head(), nullptr, text_logits_);
        if (opt.suppress_end)
            ops::set_value(ctx_, text_logits_, model_.special().im_end, -INFINITY);
        if (opt.text_temperature <= 0 || opt.text_top_k == 1) {
            ops::argmax(ctx_, text_logits_, token_);
        } else {
            Tensor ctr = counters_.rows(Q, Q + 1);
            ops::sample_top_k(ctx_, text_logits_, opt.text_temperature, opt.text_top_k, opt.seed,
                              ctr, token_);
        }
        // The choice is the next step's input. When the turn ends instead, nothing reads it: the
        // next prefill writes x_ from row 0 before running any row.
        ops::embedding(ctx_, model_.backbone().embed_tokens(), token_, x1);
    } else {
        model::FrameSampling fs;
        fs.temperature = opt.audio_temperature;
        fs.top_k = opt.audio_top_k;
        fs.seed = opt.seed ^ 0xa0d10c0de5ull;
        fs.counters = &counters_;
        fs.suppress_eos = opt.suppress_end;
        Tensor codes_1d = codes_.reshape({Q});
        model_.audio_head().sample_frame(ctx_, head_state_, h_, fs, lane_->scratch(), codes_1d,
                                         nullptr, nullptr);
        // An end-of-audio choice in codebook 0 makes it an end-of-audio frame (every code 2048):
        // fed back, and read back, as such (generate() yields the same).
        ops::fill_rows_led_by(ctx_, codes_, cfg.audio_vocab - 1);
        model_.audio_head().embed_frames(ctx_, codes_, x1);
    }
    ops::increment(ctx_, counters_, Q + 1);  // the next step's counters
}

Status Session::run_step(const GenerateOptions& opt, bool text, bool forward, int32_t* token,
                         std::array<int32_t, 8>* codes) {
    const int Q = model_.config().codebooks;
    if (use_graphs_ && forward) {
        backend::Graph& g = text ? text_graph_ : frame_graph_;
        if (!g.captured()) {
            VOXRT_RETURN_IF_ERROR(g.begin(ctx_));
            step_ops(opt, text, forward);
            VOXRT_RETURN_IF_ERROR(g.end(ctx_));
        }
        VOXRT_RETURN_IF_ERROR(g.replay(ctx_));
    } else {
        step_ops(opt, text, forward);
    }
    if (forward) {
        ++n_past_;
        snapshot_conv(ctx_, n_past_ - resp_start_);
    }
    const Tensor choice = text ? token_ : codes_.reshape({Q});
    Tensor choice_host = choice_host_.rows(0, choice.numel());
    ops::copy_to_host_async(ctx_, choice, choice_host);
    if (text && capture_) {
        cap_logits_.resize(static_cast<size_t>(text_logits_.numel()));
        Tensor dst =
            Tensor::make(cap_logits_.data(), DType::kF32, Device::kCPU, {text_logits_.numel()});
        ops::copy(ctx_, text_logits_, dst);
    }
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    const int32_t* got = choice_host_.ptr<int32_t>();
    if (text) {
        *token = got[0];
    } else {
        std::copy(got, got + Q, codes->begin());
    }
    return Status::ok();
}

// Conv layers' state after the response's first `index` positions, kept so that
// truncate_last_turn() can restore it (KV entries need no copy: positions past the cut are simply
// overwritten later). Queued on the session's stream like the step itself.
void Session::snapshot_conv(const ops::Context& ctx, int index) {
    Tensor src, dst;
    if (conv_snapshot(index, &src, &dst)) ops::copy(ctx, src, dst);
}

bool Session::conv_snapshot(int index, Tensor* src, Tensor* dst) {
    if (conv_layers_ == 0 || index < 0 || index >= conv_hist_cap_) return false;
    *src = conv_all();
    *dst = conv_slot(index);
    conv_hist_n_ = std::max(conv_hist_n_, index + 1);
    return true;
}

// The whole conv block as one tensor, and history slot `index` shaped like it.
Tensor Session::conv_all() const {
    const Tensor& first = lfm_state_.conv_state[conv_first_layer()];
    return conv_block_.view(first.dtype,
                            {static_cast<int64_t>(conv_snapshot_bytes_ / dtype_size(first.dtype))});
}

Tensor Session::conv_slot(int index) const {
    const Tensor all = conv_all();
    return conv_hist_[static_cast<size_t>(index / kSnapshotChunk)].view(
        all.dtype, {all.numel()},
        static_cast<size_t>(index % kSnapshotChunk) * conv_snapshot_bytes_);
}

Status Session::ensure_snapshot(int index) {
    while (conv_layers_ > 0 && index >= conv_hist_cap_) {
        const size_t bytes = static_cast<size_t>(kSnapshotChunk) * conv_snapshot_bytes_;
        Buffer b = Buffer::allocate(ctx_.device, bytes);
        if (!b.data())
            return make_error(StatusCode::kOutOfMemory,
                              "session: cannot allocate %zu bytes of conv-state history for "
                              "step %d",
                              bytes, index);
        conv_hist_.push_back(std::move(b));
        conv_hist_cap_ += kSnapshotChunk;
    }
    return Status::ok();
}

Status Session::ensure_kv(int positions) {
    if (positions <= lfm_state_.capacity) return Status::ok();
    if (positions > capacity_)
        return make_error(StatusCode::kOutOfRange,
                          "conversation needs %d positions but the context holds %d", positions,
                          capacity_);
    const int rows = std::min(capacity_, (positions + kKvChunk - 1) / kKvChunk * kKvChunk);
    const Status st = model_.backbone().resize_kv(ctx_, lfm_state_, rows);
    if (!st)
        return make_error(st.code(), "session: KV cache of %d positions: %s", rows,
                          st.message().c_str());
    // The captured steps hold the old caches' addresses.
    text_graph_.reset();
    frame_graph_.reset();
    return Status::ok();
}

Status Session::ensure_audio_rows(int64_t rows) {
    if (rows <= (audio_in_.empty() ? 0 : audio_in_.dim(0))) return Status::ok();
    const int64_t n = std::min<int64_t>(capacity_, (rows + kKvChunk - 1) / kKvChunk * kKvChunk);
    const int64_t D = model_.config().lfm.hidden_size;
    const DType dt = ctx_.act_dtype();
    Buffer b = Buffer::allocate(ctx_.device, static_cast<size_t>(n * D) * dtype_size(dt));
    if (!b.data())
        return make_error(StatusCode::kOutOfMemory,
                          "session: cannot allocate %lld rows for the user's audio",
                          static_cast<long long>(n));
    Tensor grown = b.view(dt, {n, D});
    if (audio_rows_used_ > 0) {  // the rows not yet prefilled move along
        Tensor dst = grown.rows(0, audio_rows_used_);
        ops::copy(ctx_, audio_in_.rows(0, audio_rows_used_), dst);
        VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    }
    audio_buf_ = std::move(b);
    audio_in_ = grown;
    return Status::ok();
}

size_t Session::conv_first_layer() const {
    size_t l = 0;
    while (l < lfm_state_.conv_state.size() && lfm_state_.conv_state[l].empty()) ++l;
    return l;
}

Status Session::begin(const GenerateOptions& opt) {
    if (responding_) return make_error(StatusCode::kInvalidArgument, "a response is running");
    if (opt.max_new_tokens < 0)
        return make_error(StatusCode::kInvalidArgument, "max_new_tokens must be >= 0");
    if (!(opt.text_temperature >= 0) || !(opt.audio_temperature >= 0) || opt.text_top_k < 0 ||
        opt.audio_top_k < 0)
        return make_error(StatusCode::kInvalidArgument,
                          "temperatures and top-k must be non-negative numbers");
    {
        const model::Detokenizer* d = model_.detokenizer();
        const int max_chunk = d ? d->max_step_frames() : model::kDetokMaxStepFrames;
        if (opt.detok_chunk_frames < 1 || opt.detok_chunk_frames > max_chunk)
            return make_error(StatusCode::kInvalidArgument,
                              "detok_chunk_frames must be in [1, %d] (the detokenizer's "
                              "max_step_frames), got %d",
                              max_chunk, opt.detok_chunk_frames);
    }
    const int need = n_past_ + pending_positions() + opt.max_new_tokens;
    if (need > capacity_)
        return make_error(StatusCode::kOutOfRange,
                          "this turn needs up to %d positions (%d in the conversation + %d new) "
                          "but the context holds %d",
                          need, n_past_ + pending_positions(), opt.max_new_tokens, capacity_);
    if (pending_.empty())
        return make_error(StatusCode::kInvalidArgument, "nothing to respond to: add a turn first");
    // Room for the conv state at the response's start; the steps add room as they go
    // (ensure_snapshot in step_prepare).
    VOXRT_RETURN_IF_ERROR(ensure_snapshot(0));
    gopt_ = opt;
    static std::atomic<uint64_t> begins{0};
    begin_order_ = begins.fetch_add(1, std::memory_order_relaxed);
    const model::AudioModelConfig& cfg = model_.config();
    const model::SpecialTokens& sp = model_.special();
    TurnState::Config tc;
    tc.interleaved = opt.mode == GenerationMode::kInterleaved;
    tc.n_text = cfg.interleaved_n_text;
    tc.n_audio = cfg.interleaved_n_audio;
    tc.max_steps = opt.max_new_tokens;
    tc.im_end = sp.im_end;
    tc.text_end = sp.text_end;
    tc.audio_start = sp.audio_start;
    turn_.start(tc);
    // The first frame is detokenized inline; a batch step may hand it to the worker instead
    // (BatchStepper::kInlineFirstFrames).
    detok_.begin(opt.decode_audio, opt.detok_chunk_frames, opt.detok_async, opt.detok_ramp);
    stats_ = TurnStats{};
    stats_.mel_ms = pending_mel_ms_;
    stats_.encoder_ms = pending_enc_ms_;
    pending_mel_ms_ = pending_enc_ms_ = 0;
    last_turn_.clear();
    cancel_.store(false, std::memory_order_relaxed);
    need_forward_ = false;
    started_ = false;
    prefilling_ = false;
    step_ms_ = 0;
    can_truncate_ = false;
    conv_hist_n_ = 0;
    responding_ = true;
    return Status::ok();
}

Status Session::start_response() {
    stats_.prefill_ms = ms_since(t0_);
    resp_start_ = n_past_;
    snapshot_conv(ctx_, 0);
    const int Q = model_.config().codebooks;
    if (use_graphs_) {
        const GenerateOptions& opt = gopt_;
        char key[160];
        std::snprintf(key, sizeof key, "%g/%d/%g/%d/%llu/%d", opt.text_temperature, opt.text_top_k,
                      opt.audio_temperature, opt.audio_top_k,
                      static_cast<unsigned long long>(opt.seed), opt.suppress_end ? 1 : 0);
        if (graph_key_ != key) {
            text_graph_.reset();
            frame_graph_.reset();
            graph_key_ = key;
        }
    }
    // The first step's sampling counters (step s uses s·(Q+1) + i, i = 0..Q) and position; every
    // step advances both on the device (step_ops), so the steps upload nothing.
    std::vector<int32_t> counters(static_cast<size_t>(Q + 1));
    for (int i = 0; i <= Q; ++i) counters[static_cast<size_t>(i)] = i;
    ops::copy(ctx_, host_i32(counters.data(), Q + 1), counters_);
    int32_t p = n_past_;
    Tensor p1 = pos_.rows(0, 1);
    ops::copy(ctx_, host_i32(&p, 1), p1);
    started_ = true;
    return Status::ok();
}

Status Session::fail(Status st) {
    detok_.abort();
    responding_ = false;
    draining_ = false;
    return st;
}

void Session::pcm_events(std::vector<Event>& out) {
    for (DetokStream::Chunk& c : chunks_) {
        if (c.pcm.empty()) continue;
        Event e;
        e.kind = EventKind::kPcm;
        e.step = c.step;
        e.pcm = std::move(c.pcm);
        e.t_ms = ms_since(t0_);
        if (stats_.first_pcm_ms < 0) stats_.first_pcm_ms = e.t_ms;
        out.push_back(std::move(e));
    }
    chunks_.clear();
}

Expected<Session::StepPlan> Session::step_prepare(std::vector<Event>& out) {
    StepPlan plan;
    if (!responding_)
        return make_error(StatusCode::kInvalidArgument, "no response is running (begin() first)");
    if (draining_) {
        const Status st = drain(out, /*wait=*/false);
        if (!st) return fail(st);
        plan.done = !draining_;
        plan.draining = draining_;
        return plan;
    }
    if (!started_) {
        // The prefill, one chunk (<= chunk_ positions) per call, so that a batch's other sessions
        // wait at most one chunk for this one; the call that ends it also makes the first step.
        if (!prefilling_) {
            t0_ = Clock::now();
            prefilling_ = true;
        }
        bool prefilled = false;
        Status st = prefill_chunk(&prefilled);
        if (!st) return fail(st);
        if (!prefilled) {
            plan.prefill = true;
            return plan;
        }
        prefilling_ = false;
        st = start_response();
        if (!st) return fail(st);
    }
    if (cancel_.load(std::memory_order_relaxed)) turn_.cancel();
    {
        const Status st = detok_.poll(chunks_);
        pcm_events(out);
        if (!st) return fail(st);
    }
    if (turn_.done()) {
        const Status st = finish_response(out);
        if (!st) return fail(st);
        plan.done = !draining_;
        plan.draining = draining_;
        return plan;
    }
    plan.text = turn_.text_next();
    if (need_forward_) {  // the step runs one more position: room for its KV and its snapshot
        Status st = ensure_kv(n_past_ + 1);
        if (st) st = ensure_snapshot(n_past_ + 1 - resp_start_);
        if (!st) return fail(st);
    }
    plan.forward = need_forward_;
    need_forward_ = false;
    plan.step = turn_.steps();
    plan.detok_before = detok_.wait_ms();
    return plan;
}

Expected<bool> Session::step_complete(const StepPlan& plan, int32_t tok,
                                      const std::array<int32_t, 8>& chosen, double step_ms,
                                      std::vector<Event>& out) {
    const model::AudioModelConfig& cfg = model_.config();
    const int Q = cfg.codebooks;
    const int step = plan.step;
    TurnState::Outcome o;
    if (plan.text) {
        o = turn_.on_text(tok);
        if (o.keep) {
            last_turn_.push_back(GeneratedItem{false, tok, {}});
            ++stats_.text_tokens;
            Event e;
            e.kind = EventKind::kText;
            e.step = step;
            e.token = tok;
            e.t_ms = ms_since(t0_);
            out.push_back(std::move(e));
        }
    } else {
        std::array<int32_t, 8> codes = chosen;
        // The device made an end-of-audio frame whole before embedding it (step_ops); what is
        // yielded does not depend on that.
        const bool eos = codes[0] == cfg.audio_vocab - 1;
        if (eos)
            for (int q = 0; q < Q; ++q) codes[static_cast<size_t>(q)] = cfg.audio_vocab - 1;
        o = turn_.on_frame(eos);
        last_turn_.push_back(GeneratedItem{true, -1, codes});
        ++stats_.audio_frames;
        Event e;
        e.kind = EventKind::kAudioFrame;
        e.step = step;
        e.codes = codes;
        e.n_codes = Q;
        e.t_ms = ms_since(t0_);
        if (stats_.first_frame_ms < 0) stats_.first_frame_ms = e.t_ms;
        out.push_back(std::move(e));
        // A frame with code 2048 in a later codebook (not an end-of-audio frame) cannot be
        // detokenized (the reference's processor.decode rejects it; its streaming demo skips such
        // frames): skip it here too.
        bool decodable = !eos;
        for (int q = 0; q < Q; ++q)
            decodable = decodable && codes[static_cast<size_t>(q)] < cfg.audio_vocab - 1;
        if (decodable) {
            const auto t_push = Clock::now();
            const Status dst = detok_.push(codes.data(), step, chunks_);
            step_ms += ms_since(t_push);  // less its wait for the detokenizer, below
            pcm_events(out);
            if (!dst) return fail(dst);
        }
    }
    need_forward_ = o.keep;
    // The step's wall time, in-step detokenization excluded, goes to its kind's total.
    const double ms = step_ms - (detok_.wait_ms() - plan.detok_before);
    (plan.text ? stats_.text_step_ms : stats_.audio_step_ms) += ms;
    step_ms_ += ms;
    if (!turn_.done()) return false;
    const Status st = finish_response(out);
    if (!st) return fail(st);
    return !draining_;
}

Expected<bool> Session::step(std::vector<Event>& out) {
    VOXRT_ASSIGN_OR_RETURN(const StepPlan plan, step_prepare(out));
    if (plan.done) return true;
    if (plan.prefill) return false;
    if (plan.draining) {  // stepped on its own: nothing else to do than wait for the detokenizer
        const Status st = drain(out, /*wait=*/true);
        if (!st) return fail(st);
        return true;
    }
    const auto t_it = Clock::now();
    int32_t tok = 0;
    std::array<int32_t, 8> codes{};
    const Status st = run_step(gopt_, plan.text, plan.forward, plan.text ? &tok : nullptr,
                               plan.text ? nullptr : &codes);
    if (!st) return fail(st);
    return step_complete(plan, tok, codes, ms_since(t_it), out);
}

Status Session::finish_response(std::vector<Event>& out) {
    if (need_forward_) {  // the last item was yielded but never run: it leads the next prefill
        const GeneratedItem& it = last_turn_.back();
        if (it.is_frame) {
            pending_.push_back(Pending{Pending::kFrame, {}, 0, 0, it.codes});
        } else {
            pending_.push_back(Pending{Pending::kText, {it.token}, 0, 0, {}});
        }
        need_forward_ = false;
    }
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    const int steps = turn_.steps();
    if (!own_lane_) {
        // In a batch: the other sessions' next step does not wait for this one's detokenizer.
        VOXRT_RETURN_IF_ERROR(detok_.finish_begin(steps, chunks_));
        pcm_events(out);
        draining_ = true;
        return drain(out, /*wait=*/false);
    }
    VOXRT_RETURN_IF_ERROR(detok_.finish(steps, chunks_));
    pcm_events(out);
    end_response(out);
    return Status::ok();
}

Status Session::drain(std::vector<Event>& out, bool wait) {
    bool all = true;
    if (wait) {
        VOXRT_RETURN_IF_ERROR(detok_.finish_wait(chunks_));
    } else {
        VOXRT_ASSIGN_OR_RETURN(all, detok_.finish_poll(chunks_));
    }
    pcm_events(out);
    if (!all) return Status::ok();
    draining_ = false;
    end_response(out);
    return Status::ok();
}

void Session::end_response(std::vector<Event>& out) {
    const int steps = turn_.steps();
    stats_.steps = steps;
    stats_.detok_ms = detok_.wait_ms();
    stats_.detok_busy_ms = detok_.busy_ms();
    stats_.decode_ms = step_ms_;
    stats_.total_ms = ms_since(t0_);
    Event e;
    e.kind = EventKind::kEndOfTurn;
    e.step = steps;
    e.end = turn_.end();
    e.t_ms = stats_.total_ms;
    out.push_back(std::move(e));
    responding_ = false;
    can_truncate_ = true;
}

Status Session::generate(const GenerateOptions& opt, const EventSink& sink, TurnStats* stats_out) {
    VOXRT_RETURN_IF_ERROR(begin(opt));
    std::vector<Event> events;
    for (;;) {
        events.clear();
        VOXRT_ASSIGN_OR_RETURN(const bool done, step(events));
        for (const Event& e : events)
            if (sink && !sink(e) && e.kind != EventKind::kEndOfTurn) cancel();
        if (done) break;
    }
    if (stats_out) *stats_out = stats_;
    return Status::ok();
}

Status Session::truncate_last_turn(size_t keep) {
    if (responding_)
        return make_error(StatusCode::kInvalidArgument, "truncate: a response is running");
    if (!can_truncate_)
        return make_error(StatusCode::kInvalidArgument,
                          "truncate: only the last response can be cut, before anything else is "
                          "added");
    if (keep >= last_turn_.size()) return Status::ok();
    // Items 0..keep-1 stay: positions resp_start_ .. resp_start_ + keep - 1. The ones the steps
    // ran have their conv state in the history; the last yielded item (never run) is pending.
    if (static_cast<int>(keep) >= conv_hist_n_)
        return make_error(StatusCode::kInternal, "truncate: no conv state for position %zu", keep);
    if (conv_layers_ > 0) {
        Tensor all = conv_all();
        ops::copy(ctx_, conv_slot(static_cast<int>(keep)), all);
    }
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    // KV entries past the cut stay in the cache but are never read: attention covers positions
    // < n_past_, and the next positions overwrite them.
    n_past_ = resp_start_ + static_cast<int>(keep);
    pending_.clear();
    audio_rows_used_ = 0;
    last_turn_.resize(keep);
    conv_hist_n_ = static_cast<int>(keep) + 1;
    return Status::ok();
}

}  // namespace voxrt::runtime
