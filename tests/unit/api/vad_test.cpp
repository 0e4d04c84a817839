// Voice activity detection on the committed test speech (espeak-ng with a −66 dBFS noise floor) and
// on synthetic signals: OpenAI's threshold / prefix_padding_ms / silence_duration_ms semantics
// (include/voxrt/vad.h).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include <voxrt/audio_file.h>
#include <voxrt/vad.h>

#include "util/test_paths.h"

using namespace voxrt;

namespace {

struct Audio {
    std::vector<float> pcm;
    int sample_rate = 0;
};

Audio load(const std::string& name) {
    auto a = read_wav_file(voxrt::test::data_dir() + "/audio/" + name);
    EXPECT_TRUE(a.is_ok()) << name;
    if (!a.is_ok()) return {};
    return {std::move(a->samples), a->sample_rate};
}

std::vector<VadEvent> run(const std::vector<float>& x, int rate, VadOptions opt,
                          size_t chunk = 480) {
    Vad vad(opt, rate);
    std::vector<VadEvent> ev;
    for (size_t i = 0; i < x.size(); i += chunk)
        vad.push(x.data() + i, std::min(chunk, x.size() - i), ev);
    return ev;
}

std::vector<float> noise(size_t n, double dbfs, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g(0.0f, float(std::pow(10.0, dbfs / 20.0)));
    std::vector<float> x(n);
    for (auto& v : x) v = g(rng);
    return x;
}

// First and last sample above −40 dBFS (10 ms frames): where the speech is.
std::pair<int64_t, int64_t> speech_span_ms(const std::vector<float>& x, int rate) {
    int64_t first = -1, last = -1;
    const int f = rate / 100;
    for (size_t i = 0; i + f <= x.size(); i += f) {
        double e = 0;
        for (int k = 0; k < f; ++k) e += double(x[i + k]) * x[i + k];
        if (10 * std::log10(e / f + 1e-12) > -40) {
            if (first < 0) first = int64_t(i / f) * 10;
            last = int64_t(i / f) * 10 + 10;
        }
    }
    return {first, last};
}

}  // namespace

TEST(Vad, SilenceAndNoiseNeverStartATurn) {
    Audio s = load("silence.wav");
    EXPECT_TRUE(run(s.pcm, s.sample_rate, {}).empty());
    EXPECT_TRUE(run(noise(24000 * 5, -50, 1), 24000, {}).empty());
}

TEST(Vad, OneTurnOnQuestionWav) {
    Audio q = load("question.wav");
    const int rate = q.sample_rate;
    // one second of the recording's own noise floor before and after
    std::vector<float> x = noise(rate, -66, 2);
    x.insert(x.end(), q.pcm.begin(), q.pcm.end());
    auto tail = noise(rate * 2, -66, 3);
    x.insert(x.end(), tail.begin(), tail.end());
    auto [first, last] = speech_span_ms(x, rate);
    ASSERT_GT(first, 900);
    VadOptions opt;  // OpenAI's defaults: 0.5, 300 ms, 500 ms
    auto ev = run(x, rate, opt);
    // Pauses inside the sentence are shorter than 500 ms: exactly one turn.
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].kind, VadEvent::kSpeechStarted);
    EXPECT_EQ(ev[1].kind, VadEvent::kSpeechStopped);
    // audio_start_ms: the first speech frame minus the prefix padding (60 ms onset + frame slack)
    EXPECT_NEAR(double(ev[0].ms), double(first - opt.prefix_padding_ms), 80.0);
    // audio_end_ms: the end of speech plus silence_duration_ms
    EXPECT_NEAR(double(ev[1].ms), double(last + opt.silence_duration_ms), 80.0);
    // the result does not depend on how the audio is chunked
    auto ev2 = run(x, rate, opt, 77);
    ASSERT_EQ(ev2.size(), 2u);
    EXPECT_EQ(ev2[0].ms, ev[0].ms);
    EXPECT_EQ(ev2[1].ms, ev[1].ms);
}

TEST(Vad, PrefixPaddingMovesTheStart) {
    Audio q = load("question.wav");
    std::vector<float> x = noise(q.sample_rate, -66, 4);
    x.insert(x.end(), q.pcm.begin(), q.pcm.end());
    auto a = run(x, q.sample_rate, {0.5f, 300, 500});
    auto b = run(x, q.sample_rate, {0.5f, 0, 500});
    ASSERT_FALSE(a.empty());
    ASSERT_FALSE(b.empty());
    EXPECT_EQ(b[0].ms - a[0].ms, 300);
}

TEST(Vad, SilenceDurationSplitsTurnsAtLongPauses) {
    // two bursts of speech 700 ms apart: one turn with silence_duration_ms 1000, two with 300
    Audio q = load("question.wav");
    const int rate = q.sample_rate;
    std::vector<float> part(q.pcm.begin(), q.pcm.begin() + rate * 2);
    std::vector<float> x = noise(rate / 2, -66, 5);
    x.insert(x.end(), part.begin(), part.end());
    auto gap = noise(rate * 7 / 10, -66, 6);
    x.insert(x.end(), gap.begin(), gap.end());
    x.insert(x.end(), part.begin(), part.end());
    auto tail = noise(rate * 2, -66, 7);
    x.insert(x.end(), tail.begin(), tail.end());
    auto longer = run(x, rate, {0.5f, 300, 1000});
    auto shorter = run(x, rate, {0.5f, 300, 300});
    EXPECT_EQ(longer.size(), 2u);
    EXPECT_EQ(shorter.size(), 4u);
}

TEST(Vad, ThresholdIsDistanceAboveTheNoiseFloor) {
    // a 440 Hz tone 12 dB above a −50 dBFS floor: speech for threshold 0.2 (7.8 dB), not for 0.5
    // (15 dB)
    const int rate = 24000;
    std::vector<float> x = noise(rate * 2, -50, 8);
    const float amp = float(std::pow(10.0, (-50 + 12) / 20.0) * std::sqrt(2.0));
    for (int i = rate / 2; i < rate; ++i) x[i] += amp * float(std::sin(2 * M_PI * 440 * i / rate));
    EXPECT_TRUE(run(x, rate, {0.5f, 300, 200}).empty());
    auto ev = run(x, rate, {0.2f, 300, 200});
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_NEAR(double(ev[0].ms), 500.0 - 300.0, 20.0);
}

TEST(Vad, ShortClicksDoNotStartATurn) {
    const int rate = 24000;
    std::vector<float> x = noise(rate * 2, -60, 9);
    for (int i = rate; i < rate + rate / 50; ++i) x[i] = 0.5f * float(std::sin(i * 0.3));  // 20 ms
    EXPECT_TRUE(run(x, rate, {}).empty());
}
