// TurnState, the modality state machine of a response, without a model: the sequences of text and
// audio steps liquid-audio's generate_interleaved / generate_sequential produce.
#include <gtest/gtest.h>

#include <string>

#include "runtime/turn_state.h"

namespace voxrt::runtime {
namespace {

constexpr int32_t kImEnd = 7, kTextEnd = 130, kAudioStart = 128, kWord = 500;

TurnState::Config interleaved(int max_steps) {
    TurnState::Config c;
    c.interleaved = true;
    c.n_text = 6;
    c.n_audio = 12;
    c.max_steps = max_steps;
    c.im_end = kImEnd;
    c.text_end = kTextEnd;
    c.audio_start = kAudioStart;
    return c;
}

TurnState::Config sequential(int max_steps) {
    TurnState::Config c = interleaved(max_steps);
    c.interleaved = false;
    return c;
}

// Drives the machine with ordinary choices (a word token, a normal frame) and returns the kinds of
// the steps taken, "t" or "a".
std::string run_plain(TurnState& s, int n) {
    std::string kinds;
    for (int i = 0; i < n && !s.done(); ++i) {
        if (s.text_next()) {
            kinds += 't';
            s.on_text(kWord);
        } else {
            kinds += 'a';
            s.on_frame(false);
        }
    }
    return kinds;
}

TEST(TurnState, InterleavedAlternatesSixTextTwelveAudio) {
    TurnState s(interleaved(100));
    const std::string kinds = run_plain(s, 40);
    EXPECT_EQ(kinds, std::string(6, 't') + std::string(12, 'a') + std::string(6, 't') +
                         std::string(12, 'a') + std::string(4, 't'));
    EXPECT_FALSE(s.done());
    EXPECT_EQ(s.steps(), 40);
}

TEST(TurnState, InterleavedTextEndSwitchesToAudioForGood) {
    TurnState s(interleaved(100));
    s.on_text(kWord);
    s.on_text(kWord);
    const auto o = s.on_text(kTextEnd);
    EXPECT_TRUE(o.keep);
    EXPECT_FALSE(o.end);
    // Audio only from now on: no switch back after 12 frames.
    EXPECT_EQ(run_plain(s, 30), std::string(30, 'a'));
}

TEST(TurnState, InterleavedEndOfAudioReturnsToText) {
    TurnState s(interleaved(100));
    s.on_text(kTextEnd);
    EXPECT_FALSE(s.text_next());
    s.on_frame(false);
    s.on_frame(true);  // end-of-audio
    EXPECT_TRUE(s.text_next());
    const auto o = s.on_text(kImEnd);
    EXPECT_FALSE(o.keep);  // <|im_end|> is not part of an interleaved response
    EXPECT_TRUE(o.end);
    EXPECT_TRUE(s.done());
    EXPECT_EQ(s.end(), TurnEnd::kEndToken);
    EXPECT_EQ(s.steps(), 3);  // nor counted
}

TEST(TurnState, SequentialTextThenAudioAfterAudioStart) {
    TurnState s(sequential(100));
    EXPECT_EQ(run_plain(s, 10), std::string(10, 't'));
    s.on_text(kAudioStart);
    EXPECT_EQ(run_plain(s, 20), std::string(20, 'a'));
    s.on_frame(true);
    EXPECT_TRUE(s.text_next());
    const auto o = s.on_text(kImEnd);
    EXPECT_TRUE(o.keep);  // part of a sequential response
    EXPECT_TRUE(o.end);
    EXPECT_EQ(s.end(), TurnEnd::kEndToken);
    EXPECT_EQ(s.steps(), 33);
}

TEST(TurnState, MaxStepsEndsTheResponse) {
    TurnState s(interleaved(7));
    EXPECT_EQ(run_plain(s, 100), std::string(6, 't') + "a");
    EXPECT_TRUE(s.done());
    EXPECT_EQ(s.end(), TurnEnd::kMaxSteps);
    EXPECT_EQ(s.steps(), 7);

    TurnState z(sequential(0));
    EXPECT_TRUE(z.done());
    EXPECT_EQ(z.end(), TurnEnd::kMaxSteps);
}

TEST(TurnState, LastStepEndTokenWinsOverMaxSteps) {
    TurnState s(sequential(3));
    s.on_text(kWord);
    s.on_text(kWord);
    s.on_text(kImEnd);
    EXPECT_EQ(s.end(), TurnEnd::kEndToken);
}

TEST(TurnState, CancelEndsOnlyARunningResponse) {
    TurnState s(sequential(10));
    s.on_text(kWord);
    s.cancel();
    EXPECT_TRUE(s.done());
    EXPECT_EQ(s.end(), TurnEnd::kCancelled);
    TurnState d(sequential(1));
    d.on_text(kWord);
    d.cancel();
    EXPECT_EQ(d.end(), TurnEnd::kMaxSteps);
}

TEST(TurnState, StartResets) {
    TurnState s(interleaved(5));
    run_plain(s, 5);
    EXPECT_TRUE(s.done());
    s.start(interleaved(5));
    EXPECT_FALSE(s.done());
    EXPECT_EQ(s.steps(), 0);
    EXPECT_TRUE(s.text_next());
}

}  // namespace
}  // namespace voxrt::runtime
