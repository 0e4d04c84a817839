// HTTP side of voxrt serve: the listener, routing, the REST endpoints, SIGTERM drain.
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "net.h"
#include "web_assets.h"

namespace voxrt::server {
namespace {

using Request = http::request<http::string_body>;

int64_t unix_now() {
    return int64_t(std::time(nullptr));
}

http::response<http::string_body> make_response(const Request& req, http::status status,
                                                std::string body, std::string_view content_type) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::server, "voxrt");
    res.set(http::field::content_type, content_type);
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

http::response<http::string_body> json_response(const Request& req, http::status status,
                                                const json& j) {
    return make_response(req, status, j.dump(), "application/json");
}

http::response<http::string_body> error_response(ServerState& st, const Request& req,
                                                 const ApiError& e) {
    if (e.status >= 400 && e.status < 500) st.metrics.client_errors++;
    auto res = json_response(req, http::status(e.status), error_body(e));
    if (e.status == 429 || e.status == 503) res.set(http::field::retry_after, "1");
    return res;
}

ApiError busy_error(const std::string& why) {
    ApiError e;
    e.status = 429;
    e.type = "rate_limit_error";
    e.code = "server_busy";
    e.message = why.empty() ? "every session slot is in use; retry shortly" : why;
    return e;
}

ApiError draining_error() {
    ApiError e;
    e.status = 503;
    e.type = "server_error";
    e.code = "shutting_down";
    e.message = "the server is shutting down";
    return e;
}

template <class Res>
awaitable<bool> send(ServerState& st, beast::tcp_stream& stream, Res&& res) {
    stream.expires_after(std::chrono::seconds(st.opt.write_timeout_s));
    auto [ec, n] = co_await http::async_write(stream, res, use_tuple);
    co_return !ec;
}

// A streamed (chunked) response: header first, then write() per piece, then finish().
class ChunkedWriter {
public:
    ChunkedWriter(ServerState& st, beast::tcp_stream& stream, const Request& req,
                  std::string_view content_type)
        : st_(st), stream_(stream), res_(http::status::ok, req.version()), sr_(res_) {
        res_.set(http::field::server, "voxrt");
        res_.set(http::field::content_type, content_type);
        res_.set(http::field::cache_control, "no-cache");
        res_.keep_alive(req.keep_alive());
        res_.chunked(true);
    }
    awaitable<bool> start() {
        stream_.expires_after(std::chrono::seconds(st_.opt.write_timeout_s));
        auto [ec, n] = co_await http::async_write_header(stream_, sr_, use_tuple);
        ok_ = !ec;
        co_return ok_;
    }
    awaitable<bool> write(const std::string& data) {
        if (!ok_ || data.empty()) co_return ok_;
        stream_.expires_after(std::chrono::seconds(st_.opt.write_timeout_s));
        auto [ec, n] =
            co_await net::async_write(stream_, http::make_chunk(net::buffer(data)), use_tuple);
        ok_ = !ec;
        co_return ok_;
    }
    awaitable<bool> finish() {
        if (!ok_) co_return false;
        stream_.expires_after(std::chrono::seconds(st_.opt.write_timeout_s));
        auto [ec, n] = co_await net::async_write(stream_, http::make_chunk_last(), use_tuple);
        ok_ = !ec;
        co_return ok_;
    }
    bool ok() const { return ok_; }

private:
    ServerState& st_;
    beast::tcp_stream& stream_;
    http::response<http::empty_body> res_;
    http::response_serializer<http::empty_body> sr_;
    bool ok_ = true;
};

// Watches the client's socket while an answer is made: if the client closes or resets the
// connection, the answer is cancelled and the coroutine woken (the slot is then released by the
// caller), so a vanished client frees its slot within one engine step.
class PeerWatch {
public:
    PeerWatch(beast::tcp_stream& stream, std::shared_ptr<Slot> slot, std::shared_ptr<EventQueue> q)
        : stream_(stream), done_(stream.get_executor()) {
        net::co_spawn(
            stream.get_executor(),
            [this, slot, q]() -> awaitable<void> {
                char b;
                auto [ec, n] = co_await stream_.socket().async_receive(
                    net::buffer(&b, 1), net::socket_base::message_peek, use_tuple);
                if (!stopping_ && (ec || n == 0)) {
                    gone_ = true;
                    slot->cancel();
                    q->interrupt();
                }
                running_ = false;
                done_.cancel();
            },
            net::detached);
    }
    bool gone() const { return gone_; }
    // Stops watching (before the connection's next read); waits for the watcher to end.
    awaitable<void> stop() {
        stopping_ = true;
        if (running_) {
            beast::error_code ec;
            stream_.socket().cancel(ec);
        }
        while (running_) {
            done_.expires_at(std::chrono::steady_clock::time_point::max());
            co_await done_.async_wait(use_tuple);
        }
    }

private:
    beast::tcp_stream& stream_;
    net::steady_timer done_;
    bool running_ = true;
    bool stopping_ = false;
    bool gone_ = false;
};

std::string valid_text(std::string s, Metrics& m) {
    if (valid_utf8(s)) return s;
    // The engine promises whole characters; never pass anything else to a client.
    std::string r;
    for (unsigned char c : s) r += c < 0x80 ? std::string(1, char(c)) : std::string("\xEF\xBF\xBD");
    return r;
}

struct Answer {
    std::string text;
    std::vector<int16_t> pcm;
    EngineEvent done;
};

// Sends the request's messages to the conversation.
void add_messages(Slot& slot, std::vector<ChatMessage> msgs) {
    slot.post([msgs = std::move(msgs)](Conversation* c, const std::string& open_error) {
        if (!c) return;  // respond() reports open_error
        for (const auto& m : msgs) {
            if (!c->begin(m.role).empty()) return;
            for (const auto& p : m.parts) {
                if (p.audio.sample_rate > 0)
                    c->add_audio(p.audio.pcm.data(), p.audio.pcm.size(), p.audio.sample_rate);
                else
                    c->add_text(p.text);
            }
            c->end();
        }
    });
}

ApiError engine_error(const std::string& msg) {
    ApiError e;
    e.status = 500;
    e.type = "server_error";
    e.code = "engine_error";
    e.message = msg;
    return e;
}

// ---- endpoints -------------------------------------------------------------------------------

struct Ctx {
    ServerState& st;
    beast::tcp_stream& stream;
    const Request& req;
};

// 429 (every slot in use) or 503 (draining). (Built outside any co_await expression: GCC 12
// destroys temporaries of a conditional inside one twice.)
http::response<http::string_body> refusal(ServerState& st, const Request& req,
                                          const std::string& why) {
    return error_response(st, req, st.draining ? draining_error() : busy_error(why));
}

// Acquires a slot; null → the caller answers 429.
std::shared_ptr<Slot> take_slot(ServerState& st, std::string* why) {
    if (st.draining) return nullptr;
    return st.sched.acquire(why);
}

// Runs one answer. `on_event` is called per text/audio event (streaming); returns false when the
// client is gone.
// `on_event` turns a text/audio event into bytes for `w` (streaming; empty: nothing to send) or
// keeps it (w null).
template <class F>
awaitable<std::optional<EngineEvent>> run_answer(Ctx& c, std::shared_ptr<Slot> slot,
                                                 const ResponseOptions& ro, ChunkedWriter* w,
                                                 F&& on_event) {
    auto q = std::make_shared<EventQueue>(c.stream.get_executor());
    slot->respond(ro, q->sink());
    PeerWatch watch(c.stream, slot, q);
    std::optional<EngineEvent> done;
    for (;;) {
        auto ev = co_await q->next();
        if (!ev) break;
        if (ev->kind == EngineEvent::kDone) {
            done = std::move(*ev);
            break;
        }
        std::string bytes = on_event(*ev);
        if (w && !bytes.empty() && !co_await w->write(bytes)) {
            slot->cancel();
            break;
        }
    }
    co_await watch.stop();
    co_return done;
}

awaitable<bool> handle_transcription(Ctx& c) {
    auto& st = c.st;
    auto parts = parse_multipart(c.req.body(), c.req[http::field::content_type]);
    if (auto* e = std::get_if<ApiError>(&parts)) {
        auto res_ = error_response(st, c.req, *e);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    auto parsed = parse_transcription(std::get<std::vector<FormPart>>(parts), st.opt.limits);
    if (auto* e = std::get_if<ApiError>(&parsed)) {
        auto res_ = error_response(st, c.req, *e);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    auto& r = std::get<TranscriptionRequest>(parsed);
    std::string why;
    auto slot = take_slot(st, &why);
    if (!slot) {
        auto res_ = refusal(st, c.req, why);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    const double duration = double(r.audio.pcm.size()) / r.audio.sample_rate;
    ConversationOptions co;
    co.task = Task::kTranscribe;
    slot->open(co);
    ChatMessage m{"user", {}};
    m.parts.push_back({{}, std::move(r.audio)});
    add_messages(*slot, {std::move(m)});
    ResponseOptions ro;
    ro.task = Task::kTranscribe;
    ro.temperature = r.temperature;
    if (r.stream) {
        ChunkedWriter w(st, c.stream, c.req, "text/event-stream");
        if (!co_await w.start()) co_return false;
        std::string text;
        auto done = co_await run_answer(c, slot, ro, &w, [&](EngineEvent& ev) -> std::string {
            if (ev.kind != EngineEvent::kText) return {};
            std::string d = valid_text(std::move(ev.text), st.metrics);
            text += d;
            return sse_data({{"type", "transcript.text.delta"}, {"delta", d}});
        });
        if (!done) co_return false;
        if (done->finish == "error") {
            std::string s = sse_data(error_body(engine_error(done->error)));
            co_await w.write(s);
        } else {
            json u = {{"type", "tokens"},
                      {"input_tokens", done->prompt_tokens},
                      {"output_tokens", done->completion_tokens},
                      {"total_tokens", done->prompt_tokens + done->completion_tokens}};
            std::string s =
                sse_data({{"type", "transcript.text.done"}, {"text", text}, {"usage", u}});
            co_await w.write(s);
        }
        co_return co_await w.finish() && c.req.keep_alive();
    }
    std::string text;
    auto done = co_await run_answer(c, slot, ro, nullptr, [&](EngineEvent& ev) -> std::string {
        if (ev.kind == EngineEvent::kText) text += valid_text(std::move(ev.text), st.metrics);
        return {};
    });
    if (!done) co_return false;
    if (done->finish == "error") {
        auto res_ = error_response(st, c.req, engine_error(done->error));
        co_return co_await send(st, c.stream, std::move(res_));
    }
    if (r.format == TranscriptionRequest::kText) {
        auto res = make_response(c.req, http::status::ok, text + "\n", "text/plain; charset=utf-8");
        co_return co_await send(st, c.stream, std::move(res));
    }
    json j = {{"text", text}};
    if (r.format == TranscriptionRequest::kVerboseJson) {
        j = {{"task", "transcribe"},
             {"language", "english"},
             {"duration", duration},
             {"text", text}};
    } else {
        j["usage"] = {{"type", "tokens"},
                      {"input_tokens", done->prompt_tokens},
                      {"output_tokens", done->completion_tokens},
                      {"total_tokens", done->prompt_tokens + done->completion_tokens}};
    }
    {
        auto res_ = json_response(c.req, http::status::ok, j);
        co_return co_await send(st, c.stream, std::move(res_));
    }
}

awaitable<bool> handle_speech(Ctx& c) {
    auto& st = c.st;
    auto body = parse_json_object(c.req.body(), st.opt.limits.max_json_depth, "request body");
    if (auto* e = std::get_if<ApiError>(&body)) {
        auto res_ = error_response(st, c.req, *e);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    auto parsed = parse_speech(std::get<json>(body), st.voices, st.opt.limits);
    if (auto* e = std::get_if<ApiError>(&parsed)) {
        auto res_ = error_response(st, c.req, *e);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    auto& r = std::get<SpeechRequest>(parsed);
    std::string why;
    auto slot = take_slot(st, &why);
    if (!slot) {
        auto res_ = refusal(st, c.req, why);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    ConversationOptions co;
    co.task = Task::kSpeak;
    co.voice = r.voice;
    slot->open(co);
    ChatMessage m{"user", {}};
    m.parts.push_back({r.input, {}});
    add_messages(*slot, {std::move(m)});
    ResponseOptions ro;
    ro.task = Task::kSpeak;
    ro.voice = r.voice;
    const int rate = st.engine.output_rate();
    if (r.stream_format == SpeechRequest::kSse || r.format == SpeechRequest::kPcm) {
        const bool sse = r.stream_format == SpeechRequest::kSse;
        ChunkedWriter w(st, c.stream, c.req, sse ? "text/event-stream" : "audio/pcm");
        if (!co_await w.start()) co_return false;
        std::vector<int16_t> all;  // wav over SSE: one header, then PCM
        bool header_sent = false;
        auto done = co_await run_answer(c, slot, ro, &w, [&](EngineEvent& ev) -> std::string {
            if (ev.kind != EngineEvent::kAudio) return {};
            if (!sse) return pcm16_bytes(ev.pcm.data(), ev.pcm.size());
            std::string bytes = pcm16_bytes(ev.pcm.data(), ev.pcm.size());
            if (r.format == SpeechRequest::kWav && !header_sent) {
                // a streamed WAV: sizes unknown, so the header carries the maximum
                std::string h = encode_wav(nullptr, 0, rate);
                for (int i : {4, 40}) h[i] = h[i + 1] = h[i + 2] = h[i + 3] = char(0xff);
                bytes = h + bytes;
                header_sent = true;
            }
            return sse_data({{"type", "speech.audio.delta"}, {"audio", base64_encode(bytes)}});
        });
        if (!done) co_return false;
        if (sse) {
            std::string s =
                done->finish == "error"
                    ? sse_data(error_body(engine_error(done->error)))
                    : sse_data(
                          {{"type", "speech.audio.done"},
                           {"usage",
                            {{"input_tokens", done->prompt_tokens},
                             {"output_tokens", done->completion_tokens},
                             {"total_tokens", done->prompt_tokens + done->completion_tokens}}}});
            co_await w.write(s);
        } else if (done->finish == "error") {
            co_return false;  // a raw PCM stream has no way to carry an error: cut it short
        }
        co_return co_await w.finish() && c.req.keep_alive();
    }
    std::vector<int16_t> pcm;
    auto done = co_await run_answer(c, slot, ro, nullptr, [&](EngineEvent& ev) -> std::string {
        if (ev.kind == EngineEvent::kAudio) pcm.insert(pcm.end(), ev.pcm.begin(), ev.pcm.end());
        return {};
    });
    if (!done) co_return false;
    if (done->finish == "error") {
        auto res_ = error_response(st, c.req, engine_error(done->error));
        co_return co_await send(st, c.stream, std::move(res_));
    }
    auto res = make_response(c.req, http::status::ok, encode_wav(pcm.data(), pcm.size(), rate),
                             "audio/wav");
    co_return co_await send(st, c.stream, std::move(res));
}

awaitable<bool> handle_chat(Ctx& c) {
    auto& st = c.st;
    auto body = parse_json_object(c.req.body(), st.opt.limits.max_json_depth, "request body");
    if (auto* e = std::get_if<ApiError>(&body)) {
        auto res_ = error_response(st, c.req, *e);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    auto parsed = parse_chat(std::get<json>(body), st.chat_voices, st.opt.limits);
    if (auto* e = std::get_if<ApiError>(&parsed)) {
        auto res_ = error_response(st, c.req, *e);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    auto& r = std::get<ChatRequest>(parsed);
    std::string why;
    auto slot = take_slot(st, &why);
    if (!slot) {
        auto res_ = refusal(st, c.req, why);
        co_return co_await send(st, c.stream, std::move(res_));
    }
    ConversationOptions co;
    co.task = r.audio_out ? Task::kSpeechChat : Task::kTextChat;
    co.voice = r.voice;
    // Leading system messages become the conversation's instructions; later ones stay in place.
    size_t first = 0;
    for (; first < r.messages.size() && r.messages[first].role == "system"; ++first)
        for (auto& p : r.messages[first].parts)
            co.instructions += (co.instructions.empty() ? "" : "\n") + p.text;
    slot->open(co);
    add_messages(*slot,
                 std::vector<ChatMessage>(r.messages.begin() + long(first), r.messages.end()));
    ResponseOptions ro;
    ro.task = co.task;
    ro.voice = r.voice;
    ro.max_steps = r.max_tokens;
    ro.temperature = r.temperature;
    ro.seed = r.seed;
    const std::string id = st.new_id("chatcmpl-");
    const std::string audio_id = st.new_id("audio_");
    const int64_t created = unix_now();
    const std::string model = r.model.empty() ? st.engine.model_id() : r.model;
    auto usage = [](const EngineEvent& d) {
        return json{{"prompt_tokens", d.prompt_tokens},
                    {"completion_tokens", d.completion_tokens},
                    {"total_tokens", d.prompt_tokens + d.completion_tokens}};
    };
    if (r.stream) {
        ChunkedWriter w(st, c.stream, c.req, "text/event-stream");
        if (!co_await w.start()) co_return false;
        auto chunk = [&](json delta, json finish) {
            json ch = {{"id", id},
                       {"object", "chat.completion.chunk"},
                       {"created", created},
                       {"model", model}};
            ch["choices"] = json::array(
                {{{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", finish}}});
            return sse_data(ch);
        };
        std::string first_chunk = chunk(
            {{"role", "assistant"}, {"content", r.audio_out ? json(nullptr) : json("")}}, nullptr);
        if (!co_await w.write(first_chunk)) co_return false;
        auto done = co_await run_answer(c, slot, ro, &w, [&](EngineEvent& ev) -> std::string {
            if (ev.kind == EngineEvent::kText) {
                std::string d = valid_text(std::move(ev.text), st.metrics);
                if (r.audio_out)
                    return chunk({{"audio", {{"id", audio_id}, {"transcript", d}}}}, nullptr);
                return chunk({{"content", d}}, nullptr);
            }
            if (ev.kind == EngineEvent::kAudio && r.audio_out) {
                json a = {{"id", audio_id},
                          {"data", base64_encode(ev.pcm.data(), ev.pcm.size())},
                          {"expires_at", created + 3600}};
                return chunk({{"audio", a}}, nullptr);
            }
            return {};
        });
        if (!done) co_return false;
        if (done->finish == "error") {
            std::string s = sse_data(error_body(engine_error(done->error)));
            co_await w.write(s);
        } else {
            std::string s = chunk(json::object(), done->finish == "length" ? "length" : "stop");
            co_await w.write(s);
            if (r.include_usage) {
                json ch = {
                    {"id", id},       {"object", "chat.completion.chunk"}, {"created", created},
                    {"model", model}, {"choices", json::array()},          {"usage", usage(*done)}};
                std::string u = sse_data(ch);
                co_await w.write(u);
            }
        }
        std::string last(kSseDone);
        co_await w.write(last);
        co_return co_await w.finish() && c.req.keep_alive();
    }
    std::string text;
    std::vector<int16_t> pcm;
    auto done = co_await run_answer(c, slot, ro, nullptr, [&](EngineEvent& ev) -> std::string {
        if (ev.kind == EngineEvent::kText) text += valid_text(std::move(ev.text), st.metrics);
        if (ev.kind == EngineEvent::kAudio) pcm.insert(pcm.end(), ev.pcm.begin(), ev.pcm.end());
        return {};
    });
    if (!done) co_return false;
    if (done->finish == "error") {
        auto res_ = error_response(st, c.req, engine_error(done->error));
        co_return co_await send(st, c.stream, std::move(res_));
    }
    json msg = {{"role", "assistant"}, {"refusal", nullptr}};
    if (r.audio_out) {
        std::string data = r.audio_format == ChatRequest::kWav
                               ? encode_wav(pcm.data(), pcm.size(), st.engine.output_rate())
                               : pcm16_bytes(pcm.data(), pcm.size());
        msg["content"] = nullptr;
        msg["audio"] = {{"id", audio_id},
                        {"data", base64_encode(data)},
                        {"expires_at", created + 3600},
                        {"transcript", text}};
    } else {
        msg["content"] = text;
    }
    json j = {{"id", id}, {"object", "chat.completion"}, {"created", created}, {"model", model}};
    j["choices"] = json::array({{{"index", 0},
                                 {"message", msg},
                                 {"finish_reason", done->finish == "length" ? "length" : "stop"}}});
    j["usage"] = usage(*done);
    {
        auto res_ = json_response(c.req, http::status::ok, j);
        co_return co_await send(st, c.stream, std::move(res_));
    }
}

// ---- the model list and the browser page ----------------------------------------------------

// A /v1/models entry. `voxrt` carries what a client of this server may want to show: whether the
// weights are random (a checkpoint made by tools/reference/make_checkpoint.py carries
// checkpoint_info.json in its directory; the official checkpoint has none), the voices, the rate.
json model_entry(const ServerState& st) {
    json info = {{"random_weights", false},
                 {"checkpoint", nullptr},
                 {"voices", st.voices},
                 {"chat_voices", st.chat_voices},
                 {"sample_rate", st.engine.output_rate()},
                 {"device", st.engine.device()},
                 {"precision", st.engine.precision()},
                 {"batch_exact", st.engine.batch_exact()},
                 {"max_sessions", st.opt.max_sessions},
                 {"max_sessions_from", st.opt.max_sessions_from}};
    if (st.opt.session_bytes > 0) {
        info["session_bytes"] = st.opt.session_bytes;
        info["free_memory_bytes"] = st.opt.free_memory_bytes;
    }
    if (!st.opt.model_dir.empty()) {
        const auto path = std::filesystem::path(st.opt.model_dir) / "checkpoint_info.json";
        std::error_code ec;
        if (std::filesystem::is_regular_file(path, ec)) {
            info["random_weights"] = true;
            std::ifstream f(path);
            json ci = json::parse(f, nullptr, /*allow_exceptions=*/false);
            json summary = json::object();
            if (ci.is_object())
                for (const char* k : {"size", "seed"})
                    if (ci.contains(k)) summary[k] = ci[k];
            info["checkpoint"] = summary;
        }
    }
    return {{"id", st.engine.model_id()},
            {"object", "model"},
            {"created", 0},
            {"owned_by", "voxrt"},
            {"voxrt", info}};
}

// GET/HEAD of an embedded page file (web_assets.h): `/` is index.html, `/static/NAME` the file
// NAME under web/. The files carry no version in their names, so clients revalidate each time
// (no-cache) and get 304 when the ETag still matches.
awaitable<bool> send_web_asset(ServerState& st, beast::tcp_stream& stream, const Request& req,
                               const WebAsset& a) {
    const bool head = req.method() == http::verb::head;
    const bool fresh = req[http::field::if_none_match] == a.etag;
    http::response<http::string_body> res{fresh ? http::status::not_modified : http::status::ok,
                                          req.version()};
    res.set(http::field::server, "voxrt");
    res.set(http::field::content_type, web_content_type(a.name));
    res.set(http::field::cache_control, "no-cache");
    res.set(http::field::etag, a.etag);
    res.set("X-Content-Type-Options", "nosniff");
    if (a.name.ends_with(".html")) {
        // the page loads nothing from elsewhere and talks only to this server
        res.set("Content-Security-Policy",
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
        res.set("Referrer-Policy", "no-referrer");
    }
    res.keep_alive(req.keep_alive());
    if (!fresh && !head) res.body().assign(a.data.data(), a.data.size());
    if (!fresh) res.content_length(a.data.size());  // HEAD: the length GET would send
    if (head || fresh) {
        http::response_serializer<http::string_body> sr(res);
        sr.split(true);
        stream.expires_after(std::chrono::seconds(st.opt.write_timeout_s));
        auto [ec, n] = co_await http::async_write_header(stream, sr, use_tuple);
        co_return !ec;
    }
    co_return co_await send(st, stream, std::move(res));
}

// Returns whether the connection stays open.
awaitable<bool> route(ServerState& st, beast::tcp_stream& stream, const Request& req) {
    st.metrics.http_requests++;
    Ctx c{st, stream, req};
    std::string_view target(req.target().data(), req.target().size());
    std::string_view path = target.substr(0, target.find('?'));
    const bool get = req.method() == http::verb::get, post = req.method() == http::verb::post;
    auto method_not_allowed = [&]() {
        ApiError e;
        e.status = 405;
        e.message = "method " + std::string(req.method_string()) + " is not allowed on " +
                    std::string(path);
        return error_response(st, req, e);
    };
    if (path == "/health") {
        if (!get) {
            auto res_ = method_not_allowed();
            co_return co_await send(st, stream, std::move(res_));
        }
        auto res = json_response(req, http::status::ok, {{"status", "ok"}});
        co_return co_await send(st, stream, std::move(res));
    }
    if (path == "/ready") {
        if (!get) {
            auto res_ = method_not_allowed();
            co_return co_await send(st, stream, std::move(res_));
        }
        const bool full = st.sched.in_use() >= st.sched.slots();
        json j = {{"status", st.draining ? "draining"
                             : full      ? "full"
                                         : "ready"},
                  {"sessions_active", st.sched.in_use()},
                  {"session_slots", st.sched.slots()}};
        auto res = json_response(
            req, st.draining || full ? http::status::service_unavailable : http::status::ok, j);
        co_return co_await send(st, stream, std::move(res));
    }
    if (path == "/metrics") {
        if (!get) {
            auto res_ = method_not_allowed();
            co_return co_await send(st, stream, std::move(res_));
        }
        auto res =
            make_response(req, http::status::ok, st.metrics.render(), "text/plain; version=0.0.4");
        co_return co_await send(st, stream, std::move(res));
    }
    if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) {
        if (!get) {
            auto res_ = method_not_allowed();
            co_return co_await send(st, stream, std::move(res_));
        }
        json m = model_entry(st);
        if (path == "/v1/models") {
            auto res = json_response(req, http::status::ok,
                                     {{"object", "list"}, {"data", json::array({m})}});
            co_return co_await send(st, stream, std::move(res));
        }
        if (path.substr(11) != st.engine.model_id()) {
            ApiError e;
            e.status = 404;
            e.code = "model_not_found";
            e.message = "model '" + std::string(path.substr(11)) + "' does not exist";
            {
                auto res_ = error_response(st, req, e);
                co_return co_await send(st, stream, std::move(res_));
            }
        }
        {
            auto res_ = json_response(req, http::status::ok, m);
            co_return co_await send(st, stream, std::move(res_));
        }
    }
    const bool engine_path = path == "/v1/audio/transcriptions" || path == "/v1/audio/speech" ||
                             path == "/v1/chat/completions";
    if (engine_path) {
        if (!post) {
            auto res_ = method_not_allowed();
            co_return co_await send(st, stream, std::move(res_));
        }
        if (st.draining) {
            auto res_ = error_response(st, req, draining_error());
            co_return co_await send(st, stream, std::move(res_));
        }
        st.http_in_flight++;
        bool keep = false;
        if (path == "/v1/audio/transcriptions")
            keep = co_await handle_transcription(c);
        else if (path == "/v1/audio/speech")
            keep = co_await handle_speech(c);
        else
            keep = co_await handle_chat(c);
        st.http_in_flight--;
        co_return keep;
    }
    if (path == "/" || path == "/index.html" || path.rfind("/static/", 0) == 0) {
        if (!get && req.method() != http::verb::head) {
            auto res_ = method_not_allowed();
            res_.set(http::field::allow, "GET, HEAD");
            co_return co_await send(st, stream, std::move(res_));
        }
        const std::string_view name =
            path.rfind("/static/", 0) == 0 ? path.substr(8) : std::string_view("index.html");
        if (const WebAsset* a = find_web_asset(name))
            co_return co_await send_web_asset(st, stream, req, *a);
        ApiError e;
        e.status = 404;
        e.code = "not_found";
        e.message = "no file " + std::string(path);
        auto res_ = error_response(st, req, e);
        co_return co_await send(st, stream, std::move(res_));
    }
    if (path == "/v1/realtime") {
        ApiError e;
        e.status = 426;
        e.message = "/v1/realtime is a WebSocket endpoint: send an Upgrade: websocket request";
        {
            auto res_ = error_response(st, req, e);
            co_return co_await send(st, stream, std::move(res_));
        }
    }
    ApiError e;
    e.status = 404;
    e.code = "not_found";
    e.message = "no endpoint " + std::string(req.method_string()) + " " + std::string(path);
    {
        auto res_ = error_response(st, req, e);
        co_return co_await send(st, stream, std::move(res_));
    }
}

awaitable<void> connection(ServerState& st, tcp::socket socket) {
    st.connections++;
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    bool first = true;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(16 * 1024);
        parser.body_limit(st.opt.max_body_bytes);
        // waiting for the next request on a kept-alive connection, then reading it
        stream.expires_after(
            std::chrono::seconds(first ? st.opt.request_timeout_s : st.opt.idle_timeout_s));
        auto [ec0, n0] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
        if (!ec0) {
            stream.expires_after(std::chrono::seconds(st.opt.request_timeout_s));
            auto [ec1, n1] = co_await http::async_read(stream, buffer, parser, use_tuple);
            ec0 = ec1;
        }
        first = false;
        if (ec0) {
            // A timeout has already closed the socket (tcp_stream does): a slow or silent client
            // is simply disconnected.
            if (ec0 == http::error::body_limit || ec0 == http::error::header_limit) {
                Request req;
                req.version(11);
                req.keep_alive(false);
                ApiError e;
                e.status = 413;
                e.code = "request_too_large";
                e.message = ec0 == http::error::body_limit
                                ? "request body larger than " +
                                      std::to_string(st.opt.max_body_bytes) + " bytes"
                                : "request headers larger than 16 KiB";
                {
                    auto res_ = error_response(st, req, e);
                    co_await send(st, stream, std::move(res_));
                }
            } else if (ec0 != http::error::end_of_stream && ec0 != beast::error::timeout &&
                       ec0 != net::error::eof && ec0 != net::error::connection_reset &&
                       ec0 != net::error::operation_aborted) {
                Request req;
                req.version(11);
                req.keep_alive(false);
                ApiError e;
                e.message = "malformed HTTP request: " + ec0.message();
                {
                    auto res_ = error_response(st, req, e);
                    co_await send(st, stream, std::move(res_));
                }
            }
            break;
        }
        Request req = parser.release();
        if (websocket::is_upgrade(req)) {
            std::string_view target(req.target().data(), req.target().size());
            if (target.substr(0, target.find('?')) == "/v1/realtime") {
                st.connections--;
                co_await run_realtime(st, std::move(stream), std::move(req));
                co_return;
            }
        }
        if (!co_await route(st, stream, req)) break;
        if (st.draining) break;
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    st.connections--;
}

awaitable<void> listener(ServerState& st, tcp::acceptor& acceptor) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
        if (ec) {
            if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
            continue;  // e.g. EMFILE: keep serving the connections we have
        }
        if (st.connections + int(st.realtime.size()) >= st.opt.max_connections) {
            beast::error_code ignore;
            socket.close(ignore);
            continue;
        }
        // Events are small writes that must leave at once. With Nagle's algorithm a write waits
        // for the ACK of the previous one, which the client's delayed ACK holds back until its
        // next send or a timer (tens of ms): measured as a 24-43 ms gap between two events
        // written back to back, and as the server's time to first audio moving in steps of the
        // client's chunk period.
        beast::error_code nd;
        socket.set_option(tcp::no_delay(true), nd);
        net::co_spawn(acceptor.get_executor(), connection(st, std::move(socket)), net::detached);
    }
}

}  // namespace

void close_realtime_sessions(ServerState& st);  // realtime.cpp

int serve(Engine& engine, const ServerOptions& opt,
          const std::function<void(uint16_t)>& on_listening) {
    net::io_context ioc(1);
    Metrics metrics;
    Scheduler sched(engine, opt.max_sessions, metrics, opt.round_budget_ms, opt.commands_budget_ms);
    ServerState st{ioc, engine, sched, metrics, opt, engine.voices(), engine.chat_voices()};
    tcp::acceptor acceptor(ioc);
    beast::error_code ec;
    auto addr = net::ip::make_address(opt.host, ec);
    if (ec) {
        std::fprintf(stderr, "error: --host '%s' is not an IP address\n", opt.host.c_str());
        return 1;
    }
    tcp::endpoint ep(addr, opt.port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
        std::fprintf(stderr, "error: cannot listen on %s:%u: %s\n", opt.host.c_str(),
                     unsigned(opt.port), ec.message().c_str());
        return 1;
    }
    const uint16_t port = acceptor.local_endpoint().port();
    std::fprintf(stderr, "voxrt serve: listening on http://%s:%u (model %s, %d session slots)\n",
                 opt.host.c_str(), unsigned(port), engine.model_id().c_str(), opt.max_sessions);
    if (on_listening) on_listening(port);
    net::co_spawn(ioc, listener(st, acceptor), net::detached);

    net::signal_set signals(ioc, SIGTERM, SIGINT);
    net::steady_timer drain_timer(ioc);
    auto deadline = std::chrono::steady_clock::time_point::max();
    std::function<void()> poll_drain = [&] {
        const bool quiet = sched.responding() == 0 && st.http_in_flight == 0;
        if (quiet || std::chrono::steady_clock::now() >= deadline) {
            std::fprintf(stderr, "voxrt serve: %s; closing\n",
                         quiet ? "no answer in progress" : "drain deadline reached");
            close_realtime_sessions(st);
            drain_timer.expires_after(std::chrono::milliseconds(300));
            drain_timer.async_wait([&](beast::error_code) { ioc.stop(); });
            return;
        }
        drain_timer.expires_after(std::chrono::milliseconds(50));
        drain_timer.async_wait([&](beast::error_code e) {
            if (!e) poll_drain();
        });
    };
    signals.async_wait([&](beast::error_code e, int sig) {
        if (e) return;
        std::fprintf(
            stderr,
            "voxrt serve: %s: no new sessions; finishing answers in progress (up to %d s)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", opt.drain_s);
        st.draining = true;
        beast::error_code ignore;
        acceptor.close(ignore);
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(opt.drain_s);
        poll_drain();
    });
    ioc.run();
    std::fprintf(stderr, "voxrt serve: stopped\n");
    return 0;
}

}  // namespace voxrt::server
