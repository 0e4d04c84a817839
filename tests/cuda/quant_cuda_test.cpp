// 8-bit weights (core/quant.h: int8 and e4m3 codes with per-row F32 scales) in the CUDA backend:
// ops::linear (GEMV for T <= 8, the decode-to-scratch GEMM above, the last-resort kernel) and the
// persistent kernels (ops::lfm2_decode_step, ops::depthformer_frame) with quantized projection
// matrices. Random weights are quantized with quant::quantize_rows; the CPU reference runs the op
// sequence on quant::dequantize_rows of the same codes (F32 weights), so the two sides stand for
// the same matrix exactly and differ only in summation order and where the scale is applied.
//
// Bars:
// - decode: a code times a power-of-two scale, against a one-hot x, must come out bit for bit as
//   quant::decode gives it on the host (every code, every path).
// - linear F32: relative L2 <= 1e-6. Both sides sum the same products in fp32 in different orders
//   (and the GPU multiplies by the scale once per row instead of once per weight): ~1e-7.
// - linear BF16: one rounding of the same fp32 value on each side, so an element may be one bf16
//   ulp apart (+1e-5·rms for results that cancel); relative L2 <= 2e-3 (as tests/cuda/ops).
// - fused kernels: the bars of tests/cuda/fused_cuda_test.cpp (F32 1e-5, BF16 2e-2 / 3e-2 with
//   teacher forcing), against the op sequence on the GPU with the same codes and against the CPU;
//   F32 greedy codes identical.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/bf16.h"
#include "core/quant.h"
#include "cuda/cuda_test_util.h"
#include "ops/fused_ops.h"
#include "ops/ops.h"

namespace voxrt {
namespace {

using ops::Precision;
using test::Rng;
using test::with_shape;
using Shape = std::vector<int64_t>;

constexpr DType kQuantTypes[2] = {DType::kI8, DType::kF8E4M3};
constexpr Precision kPrecisions[2] = {Precision::kF32, Precision::kBF16};

const char* qname(DType dt) {
    return dt == DType::kI8 ? "int8" : "e4m3";
}
const char* pname(Precision p) {
    return p == Precision::kBF16 ? "bf16" : "fp32";
}
int64_t count(const Shape& s) {
    int64_t n = 1;
    for (int64_t v : s) n *= v;
    return n;
}

// A tensor on both sides: h on the host (F32, or I32), d on the GPU.
struct Pair {
    Tensor h, d;
    Tensor side(bool host) const { return host ? h : d; }
};

// Host and device memory of one test, and the uploads.
class Mem {
public:
    Mem(const ops::Context& gpu) : gpu_(gpu) {}
    bool bf16() const { return gpu_.precision == Precision::kBF16; }

    Tensor dev(DType dt, const Shape& s) {
        dev_.push_back(
            Buffer::allocate(Device::kCUDA, static_cast<size_t>(count(s)) * dtype_size(dt)));
        EXPECT_NE(dev_.back().data(), nullptr);
        return with_shape(dev_.back().data(), dt, Device::kCUDA, s);
    }
    Tensor host(const Shape& s) {
        f32_.emplace_back(static_cast<size_t>(count(s)), 0.0f);
        return with_shape(f32_.back().data(), DType::kF32, Device::kCPU, s);
    }
    // An activation-dtype tensor pair holding `v` (rounded to bf16 on both sides in bf16).
    Pair act(std::vector<float> v, const Shape& s) {
        if (bf16())
            for (auto& x : v) x = round_bf16(x);
        Pair p{host(s), dev(gpu_.act_dtype(), s)};
        std::memcpy(p.h.data, v.data(), v.size() * sizeof(float));
        ops::copy(gpu_, p.h, p.d);
        return p;
    }
    Pair act_random(const Shape& s, Rng& rng, float scale, float offset = 0.0f) {
        std::vector<float> v(static_cast<size_t>(count(s)));
        for (auto& x : v) x = offset + scale * rng.normal();
        return act(std::move(v), s);
    }
    Pair zeros(const Shape& s) {
        return act(std::vector<float>(static_cast<size_t>(count(s)), 0.0f), s);
    }
    Pair f32(std::vector<float> v, const Shape& s) {
        Pair p{host(s), dev(DType::kF32, s)};
        std::memcpy(p.h.data, v.data(), v.size() * sizeof(float));
        ops::copy(gpu_, p.h, p.d);
        return p;
    }
    Pair i32(const std::vector<int32_t>& v) {
        i32_.push_back(v);
        const int64_t n = static_cast<int64_t>(v.size());
        Pair p{Tensor::make(i32_.back().data(), DType::kI32, Device::kCPU, {n}),
               dev(DType::kI32, {n})};
        ops::copy(gpu_, p.h, p.d);
        return p;
    }
    // A quantized [N, K] matrix from `w`: device codes with device row scales; on the host the
    // dequantized F32 matrix.
    Pair quantized(DType qt, const std::vector<float>& w, int64_t N, int64_t K) {
        std::vector<uint8_t> q(static_cast<size_t>(N * K));
        std::vector<float> s(static_cast<size_t>(N));
        quant::quantize_rows(qt, w.data(), N, K, q.data(), s.data());
        return from_codes(qt, q, s, N, K);
    }
    Pair quantized_random(DType qt, int64_t N, int64_t K, Rng& rng) {
        std::vector<float> w(static_cast<size_t>(N * K));
        const float sd = 1.0f / std::sqrt(static_cast<float>(K));
        for (auto& x : w) x = sd * rng.normal();
        return quantized(qt, w, N, K);
    }
    Pair from_codes(DType qt, const std::vector<uint8_t>& q, const std::vector<float>& s, int64_t N,
                    int64_t K) {
        Pair p{host({N, K}), dev(qt, {N, K})};
        Tensor sd = dev(DType::kF32, {N});
        ops::copy(gpu_, Tensor::make(const_cast<uint8_t*>(q.data()), qt, Device::kCPU, {N, K}),
                  p.d);
        ops::copy(gpu_, Tensor::make(const_cast<float*>(s.data()), DType::kF32, Device::kCPU, {N}),
                  sd);
        p.d.scale = sd.ptr<float>();
        quant::dequantize_rows(qt, q.data(), s.data(), N, K, p.h.ptr<float>());
        EXPECT_TRUE(ops::synchronize(gpu_).is_ok());  // the host vectors are temporaries
        return p;
    }

    // The device tensor's values as floats.
    std::vector<float> download(const Tensor& d) {
        std::vector<float> v(static_cast<size_t>(d.numel()));
        Tensor h = Tensor::make(v.data(), DType::kF32, Device::kCPU, {d.numel()});
        ops::copy(gpu_, d, h);
        EXPECT_TRUE(ops::synchronize(gpu_).is_ok());
        return v;
    }
    std::vector<int32_t> download_i32(const Tensor& d) {
        std::vector<int32_t> v(static_cast<size_t>(d.numel()));
        Tensor h = Tensor::make(v.data(), DType::kI32, Device::kCPU, {d.numel()});
        ops::copy(gpu_, d, h);
        EXPECT_TRUE(ops::synchronize(gpu_).is_ok());
        return v;
    }

private:
    const ops::Context& gpu_;
    std::deque<Buffer> dev_;
    std::deque<std::vector<float>> f32_;
    std::deque<std::vector<int32_t>> i32_;
};

std::vector<float> values(const Tensor& h) {
    return std::vector<float>(h.ptr<float>(), h.ptr<float>() + h.numel());
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double a = ref[i], b = got[i];
        if (std::isinf(a) || std::isinf(b)) {
            if (a != b) return INFINITY;
            continue;
        }
        num += (a - b) * (a - b);
        den += a * a;
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

// A GPU context per precision (and one without op scratch), made once.
class QuantCuda : public ::testing::Test {
protected:
    void SetUp() override {
        if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    }
    static ops::Context make(Precision p, size_t scratch_bytes = size_t{64} << 20,
                             backend::GpuOptions gpu = {}) {
        backend::ContextOptions o;
        o.scratch_bytes = scratch_bytes;
        o.gpu = gpu;
        auto c = backend::create_context(Device::kCUDA, p, 0, o);
        EXPECT_TRUE(c.is_ok()) << c.status().message();
        return c.is_ok() ? *c : ops::Context{};
    }
    static ops::Context cpu(Precision p) {
        ops::Context c;
        c.precision = p;
        return c;
    }
};

// ---- ops::linear
// ---------------------------------------------------------------------------------

// Every code through every path, bit for bit: W[r][k] = code (r + 37k) mod 256 (e4m3 NaN codes
// replaced by 0), scale[r] = 2^(r mod 5 - 2), x[m] one-hot at column m mod K, so y[m][r] is one
// code's value times a power of two, which every path must produce exactly (a sum of one product
// and zeros).
TEST_F(QuantCuda, DecodeExact) {
    struct Case {
        int M, K;
        size_t scratch;
        const char* path;
    };
    const Case cases[] = {
        {1, 16, size_t{64} << 20, "gemv"},  {5, 32, size_t{64} << 20, "gemv"},
        {16, 16, size_t{64} << 20, "gemm"}, {3, 17, size_t{64} << 20, "gemm (K % 16)"},
        {3, 17, 0, "simple (no scratch)"},  {40, 16, 0, "simple (no scratch)"},
    };
    const int64_t N = 256;
    for (DType qt : kQuantTypes) {
        for (const Case& c : cases) {
            ops::Context ctx = make(Precision::kF32, c.scratch);
            {
                Mem m(ctx);
                std::vector<uint8_t> q(static_cast<size_t>(N * c.K));
                std::vector<float> s(static_cast<size_t>(N));
                for (int64_t r = 0; r < N; ++r) {
                    s[static_cast<size_t>(r)] = std::ldexp(1.0f, static_cast<int>(r % 5) - 2);
                    for (int64_t k = 0; k < c.K; ++k) {
                        uint8_t code = static_cast<uint8_t>((r + 37 * k) & 255);
                        if (qt == DType::kF8E4M3 && (code & 0x7f) == 0x7f) code = 0;
                        q[static_cast<size_t>(r * c.K + k)] = code;
                    }
                }
                Pair w = m.from_codes(qt, q, s, N, c.K);
                std::vector<float> xv(static_cast<size_t>(c.M * c.K), 0.0f);
                for (int i = 0; i < c.M; ++i) xv[static_cast<size_t>(i * c.K + i % c.K)] = 1.0f;
                Pair x = m.act(xv, {c.M, c.K});
                Tensor y = m.dev(DType::kF32, {c.M, N});
                ops::linear(ctx, x.d, w.d, nullptr, y);
                const std::vector<float> got = m.download(y);
                int bad = 0;
                for (int i = 0; i < c.M; ++i) {
                    for (int64_t r = 0; r < N; ++r) {
                        const uint8_t code = q[static_cast<size_t>(r * c.K + i % c.K)];
                        const float want = s[static_cast<size_t>(r)] * quant::decode(qt, code);
                        const float g = got[static_cast<size_t>(i * N + r)];
                        // == (not the bits): code 0x80 of e4m3 is -0, a sum starting at +0 gives +0
                        if (!(g == want) && bad++ < 5)
                            ADD_FAILURE() << qname(qt) << " " << c.path << " M" << c.M << " K"
                                          << c.K << ": code 0x" << std::hex << int(code) << std::dec
                                          << " row " << r << " got " << g << " want " << want;
                    }
                }
                std::printf("[quant decode] %s %-20s M%-3d K%-3d %d of %lld outputs differ\n",
                            qname(qt), c.path, c.M, c.K, bad, static_cast<long long>(c.M * N));
            }
            backend::destroy_context(ctx);
        }
    }
}

TEST_F(QuantCuda, Linear) {
    struct Case {
        int M, N, K;
        bool bias;
    };
    const Case cases[] = {
        // decode GEMV (T <= 8): the backbone, text head, depthformer shapes
        {1, 6144, 2048, false},
        {1, 2048, 2048, false},
        {1, 8192, 2048, false},
        {1, 2048, 8192, false},
        {1, 65536, 2048, false},
        {1, 1536, 1024, true},
        {1, 2049, 1024, false},
        {2, 2048, 2048, true},
        {5, 2816, 1024, false},
        {8, 1024, 2816, true},
        // T > 8: codes decoded into the scratch, cuBLASLt (or SIMT), then scale + bias
        {9, 2048, 2048, true},
        {64, 6144, 2048, false},
        {200, 2049, 1024, true},
        // K not a multiple of 16: no GEMV
        {3, 100, 100, true},
        {40, 300, 100, false},
    };
    for (Precision p : kPrecisions) {
        ops::Context ctx = make(p);
        ops::Context host = cpu(p);
        for (DType qt : kQuantTypes) {
            Mem m(ctx);
            Rng rng(500 + static_cast<int>(qt) + 10 * static_cast<int>(p));
            for (const Case& c : cases) {
                Pair x = m.act_random({c.M, c.K}, rng, 1.0f);
                Pair w = m.quantized_random(qt, c.N, c.K, rng);
                Pair b = m.act_random({c.N}, rng, 0.5f);
                Pair y{m.host({c.M, c.N}), m.dev(ctx.act_dtype(), {c.M, c.N})};
                ops::linear(host, x.h, w.h, c.bias ? &b.h : nullptr, y.h);
                ops::linear(ctx, x.d, w.d, c.bias ? &b.d : nullptr, y.d);
                const std::vector<float> got = m.download(y.d), ref = values(y.h);
                const double rms = test::rms(ref);
                const test::Diff d = p == Precision::kF32 ? test::compare(got, ref, -1, 0)
                                                          : test::compare(got, ref, 1, 1e-5 * rms);
                std::printf(
                    "[quant linear] %s %s M%-3d %5dx%-5d%s rel L2 %.3g max abs %.3g (%lld off)\n",
                    pname(p), qname(qt), c.M, c.N, c.K, c.bias ? "+b" : "  ", d.rel_l2, d.max_abs,
                    static_cast<long long>(d.bad));
                EXPECT_LE(d.rel_l2, p == Precision::kF32 ? 1e-6 : 2e-3)
                    << pname(p) << " " << qname(qt) << " M" << c.M << " " << c.N << "x" << c.K;
                EXPECT_EQ(d.bad, 0) << "first at " << d.first_bad << ": got "
                                    << got[std::max<int64_t>(d.first_bad, 0)] << " want "
                                    << ref[std::max<int64_t>(d.first_bad, 0)];
            }
        }
        backend::destroy_context(ctx);
    }
}

// ---- the fused LFM2 backbone step ---------------------------------------------------------------

struct BackboneLayer {
    bool attention = false;
    Pair opn, ffn, w1, w3, w2, out_proj;
    Pair in_proj, conv;    // conv layers
    Pair q, k, v, qn, kn;  // attention layers
};
struct Backbone {
    static constexpr int64_t D = 256, F = 512, H = 4, Hkv = 2, Dh = 64, Kc = 3, S = 64;
    std::vector<BackboneLayer> layers;
    Pair final_norm, cos, sin;
    float eps = 1e-5f;
};

Backbone make_backbone(Mem& m, DType qt, Rng& rng) {
    Backbone b;
    const int64_t D = b.D, F = b.F, HD = b.H * b.Dh, KV = b.Hkv * b.Dh;
    for (int l = 0; l < 4; ++l) {
        BackboneLayer L;
        L.attention = l % 2 == 1;
        L.opn = m.act_random({D}, rng, 0.1f, 1.0f);
        L.ffn = m.act_random({D}, rng, 0.1f, 1.0f);
        L.w1 = m.quantized_random(qt, F, D, rng);
        L.w3 = m.quantized_random(qt, F, D, rng);
        L.w2 = m.quantized_random(qt, D, F, rng);
        if (L.attention) {
            L.q = m.quantized_random(qt, HD, D, rng);
            L.k = m.quantized_random(qt, KV, D, rng);
            L.v = m.quantized_random(qt, KV, D, rng);
            L.qn = m.act_random({b.Dh}, rng, 0.1f, 1.0f);
            L.kn = m.act_random({b.Dh}, rng, 0.1f, 1.0f);
            L.out_proj = m.quantized_random(qt, D, HD, rng);
        } else {
            L.in_proj = m.quantized_random(qt, 3 * D, D, rng);
            L.conv = m.act_random({D, 1, b.Kc}, rng, 0.5f);
            L.out_proj = m.quantized_random(qt, D, D, rng);
        }
        b.layers.push_back(L);
    }
    b.final_norm = m.act_random({D}, rng, 0.1f, 1.0f);
    const int64_t half = b.Dh / 2;
    std::vector<float> c(static_cast<size_t>(b.S * half)), s(c.size());
    for (int64_t p = 0; p < b.S; ++p)
        for (int64_t i = 0; i < half; ++i) {
            const double a =
                static_cast<double>(p) * std::pow(1e6, -2.0 * static_cast<double>(i) / b.Dh);
            c[static_cast<size_t>(p * half + i)] = static_cast<float>(std::cos(a));
            s[static_cast<size_t>(p * half + i)] = static_cast<float>(std::sin(a));
        }
    b.cos = m.f32(c, {b.S, half});
    b.sin = m.f32(s, {b.S, half});
    return b;
}

// One sequence's memory: conv states or KV caches per layer, zeroed.
struct BackboneState {
    std::vector<Pair> conv_state, kc, vc;
};
BackboneState new_state(Mem& m, const Backbone& b) {
    BackboneState st;
    for (const BackboneLayer& L : b.layers) {
        st.conv_state.push_back(L.attention ? Pair{} : m.zeros({b.Kc - 1, b.D}));
        st.kc.push_back(L.attention ? m.zeros({b.Hkv, b.S, b.Dh}) : Pair{});
        st.vc.push_back(L.attention ? m.zeros({b.Hkv, b.S, b.Dh}) : Pair{});
    }
    return st;
}

// One decode step as the op sequence (model/lfm2.cpp forward_rows with T = 1) on `host` side.
void backbone_ops(const ops::Context& ctx, Mem& m, const Backbone& b, BackboneState& st, bool host,
                  Tensor x, const Tensor& pos, Tensor out) {
    const int64_t D = b.D, H = b.H, Hkv = b.Hkv, Dh = b.Dh;
    auto t = [&](const Shape& s) { return host ? m.host(s) : m.dev(ctx.act_dtype(), s); };
    Tensor h = t({1, D}), o = t({1, D});
    for (size_t l = 0; l < b.layers.size(); ++l) {
        const BackboneLayer& L = b.layers[l];
        ops::rms_norm(ctx, x, L.opn.side(host), b.eps, ops::RmsStyle::kLfm2, h);
        if (!L.attention) {
            Tensor bcx = t({3, D});
            Tensor row = bcx.reshape({1, 3 * D});
            ops::linear(ctx, h, L.in_proj.side(host), nullptr, row);
            Tensor bb = bcx.rows(0, 1), cc = bcx.rows(1, 2), xx = bcx.rows(2, 3);
            ops::mul(ctx, bb, xx, bb);
            Tensor state = st.conv_state[l].side(host);
            ops::short_conv(ctx, bb, L.conv.side(host), state, pos, xx);
            ops::mul(ctx, cc, xx, cc);
            ops::linear(ctx, cc, L.out_proj.side(host), nullptr, o);
        } else {
            Tensor q = t({1, H, Dh}), k = t({1, Hkv, Dh}), v = t({1, Hkv, Dh}), a = t({1, H * Dh});
            Tensor q2 = q.reshape({1, H * Dh}), k2 = k.reshape({1, Hkv * Dh}),
                   v2 = v.reshape({1, Hkv * Dh});
            ops::linear(ctx, h, L.q.side(host), nullptr, q2);
            ops::linear(ctx, h, L.k.side(host), nullptr, k2);
            ops::linear(ctx, h, L.v.side(host), nullptr, v2);
            Tensor qr = q.reshape({H, Dh}), kr = k.reshape({Hkv, Dh});
            ops::rms_norm(ctx, qr, L.qn.side(host), b.eps, ops::RmsStyle::kLfm2, qr);
            ops::rms_norm(ctx, kr, L.kn.side(host), b.eps, ops::RmsStyle::kLfm2, kr);
            ops::rope(ctx, q, pos, b.cos.side(host), b.sin.side(host), ops::RopeStyle::kNeox);
            ops::rope(ctx, k, pos, b.cos.side(host), b.sin.side(host), ops::RopeStyle::kNeox);
            Tensor kc = st.kc[l].side(host), vc = st.vc[l].side(host);
            ops::kv_write(ctx, k, v, pos, kc, vc);
            Tensor a3 = a.reshape({1, H, Dh});
            ops::attention(ctx, q, kc, vc, pos, 1.0f / std::sqrt(static_cast<float>(Dh)), 0, a3);
            ops::linear(ctx, a, L.out_proj.side(host), nullptr, o);
        }
        ops::add(ctx, o, x, x);
        ops::rms_norm(ctx, x, L.ffn.side(host), b.eps, ops::RmsStyle::kLfm2, h);
        Tensor g1 = t({1, b.F}), g3 = t({1, b.F});
        ops::linear(ctx, h, L.w1.side(host), nullptr, g1);
        ops::linear(ctx, h, L.w3.side(host), nullptr, g3);
        ops::swiglu(ctx, g1, g3, g1);
        ops::linear(ctx, g1, L.w2.side(host), nullptr, o);
        ops::add(ctx, x, o, x);
    }
    ops::rms_norm(ctx, x, b.final_norm.side(host), b.eps, ops::RmsStyle::kLfm2, out);
}

ops::Lfm2Step fused_step(const Backbone& b, BackboneState& st,
                         std::vector<ops::Lfm2StepLayer>& layers) {
    layers.clear();
    for (size_t l = 0; l < b.layers.size(); ++l) {
        const BackboneLayer& L = b.layers[l];
        ops::Lfm2StepLayer f;
        f.attention = L.attention;
        f.operator_norm = L.opn.d;
        f.ffn_norm = L.ffn.d;
        f.w1 = L.w1.d;
        f.w3 = L.w3.d;
        f.w2 = L.w2.d;
        f.out_proj = L.out_proj.d;
        f.in_proj = L.in_proj.d;
        f.conv = L.conv.d;
        f.conv_state = st.conv_state[l].d;
        f.q_proj = L.q.d;
        f.k_proj = L.k.d;
        f.v_proj = L.v.d;
        f.q_norm = L.qn.d;
        f.k_norm = L.kn.d;
        f.k_cache = st.kc[l].d;
        f.v_cache = st.vc[l].d;
        layers.push_back(f);
    }
    ops::Lfm2Step s;
    s.layers = layers.data();
    s.n_layers = static_cast<int>(layers.size());
    s.final_norm = b.final_norm.d;
    s.rope_cos = b.cos.d;
    s.rope_sin = b.sin.d;
    s.n_heads = static_cast<int>(b.H);
    s.n_kv_heads = static_cast<int>(b.Hkv);
    s.eps = b.eps;
    return s;
}

TEST_F(QuantCuda, FusedBackboneStep) {
    const int steps = 40;  // attention over more than one 32-position chunk
    // fp32 also with the GPU options that change the kernel's grid and loads (fewer blocks, L2
    // prefetch of the next phase's rows, whose byte count depends on the weight type).
    backend::GpuOptions prefetch;
    prefetch.reserve_sms = 8;
    prefetch.l2_prefetch = true;
    struct Run {
        Precision p;
        backend::GpuOptions gpu;
        const char* what;
    };
    const Run runs[] = {{Precision::kF32, {}, ""},
                        {Precision::kBF16, {}, ""},
                        {Precision::kF32, prefetch, " (reserve_sms 8, l2_prefetch)"}};
    for (const Run& run : runs) {
        const Precision p = run.p;
        ops::Context ctx = make(p, size_t{64} << 20, run.gpu);
        ops::Context host = cpu(p);
        for (DType qt : kQuantTypes) {
            Mem m(ctx);
            Rng rng(900 + static_cast<int>(qt));
            const Backbone b = make_backbone(m, qt, rng);
            BackboneState s_fused = new_state(m, b), s_ops = new_state(m, b),
                          s_cpu = new_state(m, b);
            std::vector<ops::Lfm2StepLayer> layers;
            ops::Lfm2Step fs = fused_step(b, s_fused, layers);
            // The kernel declines a quantized matrix without its scales (weight_ok).
            {
                std::vector<ops::Lfm2StepLayer> bad = layers;
                bad[1].w2.scale = nullptr;
                ops::Lfm2Step bs = fs;
                bs.layers = bad.data();
                Pair x0 = m.zeros({1, b.D}), o0 = m.zeros({1, b.D});
                Pair p0 = m.i32({0});
                bs.x = x0.d;
                bs.pos = p0.d;
                bs.out = o0.d;
                EXPECT_FALSE(ops::lfm2_decode_step(ctx, bs))
                    << "took a quantized matrix without row scales";
            }
            double worst_fused = 0, worst_cpu = 0;
            for (int step = 0; step < steps; ++step) {
                std::vector<float> xv(static_cast<size_t>(b.D));
                for (auto& v : xv) v = 0.5f * rng.normal();
                Pair pos = m.i32({step});
                Pair x1 = m.act(xv, {1, b.D}), x2 = m.act(xv, {1, b.D}), x3 = m.act(xv, {1, b.D});
                Pair out_f = m.zeros({1, b.D}), out_o = m.zeros({1, b.D}),
                     out_c = m.zeros({1, b.D});
                fs.x = x1.d;
                fs.pos = pos.d;
                fs.out = out_f.d;
                ASSERT_TRUE(ops::lfm2_decode_step(ctx, fs))
                    << "the fused step declined " << qname(qt) << " weights";
                backbone_ops(ctx, m, b, s_ops, false, x2.d, pos.d, out_o.d);
                backbone_ops(host, m, b, s_cpu, true, x3.h, pos.h, out_c.h);
                const std::vector<float> f = m.download(out_f.d), o = m.download(out_o.d),
                                         c = values(out_c.h);
                worst_fused = std::max(worst_fused, rel_l2(f, o));
                worst_cpu = std::max(worst_cpu, rel_l2(o, c));
            }
            std::printf(
                "[quant fused lfm2 step] %s %s%s: worst step rel L2 fused vs op sequence %.3g, "
                "op sequence GPU vs CPU %.3g (%d steps)\n",
                pname(p), qname(qt), run.what, worst_fused, worst_cpu, steps);
            const double bar = p == Precision::kF32 ? 1e-5 : 3e-2;
            EXPECT_LE(worst_fused, bar) << pname(p) << " " << qname(qt);
            EXPECT_LE(worst_cpu, bar) << pname(p) << " " << qname(qt);
        }
        backend::destroy_context(ctx);
    }
}

// ---- the fused depthformer frame ----------------------------------------------------------------

struct DepthLayer {
    Pair opn, ffn, qkv, out_proj, qn, kn, w1, w3, w2;
};
struct Depth {
    static constexpr int64_t Dd = 256, H = 4, Hkv = 2, Dh = 64, F = 512, V = 272, Q = 8;
    std::vector<DepthLayer> layers;
    std::vector<Pair> emb, emb_norm, to_logits;
    Pair cos, sin, positions;
    float eps = 1e-5f;
};

Depth make_depth(Mem& m, DType qt, Rng& rng) {
    Depth d;
    const int64_t Dd = d.Dd, KV = d.Hkv * d.Dh;
    for (int l = 0; l < 2; ++l) {
        DepthLayer L;
        L.opn = m.act_random({Dd}, rng, 0.1f, 1.0f);
        L.ffn = m.act_random({Dd}, rng, 0.1f, 1.0f);
        L.qkv = m.quantized_random(qt, Dd + 2 * KV, Dd, rng);
        L.out_proj = m.quantized_random(qt, Dd, Dd, rng);
        L.qn = m.act_random({d.Dh}, rng, 0.1f, 1.0f);
        L.kn = m.act_random({d.Dh}, rng, 0.1f, 1.0f);
        L.w1 = m.quantized_random(qt, d.F, Dd, rng);
        L.w3 = m.quantized_random(qt, d.F, Dd, rng);
        L.w2 = m.quantized_random(qt, Dd, d.F, rng);
        d.layers.push_back(L);
    }
    for (int64_t i = 0; i < d.Q; ++i) {
        d.emb.push_back(m.act_random({d.V, Dd}, rng, 1.0f));
        d.emb_norm.push_back(m.act_random({Dd}, rng, 0.1f, 1.0f));
        d.to_logits.push_back(m.quantized_random(qt, d.V, Dd, rng));
    }
    const int64_t half = d.Dh / 2;
    std::vector<float> c(static_cast<size_t>(d.Q * half)), s(c.size());
    for (int64_t p = 0; p < d.Q; ++p)
        for (int64_t i = 0; i < half; ++i) {
            const double a =
                static_cast<double>(p) * std::pow(1e4, -2.0 * static_cast<double>(i) / d.Dh);
            c[static_cast<size_t>(p * half + i)] = static_cast<float>(std::cos(a));
            s[static_cast<size_t>(p * half + i)] = static_cast<float>(std::sin(a));
        }
    d.cos = m.f32(c, {d.Q, half});
    d.sin = m.f32(s, {d.Q, half});
    std::vector<int32_t> pos(static_cast<size_t>(d.Q));
    for (int64_t i = 0; i < d.Q; ++i) pos[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    d.positions = m.i32(pos);
    return d;
}

// The 8-codebook loop as the op sequence (model/audio_head.cpp AudioHead::sample_frame, greedy),
// teacher-forced with `forced` codes: logits [Q, V] and codes [Q] on the `host` side.
void depth_ops(const ops::Context& ctx, Mem& m, const Depth& d, bool host, const Tensor& in,
               const Tensor& forced, Tensor logits, Tensor codes) {
    const int64_t Dd = d.Dd, H = d.H, Hkv = d.Hkv, Dh = d.Dh, KV = Hkv * Dh;
    const DType dt = host ? DType::kF32 : ctx.act_dtype();
    auto t = [&](const Shape& s) { return host ? m.host(s) : m.dev(dt, s); };
    std::vector<Tensor> kc, vc;
    for (size_t l = 0; l < d.layers.size(); ++l) {
        kc.push_back(host ? m.host({Hkv, d.Q, Dh}) : m.dev(dt, {Hkv, d.Q, Dh}));
        vc.push_back(host ? m.host({Hkv, d.Q, Dh}) : m.dev(dt, {Hkv, d.Q, Dh}));
    }
    Tensor prev = t({1, Dd}), x = t({1, Dd}), n = t({1, Dd}), qkv = t({1, Dd + 2 * KV});
    const size_t es = dtype_size(dt);
    Tensor q = Tensor::make(qkv.data, dt, qkv.device, {1, H, Dh});
    Tensor k = Tensor::make(static_cast<char*>(qkv.data) + static_cast<size_t>(Dd) * es, dt,
                            qkv.device, {1, Hkv, Dh});
    Tensor v = Tensor::make(static_cast<char*>(qkv.data) + static_cast<size_t>(Dd + KV) * es, dt,
                            qkv.device, {1, Hkv, Dh});
    Tensor att = t({1, H, Dh}), o = t({1, Dd}), g1 = t({1, d.F}), g3 = t({1, d.F});
    Tensor qr = q.reshape({H, Dh}), kr = k.reshape({Hkv, Dh}), att2 = att.reshape({1, H * Dh});
    ops::zero(ctx, prev);
    for (int64_t i = 0; i < d.Q; ++i) {
        Tensor pos = d.positions.side(host).rows(i, i + 1);
        ops::add(ctx, in.rows(i, i + 1), prev, x);
        for (size_t l = 0; l < d.layers.size(); ++l) {
            const DepthLayer& L = d.layers[l];
            ops::rms_norm(ctx, x, L.opn.side(host), d.eps, ops::RmsStyle::kFused, n);
            ops::linear(ctx, n, L.qkv.side(host), nullptr, qkv);
            ops::rms_norm(ctx, qr, L.qn.side(host), d.eps, ops::RmsStyle::kFused, qr);
            ops::rms_norm(ctx, kr, L.kn.side(host), d.eps, ops::RmsStyle::kFused, kr);
            ops::rope(ctx, q, pos, d.cos.side(host), d.sin.side(host), ops::RopeStyle::kPairs);
            ops::rope(ctx, k, pos, d.cos.side(host), d.sin.side(host), ops::RopeStyle::kPairs);
            ops::kv_write(ctx, k, v, pos, kc[l], vc[l]);
            ops::attention(ctx, q, kc[l], vc[l], pos, 1.0f / std::sqrt(static_cast<float>(Dh)), 0,
                           att);
            ops::linear(ctx, att2, L.out_proj.side(host), nullptr, o);
            ops::add(ctx, o, x, x);
            ops::rms_norm(ctx, x, L.ffn.side(host), d.eps, ops::RmsStyle::kFused, n);
            ops::linear(ctx, n, L.w1.side(host), nullptr, g1);
            ops::linear(ctx, n, L.w3.side(host), nullptr, g3);
            ops::swiglu(ctx, g1, g3, g1);
            ops::linear(ctx, g1, L.w2.side(host), nullptr, o);
            ops::add(ctx, x, o, x);
        }
        ops::rms_norm(ctx, x, d.emb_norm[static_cast<size_t>(i)].side(host), d.eps,
                      ops::RmsStyle::kFused, n);
        Tensor lg = logits.rows(i, i + 1);
        ops::linear(ctx, n, d.to_logits[static_cast<size_t>(i)].side(host), nullptr, lg);
        Tensor ci = codes.rows(i, i + 1);
        ops::argmax(ctx, lg, ci);
        ops::embedding(ctx, d.emb[static_cast<size_t>(i)].side(host), forced.rows(i, i + 1), prev);
    }
}

TEST_F(QuantCuda, FusedDepthformerFrame) {
    const int frames = 12;
    for (Precision p : kPrecisions) {
        ops::Context ctx = make(p);
        ops::Context host = cpu(p);
        for (DType qt : kQuantTypes) {
            Mem m(ctx);
            Rng rng(1300 + static_cast<int>(qt));
            const Depth d = make_depth(m, qt, rng);
            std::vector<ops::DepthformerLayer> layers;
            for (const DepthLayer& L : d.layers) {
                ops::DepthformerLayer f;
                f.operator_norm = L.opn.d;
                f.ffn_norm = L.ffn.d;
                f.qkv = L.qkv.d;
                f.out_proj = L.out_proj.d;
                f.q_norm = L.qn.d;
                f.k_norm = L.kn.d;
                f.w1 = L.w1.d;
                f.w3 = L.w3.d;
                f.w2 = L.w2.d;
                f.k_cache = m.dev(ctx.act_dtype(), {d.Hkv, d.Q, d.Dh});
                f.v_cache = m.dev(ctx.act_dtype(), {d.Hkv, d.Q, d.Dh});
                layers.push_back(f);
            }
            std::vector<Tensor> emb, emb_norm, to_logits;
            for (int64_t i = 0; i < d.Q; ++i) {
                emb.push_back(d.emb[static_cast<size_t>(i)].d);
                emb_norm.push_back(d.emb_norm[static_cast<size_t>(i)].d);
                to_logits.push_back(d.to_logits[static_cast<size_t>(i)].d);
            }
            std::vector<float> lf, lo, lc;  // logits of every frame: fused, GPU op sequence, CPU
            std::vector<int32_t> cf, co, cc;
            for (int fr = 0; fr < frames; ++fr) {
                Pair in = m.act_random({d.Q, d.Dd}, rng, 1.0f);
                // The CPU's own greedy codes, then every run teacher-forced with them.
                Pair codes_c = m.i32(std::vector<int32_t>(static_cast<size_t>(d.Q), 0));
                Pair logits_c{m.host({d.Q, d.V}), Tensor{}};
                depth_ops(host, m, d, true, in.h, codes_c.h, logits_c.h, codes_c.h);
                const std::vector<int32_t> own(codes_c.h.ptr<int32_t>(),
                                               codes_c.h.ptr<int32_t>() + d.Q);
                Pair forced = m.i32(own);
                Pair codes_ct = m.i32(std::vector<int32_t>(static_cast<size_t>(d.Q), 0));
                depth_ops(host, m, d, true, in.h, forced.h, logits_c.h, codes_ct.h);
                EXPECT_EQ(own, std::vector<int32_t>(codes_ct.h.ptr<int32_t>(),
                                                    codes_ct.h.ptr<int32_t>() + d.Q))
                    << "teacher forcing with its own codes changed the CPU op sequence";

                Tensor logits_o = m.dev(ctx.act_dtype(), {d.Q, d.V}),
                       codes_o = m.dev(DType::kI32, {d.Q});
                depth_ops(ctx, m, d, false, in.d, forced.d, logits_o, codes_o);

                Tensor logits_f = m.dev(ctx.act_dtype(), {d.Q, d.V}),
                       codes_f = m.dev(DType::kI32, {d.Q});
                ops::DepthformerFrame f;
                f.layers = layers.data();
                f.n_layers = static_cast<int>(layers.size());
                f.emb = emb.data();
                f.emb_norm = emb_norm.data();
                f.to_logits = to_logits.data();
                f.rope_cos = d.cos.d;
                f.rope_sin = d.sin.d;
                f.n_heads = static_cast<int>(d.H);
                f.n_kv_heads = static_cast<int>(d.Hkv);
                f.eps = d.eps;
                f.in = in.d;
                f.codes = codes_f;
                f.logits_out = &logits_f;
                f.forced = &forced.d;
                ASSERT_TRUE(ops::depthformer_frame(ctx, f))
                    << "the fused frame declined " << qname(qt) << " weights";

                const std::vector<float> a = m.download(logits_f), b = m.download(logits_o);
                lf.insert(lf.end(), a.begin(), a.end());
                lo.insert(lo.end(), b.begin(), b.end());
                lc.insert(lc.end(), logits_c.h.ptr<float>(), logits_c.h.ptr<float>() + d.Q * d.V);
                const std::vector<int32_t> x = m.download_i32(codes_f), y = m.download_i32(codes_o);
                cf.insert(cf.end(), x.begin(), x.end());
                co.insert(co.end(), y.begin(), y.end());
                cc.insert(cc.end(), own.begin(), own.end());
            }
            size_t agree_fo = 0, agree_oc = 0;
            for (size_t i = 0; i < cc.size(); ++i) {
                agree_fo += cf[i] == co[i];
                agree_oc += co[i] == cc[i];
            }
            const double rel_fo = rel_l2(lf, lo), rel_oc = rel_l2(lo, lc);
            std::printf(
                "[quant fused depthformer] %s %s: logits rel L2 fused vs op sequence %.3g, "
                "op sequence GPU vs CPU %.3g; codes equal %zu/%zu and %zu/%zu\n",
                pname(p), qname(qt), rel_fo, rel_oc, agree_fo, cc.size(), agree_oc, cc.size());
            if (p == Precision::kF32) {
                EXPECT_LE(rel_fo, 1e-5);
                EXPECT_LE(rel_oc, 1e-5);
                EXPECT_EQ(cf, co) << "greedy codes, fused vs op sequence";
                EXPECT_EQ(co, cc) << "greedy codes, GPU vs CPU";
            } else {
                EXPECT_LE(rel_fo, 2e-2);
                EXPECT_LE(rel_oc, 2e-2);
                EXPECT_GE(static_cast<double>(agree_fo) / cc.size(), 0.8);
                EXPECT_GE(static_cast<double>(agree_oc) / cc.size(), 0.8);
            }
        }
        backend::destroy_context(ctx);
    }
}

}  // namespace
}  // namespace voxrt
