// Resampling and log-mel split over a thread pool give bit-identical results to the serial path.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "audio/mel.h"
#include "audio/resample.h"
#include "core/thread_pool.h"

namespace voxrt::audio {
namespace {

std::vector<float> signal(size_t n, int rate) {
    std::vector<float> x(n);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; ++i) {
        s = s * 1664525u + 1013904223u;
        const double noise = (s >> 8) / 16777216.0 - 0.5;
        x[i] = static_cast<float>(0.3 * std::sin(2 * M_PI * 440.0 * i / rate) + 0.05 * noise);
    }
    return x;
}

TEST(Parallel, ResampleMatchesSerial) {
    ThreadPool pool(4);
    for (int rate : {44100, 48000, 8000, 22050}) {
        std::vector<float> x = signal(static_cast<size_t>(rate) * 3 + 17, rate);
        std::vector<float> a = resample(x.data(), x.size(), rate, 16000);
        std::vector<float> b = resample(x.data(), x.size(), rate, 16000, &pool);
        ASSERT_EQ(a.size(), b.size());
        EXPECT_EQ(a, b) << rate;
    }
}

TEST(Parallel, MelMatchesSerial) {
    ThreadPool pool(4);
    auto mel = MelFrontend::create(MelConfig{});
    ASSERT_TRUE(mel.is_ok()) << mel.status().message();
    std::vector<float> x = signal(16000 * 5 + 123, 16000);
    auto a = mel->compute(x.data(), x.size());
    auto b = mel->compute(x.data(), x.size(), &pool);
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    EXPECT_EQ(a->frames, b->frames);
    EXPECT_EQ(a->data, b->data);
}

}  // namespace
}  // namespace voxrt::audio
