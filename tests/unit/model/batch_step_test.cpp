// Lfm2Network::forward_batch, the backbone's decode step for several sequences at once (continuous
// batching), on the tiny checkpoint: a sequence's output must not depend on who shares its batch.
//
// Four sequences with prompts of different lengths (so their positions differ at every step) are
// decoded greedily alone (forward(), one step at a time) and then together, while the batch changes
// under them: one joins late, one leaves early, and the order of the rows changes from step to
// step.
// - fp32: every sequence's greedy tokens identical to its run alone, and every step's output within
//   1e-5 relative L2 of the lone run's. On the CPU, whose linear kernels give a row the same bits
//   for 1 to 8 rows (the batches here have at most 4), the outputs must be bit for bit the lone
//   run's (0); on CUDA the
//   batch takes the op sequence and GEMM kernels where a lone step takes the fused kernel, so
//   only summation order differs (~1e-7 relative).
// - bf16: teacher-forced on the fp32 tokens, each step's output within the bf16 bar of
//   tests/cuda/fused_cuda_test.cpp (3e-2 relative L2) of the lone run's.
// A wrong memory for a row (another sequence's cache or conv history) changes the output by
// order 1: both bars catch it.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/arena.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "model/audio_head.h"
#include "model/config.h"
#include "model/lfm2.h"
#include "model/weights.h"
#include "cuda/cuda_test_util.h"  // test::Rng
#include "util/compare.h"
#include "util/test_paths.h"

namespace voxrt {
namespace {

struct Dev {
    Buffer buf;
    Tensor t;
};

class BatchStep : public ::testing::TestWithParam<Device> {
protected:
    void SetUp() override {
        if (GetParam() == Device::kCUDA && !backend::device_available(Device::kCUDA))
            GTEST_SKIP() << "no CUDA device";
        const std::string dir = test::data_dir() + "/tiny/model";
        auto cfg = model::load_model_config(dir + "/config.json");
        ASSERT_TRUE(cfg.is_ok()) << cfg.status().message();
        cfg_ = *cfg;
        auto f = io::SafeTensorsFile::open(dir + "/model.safetensors");
        ASSERT_TRUE(f.is_ok()) << f.status().message();
        file_ = std::make_unique<io::SafeTensorsFile>(std::move(*f));
    }

    Dev alloc(DType dt, std::initializer_list<int64_t> shape) {
        Dev d;
        Tensor probe = Tensor::make(nullptr, dt, ctx_.device, shape);
        d.buf = Buffer::allocate(ctx_.device, probe.nbytes());
        d.t = d.buf.view(dt, shape);
        return d;
    }
    // Mean ms of `reps` calls of fn after one untimed call, the device drained before and after.
    template <class Fn>
    double time_ms(int reps, Fn fn) {
        fn();
        EXPECT_TRUE(ops::synchronize(ctx_).is_ok());
        const auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r) fn();
        EXPECT_TRUE(ops::synchronize(ctx_).is_ok());
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                   .count() /
               reps;
    }
    std::vector<int32_t> download_i32(const Tensor& t) {
        std::vector<int32_t> v(static_cast<size_t>(t.numel()));
        Tensor h = Tensor::make(v.data(), DType::kI32, Device::kCPU, {t.numel()});
        ops::copy(ctx_, t, h);
        EXPECT_TRUE(ops::synchronize(ctx_).is_ok());
        return v;
    }
    std::vector<float> download(const Tensor& t) {
        std::vector<float> v(static_cast<size_t>(t.numel()));
        Tensor h = Tensor::make(v.data(), DType::kF32, Device::kCPU, {t.numel()});
        ops::copy(ctx_, t, h);
        EXPECT_TRUE(ops::synchronize(ctx_).is_ok());
        return v;
    }

    // One sequence: its state and where it stands.
    struct Seq {
        model::Lfm2State st;
        int pos = 0;        // the next position
        int32_t token = 0;  // the next input token
        std::vector<int32_t> tokens;
        std::vector<std::vector<float>> outs;  // per step
    };

    // Prompt of `len` random embeddings (seeded), prefilled alone; the first token comes from it.
    void start(Seq& s, int len, uint32_t seed) {
        auto st = net_->new_state(ctx_, 256);
        ASSERT_TRUE(st.is_ok()) << st.status().message();
        s.st = std::move(*st);
        const int64_t D = cfg_.lfm.hidden_size;
        test::Rng rng(seed);
        std::vector<float> xh(static_cast<size_t>(len * D));
        for (float& v : xh) v = 0.5f * rng.normal();
        std::vector<int32_t> ph(static_cast<size_t>(len));
        for (int i = 0; i < len; ++i) ph[static_cast<size_t>(i)] = i;
        Dev x = alloc(ctx_.act_dtype(), {len, D}), p = alloc(DType::kI32, {len}),
            o = alloc(ctx_.act_dtype(), {len, D});
        ops::copy(ctx_, Tensor::make(xh.data(), DType::kF32, Device::kCPU, {len, D}), x.t);
        ops::copy(ctx_, Tensor::make(ph.data(), DType::kI32, Device::kCPU, {len}), p.t);
        net_->forward(ctx_, s.st, x.t, p.t, *arena_, o.t);
        Tensor last = o.t.rows(len - 1, len);
        s.token = argmax_rows(last)[0];
        s.pos = len;
    }

    std::vector<int32_t> argmax_rows(const Tensor& h) {
        const int64_t B = h.shape[0], V = cfg_.lfm.vocab_size;
        Dev lg = alloc(ctx_.act_dtype(), {B, V});
        ops::linear(ctx_, h, net_->text_head(), nullptr, lg.t);
        const std::vector<float> v = download(lg.t);
        std::vector<int32_t> ids;
        for (int64_t b = 0; b < B; ++b) {
            const float* r = v.data() + b * V;
            ids.push_back(static_cast<int32_t>(std::max_element(r, r + V) - r));
        }
        return ids;
    }

    // One engine step for the sequences `which` (rows in that order). `forced`: per sequence, the
    // tokens to feed instead of their own argmax (teacher forcing), indexed by step.
    void step(std::vector<Seq*> which, bool batched,
              const std::vector<std::vector<int32_t>>* forced, const std::vector<int>& ids) {
        const int64_t B = static_cast<int64_t>(which.size()), D = cfg_.lfm.hidden_size;
        std::vector<int32_t> tok, pos;
        for (size_t i = 0; i < which.size(); ++i) {
            Seq& s = *which[i];
            const size_t n = s.outs.size();
            tok.push_back(forced ? (*forced)[static_cast<size_t>(ids[i])][n] : s.token);
            pos.push_back(s.pos);
        }
        Dev t = alloc(DType::kI32, {B}), p = alloc(DType::kI32, {B});
        Dev x = alloc(ctx_.act_dtype(), {B, D}), o = alloc(ctx_.act_dtype(), {B, D});
        ops::copy(ctx_, Tensor::make(tok.data(), DType::kI32, Device::kCPU, {B}), t.t);
        ops::copy(ctx_, Tensor::make(pos.data(), DType::kI32, Device::kCPU, {B}), p.t);
        ops::embedding(ctx_, net_->embed_tokens(), t.t, x.t);
        if (batched) {
            std::vector<model::Lfm2Network::Memory> mems;
            for (Seq* s : which)
                mems.push_back({&s->st.conv_state, &s->st.k_cache, &s->st.v_cache});
            net_->forward_batch(ctx_, mems, x.t, p.t, *arena_, o.t);
        } else {
            ASSERT_EQ(B, 1);
            net_->forward(ctx_, which[0]->st, x.t, p.t, *arena_, o.t);
        }
        const std::vector<int32_t> next = argmax_rows(o.t);
        const std::vector<float> ov = download(o.t);
        for (size_t i = 0; i < which.size(); ++i) {
            Seq& s = *which[i];
            s.tokens.push_back(tok[i]);
            s.outs.emplace_back(ov.begin() + static_cast<int64_t>(i) * D,
                                ov.begin() + static_cast<int64_t>(i + 1) * D);
            s.token = next[i];
            ++s.pos;
        }
    }

    // Runs the four sequences alone, then batched with a changing membership; returns the worst
    // per-step relative L2 between the two and checks the tokens.
    double run(ops::Precision prec, const std::vector<std::vector<int32_t>>* forced,
               std::vector<std::vector<int32_t>>* tokens_alone) {
        if (GetParam() == Device::kCUDA) {
            auto c = backend::create_context(Device::kCUDA, prec);
            EXPECT_TRUE(c.is_ok()) << c.status().message();
            if (!c.is_ok()) return 1e9;
            ctx_ = *c;
        } else {
            ctx_ = ops::Context{};
            ctx_.precision = prec;
            ctx_.pool = &pool_;
        }
        double worst = 0;
        {
            model::WeightStore store(ctx_);
            model::Lfm2Network::Options opt;
            opt.max_positions = 256;
            auto net = model::Lfm2Network::load(cfg_.lfm, *file_, "lfm.", store, opt);
            EXPECT_TRUE(net.is_ok()) << net.status().message();
            if (!net.is_ok()) return 1e9;
            net_ = &*net;
            arena_ = std::make_unique<Arena>();
            EXPECT_TRUE(arena_->reserve(ctx_.device, 64u << 20));
            const int lens[kSeqs] = {5, 9, 13, 3};
            const int steps[kSeqs] = {12, 6, 12, 9};  // sequence 1 leaves early
            // Alone.
            Seq alone[kSeqs];
            for (int i = 0; i < kSeqs; ++i) {
                start(alone[i], lens[i], 100 + static_cast<uint32_t>(i));
                for (int k = 0; k < steps[i]; ++k) step({&alone[i]}, false, forced, {i});
            }
            // Together: sequence 3 joins at engine step 3; rows are rotated every step.
            Seq tog[kSeqs];
            for (int i = 0; i < 3; ++i) start(tog[i], lens[i], 100 + static_cast<uint32_t>(i));
            for (int e = 0; e < 16; ++e) {
                if (e == 3) start(tog[3], lens[3], 103);
                std::vector<Seq*> which;
                std::vector<int> ids;
                for (int r = 0; r < kSeqs; ++r) {
                    const int i = (r + e) % kSeqs;
                    if (i == 3 && e < 3) continue;
                    if (static_cast<int>(tog[i].outs.size()) >= steps[i]) continue;
                    which.push_back(&tog[i]);
                    ids.push_back(i);
                }
                if (which.empty()) break;
                step(which, true, forced, ids);
            }
            for (int i = 0; i < kSeqs; ++i) {
                EXPECT_EQ(static_cast<int>(tog[i].outs.size()), steps[i]) << "sequence " << i;
                EXPECT_EQ(tog[i].tokens, alone[i].tokens) << "sequence " << i;
                for (size_t k = 0; k < std::min(tog[i].outs.size(), alone[i].outs.size()); ++k) {
                    const auto e = test::compare(tog[i].outs[k].data(), alone[i].outs[k].data(),
                                                 alone[i].outs[k].size());
                    worst = std::max(worst, e.rel_l2);
                }
                if (tokens_alone) {
                    std::vector<int32_t> t = alone[i].tokens;
                    t.push_back(alone[i].token);
                    tokens_alone->push_back(t);
                }
            }
            net_ = nullptr;
            arena_.reset();
        }
        if (GetParam() == Device::kCUDA) backend::destroy_context(ctx_);
        return worst;
    }

    static constexpr int kSeqs = 4;
    model::AudioModelConfig cfg_;
    std::unique_ptr<io::SafeTensorsFile> file_;
    ThreadPool pool_{2};
    ops::Context ctx_;
    std::unique_ptr<Arena> arena_;  // per run (its device)
    const model::Lfm2Network* net_ = nullptr;
};

TEST_P(BatchStep, Fp32GreedyEqualsAlone) {
    std::vector<std::vector<int32_t>> tokens;
    const double worst = run(ops::Precision::kF32, nullptr, &tokens);
    std::printf("[batch step fp32 %s] worst step rel L2 vs alone %.3g\n", device_name(GetParam()),
                worst);
    EXPECT_LE(worst, 1e-5);
    if (GetParam() == Device::kCPU) {
        EXPECT_EQ(worst, 0.0);
    }
    // The sequences are not all the same (so equality is not trivial).
    EXPECT_NE(tokens[0], tokens[2]);
}

TEST_P(BatchStep, Bf16TeacherForcedWithinBar) {
    std::vector<std::vector<int32_t>> tokens;
    run(ops::Precision::kF32, nullptr, &tokens);
    const double worst = run(ops::Precision::kBF16, &tokens, nullptr);
    std::printf("[batch step bf16 %s] worst step rel L2 vs alone %.3g\n", device_name(GetParam()),
                worst);
    EXPECT_LE(worst, 3e-2);
    if (GetParam() == Device::kCPU) {
        EXPECT_EQ(worst, 0.0);
    }
}

// AudioHead::sample_frames: the depthformer's frame for several sequences at once. Three sequences
// (two greedy, one sampling top-k with its own draw counters) over four frames, one of them absent
// from the second frame, against sample_frame of each alone: the same codes, and on the CPU the
// same logits bit for bit (fp32 and bf16); on CUDA within the fused frame kernel's bars
// (tests/cuda/fused_cuda_test.cpp: fp32 1e-5, bf16 2e-2 relative L2), since a lone frame there
// takes the fused kernel. A frame's cache is rewritten within the frame (positions 0..Q-1), so what
// must not happen is two rows sharing one cache: that changes the logits by order 1 (checked by
// hand: 0.73 relative L2 with every row on the first state).
TEST_P(BatchStep, DepthformerFramesEqualAlone) {
    for (ops::Precision prec : {ops::Precision::kF32, ops::Precision::kBF16}) {
        if (GetParam() == Device::kCUDA) {
            auto c = backend::create_context(Device::kCUDA, prec);
            ASSERT_TRUE(c.is_ok()) << c.status().message();
            ctx_ = *c;
        } else {
            ctx_ = ops::Context{};
            ctx_.precision = prec;
            ctx_.pool = &pool_;
        }
        double worst = 0;
        {
            model::WeightStore store(ctx_);
            auto head = model::AudioHead::load(cfg_, *file_, store);
            ASSERT_TRUE(head.is_ok()) << head.status().message();
            const int64_t D = cfg_.lfm.hidden_size, Q = head->codebooks(), V = head->vocab();
            constexpr int kB = 3, kFrames = 4;
            Arena arena;
            ASSERT_TRUE(arena.reserve(ctx_.device, head->scratch_bytes(ctx_, kB) + (1u << 20)));
            std::vector<model::AudioHeadState> alone;
            for (int b = 0; b < kB; ++b) {
                auto a = head->new_state(ctx_);
                ASSERT_TRUE(a.is_ok());
                alone.push_back(std::move(*a));
            }
            auto tog = head->new_batch_state(ctx_, kB);
            ASSERT_TRUE(tog.is_ok()) << tog.status().message();
            test::Rng rng(4242);
            for (int fr = 0; fr < kFrames; ++fr) {
                std::vector<int> rows;
                for (int b = 0; b < kB; ++b)
                    if (!(fr == 1 && b == 2)) rows.push_back(b);
                const int64_t B = static_cast<int64_t>(rows.size());
                std::vector<float> hh(static_cast<size_t>(B * D));
                for (float& v : hh) v = rng.normal();
                std::vector<int32_t> ctr(static_cast<size_t>(Q));
                for (int64_t q = 0; q < Q; ++q) ctr[static_cast<size_t>(q)] = fr * 16 + q;
                Dev h = alloc(ctx_.act_dtype(), {B, D}), counters = alloc(DType::kI32, {Q});
                ops::copy(ctx_, Tensor::make(hh.data(), DType::kF32, Device::kCPU, {B, D}), h.t);
                ops::copy(ctx_, Tensor::make(ctr.data(), DType::kI32, Device::kCPU, {Q}),
                          counters.t);
                std::vector<model::FrameSampling> samp;
                for (int b : rows) {
                    model::FrameSampling fs;
                    if (b == 1) {
                        fs.temperature = 0.8f;
                        fs.top_k = 4;
                        fs.seed = 99;
                        fs.counters = &counters.t;
                    }
                    samp.push_back(fs);
                }
                // Alone, one sequence at a time.
                std::vector<int32_t> codes_alone;
                std::vector<float> logits_alone;
                for (size_t r = 0; r < rows.size(); ++r) {
                    Dev c = alloc(DType::kI32, {Q}), lg = alloc(ctx_.act_dtype(), {Q, V});
                    const Tensor hb =
                        h.t.rows(static_cast<int64_t>(r), static_cast<int64_t>(r) + 1);
                    head->sample_frame(ctx_, alone[static_cast<size_t>(rows[r])], hb, samp[r],
                                       arena, c.t, &lg.t, nullptr);
                    const std::vector<int32_t> cv = download_i32(c.t);
                    const std::vector<float> lv = download(lg.t);
                    codes_alone.insert(codes_alone.end(), cv.begin(), cv.end());
                    logits_alone.insert(logits_alone.end(), lv.begin(), lv.end());
                }
                // Together.
                Dev c = alloc(DType::kI32, {B, Q}), lg = alloc(ctx_.act_dtype(), {B, Q, V});
                head->sample_frames(ctx_, *tog, h.t, samp, arena, c.t, &lg.t);
                const std::vector<int32_t> codes_tog = download_i32(c.t);
                const std::vector<float> lv = download(lg.t);
                EXPECT_EQ(codes_tog, codes_alone) << "frame " << fr;
                // Codes are codes (in range), and the rows differ from one another.
                for (int32_t v : codes_tog) EXPECT_TRUE(v >= 0 && v < V) << v;
                EXPECT_NE(std::vector<int32_t>(codes_tog.begin(), codes_tog.begin() + Q),
                          std::vector<int32_t>(codes_tog.begin() + Q, codes_tog.begin() + 2 * Q));
                worst = std::max(worst,
                                 test::compare(lv.data(), logits_alone.data(), lv.size()).rel_l2);
            }
        }
        if (GetParam() == Device::kCUDA) backend::destroy_context(ctx_);
        const bool f32 = prec == ops::Precision::kF32;
        std::printf("[batch frame %s %s] worst logits rel L2 vs alone %.3g\n",
                    device_name(GetParam()), f32 ? "fp32" : "bf16", worst);
        if (GetParam() == Device::kCPU) {
            EXPECT_EQ(worst, 0.0);
        }
        EXPECT_LE(worst, f32 ? 1e-5 : 2e-2);
    }
}

// What batching buys: a backbone decode step for B sequences against B lone steps, on the model in
// VOXRT_BATCH_BENCH_MODEL (a checkpoint directory, e.g. the full-size random one; skipped when
// unset), in bf16 and int8. Prints ms per engine step and sequence-steps per second.
TEST_P(BatchStep, Throughput) {
    const char* dir = std::getenv("VOXRT_BATCH_BENCH_MODEL");
    if (!dir || !*dir) GTEST_SKIP() << "set VOXRT_BATCH_BENCH_MODEL=<model dir> to run";
    auto cfg = model::load_model_config(std::string(dir) + "/config.json");
    ASSERT_TRUE(cfg.is_ok()) << cfg.status().message();
    auto f = io::SafeTensorsFile::open(std::string(dir) + "/model.safetensors");
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    const int64_t D = cfg->lfm.hidden_size;
    for (model::WeightQuant q : {model::WeightQuant::kNone, model::WeightQuant::kI8}) {
        if (GetParam() == Device::kCUDA) {
            auto c = backend::create_context(Device::kCUDA, ops::Precision::kBF16);
            ASSERT_TRUE(c.is_ok()) << c.status().message();
            ctx_ = *c;
        } else {
            ctx_ = ops::Context{};
            ctx_.precision = ops::Precision::kBF16;
            ctx_.pool = &pool_;
        }
        {
            model::WeightStore store(ctx_, q);
            model::Lfm2Network::Options opt;
            opt.max_positions = 512;
            opt.quantize = q != model::WeightQuant::kNone;
            auto net = model::Lfm2Network::load(cfg->lfm, *f, "lfm.", store, opt);
            ASSERT_TRUE(net.is_ok()) << net.status().message();
            Arena arena;
            ASSERT_TRUE(arena.reserve(ctx_.device, net->scratch_bytes(ctx_, 64) + (16u << 20)));
            const int kMax = 8, kPrompt = 64, kReps = 3;
            std::vector<model::Lfm2State> st;
            for (int i = 0; i < kMax; ++i) {
                auto s1 = net->new_state(ctx_, 512);
                ASSERT_TRUE(s1.is_ok());
                st.push_back(std::move(*s1));
            }
            double lone_ms = 0;
            for (int B : {1, 2, 4, 8}) {
                Dev x = alloc(ctx_.act_dtype(), {B, D}), o = alloc(ctx_.act_dtype(), {B, D});
                std::vector<int32_t> ph(static_cast<size_t>(B), kPrompt);
                Dev p = alloc(DType::kI32, {B});
                ops::copy(ctx_, Tensor::make(ph.data(), DType::kI32, Device::kCPU, {B}), p.t);
                std::vector<model::Lfm2Network::Memory> mems;
                for (int i = 0; i < B; ++i)
                    mems.push_back({&st[static_cast<size_t>(i)].conv_state,
                                    &st[static_cast<size_t>(i)].k_cache,
                                    &st[static_cast<size_t>(i)].v_cache});
                const double ms =
                    time_ms(kReps, [&] { net->forward_batch(ctx_, mems, x.t, p.t, arena, o.t); });
                if (B == 1) lone_ms = ms;
                std::printf(
                    "[batch step %s %s] B=%d: %.1f ms an engine step, %.1f sequence-steps/s "
                    "(%.2fx B lone steps)\n",
                    device_name(GetParam()), q == model::WeightQuant::kI8 ? "int8" : "bf16", B, ms,
                    1000.0 * B / ms, B * lone_ms / ms);
            }
            // The depthformer's frame for B sequences (greedy).
            auto head = model::AudioHead::load(*cfg, *f, store);
            ASSERT_TRUE(head.is_ok()) << head.status().message();
            Arena harena;
            ASSERT_TRUE(harena.reserve(ctx_.device, head->scratch_bytes(ctx_, kMax) + (1u << 20)));
            auto hs = head->new_batch_state(ctx_, kMax);
            ASSERT_TRUE(hs.is_ok()) << hs.status().message();
            double lone_frame_ms = 0;
            for (int B : {1, 2, 4, 8}) {
                Dev hx = alloc(ctx_.act_dtype(), {B, D}), codes = alloc(DType::kI32, {B, 8});
                const std::vector<model::FrameSampling> samp(static_cast<size_t>(B));
                const double ms = time_ms(kReps, [&] {
                    head->sample_frames(ctx_, *hs, hx.t, samp, harena, codes.t, nullptr);
                });
                if (B == 1) lone_frame_ms = ms;
                std::printf(
                    "[batch frame %s %s] B=%d: %.1f ms for B depthformer frames, %.1f frames/s "
                    "(%.2fx B lone frames)\n",
                    device_name(GetParam()), q == model::WeightQuant::kI8 ? "int8" : "bf16", B, ms,
                    1000.0 * B / ms, B * lone_frame_ms / ms);
            }
        }
        if (GetParam() == Device::kCUDA) backend::destroy_context(ctx_);
    }
}

INSTANTIATE_TEST_SUITE_P(Devices, BatchStep, ::testing::Values(Device::kCPU, Device::kCUDA),
                         [](const ::testing::TestParamInfo<Device>& i) {
                             return std::string(device_name(i.param));
                         });

}  // namespace
}  // namespace voxrt
