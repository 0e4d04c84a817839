#include "fake_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

namespace voxrt::server {
namespace {

constexpr int kFrameSamples = 1920;  // 80 ms at 24 kHz

class FakeConversation : public Conversation {
public:
    explicit FakeConversation(FakeEngineOptions opt) : opt_(opt) {}

    std::string begin(std::string_view role) override {
        if (in_turn_) return "a message is already open";
        if (role != "system" && role != "user" && role != "assistant")
            return "unknown role '" + std::string(role) + "'";
        in_turn_ = true;
        role_ = role;
        if (role_ == "user") {
            user_text_.clear();
            user_audio_s_ = 0;
        }
        return {};
    }
    std::string add_text(std::string_view text) override {
        if (!in_turn_) return "no open message";
        if (role_ == "user") user_text_ += text;
        return {};
    }
    std::string add_audio(const float* pcm, size_t n, int rate) override {
        if (!in_turn_) return "no open message";
        if (rate <= 0) return "bad sample rate";
        if (role_ == "user") user_audio_s_ += double(n) / rate;
        return {};
    }
    std::string end() override {
        if (!in_turn_) return "no open message";
        in_turn_ = false;
        ++turns_;
        return {};
    }
    std::string start(const ResponseOptions& opt) override {
        if (in_turn_) return "a message is still open";
        if (active_) return "an answer is already running";
        items_.clear();
        pos_ = 0;
        frames_out_ = 0;
        if (user_text_.find("fake:error") != std::string::npos) {
            fail_ = true;
        } else {
            fail_ = false;
        }
        const std::vector<std::string> words = {"Fake ",  "answer ", "— ", "héllo ",
                                                "wörld ", "☃ ",      "𝄞 ", "done."};
        switch (opt.task) {
            case Task::kSpeechChat: {
                size_t w = 0;
                int frames = 0;
                while (w < words.size() || frames < opt_.answer_frames) {
                    for (int i = 0; i < 6 && w < words.size(); ++i)
                        items_.push_back({words[w++], 0});
                    for (int i = 0; i < 12 && frames < opt_.answer_frames; ++i, ++frames)
                        items_.push_back({"", 1});
                }
                break;
            }
            case Task::kTextChat:
                for (auto& w : words) items_.push_back({w, 0});
                break;
            case Task::kTranscribe: {
                char buf[96];
                std::snprintf(buf, sizeof buf, "fake transcript of %.2f s of audio", user_audio_s_);
                items_.push_back({buf, 0});
                break;
            }
            case Task::kSpeak: {
                size_t frames = std::max<size_t>(3, user_text_.size() / 2);
                for (size_t i = 0; i < frames; ++i) items_.push_back({"", 1});
                break;
            }
        }
        max_steps_ = opt.max_steps > 0 ? opt.max_steps : 1 << 30;
        active_ = true;
        return {};
    }
    bool step(std::vector<EngineEvent>& out) override {
        if (!active_) return false;
        if (opt_.step_ms > 0)
            std::this_thread::sleep_for(std::chrono::microseconds(int64_t(opt_.step_ms * 1000)));
        if (fail_ && pos_ == 2) return finish(out, "error", "fake engine failure");
        if (pos_ >= items_.size()) return finish(out, "stop", "");
        if (int(pos_) >= max_steps_) return finish(out, "length", "");
        const Item& it = items_[pos_++];
        EngineEvent ev;
        if (it.audio) {
            ev.kind = EngineEvent::kAudio;
            ev.pcm.resize(kFrameSamples);
            for (int i = 0; i < kFrameSamples; ++i) {
                double t = double(frames_out_ * kFrameSamples + i) / 24000.0;
                ev.pcm[i] = int16_t(std::lround(9830.0 * std::sin(2 * M_PI * 440.0 * t)));
            }
            ++frames_out_;
        } else {
            ev.kind = EngineEvent::kText;
            ev.text = it.text;
        }
        out.push_back(std::move(ev));
        return true;
    }
    void cancel(std::vector<EngineEvent>& out) override {
        if (active_) finish(out, "cancelled", "");
    }
    std::string truncate(int64_t audio_ms) override {
        if (active_) return "cannot truncate while an answer is running";
        if (audio_ms < 0) return "audio_end_ms must not be negative";
        int64_t have = last_frames_ * 80;
        if (audio_ms > have)
            return "audio_end_ms " + std::to_string(audio_ms) + " is past the answer's audio (" +
                   std::to_string(have) + " ms)";
        last_frames_ = audio_ms / 80;
        return {};
    }

private:
    struct Item {
        std::string text;
        int audio;
    };
    bool finish(std::vector<EngineEvent>& out, const char* why, const char* err) {
        EngineEvent ev;
        ev.kind = EngineEvent::kDone;
        ev.finish = why;
        ev.error = err;
        ev.prompt_tokens = 1;
        ev.completion_tokens = int(pos_);
        out.push_back(std::move(ev));
        active_ = false;
        last_frames_ = frames_out_;
        return false;
    }

    FakeEngineOptions opt_;
    bool in_turn_ = false;
    bool active_ = false;
    bool fail_ = false;
    std::string role_;
    std::string user_text_;
    double user_audio_s_ = 0;
    int turns_ = 0;
    std::vector<Item> items_;
    size_t pos_ = 0;
    int max_steps_ = 0;
    int64_t frames_out_ = 0;
    int64_t last_frames_ = 0;
};

}  // namespace

std::vector<std::string> FakeEngine::voices() const {
    return {"us-female", "us-male", "uk-female", "uk-male"};
}

std::string FakeEngine::open(const ConversationOptions& opt, std::unique_ptr<Conversation>* out) {
    if (opt.task == Task::kSpeak && !opt.voice.empty()) {
        auto v = voices();
        if (std::find(v.begin(), v.end(), opt.voice) == v.end())
            return "unknown voice '" + opt.voice + "'";
    }
    *out = std::make_unique<FakeConversation>(opt_);
    return {};
}

}  // namespace voxrt::server
