// TurnState: the modality state machine of one response — what the next generation step produces
// (a text token or an audio frame) and when the response ends. No model, no device: it sees only
// the choices the steps made, so it is unit-tested on its own (tests/unit/runtime).
//
// Interleaved (liquid-audio generate_interleaved, speech chat): n_text text steps, then n_audio
// audio steps, alternating; <|text_end|> ends the text (audio only from then on), <|im_end|> ends
// the response (and is not part of it), an end-of-audio frame switches back to text.
// Sequential (generate_sequential: ASR, TTS, text chat): text until <|audio_start|>, then audio; an
// end-of-audio frame switches back to text; <|im_end|> is part of the response and ends it.
// Either way the response ends after max_steps steps.
#pragma once

#include <cstdint>

namespace voxrt::runtime {

enum class TurnEnd : uint8_t {
    kNone,       // still running
    kEndToken,   // the model ended the turn
    kMaxSteps,   // max_steps steps
    kCancelled,  // cancel()
};

class TurnState {
public:
    struct Config {
        bool interleaved = true;
        int n_text = 6;    // interleaved: text steps per run
        int n_audio = 12;  // interleaved: audio steps per run
        int max_steps = 512;
        int32_t im_end = 7;
        int32_t text_end = 130;
        int32_t audio_start = 128;
    };
    struct Outcome {
        bool keep = true;  // the choice is part of the response (yield it)
        bool end = false;  // the response is over after this step
    };

    explicit TurnState(const Config& config) { start(config); }
    TurnState() = default;
    void start(const Config& config);

    bool done() const { return end_ != TurnEnd::kNone; }
    TurnEnd end() const { return end_; }
    // Steps whose choice was kept (an interleaved <|im_end|> is not).
    int steps() const { return steps_; }
    // What the next step produces (valid while !done()).
    bool text_next() const { return text_mode_; }

    // Records the step's choice. Call exactly one of them per step, as text_next() said.
    Outcome on_text(int32_t token);
    Outcome on_frame(bool end_of_audio);
    // Ends the response now (kCancelled), unless it is already over.
    void cancel();

private:
    Outcome finish_step(Outcome o);

    Config cfg_;
    bool text_mode_ = true;
    int left_ = 0;
    bool text_done_ = false;
    int steps_ = 0;
    TurnEnd end_ = TurnEnd::kNone;
};

}  // namespace voxrt::runtime
