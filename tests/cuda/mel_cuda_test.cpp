// The log-mel spectrogram on the GPU (ops::log_mel, backend/cuda/mel.cu) against the host's
// (audio::MelFrontend::compute), on the audio test cases (real speech, silence, other rates,
// resampled on the host as sessions do) and on 35 s of noise: float64 on both sides, so the float32
// outputs should agree to an ulp or so; 1e-5 is far below the float32 reference's own noise that
// the host pipeline is held to (5e-5, docs/audio.md). Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "audio/mel.h"
#include "audio/resample.h"
#include "audio/wav.h"
#include "backend/device.h"
#include "core/tensor.h"
#include "ops/mel_ops.h"
#include "ops/ops.h"
#include "cuda/cuda_test_util.h"
#include "unit/audio/audio_fixtures.h"

namespace voxrt {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

class CudaMel : public test::CudaContextTest {
protected:
    void SetUp() override {
        test::CudaContextTest::SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        auto m = audio::MelFrontend::create(audio::MelConfig{});
        ASSERT_TRUE(m.is_ok()) << m.status().message();
        mel_.emplace(std::move(*m));
    }

    // Max |gpu - host| over the spectrogram of x (16 kHz), and the GPU's time.
    void compare(const std::string& name, const std::vector<float>& x, double* gpu_ms = nullptr,
                 double* host_ms = nullptr) {
        const auto th = Clock::now();
        auto host = mel_->compute(x.data(), x.size());
        if (host_ms) *host_ms = ms_since(th);
        ASSERT_TRUE(host.is_ok()) << host.status().message();
        const audio::MelFrontend::Shape s = mel_->shape(x.size());
        ASSERT_EQ(s.frames, host->frames);
        ASSERT_EQ(s.valid, host->valid_frames);
        const int64_t n = static_cast<int64_t>(x.size()), F = mel_->features(), T = s.frames;
        Buffer pb = Buffer::allocate(Device::kCUDA, static_cast<size_t>(n) * 4);
        Buffer ob = Buffer::allocate(Device::kCUDA, static_cast<size_t>(F * T) * 4);
        ASSERT_TRUE(pb.data() && ob.data());
        Tensor pcm = pb.view(DType::kF32, {n});
        Tensor out = ob.view(DType::kF32, {F, T});
        ops::copy(ctx_, Tensor::make(const_cast<float*>(x.data()), DType::kF32, Device::kCPU, {n}),
                  pcm);
        ASSERT_TRUE(ops::synchronize(ctx_).is_ok());
        const auto tg = Clock::now();
        const Status st = ops::log_mel(ctx_, *mel_, pcm, out);
        ASSERT_TRUE(st.is_ok()) << st.message();
        ASSERT_TRUE(ops::synchronize(ctx_).is_ok());
        if (gpu_ms) *gpu_ms = ms_since(tg);
        std::vector<float> got(static_cast<size_t>(F * T));
        Tensor got_t = Tensor::make(got.data(), DType::kF32, Device::kCPU, {F, T});
        ops::copy(ctx_, out, got_t);
        ASSERT_TRUE(ops::synchronize(ctx_).is_ok());
        double worst = 0;
        int64_t differ = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_FALSE(std::isnan(got[i])) << name << " at " << i;
            const double d = std::fabs(static_cast<double>(got[i]) - host->data[i]);
            worst = std::max(worst, d);
            differ += got[i] != host->data[i];
        }
        std::printf(
            "[mel cuda] %-10s %6lld frames: max |gpu - host| %.3g, %lld of %zu values differ\n",
            name.c_str(), static_cast<long long>(T), worst, static_cast<long long>(differ),
            got.size());
        EXPECT_LE(worst, 1e-5) << name;
    }

    std::optional<audio::MelFrontend> mel_;
};

TEST_F(CudaMel, MatchesHostOnTheAudioCases) {
    for (const char* name : audio::test::kCases) {
        auto pcm = audio::read_wav(audio::test::case_path(name));
        ASSERT_TRUE(pcm.is_ok()) << pcm.status().message();
        std::vector<float> mono = audio::downmix_mono(*pcm);
        std::vector<float> x = audio::resample(mono.data(), mono.size(), pcm->sample_rate, 16000);
        compare(name, x);
    }
}

TEST_F(CudaMel, MatchesHostOn35sOfNoise) {
    test::Rng rng(35);
    std::vector<float> x(35 * 16000);
    for (auto& v : x) v = 0.1f * rng.normal();
    double gpu_ms = 0, host_ms = 0;
    compare("noise 35 s", x, &gpu_ms, &host_ms);
    std::printf("[mel cuda] 35 s: GPU %.2f ms (upload excluded), host %.2f ms on one thread\n",
                gpu_ms, host_ms);
}

TEST_F(CudaMel, RejectsBadTensors) {
    Buffer ob = Buffer::allocate(Device::kCUDA, 4 * 128 * 8);
    ASSERT_TRUE(ob.data());
    Tensor out = ob.view(DType::kF32, {128, 8});
    std::vector<float> host(800, 0.0f);
    Tensor host_pcm = Tensor::make(host.data(), DType::kF32, Device::kCPU, {800});
    EXPECT_EQ(ops::log_mel(ctx_, *mel_, host_pcm, out).code(),
              StatusCode::kInvalidArgument);  // not on the GPU
    Buffer pb = Buffer::allocate(Device::kCUDA, 4 * 800);
    Tensor pcm = pb.view(DType::kF32, {800});
    Tensor wrong = ob.view(DType::kF32, {128, 4});
    EXPECT_EQ(ops::log_mel(ctx_, *mel_, pcm, wrong).code(),
              StatusCode::kInvalidArgument);  // 6 frames, not 4
    ops::Context cpu;
    EXPECT_EQ(ops::log_mel(cpu, *mel_, host_pcm, out).code(), StatusCode::kUnsupported);
}

}  // namespace
}  // namespace voxrt
