// ops::StreamingIstft on the GPU (backend/cuda/istft.cu) against the host stream
// (audio::IstftStream) on the same head-output rows. The GPU sums each inverse transform directly
// in float64 where the host runs a float64 FFT, and rounds float64 exp/cos/sin where the host calls
// expf/cosf/sinf; both round to float32 before the identical float32 windowing, overlap-add and
// envelope division. So a sample may differ by the float32 rounding of a term: the bound is
// 1e-6 of the signal's peak (about 8 float32 ulps at the peak), where a wrong window, a missed or
// doubled frame, a lost carry or a wrong sign shows as 1e-3 or more. Also times a full step.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "ops/istft_ops.h"
#include "util/istft_streams.h"

namespace voxrt {
namespace {

using CudaIstft = test::CudaContextTest;

TEST_F(CudaIstft, EqualsHostStream) {
    const audio::IstftConfig cfg{1280, 320, 1280};
    std::vector<float> window = audio::hann_window(1280, true);
    for (float& w : window) w = w * 0.999f + 0.0005f;
    auto s = ops::StreamingIstft::create(ctx_, cfg, window.data(), 48);
    ASSERT_TRUE(s.is_ok()) << s.status().message();
    const std::vector<std::vector<int>> cuts = {{1}, {48}, {6, 1, 48, 13}};
    uint32_t seed = 7;
    for (const auto& cut : cuts)
        for (int rows : {1, 2, 3, 4, 5, 57, 130, 400}) {
            SCOPED_TRACE(::testing::Message() << rows << " rows, first chunk " << cut[0]);
            const auto head = test::random_head_rows(rows, 641, seed++);
            const auto want = test::host_istft_stream(head, rows, cfg, window.data());
            const auto got = test::device_istft_stream(ctx_, *s, head, rows, cut);
            ASSERT_EQ(got.size(), want.size());
            double peak = 0, max_d = 0, num = 0, den = 0;
            size_t differ = 0;
            for (size_t i = 0; i < got.size(); ++i) {
                const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
                peak = std::max(peak, std::fabs(static_cast<double>(want[i])));
                max_d = std::max(max_d, d);
                num += d * d;
                den += static_cast<double>(want[i]) * want[i];
                differ += got[i] != want[i];
            }
            if (rows == 400)
                std::printf(
                    "[cuda istft] %d rows, chunks from %d: max |Δ| %.3g of peak %.3g, "
                    "rel L2 %.3g, %zu of %zu samples not bit-equal\n",
                    rows, cut[0], max_d, peak, std::sqrt(num / den), differ, got.size());
            EXPECT_LE(max_d, 1e-6 * peak);
        }
}

TEST_F(CudaIstft, StepTime) {
    const audio::IstftConfig cfg{1280, 320, 1280};
    auto s = ops::StreamingIstft::create(ctx_, cfg, nullptr, 48);
    ASSERT_TRUE(s.is_ok());
    const int rows = 48;
    const auto head = test::random_head_rows(rows, 641, 3);
    Buffer spec_b = Buffer::allocate(Device::kCUDA, head.size() * 4);
    Buffer pcm_b = Buffer::allocate(Device::kCUDA, rows * 320 * 4);
    Tensor spec = Tensor::make(spec_b.data(), DType::kF32, Device::kCUDA, {rows, 1282});
    Tensor pcm = Tensor::make(pcm_b.data(), DType::kF32, Device::kCUDA, {rows * 320});
    Tensor head_h =
        Tensor::make(const_cast<float*>(head.data()), DType::kF32, Device::kCPU, {rows, 1282});
    ops::copy(ctx_, head_h, spec);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->step(ctx_, spec, pcm).is_ok());
    ASSERT_TRUE(ops::synchronize(ctx_).is_ok());
    const int iters = 200;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) ASSERT_TRUE(s->step(ctx_, spec, pcm).is_ok());
    ASSERT_TRUE(ops::synchronize(ctx_).is_ok());
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
        iters;
    std::printf("[cuda istft] step of %d rows (8 codec frames): %.1f us\n", rows, us);
}

}  // namespace
}  // namespace voxrt
