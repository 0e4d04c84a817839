// Unit tests of the conformer ops (against literal transcriptions of the PyTorch code) and of the
// AudioEncoder's contract (lengths, workspace, errors). End-to-end numerics: tests/parity.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/arena.h"
#include "core/bf16.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "model/audio_encoder.h"
#include "model/config.h"
#include "model/weights.h"
#include "ops/conformer_ops.h"
#include "ops/ops.h"
#include "util/test_paths.h"

namespace voxrt {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(g);
    return v;
}

Tensor view(std::vector<float>& v, std::initializer_list<int64_t> dims) {
    return Tensor::make(v.data(), DType::kF32, Device::kCPU, dims);
}

ops::Context cpu_ctx(ops::Precision p, ThreadPool* pool = nullptr) {
    ops::Context c;
    c.precision = p;
    c.pool = pool;
    return c;
}

float rnd(float v, bool on) {
    return on ? round_bf16(v) : v;
}

void round_all(std::vector<float>& v) {
    for (float& x : v) x = round_bf16(x);
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
    return m;
}

// ---- rel_pos_attention vs NeMo's code, rel_shift done literally (pad, view, drop, view)
// -----------

std::vector<float> reference_rel_pos_attention(
    const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
    const std::vector<float>& p, const std::vector<float>& u, const std::vector<float>& vb,
    int64_t T, int64_t H, int64_t Dk, bool round) {
    const int64_t D = H * Dk, P = 2 * T - 1;
    std::vector<float> out(static_cast<size_t>(T * D));
    for (int64_t h = 0; h < H; ++h) {
        // matrix_bd = (q + v) · pᵀ over all 2T-1 positions: [T, P]
        std::vector<float> bd_full(static_cast<size_t>(T * P));
        for (int64_t i = 0; i < T; ++i)
            for (int64_t r = 0; r < P; ++r) {
                float s = 0;
                for (int64_t d = 0; d < Dk; ++d)
                    s += rnd(q[i * D + h * Dk + d] + vb[h * Dk + d], round) * p[r * D + h * Dk + d];
                bd_full[i * P + r] = rnd(s, round);
            }
        // rel_shift: pad one zero column on the left → [T, P+1], view as [P+1, T], drop the first
        // row, view as [T, P]; then keep the first T columns.
        std::vector<float> padded(static_cast<size_t>(T * (P + 1)), 0.0f);
        for (int64_t i = 0; i < T; ++i)
            for (int64_t r = 0; r < P; ++r) padded[i * (P + 1) + r + 1] = bd_full[i * P + r];
        const float* shifted = padded.data() + T;  // dropping the first row of the [P+1, T] view
        for (int64_t i = 0; i < T; ++i) {
            std::vector<float> s(static_cast<size_t>(T));
            float mx = -INFINITY;
            for (int64_t j = 0; j < T; ++j) {
                float ac = 0;
                for (int64_t d = 0; d < Dk; ++d)
                    ac += rnd(q[i * D + h * Dk + d] + u[h * Dk + d], round) * k[j * D + h * Dk + d];
                const float bd = shifted[i * P + j];
                s[j] = rnd(rnd(rnd(ac, round) + bd, round) / std::sqrt(float(Dk)), round);
                mx = std::max(mx, s[j]);
            }
            double sum = 0;
            for (int64_t j = 0; j < T; ++j) sum += std::exp(double(s[j]) - mx);
            for (int64_t d = 0; d < Dk; ++d) {
                float acc = 0;
                for (int64_t j = 0; j < T; ++j)
                    acc += rnd(float(std::exp(double(s[j]) - mx) / sum), round) *
                           v[j * D + h * Dk + d];
                out[i * D + h * Dk + d] = rnd(acc, round);
            }
        }
    }
    return out;
}

TEST(ConformerOps, RelPosAttentionMatchesLiteralRelShift) {
    const int64_t T = 7, H = 3, Dk = 5, D = H * Dk;
    for (bool bf16 : {false, true}) {
        auto q = randn(T * D, 1), k = randn(T * D, 2), v = randn(T * D, 3);
        auto p = randn((2 * T - 1) * D, 4), u = randn(D, 5, 0.3f), vb = randn(D, 6, 0.3f);
        if (bf16) {
            for (auto* x : {&q, &k, &v, &p}) round_all(*x);
        }
        std::vector<float> out(T * D);
        const ops::Context ctx = cpu_ctx(bf16 ? ops::Precision::kBF16 : ops::Precision::kF32);
        Tensor o = view(out, {T, D});
        ops::rel_pos_attention(ctx, view(q, {T, D}), view(k, {T, D}), view(v, {T, D}),
                               view(p, {2 * T - 1, D}), view(u, {H, Dk}), view(vb, {H, Dk}),
                               static_cast<int>(H), o);
        const auto ref = reference_rel_pos_attention(q, k, v, p, u, vb, T, H, Dk, bf16);
        // fp32: summation order only. bf16: a rare 1-ulp flip of an intermediate (≤ 2^-8 relative).
        EXPECT_LT(max_abs_diff(out, ref), bf16 ? 2e-2 : 1e-5) << (bf16 ? "bf16" : "fp32");
    }
}

// ---- the conv module's depthwise conv → BatchNorm → SiLU
// ------------------------------------------

TEST(ConformerOps, ConvDwBnSiluMatchesTorchSemantics) {
    const int64_t T = 11, C = 6, K = 9, pad = 4;
    for (bool bf16 : {false, true}) {
        auto x = randn(T * C, 7), w = randn(C * K, 8, 0.3f), b = randn(C, 9, 0.1f);
        auto mean = randn(C, 10, 0.1f), var = randn(C, 11, 0.2f), g = randn(C, 12, 0.3f);
        auto beta = randn(C, 13, 0.1f);
        std::vector<float> scale(C), shift(C);
        for (int64_t c = 0; c < C; ++c) {
            var[c] = 1.0f + std::fabs(var[c]);
            scale[c] = (1.0f / std::sqrt(var[c] + 1e-5f)) * g[c];
            shift[c] = beta[c] - mean[c] * scale[c];
        }
        if (bf16) round_all(x);
        std::vector<float> y(T * C), ref(T * C);
        const ops::Context ctx = cpu_ctx(bf16 ? ops::Precision::kBF16 : ops::Precision::kF32);
        Tensor yt = view(y, {T, C});
        ops::conv_dw_bn_silu(ctx, view(x, {T, C}), view(w, {C, K}), view(b, {C}), view(scale, {C}),
                             view(shift, {C}), yt);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < C; ++c) {
                float acc = 0;  // F.pad(x, (4, 4)) then a valid conv
                for (int64_t kk = 0; kk < K; ++kk) {
                    const int64_t ts = t + kk - pad;
                    if (ts >= 0 && ts < T) acc += w[c * K + kk] * x[ts * C + c];
                }
                const float d = rnd(acc + b[c], bf16);
                // BatchNorm1d eval, the literal formula
                const float n =
                    rnd((d - mean[c]) / std::sqrt(var[c] + 1e-5f) * g[c] + beta[c], bf16);
                ref[t * C + c] = rnd(n / (1.0f + std::exp(-n)), bf16);
            }
        EXPECT_LT(max_abs_diff(y, ref), bf16 ? 1e-2 : 1e-5);
    }
}

// ---- subsampling: NCHW convolutions with MaskedConvSequential's length masking
// --------------------

// Conv2d k3 s2 p1 over in [Cin, H, W] (groups: 1 → Cout from 1 channel, or depthwise), with time
// rows >= h_valid zeroed first, as MaskedConvSequential does.
std::vector<float> conv2d_s2(const std::vector<float>& in, int64_t Cin, int64_t H, int64_t W,
                             int64_t h_valid, const std::vector<float>& w,
                             const std::vector<float>& b, int64_t Cout, bool depthwise) {
    const int64_t H2 = (H + 1) / 2, W2 = (W + 1) / 2;
    std::vector<float> out(static_cast<size_t>(Cout * H2 * W2));
    for (int64_t co = 0; co < Cout; ++co)
        for (int64_t ho = 0; ho < H2; ++ho)
            for (int64_t wo = 0; wo < W2; ++wo) {
                const int64_t ci = depthwise ? co : 0;
                float s = 0;
                for (int dh = 0; dh < 3; ++dh)
                    for (int dw = 0; dw < 3; ++dw) {
                        const int64_t hi = 2 * ho - 1 + dh, wi = 2 * wo - 1 + dw;
                        if (hi < 0 || hi >= H || wi < 0 || wi >= W || hi >= h_valid) continue;
                        s += w[co * 9 + dh * 3 + dw] * in[(ci * H + hi) * W + wi];
                    }
                out[(co * H2 + ho) * W2 + wo] = s + b[co];
            }
    return out;
}

TEST(ConformerOps, SubsamplingMatchesMaskedConvSequential) {
    const int64_t F = 10, T = 9, C = 4;
    for (int64_t t_valid : {T, int64_t{6}}) {
        auto mel = randn(F * T, 20), w0 = randn(C * 9, 21, 0.5f), b0 = randn(C, 22, 0.1f);
        auto w1 = randn(C * 9, 23, 0.5f), b1 = randn(C, 24, 0.1f);
        const ops::Context ctx = cpu_ctx(ops::Precision::kF32);
        // voxrt: mel [F, T] → [T1, F1, C] → dw → [T2, F2, C] → flatten [T2, C·F2]
        const int64_t T1 = (T + 1) / 2, F1 = (F + 1) / 2, T2 = (T1 + 1) / 2, F2 = (F1 + 1) / 2;
        std::vector<float> s1(T1 * F1 * C), s2(T2 * F2 * C), flat(T2 * C * F2);
        Tensor s1t = view(s1, {T1, F1, C}), s2t = view(s2, {T2, F2, C}),
               ft = view(flat, {T2, C * F2});
        ops::subsample_conv_in(ctx, view(mel, {F, T}), t_valid, view(w0, {C, 9}), view(b0, {C}),
                               s1t, 0);
        const int64_t len1 = (t_valid + 1) / 2, len2 = (len1 + 1) / 2;
        ops::subsample_dw_conv(ctx, s1t, 0, len1, view(w1, {C, 9}), view(b1, {C}), s2t, 0);
        ops::subsample_flatten(ctx, s2t, len2, ft);
        // reference in NCHW: image (1, T, F) = melᵀ
        std::vector<float> img(T * F);
        for (int64_t t = 0; t < T; ++t)
            for (int64_t f = 0; f < F; ++f) img[t * F + f] = mel[f * T + t];
        auto r1 = conv2d_s2(img, 1, T, F, t_valid, w0, b0, C, false);
        for (float& x : r1) x = std::max(x, 0.0f);  // ReLU (masked rows are re-masked below)
        auto r2 = conv2d_s2(r1, C, T1, F1, len1, w1, b1, C, true);
        std::vector<float> rflat(T2 * C * F2);  // x.transpose(1, 2).reshape(b, t, c·f), masked
        for (int64_t t = 0; t < T2; ++t)
            for (int64_t c = 0; c < C; ++c)
                for (int64_t f = 0; f < F2; ++f)
                    rflat[t * C * F2 + c * F2 + f] = t < len2 ? r2[(c * T2 + t) * F2 + f] : 0.0f;
        EXPECT_LT(max_abs_diff(flat, rflat), 1e-5) << "t_valid " << t_valid;
        for (int64_t t = len1; t < T1; ++t)
            for (int64_t i = 0; i < F1 * C; ++i) EXPECT_EQ(s1[t * F1 * C + i], 0.0f);

        // The same rows computed on time windows (global row offsets), as the encoder chunks:
        // stage-2 rows [1, 3) read stage-1 rows [1, 6), which conv_in computes alone.
        std::vector<float> c1(4 * F1 * C), c2(2 * F2 * C);
        Tensor c1t = view(c1, {4, F1, C}), c2t = view(c2, {2, F2, C});
        ops::subsample_conv_in(ctx, view(mel, {F, T}), t_valid, view(w0, {C, 9}), view(b0, {C}),
                               c1t, 1);
        ops::subsample_dw_conv(ctx, c1t, 1, len1, view(w1, {C, 9}), view(b1, {C}), c2t, 1);
        for (int64_t i = 0; i < 4 * F1 * C; ++i) EXPECT_EQ(c1[i], s1[F1 * C + i]);
        for (int64_t i = 0; i < 2 * F2 * C; ++i) EXPECT_EQ(c2[i], s2[F2 * C + i]);
    }
}

TEST(ConformerOps, SubsampleConvInRoundsMelInBf16) {
    // One channel, kernel picks the centre tap: y[t,f] = relu(round(mel[2f, 2t]))
    const int64_t F = 4, T = 4;
    std::vector<float> mel(F * T, 1.00390625f + 1.0f / 1024);  // not a bf16 value
    std::vector<float> w(9, 0.0f), b(1, 0.0f), y(2 * 2);
    w[4] = 1.0f;
    Tensor yt = view(y, {2, 2, 1});
    ops::subsample_conv_in(cpu_ctx(ops::Precision::kBF16), view(mel, {F, T}), T, view(w, {1, 9}),
                           view(b, {1}), yt, 0);
    EXPECT_EQ(y[0], round_bf16(mel[0]));
}

// ---- positional table
// -----------------------------------------------------------------------------

TEST(AudioEncoder, PositionalTableIsNemoSinusoids) {
    const int d = 8;
    const int64_t n_pos = 4;  // positions 3, 2, 1, 0, -1, -2, -3
    const auto pe = model::conformer_pos_table(n_pos, d);
    ASSERT_EQ(pe.size(), static_cast<size_t>((2 * n_pos - 1) * d));
    for (int64_t row = 0; row < 2 * n_pos - 1; ++row) {
        const double pos = double(n_pos - 1 - row);
        for (int m = 0; m < d / 2; ++m) {
            const double div = std::exp(2.0 * m * -(std::log(10000.0) / d));
            EXPECT_NEAR(pe[row * d + 2 * m], std::sin(pos * div), 1e-6);
            EXPECT_NEAR(pe[row * d + 2 * m + 1], std::cos(pos * div), 1e-6);
        }
    }
}

// ---- AudioEncoder contract on the tiny checkpoint
// ---------------------------------------------------

class TinyEncoder : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string dir = test::data_dir() + "/tiny/model";
        auto cfg = model::load_model_config(dir + "/config.json");
        if (!cfg.is_ok()) GTEST_SKIP() << cfg.status().message();
        config_ = *cfg;
        auto f = io::SafeTensorsFile::open(dir + "/model.safetensors");
        ASSERT_TRUE(f.is_ok()) << f.status().message();
        file_ = std::make_unique<io::SafeTensorsFile>(std::move(f).value());
    }
    model::AudioModelConfig config_;
    std::unique_ptr<io::SafeTensorsFile> file_;
};

TEST_F(TinyEncoder, OutputFramesAreCeilTOver8) {
    const ops::Context ctx = cpu_ctx(ops::Precision::kF32);
    model::WeightStore store(ctx);
    auto enc = model::AudioEncoder::load(config_, *file_, store);
    ASSERT_TRUE(enc.is_ok()) << enc.status().message();
    for (int64_t T = 1; T <= 40; ++T) EXPECT_EQ(enc->output_frames(T), (T + 7) / 8) << T;
}

TEST_F(TinyEncoder, RejectsUnsupportedConfigs) {
    const ops::Context ctx = cpu_ctx(ops::Precision::kF32);
    model::WeightStore store(ctx);
    auto c = config_;
    c.encoder.subsampling = "striding";
    auto r = model::AudioEncoder::load(c, *file_, store);
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("subsampling"), std::string::npos);
    c = config_;
    c.encoder.d_model = 32;  // shapes no longer match the file
    r = model::AudioEncoder::load(c, *file_, store);
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("conformer."), std::string::npos) << r.status().message();
}

// A 600 s recording (the WAV reader's cap) is one segment: 9,600,000 samples at 16 kHz are
// 60000 hops + 1 mel frames.
TEST_F(TinyEncoder, LongestSegmentCoversTheWavCap) {
    const ops::Context ctx = cpu_ctx(ops::Precision::kF32);
    model::WeightStore store(ctx);
    auto enc = model::AudioEncoder::load(config_, *file_, store);
    ASSERT_TRUE(enc.is_ok()) << enc.status().message();
    ASSERT_EQ(config_.preprocessor.sample_rate, 16000);
    EXPECT_EQ(enc->max_mel_frames(), 60001);
}

TEST_F(TinyEncoder, EncodeChecksItsArguments) {
    const ops::Context ctx = cpu_ctx(ops::Precision::kF32);
    model::WeightStore store(ctx);
    auto enc = model::AudioEncoder::load(config_, *file_, store);
    ASSERT_TRUE(enc.is_ok()) << enc.status().message();
    const int64_t T = 20, n = enc->output_frames(T);
    std::vector<float> mel(config_.encoder.feat_in * T, 0.5f);
    std::vector<float> e(n * enc->d_model()), a(n * enc->adapter_dim());
    Tensor et = view(e, {n, enc->d_model()}), at = view(a, {n, enc->adapter_dim()});
    Arena arena;
    ASSERT_TRUE(arena.reserve(Device::kCPU, enc->workspace_bytes(T, ctx)));

    EXPECT_EQ(enc->encode(ctx, mel.data(), 0, arena, et, at).code(), StatusCode::kOutOfRange);
    EXPECT_EQ(enc->encode(ctx, mel.data(), enc->max_mel_frames() + 1, arena, et, at).code(),
              StatusCode::kOutOfRange);
    Tensor wrong = view(e, {n - 1, enc->d_model()});
    EXPECT_EQ(enc->encode(ctx, mel.data(), T, arena, wrong, at).code(),
              StatusCode::kInvalidArgument);
    Arena small;
    ASSERT_TRUE(small.reserve(Device::kCPU, enc->workspace_bytes(T, ctx) - 256));
    EXPECT_EQ(enc->encode(ctx, mel.data(), T, small, et, at).code(), StatusCode::kInvalidArgument);

    ASSERT_TRUE(enc->encode(ctx, mel.data(), T, arena, et, at).is_ok());
    EXPECT_EQ(arena.mark(), 0u) << "encode must return the arena to its mark";
    EXPECT_EQ(arena.high_water(), enc->workspace_bytes(T, ctx));
    // Deterministic: a second call gives the same bits.
    std::vector<float> e2(e.size()), a2(a.size());
    Tensor e2t = view(e2, {n, enc->d_model()}), a2t = view(a2, {n, enc->adapter_dim()});
    ASSERT_TRUE(enc->encode(ctx, mel.data(), T, arena, e2t, a2t).is_ok());
    EXPECT_EQ(e, e2);
    EXPECT_EQ(a, a2);
}

}  // namespace
}  // namespace voxrt
