// The tasks' prompts and defaults: the one place they are written (liquid-audio's examples).
#include "voxrt/tasks.h"

#include "voxrt/session.h"
#include "voxrt/voxrt.h"

namespace voxrt {

const char* task_name(Task task) {
    switch (task) {
        case Task::kSpeechChat:
            return "speech-chat";
        case Task::kAsr:
            return "asr";
        case Task::kTts:
            return "tts";
        case Task::kTextChat:
            return "text-chat";
    }
    return "?";
}

std::optional<Task> parse_task(std::string_view name) {
    for (Task t : {Task::kSpeechChat, Task::kAsr, Task::kTts, Task::kTextChat})
        if (name == task_name(t)) return t;
    return std::nullopt;
}

const char* voice_name(Voice voice) {
    switch (voice) {
        case Voice::kUsMale:
            return "us-male";
        case Voice::kUsFemale:
            return "us-female";
        case Voice::kUkMale:
            return "uk-male";
        case Voice::kUkFemale:
            return "uk-female";
    }
    return "?";
}

std::optional<Voice> parse_voice(std::string_view name) {
    for (Voice v : {Voice::kUsMale, Voice::kUsFemale, Voice::kUkMale, Voice::kUkFemale})
        if (name == voice_name(v)) return v;
    return std::nullopt;
}

TaskDefaults task_defaults(Task task, Voice voice) {
    TaskDefaults d;
    switch (task) {
        case Task::kSpeechChat:
            d.system_prompt = "Respond with interleaved text and audio.";
            d.mode = Mode::kInterleaved;
            d.sampling = Sampling{0.0f, 0, 1.0f, 4};
            d.audio_in = d.audio_out = true;
            break;
        case Task::kAsr:
            d.system_prompt = "Perform ASR.";
            d.mode = Mode::kSequential;
            d.sampling = Sampling{0.0f, 0, 0.0f, 0};
            d.audio_in = true;
            break;
        case Task::kTts: {
            const bool us = voice == Voice::kUsMale || voice == Voice::kUsFemale;
            const bool female = voice == Voice::kUsFemale || voice == Voice::kUkFemale;
            d.system_prompt = std::string("Perform TTS. Use the ") + (us ? "US" : "UK") + " " +
                              (female ? "female" : "male") + " voice.";
            d.mode = Mode::kSequential;
            d.sampling = Sampling{0.0f, 0, 0.8f, 64};
            d.audio_out = true;
            break;
        }
        case Task::kTextChat:
            d.mode = Mode::kSequential;
            d.sampling = Sampling{0.0f, 0, 0.0f, 0};
            break;
    }
    return d;
}

ResponseOptions ResponseOptions::for_task(Task task) {
    const TaskDefaults d = task_defaults(task);
    ResponseOptions o;
    o.mode = d.mode;
    o.sampling = d.sampling;
    o.max_steps = d.max_steps;
    o.audio = d.audio_out;
    return o;
}

const char* end_reason_name(EndReason reason) {
    switch (reason) {
        case EndReason::kEndToken:
            return "end";
        case EndReason::kMaxSteps:
            return "max-steps";
        case EndReason::kCancelled:
            return "cancelled";
    }
    return "?";
}

const char* version() {
    return "0.1.0";
}

}  // namespace voxrt
