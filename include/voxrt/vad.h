// voxrt/vad.h — voice activity detection on a live input stream: when a speaker starts and stops.
// `voxrt talk` and the server's Realtime turn detection (server_vad) both use it, with OpenAI's
// three knobs:
//
//   threshold (0..1, default 0.5): how far above the background a 10 ms frame must be to count as
//     speech. A frame's score is (level − noise floor − 3 dB) / 24 dB, clamped to 0..1, so 0.5
//     means 15 dB above the floor and 1.0 means 27 dB. Frames quieter than −55 dBFS never count.
//     The noise floor starts at the level of the stream's first frame and then follows the quietest
//     recent frames: it drops at once to a quieter frame and rises by 0.05 dB per frame (5 dB/s)
//     otherwise, within −75 .. −25 dBFS. (A stream that starts in the middle of speech therefore
//     starts its first turn at the first pause.)
//   prefix_padding_ms (default 300): kSpeechStarted's time is this much before the first speech
//     frame (not before the start of the stream); the turn's audio starts there.
//   silence_duration_ms (default 500): speech stops after this long without a speech frame;
//     kSpeechStopped's time is the moment that is decided (the silence included), so the speech
//     itself ended silence_duration_ms before it.
//
// Speech starts after 60 ms of consecutive speech frames (clicks and single loud frames do not
// start a turn); the start time is measured from the first of them. Times are milliseconds of
// audio since the stream began (10 ms resolution). The result does not depend on how the stream
// is cut into push() calls.
//
// Threads: thread-compatible (one thread at a time per Vad; no shared state). Cost: one pass over
// the samples; no allocation after the first push().
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace voxrt {

struct VadOptions {
    float threshold = 0.5f;       // 0..1 (see above)
    int prefix_padding_ms = 300;  // >= 0
    int silence_duration_ms = 500;
};

struct VadEvent {
    enum Kind : uint8_t { kSpeechStarted, kSpeechStopped } kind;
    int64_t ms;  // kSpeechStarted: the turn's audio start; kSpeechStopped: when the end was decided
};

class Vad {
public:
    // `sample_rate`: of the samples push() gets, Hz (> 0).
    Vad(VadOptions opt, int sample_rate);
    // Takes effect from the next frame.
    void set_options(VadOptions opt) { opt_ = opt; }
    const VadOptions& options() const { return opt_; }
    // Feeds mono samples ([-1, 1]; non-finite samples count as 0); appends what was detected.
    void push(const float* x, size_t n, std::vector<VadEvent>& out);
    bool in_speech() const { return in_speech_; }
    int64_t position_ms() const { return frames_ * 10; }  // audio pushed, in whole frames
    float noise_floor_db() const { return floor_db_; }
    // Forgets the speech state (not the position or the noise floor), e.g. after a buffer clear.
    void reset_speech() {
        in_speech_ = false;
        run_ = 0;
    }

private:
    void frame(double energy, std::vector<VadEvent>& out);

    VadOptions opt_;
    int frame_len_;               // samples per 10 ms frame
    std::vector<float> pending_;  // [< frame_len_] samples of the frame being filled
    int64_t frames_ = 0;
    float floor_db_ = -60.0f;
    bool in_speech_ = false;
    int run_ = 0;  // consecutive speech frames (not in speech) or silent frames (in speech)
};

}  // namespace voxrt
