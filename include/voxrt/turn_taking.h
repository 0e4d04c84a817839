// voxrt/turn_taking.h — the rules of a spoken conversation, decided from the microphone's audio and
// the answer's playback: when the user's turn starts and ends, and when talking over the answer
// stops it (barge-in). `voxrt talk` drives a Session with it; the server's Realtime endpoint takes
// its barge-in rule (should_truncate) from here.
//
//   TurnTaking tt({}, 16000);
//   std::vector<TurnDecision> d;
//   // every time audio arrives (and before it, the answer's progress):
//   tt.answer_progress(generated_ms, played_ms);
//   tt.push_input(pcm, n, d);
//   for (auto& x : d) switch (x.kind) {
//       case kUserStarted: …                                    // show "listening"
//       case kBargeIn:     stop playback; if (x.cancel) session->cancel();
//       case kTruncate:    session->truncate_to_audio_ms(x.at_ms);   // between responses
//       case kUserEnded:   add tt.turn_audio() as the user turn; start_response; answer_started()
//   }
//   // when the response is over (its kEndOfTurn): tt.answer_finished(d), then handle d
//
// The rules:
//   - A user turn starts when the VAD (voxrt/vad.h) hears speech and ends silence_duration_ms after
//     the speech stops. Its audio runs from prefix_padding_ms before the first speech frame to the
//     moment the end was decided (the silence included), as the server's input buffer does.
//   - Barge-in (interrupt_response): speech that starts while an answer is still being generated,
//     or is generated but not yet all played, stops it. The conversation then keeps only what the
//     listener heard: kTruncate at the played position, and only when less was played than was
//     generated (should_truncate). When the answer is still generating, the cut waits for the
//     response to end (answer_finished), since the session truncates only between responses and
//     the generated length is known only then. Speech over an answer that was played to the end
//     changes nothing.
//   - A user turn that ends while an answer is still being cancelled is reported at once
//     (kUserEnded); the caller adds it after the response is over, after any kTruncate.
//
// Units: times are milliseconds of input audio since the stream began (the VAD's clock); the
// answer's generated/played lengths are milliseconds of the answer's audio. Threads: thread-
// compatible, no threads of its own, no clock: everything it knows comes through its calls, which
// makes it deterministic and testable. Cost: the VAD's, plus a copy of the current turn's audio.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "voxrt/vad.h"

namespace voxrt {

struct TurnTakingOptions {
    VadOptions vad;
    bool interrupt_response = true;  // speech over an answer stops it (false: the answer plays on)
    // A longer user turn is ended here (kUserEnded) as if the speaker had paused; if the speech
    // goes on, it starts a new turn (which interrupts the answer to the first). > 0.
    int max_turn_ms = 60000;
};

struct TurnDecision {
    enum Kind : uint8_t {
        kUserStarted,  // at_ms: where the turn's audio starts (prefix padding included)
        kUserEnded,    // at_ms: when the end was decided; the audio: TurnTaking::turn_audio()
        kBargeIn,      // stop playing the answer now; cancel: it is still generating
        kTruncate,     // cut the last answer to its first at_ms of audio (what was played)
    } kind;
    int64_t at_ms = 0;    // kUserStarted, kUserEnded: input time; kBargeIn: played ms; kTruncate
    bool cancel = false;  // kBargeIn: the answer is still generating (Session::cancel())
};

class TurnTaking {
public:
    // `sample_rate`: of the input audio (Hz, > 0).
    TurnTaking(TurnTakingOptions opt, int sample_rate);

    // The barge-in rule, the one place it is written: an interrupted answer is cut back to what
    // was played only when less was played than was generated.
    static bool should_truncate(double played_ms, double generated_ms) {
        return played_ms < generated_ms;
    }

    // Feeds input audio (mono, [-1, 1]); appends the decisions it leads to, in order.
    void push_input(const float* x, size_t n, std::vector<TurnDecision>& out);
    // After kUserEnded (until the next push_input): the user turn's samples, at the input rate.
    const std::vector<float>& turn_audio() const { return turn_; }

    // The answer's life: a response was started (for the turn that just ended) …
    void answer_started();
    // … it has produced generated_ms of audio, of which the listener has heard played_ms (call
    // before push_input, as often as convenient; played_ms <= generated_ms) …
    void answer_progress(double generated_ms, double played_ms);
    // … the response is over (its kEndOfTurn). Appends kTruncate if a barge-in during generation
    // cut the answer short of what it generated.
    void answer_finished(std::vector<TurnDecision>& out);

    bool in_speech() const { return vad_.in_speech(); }
    bool answering() const { return generating_; }  // between answer_started and answer_finished
    int64_t position_ms() const { return vad_.position_ms(); }
    const TurnTakingOptions& options() const { return opt_; }

private:
    void on_speech_started(std::vector<TurnDecision>& out);
    void end_turn(int64_t at_ms, std::vector<TurnDecision>& out);

    TurnTakingOptions opt_;
    int rate_;
    Vad vad_;
    std::vector<VadEvent> vad_events_;  // scratch
    std::vector<float> buf_;            // input since the turn's start (or the recent pre-roll)
    int64_t buf_start_ = 0;             // input sample index of buf_[0]
    int64_t samples_ = 0;               // input samples pushed
    std::vector<float> turn_;           // the last ended turn's audio
    // the current (or last) answer
    bool generating_ = false;
    double generated_ms_ = 0;
    double played_ms_ = 0;
    double barge_ms_ = -1;  // played position at a barge-in during generation (-1: none)
};

}  // namespace voxrt
