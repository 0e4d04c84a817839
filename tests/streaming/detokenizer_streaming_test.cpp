// Streaming detokenizer == whole-utterance detokenizer: the concatenated outputs of step() for each
// frame (or chunk of frames, of any mix of sizes) plus flush() must equal decode() on the same
// codes (within 1e-5 relative; on the CPU backend they are bit-identical, because every op computes
// each output with the same operations whatever the number of rows, and the chunked cases check
// that). Utterances are long enough to wrap the KV cache several times (compaction), and the state
// is reused across utterances, reset mid-utterance and fed bad codes and bad chunk sizes. A session
// turn streams the same PCM whatever its detok_chunk_frames, and drains its buffered frames when
// the sink stops it early.
//
// Also reports the per-frame cost of step() (VOXRT_DETOK_MODEL selects another checkpoint, e.g.
// a full-size random one, VOXRT_DETOK_THREADS the CPU threads; see docs/detokenizer.md). The CUDA
// cases run when a GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/device.h"
#include "core/arena.h"
#include "core/thread_pool.h"
#include "model/audio_decoder.h"
#include "model/lfm_audio.h"
#include "model/weights.h"
#include "runtime/detok_worker.h"
#include "runtime/session.h"
#include "util/compare.h"
#include "util/s2s_prompt.h"
#include "util/test_paths.h"
#include "util/tiny_model.h"

namespace voxrt {
namespace {

namespace fs = std::filesystem;
using model::kDetokCodebooks;
using model::kDetokMaxStepFrames;
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
        auto made = backend::create_context(Device::kCUDA, ops::Precision::kBF16);
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
        if (dev == Device::kCUDA) backend::destroy_context(ctx);
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

    // Streams codes in chunks of sizes[0], sizes[1], … (cycling; the last chunk is cut to what is
    // left), checking the number of samples each call emits.
    std::vector<float> stream_chunks(model::DetokenizerState& st, const std::vector<int32_t>& codes,
                                     const std::vector<int64_t>& sizes) {
        const int64_t Tc = static_cast<int64_t>(codes.size()) / kDetokCodebooks;
        std::vector<float> pcm;
        int64_t t = 0;
        for (size_t i = 0; t < Tc; ++i) {
            const int64_t n = std::min(sizes[i % sizes.size()], Tc - t);
            const size_t before = pcm.size();
            Status s = det->step(ctx, st, &codes[static_cast<size_t>(t * kDetokCodebooks)], n, pcm);
            EXPECT_TRUE(s.is_ok()) << s.message();
            const size_t want = static_cast<size_t>(n * kDetokSamplesPerFrame) - (t == 0 ? 480 : 0);
            EXPECT_EQ(pcm.size() - before, want) << "chunk of " << n << " at frame " << t;
            t += n;
            EXPECT_EQ(st.frames(), t);
        }
        const size_t before = pcm.size();
        Status s = det->flush(ctx, st, pcm);
        EXPECT_TRUE(s.is_ok()) << s.message();
        EXPECT_EQ(pcm.size() - before, Tc > 0 ? 480u : 0u);
        EXPECT_EQ(st.frames(), 0);
        return pcm;
    }
};

// Bit-identical (the CPU backend's guarantee).
void expect_identical(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    const test::ErrorStats s = test::compare(a.data(), b.data(), b.size());
    std::printf("[detok streaming] %-28s %s\n", what, s.str().c_str());
    size_t first_diff = a.size();
    for (size_t i = 0; i < a.size() && first_diff == a.size(); ++i)
        if (a[i] != b[i]) first_diff = i;
    EXPECT_EQ(first_diff, a.size()) << what << ": first difference at sample " << first_diff;
}

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
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
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

// Mixed chunk sizes, including 1 and the maximum, so that chunks start and end anywhere relative
// to the cache compactions (S = 125 rows at W = 30: 70 frames = 420 rows compact 4 times).
const std::vector<int64_t> kMixedChunks = {1, 3, 8, 2, 8, 8, 5, 7, 1, 4, 6, 8};

void chunked_steps_plus_flush_equal_decode(Device dev) {
    Harness h(model_dir(), dev);
    ASSERT_TRUE(h.det);
    ASSERT_EQ(h.det->max_step_frames(), kDetokMaxStepFrames);
    auto st = h.det->new_state(h.ctx);
    ASSERT_TRUE(st.is_ok()) << st.status().message();
    struct Case {
        int64_t Tc;
        std::vector<int64_t> sizes;
    };
    // One state across all cases; the first utterance starts with a multi-frame chunk.
    const std::vector<Case> cases = {{70, {3, 8, 1, 2, 8, 8, 5, 7, 1, 4, 6}},
                                     {70, kMixedChunks},
                                     {45, {kDetokMaxStepFrames}},
                                     {3, {kDetokMaxStepFrames}},
                                     {41, {2}}};
    for (size_t i = 0; i < cases.size(); ++i) {
        const Case& c = cases[i];
        const std::vector<int32_t> codes = random_codes(c.Tc, 300 + static_cast<uint32_t>(i));
        const std::vector<float> whole = h.decode(codes);
        ASSERT_EQ(whole.size(), static_cast<size_t>(c.Tc * kDetokSamplesPerFrame));
        const std::string what = std::string(device_name(dev)) + " chunked, case " +
                                 std::to_string(i) + ", Tc=" + std::to_string(c.Tc);
        const std::vector<float> streamed = h.stream_chunks(*st, codes, c.sizes);
        if (dev == Device::kCPU) {
            expect_identical(streamed, whole, what.c_str());
        } else {
            expect_equal_streams(streamed, whole, what.c_str());
        }
    }
}

TEST(DetokenizerStreaming, ChunkedStepsPlusFlushEqualDecode) {
    chunked_steps_plus_flush_equal_decode(Device::kCPU);
}

TEST(DetokenizerStreaming, ChunkedStepsPlusFlushEqualDecodeCuda) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    chunked_steps_plus_flush_equal_decode(Device::kCUDA);
}

TEST(DetokenizerStreaming, ChunkedOtherWindows) {
    // Maximum-size chunks against the smallest and largest caches new_state makes.
    for (int window : {1, 7, 64}) {
        Harness h(with_window(model_dir(), window));
        ASSERT_TRUE(h.det);
        auto st = h.det->new_state(h.ctx);
        ASSERT_TRUE(st.is_ok()) << st.status().message();
        EXPECT_GE(st->cache_rows(), 2 * (window - 1) + model::kDetokUpsample * kDetokMaxStepFrames);
        const std::vector<int32_t> codes = random_codes(60, 17 + static_cast<uint32_t>(window));
        const std::string what = "chunked, window " + std::to_string(window) + ", Tc=60";
        expect_identical(h.stream_chunks(*st, codes, kMixedChunks), h.decode(codes), what.c_str());
    }
}

TEST(DetokenizerStreaming, ChunkWithBadCodeChangesNothing) {
    Harness h(model_dir());
    ASSERT_TRUE(h.det);
    auto st = h.det->new_state(h.ctx);
    ASSERT_TRUE(st.is_ok()) << st.status().message();
    const int64_t Tc = 4 + kDetokMaxStepFrames + 6;
    const std::vector<int32_t> codes = random_codes(Tc, 5);
    auto frame = [&](int64_t t) { return &codes[static_cast<size_t>(t * kDetokCodebooks)]; };
    std::vector<float> pcm;
    ASSERT_TRUE(h.det->step(h.ctx, *st, frame(0), 1, pcm).is_ok());
    ASSERT_TRUE(h.det->step(h.ctx, *st, frame(1), 3, pcm).is_ok());
    ASSERT_EQ(st->frames(), 4);

    // Frames 4..8 with the third (frame 6) carrying a bad code, then the largest chunk with a
    // negative code in its last frame: each is rejected whole, before anything runs.
    std::vector<int32_t> bad(frame(4), frame(4) + 5 * kDetokCodebooks);
    bad[2 * kDetokCodebooks + 3] = model::kDetokCodebookSize;
    const size_t before = pcm.size();
    Status s = h.det->step(h.ctx, *st, bad.data(), 5, pcm);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("frame 6 codebook 3"), std::string::npos) << s.message();
    EXPECT_EQ(pcm.size(), before);
    EXPECT_EQ(st->frames(), 4);
    bad.assign(frame(4), frame(4) + kDetokMaxStepFrames * kDetokCodebooks);
    bad.back() = -1;
    s = h.det->step(h.ctx, *st, bad.data(), kDetokMaxStepFrames, pcm);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    const std::string last = "frame " + std::to_string(4 + kDetokMaxStepFrames - 1) + " codebook 7";
    EXPECT_NE(s.message().find(last), std::string::npos) << s.message();
    EXPECT_EQ(pcm.size(), before);
    EXPECT_EQ(st->frames(), 4);

    // The utterance goes on as if nothing had been tried.
    for (int64_t t = 4; t < Tc;) {
        const int64_t n = std::min<int64_t>(kDetokMaxStepFrames, Tc - t);
        ASSERT_TRUE(h.det->step(h.ctx, *st, frame(t), n, pcm).is_ok());
        t += n;
    }
    ASSERT_TRUE(h.det->flush(h.ctx, *st, pcm).is_ok());
    expect_identical(pcm, h.decode(codes), "after a rejected chunk");
}

TEST(DetokenizerStreaming, ChunkSizeOutOfRange) {
    Harness h(model_dir());
    ASSERT_TRUE(h.det);
    auto st = h.det->new_state(h.ctx);
    ASSERT_TRUE(st.is_ok()) << st.status().message();
    const std::vector<int32_t> codes = random_codes(kDetokMaxStepFrames + 1, 6);
    std::vector<float> pcm;
    ASSERT_TRUE(h.det->step(h.ctx, *st, codes.data(), 1, pcm).is_ok());
    const size_t before = pcm.size();
    for (int64_t n : {int64_t{0}, int64_t{-1}, int64_t{kDetokMaxStepFrames + 1}}) {
        Status s = h.det->step(h.ctx, *st, codes.data() + kDetokCodebooks, n, pcm);
        EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << "n_frames " << n;
        const std::string range =
            "frames (1 to " + std::to_string(kDetokMaxStepFrames) + " per call)";
        EXPECT_NE(s.message().find(range), std::string::npos) << s.message();
        EXPECT_EQ(pcm.size(), before);
        EXPECT_EQ(st->frames(), 1);
    }
    ASSERT_TRUE(
        h.det->step(h.ctx, *st, codes.data() + kDetokCodebooks, kDetokMaxStepFrames, pcm).is_ok());
    ASSERT_TRUE(h.det->flush(h.ctx, *st, pcm).is_ok());
    expect_identical(pcm, h.decode(codes), "after rejected chunk sizes");
}

// ---- many conversations in one step (Detokenizer::step_many) ------------------------------

// Conversations that join at different rounds, each with its own chunk sizes, go through
// step_many together; each one's PCM equals its own step() calls (bit for bit on the CPU, within
// 1e-5 on a GPU, whose products over all rows may sum in another order). Long enough for several
// cache compactions in the same round. A job with a bad code or with another job's state fails
// alone and changes nothing; a batch too small for the jobs runs nothing.
void step_many_equals_each_alone(Device dev) {
    Harness h(model_dir(), dev);
    ASSERT_TRUE(h.det);
    struct Conv {
        std::vector<int32_t> codes;
        std::vector<int64_t> sizes;
        int join = 0;
        int64_t at = 0;  // frames given so far
        size_t chunk = 0;
        std::vector<float> pcm;
    };
    const std::vector<std::vector<int64_t>> sizes = {{8}, {1}, {3, 8}, {32, 1, 5}, {2, 32}};
    std::vector<Conv> convs(sizes.size());
    for (size_t i = 0; i < convs.size(); ++i) {
        convs[i].codes =
            random_codes(70 + 9 * static_cast<int64_t>(i), 300 + static_cast<uint32_t>(i));
        convs[i].sizes = sizes[i];
        convs[i].join = static_cast<int>(i);
    }
    // Each alone, with the same chunks.
    std::vector<std::vector<float>> ref;
    for (const Conv& c : convs) {
        auto st = h.det->new_state(h.ctx);
        ASSERT_TRUE(st.is_ok()) << st.status().message();
        ref.push_back(h.stream_chunks(*st, c.codes, c.sizes));
    }

    std::vector<model::DetokenizerState> states;
    for (size_t i = 0; i < convs.size(); ++i) {
        auto st = h.det->new_state(h.ctx);
        ASSERT_TRUE(st.is_ok()) << st.status().message();
        states.push_back(std::move(st).value());
    }
    auto batch = h.det->new_batch(h.ctx, 6 * 80);
    ASSERT_TRUE(batch.is_ok()) << batch.status().message();
    auto small = h.det->new_batch(h.ctx, 6 * kDetokMaxStepFrames);
    ASSERT_TRUE(small.is_ok()) << small.status().message();
    EXPECT_FALSE(h.det->new_batch(h.ctx, 6 * kDetokMaxStepFrames - 1).is_ok());

    std::vector<int32_t> bad;
    int most = 0;
    bool rejected_bad = false, rejected_twice = false, rejected_size = false;
    for (int round = 0;; ++round) {
        std::vector<model::DetokenizerJob> jobs;
        std::vector<size_t> who;
        for (size_t i = 0; i < convs.size(); ++i) {
            Conv& c = convs[i];
            const int64_t Tc = static_cast<int64_t>(c.codes.size()) / kDetokCodebooks;
            if (round < c.join || c.at >= Tc) continue;
            const int64_t n = std::min(c.sizes[c.chunk % c.sizes.size()], Tc - c.at);
            jobs.push_back(model::DetokenizerJob{
                &states[i], &c.codes[static_cast<size_t>(c.at * kDetokCodebooks)], n, &c.pcm,
                Status::ok()});
            who.push_back(i);
        }
        if (jobs.empty()) break;
        int64_t rows = 0;
        for (const auto& j : jobs) rows += 6 * j.n_frames;
        if (rows > small->max_rows() && !rejected_size) {
            // Too many rows for the small batch: nothing runs, nothing changes.
            std::vector<int64_t> frames;
            for (size_t i : who) frames.push_back(states[i].frames());
            Status s = h.det->step_many(h.ctx, *small, jobs.data(), jobs.size());
            EXPECT_EQ(s.code(), StatusCode::kOutOfRange) << s.message();
            for (size_t k = 0; k < who.size(); ++k) EXPECT_EQ(states[who[k]].frames(), frames[k]);
            rejected_size = true;
        }
        // Round 6: conversation 1's chunk carries an end-of-audio code; round 4: a second job on
        // conversation 0's state. Both are rejected alone.
        size_t extra = jobs.size();
        if (round == 6 && who.size() > 1 && who[1] == 1) {
            bad.assign(jobs[1].codes, jobs[1].codes + jobs[1].n_frames * kDetokCodebooks);
            bad.back() = model::kDetokCodebookSize;
            jobs[1].codes = bad.data();
        }
        std::vector<float> stray;
        if (round == 4 && who[0] == 0) {
            jobs.push_back(
                model::DetokenizerJob{&states[0], jobs[0].codes, 1, &stray, Status::ok()});
        }
        most = std::max(most, static_cast<int>(who.size()));
        Status s = h.det->step_many(h.ctx, *batch, jobs.data(), jobs.size());
        ASSERT_TRUE(s.is_ok()) << s.message();
        for (size_t k = 0; k < who.size(); ++k) {
            Conv& c = convs[who[k]];
            if (round == 6 && k == 1 && !bad.empty() && who[1] == 1) {
                EXPECT_EQ(jobs[k].status.code(), StatusCode::kInvalidArgument);
                EXPECT_NE(jobs[k].status.message().find("end-of-audio"), std::string::npos)
                    << jobs[k].status.message();
                rejected_bad = true;
                continue;  // the same chunk again next round
            }
            ASSERT_TRUE(jobs[k].status.is_ok()) << "round " << round << " conversation " << who[k]
                                                << ": " << jobs[k].status.message();
            c.at += jobs[k].n_frames;
            ++c.chunk;
        }
        if (jobs.size() > extra) {
            EXPECT_EQ(jobs.back().status.code(), StatusCode::kInvalidArgument);
            EXPECT_TRUE(stray.empty());
            rejected_twice = true;
        }
        bad.clear();
    }
    EXPECT_TRUE(rejected_bad && rejected_twice && rejected_size);
    EXPECT_EQ(most, static_cast<int>(convs.size()));
    // The utterances end together (flush_many); a second flush of state 0 in the same call fails
    // alone.
    std::vector<model::DetokenizerJob> ends;
    for (size_t i = 0; i < convs.size(); ++i)
        ends.push_back(model::DetokenizerJob{&states[i], nullptr, 0, &convs[i].pcm, Status::ok()});
    std::vector<float> stray;
    ends.push_back(model::DetokenizerJob{&states[0], nullptr, 0, &stray, Status::ok()});
    ASSERT_TRUE(h.det->flush_many(h.ctx, *batch, ends.data(), ends.size()).is_ok());
    for (size_t i = 0; i < convs.size(); ++i) {
        ASSERT_TRUE(ends[i].status.is_ok()) << ends[i].status.message();
        EXPECT_EQ(states[i].frames(), 0);
    }
    EXPECT_EQ(ends.back().status.code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(stray.empty());
    for (size_t i = 0; i < convs.size(); ++i) {
        const std::string what =
            std::string(device_name(dev)) + " step_many, conversation " + std::to_string(i);
        if (dev == Device::kCPU)
            expect_identical(convs[i].pcm, ref[i], what.c_str());
        else
            expect_equal_streams(convs[i].pcm, ref[i], what.c_str());
    }
}

TEST(DetokenizerStreaming, StepManyEqualsEachConversationAlone) {
    step_many_equals_each_alone(Device::kCPU);
}

TEST(DetokenizerStreaming, StepManyEqualsEachConversationAloneCuda) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    step_many_equals_each_alone(Device::kCUDA);
}

// ---- the session's worker thread
// ------------------------------------------------------------------

// DetokWorker: jobs run in submission order on the state; results equal direct step() calls bit
// for bit (on the CPU), whether the worker computes queued chunks one by one or together (`paused`
// queues them all first, so that they are joined); a rejected chunk comes back as an error result
// and leaves the state as it was, and the jobs after it still run; take() never blocks, wait()
// returns everything.
void worker_matches_direct_steps(bool paused) {
    Harness h(model_dir());
    ASSERT_TRUE(h.det);
    auto direct = h.det->new_state(h.ctx);
    auto queued = h.det->new_state(h.ctx);
    ASSERT_TRUE(direct.is_ok() && queued.is_ok());
    const std::vector<int32_t> codes = random_codes(20, 9);
    auto frame = [&](int64_t t) { return &codes[static_cast<size_t>(t * kDetokCodebooks)]; };
    // Direct: frames 0, 1..8, 9..16, 17..19, then the flush.
    const std::vector<std::pair<int64_t, int>> chunks = {{0, 1}, {1, 8}, {9, 8}, {17, 3}};
    std::vector<float> want;
    std::vector<size_t> want_sizes;
    for (auto [t, n] : chunks) {
        const size_t before = want.size();
        ASSERT_TRUE(h.det->step(h.ctx, *direct, frame(t), n, want).is_ok());
        want_sizes.push_back(want.size() - before);
    }
    {
        const size_t before = want.size();
        ASSERT_TRUE(h.det->flush(h.ctx, *direct, want).is_ok());
        want_sizes.push_back(want.size() - before);
    }

    // The same chunks, with a rejected one (step 12) between the first two.
    std::vector<runtime::DetokWorker::Result> got;
    {
        runtime::DetokWorker w(*h.det, h.ctx, *queued);
        w.take(got);  // nothing yet, and no wait
        EXPECT_TRUE(got.empty());
        if (paused) w.pause();
        w.submit(frame(0), 1, 10);
        w.submit(frame(1), 8, 11);
        std::vector<int32_t> bad(frame(9), frame(9) + 2 * kDetokCodebooks);
        bad[kDetokCodebooks + 5] = model::kDetokCodebookSize;  // rejected whole
        w.submit(bad.data(), 2, 12);
        w.submit(frame(9), 8, 13);
        w.submit(frame(17), 3, 14);
        w.submit_flush(15);
        if (paused) {
            w.take(got);
            EXPECT_TRUE(got.empty()) << "a paused worker ran a job";
            w.resume();
        }
        w.wait(got);
    }
    ASSERT_EQ(got.size(), 6u);
    std::vector<float> pcm;
    std::vector<size_t> sizes;
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].step, static_cast<int>(10 + i));
        if (i == 2) {
            EXPECT_EQ(got[i].status.code(), StatusCode::kInvalidArgument)
                << got[i].status.message();
            EXPECT_TRUE(got[i].pcm.empty());
            continue;
        }
        EXPECT_TRUE(got[i].status.is_ok()) << got[i].status.message();
        EXPECT_GE(got[i].ms, 0.0);
        pcm.insert(pcm.end(), got[i].pcm.begin(), got[i].pcm.end());
        sizes.push_back(got[i].pcm.size());
    }
    if (paused) {
        // All five chunks (21 frames) were queued: one joined step, rejected for the bad chunk,
        // then one by one. Without the bad chunk they are joined.
        EXPECT_EQ(got[0].joined, 5);
    }
    EXPECT_EQ(sizes, want_sizes);
    expect_identical(pcm, want, "worker vs direct steps");
}

// DetokBatcher: three sessions' workers on one batcher thread. Each round takes the first queued
// job of every worker: the chunks of a round run as one step_many (split when they exceed the
// batch's rows), flushes alone; each worker's results come back in its order and equal its direct
// step() calls bit for bit (the CPU); a rejected chunk fails alone.
TEST(DetokenizerStreaming, BatcherMatchesEachWorkerAlone) {
    Harness h(model_dir());
    ASSERT_TRUE(h.det);
    constexpr int kWorkers = 3;
    // Worker k's chunks (frames each); worker 1's second chunk is rejected (a bad code).
    const std::vector<std::vector<int>> plans = {{1, 8, 8, 3}, {1, 2, 8, 32, 5}, {1, 32, 32, 4}};
    std::vector<std::vector<int32_t>> codes;
    std::vector<std::vector<float>> want(kWorkers);
    for (int k = 0; k < kWorkers; ++k) {
        int total = 0;
        for (int n : plans[static_cast<size_t>(k)]) total += n;
        codes.push_back(random_codes(total, 40 + static_cast<uint32_t>(k)));
        auto st = h.det->new_state(h.ctx);
        ASSERT_TRUE(st.is_ok());
        int t = 0;
        for (int n : plans[static_cast<size_t>(k)]) {
            ASSERT_TRUE(h.det
                            ->step(h.ctx, *st, &codes.back()[static_cast<size_t>(t) * 8], n,
                                   want[static_cast<size_t>(k)])
                            .is_ok());
            t += n;
        }
        ASSERT_TRUE(h.det->flush(h.ctx, *st, want[static_cast<size_t>(k)]).is_ok());
    }
    // 192 rows (32 frames) a step. Every job is queued before the first round, so the rounds are
    // known: each worker gives its queued chunks that fit one step (32 frames), or its flush.
    //   round 1: worker 0's 1+8+8+3 (120 rows, a step alone); worker 1's 1+bad 2+2+8 (rejected as
    //            one, then run one by one) with worker 2's 1 (84 rows, one step)
    //   round 2: worker 0's flush; worker 1's 32 and worker 2's 32 (a step each)
    //   round 3: worker 1's 5, worker 2's 32 (a step each)
    //   round 4: worker 1's flush; worker 2's 4
    //   round 5: worker 2's flush
    auto made = runtime::DetokBatcher::create(*h.det, h.ctx, /*owns_ctx=*/false, 6 * 32);
    ASSERT_TRUE(made.is_ok()) << made.status().message();
    runtime::DetokBatcher& b = **made;
    std::vector<model::DetokenizerState> states;
    for (int k = 0; k < kWorkers; ++k) {
        auto st = h.det->new_state(h.ctx);
        ASSERT_TRUE(st.is_ok());
        states.push_back(std::move(st).value());
    }
    std::vector<std::vector<runtime::DetokWorker::Result>> got(kWorkers);
    std::vector<int32_t> bad;
    int n_chunks = 0;
    {
        std::vector<std::unique_ptr<runtime::DetokWorker>> ws;
        for (int k = 0; k < kWorkers; ++k)
            ws.push_back(std::make_unique<runtime::DetokWorker>(states[static_cast<size_t>(k)], b));
        b.pause();
        for (int k = 0; k < kWorkers; ++k) {
            int t = 0, step = 0;
            for (int n : plans[static_cast<size_t>(k)]) {
                const int32_t* c = &codes[static_cast<size_t>(k)][static_cast<size_t>(t) * 8];
                if (k == 1 && step == 1) {  // a rejected chunk before the real one
                    bad.assign(c, c + 2 * kDetokCodebooks);
                    bad[3] = -1;
                    ws[1]->submit(bad.data(), 2, step++);
                    ++n_chunks;
                }
                ws[static_cast<size_t>(k)]->submit(c, n, step++);
                ++n_chunks;
                t += n;
            }
            ws[static_cast<size_t>(k)]->submit_flush(step);
        }
        for (int k = 0; k < kWorkers; ++k) {
            ws[static_cast<size_t>(k)]->take(got[static_cast<size_t>(k)]);
            EXPECT_TRUE(got[static_cast<size_t>(k)].empty()) << "a paused batcher ran a job";
        }
        b.resume();
        for (int k = 0; k < kWorkers; ++k)
            ws[static_cast<size_t>(k)]->wait(got[static_cast<size_t>(k)]);
    }
    EXPECT_EQ(b.chunks(), n_chunks);
    EXPECT_EQ(b.steps(), 5) << "rounds";
    // each result's `joined`: the chunks of its step (a rejected join's chunks ran alone)
    const std::vector<std::vector<int>> joined = {
        {4, 4, 4, 4, 1}, {1, 1, 1, 1, 1, 1, 1}, {5, 1, 1, 1, 1}};
    for (int k = 0; k < kWorkers; ++k) {
        const auto& g = got[static_cast<size_t>(k)];
        ASSERT_EQ(g.size(), plans[static_cast<size_t>(k)].size() + 1 + (k == 1 ? 1 : 0));
        std::vector<float> pcm;
        for (size_t i = 0; i < g.size(); ++i) {
            EXPECT_EQ(g[i].step, static_cast<int>(i));
            if (k == 1 && i == 1) {
                EXPECT_EQ(g[i].status.code(), StatusCode::kInvalidArgument);
                EXPECT_TRUE(g[i].pcm.empty());
                continue;
            }
            ASSERT_TRUE(g[i].status.is_ok()) << g[i].status.message();
            pcm.insert(pcm.end(), g[i].pcm.begin(), g[i].pcm.end());
        }
        for (size_t i = 0; i < g.size(); ++i)
            EXPECT_EQ(g[i].joined, joined[static_cast<size_t>(k)][i])
                << "worker " << k << ", result " << i;
        const std::string what = "batcher, worker " + std::to_string(k);
        expect_identical(pcm, want[static_cast<size_t>(k)], what.c_str());
    }
}

TEST(DetokenizerStreaming, WorkerMatchesDirectStepsAndReportsErrors) {
    worker_matches_direct_steps(false);
}

TEST(DetokenizerStreaming, WorkerJoinsQueuedChunks) {
    worker_matches_direct_steps(true);
}

// Chunks queued while the worker is paused: on the CPU joined into steps of up to 32 frames, on
// CUDA run one by one (a joined step would take other kernels for its row count, and the PCM
// would then depend on timing: detok_worker.cpp); either way the PCM of direct steps, bit for bit.
void worker_steps_equal_direct_steps(Device device) {
    Harness h(model_dir(), device);
    ASSERT_TRUE(h.det);
    auto direct = h.det->new_state(h.ctx);
    auto queued = h.det->new_state(h.ctx);
    ASSERT_TRUE(direct.is_ok() && queued.is_ok());
    // Two utterances: chunks of 1, 8, 8, 8, 8 (33 frames: joined as 32 + 1) and 5, 8, 2.
    const std::vector<std::vector<int>> utterances = {{1, 8, 8, 8, 8}, {5, 8, 2}};
    std::vector<float> want, pcm;
    std::vector<size_t> want_sizes, sizes;
    std::vector<runtime::DetokWorker::Result> got;
    runtime::DetokWorker w(*h.det, h.ctx, *queued);
    w.pause();
    uint32_t seed = 40;
    std::vector<std::vector<int32_t>> keep;  // submit() copies, but keep the codes for clarity
    for (const auto& u : utterances) {
        int total = 0;
        for (int n : u) total += n;
        keep.push_back(random_codes(total, seed++));
        const std::vector<int32_t>& codes = keep.back();
        int t = 0;
        for (int n : u) {
            const size_t before = want.size();
            ASSERT_TRUE(h.det
                            ->step(h.ctx, *direct, &codes[static_cast<size_t>(t * kDetokCodebooks)],
                                   n, want)
                            .is_ok());
            want_sizes.push_back(want.size() - before);
            EXPECT_EQ(want_sizes.back(),
                      static_cast<size_t>(model::Detokenizer::step_samples(t, n)));
            w.submit(&codes[static_cast<size_t>(t * kDetokCodebooks)], n, t);
            t += n;
        }
        const size_t before = want.size();
        ASSERT_TRUE(h.det->flush(h.ctx, *direct, want).is_ok());
        want_sizes.push_back(want.size() - before);
        w.submit_flush(t);
    }
    w.resume();
    w.wait(got);
    ASSERT_EQ(got.size(), want_sizes.size());
    std::vector<int> joined;
    for (const auto& r : got) {
        ASSERT_TRUE(r.status.is_ok()) << r.status.message();
        pcm.insert(pcm.end(), r.pcm.begin(), r.pcm.end());
        sizes.push_back(r.pcm.size());
        joined.push_back(r.joined);
    }
    // 32 frames at most per step; a flush is never joined; nothing is joined on CUDA.
    if (device == Device::kCPU)
        EXPECT_EQ(joined, (std::vector<int>{4, 4, 4, 4, 1, 1, 3, 3, 3, 1}));
    else
        EXPECT_EQ(joined, std::vector<int>(joined.size(), 1));
    EXPECT_EQ(sizes, want_sizes);
    expect_identical(pcm, want, "queued worker steps vs direct steps");
}

TEST(DetokenizerStreaming, WorkerJoinedStepEqualsDirectSteps) {
    worker_steps_equal_direct_steps(Device::kCPU);
}

TEST(DetokenizerStreaming, WorkerOnCudaRunsQueuedChunksAlone) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    worker_steps_equal_direct_steps(Device::kCUDA);
}

// ---- session: generate() with chunked detokenization -----------------------------------------

struct Turn {
    Status status;
    std::vector<float> pcm;                          // every kPcm event's samples, in order
    std::vector<std::pair<int, size_t>> pcm_events;  // (step, samples) per kPcm event
    std::vector<std::pair<int, std::array<int32_t, 8>>> frames;  // (step, codes) per audio frame
    runtime::TurnStats stats;
};

std::unique_ptr<model::LfmAudioModel> load_tiny(Device dev = Device::kCPU,
                                                bool detok_on_cpu = false) {
    model::ModelOptions o;
    o.device = dev;
    o.detokenizer_on_cpu = detok_on_cpu;
    o.threads = n_threads();
    return test::load_tiny_model(ops::Precision::kF32, 1024, o);
}

// A TTS-style turn on the tiny model (interleaved, so text and audio alternate); stops when
// `stop_after_frames` audio frames have been seen (0 = never).
Turn run_turn(const model::LfmAudioModel& m, int chunk, int steps, int stop_after_frames = 0,
              bool async = true, bool ramp = false, bool shared_lane = false) {
    Turn t;
    runtime::SessionOptions so;
    if (shared_lane) {  // as the server makes them
        auto lane = runtime::DeviceLane::create(m);
        EXPECT_TRUE(lane.is_ok()) << lane.status().message();
        if (!lane.is_ok()) return t;
        so.lane = *lane;
    }
    auto s = runtime::Session::create(m, so);
    EXPECT_TRUE(s.is_ok()) << s.status().message();
    if (!s.is_ok()) return t;
    runtime::Session& ss = **s;
    EXPECT_TRUE(test::open_s2s_turn(ss, "Say something long, please.").is_ok());
    runtime::GenerateOptions g;
    g.mode = runtime::GenerationMode::kInterleaved;
    g.max_new_tokens = steps;
    g.audio_temperature = 1.0f;
    g.audio_top_k = 4;
    g.seed = 11;
    g.suppress_end = true;
    g.detok_chunk_frames = chunk;
    g.detok_async = async;
    g.detok_ramp = ramp;
    bool ended = false;
    t.status = ss.generate(
        g,
        [&](const runtime::Event& e) {
            if (e.kind == runtime::EventKind::kAudioFrame) {
                t.frames.emplace_back(e.step, e.codes);
                return stop_after_frames == 0 ||
                       static_cast<int>(t.frames.size()) < stop_after_frames;
            }
            if (e.kind == runtime::EventKind::kEndOfTurn) ended = true;
            if (e.kind == runtime::EventKind::kPcm) {
                EXPECT_FALSE(ended) << "PCM after the end of the turn";
                t.pcm.insert(t.pcm.end(), e.pcm.begin(), e.pcm.end());
                t.pcm_events.emplace_back(e.step, e.pcm.size());
            }
            return true;
        },
        &t.stats);
    return t;
}

// The frames the detokenizer accepts (an end-of-audio frame, or code 2048 anywhere, is skipped).
std::vector<std::pair<int, std::array<int32_t, 8>>> decodable(const Turn& t) {
    std::vector<std::pair<int, std::array<int32_t, 8>>> out;
    for (const auto& f : t.frames)
        if (std::all_of(f.second.begin(), f.second.end(),
                        [](int32_t c) { return c < model::kDetokCodebookSize; }))
            out.push_back(f);
    return out;
}

std::vector<float> decode_frames(
    const model::LfmAudioModel& m,
    const std::vector<std::pair<int, std::array<int32_t, 8>>>& frames) {
    std::vector<int32_t> codes;
    for (const auto& f : frames) codes.insert(codes.end(), f.second.begin(), f.second.end());
    const int64_t Tc = static_cast<int64_t>(frames.size());
    ThreadPool pool(n_threads());
    ops::Context ctx;
    ctx.pool = &pool;
    Arena scratch;
    EXPECT_TRUE(scratch.reserve(Device::kCPU, m.detokenizer()->decode_scratch_bytes(Tc)));
    std::vector<float> pcm;
    Status st = m.detokenizer()->decode(ctx, codes.data(), Tc, scratch, pcm);
    EXPECT_TRUE(st.is_ok()) << st.message();
    return pcm;
}

TEST(DetokenizerStreaming, SessionPcmIndependentOfChunkSize) {
    auto m = load_tiny();
    ASSERT_TRUE(m);
    ASSERT_NE(m->detokenizer(), nullptr);
    const int steps = 96;
    const Turn one = run_turn(*m, 1, steps);
    ASSERT_TRUE(one.status.is_ok()) << one.status.message();
    const auto frames = decodable(one);
    ASSERT_GE(frames.size(), 30u) << "the turn should hold enough audio to fill several chunks";
    const std::vector<float> whole = decode_frames(*m, frames);
    expect_identical(one.pcm, whole, "session, chunk 1");
    // Per frame: one event per frame, at its step, then the flushed tail.
    ASSERT_EQ(one.pcm_events.size(), frames.size() + 1);
    for (size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(one.pcm_events[i].first, frames[i].first);

    for (int chunk : {3, kDetokMaxStepFrames}) {
        const Turn t = run_turn(*m, chunk, steps);
        ASSERT_TRUE(t.status.is_ok()) << t.status.message();
        ASSERT_EQ(t.frames, one.frames) << "the detokenizer must not change what is generated";
        const std::string what = "session, chunk " + std::to_string(chunk);
        expect_identical(t.pcm, one.pcm, what.c_str());
        EXPECT_GT(t.stats.detok_ms, 0.0);
        // The first decodable frame alone, at its step; then chunks of `chunk` frames, each event
        // at the step of its last frame; the remainder at the end; the flushed tail.
        ASSERT_FALSE(t.pcm_events.empty());
        EXPECT_EQ(t.pcm_events[0].first, frames[0].first);
        EXPECT_EQ(t.pcm_events[0].second, 1440u);
        const size_t rest = frames.size() - 1;
        const size_t n_chunks =
            (rest + static_cast<size_t>(chunk) - 1) / static_cast<size_t>(chunk);
        ASSERT_EQ(t.pcm_events.size(), 1 + n_chunks + 1) << what;
        for (size_t c = 0; c < n_chunks; ++c) {
            const size_t last =
                std::min(1 + (c + 1) * static_cast<size_t>(chunk), frames.size()) - 1;
            const size_t n = last - c * static_cast<size_t>(chunk);
            EXPECT_EQ(t.pcm_events[1 + c].first, frames[last].first) << what << " chunk " << c;
            EXPECT_EQ(t.pcm_events[1 + c].second, n * kDetokSamplesPerFrame)
                << what << " chunk " << c;
        }
        EXPECT_EQ(t.pcm_events.back().second, 480u);
        std::printf(
            "[detok streaming] session, chunk %d: %zu audio frames (%zu decodable), %zu kPcm "
            "events, detokenizer %.1f ms\n",
            chunk, t.frames.size(), frames.size(), t.pcm_events.size(), t.stats.detok_ms);
    }
}

// Growing chunks (GenerateOptions::detok_ramp): the first frame alone, then 2, 4, 8, 8, … frames
// per call, each event at its last frame's step; the PCM is the same as one frame per call.
TEST(DetokenizerStreaming, RampedChunksGrowAndKeepThePcm) {
    auto m = load_tiny();
    ASSERT_TRUE(m);
    const int steps = 96;
    const Turn one = run_turn(*m, 1, steps);
    ASSERT_TRUE(one.status.is_ok()) << one.status.message();
    const auto frames = decodable(one);
    ASSERT_GE(frames.size(), 30u);
    for (bool async : {false, true}) {
        const Turn t = run_turn(*m, 8, steps, 0, async, /*ramp=*/true);
        ASSERT_TRUE(t.status.is_ok()) << t.status.message();
        ASSERT_EQ(t.frames, one.frames);
        expect_identical(t.pcm, one.pcm,
                         async ? "ramped chunks, worker" : "ramped chunks, in loop");
        std::vector<size_t> want;  // frames per event before the tail
        want.push_back(1);
        size_t left = frames.size() - 1;
        for (size_t c = 2; left > 0; c = std::min<size_t>(2 * c, 8)) {
            want.push_back(std::min(c, left));
            left -= want.back();
        }
        ASSERT_EQ(t.pcm_events.size(), want.size() + 1);
        size_t last = 0;
        for (size_t i = 0; i < want.size(); ++i) {
            last += want[i];
            // the first frame gives 1440 samples; the detokenizer's last 480 come with the tail
            EXPECT_EQ(t.pcm_events[i].second, i == 0 ? 1440u : want[i] * kDetokSamplesPerFrame)
                << "event " << i;
            EXPECT_EQ(t.pcm_events[i].first, frames[last - 1].first) << "event " << i;
        }
        EXPECT_EQ(t.pcm_events.back().second, 480u);
    }
}

// The detokenizer on its own thread (the default) and inside the loop: the same frames, the same
// PCM, the same kPcm events (steps and sizes); only when the events arrive differs.
TEST(DetokenizerStreaming, SessionAsyncEqualsSync) {
    auto m = load_tiny();
    ASSERT_TRUE(m);
    for (int chunk : {1, kDetokMaxStepFrames}) {
        const Turn sync = run_turn(*m, chunk, 96, 0, /*async=*/false);
        const Turn async = run_turn(*m, chunk, 96, 0, /*async=*/true);
        const Turn lane = run_turn(*m, chunk, 96, 0, true, false, /*shared_lane=*/true);
        ASSERT_TRUE(sync.status.is_ok()) << sync.status.message();
        ASSERT_TRUE(async.status.is_ok()) << async.status.message();
        ASSERT_TRUE(lane.status.is_ok()) << lane.status.message();
        ASSERT_EQ(async.frames, sync.frames);
        expect_identical(async.pcm, sync.pcm, "async vs sync");
        EXPECT_EQ(async.pcm_events, sync.pcm_events);
        // On a shared lane (its end goes through the worker the same way): same samples, chunks.
        ASSERT_EQ(lane.frames, sync.frames);
        expect_identical(lane.pcm, sync.pcm, "shared lane vs sync");
        EXPECT_EQ(lane.pcm_events, sync.pcm_events);
        EXPECT_GT(async.stats.detok_busy_ms, 0.0);
        for (const Turn* t : {&sync, &async}) {  // per-step times: inside decode, both kinds seen
            EXPECT_GT(t->stats.text_step_ms, 0.0);
            EXPECT_GT(t->stats.audio_step_ms, 0.0);
            EXPECT_LE(t->stats.text_step_ms + t->stats.audio_step_ms, t->stats.decode_ms + 1e-6);
        }
        EXPECT_LE(async.stats.detok_ms, async.stats.detok_busy_ms + 1e-9)
            << "the turn cannot have waited longer for the detokenizer than it worked";
        // Stopped early: the buffered frames are drained on the worker as well.
        const Turn ss = run_turn(*m, chunk, 96, 6, false), sa = run_turn(*m, chunk, 96, 6, true);
        ASSERT_TRUE(sa.status.is_ok()) << sa.status.message();
        ASSERT_EQ(sa.frames, ss.frames);
        expect_identical(sa.pcm, ss.pcm, "async vs sync, stopped at the 6th frame");
    }
}

// A CUDA session whose detokenizer stays on the host (ModelOptions::detokenizer_on_cpu): the PCM
// of its turn is the CPU detokenizer's whole-utterance decode of the frames the GPU chose, bit for
// bit, in both the worker and the in-loop mode.
TEST(DetokenizerStreaming, CudaSessionWithHostDetokenizer) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    auto m = load_tiny(Device::kCUDA, /*detok_on_cpu=*/true);
    ASSERT_TRUE(m);
    ASSERT_EQ(m->detokenizer_device(), Device::kCPU);
    auto host = load_tiny();
    ASSERT_TRUE(host);
    for (bool async : {true, false}) {
        const Turn t = run_turn(*m, kDetokMaxStepFrames, 96, 0, async);
        ASSERT_TRUE(t.status.is_ok()) << t.status.message();
        const auto frames = decodable(t);
        ASSERT_GE(frames.size(), 2u);
        expect_identical(t.pcm, decode_frames(*host, frames),
                         async ? "host detokenizer, worker" : "host detokenizer, in loop");
    }
}

TEST(DetokenizerStreaming, SessionDrainsBufferedFramesWhenStopped) {
    auto m = load_tiny();
    ASSERT_TRUE(m);
    // Stopped at the 6th audio frame: with chunks of 8, frames 2..6 are still buffered then.
    const Turn t = run_turn(*m, kDetokMaxStepFrames, 96, /*stop_after_frames=*/6);
    ASSERT_TRUE(t.status.is_ok()) << t.status.message();
    ASSERT_EQ(t.frames.size(), 6u);
    const auto frames = decodable(t);
    ASSERT_GE(frames.size(), 2u);
    expect_identical(t.pcm, decode_frames(*m, frames), "session stopped early, chunk 8");
    ASSERT_EQ(t.pcm_events.size(), 3u);  // first frame, the drained rest, the tail
    EXPECT_EQ(t.pcm_events[1].first, frames.back().first);
}

TEST(DetokenizerStreaming, SessionRejectsBadChunkSize) {
    auto m = load_tiny();
    ASSERT_TRUE(m);
    for (int chunk : {0, -3, kDetokMaxStepFrames + 1}) {
        const Turn t = run_turn(*m, chunk, 8);
        EXPECT_EQ(t.status.code(), StatusCode::kInvalidArgument) << chunk;
        EXPECT_NE(t.status.message().find("detok_chunk_frames"), std::string::npos)
            << t.status.message();
        EXPECT_TRUE(t.frames.empty());
    }
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

    // The same frames in steps of kDetokMaxStepFrames (a fresh utterance; the first step warms up).
    ASSERT_TRUE(h.det->flush(h.ctx, *st, pcm).is_ok());
    const int64_t n = kDetokMaxStepFrames;
    ms.clear();
    for (int64_t t = 0; t + n <= Tc; t += n) {
        const auto t0 = std::chrono::steady_clock::now();
        ASSERT_TRUE(h.det->step(h.ctx, *st, &codes[static_cast<size_t>(t * 8)], n, pcm).is_ok());
        if (t > 0)
            ms.push_back(
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                    .count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf(
        "[detok streaming] %s step() of %lld frames: median %.3f ms per call, %.3f ms per "
        "frame\n",
        device_name(dev), static_cast<long long>(n), ms[ms.size() / 2],
        ms[ms.size() / 2] / static_cast<double>(n));
}

TEST(DetokenizerStreaming, PerFrameCost) {
    per_frame_cost(Device::kCPU);
}

TEST(DetokenizerStreaming, PerFrameCostCuda) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    per_frame_cost(Device::kCUDA);
}

}  // namespace
}  // namespace voxrt
