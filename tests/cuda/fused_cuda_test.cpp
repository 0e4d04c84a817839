// The fused depthformer kernel (ops::depthformer_frame, backend/cuda/depthformer.cu) against the op
// sequence it replaces, on the same GPU, same weights, same inputs: AudioHead::sample_frame with
// ctx.fused = true vs false. Codebooks are teacher-forced with the op sequence's codes, so each
// codebook's logits are compared on identical inputs; the codes chosen are compared too (greedy
// and top-k sampling with the same counters). Then the fused frame is captured in a CUDA graph and
// replayed (the session's decode path).
//
// Checkpoint: VOXRT_PARITY_DIR/model (default the tiny one; the full-size run sets it). Skipped
// without a GPU.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/device.h"
#ifdef VOXRT_HAVE_CUDA
#include "backend/cuda/handles.h"  // grid_barrier_bench_us, the phase-stamp reports
#endif
#include "cuda/cuda_test_util.h"
#include "io/safetensors.h"
#include "model/audio_head.h"
#include "model/lfm2.h"
#include "model/config.h"
#include "model/weights.h"
#include "util/parity_env.h"

namespace voxrt {
namespace {

struct FrameRun {
    std::vector<float> logits;   // [frames, Q, V]
    std::vector<int32_t> codes;  // [frames, Q]
    double us_per_frame = 0;
};

// Device → host copy into `dst` (F32 or I32 host vector of the tensor's size).
template <class E>
void download(const ops::Context& ctx, const Tensor& src, std::vector<E>& dst) {
    Tensor h = Tensor::make(dst.data(),
                            sizeof(E) == 4 && std::is_same_v<E, float> ? DType::kF32 : DType::kI32,
                            Device::kCPU, {src.numel()});
    ops::copy(ctx, src, h);
}

struct Dev {
    Buffer buf;
    Tensor t;
};
Dev dev_alloc(Device d, DType dt, std::initializer_list<int64_t> shape) {
    Dev r;
    Tensor probe = Tensor::make(nullptr, dt, d, shape);
    r.buf = Buffer::allocate(d, probe.nbytes());
    r.t = r.buf.view(dt, shape);
    return r;
}

const char* quant_name(model::WeightQuant q) {
    return q == model::WeightQuant::kI8 ? " int8" : q == model::WeightQuant::kF8E4M3 ? " fp8" : "";
}

class FusedDepthformer : public ::testing::Test {
protected:
    void SetUp() override {
        if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
        dir_ = test::parity_root() + "/model";
        auto cfg = model::load_model_config(dir_ + "/config.json");
        ASSERT_TRUE(cfg.is_ok()) << cfg.status().message();
        cfg_ = *cfg;
        auto f = io::SafeTensorsFile::open(dir_ + "/model.safetensors");
        ASSERT_TRUE(f.is_ok()) << f.status().message();
        file_ = std::make_unique<io::SafeTensorsFile>(std::move(*f));
    }

    // Runs `frames` frames from random h (seeded), with `forced` codes (per frame, or empty).
    FrameRun run(ops::Precision prec, bool fused, const model::FrameSampling& s, int frames,
                 const std::vector<int32_t>& forced) {
        FrameRun out;
        auto c = backend::create_context(Device::kCUDA, prec);
        EXPECT_TRUE(c.is_ok()) << c.status().message();
        if (!c.is_ok()) return out;
        ops::Context ctx = *c;
        ctx.fused = fused;
        {
            model::WeightStore store(ctx, quant_);
            auto head = model::AudioHead::load(cfg_, *file_, store);
            EXPECT_TRUE(head.is_ok()) << head.status().message();
            auto st = head->new_state(ctx);
            EXPECT_TRUE(st.is_ok());
            Arena arena;
            EXPECT_TRUE(arena.reserve(Device::kCUDA, head->scratch_bytes(ctx) + (1u << 20)));
            const DType dt = ctx.act_dtype();
            const int64_t D = cfg_.lfm.hidden_size, Q = cfg_.codebooks, V = cfg_.audio_vocab;
            Dev h = dev_alloc(Device::kCUDA, dt, {1, D});
            Dev codes = dev_alloc(Device::kCUDA, DType::kI32, {Q});
            Dev forced_t = dev_alloc(Device::kCUDA, DType::kI32, {Q});
            Dev logits = dev_alloc(Device::kCUDA, dt, {Q, V});
            Dev counters = dev_alloc(Device::kCUDA, DType::kI32, {Q});
            model::FrameSampling fs = s;
            fs.counters = &counters.t;
            test::Rng rng(1234);
            std::vector<float> hh(static_cast<size_t>(D));
            std::vector<int32_t> ctr(static_cast<size_t>(Q));
            std::vector<float> lg(static_cast<size_t>(Q * V));
            std::vector<int32_t> cd(static_cast<size_t>(Q));
            for (int fr = 0; fr < frames; ++fr) {
                for (auto& v : hh) v = rng.normal();
                for (int64_t q = 0; q < Q; ++q) ctr[static_cast<size_t>(q)] = fr * 16 + q;
                ops::copy(ctx, Tensor::make(hh.data(), DType::kF32, Device::kCPU, {1, D}), h.t);
                ops::copy(ctx, Tensor::make(ctr.data(), DType::kI32, Device::kCPU, {Q}),
                          counters.t);
                const Tensor* fp = nullptr;
                if (!forced.empty()) {
                    ops::copy(ctx,
                              Tensor::make(const_cast<int32_t*>(forced.data()) + fr * Q,
                                           DType::kI32, Device::kCPU, {Q}),
                              forced_t.t);
                    fp = &forced_t.t;
                }
                head->sample_frame(ctx, *st, h.t, fs, arena, codes.t, &logits.t, fp);
                download(ctx, logits.t, lg);
                download(ctx, codes.t, cd);
                EXPECT_TRUE(ops::synchronize(ctx).is_ok());
                out.logits.insert(out.logits.end(), lg.begin(), lg.end());
                out.codes.insert(out.codes.end(), cd.begin(), cd.end());
            }
            // Graph capture of one frame, replayed: identical to the eager result of that frame.
            {
                backend::Graph g;
                EXPECT_TRUE(g.begin(ctx).is_ok());
                head->sample_frame(ctx, *st, h.t, fs, arena, codes.t, &logits.t, nullptr);
                Status e = g.end(ctx);
                EXPECT_TRUE(e.is_ok()) << e.message();
                if (e.is_ok()) {
                    std::vector<float> a(lg.size()), b(lg.size());
                    EXPECT_TRUE(g.replay(ctx).is_ok());
                    download(ctx, logits.t, a);
                    EXPECT_TRUE(ops::synchronize(ctx).is_ok());
                    head->sample_frame(ctx, *st, h.t, fs, arena, codes.t, &logits.t, nullptr);
                    download(ctx, logits.t, b);
                    EXPECT_TRUE(ops::synchronize(ctx).is_ok());
                    EXPECT_EQ(a, b) << "graph replay differs from eager";
                    // Timing: replays of the captured frame.
                    const int reps = 50;
                    EXPECT_TRUE(g.replay(ctx).is_ok());
                    EXPECT_TRUE(ops::synchronize(ctx).is_ok());
                    const auto t0 = std::chrono::steady_clock::now();
                    for (int r = 0; r < reps; ++r) EXPECT_TRUE(g.replay(ctx).is_ok());
                    EXPECT_TRUE(ops::synchronize(ctx).is_ok());
                    out.us_per_frame = std::chrono::duration<double, std::micro>(
                                           std::chrono::steady_clock::now() - t0)
                                           .count() /
                                       reps;
#ifdef VOXRT_KERNEL_PHASE_STAMPS
                    if (fused) std::printf("%s", cuda::depthformer_profile_report(ctx).c_str());
#endif
                }
            }
        }
        backend::destroy_context(ctx);
        return out;
    }

    void compare(ops::Precision prec, const model::FrameSampling& s, double max_rel_l2,
                 double min_code_agree) {
        const int frames = 12;
        const std::string tag =
            std::string(prec == ops::Precision::kF32 ? "fp32" : "bf16") + quant_name(quant_);
        FrameRun ref = run(prec, /*fused=*/false, s, frames, {});
        ASSERT_EQ(ref.codes.size(), static_cast<size_t>(frames * cfg_.codebooks));
        // Teacher-forced with the op sequence's codes: the same inputs for every codebook.
        FrameRun ref_tf = run(prec, false, s, frames, ref.codes);
        FrameRun fused = run(prec, true, s, frames, ref.codes);
        ASSERT_EQ(fused.logits.size(), ref_tf.logits.size());
        double num = 0, den = 0;
        for (size_t i = 0; i < ref_tf.logits.size(); ++i) {
            const double a = ref_tf.logits[i], b = fused.logits[i];
            if (std::isinf(a) || std::isinf(b)) {
                EXPECT_EQ(a, b) << "at " << i;
                continue;
            }
            num += (a - b) * (a - b);
            den += a * a;
        }
        const double rel = std::sqrt(num / std::max(den, 1e-30));
        size_t agree = 0;
        for (size_t i = 0; i < ref.codes.size(); ++i) agree += ref_tf.codes[i] == fused.codes[i];
        const double frac = static_cast<double>(agree) / static_cast<double>(ref.codes.size());
        std::printf(
            "[fused depthformer %s T=%g k=%d] logits rel L2 %.3g, codes equal %zu/%zu; "
            "graph replay: op sequence %.1f us/frame, fused %.1f us/frame\n",
            tag.c_str(), s.temperature, s.top_k, rel, agree, ref.codes.size(), ref_tf.us_per_frame,
            fused.us_per_frame);
        EXPECT_LE(rel, max_rel_l2);
        EXPECT_GE(frac, min_code_agree);
        EXPECT_EQ(ref.codes, ref_tf.codes)
            << "teacher forcing with its own codes changed the op sequence";
    }

    std::string dir_;
    model::AudioModelConfig cfg_;
    std::unique_ptr<io::SafeTensorsFile> file_;
    model::WeightQuant quant_ = model::WeightQuant::kNone;  // 8-bit weights, quantized at load
};

// fp32: the same arithmetic up to summation order → logits equal to ~1e-6, every code equal.
// bf16: a different summation order flips a bf16 rounding now and then, and the flip travels
// through the residual stream, so logits agree to about a bf16 ulp (2^-8) on average, and codes
// whose top two logits are within that of each other may differ (random weights: flat logits).
model::FrameSampling sampled(float temperature, int top_k, uint64_t seed,
                             bool suppress_eos = false) {
    model::FrameSampling s;
    s.temperature = temperature;
    s.top_k = top_k;
    s.seed = seed;
    s.suppress_eos = suppress_eos;
    return s;
}

TEST_F(FusedDepthformer, GreedyFp32) {
    compare(ops::Precision::kF32, {}, 1e-5, 1.0);
}
TEST_F(FusedDepthformer, TopKFp32) {
    compare(ops::Precision::kF32, sampled(1.0f, 4, 99), 1e-5, 1.0);
}
TEST_F(FusedDepthformer, TopK8SuppressEosFp32) {
    compare(ops::Precision::kF32, sampled(0.7f, 8, 5, true), 1e-5, 1.0);
}
TEST_F(FusedDepthformer, GreedyBf16) {
    compare(ops::Precision::kBF16, {}, 2e-2, 0.8);
}
TEST_F(FusedDepthformer, TopKBf16) {
    compare(ops::Precision::kBF16, sampled(1.0f, 4, 7), 2e-2, 0.8);
}
// 8-bit weights (the checkpoint's matrices quantized at load, as ModelOptions.precision int8 / fp8
// loads them): fused and op sequence read the same codes, so the bf16 bars apply.
TEST_F(FusedDepthformer, GreedyBf16Int8) {
    quant_ = model::WeightQuant::kI8;
    compare(ops::Precision::kBF16, {}, 2e-2, 0.8);
}
TEST_F(FusedDepthformer, GreedyBf16Fp8) {
    quant_ = model::WeightQuant::kF8E4M3;
    compare(ops::Precision::kBF16, {}, 2e-2, 0.8);
}

}  // namespace
}  // namespace voxrt

namespace voxrt {
namespace {

// The fused LFM2 decode step (ops::lfm2_decode_step, backend/cuda/lfm2_step.cu) against the op
// sequence (Lfm2Network::forward_rows), both on the GPU: the same random prompt prefilled by the
// op sequence (T > 1 is never fused), then decode steps from the same random inputs, comparing
// each step's output. The prompt is long enough that attention spans several 128-row chunks.
class FusedLfm2Step : public ::testing::Test {
protected:
    void SetUp() override {
        if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
        const std::string dir = test::parity_root() + "/model";
        auto cfg = model::load_model_config(dir + "/config.json");
        ASSERT_TRUE(cfg.is_ok()) << cfg.status().message();
        cfg_ = *cfg;
        auto f = io::SafeTensorsFile::open(dir + "/model.safetensors");
        ASSERT_TRUE(f.is_ok()) << f.status().message();
        file_ = std::make_unique<io::SafeTensorsFile>(std::move(*f));
    }

    // Outputs [steps, D] of `steps` decode steps after a prompt of `prompt` positions.
    std::vector<float> run(ops::Precision prec, bool fused, int prompt, int steps,
                           double* us_per_step) {
        std::vector<float> outs;
        auto c = backend::create_context(Device::kCUDA, prec, 0, options_);
        EXPECT_TRUE(c.is_ok()) << c.status().message();
        if (!c.is_ok()) return outs;
        ops::Context ctx = *c;
        ctx.fused = fused;
        ctx.fused_backbone = fused;
        {
            model::WeightStore store(ctx, quant_);
            model::Lfm2Network::Options opt;
            opt.max_positions = 1024;
            opt.quantize = quant_ != model::WeightQuant::kNone;
            auto net = model::Lfm2Network::load(cfg_.lfm, *file_, "lfm.", store, opt);
            EXPECT_TRUE(net.is_ok()) << net.status().message();
            if (!net.is_ok()) return outs;
            auto st = net->new_state(ctx, 1024);
            EXPECT_TRUE(st.is_ok());
            Arena arena;
            EXPECT_TRUE(arena.reserve(Device::kCUDA, net->scratch_bytes(ctx, prompt) + (1u << 20)));
            const DType dt = ctx.act_dtype();
            const int64_t D = cfg_.lfm.hidden_size;
            test::Rng rng(77);
            std::vector<float> xh(static_cast<size_t>(prompt * D));
            for (auto& v : xh) v = 0.5f * rng.normal();
            std::vector<int32_t> ph(static_cast<size_t>(prompt));
            for (int i = 0; i < prompt; ++i) ph[static_cast<size_t>(i)] = i;
            Dev x = dev_alloc(Device::kCUDA, dt, {prompt, D});
            Dev pos = dev_alloc(Device::kCUDA, DType::kI32, {prompt});
            Dev out = dev_alloc(Device::kCUDA, dt, {prompt, D});
            ops::copy(ctx, Tensor::make(xh.data(), DType::kF32, Device::kCPU, {prompt, D}), x.t);
            ops::copy(ctx, Tensor::make(ph.data(), DType::kI32, Device::kCPU, {prompt}), pos.t);
            net->forward(ctx, *st, x.t, pos.t, arena, out.t);
            std::vector<float> o(static_cast<size_t>(D));
            Tensor x1 = x.t.rows(0, 1), p1 = pos.t.rows(0, 1), o1 = out.t.rows(0, 1);
            for (int s = 0; s < steps; ++s) {
                for (auto& v : o) v = 0.5f * rng.normal();
                int32_t p = prompt + s;
                ops::copy(ctx, Tensor::make(o.data(), DType::kF32, Device::kCPU, {1, D}), x1);
                ops::copy(ctx, Tensor::make(&p, DType::kI32, Device::kCPU, {1}), p1);
                net->forward(ctx, *st, x1, p1, arena, o1);
                download(ctx, o1, o);
                EXPECT_TRUE(ops::synchronize(ctx).is_ok());
                outs.insert(outs.end(), o.begin(), o.end());
            }
            // Graph-captured step (as the session decodes), timed.
            backend::Graph g;
            EXPECT_TRUE(g.begin(ctx).is_ok());
            net->forward(ctx, *st, x1, p1, arena, o1);
            Status e = g.end(ctx);
            EXPECT_TRUE(e.is_ok()) << e.message();
            if (e.is_ok() && us_per_step) {
                const int reps = 30;
                const auto t0 = std::chrono::steady_clock::now();
                for (int r = 0; r < reps; ++r) EXPECT_TRUE(g.replay(ctx).is_ok());
                EXPECT_TRUE(ops::synchronize(ctx).is_ok());
                *us_per_step =
                    std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                        .count() /
                    reps;
#ifdef VOXRT_KERNEL_PHASE_STAMPS
                if (fused) std::printf("%s", cuda::lfm2_step_profile_report(ctx).c_str());
#endif
            }
        }
        backend::destroy_context(ctx);
        return outs;
    }

    void compare(ops::Precision prec, double max_rel_l2) {
        const int prompt = 300, steps = 24;
        double us_ref = 0, us_fused = 0;
        std::vector<float> ref = run(prec, false, prompt, steps, &us_ref);
        std::vector<float> got = run(prec, true, prompt, steps, &us_fused);
        ASSERT_EQ(ref.size(), got.size());
        ASSERT_FALSE(ref.empty());
        const size_t D = ref.size() / steps;
        double worst = 0;
        for (int s = 0; s < steps; ++s) {
            double num = 0, den = 0;
            for (size_t i = 0; i < D; ++i) {
                const double a = ref[s * D + i], b = got[s * D + i];
                num += (a - b) * (a - b);
                den += a * a;
            }
            worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
        }
        std::printf(
            "[fused lfm2 step %s%s] worst step rel L2 %.3g over %d steps after %d positions; "
            "graph replay: op sequence %.1f us/step, fused %.1f us/step\n",
            prec == ops::Precision::kF32 ? "fp32" : "bf16", quant_name(quant_), worst, steps,
            prompt, us_ref, us_fused);
        EXPECT_LE(worst, max_rel_l2);
    }

    model::AudioModelConfig cfg_;
    std::unique_ptr<io::SafeTensorsFile> file_;
    backend::ContextOptions options_;  // of both contexts
    model::WeightQuant quant_ = model::WeightQuant::kNone;
};

// fp32: the op sequence's arithmetic up to summation order. bf16: occasional bf16 rounding flips
// from a different summation order, carried by the residual stream and the state (see above).
TEST_F(FusedLfm2Step, Fp32) {
    compare(ops::Precision::kF32, 1e-5);
}
TEST_F(FusedLfm2Step, Bf16) {
    compare(ops::Precision::kBF16, 3e-2);
}
// 8-bit weights quantized at load: fused and op sequence read the same codes (bf16 bar).
TEST_F(FusedLfm2Step, Bf16Int8) {
    quant_ = model::WeightQuant::kI8;
    compare(ops::Precision::kBF16, 3e-2);
}
TEST_F(FusedLfm2Step, Bf16Fp8) {
    quant_ = model::WeightQuant::kF8E4M3;
    compare(ops::Precision::kBF16, 3e-2);
}
// The GPU options that change the persistent kernel's launch (fewer blocks) and its loads (L2
// prefetch) must not change its results: the same bound as Fp32.
TEST_F(FusedLfm2Step, Fp32WithGpuOptions) {
    options_.gpu.reserve_sms = 8;
    options_.gpu.l2_prefetch = true;
    compare(ops::Precision::kF32, 1e-5);
}

}  // namespace
}  // namespace voxrt

namespace voxrt {
namespace {

// The persistent kernels' grid barrier, alone: both implementations must complete (a barrier that
// lets a block through early or never would hang or be caught by the fused tests above) and their
// cost is printed for docs/cuda.md.
TEST(GridBarrier, Cost) {
#ifndef VOXRT_HAVE_CUDA
    GTEST_SKIP() << "no CUDA backend in this build";
#else
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    auto c = backend::create_context(Device::kCUDA, ops::Precision::kBF16);
    ASSERT_TRUE(c.is_ok()) << c.status().message();
    ops::Context ctx = *c;
    for (int mode : {0, 1}) {
        const double us = cuda::grid_barrier_bench_us(ctx, mode, 2000);
        std::printf("[grid barrier] %s: %.2f us per barrier (one 512-thread block per SM)\n",
                    mode == 0 ? "counter" : "flags", us);
        EXPECT_GT(us, 0.0);
        EXPECT_TRUE(ops::synchronize(ctx).is_ok());
    }
    backend::destroy_context(ctx);
#endif
}

}  // namespace
}  // namespace voxrt
