// Streaming input: audio appended in chunks as it arrives (10 ms .. 1 s, at several rates) gives
// exactly the features of the whole utterance: ResampleStream equals Resampler::process,
// MelStream equals MelFrontend::compute, bit for bit; and through the public Session, a response
// to chunked audio equals the response to the same audio appended at once.
#include <gtest/gtest.h>

#include <voxrt/voxrt.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "audio/mel.h"
#include "audio/resample.h"
#include "core/thread_pool.h"
#include "util/api_util.h"
#include "util/test_paths.h"

namespace voxrt {
namespace {

// A wavering tone with noise: something other than silence in every band.
std::vector<float> signal(int rate, double seconds, unsigned seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> noise(0.0f, 0.05f);
    const size_t n = static_cast<size_t>(rate * seconds);
    std::vector<float> x(n);
    for (size_t i = 0; i < n; ++i) {
        const double t = static_cast<double>(i) / rate;
        const double f = 220.0 + 90.0 * std::sin(2.0 * M_PI * 0.7 * t);
        x[i] = static_cast<float>(0.4 * std::sin(2.0 * M_PI * f * t)) + noise(g);
    }
    return x;
}

// Chunk sizes: fixed ones from 10 ms to 1 s, and random ones in that range.
std::vector<size_t> chunking(int rate, size_t n, int ms, unsigned seed) {
    std::vector<size_t> sizes;
    std::mt19937 g(seed);
    std::uniform_int_distribution<int> pick(10, 1000);
    size_t done = 0;
    while (done < n) {
        const int this_ms = ms > 0 ? ms : pick(g);
        const size_t k =
            std::min(n - done, std::max<size_t>(1, static_cast<size_t>(rate) * this_ms / 1000));
        sizes.push_back(k);
        done += k;
    }
    return sizes;
}

struct Rates : ::testing::TestWithParam<int> {};

TEST_P(Rates, ChunkedFeaturesEqualWholeUtterance) {
    const int rate = GetParam();
    auto mf = audio::MelFrontend::create(audio::MelConfig{});
    ASSERT_TRUE(mf.is_ok()) << mf.status().message();
    ThreadPool pool(2);
    for (double seconds : {0.005, 0.3, 2.7}) {
        const std::vector<float> x = signal(rate, seconds, 7);
        if (x.empty()) continue;
        std::vector<float> x16 = audio::resample(x.data(), x.size(), rate, 16000);
        auto whole = mf->compute(x16.data(), x16.size(), &pool);
        ASSERT_TRUE(whole.is_ok());
        for (int ms : {10, 20, 80, 250, 1000, 0 /* random 10..1000 */}) {
            audio::ResampleStream rs(rate, 16000);
            audio::MelStream ms_(*mf);
            std::vector<float> got16, piece;
            size_t at = 0;
            for (size_t k : chunking(rate, x.size(), ms, 11)) {
                piece.clear();
                rs.push(x.data() + at, k, piece);
                got16.insert(got16.end(), piece.begin(), piece.end());
                ms_.push(piece.data(), piece.size(), ms % 20 == 0 ? &pool : nullptr);
                at += k;
            }
            piece.clear();
            rs.finish(piece);
            got16.insert(got16.end(), piece.begin(), piece.end());
            ms_.push(piece.data(), piece.size());
            const std::string what = std::to_string(rate) + " Hz, " + std::to_string(seconds) +
                                     " s, chunks of " +
                                     (ms ? std::to_string(ms) + " ms" : "10..1000 ms");
            ASSERT_EQ(got16, x16) << what << ": resampled samples differ";
            auto mel = ms_.finish();
            ASSERT_TRUE(mel.is_ok()) << mel.status().message();
            EXPECT_EQ(mel->frames, whole->frames) << what;
            EXPECT_EQ(mel->valid_frames, whole->valid_frames) << what;
            EXPECT_EQ(mel->data, whole->data) << what << ": features differ";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(InputRates, Rates, ::testing::Values(8000, 16000, 22050, 44100, 48000));

TEST(StreamingInput, ResampleStreamStartsOverAfterReset) {
    const std::vector<float> x = signal(44100, 0.5, 3);
    audio::ResampleStream rs(44100, 16000);
    std::vector<float> a, b;
    rs.push(x.data(), x.size(), a);
    rs.finish(a);
    rs.reset();
    rs.push(x.data(), x.size(), b);
    rs.finish(b);
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.size(), (x.size() * 16000 + 44099) / 44100);
}

// Through the public API: the same response whether the user's audio came whole or in pieces.
TEST(StreamingInput, SessionResponseIndependentOfChunking) {
    auto m = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m);
    const AudioClip clip = test::read_clip("st48k.wav");
    ASSERT_FALSE(clip.samples.empty());
    ResponseOptions o = ResponseOptions::for_task(Task::kSpeechChat);
    o.max_steps = 24;
    o.audio = false;
    o.suppress_end = true;
    std::vector<ResponseItem> whole;
    for (int ms : {-1, 10, 30, 100, 1000}) {
        auto s = Session::create(m);
        ASSERT_TRUE(s.is_ok());
        ASSERT_TRUE(
            (*s)->add_turn(Role::kSystem, task_defaults(Task::kSpeechChat).system_prompt).is_ok());
        ASSERT_TRUE((*s)->begin_user_turn().is_ok());
        const size_t step =
            ms < 0 ? clip.samples.size() : static_cast<size_t>(clip.sample_rate) * ms / 1000;
        for (size_t at = 0; at < clip.samples.size(); at += step) {
            const size_t k = std::min(step, clip.samples.size() - at);
            ASSERT_TRUE((*s)->append_audio(clip.samples.data() + at, k, clip.sample_rate).is_ok());
        }
        ASSERT_TRUE((*s)->end_user_turn().is_ok());
        const test::Response r = test::respond(**s, o);
        ASSERT_TRUE(r.status.is_ok()) << r.status.message();
        ASSERT_EQ(r.items.size(), 24u);
        if (ms < 0) {
            whole = r.items;
        } else {
            EXPECT_EQ(r.items, whole) << "chunks of " << ms << " ms";
        }
    }
}

}  // namespace
}  // namespace voxrt
