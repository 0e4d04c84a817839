// voxrt/tasks.h — the four things LFM2.5-Audio does, defined once: each task's system prompt,
// generation mode and sampling defaults (those of the official liquid-audio examples). The command
// line, the benchmarks and the tests all take them from here.
//
//   task         system prompt                                   mode         input  output
//   kSpeechChat  "Respond with interleaved text and audio."      interleaved  audio  text + audio
//   kAsr         "Perform ASR."                                  sequential   audio  text
//   kTts         "Perform TTS. Use the US female voice." (voice) sequential   text   audio
//   kTextChat    (none)                                          sequential   text   text
//
// Pure functions of their arguments; thread-safe; no allocation beyond the returned strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace voxrt {

enum class Task : uint8_t { kSpeechChat, kAsr, kTts, kTextChat };
enum class Role : uint8_t { kSystem, kUser, kAssistant };
enum class Voice : uint8_t { kUsMale, kUsFemale, kUkMale, kUkFemale };

// How the model alternates text and audio in a response.
enum class Mode : uint8_t {
    kInterleaved,  // speech chat: 6 text tokens, 12 audio frames, 6 text tokens, … until the text
                   // is done, then audio until end-of-audio
    kSequential,   // ASR / TTS / text chat: text, and audio after <|audio_start|> if the model
                   // switches (TTS), until <|im_end|>
};

struct Sampling {
    float text_temperature = 0;  // <= 0: greedy
    int text_top_k = 0;          // 0: no top-k
    float audio_temperature = 1.0f;
    int audio_top_k = 4;
};

struct TaskDefaults {
    std::string system_prompt;  // empty: no system turn
    Mode mode = Mode::kSequential;
    Sampling sampling;
    int max_steps = 512;     // text tokens + audio frames of one response
    bool audio_in = false;   // the user turn is audio
    bool audio_out = false;  // the response carries audio (the detokenizer is needed)
};

// "speech-chat" | "asr" | "tts" | "text-chat".
const char* task_name(Task task);
std::optional<Task> parse_task(std::string_view name);

// "us-male" | "us-female" | "uk-male" | "uk-female".
const char* voice_name(Voice voice);
std::optional<Voice> parse_voice(std::string_view name);

// The defaults of `task`; `voice` only changes kTts's system prompt.
TaskDefaults task_defaults(Task task, Voice voice = Voice::kUsFemale);

}  // namespace voxrt
