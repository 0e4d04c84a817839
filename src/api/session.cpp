// voxrt::Session over runtime::Session: turn bookkeeping (which turn is open, closing a response),
// input checks that name the field, text deltas through text::StreamDecoder, and the translation
// of runtime events into public ones.
#include "voxrt/session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "api/session_impl.h"
#include "model/lfm_audio.h"

namespace voxrt {

namespace {

runtime::GenerateOptions generate_options(const ResponseOptions& o) {
    runtime::GenerateOptions g;
    g.mode = o.mode == Mode::kInterleaved ? runtime::GenerationMode::kInterleaved
                                          : runtime::GenerationMode::kSequential;
    g.max_new_tokens = o.max_steps;
    g.text_temperature = o.sampling.text_temperature;
    g.text_top_k = o.sampling.text_top_k;
    g.audio_temperature = o.sampling.audio_temperature;
    g.audio_top_k = o.sampling.audio_top_k;
    g.seed = o.seed;
    g.decode_audio = o.audio;
    g.detok_chunk_frames = o.detok_chunk_frames;
    g.detok_async = o.detok_async;
    g.detok_ramp = o.detok_ramp;
    g.suppress_end = o.suppress_end;
    return g;
}

TurnStats public_stats(const runtime::TurnStats& s) {
    TurnStats t;
    t.mel_ms = s.mel_ms;
    t.encoder_ms = s.encoder_ms;
    t.prefill_ms = s.prefill_ms;
    t.decode_ms = s.decode_ms;
    t.detok_ms = s.detok_ms;
    t.detok_busy_ms = s.detok_busy_ms;
    t.text_step_ms = s.text_step_ms;
    t.audio_step_ms = s.audio_step_ms;
    t.first_frame_ms = s.first_frame_ms;
    t.first_pcm_ms = s.first_pcm_ms;
    t.total_ms = s.total_ms;
    t.prefill_positions = s.prefill_positions;
    t.text_tokens = s.text_tokens;
    t.audio_frames = s.audio_frames;
    t.steps = s.steps;
    return t;
}

}  // namespace

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

Expected<std::unique_ptr<Session>> Session::create(std::shared_ptr<const Model> model,
                                                   const SessionOptions& options) {
    if (!model) return make_error(StatusCode::kInvalidArgument, "Session::create: no model");
    if (options.context < 0)
        return make_error(StatusCode::kInvalidArgument,
                          "SessionOptions.context must be >= 0 (0: the model's max_context), got "
                          "%d",
                          options.context);
    auto impl = std::make_unique<Impl>();
    impl->model = std::move(model);
    impl->m = &impl->model->impl();
    impl->opt = options;
    runtime::SessionOptions so;
    so.context = options.context;
    so.device_graphs = options.tuning.device_graphs;
    so.fused_kernels = options.tuning.fused_kernels;
    so.fused_backbone = options.tuning.fused_backbone;
    so.mel_on_device = options.tuning.mel_on_device;
    if (options.share_device_context) {
        VOXRT_ASSIGN_OR_RETURN(so.lane, impl->model->shared_lane());
    }
    VOXRT_ASSIGN_OR_RETURN(impl->rt, runtime::Session::create(*impl->m, so));
    impl->text = std::make_unique<text::StreamDecoder>(impl->m->tokenizer());
    return std::unique_ptr<Session>(new Session(std::move(impl)));
}

Session::Memory Session::memory(int response_steps) const {
    const runtime::SessionMemory m = impl_->rt->memory();
    Memory out;
    out.now = m.total();
    out.at_full_context = m.at_full_context(std::max(response_steps, 0));
    out.kv = m.kv;
    out.shared = m.shared;
    return out;
}

Status Session::add_turn(Role role, std::string_view text) {
    Impl& s = *impl_;
    VOXRT_RETURN_IF_ERROR(s.check_text("add_turn", text));
    if (s.turn == Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument,
                          "add_turn: the user turn is still open (end_user_turn() first)");
    VOXRT_RETURN_IF_ERROR(s.close_response());
    static constexpr const char* kRole[] = {"system", "user", "assistant"};
    VOXRT_RETURN_IF_ERROR(s.rt->new_turn(kRole[static_cast<int>(role)]));
    VOXRT_RETURN_IF_ERROR(s.rt->add_text(text));
    return s.rt->end_turn();
}

Status Session::begin_user_turn() {
    Impl& s = *impl_;
    if (s.turn == Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument, "begin_user_turn: a user turn is open");
    VOXRT_RETURN_IF_ERROR(s.close_response());
    VOXRT_RETURN_IF_ERROR(s.rt->new_turn("user"));
    s.turn = Impl::Turn::kUser;
    s.clear_audio();
    return Status::ok();
}

Status Session::append_text(std::string_view text) {
    Impl& s = *impl_;
    if (s.turn != Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument,
                          "append_text: no user turn is open (begin_user_turn() first)");
    VOXRT_RETURN_IF_ERROR(s.check_text("append_text", text));
    if (s.audio_samples > 0)
        return make_error(StatusCode::kUnsupported,
                          "append_text: text after audio in one user turn is not supported");
    return s.rt->add_text(text);
}

Status Session::append_audio(const float* pcm, size_t n, int sample_rate) {
    Impl& s = *impl_;
    const auto t0 = std::chrono::steady_clock::now();
    if (s.turn != Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument,
                          "append_audio: no user turn is open (begin_user_turn() first)");
    if (sample_rate < 1000 || sample_rate > 384000)
        return make_error(StatusCode::kInvalidArgument,
                          "append_audio: sample rate %d Hz is outside [1000, 384000]", sample_rate);
    if (s.audio_rate != 0 && sample_rate != s.audio_rate)
        return make_error(StatusCode::kInvalidArgument,
                          "append_audio: sample rate %d Hz differs from the turn's %d Hz",
                          sample_rate, s.audio_rate);
    if (n > 0 && !pcm) return make_error(StatusCode::kInvalidArgument, "append_audio: pcm is null");
    if (n == 0) return Status::ok();
    for (size_t i = 0; i < n; ++i)
        if (!std::isfinite(pcm[i]))
            return make_error(StatusCode::kInvalidArgument,
                              "append_audio: sample %zu is not a finite number",
                              s.audio_samples + i);
    // The whole turn must fit the context (checked as it grows, so that an endless stream is
    // refused early rather than buffered).
    const int64_t rows = s.model->audio_turn_positions(s.audio_samples + n, sample_rate) -
                         s.model->turn_positions(Role::kUser, "");
    const int64_t need = static_cast<int64_t>(s.rt->positions()) + s.rt->pending_positions() + rows;
    if (need > s.rt->capacity())
        return make_error(StatusCode::kOutOfRange,
                          "audio of %.1f s needs %lld positions; with the conversation so far that "
                          "is %lld, but the context holds %d",
                          static_cast<double>(s.audio_samples + n) / sample_rate,
                          static_cast<long long>(rows), static_cast<long long>(need),
                          s.rt->capacity());
    s.audio_rate = sample_rate;
    s.audio_samples += n;
    if (s.rt->mel_on_device()) {
        s.audio.insert(s.audio.end(), pcm, pcm + n);
        return Status::ok();
    }
    if (!s.resampler)
        s.resampler =
            std::make_unique<audio::ResampleStream>(sample_rate, s.model->info().input_sample_rate);
    if (!s.mel) s.mel = std::make_unique<audio::MelStream>(s.m->mel());
    s.pcm16.clear();
    s.resampler->push(pcm, n, s.pcm16);
    s.mel->push(s.pcm16.data(), s.pcm16.size(), s.m->pool());
    s.mel_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return Status::ok();
}

Status Session::end_user_turn() {
    Impl& s = *impl_;
    if (s.turn != Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument, "end_user_turn: no user turn is open");
    if (s.audio_samples > 0) {
        Status st;
        if (s.rt->mel_on_device()) {
            st = s.rt->add_audio(s.audio.data(), s.audio.size(), s.audio_rate);
        } else {
            const auto t0 = std::chrono::steady_clock::now();
            s.pcm16.clear();
            s.resampler->finish(s.pcm16);
            s.mel->push(s.pcm16.data(), s.pcm16.size(), s.m->pool());
            Expected<audio::MelSpectrogram> mel = s.mel->finish(s.m->pool());
            s.mel_ms +=
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count();
            st = mel.is_ok() ? s.rt->add_mel(*mel, s.mel_ms,
                                             static_cast<double>(s.audio_samples) / s.audio_rate)
                             : mel.status();
        }
        s.clear_audio();
        s.pcm16.clear();
        s.pcm16.shrink_to_fit();
        if (!st) {
            // The turn stays open without its audio; the caller may add other audio or end it.
            return st;
        }
    }
    VOXRT_RETURN_IF_ERROR(s.rt->end_turn());
    s.turn = Impl::Turn::kNone;
    return Status::ok();
}

Status Session::add_assistant_items(const std::vector<ResponseItem>& items) {
    Impl& s = *impl_;
    if (s.turn == Impl::Turn::kUser)
        return make_error(
            StatusCode::kInvalidArgument,
            "add_assistant_items: the user turn is still open (end_user_turn() first)");
    VOXRT_RETURN_IF_ERROR(s.close_response());
    VOXRT_RETURN_IF_ERROR(s.rt->new_turn("assistant"));
    s.last.clear();
    s.turn = Impl::Turn::kResponded;  // closed by whatever comes next
    for (size_t i = 0; i < items.size(); ++i) {
        const ResponseItem& it = items[i];
        const Status st = it.is_frame ? s.rt->add_frame(it.codes) : s.rt->add_tokens({it.token});
        if (!st) return st.with_context("add_assistant_items: item " + std::to_string(i));
        s.last.push_back(it);
    }
    s.restored = true;
    return Status::ok();
}

Status Session::start_response(const ResponseOptions& options) {
    Impl& s = *impl_;
    if (s.turn == Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument,
                          "start_response: the user turn is still open (end_user_turn() first)");
    if (options.continue_turn && s.turn != Impl::Turn::kResponded)
        return make_error(StatusCode::kInvalidArgument,
                          "ResponseOptions.continue_turn: no assistant turn to continue");
    if (!options.continue_turn) VOXRT_RETURN_IF_ERROR(s.close_response());
    if (options.max_steps < 0)
        return make_error(StatusCode::kInvalidArgument,
                          "ResponseOptions.max_steps must be >= 0, got %d", options.max_steps);
    const Sampling& sm = options.sampling;
    if (!(sm.text_temperature >= 0) || !(sm.audio_temperature >= 0) ||
        !std::isfinite(sm.text_temperature) || !std::isfinite(sm.audio_temperature))
        return make_error(StatusCode::kInvalidArgument,
                          "ResponseOptions.sampling: temperatures must be finite and >= 0");
    if (sm.text_top_k < 0 || sm.audio_top_k < 0)
        return make_error(StatusCode::kInvalidArgument,
                          "ResponseOptions.sampling: top-k must be >= 0");
    if (options.detok_chunk_frames < 1 || options.detok_chunk_frames > 32)
        return make_error(StatusCode::kInvalidArgument,
                          "ResponseOptions.detok_chunk_frames must be in [1, 32], got %d",
                          options.detok_chunk_frames);
    s.ropt = options;
    if (!s.m->detokenizer()) s.ropt.audio = false;
    if (!options.continue_turn) VOXRT_RETURN_IF_ERROR(s.rt->new_turn("assistant"));
    s.rt->set_capture(s.capture);
    const Status st = s.rt->begin(generate_options(s.ropt));
    if (!st) {
        // The assistant turn is open with nothing in it; a later start_response() reopens it.
        s.turn = Impl::Turn::kResponded;
        s.last.clear();
        return st;
    }
    s.last.clear();
    s.restored = false;
    s.text->reset();
    s.turn = Impl::Turn::kResponse;
    return Status::ok();
}

Expected<bool> Session::step(std::vector<Event>& out) {
    Impl& s = *impl_;
    if (s.turn != Impl::Turn::kResponse)
        return make_error(StatusCode::kInvalidArgument,
                          "step: no response is running (start_response() first)");
    s.rt_events.clear();
    return s.deliver(s.rt->step(s.rt_events), out);
}

// What a runtime step produced (r, rt_events) as the public events.
Expected<bool> Session::Impl::deliver(Expected<bool> r, std::vector<Event>& out) {
    Impl& s = *this;
    if (!r.is_ok()) {
        s.turn = Impl::Turn::kResponded;
        s.sync_last();
        return r.status();
    }
    for (runtime::Event& e : s.rt_events) {
        Event o;
        o.step = e.step;
        o.t_ms = e.t_ms;
        switch (e.kind) {
            case runtime::EventKind::kText:
                o.kind = EventKind::kTextDelta;
                o.token = e.token;
                o.text = s.text->push(e.token);
                if (s.capture) s.captured = s.rt->captured_text_logits();
                break;
            case runtime::EventKind::kAudioFrame:
                o.kind = EventKind::kAudioFrame;
                o.codes = e.codes;
                o.n_codes = e.n_codes;
                break;
            case runtime::EventKind::kPcm:
                o.kind = EventKind::kAudio;
                o.pcm = std::move(e.pcm);
                break;
            case runtime::EventKind::kEndOfTurn: {
                const std::string rest = s.text->finish();
                if (!rest.empty()) {
                    Event t;
                    t.kind = EventKind::kTextDelta;
                    t.text = rest;
                    t.t_ms = e.t_ms;
                    out.push_back(std::move(t));
                }
                o.kind = EventKind::kEndOfTurn;
                o.reason = e.end == runtime::TurnEnd::kCancelled  ? EndReason::kCancelled
                           : e.end == runtime::TurnEnd::kMaxSteps ? EndReason::kMaxSteps
                                                                  : EndReason::kEndToken;
                o.stats = public_stats(s.rt->last_stats());
                break;
            }
        }
        out.push_back(std::move(o));
    }
    if (*r) {
        s.turn = Impl::Turn::kResponded;
        s.sync_last();
    }
    return *r;
}

Status Session::generate(const ResponseOptions& options, const EventSink& sink) {
    VOXRT_RETURN_IF_ERROR(start_response(options));
    std::vector<Event> ev;
    for (;;) {
        ev.clear();
        VOXRT_ASSIGN_OR_RETURN(bool done, step(ev));
        for (const Event& e : ev)
            if (sink && !sink(e) && e.kind != EventKind::kEndOfTurn) cancel();
        if (done) return Status::ok();
    }
}

void Session::cancel() {
    impl_->rt->cancel();
}

bool Session::responding() const {
    return impl_->turn == Impl::Turn::kResponse;
}

bool Session::prefilling() const {
    return impl_->turn == Impl::Turn::kResponse && impl_->rt->prefilling();
}

Status Session::Impl::truncate(size_t keep) {
    if (turn != Turn::kResponded || restored)
        return make_error(StatusCode::kInvalidArgument,
                          "truncate: only the most recent response can be cut, after it ended and "
                          "before the next turn");
    VOXRT_RETURN_IF_ERROR(rt->truncate_last_turn(keep));
    sync_last();
    return Status::ok();
}

Status Session::truncate_to_audio_ms(double ms) {
    Impl& s = *impl_;
    if (!(ms >= 0) || !std::isfinite(ms))
        return make_error(StatusCode::kInvalidArgument,
                          "truncate_to_audio_ms: ms must be a finite number >= 0");
    // Frames whose audio starts before `ms` stay (each decodable frame is 80 ms of output);
    // everything from the first frame after them is dropped.
    const double per = s.model->info().ms_per_audio_frame;
    const int V = s.model->info().audio_vocab;
    size_t frames = 0;
    size_t keep = s.last.size();
    for (size_t i = 0; i < s.last.size(); ++i) {
        const ResponseItem& it = s.last[i];
        if (!it.is_frame) continue;
        bool decodable = true;
        for (int q = 0; q < s.model->info().codebooks; ++q)
            decodable = decodable && it.codes[static_cast<size_t>(q)] < V - 1;
        if (!decodable) continue;
        if (static_cast<double>(frames) * per >= ms) {
            keep = i;
            break;
        }
        ++frames;
    }
    return s.truncate(keep);
}

Status Session::truncate_to_text(size_t chars) {
    Impl& s = *impl_;
    // Tokens whose text lies within the first `chars` characters stay, and the frames before the
    // first token dropped.
    text::StreamDecoder dec(s.m->tokenizer());
    size_t seen = 0;
    size_t keep = s.last.size();
    auto count = [](const std::string& t) {
        size_t n = 0;
        for (unsigned char c : t) n += (c & 0xC0) != 0x80;
        return n;
    };
    for (size_t i = 0; i < s.last.size(); ++i) {
        const ResponseItem& it = s.last[i];
        if (it.is_frame) continue;
        seen += count(dec.push(it.token));
        if (seen > chars) {
            keep = i;
            break;
        }
    }
    return s.truncate(keep);
}

Status Session::reset() {
    Impl& s = *impl_;
    s.turn = Impl::Turn::kNone;
    s.clear_audio();
    s.last.clear();
    s.restored = false;
    s.text->reset();
    return s.rt->reset();
}

int Session::positions() const {
    return impl_->rt->positions() + impl_->rt->pending_positions();
}

int Session::capacity() const {
    return impl_->rt->capacity();
}

const std::vector<ResponseItem>& Session::last_response() const {
    return impl_->last;
}

const std::shared_ptr<const Model>& Session::model() const {
    return impl_->model;
}

void Session::set_capture_logits(bool on) {
    impl_->capture = on;
}

const std::vector<float>& Session::captured_logits() const {
    return impl_->captured;
}

}  // namespace voxrt
