#include "audio/istft.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "unit/audio/audio_fixtures.h"

namespace voxrt::audio {
namespace {

double max_abs(const float* x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(x[i])));
    return m;
}

// Runs the stream over all frames, calling step() in chunks of `chunk` frames, then flush().
std::vector<float> run_stream(IstftStream& s, const float* spec, size_t frames, size_t chunk) {
    std::vector<float> out, buf(std::max(s.max_step_samples(), s.max_flush_samples()));
    const size_t stride = 2 * static_cast<size_t>(s.n_bins());
    for (size_t f0 = 0; f0 < frames; f0 += chunk) {
        for (size_t f = f0; f < std::min(frames, f0 + chunk); ++f) {
            size_t n = s.step(spec + f * stride, buf.data());
            EXPECT_LE(n, static_cast<size_t>(s.max_step_samples()));
            out.insert(out.end(), buf.begin(), buf.begin() + n);
        }
    }
    size_t n = s.flush(buf.data());
    EXPECT_LE(n, static_cast<size_t>(s.max_flush_samples()));
    out.insert(out.end(), buf.begin(), buf.begin() + n);
    return out;
}

// The reference (torch float32 irfft via pocketfft/MKL) and voxrt (float64 FFT rounded to
// float32) differ by float32 rounding of the inverse transform: ~1e-7 relative to the frame's
// largest sample. Tolerance: 2e-6 of the output's peak.
TEST(Istft, BatchMatchesDetokenizerIstft) {
    auto win = test::fixture("istft.window");
    for (const char* key : {"istft", "istft1", "istft2"}) {
        SCOPED_TRACE(key);
        auto spec = test::fixture(std::string(key) + ".spec");
        auto ref = test::fixture(std::string(key) + ".out");
        ASSERT_EQ(spec.shape.size(), 3u);
        ASSERT_EQ(spec.shape[1], 641);
        const size_t F = static_cast<size_t>(spec.shape[0]);
        const double peak = max_abs(ref.data, ref.numel);
        for (bool exact : {true, false}) {
            std::vector<float> y = istft_same(spec.data, F, {}, exact ? win.data : nullptr);
            ASSERT_EQ(y.size(), F * 320);
            ASSERT_EQ(y.size(), ref.numel);
            auto e = test::compare(y.data(), ref.data, y.size());
            std::printf("[istft] %-6s F=%2zu %s window: max abs err %.3g (peak %.3g, rel %.3g)\n",
                        key, F, exact ? "checkpoint" : "computed  ", e.max_abs, peak,
                        e.max_abs / peak);
            EXPECT_LE(e.max_abs, 2e-6 * peak);
        }
    }
}

TEST(Istft, ComputedWindowMatchesTorch) {
    auto win = test::fixture("istft.window");
    std::vector<float> w = hann_window(1280, /*periodic=*/true);
    auto e = test::compare(w.data(), win.data, w.size());
    std::printf("[istft] periodic Hann 1280 max abs err vs torch %.3g\n", e.max_abs);
    EXPECT_LE(e.max_abs, 6e-8);  // <= 1 ulp of values < 1
}

TEST(Istft, StreamingEqualsBatch) {
    auto spec = test::fixture("istft.spec");
    const size_t F = static_cast<size_t>(spec.shape[0]);
    std::vector<float> batch = istft_same(spec.data, F);
    IstftStream s;
    for (size_t chunk : {1u, 2u, 3u, 7u}) {
        SCOPED_TRACE(chunk);
        std::vector<float> st = run_stream(s, spec.data, F, chunk);
        ASSERT_EQ(st.size(), batch.size());
        double worst = 0;
        for (size_t i = 0; i < st.size(); ++i) {
            worst = std::max(worst, std::fabs(static_cast<double>(st[i]) - batch[i]) /
                                        std::max(1e-6, std::fabs(static_cast<double>(batch[i]))));
        }
        std::printf("[istft] streaming (chunk %zu) vs batch: max rel diff %.3g\n", chunk, worst);
        EXPECT_LE(worst, 1e-5);
    }
    // Every frame count, including 1 and 2, and the per-step sizes (0, 160, 320, ..., flush 480).
    std::mt19937 rng(11);
    std::normal_distribution<float> nd;
    std::vector<float> rnd(9 * 641 * 2);
    for (float& v : rnd) v = nd(rng);
    for (size_t frames = 1; frames <= 9; ++frames) {
        SCOPED_TRACE(frames);
        std::vector<float> b = istft_same(rnd.data(), frames);
        std::vector<float> st = run_stream(s, rnd.data(), frames, 1);
        ASSERT_EQ(st.size(), frames * 320);
        for (size_t i = 0; i < b.size(); ++i) ASSERT_EQ(st[i], b[i]) << i;
    }
    std::vector<float> buf(480);
    EXPECT_EQ(s.step(rnd.data(), buf.data()), 0u);
    EXPECT_EQ(s.step(rnd.data(), buf.data()), 160u);
    EXPECT_EQ(s.step(rnd.data(), buf.data()), 320u);
    EXPECT_EQ(s.flush(buf.data()), 480u);
    EXPECT_EQ(s.frames(), 0u);
    EXPECT_EQ(s.flush(buf.data()), 0u);  // nothing pending
}

TEST(Istft, PolarMatchesTorch) {
    auto lm = test::fixture("istft.logmag");
    auto ph = test::fixture("istft.phase");
    auto ref = test::fixture("istft.polar");
    std::vector<float> out(ref.numel);
    const int rows = static_cast<int>(lm.shape[0]);
    for (int r = 0; r < rows; ++r) {
        spectrum_from_logmag_phase(lm.data + r * 641, ph.data + r * 641, 641, &out[r * 641 * 2]);
    }
    auto e = test::compare(out.data(), ref.data, out.size(), 1e-3);
    std::printf("[istft] polar(exp(logmag), phase): max abs err %.3g, max rel %.3g\n", e.max_abs,
                e.max_rel);
    EXPECT_LE(e.max_rel, 1e-6);
}

TEST(Istft, ConfigValidation) {
    EXPECT_TRUE(validate_istft_config({}).is_ok());
    EXPECT_FALSE(validate_istft_config({1280, 320, 1024}).is_ok());   // win != n_fft
    EXPECT_FALSE(validate_istft_config({1280, 1280, 1280}).is_ok());  // hop == win
    EXPECT_FALSE(validate_istft_config({1280, 321, 1280}).is_ok());   // odd win - hop
    EXPECT_FALSE(validate_istft_config({1282, 320, 1282}).is_ok());   // 1282 = 2 * 641
    EXPECT_TRUE(istft_same(nullptr, 0).empty());
}

// step_batch = the same samples as step() one frame at a time, bit for bit, whatever the batch
// capacity (pieces), the pool (parallel transforms) and the batch sizes.
TEST(Istft, StepBatchEqualsSteps) {
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    const size_t F = 37, nb = 641;
    std::vector<float> spec(F * nb * 2);
    for (float& v : spec) v = nd(rng);
    IstftStream one;
    std::vector<float> ref, buf(480);
    for (size_t f = 0; f < F; ++f) {
        const size_t n = one.step(&spec[f * nb * 2], buf.data());
        ref.insert(ref.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    size_t n = one.flush(buf.data());
    ref.insert(ref.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    ThreadPool pool(3);
    for (int cap : {0, 1, 4, 48}) {
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
            SCOPED_TRACE(testing::Message() << "cap " << cap << (p ? " pool" : ""));
            IstftStream s;
            s.reserve_batch(cap);
            std::vector<float> got, out(48 * 320 + 480);
            const size_t sizes[] = {1, 5, 8, 3, 12, 8};
            size_t f = 0;
            for (size_t k = 0; f < F; ++k) {
                const size_t c = std::min(sizes[k % 6], F - f);
                const size_t w =
                    s.step_batch(&spec[f * nb * 2], static_cast<int>(c), out.data(), p);
                got.insert(got.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(w));
                f += c;
            }
            const size_t t = s.flush(out.data());
            got.insert(got.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(t));
            ASSERT_EQ(got.size(), ref.size());
            for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(got[i], ref[i]) << i;
        }
    }
}

}  // namespace
}  // namespace voxrt::audio
