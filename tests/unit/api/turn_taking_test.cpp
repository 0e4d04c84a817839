// Turn-taking decisions (include/voxrt/turn_taking.h) on synthetic input: tone bursts 40 dB above a
// −70 dBFS noise floor stand for speech; the answer's generated/played lengths are set by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <voxrt/turn_taking.h>

using namespace voxrt;

namespace {

constexpr int kRate = 16000;

// Builds a signal: noise, with tone bursts where speech should be.
struct Signal {
    std::vector<float> x;
    std::mt19937 rng{7};
    void silence(int ms) { add(ms, false); }
    void speech(int ms) { add(ms, true); }
    void add(int ms, bool tone) {
        std::normal_distribution<float> g(0.0f, float(std::pow(10.0, -70 / 20.0)));
        const size_t n = size_t(ms) * kRate / 1000;
        for (size_t i = 0; i < n; ++i) {
            const size_t k = x.size();
            float v = g(rng);
            if (tone) v += 0.2f * float(std::sin(2 * M_PI * 300 * double(k) / kRate));
            x.push_back(v);
        }
    }
};

// Feeds x in chunks; each push first reports `progress` (generated, played) if set.
std::vector<TurnDecision> feed(TurnTaking& tt, const std::vector<float>& x, size_t chunk = 320,
                               std::vector<size_t>* turn_sizes = nullptr) {
    std::vector<TurnDecision> all, d;
    for (size_t i = 0; i < x.size(); i += chunk) {
        d.clear();
        tt.push_input(x.data() + i, std::min(chunk, x.size() - i), d);
        for (auto& e : d) {
            if (e.kind == TurnDecision::kUserEnded && turn_sizes)
                turn_sizes->push_back(tt.turn_audio().size());
            all.push_back(e);
        }
    }
    return all;
}

std::vector<TurnDecision::Kind> kinds(const std::vector<TurnDecision>& d) {
    std::vector<TurnDecision::Kind> k;
    for (auto& e : d) k.push_back(e.kind);
    return k;
}

using K = TurnDecision;

}  // namespace

TEST(TurnTaking, TwoQuestionsAreTwoTurns) {
    Signal s;
    s.silence(1000);
    s.speech(1200);
    s.silence(1500);
    s.speech(800);
    s.silence(1000);
    TurnTaking tt({}, kRate);  // 0.5, 300 ms padding, 500 ms silence
    std::vector<size_t> sizes;
    auto d = feed(tt, s.x, 320, &sizes);
    ASSERT_EQ(kinds(d), (std::vector<TurnDecision::Kind>{K::kUserStarted, K::kUserEnded,
                                                         K::kUserStarted, K::kUserEnded}));
    EXPECT_NEAR(double(d[0].at_ms), 1000 - 300, 20);
    EXPECT_NEAR(double(d[1].at_ms), 2200 + 500, 20);
    EXPECT_NEAR(double(d[2].at_ms), 3700 - 300, 20);
    EXPECT_NEAR(double(d[3].at_ms), 4500 + 500, 20);
    // each turn's audio runs from its start (prefix padding included) to the end decision
    ASSERT_EQ(sizes.size(), 2u);
    EXPECT_EQ(int64_t(sizes[0]), (d[1].at_ms - d[0].at_ms) * kRate / 1000);
    EXPECT_EQ(int64_t(sizes[1]), (d[3].at_ms - d[2].at_ms) * kRate / 1000);
    // no barge-in without an answer
    TurnTaking tt2({}, kRate);
    std::vector<size_t> sizes2;
    auto d2 = feed(tt2, s.x, 77, &sizes2);  // chunking does not matter
    ASSERT_EQ(d2.size(), d.size());
    for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d2[i].at_ms, d[i].at_ms);
    EXPECT_EQ(sizes2, sizes);
}

TEST(TurnTaking, BargeInWhileGeneratingCancelsThenTruncatesToWhatWasPlayed) {
    Signal s;
    s.silence(500);
    s.speech(400);
    s.silence(300);
    TurnTaking tt({}, kRate);
    tt.answer_started();
    tt.answer_progress(2000, 800);
    auto d = feed(tt, s.x);
    ASSERT_EQ(kinds(d), (std::vector<TurnDecision::Kind>{K::kUserStarted, K::kBargeIn}));
    EXPECT_TRUE(d[1].cancel);
    EXPECT_EQ(d[1].at_ms, 800);
    // the response ends one step later, with more audio generated: cut at what was played
    tt.answer_progress(2080, 800);
    std::vector<TurnDecision> f;
    tt.answer_finished(f);
    ASSERT_EQ(kinds(f), (std::vector<TurnDecision::Kind>{K::kTruncate}));
    EXPECT_EQ(f[0].at_ms, 800);
    EXPECT_FALSE(tt.answering());
    // the user's turn still ends normally
    Signal t;
    t.silence(800);
    auto e = feed(tt, t.x);
    EXPECT_EQ(kinds(e), (std::vector<TurnDecision::Kind>{K::kUserEnded}));
}

TEST(TurnTaking, NoTruncationWhenEverythingGeneratedWasPlayed) {
    Signal s;
    s.silence(500);
    s.speech(400);
    TurnTaking tt({}, kRate);
    tt.answer_started();
    tt.answer_progress(640, 640);
    auto d = feed(tt, s.x);
    ASSERT_EQ(kinds(d), (std::vector<TurnDecision::Kind>{K::kUserStarted, K::kBargeIn}));
    std::vector<TurnDecision> f;
    tt.answer_finished(f);  // nothing more was generated
    EXPECT_TRUE(f.empty());
}

TEST(TurnTaking, BargeInWhileStillPlayingTruncatesAtOnce) {
    Signal s;
    s.silence(500);
    s.speech(400);
    s.silence(800);
    s.speech(400);
    TurnTaking tt({}, kRate);
    tt.answer_started();
    tt.answer_progress(3000, 100);
    std::vector<TurnDecision> f;
    tt.answer_finished(f);  // generated to the end, not interrupted
    EXPECT_TRUE(f.empty());
    tt.answer_progress(3000, 1234.7);
    auto d = feed(tt, s.x);
    // one barge-in and one cut, at the played position (whole ms); the second turn changes nothing
    ASSERT_EQ(kinds(d), (std::vector<TurnDecision::Kind>{K::kUserStarted, K::kBargeIn, K::kTruncate,
                                                         K::kUserEnded, K::kUserStarted}));
    EXPECT_FALSE(d[1].cancel);
    EXPECT_EQ(d[1].at_ms, 1234);
    EXPECT_EQ(d[2].at_ms, 1234);
}

TEST(TurnTaking, SpeechAfterTheAnswerWasHeardIsJustATurn) {
    Signal s;
    s.silence(500);
    s.speech(400);
    TurnTaking tt({}, kRate);
    tt.answer_started();
    tt.answer_progress(1500, 200);
    std::vector<TurnDecision> f;
    tt.answer_finished(f);
    tt.answer_progress(1500, 1500);
    auto d = feed(tt, s.x);
    EXPECT_EQ(kinds(d), (std::vector<TurnDecision::Kind>{K::kUserStarted}));
}

TEST(TurnTaking, InterruptResponseOffLetsTheAnswerPlayOn) {
    Signal s;
    s.silence(500);
    s.speech(400);
    TurnTakingOptions o;
    o.interrupt_response = false;
    TurnTaking tt(o, kRate);
    tt.answer_started();
    tt.answer_progress(2000, 500);
    auto d = feed(tt, s.x);
    EXPECT_EQ(kinds(d), (std::vector<TurnDecision::Kind>{K::kUserStarted}));
    std::vector<TurnDecision> f;
    tt.answer_finished(f);
    EXPECT_TRUE(f.empty());
}

TEST(TurnTaking, TheRuleIsPlayedLessThanGenerated) {
    EXPECT_TRUE(TurnTaking::should_truncate(100, 101));
    EXPECT_FALSE(TurnTaking::should_truncate(101, 101));
    EXPECT_FALSE(TurnTaking::should_truncate(0, 0));
}

TEST(TurnTaking, LongTurnsAreCutAtMaxTurnMs) {
    Signal s;
    s.silence(500);
    s.speech(2500);
    s.silence(800);
    TurnTakingOptions o;
    o.max_turn_ms = 1000;
    TurnTaking tt(o, kRate);
    std::vector<size_t> sizes;
    auto d = feed(tt, s.x, 320, &sizes);
    ASSERT_GE(d.size(), 4u);
    EXPECT_EQ(d[0].kind, K::kUserStarted);
    EXPECT_EQ(d[1].kind, K::kUserEnded);
    EXPECT_NEAR(double(d[1].at_ms - d[0].at_ms), 1000, 20);
    EXPECT_NEAR(double(sizes[0]), 1.0 * kRate, 0.02 * kRate);
    // the speech goes on: a new turn, which ends with the speech
    EXPECT_EQ(d[2].kind, K::kUserStarted);
    EXPECT_EQ(d.back().kind, K::kUserEnded);
    for (auto sz : sizes) EXPECT_LE(double(sz), 1.02 * kRate);
}
