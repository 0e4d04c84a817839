// FakeEngine: a deterministic stand-in for the model, for the server's protocol, fault and load
// tests. Answers are scripted: speech chat gives a fixed sentence (with multi-byte characters)
// interleaved like the real model (up to 6 text pieces, then 12 audio frames of 80 ms, a 440 Hz
// tone), text chat the sentence alone, transcription a line naming the audio's length, speech
// 80 ms of tone per two characters of input. Each step sleeps `step_ms` to stand for the model's
// step time. User text containing "fake:error" makes the next answer end with an error.
#pragma once

#include "engine.h"

namespace voxrt::server {

struct FakeEngineOptions {
    double step_ms = 2;
    int answer_frames = 25;  // audio frames of a speech-chat answer (2 s)
};

class FakeEngine : public Engine {
public:
    explicit FakeEngine(FakeEngineOptions opt = {}) : opt_(opt) {}
    std::string model_id() const override { return "voxrt-fake"; }
    std::vector<std::string> voices() const override;
    std::vector<std::string> chat_voices() const override { return {"default"}; }
    std::string open(const ConversationOptions& opt, std::unique_ptr<Conversation>* out) override;

private:
    FakeEngineOptions opt_;
};

}  // namespace voxrt::server
