// Parity of the LFM2 backbone, the text head and the depthformer against the official
// liquid-audio reference on the tiny random-weight checkpoint, teacher-forced on the reference's
// own sequences (tests/data/tiny/dumps/tf_<mode>_<precision>.safetensors, docs/reference-dumps.md).
//
// The prompt embeddings come from the dump, so this isolates backbone + heads from the encoder and
// tokenizer (tested separately). Each step feeds the previous sequence item back exactly as
// generate_* does (text: embed_tokens row; frame: summed audio_embedding rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "model/audio_head.h"
#include "model/config.h"
#include "model/lfm2.h"
#include "model/weights.h"
#include "util/compare.h"
#include "util/parity_env.h"
#include "util/test_paths.h"
#include "backend/device.h"

namespace voxrt {
namespace {

struct Result {
    test::ErrorStats hidden;         // worst step
    test::LogitStats text;           // text logits over all steps
    test::LogitStats depth;          // depthformer logits over all audio steps × codebooks
    std::vector<float> text_logits;  // ours, for cross-precision comparisons
    std::vector<float> depth_logits;
};

// A device buffer holding `host` (F32 values) converted to `dt`.
struct DevTensor {
    Buffer buf;
    Tensor t;
};
DevTensor upload(const ops::Context& ctx, const float* host, std::initializer_list<int64_t> shape,
                 DType dt) {
    DevTensor d;
    Tensor h = Tensor::make(const_cast<float*>(host), DType::kF32, Device::kCPU, shape);
    d.buf = Buffer::allocate(ctx.device, static_cast<size_t>(h.numel()) * dtype_size(dt));
    d.t = d.buf.view(dt, shape);
    ops::copy(ctx, h, d.t);
    return d;
}
DevTensor upload_i32(const ops::Context& ctx, const int32_t* host,
                     std::initializer_list<int64_t> shape) {
    DevTensor d;
    Tensor h = Tensor::make(const_cast<int32_t*>(host), DType::kI32, Device::kCPU, shape);
    d.buf = Buffer::allocate(ctx.device, h.nbytes());
    d.t = d.buf.view(DType::kI32, shape);
    ops::copy(ctx, h, d.t);
    return d;
}
DevTensor alloc(const ops::Context& ctx, std::initializer_list<int64_t> shape, DType dt) {
    DevTensor d;
    Tensor probe = Tensor::make(nullptr, dt, ctx.device, shape);
    d.buf = Buffer::allocate(ctx.device, probe.nbytes());
    d.t = d.buf.view(dt, shape);
    return d;
}
std::vector<float> download(const ops::Context& ctx, const Tensor& t) {
    std::vector<float> out(static_cast<size_t>(t.numel()));
    Tensor h = Tensor::make(out.data(), DType::kF32, Device::kCPU, {t.numel()});
    ops::copy(ctx, t, h);
    EXPECT_TRUE(ops::synchronize(ctx).is_ok());
    return out;
}

// `quant`: weight-only 8-bit (int8 / e4m3 codes quantized at load, bf16 activations), as
// ModelOptions.precision int8 / fp8 loads it.
// bf16_tables: round RoPE inv_freq to bf16 also in fp32, as the official bf16 load cast back to
// float does (the fp32 dumps come from the float32 load, whose inv_freq is exact).
Result run_teacher_forced(const std::string& mode, ops::Precision prec,
                          model::WeightQuant quant = model::WeightQuant::kNone,
                          bool bf16_tables = false) {
    Result res;
    const std::string dir = test::parity_root();
    const std::string tag = prec == ops::Precision::kF32 ? "fp32" : "bf16";
    const Device device = test::parity_device();
    auto cfg = model::load_model_config(dir + "/model/config.json");
    EXPECT_TRUE(cfg.is_ok()) << cfg.status().message();
    auto mf = io::SafeTensorsFile::open(dir + "/model/model.safetensors");
    EXPECT_TRUE(mf.is_ok()) << mf.status().message();
    auto dump = io::SafeTensorsFile::open(dir + "/dumps/tf_" + mode + "_" + tag + ".safetensors");
    EXPECT_TRUE(dump.is_ok()) << dump.status().message();
    if (!cfg.is_ok() || !mf.is_ok() || !dump.is_ok()) return res;

    ThreadPool pool(0);
    ops::Context ctx;
    if (device == Device::kCUDA) {
        auto c = backend::create_context(Device::kCUDA, prec);
        EXPECT_TRUE(c.is_ok()) << c.status().message();
        if (!c.is_ok()) return res;
        ctx = *c;
    }
    ctx.precision = prec;
    ctx.pool = &pool;
    {
        model::WeightStore store(ctx, quant);
        model::Lfm2Network::Options opt;
        opt.max_positions = 2048;
        opt.bf16_inv_freq = prec == ops::Precision::kBF16 || bf16_tables;
        opt.quantize = quant != model::WeightQuant::kNone;
        auto net = model::Lfm2Network::load(cfg->lfm, *mf, "lfm.", store, opt);
        EXPECT_TRUE(net.is_ok()) << net.status().message();
        auto head = model::AudioHead::load(*cfg, *mf, store);
        EXPECT_TRUE(head.is_ok()) << head.status().message();
        if (!net.is_ok() || !head.is_ok()) return res;
        auto st = net->new_state(ctx, 2048);
        auto hst = head->new_state(ctx);
        EXPECT_TRUE(st.is_ok() && hst.is_ok());
        Arena arena;
        EXPECT_TRUE(arena.reserve(device, 512u << 20));

        const DType dt = ctx.act_dtype();
        const int64_t D = cfg->lfm.hidden_size, V = cfg->lfm.vocab_size, Q = cfg->codebooks,
                      AV = cfg->audio_vocab;
        std::vector<float> embeds = test::read_f32(*dump, "prompt.embeds");
        const int64_t L = static_cast<int64_t>(embeds.size()) / D;
        std::vector<float> ref_hidden = test::read_f32(*dump, "tf.hidden");
        std::vector<float> ref_text = test::read_f32(*dump, "tf.text_logits");
        std::vector<float> ref_depth = test::read_f32(*dump, "tf.depth_logits");
        std::vector<int64_t> kind = test::read_i64(*dump, "seq.kind");
        std::vector<int64_t> text = test::read_i64(*dump, "seq.text");
        std::vector<int64_t> codes = test::read_i64(*dump, "seq.codes");
        const int64_t S = static_cast<int64_t>(kind.size());

        // Prefill the prompt (the reference's own assembled embeddings).
        std::vector<int32_t> pos(static_cast<size_t>(L));
        for (int64_t i = 0; i < L; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
        DevTensor x = upload(ctx, embeds.data(), {L, D}, dt);
        DevTensor pos_t = upload_i32(ctx, pos.data(), {L});
        DevTensor out = alloc(ctx, {L, D}, dt);
        net->forward(ctx, *st, x.t, pos_t.t, arena, out.t);
        if (dump->contains("prompt.hidden")) {
            std::vector<float> ours = download(ctx, out.t);
            std::vector<float> ref_ph = test::read_f32(*dump, "prompt.hidden");
            auto e = test::compare(ours.data(), ref_ph.data(), ref_ph.size());
            std::printf("[%s %s %s] prompt hidden: %s\n", mode.c_str(), tag.c_str(),
                        device_name(device), e.str().c_str());
        }
        DevTensor h = alloc(ctx, {1, D}, dt);
        Tensor last = out.t.rows(L - 1, L);
        ops::copy(ctx, last, h.t);
        DevTensor xin = alloc(ctx, {1, D}, dt);
        DevTensor p1 = alloc(ctx, {1}, DType::kI32);
        DevTensor ids = alloc(ctx, {1}, DType::kI32);
        DevTensor frame = alloc(ctx, {1, Q}, DType::kI32);
        DevTensor forced = alloc(ctx, {Q}, DType::kI32);
        DevTensor chosen = alloc(ctx, {Q}, DType::kI32);
        DevTensor logits = alloc(ctx, {1, V}, dt);
        DevTensor dlogits = alloc(ctx, {Q, AV}, dt);
        std::vector<float> our_text;
        std::vector<float> our_depth, ref_depth_rows;
        int64_t audio_idx = 0;
        for (int64_t i = 0; i < S; ++i) {
            if (i > 0) {  // feed item i-1 at position L + i - 1
                int32_t p = static_cast<int32_t>(L + i - 1);
                ops::copy(ctx, Tensor::make(&p, DType::kI32, Device::kCPU, {1}), p1.t);
                if (kind[static_cast<size_t>(i - 1)] == 0) {
                    int32_t id = static_cast<int32_t>(text[static_cast<size_t>(i - 1)]);
                    ops::copy(ctx, Tensor::make(&id, DType::kI32, Device::kCPU, {1}), ids.t);
                    ops::embedding(ctx, net->embed_tokens(), ids.t, xin.t);
                } else {
                    std::vector<int32_t> c(static_cast<size_t>(Q));
                    for (int64_t q = 0; q < Q; ++q)
                        c[static_cast<size_t>(q)] =
                            static_cast<int32_t>(codes[static_cast<size_t>((i - 1) * Q + q)]);
                    ops::copy(ctx, Tensor::make(c.data(), DType::kI32, Device::kCPU, {1, Q}),
                              frame.t);
                    head->embed_frames(ctx, frame.t, xin.t);
                }
                net->forward(ctx, *st, xin.t, p1.t, arena, h.t);
            }
            std::vector<float> hh = download(ctx, h.t);
            auto e = test::compare(hh.data(), ref_hidden.data() + i * D, static_cast<size_t>(D));
            if (e.rel_l2 > res.hidden.rel_l2) res.hidden = e;
            ops::linear(ctx, h.t, net->text_head(), nullptr, logits.t);
            std::vector<float> lg = download(ctx, logits.t);
            our_text.insert(our_text.end(), lg.begin(), lg.end());
            if (kind[static_cast<size_t>(i)] == 1) {
                std::vector<int32_t> f(static_cast<size_t>(Q));
                for (int64_t q = 0; q < Q; ++q)
                    f[static_cast<size_t>(q)] =
                        static_cast<int32_t>(codes[static_cast<size_t>(i * Q + q)]);
                ops::copy(ctx, Tensor::make(f.data(), DType::kI32, Device::kCPU, {Q}), forced.t);
                model::FrameSampling greedy;
                head->sample_frame(ctx, *hst, h.t, greedy, arena, chosen.t, &dlogits.t, &forced.t);
                std::vector<float> dl = download(ctx, dlogits.t);
                our_depth.insert(our_depth.end(), dl.begin(), dl.end());
                ref_depth_rows.insert(ref_depth_rows.end(), ref_depth.begin() + audio_idx * Q * AV,
                                      ref_depth.begin() + (audio_idx + 1) * Q * AV);
                ++audio_idx;
            }
        }
        res.text = test::compare_logits(our_text.data(), ref_text.data(), S, V);
        if (!our_depth.empty())
            res.depth =
                test::compare_logits(our_depth.data(), ref_depth_rows.data(), audio_idx * Q, AV);
        res.text_logits = std::move(our_text);
        res.depth_logits = std::move(our_depth);
        const char* w = quant == model::WeightQuant::kI8       ? " int8"
                        : quant == model::WeightQuant::kF8E4M3 ? " fp8"
                                                               : "";
        std::printf(
            "[%s %s%s %s] hidden worst step: %s\n[%s %s%s %s] text logits: %s\n[%s %s%s %s] "
            "depth logits: %s\n",
            mode.c_str(), tag.c_str(), w, device_name(device), res.hidden.str().c_str(),
            mode.c_str(), tag.c_str(), w, device_name(device), res.text.str().c_str(), mode.c_str(),
            tag.c_str(), w, device_name(device), res.depth.str().c_str());
    }
    backend::destroy_context(ctx);
    return res;
}

bool skip_device() {
    return test::parity_device() == Device::kCUDA && !backend::device_available(Device::kCUDA);
}

class BackboneParity : public ::testing::TestWithParam<std::string> {};

// fp32 against the reference's fp32: the only differences are fp32 summation orders, so hidden
// states agree to ~1e-6 relative; 1e-4 leaves headroom for 64+ accumulated steps.
TEST_P(BackboneParity, Fp32MatchesReferenceFp32) {
    if (skip_device()) GTEST_SKIP() << "no CUDA device";
    Result r = run_teacher_forced(GetParam(), ops::Precision::kF32);
    EXPECT_LT(r.hidden.rel_l2, 1e-4) << r.hidden.str();
    EXPECT_EQ(r.text.top1_agree, 1.0) << r.text.str();
    EXPECT_LT(r.text.mean_kl, 1e-8) << r.text.str();
    if (r.depth.rows) {
        EXPECT_EQ(r.depth.top1_agree, 1.0) << r.depth.str();
        EXPECT_LT(r.depth.mean_kl, 1e-8) << r.depth.str();
    }
}

// The gate above can fail: the bf16-rounded inv_freq of the bf16 load cast to float (what fp32
// reproduced before it meant the float32 load) misses it against the float32 reference.
TEST_P(BackboneParity, Bf16RoundedRopeMissesReferenceFp32) {
    if (skip_device()) GTEST_SKIP() << "no CUDA device";
    Result r =
        run_teacher_forced(GetParam(), ops::Precision::kF32, model::WeightQuant::kNone, true);
    std::printf("[%s] bf16-rounded RoPE vs float32 reference: %s\n", GetParam().c_str(),
                r.hidden.str().c_str());
    EXPECT_GT(r.hidden.rel_l2, 1e-4) << r.hidden.str();
}

INSTANTIATE_TEST_SUITE_P(Modes, BackboneParity, ::testing::Values("s2s", "asr", "tts"));

}  // namespace
}  // namespace voxrt

namespace voxrt {
namespace {

class BackboneParityBf16 : public ::testing::TestWithParam<std::string> {};

// bf16 is judged against the reference's fp32 run, and must be no worse than the reference's own
// bf16 run is (docs/reference-dumps.md): random-weight logits are flat, so a bar taken from trained
// models cannot be met by any correct bf16 engine.
// - KL (averaged over whole distributions) may be at most 1.5x the reference's.
// - top-1 agreement over n rows is a binomial estimate: which near-ties flip in bf16 depends on
//   accumulation order, not correctness, so it may fall short of the reference's by at most two
//   standard errors of that estimate (at least 2 points). On the full-size tts sequence, for
//   example, 92.2 % vs 95.3 % over 64 rows is 2 rows, 1.0 standard error, with equal KL.
//   Agreement is counted in rows, so the allowance is rounded to the nearest whole row: where the
//   reference misses 1 of 64 rows, two standard errors are 1.98 rows, which truncated would allow
//   1 row (one standard error). The tiny s2s sequence is such a case: voxrt-bf16 misses 3 rows
//   (fp32 top-2 gaps 0.0001, 0.028 and 0.030 sigma, all among the 8 narrowest of 64), the
//   reference's bf16 misses 1 of them (0.028 sigma), with equal KL (1.33 vs 1.34e-4).
double top1_slack(double p, int rows) {
    const double q = std::min(std::max(1.0 - p, 1.0 / rows), 0.5);
    const double slack = std::max(0.02, 2.0 * std::sqrt(q * (1.0 - q) / rows));
    return std::round(slack * rows) / rows + 1e-9;
}

TEST_P(BackboneParityBf16, Bf16NoWorseThanReferenceBf16) {
    const std::string mode = GetParam();
    if (skip_device()) GTEST_SKIP() << "no CUDA device";
    const std::string dir = test::parity_root() + "/dumps/";
    auto ref32 = io::SafeTensorsFile::open(dir + "tf_" + mode + "_fp32.safetensors");
    auto ref16 = io::SafeTensorsFile::open(dir + "tf_" + mode + "_bf16.safetensors");
    ASSERT_TRUE(ref32.is_ok()) << ref32.status().message();
    ASSERT_TRUE(ref16.is_ok()) << ref16.status().message();
    Result ours = run_teacher_forced(mode, ops::Precision::kBF16);
    ASSERT_FALSE(ours.text_logits.empty());
    std::vector<float> t32 = test::read_f32(*ref32, "tf.text_logits"),
                       t16 = test::read_f32(*ref16, "tf.text_logits");
    const int64_t V = test::shape_of(*ref32, "tf.text_logits")[1];
    const int64_t S = static_cast<int64_t>(t32.size()) / V;
    auto ref_text = test::compare_logits(t16.data(), t32.data(), S, V);
    auto our_text = test::compare_logits(ours.text_logits.data(), t32.data(), S, V);
    std::printf("[%s] text vs ref-fp32: ours-bf16 %s | ref-bf16 %s\n", mode.c_str(),
                our_text.str().c_str(), ref_text.str().c_str());
    EXPECT_GE(our_text.top1_agree,
              ref_text.top1_agree - top1_slack(ref_text.top1_agree, ref_text.rows));
    EXPECT_LE(our_text.mean_kl, 1.5 * ref_text.mean_kl + 1e-9);
    std::vector<float> d32 = test::read_f32(*ref32, "tf.depth_logits"),
                       d16 = test::read_f32(*ref16, "tf.depth_logits");
    if (!d32.empty()) {
        const int64_t AV = 2049;
        const int64_t rows = static_cast<int64_t>(d32.size()) / AV;
        ASSERT_EQ(ours.depth_logits.size(), d32.size());
        auto ref_depth = test::compare_logits(d16.data(), d32.data(), rows, AV);
        auto our_depth = test::compare_logits(ours.depth_logits.data(), d32.data(), rows, AV);
        std::printf("[%s] depth vs ref-fp32: ours-bf16 %s | ref-bf16 %s\n", mode.c_str(),
                    our_depth.str().c_str(), ref_depth.str().c_str());
        EXPECT_GE(our_depth.top1_agree,
                  ref_depth.top1_agree - top1_slack(ref_depth.top1_agree, ref_depth.rows));
        EXPECT_LE(our_depth.mean_kl, 1.5 * ref_depth.mean_kl + 1e-9);
    }
}

INSTANTIATE_TEST_SUITE_P(Modes, BackboneParityBf16, ::testing::Values("s2s", "asr", "tts"));

}  // namespace
}  // namespace voxrt

namespace voxrt {
namespace {

class BackboneParityEightBit : public ::testing::TestWithParam<std::string> {};

// Weight-only int8 and fp8 (e4m3) against the reference's fp32 run, beside voxrt's bf16 and the
// reference's own bf16 (the tables of docs/parity.md come from these lines). All three voxrt runs
// share bf16 activations; the 8-bit ones add a per-row weight rounding of scale/√12 with
// scale = max|w|/127 (int8) or 3 mantissa bits (e4m3); tests/unit/model/quantized_model_test.cpp
// has the arithmetic. Bounds, against voxrt-bf16's distance from the reference's fp32:
// - relative L2 of the logits: int8 ≤ 4×, fp8 ≤ 16× (the bounds of that test); KL, which grows
//   with the square of a logit error, ≤ 16× and ≤ 256×. Measured (tiny, CPU): int8 KL 3.5–5.7×,
//   fp8 39–112×; (full size, H100): int8 5.3–6.7×, fp8 43–55×.
// - top-1 agreement: within 25 (int8) and 55 (fp8) points of voxrt-bf16's. Random-weight logits
//   are flat, and flatter at full size (65,536 text logits, 2,049 per codebook, top-2 gaps far
//   below a bf16 ulp of the logits), so near-ties flip under any perturbation: measured on an H100
//   at full size, int8 agreed on 73–83 % of rows where bf16 agreed on 91–97 % (a drop of up to 20
//   points), fp8 on 48–57 % (up to 44 points); on the tiny checkpoint the drops are up to 14 and 31
//   points. A broken kernel or a lost scale gives chance agreement and KL hundreds of times larger;
//   this is the fence, not a quality claim (docs/quantization.md says what real weights add).
TEST_P(BackboneParityEightBit, WithinBoundOfBf16) {
    const std::string mode = GetParam();
    if (skip_device()) GTEST_SKIP() << "no CUDA device";
    const std::string dir = test::parity_root() + "/dumps/";
    auto ref32 = io::SafeTensorsFile::open(dir + "tf_" + mode + "_fp32.safetensors");
    auto ref16 = io::SafeTensorsFile::open(dir + "tf_" + mode + "_bf16.safetensors");
    ASSERT_TRUE(ref32.is_ok()) << ref32.status().message();
    ASSERT_TRUE(ref16.is_ok()) << ref16.status().message();
    std::vector<float> t32 = test::read_f32(*ref32, "tf.text_logits"),
                       t16 = test::read_f32(*ref16, "tf.text_logits");
    std::vector<float> d32 = test::read_f32(*ref32, "tf.depth_logits"),
                       d16 = test::read_f32(*ref16, "tf.depth_logits");
    const int64_t V = test::shape_of(*ref32, "tf.text_logits")[1];
    const int64_t S = static_cast<int64_t>(t32.size()) / V;
    const int64_t AV = 2049, drows = static_cast<int64_t>(d32.size()) / AV;
    struct Line {
        const char* name;
        test::LogitStats text, depth;
        double hidden = -1, text_l2 = 0, depth_l2 = 0;
    };
    auto line = [&](const char* name, const std::vector<float>& t, const std::vector<float>& d,
                    double hidden) {
        Line l{name, test::compare_logits(t.data(), t32.data(), S, V), {}, hidden};
        l.text_l2 = test::compare(t.data(), t32.data(), t32.size()).rel_l2;
        if (drows) {
            l.depth = test::compare_logits(d.data(), d32.data(), drows, AV);
            l.depth_l2 = test::compare(d.data(), d32.data(), d32.size()).rel_l2;
        }
        std::printf(
            "[%s %s] vs ref-fp32: hidden worst rel L2 %.3g | text rel L2 %.3g, %s | depth rel L2 "
            "%.3g, %s\n",
            mode.c_str(), name, hidden, l.text_l2, l.text.str().c_str(), l.depth_l2,
            l.depth.str().c_str());
        return l;
    };
    line("ref-bf16", t16, d16, -1);
    Result b = run_teacher_forced(mode, ops::Precision::kBF16);
    Result i8 = run_teacher_forced(mode, ops::Precision::kBF16, model::WeightQuant::kI8);
    Result f8 = run_teacher_forced(mode, ops::Precision::kBF16, model::WeightQuant::kF8E4M3);
    ASSERT_EQ(b.text_logits.size(), t32.size());
    ASSERT_EQ(i8.text_logits.size(), t32.size());
    ASSERT_EQ(f8.text_logits.size(), t32.size());
    const Line lb = line("voxrt-bf16", b.text_logits, b.depth_logits, b.hidden.rel_l2);
    const Line li = line("voxrt-int8", i8.text_logits, i8.depth_logits, i8.hidden.rel_l2);
    const Line lf = line("voxrt-fp8", f8.text_logits, f8.depth_logits, f8.hidden.rel_l2);
    auto expect_within = [&](const Line& q, double l2_factor, double top1_points) {
        const double kl_factor = l2_factor * l2_factor;
        EXPECT_LE(q.text_l2, l2_factor * lb.text_l2) << q.name << " text";
        EXPECT_LE(q.text.mean_kl, kl_factor * lb.text.mean_kl + 1e-9) << q.name << " text";
        EXPECT_GE(q.text.top1_agree, lb.text.top1_agree - top1_points) << q.name << " text";
        if (drows) {
            EXPECT_LE(q.depth_l2, l2_factor * lb.depth_l2) << q.name << " depth";
            EXPECT_LE(q.depth.mean_kl, kl_factor * lb.depth.mean_kl + 1e-9) << q.name << " depth";
            EXPECT_GE(q.depth.top1_agree, lb.depth.top1_agree - top1_points) << q.name << " depth";
        }
    };
    expect_within(li, 4.0, 0.25);
    expect_within(lf, 16.0, 0.55);
    // int4 (CPU only; one scale per 32 inputs): weight error ≈ 16× int8's (quantized_model_test
    // has the arithmetic). Measured (tiny, CPU, s2s / asr / tts): text rel L2 32.8 / 32.1 / 28.2×
    // bf16's, depth 23.4 / 25.7 / 17.3×; KL 796–1061× (text), 302–660× (depth); top-1 agreement
    // 33–42 % (text) and 25–31 % (depth), up to 71 points below bf16's. Bounds ≈ 1.4× the worst
    // ratio: 45× (KL 2025×) and 80 points, a regression fence as above. Run where the parity device
    // is the CPU (int4 has no GPU kernels; a GPU load refuses it).
    if (test::parity_device() == Device::kCPU) {
        Result i4 = run_teacher_forced(mode, ops::Precision::kBF16, model::WeightQuant::kI4);
        ASSERT_EQ(i4.text_logits.size(), t32.size());
        const Line l4 = line("voxrt-int4", i4.text_logits, i4.depth_logits, i4.hidden.rel_l2);
        std::printf("[%s int4] text rel L2 %.1fx bf16's, KL %.0fx | depth rel L2 %.1fx, KL %.0fx\n",
                    mode.c_str(), l4.text_l2 / lb.text_l2, l4.text.mean_kl / lb.text.mean_kl,
                    drows ? l4.depth_l2 / lb.depth_l2 : 0.0,
                    drows ? l4.depth.mean_kl / lb.depth.mean_kl : 0.0);
        expect_within(l4, 45.0, 0.80);
    }
}

INSTANTIATE_TEST_SUITE_P(Modes, BackboneParityEightBit, ::testing::Values("s2s", "asr", "tts"));

}  // namespace
}  // namespace voxrt
