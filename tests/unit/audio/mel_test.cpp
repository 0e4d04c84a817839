#include "audio/mel.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "audio/resample.h"
#include "audio/wav.h"
#include "unit/audio/audio_fixtures.h"

namespace voxrt::audio {
namespace {

MelFrontend make_frontend(const MelConfig& cfg = {}, const float* window = nullptr) {
    auto m = MelFrontend::create(cfg, window);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return std::move(m).value();
}

// 16 kHz mono input of a case: decoded WAV (16 kHz cases) or the reference's resampled pcm16k, so
// that the mel comparison is not affected by the resampler (tested separately). For asr the
// fixture keeps only the ends of pcm16k; voxrt's resampler (max abs error 2.4e-7) stands in.
std::vector<float> reference_pcm16k(const std::string& name) {
    if (test::has_fixture("pcm16k." + name) && !test::has_fixture("pcm16k_tail." + name)) {
        auto f = test::fixture("pcm16k." + name);
        return std::vector<float>(f.data, f.data + f.numel);
    }
    auto pcm = read_wav(test::case_path(name));
    EXPECT_TRUE(pcm.is_ok());
    std::vector<float> mono = downmix_mono(*pcm);
    return resample(mono.data(), mono.size(), pcm->sample_rate, 16000);
}

// Per-feature tolerances (docs/audio.md has the measurements behind them).
//
// vs the float32 reference ("mel.<c>"): the reference's own float32 noise. Its float32 FFT has an
// absolute error of ~eps * ||frame|| per bin, which is large relative to mel bands whose power is
// near the 2^-24 log guard (e.g. the empty 4-8 kHz band of 8 kHz input): |ref32 - ref64| reaches
// 3.4e-4 (sr8k). And its float32 mean carries a few ulp(|mean|) of summation-order dependent
// rounding (AVX2 / AVX512 / CUDA differ) that (x - mean) / std amplifies by 1/std: 0.16 on digital
// silence, where std = 1e-5.
double tol_ref32(double mean, double std) {
    const double ulp = std::ldexp(1.0, std::ilogb(std::fabs(mean) + 1e-30) - 23);
    return 1e-3 + 8.0 * ulp / std;
}
// vs the float64 run of the same reference ("mel64.<c>", stored as float32): voxrt computes in
// float64 too, so with the reference's exact window only the float32 storage rounding of values
// up to ~10 (4.8e-7) remains. With voxrt's computed window (1 ulp off in 10 of 400 values) the
// error rises to ~4e-5 in bands near the log guard.
double tol_ref64_exact(double, double) {
    return 1e-6;
}
double tol_ref64(double, double) {
    return 1e-4;
}

struct MelErr {
    double max_abs = 0;       // over all compared values
    double max_abs_fine = 0;  // over features with std >= 0.1 (the reference's noise is small)
    double worst_margin = 0;  // max over values of |err| / tol
};

MelErr compare_mel(const MelSpectrogram& m, const std::string& name, const std::string& key,
                   double (*feature_tol)(double, double)) {
    auto head = test::fixture(key + "." + name);
    auto mean = test::fixture("mel_mean." + name);
    auto stdv = test::fixture("mel_std." + name);
    MelErr e;
    EXPECT_EQ(head.shape[0], m.features);
    auto check = [&](const test::Fixture& ref, int t0) {
        const int Tr = static_cast<int>(ref.shape[1]);
        for (int f = 0; f < m.features; ++f) {
            const double tol = feature_tol(mean.data[f], stdv.data[f]);
            for (int t = 0; t < Tr; ++t) {
                double d = std::fabs(
                    static_cast<double>(m.data[static_cast<size_t>(f) * m.frames + t0 + t]) -
                    ref.data[static_cast<size_t>(f) * Tr + t]);
                if (std::isnan(d)) d = INFINITY;
                e.max_abs = std::max(e.max_abs, d);
                if (stdv.data[f] >= 0.1) e.max_abs_fine = std::max(e.max_abs_fine, d);
                e.worst_margin = std::max(e.worst_margin, d / tol);
            }
        }
    };
    check(head, 0);
    if (test::has_fixture(key + "_tail." + name)) {
        auto tail = test::fixture(key + "_tail." + name);
        check(tail, m.frames - static_cast<int>(tail.shape[1]));
    }
    return e;
}

TEST(Mel, WindowAndFilterbankMatchReference) {
    MelFrontend m = make_frontend();
    EXPECT_EQ(m.win_length(), 400);
    EXPECT_EQ(m.hop(), 160);
    auto w = test::fixture("mel.window");
    ASSERT_EQ(w.numel, m.window().size());
    auto ew = test::compare(m.window().data(), w.data, w.numel);
    auto fb = test::fixture("mel.fb");
    ASSERT_EQ(fb.numel, m.filterbank().size());
    auto ef = test::compare(m.filterbank().data(), fb.data, fb.numel);
    std::printf("[mel] window max abs err %.3g; filterbank max abs err %.3g\n", ew.max_abs,
                ef.max_abs);
    EXPECT_LE(ew.max_abs, 1.2e-7);  // <= 1 ulp (cosf vs torch's vectorised cos)
    EXPECT_LE(ef.max_abs, 1e-9);    // filterbank entries are < 0.01: 1 ulp < 1e-9
}

TEST(Mel, CasesMatchOfficialPreprocessor) {
    auto w = test::fixture("mel.window");
    MelFrontend exact = make_frontend({}, w.data);  // the reference's window bits
    MelFrontend computed = make_frontend();         // voxrt's own window
    for (const char* name : test::kCases) {
        SCOPED_TRACE(name);
        std::vector<float> pcm = reference_pcm16k(name);
        const bool isolated = !test::has_fixture(std::string("pcm16k_tail.") + name);
        auto mel = exact.compute(pcm.data(), pcm.size());
        ASSERT_TRUE(mel.is_ok()) << mel.status().message();
        EXPECT_EQ(mel->frames, 1 + static_cast<int>(pcm.size() / 160));
        EXPECT_EQ(mel->valid_frames, static_cast<int>(pcm.size() / 160));
        auto melc = computed.compute(pcm.data(), pcm.size());
        ASSERT_TRUE(melc.is_ok());
        MelErr e = compare_mel(*mel, name, "mel", tol_ref32);
        MelErr e64 = compare_mel(*mel, name, "mel64", isolated ? tol_ref64_exact : tol_ref64);
        MelErr c64 = compare_mel(*melc, name, "mel64", tol_ref64);
        std::printf(
            "[mel] %-8s T=%4d exact window: vs float32 ref %.3g (std >= 0.1: %.3g), "
            "vs float64 ref %.3g | computed window: vs float64 ref %.3g%s\n",
            name, mel->frames, e.max_abs, e.max_abs_fine, e64.max_abs, c64.max_abs,
            isolated ? "" : " (input resampled by voxrt)");
        EXPECT_LE(e.worst_margin, 1.0);
        EXPECT_LE(e64.worst_margin, 1.0);
        EXPECT_LE(c64.worst_margin, 1.0);
        // Terminal frame is zeroed (pad_value).
        for (int f = 0; f < mel->features; ++f) {
            ASSERT_EQ(mel->data[static_cast<size_t>(f) * mel->frames + mel->frames - 1], 0.0f);
        }
    }
}

// Whole path as ChatState.add_audio: decode, downmix, resample with voxrt, mel. voxrt's resampled
// input differs from torchaudio's by float32 rounding (<= 2.4e-7), i.e. white noise ~130 dB down,
// which matters only in near-empty bands: the same effect, and the same size, as the float32
// reference's own noise, so both comparisons use the float32-class tolerance.
TEST(Mel, FullPipelineFromWav) {
    auto w = test::fixture("mel.window");
    MelFrontend m = make_frontend({}, w.data);
    for (const char* name : test::kCases) {
        SCOPED_TRACE(name);
        auto pcm = read_wav(test::case_path(name));
        ASSERT_TRUE(pcm.is_ok());
        std::vector<float> mono = downmix_mono(*pcm);
        std::vector<float> x16 = resample(mono.data(), mono.size(), pcm->sample_rate, 16000);
        auto t0 = std::chrono::steady_clock::now();
        auto mel = m.compute(x16.data(), x16.size());
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                        .count();
        ASSERT_TRUE(mel.is_ok());
        MelErr e = compare_mel(*mel, name, "mel", tol_ref32);
        MelErr e64 = compare_mel(*mel, name, "mel64", tol_ref32);
        std::printf("[mel] pipeline %-8s vs float32 ref %.3g, vs float64 ref %.3g; mel %.1f ms\n",
                    name, e.max_abs, e64.max_abs, ms);
        EXPECT_LE(e.worst_margin, 1.0);
        EXPECT_LE(e64.worst_margin, 1.0);
    }
}

TEST(Mel, SilenceIsExactlyZero) {
    MelFrontend m = make_frontend();
    std::vector<float> zeros(16000, 0.0f);
    auto mel = m.compute(zeros.data(), zeros.size());
    ASSERT_TRUE(mel.is_ok());
    for (float v : mel->data) ASSERT_EQ(v, 0.0f);
}

TEST(Mel, ShortInputsFollowReference) {
    MelFrontend m = make_frontend();
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    std::vector<float> x(400);
    for (float& v : x) v = u(rng);
    // n < hop: valid = 0, one frame of pad_value. hop <= n < 2 hop: valid = 1, all zeros.
    for (size_t n : {1u, 100u, 159u, 160u, 200u, 319u}) {
        auto mel = m.compute(x.data(), n);
        ASSERT_TRUE(mel.is_ok());
        EXPECT_EQ(mel->frames, 1 + static_cast<int>(n / 160));
        for (float v : mel->data) ASSERT_EQ(v, 0.0f) << n;
    }
    auto mel = m.compute(x.data(), 320);
    ASSERT_TRUE(mel.is_ok());
    EXPECT_EQ(mel->frames, 3);
    // Two valid frames: normalised to -+1/sqrt(2) * (1 - tiny), like the reference (0.70710427).
    EXPECT_NEAR(std::fabs(mel->data[0]), 0.7071, 1e-3);
    EXPECT_FALSE(m.compute(x.data(), 0).is_ok());
}

TEST(Mel, PadToAndConfigValidation) {
    MelConfig cfg;
    cfg.pad_to = 16;
    MelFrontend m = make_frontend(cfg);
    std::vector<float> x(1600, 0.1f);
    auto mel = m.compute(x.data(), x.size());
    ASSERT_TRUE(mel.is_ok());
    EXPECT_EQ(mel->frames, 16);
    EXPECT_EQ(mel->valid_frames, 10);

    MelConfig bad;
    bad.window = "hamming";
    EXPECT_EQ(MelFrontend::create(bad).status().code(), StatusCode::kUnsupported);
    bad = MelConfig{};
    bad.frame_splicing = 3;
    EXPECT_EQ(MelFrontend::create(bad).status().code(), StatusCode::kUnsupported);
    bad = MelConfig{};
    bad.n_fft = 256;  // < window 400
    EXPECT_EQ(MelFrontend::create(bad).status().code(), StatusCode::kInvalidArgument);
    bad = MelConfig{};
    bad.window_stride = 0.0;
    EXPECT_FALSE(MelFrontend::create(bad).is_ok());
}

// shape() (what a session sizes its buffers and the GPU spectrogram by) gives compute()'s counts.
TEST(Mel, ShapeMatchesCompute) {
    for (int pad_to : {0, 16}) {
        MelConfig cfg;
        cfg.pad_to = pad_to;
        MelFrontend m = make_frontend(cfg);
        for (size_t n : {size_t{1}, size_t{159}, size_t{160}, size_t{161}, size_t{1600},
                         size_t{16000}, size_t{48123}}) {
            std::vector<float> x(n, 0.01f);
            auto mel = m.compute(x.data(), x.size());
            ASSERT_TRUE(mel.is_ok());
            const MelFrontend::Shape sh = m.shape(n);
            EXPECT_EQ(sh.frames, mel->frames) << n << " pad_to " << pad_to;
            EXPECT_EQ(sh.valid, mel->valid_frames) << n << " pad_to " << pad_to;
            EXPECT_EQ(sh.spectra, 1 + sh.valid) << n;
            EXPECT_GE(sh.frames, sh.spectra) << n;
        }
    }
}

}  // namespace
}  // namespace voxrt::audio
