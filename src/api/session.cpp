// voxrt::Session over runtime::Session: turn bookkeeping (which turn is open, closing a response),
// input checks that name the field, text deltas through text::StreamDecoder, and the translation
// of runtime events into public ones.
#include "voxrt/session.h"

#include <algorithm>
#include <utility>

#include "model/lfm_audio.h"
#include "runtime/session.h"
#include "text/stream_decoder.h"

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

struct Session::Impl {
    enum class Turn : uint8_t {
        kNone,       // between turns
        kUser,       // begin_user_turn() .. end_user_turn()
        kResponse,   // start_response() .. the response is over
        kResponded,  // the response is over; its assistant turn still open (closed lazily)
    };

    std::shared_ptr<const Model> model;
    const model::LfmAudioModel* m = nullptr;
    SessionOptions opt;
    std::unique_ptr<runtime::Session> rt;
    Turn turn = Turn::kNone;

    // The user turn's audio, accumulated until end_user_turn().
    std::vector<float> audio;
    int audio_rate = 0;

    // The response.
    ResponseOptions ropt;
    std::vector<Event> queued;  // events not yet handed out
    size_t next_event = 0;
    bool ran = false;
    std::atomic<bool> cancel_requested{false};
    std::vector<ResponseItem> last;
    std::unique_ptr<text::StreamDecoder> text;
    bool capture = false;
    std::vector<float> captured;

    Status check_text(std::string_view field, std::string_view t) const {
        if (t.size() > opt.max_text_bytes)
            return make_error(StatusCode::kInvalidArgument,
                              "%.*s: text of %zu bytes exceeds SessionOptions.max_text_bytes (%zu)",
                              static_cast<int>(field.size()), field.data(), t.size(),
                              opt.max_text_bytes);
        return Status::ok();
    }

    // Closes a finished response's assistant turn before anything else is added.
    Status close_response() {
        if (turn == Turn::kResponse)
            return make_error(StatusCode::kInvalidArgument,
                              "a response is still running: step() it to the end or cancel() it");
        if (turn == Turn::kResponded) {
            // A response that ended with a generated <|im_end|> (sequential mode yields it) has
            // only the newline left to add.
            const bool ended = !last.empty() && !last.back().is_frame &&
                               last.back().token == m->special().im_end;
            VOXRT_RETURN_IF_ERROR(ended ? rt->add_text("\n") : rt->end_turn());
            turn = Turn::kNone;
        }
        return Status::ok();
    }

    Status run_response();
};

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
    so.cuda_graphs = options.tuning.cuda_graphs;
    so.fused_kernels = options.tuning.fused_kernels;
    so.fused_backbone = options.tuning.fused_backbone;
    so.mel_on_device = options.tuning.mel_on_device;
    VOXRT_ASSIGN_OR_RETURN(impl->rt, runtime::Session::create(*impl->m, so));
    impl->text = std::make_unique<text::StreamDecoder>(impl->m->tokenizer());
    return std::unique_ptr<Session>(new Session(std::move(impl)));
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
    s.audio.clear();
    s.audio_rate = 0;
    return Status::ok();
}

Status Session::append_text(std::string_view text) {
    Impl& s = *impl_;
    if (s.turn != Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument,
                          "append_text: no user turn is open (begin_user_turn() first)");
    VOXRT_RETURN_IF_ERROR(s.check_text("append_text", text));
    if (!s.audio.empty())
        return make_error(StatusCode::kUnsupported,
                          "append_text: text after audio in one user turn is not supported");
    return s.rt->add_text(text);
}

Status Session::append_audio(const float* pcm, size_t n, int sample_rate) {
    Impl& s = *impl_;
    if (s.turn != Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument,
                          "append_audio: no user turn is open (begin_user_turn() first)");
    if (sample_rate < 1000 || sample_rate > 384000)
        return make_error(StatusCode::kInvalidArgument,
                          "append_audio: sample rate %d Hz is outside [1000, 384000]",
                          sample_rate);
    if (s.audio_rate != 0 && sample_rate != s.audio_rate)
        return make_error(StatusCode::kInvalidArgument,
                          "append_audio: sample rate %d Hz differs from the turn's %d Hz",
                          sample_rate, s.audio_rate);
    if (n > 0 && !pcm)
        return make_error(StatusCode::kInvalidArgument, "append_audio: pcm is null");
    s.audio_rate = sample_rate;
    s.audio.insert(s.audio.end(), pcm, pcm + n);
    return Status::ok();
}

Status Session::end_user_turn() {
    Impl& s = *impl_;
    if (s.turn != Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument, "end_user_turn: no user turn is open");
    if (!s.audio.empty()) {
        VOXRT_RETURN_IF_ERROR(s.rt->add_audio(s.audio.data(), s.audio.size(), s.audio_rate));
        s.audio.clear();
        s.audio.shrink_to_fit();
    }
    VOXRT_RETURN_IF_ERROR(s.rt->end_turn());
    s.turn = Impl::Turn::kNone;
    return Status::ok();
}

Status Session::start_response(const ResponseOptions& options) {
    Impl& s = *impl_;
    if (s.turn == Impl::Turn::kUser)
        return make_error(StatusCode::kInvalidArgument,
                          "start_response: the user turn is still open (end_user_turn() first)");
    VOXRT_RETURN_IF_ERROR(s.close_response());
    if (options.audio && options.mode == Mode::kInterleaved && !s.m->detokenizer())
        return make_error(StatusCode::kInvalidArgument,
                          "ResponseOptions.audio: the model was loaded without its detokenizer");
    VOXRT_RETURN_IF_ERROR(s.rt->new_turn("assistant"));
    s.ropt = options;
    if (!s.m->detokenizer()) s.ropt.audio = false;
    s.queued.clear();
    s.next_event = 0;
    s.ran = false;
    s.cancel_requested.store(false);
    s.last.clear();
    s.text->reset();
    s.turn = Impl::Turn::kResponse;
    return Status::ok();
}

Status Session::Impl::run_response() {
    runtime::TurnStats st;
    rt->set_capture(capture);
    bool stopped = false;
    const Status gen = rt->generate(
        generate_options(ropt),
        [&](const runtime::Event& e) {
            Event out;
            out.step = e.step;
            out.t_ms = e.t_ms;
            switch (e.kind) {
                case runtime::EventKind::kText:
                    out.kind = EventKind::kTextDelta;
                    out.token = e.token;
                    out.text = text->push(e.token);
                    if (capture) captured = rt->captured_text_logits();
                    break;
                case runtime::EventKind::kAudioFrame:
                    out.kind = EventKind::kAudioFrame;
                    out.codes = e.codes;
                    out.n_codes = e.n_codes;
                    break;
                case runtime::EventKind::kPcm:
                    out.kind = EventKind::kAudio;
                    out.pcm.assign(e.pcm, e.pcm + e.n_pcm);
                    break;
                case runtime::EventKind::kEndOfTurn:
                    return true;
            }
            queued.push_back(std::move(out));
            if (cancel_requested.load(std::memory_order_relaxed)) {
                stopped = true;
                return false;
            }
            return true;
        },
        &st);
    if (!gen) return gen;
    last.clear();
    for (const runtime::GeneratedItem& it : rt->last_turn())
        last.push_back(ResponseItem{it.is_frame, it.token, it.codes});
    const std::string rest = text->finish();
    if (!rest.empty()) {
        Event e;
        e.kind = EventKind::kTextDelta;
        e.text = rest;
        e.t_ms = st.total_ms;
        queued.push_back(std::move(e));
    }
    Event end;
    end.kind = EventKind::kEndOfTurn;
    end.step = st.steps;
    end.t_ms = st.total_ms;
    end.stats = public_stats(st);
    const bool end_token = !last.empty() && !last.back().is_frame &&
                           last.back().token == m->special().im_end;
    if (stopped || cancel_requested.load()) {
        end.reason = EndReason::kCancelled;
    } else if (end_token || st.steps < ropt.max_steps) {
        end.reason = EndReason::kEndToken;
    } else {
        end.reason = EndReason::kMaxSteps;
    }
    queued.push_back(std::move(end));
    return Status::ok();
}

Expected<bool> Session::step(std::vector<Event>& out) {
    Impl& s = *impl_;
    if (s.turn != Impl::Turn::kResponse)
        return make_error(StatusCode::kInvalidArgument,
                          "step: no response is running (start_response() first)");
    if (!s.ran) {
        s.ran = true;
        const Status st = s.run_response();
        if (!st) {
            s.turn = Impl::Turn::kResponded;
            return st;
        }
    }
    // The events of one generation step (and the end of the turn).
    const int step = s.queued[s.next_event].step;
    while (s.next_event < s.queued.size()) {
        Event& e = s.queued[s.next_event];
        if (e.kind != EventKind::kEndOfTurn && e.step != step && e.step >= 0) break;
        out.push_back(std::move(e));
        ++s.next_event;
        if (out.back().kind == EventKind::kEndOfTurn) {
            s.turn = Impl::Turn::kResponded;
            s.queued.clear();
            s.next_event = 0;
            return true;
        }
    }
    return false;
}

Status Session::generate(const ResponseOptions& options, const EventSink& sink) {
    VOXRT_RETURN_IF_ERROR(start_response(options));
    std::vector<Event> ev;
    for (;;) {
        ev.clear();
        VOXRT_ASSIGN_OR_RETURN(bool done, step(ev));
        for (const Event& e : ev)
            if (sink && !sink(e)) cancel();
        if (done) return Status::ok();
    }
}

void Session::cancel() {
    impl_->cancel_requested.store(true);
}

bool Session::responding() const {
    return impl_->turn == Impl::Turn::kResponse;
}

Status Session::truncate_to_audio_ms(double ms) {
    return make_error(StatusCode::kUnsupported, "truncate_to_audio_ms: not available yet");
}

Status Session::truncate_to_text(size_t chars) {
    return make_error(StatusCode::kUnsupported, "truncate_to_text: not available yet");
}

Status Session::reset() {
    Impl& s = *impl_;
    s.turn = Impl::Turn::kNone;
    s.audio.clear();
    s.audio_rate = 0;
    s.queued.clear();
    s.next_event = 0;
    s.last.clear();
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
