// Streaming detokenizer == whole-utterance detokenizer: the concatenated outputs of step() for each
// frame plus flush() must equal decode() on the same codes (within 1e-5 relative; on the CPU
// backend they are bit-identical, because every op computes each output with the same operations
// whatever the number of rows). Utterances are long enough to wrap the KV cache several times
// (compaction), and the state is reused across utterances, reset mid-utterance and fed bad codes.
//
// Also reports the per-frame cost of step() (VOXRT_DETOK_MODEL selects another checkpoint, e.g.
// a full-size random one, VOXRT_DETOK_THREADS the CPU threads; see docs/detokenizer.md). The CUDA
// cases run when a GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backend/device_api.h"
#include "core/arena.h"
#include "core/thread_pool.h"
#include "model/audio_decoder.h"
#include "model/weights.h"
#include "util/compare.h"
#include "util/test_paths.h"

namespace voxrt {
namespace {

namespace fs = std::filesystem;
using model::kDetokCodebooks;
using model::kDetokSamplesPerFrame;

std::string model_dir() {
    const char* v = std::getenv("VOXRT_DETOK_MODEL");
    return v && *v ? std::string(v) : test::data_dir() + "/tiny/model/audio_detokenizer";
}

std::vector<int32_t> random_codes(int64_t Tc, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(0, model::kDetokCodebookSize - 1);
    std::vector<int32_t> c(static_cast<size_t>(Tc * kDetokCodebooks));
    for (auto& v : c) v = dist(rng);
    return c;
}

// A copy of the checkpoint directory with config.json's sliding_window replaced.
std::string with_window(const std::string& src, int window) {
    const std::string dir = test::make_temp_dir("detok-w" + std::to_string(window));
    std::ifstream in(src + "/config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string key = "\"sliding_window\": 30";
    const size_t at = cfg.find(key);
    EXPECT_NE(at, std::string::npos) << "fixture config changed";
    if (at != std::string::npos)
        cfg.replace(at, key.size(), "\"sliding_window\": " + std::to_string(window));
    std::ofstream(dir + "/config.json") << cfg;
    fs::create_symlink(fs::absolute(src + "/model.safetensors"), dir + "/model.safetensors");
    return dir;
}

// A CPU context on `pool`, or a CUDA context (fp32 is forced by the detokenizer either way).
ops::Context make_context(Device dev, ThreadPool* pool) {
    ops::Context c;
    c.pool = pool;
    if (dev == Device::kCUDA) {
        auto made = backend::create_cuda_context(ops::Precision::kBF16);
        EXPECT_TRUE(made.is_ok()) << made.status().message();
        if (made.is_ok()) c = made.value();
    }
    return c;
}

// CPU worker threads (VOXRT_DETOK_THREADS, default 2).
int n_threads() {
    const char* v = std::getenv("VOXRT_DETOK_THREADS");
    return v && *v ? std::max(1, std::atoi(v)) : 2;
}

struct Harness {
    Device dev;
    ThreadPool pool{n_threads()};
    ops::Context ctx = make_context(dev, &pool);
    model::WeightStore store{ctx};
    std::optional<model::Detokenizer> det;

    explicit Harness(const std::string& dir, Device device = Device::kCPU) : dev(device) {
        if (ctx.device != dev) return;
        auto d = model::Detokenizer::load(dir, store);
        EXPECT_TRUE(d.is_ok()) << d.status().message();
        if (d.is_ok()) det.emplace(std::move(d).value());
    }
    ~Harness() {
        if (dev == Device::kCUDA) backend::destroy_cuda_context(ctx);
    }

    std::vector<float> decode(const std::vector<int32_t>& codes) {
        const int64_t Tc = static_cast<int64_t>(codes.size()) / kDetokCodebooks;
        Arena scratch;
        EXPECT_TRUE(scratch.reserve(dev, det->decode_scratch_bytes(Tc)));
        std::vector<float> pcm;
        Status st = det->decode(ctx, codes.data(), Tc, scratch, pcm);
        EXPECT_TRUE(st.is_ok()) << st.message();
        return pcm;
    }

    // Streams codes frame by frame, checking the number of samples each call emits.
    std::vector<float> stream(model::DetokenizerState& st, const std::vector<int32_t>& codes) {
        const int64_t Tc = static_cast<int64_t>(codes.size()) / kDetokCodebooks;
        std::vector<float> pcm;
        pcm.reserve(static_cast<size_t>(Tc * kDetokSamplesPerFrame));
        for (int64_t t = 0; t < Tc; ++t) {
            const size_t before = pcm.size();
            Status s = det->step(ctx, st, &codes[static_cast<size_t>(t * kDetokCodebooks)], pcm);
            EXPECT_TRUE(s.is_ok()) << s.message();
            EXPECT_EQ(pcm.size() - before, t == 0 ? 1440u : 1920u) << "frame " << t;
        }
        const size_t before = pcm.size();
        Status s = det->flush(ctx, st, pcm);
        EXPECT_TRUE(s.is_ok()) << s.message();
        EXPECT_EQ(pcm.size() - before, Tc > 0 ? 480u : 0u);
        EXPECT_EQ(st.frames(), 0);
        return pcm;
    }
};

void expect_equal_streams(const std::vector<float>& streamed, const std::vector<float>& whole,
                          const char* what) {
    ASSERT_EQ(streamed.size(), whole.size()) << what;
    const test::ErrorStats s = test::compare(streamed.data(), whole.data(), whole.size());
    std::printf("[detok streaming] %-28s %s\n", what, s.str().c_str());
    EXPECT_LE(s.rel_l2, 1e-5) << what;
    EXPECT_LE(s.max_abs, 1e-5 * s.ref_max) << what;
}

void steps_plus_flush_equal_decode(Device dev) {
    Harness h(model_dir(), dev);
    ASSERT_TRUE(h.det);
    auto st = h.det->new_state(h.ctx);
    ASSERT_TRUE(st.is_ok()) << st.status().message();
    // 1 frame; fewer frames than the window; several cache compactions.
    for (int64_t Tc : {1, 4, 57}) {
        const std::vector<int32_t> codes = random_codes(Tc, 100 + static_cast<uint32_t>(Tc));
        const std::vector<float> whole = h.decode(codes);
        ASSERT_EQ(whole.size(), static_cast<size_t>(Tc * kDetokSamplesPerFrame));
        const std::string what =
            std::string(device_name(dev)) + " Tc=" + std::to_string(Tc) + " (state reused)";
        expect_equal_streams(h.stream(*st, codes), whole, what.c_str());
    }
}

TEST(DetokenizerStreaming, StepsPlusFlushEqualDecode) {
    steps_plus_flush_equal_decode(Device::kCPU);
}

TEST(DetokenizerStreaming, StepsPlusFlushEqualDecodeCuda) {
    if (!backend::cuda_available()) GTEST_SKIP() << "no CUDA device";
    steps_plus_flush_equal_decode(Device::kCUDA);
}

TEST(DetokenizerStreaming, OtherWindowsAndCacheSizes) {
    // The equality must not depend on the window fitting the cache in a particular way.
    for (int window : {1, 7, 64}) {
        Harness h(with_window(model_dir(), window));
        ASSERT_TRUE(h.det);
        ASSERT_EQ(h.det->window(), window);
        auto st = h.det->new_state(h.ctx);
        ASSERT_TRUE(st.is_ok()) << st.status().message();
        EXPECT_GE(st->cache_rows(), 2 * (window - 1) + model::kDetokUpsample);
        const std::vector<int32_t> codes = random_codes(45, 7 + static_cast<uint32_t>(window));
        const std::string what = "window " + std::to_string(window) + ", Tc=45";
        expect_equal_streams(h.stream(*st, codes), h.decode(codes), what.c_str());
    }
}

TEST(DetokenizerStreaming, ResetAndBadCodes) {
    Harness h(model_dir());
    ASSERT_TRUE(h.det);
    auto st = h.det->new_state(h.ctx);
    ASSERT_TRUE(st.is_ok()) << st.status().message();
    // Abandon an utterance half-way (barge-in): the next one must not see its state.
    const std::vector<int32_t> first = random_codes(23, 1);
    std::vector<float> sink;
    for (int t = 0; t < 23; ++t)
        ASSERT_TRUE(h.det->step(h.ctx, *st, &first[static_cast<size_t>(t * 8)], sink).is_ok());
    h.det->reset(*st);
    EXPECT_EQ(st->frames(), 0);

    // A bad code mid-utterance is rejected without touching the state.
    const std::vector<int32_t> codes = random_codes(20, 2);
    std::vector<float> pcm;
    for (int t = 0; t < 20; ++t) {
        if (t == 11) {
            int32_t bad[8] = {1, 2, 3, 4, 5, 6, 7, 2048};  // end-of-audio frame
            const size_t before = pcm.size();
            Status s = h.det->step(h.ctx, *st, bad, pcm);
            EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
            EXPECT_NE(s.message().find("frame 11 codebook 7"), std::string::npos) << s.message();
            EXPECT_EQ(pcm.size(), before);
            EXPECT_EQ(st->frames(), 11);
        }
        ASSERT_TRUE(h.det->step(h.ctx, *st, &codes[static_cast<size_t>(t * 8)], pcm).is_ok());
    }
    ASSERT_TRUE(h.det->flush(h.ctx, *st, pcm).is_ok());
    expect_equal_streams(pcm, h.decode(codes), "after reset + rejected frame");

    // flush() with no frame emits nothing.
    std::vector<float> none;
    ASSERT_TRUE(h.det->flush(h.ctx, *st, none).is_ok());
    EXPECT_TRUE(none.empty());
}

void per_frame_cost(Device dev) {
    Harness h(model_dir(), dev);
    ASSERT_TRUE(h.det);
    auto st = h.det->new_state(h.ctx);
    ASSERT_TRUE(st.is_ok()) << st.status().message();
    const int64_t Tc = 50, warm = 5;
    const std::vector<int32_t> codes = random_codes(Tc, 3);
    std::vector<float> pcm;
    pcm.reserve(static_cast<size_t>((Tc + 1) * kDetokSamplesPerFrame));
    for (int64_t t = 0; t < warm; ++t)
        ASSERT_TRUE(h.det->step(h.ctx, *st, &codes[static_cast<size_t>(t * 8)], pcm).is_ok());
    std::vector<double> ms;
    for (int64_t t = warm; t < Tc; ++t) {
        const auto t0 = std::chrono::steady_clock::now();
        ASSERT_TRUE(h.det->step(h.ctx, *st, &codes[static_cast<size_t>(t * 8)], pcm).is_ok());
        ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
    }
    std::sort(ms.begin(), ms.end());
    double mean = 0;
    for (double v : ms) mean += v / static_cast<double>(ms.size());
    std::printf(
        "[detok streaming] %s step(): median %.3f ms, mean %.3f ms, max %.3f ms per 80 ms frame "
        "(%d layers, D %d, %d CPU threads, state %zu bytes)\n",
        device_name(dev), ms[ms.size() / 2], mean, ms.back(), h.det->config().n_layers(),
        h.det->config().hidden_size, h.pool.size(), st->device_bytes());
}

TEST(DetokenizerStreaming, PerFrameCost) {
    per_frame_cost(Device::kCPU);
}

TEST(DetokenizerStreaming, PerFrameCostCuda) {
    if (!backend::cuda_available()) GTEST_SKIP() << "no CUDA device";
    per_frame_cost(Device::kCUDA);
}

}  // namespace
}  // namespace voxrt
