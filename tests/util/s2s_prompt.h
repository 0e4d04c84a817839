// The speech-to-speech prompt the end-to-end tests share (liquid-audio's interleaved example):
// the system turn, one user turn (audio or text), and the assistant turn left open for generate().
#pragma once

#include <string>
#include <vector>

#include <voxrt/tasks.h>

#include "core/status.h"
#include "runtime/session.h"

namespace voxrt::test {

// The speech-chat system prompt, as the library defines it.
inline const std::string kS2sSystemPrompt = task_defaults(Task::kSpeechChat).system_prompt;

inline Status open_s2s_turn(runtime::Session& s, const std::vector<float>* audio, int rate,
                            const std::string& user_text) {
    VOXRT_RETURN_IF_ERROR(s.new_turn("system"));
    VOXRT_RETURN_IF_ERROR(s.add_text(kS2sSystemPrompt));
    VOXRT_RETURN_IF_ERROR(s.end_turn());
    VOXRT_RETURN_IF_ERROR(s.new_turn("user"));
    if (audio) {
        VOXRT_RETURN_IF_ERROR(s.add_audio(audio->data(), audio->size(), rate));
    } else {
        VOXRT_RETURN_IF_ERROR(s.add_text(user_text));
    }
    VOXRT_RETURN_IF_ERROR(s.end_turn());
    return s.new_turn("assistant");
}
// The user turn holds audio (mono samples at `rate` Hz).
inline Status open_s2s_turn(runtime::Session& s, const std::vector<float>& audio, int rate) {
    return open_s2s_turn(s, &audio, rate, "");
}
// The user turn holds text.
inline Status open_s2s_turn(runtime::Session& s, const std::string& user_text) {
    return open_s2s_turn(s, nullptr, 0, user_text);
}

}  // namespace voxrt::test
