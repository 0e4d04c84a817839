// GET /v1/realtime: one conversation over a WebSocket, OpenAI Realtime events (docs/server.md).
// Everything here runs on the io thread; the conversation itself lives on the scheduler thread and
// is reached through the session's Slot.
#include <cmath>
#include <functional>
#include <voxrt/turn_taking.h>
#include <voxrt/vad.h>

#include "net.h"

namespace voxrt::server {

class RealtimeSession : public std::enable_shared_from_this<RealtimeSession> {
public:
    RealtimeSession(ServerState& st, beast::tcp_stream stream)
        : st_(st),
          ws_(std::move(stream)),
          wake_(ws_.get_executor()),
          writer_done_(ws_.get_executor()),
          watchdog_(ws_.get_executor()),
          vad_(VadOptions{}, kRate) {}

    awaitable<void> run(http::request<http::string_body> req);
    // Server shutdown: finish what is queued, then close with 1001.
    void request_close(websocket::close_code code, std::string reason) {
        if (close_requested_) return;
        close_requested_ = true;
        close_reason_ = websocket::close_reason(code, reason);
        wake_.cancel();
    }

private:
    static constexpr int kRate = 24000;
    using Clock = std::chrono::steady_clock;

    struct Response {
        std::string id, item_id;
        bool active = false;
        bool audio_out = true;
        int64_t audio_samples = 0;
        std::string transcript;
        bool has_first = false;
        Clock::time_point first_delta;
        std::string cancel_reason;
    };

    // ---- output ----
    void emit(json ev) {
        ev["event_id"] = st_.new_id("event_");
        std::string s = ev.dump();
        backlog_ += s.size();
        out_.push_back(std::move(s));
        if (backlog_ > st_.opt.max_ws_backlog && !overflow_) {
            // The client does not read what it asked for: drop it, not the others.
            overflow_ = true;
            beast::error_code ec;
            beast::get_lowest_layer(ws_).socket().close(ec);
        }
        wake_.cancel();
    }
    void error(const ApiError& e, const std::string& event_id = {}) {
        st_.metrics.client_errors++;
        json err = {{"type", e.type}, {"message", e.message}};
        err["code"] = e.code.empty() ? json(nullptr) : json(e.code);
        err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
        err["event_id"] = event_id.empty() ? json(nullptr) : json(event_id);
        emit({{"type", "error"}, {"error", err}});
    }
    void error(std::string code, std::string message, const std::string& event_id = {}) {
        ApiError e;
        e.code = std::move(code);
        e.message = std::move(message);
        error(e, event_id);
    }
    awaitable<void> writer();
    json session_json() const;

    // ---- conversation ----
    void ensure_open();
    void flush_instructions();
    template <class F>
    void post_reply(F&& on_engine);  // runs on the engine thread; result back on the io thread
    void on_client_event(ClientEvent& ev);
    void on_append(std::vector<float>& x);
    void commit(const std::string& event_id, bool from_vad);
    void start_response(const SessionUpdate& over, const std::string& event_id);
    void on_engine(EngineEvent ev);
    void barge_in();
    void truncate(const std::string& item_id, int64_t ms, const std::string& event_id);
    int64_t played_ms(const Response& r) const {
        if (!r.has_first) return 0;
        int64_t elapsed =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - r.first_delta)
                .count();
        return std::min<int64_t>(elapsed, r.audio_samples * 1000 / kRate);
    }
    void arm_watchdog();

    ServerState& st_;
    websocket::stream<beast::tcp_stream> ws_;
    net::steady_timer wake_;
    net::steady_timer writer_done_;
    net::steady_timer watchdog_;
    std::deque<std::string> out_;
    size_t backlog_ = 0;
    bool overflow_ = false;
    bool done_ = false;
    bool writer_running_ = false;
    bool close_requested_ = false;
    websocket::close_reason close_reason_;
    Clock::time_point last_activity_ = Clock::now();

    std::shared_ptr<Slot> slot_;
    std::string session_id_;
    bool opened_ = false;
    // session configuration
    TurnDetection td_;
    std::string instructions_;
    bool instructions_dirty_ = false;
    std::string voice_;
    bool audio_out_ = true;
    int max_tokens_ = 0;
    // input audio
    Vad vad_;
    std::vector<float>
        buf_;  // since the last commit / clear (with server VAD: from the turn's start)
    int64_t buf_start_ms_ = 0;  // stream time of buf_[0]
    int64_t stream_samples_ = 0;
    std::string speech_item_;  // item id announced by speech_started
    // conversation
    std::string last_item_;
    Response resp_;
    Response last_;  // the last finished answer (for barge-in after it finished generating)
    int64_t barge_ms_ = -1;
    std::deque<std::function<void()>> after_response_;
};

json RealtimeSession::session_json() const {
    json td = nullptr;
    if (td_.server_vad)
        td = {{"type", "server_vad"},
              {"threshold", td_.threshold},
              {"prefix_padding_ms", td_.prefix_padding_ms},
              {"silence_duration_ms", td_.silence_duration_ms},
              {"create_response", td_.create_response},
              {"interrupt_response", td_.interrupt_response}};
    json fmt = {{"type", "audio/pcm"}, {"rate", kRate}};
    json s = {{"type", "realtime"},
              {"object", "realtime.session"},
              {"id", session_id_},
              {"model", st_.engine.model_id()},
              {"instructions", instructions_},
              {"output_modalities", audio_out_ ? json::array({"audio"}) : json::array({"text"})},
              {"audio",
               {{"input", {{"format", fmt}, {"turn_detection", td}}},
                {"output", {{"format", fmt}, {"voice", voice_}}}}}};
    s["max_output_tokens"] = max_tokens_ > 0 ? json(max_tokens_) : json("inf");
    return s;
}

awaitable<void> RealtimeSession::writer() {
    auto self = shared_from_this();
    writer_running_ = true;
    for (;;) {
        if (out_.empty()) {
            if (done_ || overflow_) break;
            if (close_requested_) {
                beast::get_lowest_layer(ws_).expires_after(
                    std::chrono::seconds(st_.opt.write_timeout_s));
                co_await ws_.async_close(close_reason_, use_tuple);
                break;
            }
            wake_.expires_at(Clock::time_point::max());
            co_await wake_.async_wait(use_tuple);
            continue;
        }
        ws_.text(true);
        auto [ec, n] = co_await ws_.async_write(net::buffer(out_.front()), use_tuple);
        if (ec) break;
        backlog_ -= out_.front().size();
        out_.pop_front();
    }
    writer_running_ = false;
    writer_done_.cancel();
}

void RealtimeSession::arm_watchdog() {
    watchdog_.expires_after(std::chrono::seconds(1));
    watchdog_.async_wait([w = weak_from_this()](beast::error_code ec) {
        auto s = w.lock();
        if (ec || !s || s->done_) return;
        const auto idle = Clock::now() - s->last_activity_;
        if (!s->resp_.active && idle > std::chrono::seconds(s->st_.opt.realtime_idle_s)) {
            s->error("idle_timeout", "no client event for " +
                                         std::to_string(s->st_.opt.realtime_idle_s) +
                                         " s; closing the session");
            s->request_close(websocket::close_code::policy_error, "idle timeout");
            return;
        }
        s->arm_watchdog();
    });
}

awaitable<void> RealtimeSession::run(http::request<http::string_body> req) {
    auto self = shared_from_this();
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout to{};
    to.handshake_timeout = std::chrono::seconds(10);
    to.idle_timeout = std::chrono::seconds(std::max(2, st_.opt.idle_timeout_s));
    to.keep_alive_pings = true;  // a peer that stops answering pings is dropped after idle_timeout
    ws_.set_option(to);
    ws_.read_message_max(st_.opt.max_ws_message);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "voxrt"); }));
    auto [aec] = co_await ws_.async_accept(req, use_tuple);
    if (aec) co_return;
    st_.realtime.insert(this);
    session_id_ = st_.new_id("sess_");
    voice_ = st_.chat_voices.empty() ? std::string() : st_.chat_voices.front();
    net::co_spawn(ws_.get_executor(), writer(), net::detached);
    std::string why;
    if (st_.draining || !(slot_ = st_.sched.acquire(&why))) {
        ApiError e;
        e.type = st_.draining ? "server_error" : "rate_limit_error";
        e.code = st_.draining ? "shutting_down" : "session_limit_reached";
        e.message = st_.draining ? "the server is shutting down" : why;
        error(e);
        request_close(websocket::close_code::try_again_later,
                      st_.draining ? "shutting down" : "no free session slot");
    } else {
        st_.metrics.realtime_active++;
        emit({{"type", "session.created"}, {"session", session_json()}});
        arm_watchdog();
    }
    beast::flat_buffer buf;
    for (;;) {
        auto [ec, n] = co_await ws_.async_read(buf, use_tuple);
        if (ec) {
            if (ec == websocket::error::message_too_big) {
                error("message_too_big", "a WebSocket message is larger than " +
                                             std::to_string(st_.opt.max_ws_message) + " bytes");
                request_close(websocket::close_code::too_big, "message too big");
                // let the writer send the error and close; the read side is unusable now
                while (writer_running_ && !out_.empty()) {
                    writer_done_.expires_after(std::chrono::milliseconds(20));
                    co_await writer_done_.async_wait(use_tuple);
                }
            }
            break;
        }
        last_activity_ = Clock::now();
        if (!slot_) {  // refused: ignore anything until the close completes
            buf.consume(buf.size());
            continue;
        }
        if (!ws_.got_text()) {
            error("invalid_event", "binary messages are not supported; send JSON events as text");
            buf.consume(buf.size());
            continue;
        }
        std::string_view msg(static_cast<const char*>(buf.data().data()), buf.size());
        auto parsed = parse_client_event(msg, st_.chat_voices, st_.opt.limits);
        buf.consume(buf.size());
        if (auto* e = std::get_if<ClientEventError>(&parsed)) {
            error(e->error, e->event_id);
            continue;
        }
        on_client_event(std::get<ClientEvent>(parsed));
    }
    // The client is gone (or the close finished): free the slot now, then let the writer end.
    done_ = true;
    beast::error_code ignore;
    watchdog_.cancel();
    if (slot_) {
        st_.metrics.realtime_active--;
        slot_.reset();  // cancels an answer in progress; the slot is free after the engine's step
    }
    st_.realtime.erase(this);
    wake_.cancel();
    if (writer_running_) beast::get_lowest_layer(ws_).socket().close(ignore);
    while (writer_running_) {
        writer_done_.expires_at(Clock::time_point::max());
        co_await writer_done_.async_wait(use_tuple);
    }
    after_response_.clear();
}

void RealtimeSession::ensure_open() {
    if (opened_) return;
    opened_ = true;
    ConversationOptions co;
    co.task = Task::kSpeechChat;
    co.voice = voice_;
    co.instructions = instructions_;
    instructions_dirty_ = false;
    slot_->open(co);
}

template <class F>
void RealtimeSession::post_reply(F&& on_engine) {
    auto w = weak_from_this();
    auto ex = ws_.get_executor();
    slot_->post([w, ex, f = std::forward<F>(on_engine)](Conversation* c,
                                                        const std::string& open_error) mutable {
        std::function<void(RealtimeSession&)> reply = f(c, open_error);
        if (reply)
            net::post(ex, [w, reply = std::move(reply)] {
                if (auto s = w.lock(); s && !s->done_) reply(*s);
            });
    });
}

void RealtimeSession::flush_instructions() {
    ensure_open();
    if (!instructions_dirty_) return;
    instructions_dirty_ = false;
    post_reply(
        [text = instructions_](Conversation* c,
                               const std::string& oe) -> std::function<void(RealtimeSession&)> {
            std::string err = !c ? oe : c->begin("system");
            if (err.empty()) err = c->add_text(text);
            if (err.empty()) err = c->end();
            if (err.empty()) return nullptr;
            return [err](RealtimeSession& s) { s.error("engine_error", "instructions: " + err); };
        });
}

void RealtimeSession::on_client_event(ClientEvent& ev) {
    switch (ev.type) {
        case ClientEvent::kSessionUpdate: {
            auto& u = ev.session;
            if (u.instructions && *u.instructions != instructions_) {
                instructions_ = *u.instructions;
                if (opened_)
                    instructions_dirty_ = true;  // added to the history before the next item
            }
            if (u.voice) voice_ = *u.voice;
            if (u.audio_out) audio_out_ = *u.audio_out;
            if (u.max_output_tokens) max_tokens_ = *u.max_output_tokens;
            if (u.turn_detection) {
                td_ = *u.turn_detection;
                vad_.set_options({td_.threshold, td_.prefix_padding_ms, td_.silence_duration_ms});
                if (!td_.server_vad) vad_.reset_speech();
            }
            emit({{"type", "session.updated"}, {"session", session_json()}});
            break;
        }
        case ClientEvent::kAppend:
            on_append(ev.audio);
            break;
        case ClientEvent::kCommit:
            if (td_.server_vad && vad_.in_speech()) {
                // committing by hand in the middle of detected speech ends the turn here
                vad_.reset_speech();
            }
            commit(ev.event_id, false);
            break;
        case ClientEvent::kClear:
            buf_.clear();
            buf_start_ms_ = stream_samples_ * 1000 / kRate;
            vad_.reset_speech();
            emit({{"type", "input_audio_buffer.cleared"}});
            break;
        case ClientEvent::kItemCreate: {
            const std::string item_id = ev.item_id.empty() ? st_.new_id("item_") : ev.item_id;
            auto add = [this, item_id, role = ev.role, content = std::move(ev.content)]() mutable {
                flush_instructions();
                post_reply([role, content = std::move(content)](
                               Conversation* c,
                               const std::string& oe) -> std::function<void(RealtimeSession&)> {
                    std::string err = !c ? oe : c->begin(role);
                    for (size_t i = 0; err.empty() && i < content.size(); ++i)
                        err = content[i].is_audio ? c->add_audio(content[i].pcm.data(),
                                                                 content[i].pcm.size(), kRate)
                                                  : c->add_text(content[i].text);
                    if (err.empty()) err = c->end();
                    if (err.empty()) return nullptr;
                    return [err](RealtimeSession& s) {
                        s.error("engine_error", "conversation.item.create: " + err);
                    };
                });
                json item = {{"id", item_id},
                             {"object", "realtime.item"},
                             {"type", "message"},
                             {"role", role},
                             {"status", "completed"}};
                json parts = json::array();
                for (auto& p : content)
                    parts.push_back(p.is_audio ? json{{"type", "input_audio"}}
                                               : json{{"type", role == "assistant" ? "output_text"
                                                                                   : "input_text"},
                                                      {"text", p.text}});
                item["content"] = parts;
                emit({{"type", "conversation.item.added"},
                      {"previous_item_id", last_item_.empty() ? json(nullptr) : json(last_item_)},
                      {"item", item}});
                emit({{"type", "conversation.item.done"},
                      {"previous_item_id", last_item_.empty() ? json(nullptr) : json(last_item_)},
                      {"item", item}});
                last_item_ = item_id;
            };
            if (resp_.active)
                after_response_.push_back(std::move(add));
            else
                add();
            break;
        }
        case ClientEvent::kResponseCreate:
            if (resp_.active) {
                error("conversation_already_has_active_response",
                      "a response is in progress (" + resp_.id +
                          "); cancel it or wait for response.done",
                      ev.event_id);
                break;
            }
            if (ev.session.instructions) {
                ApiError e;
                e.code = "unsupported_parameter";
                e.param = "response.instructions";
                e.message =
                    "per-response instructions are not supported (the conversation is never "
                    "re-prefilled); "
                    "use session.update";
                error(e, ev.event_id);
                break;
            }
            start_response(ev.session, ev.event_id);
            break;
        case ClientEvent::kResponseCancel:
            if (!resp_.active) {
                error("response_cancel_not_active", "there is no response in progress to cancel",
                      ev.event_id);
                break;
            }
            resp_.cancel_reason = "client_cancelled";
            slot_->cancel();
            break;
        case ClientEvent::kTruncate:
            if (ev.content_index != 0) {
                error("invalid_value", "content_index must be 0 (one audio part per answer)",
                      ev.event_id);
                break;
            }
            truncate(ev.item_id, ev.audio_end_ms, ev.event_id);
            break;
    }
}

void RealtimeSession::on_append(std::vector<float>& x) {
    const int64_t max_samples = int64_t(st_.opt.limits.max_audio_seconds) * kRate;
    if (int64_t(buf_.size() + x.size()) > max_samples) {
        error("input_audio_buffer_full", "the input audio buffer holds at most " +
                                             std::to_string(st_.opt.limits.max_audio_seconds) +
                                             " s; commit or clear it");
        return;
    }
    if (buf_.empty()) buf_start_ms_ = stream_samples_ * 1000 / kRate;
    buf_.insert(buf_.end(), x.begin(), x.end());
    stream_samples_ += int64_t(x.size());
    if (!td_.server_vad) return;
    std::vector<VadEvent> evs;
    vad_.push(x.data(), x.size(), evs);
    for (const auto& e : evs) {
        if (e.kind == VadEvent::kSpeechStarted) {
            // the turn's audio starts at audio_start_ms (prefix padding included)
            int64_t drop = (e.ms - buf_start_ms_) * kRate / 1000;
            if (drop > 0) {
                drop = std::min<int64_t>(drop, int64_t(buf_.size()));
                buf_.erase(buf_.begin(), buf_.begin() + drop);
                buf_start_ms_ += drop * 1000 / kRate;
            }
            speech_item_ = st_.new_id("item_");
            emit({{"type", "input_audio_buffer.speech_started"},
                  {"audio_start_ms", e.ms},
                  {"item_id", speech_item_}});
            if (td_.interrupt_response) barge_in();
        } else {
            emit({{"type", "input_audio_buffer.speech_stopped"},
                  {"audio_end_ms", e.ms},
                  {"item_id", speech_item_}});
            commit({}, true);
        }
    }
    if (!vad_.in_speech()) {
        // between turns keep only what prefix padding may need
        const int64_t keep = int64_t(td_.prefix_padding_ms + 100) * kRate / 1000;
        if (int64_t(buf_.size()) > 2 * keep) {
            int64_t drop = int64_t(buf_.size()) - keep;
            buf_.erase(buf_.begin(), buf_.begin() + drop);
            buf_start_ms_ += drop * 1000 / kRate;
        }
    }
}

void RealtimeSession::commit(const std::string& event_id, bool from_vad) {
    if (buf_.size() < size_t(kRate / 10)) {
        if (!from_vad)
            error("input_audio_buffer_commit_empty",
                  "the input audio buffer holds less than 100 ms of audio", event_id);
        return;
    }
    const std::string item_id =
        from_vad && !speech_item_.empty() ? speech_item_ : st_.new_id("item_");
    speech_item_.clear();
    auto pcm = std::make_shared<std::vector<float>>(std::move(buf_));
    buf_.clear();
    buf_start_ms_ = stream_samples_ * 1000 / kRate;
    const std::string prev = last_item_;
    last_item_ = item_id;
    emit({{"type", "input_audio_buffer.committed"},
          {"previous_item_id", prev.empty() ? json(nullptr) : json(prev)},
          {"item_id", item_id}});
    auto add = [this, pcm, item_id, prev, from_vad] {
        flush_instructions();
        post_reply([pcm](Conversation* c,
                         const std::string& oe) -> std::function<void(RealtimeSession&)> {
            std::string err = !c ? oe : c->begin("user");
            if (err.empty()) err = c->add_audio(pcm->data(), pcm->size(), kRate);
            if (err.empty()) err = c->end();
            if (err.empty()) return nullptr;
            return [err](RealtimeSession& s) { s.error("engine_error", "input audio: " + err); };
        });
        json item = {
            {"id", item_id},
            {"object", "realtime.item"},
            {"type", "message"},
            {"role", "user"},
            {"status", "completed"},
            {"content", json::array({{{"type", "input_audio"}, {"transcript", nullptr}}})}};
        emit({{"type", "conversation.item.added"},
              {"previous_item_id", prev.empty() ? json(nullptr) : json(prev)},
              {"item", item}});
        emit({{"type", "conversation.item.done"},
              {"previous_item_id", prev.empty() ? json(nullptr) : json(prev)},
              {"item", item}});
        if (from_vad && td_.create_response) start_response({}, {});
    };
    if (resp_.active)
        after_response_.push_back(std::move(add));
    else
        add();
}

void RealtimeSession::start_response(const SessionUpdate& over, const std::string& event_id) {
    flush_instructions();
    resp_ = Response{};
    resp_.id = st_.new_id("resp_");
    resp_.item_id = st_.new_id("item_");
    resp_.active = true;
    resp_.audio_out = over.audio_out.value_or(audio_out_);
    barge_ms_ = -1;
    emit({{"type", "response.created"},
          {"response",
           {{"object", "realtime.response"},
            {"id", resp_.id},
            {"status", "in_progress"},
            {"status_details", nullptr},
            {"output", json::array()}}}});
    json item = {{"id", resp_.item_id}, {"object", "realtime.item"}, {"type", "message"},
                 {"role", "assistant"}, {"status", "in_progress"},   {"content", json::array()}};
    emit({{"type", "response.output_item.added"},
          {"response_id", resp_.id},
          {"output_index", 0},
          {"item", item}});
    last_item_ = resp_.item_id;
    ResponseOptions ro;
    ro.task = resp_.audio_out ? Task::kSpeechChat : Task::kTextChat;
    ro.voice = over.voice.value_or(voice_);
    ro.max_steps = over.max_output_tokens.value_or(max_tokens_);
    auto w = weak_from_this();
    auto ex = ws_.get_executor();
    slot_->respond(ro, [w, ex](EngineEvent&& ev) {
        net::post(ex, [w, ev = std::move(ev)]() mutable {
            if (auto s = w.lock(); s && !s->done_) s->on_engine(std::move(ev));
        });
    });
    (void)event_id;
}

void RealtimeSession::on_engine(EngineEvent ev) {
    if (!resp_.active) return;
    const json ids = {{"response_id", resp_.id},
                      {"item_id", resp_.item_id},
                      {"output_index", 0},
                      {"content_index", 0}};
    auto with = [&](json j) {
        j.update(ids);
        return j;
    };
    if (ev.kind == EngineEvent::kText) {
        if (!valid_utf8(ev.text)) return;  // the engine promises whole characters
        resp_.transcript += ev.text;
        emit(with({{"type", resp_.audio_out ? "response.output_audio_transcript.delta"
                                            : "response.output_text.delta"},
                   {"delta", ev.text}}));
        return;
    }
    if (ev.kind == EngineEvent::kAudio) {
        if (!resp_.audio_out) return;
        if (!resp_.has_first) {
            resp_.has_first = true;
            resp_.first_delta = Clock::now();
        }
        resp_.audio_samples += int64_t(ev.pcm.size());
        emit(with({{"type", "response.output_audio.delta"},
                   {"delta", base64_encode(ev.pcm.data(), ev.pcm.size())}}));
        return;
    }
    // kDone
    std::string status = "completed";
    json details = nullptr;
    if (ev.finish == "length") {
        status = "incomplete";
        details = {{"type", "incomplete"}, {"reason", "max_output_tokens"}};
    } else if (ev.finish == "cancelled") {
        status = "cancelled";
        details = {
            {"type", "cancelled"},
            {"reason", resp_.cancel_reason.empty() ? "client_cancelled" : resp_.cancel_reason}};
    } else if (ev.finish == "error") {
        status = "failed";
        details = {
            {"type", "failed"},
            {"error", {{"type", "server_error"}, {"code", "engine_error"}, {"message", ev.error}}}};
        ApiError e;
        e.type = "server_error";
        e.code = "engine_error";
        e.message = ev.error;
        error(e);
    }
    if (resp_.audio_out) {
        emit(with({{"type", "response.output_audio.done"}}));
        emit(with(
            {{"type", "response.output_audio_transcript.done"}, {"transcript", resp_.transcript}}));
    } else {
        emit(with({{"type", "response.output_text.done"}, {"text", resp_.transcript}}));
    }
    json content = resp_.audio_out
                       ? json{{"type", "output_audio"}, {"transcript", resp_.transcript}}
                       : json{{"type", "output_text"}, {"text", resp_.transcript}};
    json item = {{"id", resp_.item_id},
                 {"object", "realtime.item"},
                 {"type", "message"},
                 {"role", "assistant"},
                 {"status", status == "completed" ? "completed" : "incomplete"},
                 {"content", json::array({content})}};
    emit({{"type", "response.output_item.done"},
          {"response_id", resp_.id},
          {"output_index", 0},
          {"item", item}});
    json usage = {{"total_tokens", ev.prompt_tokens + ev.completion_tokens},
                  {"input_tokens", ev.prompt_tokens},
                  {"output_tokens", ev.completion_tokens}};
    emit({{"type", "response.done"},
          {"response",
           {{"object", "realtime.response"},
            {"id", resp_.id},
            {"status", status},
            {"status_details", details},
            {"output", json::array({item})},
            {"usage", usage}}}});
    resp_.active = false;
    last_ = resp_;
    if (barge_ms_ >= 0) {
        const int64_t ms = barge_ms_;
        barge_ms_ = -1;
        if (TurnTaking::should_truncate(double(ms), double(last_.audio_samples * 1000 / kRate)))
            truncate(last_.item_id, ms, {});
    }
    auto pending = std::move(after_response_);
    after_response_.clear();
    for (auto& f : pending) {
        if (resp_.active) {  // a deferred commit started a new answer: keep the rest for after it
            after_response_.push_back(std::move(f));
            continue;
        }
        f();
    }
}

void RealtimeSession::barge_in() {
    if (resp_.active) {
        barge_ms_ = played_ms(resp_);
        resp_.cancel_reason = "turn_detected";
        slot_->cancel();
        return;
    }
    // the answer is fully generated but may still be playing: keep what was heard
    if (!last_.item_id.empty() && last_.audio_out) {
        const int64_t played = played_ms(last_);
        if (TurnTaking::should_truncate(double(played),
                                        double(last_.audio_samples * 1000 / kRate))) {
            truncate(last_.item_id, played, {});
            last_.audio_samples = played * kRate / 1000;
        }
    }
}

void RealtimeSession::truncate(const std::string& item_id, int64_t ms,
                               const std::string& event_id) {
    const bool current = resp_.active && item_id == resp_.item_id;
    if (!current && (item_id != last_.item_id || last_.item_id.empty())) {
        ApiError e;
        e.code = "invalid_value";
        e.param = "item_id";
        e.message = "item '" + item_id +
                    "' is not the last answer; only the last answer's audio can be truncated";
        error(e, event_id);
        return;
    }
    // A cut asked for now replaces the one a barge-in left for the end of the answer: the client
    // knows what was played; two cuts (the server's coming second, and longer) would contradict it.
    barge_ms_ = -1;
    if (current) {  // truncating the answer being generated ends it first
        resp_.cancel_reason = "client_cancelled";
        slot_->cancel();
    }
    post_reply(
        [item_id, ms, event_id](Conversation* c,
                                const std::string& oe) -> std::function<void(RealtimeSession&)> {
            std::string err = !c ? oe : c->truncate(ms);
            return [err, item_id, ms, event_id](RealtimeSession& s) {
                if (!err.empty()) {
                    ApiError e;
                    e.code = "invalid_value";
                    e.param = "audio_end_ms";
                    e.message = "conversation.item.truncate: " + err;
                    s.error(e, event_id);
                    return;
                }
                s.emit({{"type", "conversation.item.truncated"},
                        {"item_id", item_id},
                        {"content_index", 0},
                        {"audio_end_ms", ms}});
            };
        });
}

awaitable<void> run_realtime(ServerState& st, beast::tcp_stream stream,
                             http::request<http::string_body> req) {
    auto s = std::make_shared<RealtimeSession>(st, std::move(stream));
    co_await s->run(std::move(req));
}

void close_realtime_sessions(ServerState& st) {
    for (RealtimeSession* s : st.realtime)
        s->request_close(websocket::close_code::going_away, "server shutting down");
}

}  // namespace voxrt::server
