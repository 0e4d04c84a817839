#include "voxrt_engine.h"

#include <voxrt/voxrt.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

namespace voxrt::server {
namespace {

::voxrt::Task api_task(Task t) {
    switch (t) {
        case Task::kSpeechChat:
            return ::voxrt::Task::kSpeechChat;
        case Task::kTextChat:
            return ::voxrt::Task::kTextChat;
        case Task::kTranscribe:
            return ::voxrt::Task::kAsr;
        case Task::kSpeak:
            return ::voxrt::Task::kTts;
    }
    return ::voxrt::Task::kSpeechChat;
}

std::vector<int16_t> to_pcm16(const std::vector<float>& x) {
    std::vector<int16_t> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        float v = std::isfinite(x[i]) ? std::clamp(x[i], -1.0f, 1.0f) : 0.0f;
        out[i] = int16_t(std::lround(v * 32767.0f));
    }
    return out;
}

class VoxrtConversation : public Conversation {
public:
    VoxrtConversation(std::unique_ptr<::voxrt::Session> s, bool suppress_end)
        : s_(std::move(s)), suppress_end_(suppress_end) {}

    std::string begin(std::string_view role) override {
        if (open_) return "a message is already open";
        if (role == "user") {
            if (auto st = s_->begin_user_turn(); !st) return st.message();
            role_ = ::voxrt::Role::kUser;
        } else if (role == "system") {
            role_ = ::voxrt::Role::kSystem;
        } else if (role == "assistant") {
            role_ = ::voxrt::Role::kAssistant;
        } else {
            return "unknown role '" + std::string(role) + "'";
        }
        open_ = true;
        text_.clear();
        return {};
    }
    std::string add_text(std::string_view text) override {
        if (!open_) return "no open message";
        if (role_ != ::voxrt::Role::kUser) {
            text_ += text;
            return {};
        }
        auto st = s_->append_text(text);
        return st ? std::string() : st.message();
    }
    std::string add_audio(const float* pcm, size_t n, int rate) override {
        if (!open_) return "no open message";
        if (role_ != ::voxrt::Role::kUser) return "audio is accepted in user messages only";
        auto st = s_->append_audio(pcm, n, rate);
        return st ? std::string() : st.message();
    }
    std::string end() override {
        if (!open_) return "no open message";
        open_ = false;
        auto st = role_ == ::voxrt::Role::kUser ? s_->end_user_turn() : s_->add_turn(role_, text_);
        text_.clear();
        return st ? std::string() : st.message();
    }
    std::string start(const ResponseOptions& opt) override {
        if (open_) return "a message is still open";
        auto ro = ::voxrt::ResponseOptions::for_task(api_task(opt.task));
        if (opt.max_steps > 0) ro.max_steps = opt.max_steps;
        if (opt.temperature >= 0) ro.sampling.text_temperature = opt.temperature;
        ro.seed = opt.seed;
        ro.suppress_end = suppress_end_;
        auto st = s_->start_response(ro);
        return st ? std::string() : st.message();
    }
    bool step(std::vector<EngineEvent>& out) override {
        evs_.clear();
        auto r = s_->step(evs_);
        return translate(r.is_ok() ? ::voxrt::Status::ok() : r.status(), r.is_ok() && *r, evs_,
                         out);
    }
    // What a step produced (its status, whether the answer is over, its events) as the server's
    // events; false once the answer has ended.
    static bool translate(const ::voxrt::Status& st, bool over, std::vector<::voxrt::Event>& evs,
                          std::vector<EngineEvent>& out) {
        for (auto& e : evs) {
            EngineEvent ev;
            switch (e.kind) {
                case ::voxrt::EventKind::kTextDelta:
                    if (e.text.empty()) continue;
                    ev.kind = EngineEvent::kText;
                    ev.text = std::move(e.text);
                    break;
                case ::voxrt::EventKind::kAudio:
                    if (e.pcm.empty()) continue;
                    ev.kind = EngineEvent::kAudio;
                    ev.pcm = to_pcm16(e.pcm);
                    break;
                case ::voxrt::EventKind::kAudioFrame:
                    continue;
                case ::voxrt::EventKind::kEndOfTurn:
                    ev.kind = EngineEvent::kDone;
                    ev.finish = e.reason == ::voxrt::EndReason::kEndToken   ? "stop"
                                : e.reason == ::voxrt::EndReason::kMaxSteps ? "length"
                                                                            : "cancelled";
                    ev.prompt_tokens = e.stats.prefill_positions;
                    ev.completion_tokens = e.stats.steps;
                    break;
            }
            out.push_back(std::move(ev));
        }
        if (!st) {
            EngineEvent ev;
            ev.kind = EngineEvent::kDone;
            ev.finish = "error";
            ev.error = st.message();
            out.push_back(std::move(ev));
            return false;
        }
        return !over;
    }
    ::voxrt::Session* session() { return s_.get(); }
    void cancel(std::vector<EngineEvent>&) override { s_->cancel(); }
    std::string truncate(int64_t audio_ms) override {
        if (s_->responding()) return "cannot truncate while an answer is running";
        auto st = s_->truncate_to_audio_ms(double(audio_ms));
        return st ? std::string() : st.message();
    }

private:
    std::unique_ptr<::voxrt::Session> s_;
    bool suppress_end_ = false;
    std::vector<::voxrt::Event> evs_;
    bool open_ = false;
    ::voxrt::Role role_ = ::voxrt::Role::kUser;
    std::string text_;
};

class VoxrtEngine : public Engine {
public:
    VoxrtEngine(std::shared_ptr<::voxrt::Model> m, int context, bool suppress_end, int prefill_rows,
                int batch_rows)
        : model_(std::move(m)),
          context_(context),
          suppress_end_(suppress_end),
          prefill_rows_(prefill_rows),
          batch_rows_(batch_rows) {}
    std::string model_id() const override { return model_->info().name; }
    std::vector<std::string> voices() const override {
        return {"us-female", "us-male", "uk-female", "uk-male"};
    }
    // The interleaved speech-chat prompt names no voice: the model answers in its one chat voice.
    std::vector<std::string> chat_voices() const override { return {"default"}; }
    int output_rate() const override { return model_->info().output_sample_rate; }
    std::string device() const override { return model_->info().device; }
    std::string precision() const override { return model_->info().precision; }
    bool batch_exact() const override {
        return model_->info().device == "cpu" || model_->info().precision == "fp32";
    }
    // A probe conversation, made the way open() makes them, reports its memory at the full
    // context; the device's free memory is read while it (and the lane all conversations share)
    // is allocated.
    MemoryCapacity memory_capacity(int max_sessions_cap) override {
        MemoryCapacity c;
        ::voxrt::SessionOptions so;
        so.context = context_;
        so.share_device_context = true;
        auto s = ::voxrt::Session::create(model_, so);
        if (!s) return c;
        const ::voxrt::Session::Memory m = s.value()->memory(::voxrt::ResponseOptions{}.max_steps);
        c.free_bytes = model_->free_memory_bytes();
        c.per_session_bytes = m.at_full_context;
        c.shared_bytes = m.shared;
        if (c.free_bytes == 0 || c.per_session_bytes == 0) return c;
        const size_t usable = c.free_bytes - c.free_bytes / 10;
        c.sessions = int(std::clamp<size_t>(usable / c.per_session_bytes, 1,
                                            size_t(std::max(max_sessions_cap, 1))));
        return c;
    }

    std::string open(const ConversationOptions& opt, std::unique_ptr<Conversation>* out) override {
        ::voxrt::SessionOptions so;
        so.context = context_;
        // Every conversation is driven by the scheduler's one engine thread: they share one
        // device context and the prefill / encoder scratch (docs/batching.md "Memory per
        // session").
        so.share_device_context = true;
        auto s = ::voxrt::Session::create(model_, so);
        if (!s) return s.status().message();
        auto voice = ::voxrt::parse_voice(opt.voice.empty() ? "us-female" : opt.voice);
        if (opt.task == Task::kSpeak && !voice) return "unknown voice '" + opt.voice + "'";
        auto d =
            ::voxrt::task_defaults(api_task(opt.task), voice.value_or(::voxrt::Voice::kUsFemale));
        std::string system = d.system_prompt;
        // The client's instructions follow the task's prompt (speech chat needs its prompt to
        // answer with audio); ASR and TTS take none.
        if (!opt.instructions.empty() &&
            (opt.task == Task::kSpeechChat || opt.task == Task::kTextChat))
            system += (system.empty() ? "" : "\n") + opt.instructions;
        if (!system.empty())
            if (auto st = s.value()->add_turn(::voxrt::Role::kSystem, system); !st)
                return st.message();
        *out = std::make_unique<VoxrtConversation>(std::move(s).value(), suppress_end_);
        return {};
    }

    // The first answer through the batched path pays what later ones do not: the batch and its
    // buffers, its first steps at one row (op by op, then graph captures) and the detokenizer
    // lane's first rounds. Model::load's warm-up runs a lone session, not this path; so one short
    // speech-chat answer on a throwaway conversation pays it here, before the server listens.
    std::string warm_up() {
        ::voxrt::SessionOptions so;
        so.context = context_;
        so.share_device_context = true;
        auto s = ::voxrt::Session::create(model_, so);
        if (!s) return s.status().message();
        ::voxrt::Session& ses = *s.value();
        const int rate = model_->info().input_sample_rate;
        const std::vector<float> silence(size_t(rate), 0.0f);
        ::voxrt::Status st = ses.begin_user_turn();
        if (st) st = ses.append_audio(silence.data(), silence.size(), rate);
        if (st) st = ses.end_user_turn();
        auto ro = ::voxrt::ResponseOptions::for_task(::voxrt::Task::kSpeechChat);
        ro.max_steps = 16;  // past the interleaved pattern's first audio frames
        ro.suppress_end = true;
        if (st) st = ses.start_response(ro);
        if (!st) return st.message();
        if (!make_batch()) return {};  // no batching here: step_many goes one by one

        std::vector<::voxrt::Session*> one = {&ses};
        // its steps, then the detokenizer's tail (the answer ends once its audio is out)
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
        while (std::chrono::steady_clock::now() < deadline) {
            for (auto& e : events_) e.clear();
            if (st = batch_->step(one, events_, results_); !st) return st.message();
            if (!results_[0].status) return results_[0].status.message();
            if (results_[0].done) return {};
            if (events_[0].empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return "the warm-up answer did not end within 5 minutes";
    }

    // Every conversation with an answer running advances in one batched step (voxrt::Batch).
    int step_many(const std::vector<Conversation*>& convs,
                  std::vector<std::vector<EngineEvent>>& out, std::vector<char>& more) override {
        out.resize(convs.size());
        more.assign(convs.size(), 0);
        if (!batch_ && !make_batch())
            return Engine::step_many(convs, out, more);  // cannot batch: one by one
        sessions_.clear();
        for (auto& e : events_) e.clear();
        for (Conversation* c : convs)
            sessions_.push_back(static_cast<VoxrtConversation*>(c)->session());
        const ::voxrt::Status st = batch_->step(sessions_, events_, results_);
        if (!st) {  // a bad list (a bug here): every answer ends with the error
            for (size_t i = 0; i < convs.size(); ++i) {
                std::vector<::voxrt::Event> none;
                VoxrtConversation::translate(st, true, none, out[i]);
            }
            return 1;
        }
        for (size_t i = 0; i < convs.size(); ++i)
            more[i] = VoxrtConversation::translate(results_[i].status, results_[i].done, events_[i],
                                                   out[i])
                          ? 1
                          : 0;
        const ::voxrt::Batch::Shape shape = batch_->last_shape();
        return shape.alone ? 1 : std::max(1, shape.backbone);
    }

private:
    bool make_batch() {
        auto b = ::voxrt::Batch::create(model_, batch_rows_);
        if (!b) return false;
        batch_ = std::move(b).value();
        if (prefill_rows_ >= 0) batch_->set_prefill_rows(prefill_rows_);
        return true;
    }

    std::shared_ptr<::voxrt::Model> model_;
    int context_;
    bool suppress_end_;
    int prefill_rows_;
    int batch_rows_;
    std::unique_ptr<::voxrt::Batch> batch_;
    std::vector<::voxrt::Session*> sessions_;
    std::vector<std::vector<::voxrt::Event>> events_;
    std::vector<::voxrt::BatchResult> results_;
};

}  // namespace

std::string make_voxrt_engine(const VoxrtEngineOptions& opt, std::unique_ptr<Engine>* out) {
    ::voxrt::ModelOptions mo;
    mo.device = opt.device;
    mo.precision = opt.precision;
    mo.threads = opt.threads;
    if (opt.context > 0) mo.max_context = opt.context;
    auto m = ::voxrt::Model::load(opt.model_dir, mo);
    if (!m) return m.status().message();
    auto e = std::make_unique<VoxrtEngine>(std::move(m).value(), opt.context, opt.suppress_end,
                                           opt.prefill_rows, opt.batch_rows);
    if (std::string err = e->warm_up(); !err.empty()) return "warm-up answer: " + err;
    *out = std::move(e);
    return {};
}

}  // namespace voxrt::server
