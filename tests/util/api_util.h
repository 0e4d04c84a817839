// Helpers for tests written against the public API (include/voxrt) only.
#pragma once

#include <gtest/gtest.h>

#include <voxrt/voxrt.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "util/test_paths.h"

namespace voxrt::test {

// The tiny random checkpoint (tests/data/tiny/model) on `device` ("cpu" | "cuda"); nullptr, with
// the error recorded as a test failure, when it does not load.
inline std::shared_ptr<Model> load_tiny(const std::string& device, const std::string& precision,
                                        int max_context = 1024, int threads = 2) {
    ModelOptions o;
    o.device = device;
    o.precision = precision;
    o.max_context = max_context;
    o.threads = threads;
    auto m = Model::load(data_dir() + "/tiny/model", o);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return m.is_ok() ? *m : nullptr;
}

inline AudioClip read_clip(const std::string& name) {
    auto c = read_wav_file(data_dir() + "/audio/" + name);
    EXPECT_TRUE(c.is_ok()) << c.status().message();
    return c.is_ok() ? std::move(*c) : AudioClip{};
}

// A system turn (the task's prompt) and a user turn of audio, all at once.
inline Status add_audio_prompt(Session& s, Task task, const AudioClip& clip) {
    const TaskDefaults d = task_defaults(task);
    if (!d.system_prompt.empty()) VOXRT_RETURN_IF_ERROR(s.add_turn(Role::kSystem, d.system_prompt));
    VOXRT_RETURN_IF_ERROR(s.begin_user_turn());
    VOXRT_RETURN_IF_ERROR(
        s.append_audio(clip.samples.data(), clip.samples.size(), clip.sample_rate));
    return s.end_user_turn();
}

// What a response produced, and the text logits of its text steps (when captured).
struct Response {
    std::vector<ResponseItem> items;
    std::string text;
    std::vector<float> pcm;
    std::vector<std::vector<float>> logits;
    EndReason reason = EndReason::kEndToken;
    int steps = 0;
    Status status;
};

inline Response respond(Session& s, const ResponseOptions& o, bool capture_logits = false) {
    Response r;
    s.set_capture_logits(capture_logits);
    r.status = s.generate(o, [&](const Event& e) {
        switch (e.kind) {
            case EventKind::kTextDelta:
                r.text += e.text;
                if (capture_logits && e.token >= 0) r.logits.push_back(s.captured_logits());
                break;
            case EventKind::kAudio:
                r.pcm.insert(r.pcm.end(), e.pcm.begin(), e.pcm.end());
                break;
            case EventKind::kEndOfTurn:
                r.reason = e.reason;
                r.steps = e.stats.steps;
                break;
            default:
                break;
        }
        return true;
    });
    r.items = s.last_response();
    return r;
}

}  // namespace voxrt::test

namespace voxrt::test {

// ||a - b|| / ||b||, or infinity for different lengths.
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return 1.0 / 0.0;
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        num += d * d;
        den += static_cast<double>(b[i]) * b[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace voxrt::test
