// Turn-taking decisions (include/voxrt/turn_taking.h): the VAD's events plus the answer's playback
// position become user-turn boundaries, barge-in and truncation.
#include "voxrt/turn_taking.h"

#include <algorithm>
#include <cmath>

namespace voxrt {

TurnTaking::TurnTaking(TurnTakingOptions opt, int sample_rate)
    : opt_(opt), rate_(std::max(1, sample_rate)), vad_(opt.vad, std::max(1, sample_rate)) {}

void TurnTaking::push_input(const float* x, size_t n, std::vector<TurnDecision>& out) {
    turn_.clear();
    buf_.insert(buf_.end(), x, x + n);
    samples_ += int64_t(n);
    vad_events_.clear();
    vad_.push(x, n, vad_events_);
    for (const VadEvent& e : vad_events_) {
        if (e.kind == VadEvent::kSpeechStarted) {
            // the turn's audio starts at e.ms (prefix padding included): drop what came before
            const int64_t drop =
                std::clamp<int64_t>(e.ms * rate_ / 1000 - buf_start_, 0, int64_t(buf_.size()));
            buf_.erase(buf_.begin(), buf_.begin() + drop);
            buf_start_ += drop;
            // (after a turn cut at max_turn_ms, not before that cut)
            const int64_t start_ms = std::max(e.ms, buf_start_ * 1000 / rate_);
            out.push_back({TurnDecision::kUserStarted, start_ms, false});
            on_speech_started(out);
        } else {
            end_turn(e.ms, out);
        }
    }
    if (vad_.in_speech()) {
        // a turn that runs too long is ended here; speech that goes on starts a new one
        if ((samples_ - buf_start_) * 1000 / rate_ >= opt_.max_turn_ms) {
            end_turn(samples_ * 1000 / rate_, out);
            vad_.reset_speech();
        }
    } else {
        // between turns keep only what the next turn's prefix padding may need
        const int64_t keep = int64_t(opt_.vad.prefix_padding_ms + 100) * rate_ / 1000;
        if (int64_t(buf_.size()) > 2 * keep) {
            const int64_t drop = int64_t(buf_.size()) - keep;
            buf_.erase(buf_.begin(), buf_.begin() + drop);
            buf_start_ += drop;
        }
    }
}

void TurnTaking::end_turn(int64_t at_ms, std::vector<TurnDecision>& out) {
    const int64_t take =
        std::clamp<int64_t>(at_ms * rate_ / 1000 - buf_start_, 0, int64_t(buf_.size()));
    turn_.assign(buf_.begin(), buf_.begin() + take);
    buf_.erase(buf_.begin(), buf_.begin() + take);
    buf_start_ += take;
    out.push_back({TurnDecision::kUserEnded, at_ms, false});
}

void TurnTaking::on_speech_started(std::vector<TurnDecision>& out) {
    if (!opt_.interrupt_response) return;
    const auto played = int64_t(std::floor(played_ms_));
    if (generating_) {
        // the response ends at its next step; how much it generated is known only then
        if (barge_ms_ >= 0) return;  // already interrupted
        barge_ms_ = double(played);
        out.push_back({TurnDecision::kBargeIn, played, true});
        return;
    }
    // generated to the end, but perhaps still playing
    if (should_truncate(double(played), generated_ms_)) {
        out.push_back({TurnDecision::kBargeIn, played, false});
        out.push_back({TurnDecision::kTruncate, played, false});
        generated_ms_ = played_ms_ = double(played);
    }
}

void TurnTaking::answer_started() {
    generating_ = true;
    generated_ms_ = played_ms_ = 0;
    barge_ms_ = -1;
}

void TurnTaking::answer_progress(double generated_ms, double played_ms) {
    generated_ms_ = std::max(0.0, generated_ms);
    played_ms_ = std::clamp(played_ms, 0.0, generated_ms_);
}

void TurnTaking::answer_finished(std::vector<TurnDecision>& out) {
    if (!generating_) return;
    generating_ = false;
    if (barge_ms_ < 0) return;
    const double cut = barge_ms_;
    barge_ms_ = -1;
    if (should_truncate(cut, generated_ms_))
        out.push_back({TurnDecision::kTruncate, int64_t(cut), false});
    generated_ms_ = played_ms_ = std::min(cut, generated_ms_);
}

}  // namespace voxrt
