// ops::StreamingIstft on the CPU backend: bit for bit the host stream (audio::IstftStream) on
// the same rows, however the rows are split into steps, across utterances, with and without a
// thread pool; and bad arguments are errors that change nothing.
#include "ops/istft_ops.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/thread_pool.h"
#include "util/istft_streams.h"

namespace voxrt {
namespace {

ops::Context cpu_ctx(ThreadPool* pool) {
    ops::Context c;
    c.device = Device::kCPU;
    c.pool = pool;
    return c;
}

TEST(StreamingIstft, CpuEqualsHostStreamBitForBit) {
    const audio::IstftConfig cfg{1280, 320, 1280};
    std::vector<float> window = audio::hann_window(1280, true);
    for (float& w : window)
        w = w * 0.999f + 0.0005f;  // not the computed Hann: the given one is used
    ThreadPool pool(2);
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
        const ops::Context ctx = cpu_ctx(p);
        auto s = ops::StreamingIstft::create(ctx, cfg, window.data(), 48);
        ASSERT_TRUE(s.is_ok()) << s.status().message();
        // One stream, several utterances in a row (flush resets it), cut differently.
        const std::vector<std::vector<int>> cuts = {{1}, {48}, {6, 1, 48, 13}, {2, 7}, {5}};
        const int lengths[] = {1, 2, 3, 4, 5, 57, 130};
        uint32_t seed = 1;
        for (const auto& cut : cuts)
            for (int rows : lengths) {
                SCOPED_TRACE(::testing::Message() << rows << " rows, first chunk " << cut[0]);
                const auto head = test::random_head_rows(rows, 641, seed++);
                const auto want = test::host_istft_stream(head, rows, cfg, window.data());
                const auto got = test::device_istft_stream(ctx, *s, head, rows, cut);
                ASSERT_EQ(got.size(), want.size());
                ASSERT_EQ(got.size(), static_cast<size_t>(rows) * 320);
                for (size_t i = 0; i < got.size(); ++i)
                    ASSERT_EQ(got[i], want[i]) << "sample " << i;
            }
    }
}

TEST(StreamingIstft, OtherSizesEqualHostStream) {
    // Small transforms whose trimmed lead (pad 6 and 5) is longer than a hop (4 and 2).
    for (const audio::IstftConfig& cfg :
         {audio::IstftConfig{16, 4, 16}, audio::IstftConfig{12, 2, 12}}) {
        SCOPED_TRACE(cfg.n_fft);
        const ops::Context ctx = cpu_ctx(nullptr);
        auto s = ops::StreamingIstft::create(ctx, cfg, nullptr, 5);
        ASSERT_TRUE(s.is_ok()) << s.status().message();
        for (int rows : {1, 2, 3, 9, 23}) {
            const auto head = test::random_head_rows(rows, cfg.n_fft / 2 + 1, 100 + rows);
            const auto want = test::host_istft_stream(head, rows, cfg, nullptr);
            const auto got = test::device_istft_stream(ctx, *s, head, rows, {3, 1, 5});
            ASSERT_EQ(got, want);
        }
    }
}

TEST(StreamingIstft, BadArgumentsAreErrorsAndChangeNothing) {
    const ops::Context ctx = cpu_ctx(nullptr);
    EXPECT_FALSE(ops::StreamingIstft::create(ctx, {1280, 320, 1024}, nullptr, 8).is_ok());
    EXPECT_FALSE(ops::StreamingIstft::create(ctx, {1280, 320, 1280}, nullptr, 0).is_ok());
    auto s = ops::StreamingIstft::create(ctx, {16, 4, 16}, nullptr, 4);
    ASSERT_TRUE(s.is_ok());
    std::vector<float> spec(5 * 18, 0.0f), pcm(64, 0.0f);
    Tensor pcm_t = Tensor::make(pcm.data(), DType::kF32, Device::kCPU, {64});
    Tensor five = Tensor::make(spec.data(), DType::kF32, Device::kCPU, {5, 18});
    Tensor wide = Tensor::make(spec.data(), DType::kF32, Device::kCPU, {4, 20});
    Tensor small_pcm = Tensor::make(pcm.data(), DType::kF32, Device::kCPU, {3});
    auto r = s->step(ctx, five, pcm_t);  // more rows than max_rows
    EXPECT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("spec"), std::string::npos) << r.status().message();
    EXPECT_FALSE(s->step(ctx, wide, pcm_t).is_ok());
    EXPECT_FALSE(s->step(ctx, five.rows(0, 2), small_pcm).is_ok());  // needs 8 samples
    EXPECT_EQ(s->frames(), 0);
    auto ok = s->step(ctx, five.rows(0, 2), pcm_t);
    ASSERT_TRUE(ok.is_ok());
    EXPECT_EQ(s->frames(), 2);
}

}  // namespace
}  // namespace voxrt
