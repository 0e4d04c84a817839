// Every op of the CUDA backend against the CPU reference on random inputs, in both precisions
// (F32 activations; BF16 activations, whose CPU counterpart is F32 holding bf16 values). Each check
// prints the relative L2 error and the largest absolute error, and the table is repeated at the
// end.
//
// Tolerances (next to each check):
// - F32: the two backends sum in different orders and CUDA's expf/erff may differ from glibc by an
//   ulp or two, so relative L2 stays near 1e-7; checks allow 1e-6 for elementwise/normalization
//   ops and 1e-5 for reductions over up to 8192 terms (linear, attention).
// - BF16: both backends compute the same fp32 value up to the rounding above and round it once to
//   bf16, so an element may land one bf16 ulp (2^-8 relative) apart when the fp32 value sits near a
//   rounding boundary; ops that round twice in a chain (RMSNorm kLfm2, add_scaled, swiglu) may
//   compound that to two ulps. Per-element checks allow that many ulps (+1e-5·rms for results
//   that cancel to ~0), and relative L2 must stay under 2e-3 (half an ulp on average: flips are
//   rare).
// - Integer outputs (argmax, sampling), embeddings, copies, kv_write: exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/bf16.h"
#include "core/thread_pool.h"
#include "cuda/cuda_test_util.h"
#include "ops/conformer_ops.h"
#include "ops/ops.h"

namespace voxrt {
namespace {

using ops::Precision;
using test::compare;
using test::Diff;
using test::Rng;
using test::with_shape;
using Shape = std::vector<int64_t>;

const char* prec_name(Precision p) {
    return p == Precision::kBF16 ? "bf16" : "f32";
}

std::string shape_str(const Shape& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i) r += ',';
        r += std::to_string(s[i]);
    }
    r += ']';
    return r;
}

struct Row {
    std::string op, what;
    const char* prec;
    Diff d;
};
std::vector<Row>& table() {
    static std::vector<Row> rows;
    return rows;
}

// Host and device tensors of one test, kept alive until the Env goes away.
class Env {
public:
    Env(const ops::Context& gpu, ThreadPool* pool, Precision p) : gpu_(gpu), prec_(p) {
        cpu_.precision = p;
        cpu_.pool = pool;
    }
    const ops::Context& cpu() const { return cpu_; }
    const ops::Context& gpu() const { return gpu_; }
    bool bf16() const { return prec_ == Precision::kBF16; }
    Precision prec() const { return prec_; }
    DType act() const { return gpu_.act_dtype(); }

    struct Pair {
        Tensor h, d;
    };

    Tensor dev(const Shape& s, DType dt) {
        int64_t n = 1;
        for (auto v : s) n *= v;
        dbuf_.push_back(Buffer::allocate(Device::kCUDA, static_cast<size_t>(n) * dtype_size(dt)));
        EXPECT_NE(dbuf_.back().data(), nullptr);
        return with_shape(dbuf_.back().data(), dt, Device::kCUDA, s);
    }
    Tensor host_f32(const Shape& s) {
        int64_t n = 1;
        for (auto v : s) n *= v;
        hf_.emplace_back(static_cast<size_t>(n), 0.0f);
        return with_shape(hf_.back().data(), DType::kF32, Device::kCPU, s);
    }
    // Host F32 + device activation copy of `values` (rounded to bf16 first in bf16 precision).
    Pair act_from(std::vector<float> values, const Shape& s) {
        if (bf16())
            for (auto& v : values) v = round_bf16(v);
        Tensor h = host_f32(s);
        std::copy(values.begin(), values.end(), h.ptr<float>());
        Tensor d = dev(s, act());
        ops::copy(gpu_, h, d);
        return {h, d};
    }
    Pair act(const Shape& s, Rng& rng, float scale = 1.0f) {
        int64_t n = 1;
        for (auto v : s) n *= v;
        std::vector<float> v(static_cast<size_t>(n));
        for (auto& x : v) x = rng.normal() * scale;
        return act_from(std::move(v), s);
    }
    // A parameter stored as `dt` (BF16 or F32) on both sides.
    Pair param(const Shape& s, Rng& rng, DType dt, float scale = 1.0f, float offset = 0.0f) {
        int64_t n = 1;
        for (auto v : s) n *= v;
        Tensor h;
        if (dt == DType::kBF16) {
            hb_.emplace_back(static_cast<size_t>(n));
            for (auto& x : hb_.back()) x = f32_to_bf16(offset + rng.normal() * scale);
            h = with_shape(hb_.back().data(), dt, Device::kCPU, s);
        } else {
            h = host_f32(s);
            for (int64_t i = 0; i < n; ++i) h.ptr<float>()[i] = offset + rng.normal() * scale;
        }
        Tensor d = dev(s, dt);
        ops::copy(gpu_, h, d);
        return {h, d};
    }
    Pair ids(const std::vector<int32_t>& v, const Shape& s) {
        hi_.push_back(v);
        Tensor h = with_shape(hi_.back().data(), DType::kI32, Device::kCPU, s);
        Tensor d = dev(s, DType::kI32);
        ops::copy(gpu_, h, d);
        return {h, d};
    }
    Pair out(const Shape& s) { return {host_f32(s), dev(s, act())}; }

    std::vector<float> fetch(const Tensor& d) {
        std::vector<float> v(static_cast<size_t>(d.numel()));
        Tensor h =
            with_shape(v.data(), DType::kF32, Device::kCPU, Shape(d.shape, d.shape + d.ndim));
        ops::copy(gpu_, d, h);
        return v;
    }
    static std::vector<float> values(const Tensor& h) {
        return std::vector<float>(h.ptr<float>(), h.ptr<float>() + h.numel());
    }

    // Compares the device result with the CPU one and records the row.
    void check(const std::string& op, const std::string& what, const Tensor& dev_out,
               const Tensor& host_ref, double tol_f32, int ulps, double tol_bf16 = 2e-3) {
        const Status st = ops::synchronize(gpu_);
        EXPECT_TRUE(st.is_ok()) << op << ": " << st.message();
        const std::vector<float> got = fetch(dev_out), ref = values(host_ref);
        const double atol = 1e-5 * test::rms(ref);
        const Diff d = compare(got, ref, bf16() ? ulps : -1, atol);
        table().push_back({op, what, prec_name(prec_), d});
        std::printf("[ops_cuda] %-22s %-28s %-4s rel_l2 %.2e  max_abs %.2e  off>%dulp %lld/%lld\n",
                    op.c_str(), what.c_str(), prec_name(prec_), d.rel_l2, d.max_abs, ulps,
                    static_cast<long long>(d.bad), static_cast<long long>(d.n));
        const double tol = bf16() ? tol_bf16 : tol_f32;
        EXPECT_LE(d.rel_l2, tol) << op << " " << what << " " << prec_name(prec_);
        EXPECT_EQ(d.bad, 0) << op << " " << what << " first at " << d.first_bad << ": got "
                            << (d.first_bad >= 0 ? got[d.first_bad] : 0.f) << " want "
                            << (d.first_bad >= 0 ? ref[d.first_bad] : 0.f);
    }
    // Exact comparison of integer (or exactly reproducible) results.
    void check_exact(const std::string& op, const std::string& what, const Tensor& dev_out,
                     const Tensor& host_ref) {
        std::vector<float> got, ref;
        if (host_ref.dtype == DType::kI32) {
            std::vector<int32_t> g(static_cast<size_t>(dev_out.numel()));
            Tensor gh = with_shape(g.data(), DType::kI32, Device::kCPU,
                                   Shape(dev_out.shape, dev_out.shape + dev_out.ndim));
            ops::copy(gpu_, dev_out, gh);
            for (int64_t i = 0; i < host_ref.numel(); ++i) {
                got.push_back(static_cast<float>(g[i]));
                ref.push_back(static_cast<float>(host_ref.ptr<int32_t>()[i]));
            }
        } else {
            got = fetch(dev_out);
            ref = values(host_ref);
        }
        const Status st = ops::synchronize(gpu_);
        EXPECT_TRUE(st.is_ok()) << op << ": " << st.message();
        const Diff d = compare(got, ref, 0, 0);
        table().push_back({op, what, prec_name(prec_), d});
        std::printf("[ops_cuda] %-22s %-28s %-4s exact: %lld/%lld differ\n", op.c_str(),
                    what.c_str(), prec_name(prec_), static_cast<long long>(d.bad),
                    static_cast<long long>(d.n));
        EXPECT_EQ(d.bad, 0) << op << " " << what << " first at " << d.first_bad << ": got "
                            << (d.first_bad >= 0 ? got[d.first_bad] : 0.f) << " want "
                            << (d.first_bad >= 0 ? ref[d.first_bad] : 0.f);
    }

private:
    ops::Context cpu_;
    ops::Context gpu_;
    Precision prec_;
    std::deque<std::vector<float>> hf_;
    std::deque<std::vector<uint16_t>> hb_;
    std::deque<std::vector<int32_t>> hi_;
    std::deque<Buffer> dbuf_;
};

class CudaOps : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (!backend::device_available(Device::kCUDA)) return;
        pool_ = new ThreadPool(0);
        for (int i = 0; i < 2; ++i) {
            auto c = backend::create_context(Device::kCUDA, i ? Precision::kBF16 : Precision::kF32);
            if (!c.is_ok()) {
                init_error_ = c.status().message();
                return;
            }
            gpu_[i] = c.value();
        }
        std::printf("[ops_cuda] device: %s\n", backend::hardware_name(Device::kCUDA).c_str());
    }
    static void TearDownTestSuite() {
        for (auto& g : gpu_) backend::destroy_context(g);
        delete pool_;
        pool_ = nullptr;
        if (table().empty()) return;
        std::printf(
            "\n[ops_cuda] summary: op / case / precision / rel L2 / max abs / elements off\n");
        for (const Row& r : table())
            std::printf("[ops_cuda] %-22s %-28s %-4s %.2e %.2e %lld/%lld\n", r.op.c_str(),
                        r.what.c_str(), r.prec, r.d.rel_l2, r.d.max_abs,
                        static_cast<long long>(r.d.bad), static_cast<long long>(r.d.n));
    }
    void SetUp() override {
        if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
        ASSERT_TRUE(init_error_.empty()) << init_error_;
    }
    static Env env(Precision p) { return Env(gpu_[p == Precision::kBF16 ? 1 : 0], pool_, p); }
    static constexpr Precision kBoth[2] = {Precision::kF32, Precision::kBF16};

    static ThreadPool* pool_;
    static ops::Context gpu_[2];
    static std::string init_error_;
};
ThreadPool* CudaOps::pool_ = nullptr;
ops::Context CudaOps::gpu_[2];
std::string CudaOps::init_error_;

// ---- linear -------------------------------------------------------------------------------------

TEST_F(CudaOps, Linear) {
    struct Case {
        int M, N, K;
        bool bias;
        DType w;
    };
    const Case cases[] = {
        // decode GEMV shapes of the backbone, text head, depthformer and detokenizer
        {1, 6144, 2048, false, DType::kBF16},
        {1, 2048, 2048, false, DType::kBF16},
        {1, 8192, 2048, false, DType::kBF16},
        {1, 2048, 8192, false, DType::kBF16},
        {1, 65536, 2048, false, DType::kBF16},
        {1, 1536, 1024, true, DType::kBF16},
        {1, 2816, 1024, false, DType::kBF16},
        {1, 1024, 2816, false, DType::kBF16},
        {1, 2049, 1024, true, DType::kBF16},
        {2, 2048, 2048, true, DType::kBF16},
        {3, 8192, 2048, false, DType::kBF16},
        {8, 2049, 1024, false, DType::kBF16},
        {6, 512, 512, true, DType::kF32},
        {1, 1536, 512, false, DType::kF32},
        // GEMM (cuBLASLt for matching x/w dtypes, SIMT otherwise)
        {9, 2048, 2048, true, DType::kBF16},
        {64, 6144, 2048, false, DType::kBF16},
        {200, 2049, 1024, true, DType::kBF16},
        {128, 512, 512, true, DType::kF32},
        // the detokenizer's products over many conversations' rows (fp32 x: three bf16 parts on
        // the tensor cores; the last one in two chunks of the scratch)
        {384, 3328, 512, false, DType::kBF16},
        {3072, 1282, 512, true, DType::kBF16},
        {5000, 512, 3328, false, DType::kBF16},
        // SIMT fallback: K not a multiple of the vector width
        {3, 100, 100, true, DType::kBF16},
        {40, 300, 100, false, DType::kBF16},
    };
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(1000 + int(p));
        for (const Case& c : cases) {
            auto x = e.act({c.M, c.K}, rng);
            auto w = e.param({c.N, c.K}, rng, c.w, 1.0f / std::sqrt(float(c.K)));
            auto b = e.param(
                {c.N}, rng,
                c.w == DType::kBF16 && p == Precision::kBF16 ? DType::kBF16 : DType::kF32, 0.5f);
            auto y = e.out({c.M, c.N});
            ops::linear(e.cpu(), x.h, w.h, c.bias ? &b.h : nullptr, y.h);
            ops::linear(e.gpu(), x.d, w.d, c.bias ? &b.d : nullptr, y.d);
            char what[96];
            std::snprintf(what, sizeof what, "M%d %dx%d%s w%s", c.M, c.N, c.K, c.bias ? "+b" : "",
                          c.w == DType::kBF16 ? "bf16" : "f32");
            e.check("linear", what, y.d, y.h, /*tol_f32=*/1e-5, /*ulps=*/1);
        }
    }
}

// ---- normalizations
// --------------------------------------------------------------------------------

TEST_F(CudaOps, Norms) {
    const Shape shapes[] = {{1, 2048}, {5, 1024}, {300, 512}};
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(2000 + int(p));
        for (const Shape& s : shapes) {
            const std::string what = shape_str(s);
            auto w = e.param({s[1]}, rng, DType::kBF16, 0.2f, 1.0f);
            for (ops::RmsStyle style : {ops::RmsStyle::kLfm2, ops::RmsStyle::kFused}) {
                auto x = e.act(s, rng, 3.0f);
                // in place (y aliases x), as the model does
                ops::rms_norm(e.cpu(), x.h, w.h, 1e-5f, style, x.h);
                ops::rms_norm(e.gpu(), x.d, w.d, 1e-5f, style, x.d);
                e.check(style == ops::RmsStyle::kLfm2 ? "rms_norm lfm2" : "rms_norm fused", what,
                        x.d, x.h,
                        /*tol_f32=*/1e-6, /*ulps=*/style == ops::RmsStyle::kLfm2 ? 2 : 1);
            }
            auto lw = e.param({s[1]}, rng, DType::kF32, 0.2f, 1.0f);
            auto lb = e.param({s[1]}, rng, DType::kF32, 0.1f);
            auto x = e.act(s, rng, 2.0f);
            auto y = e.out(s);
            ops::layer_norm(e.cpu(), x.h, lw.h, lb.h, 1e-5f, y.h);
            ops::layer_norm(e.gpu(), x.d, lw.d, lb.d, 1e-5f, y.d);
            e.check("layer_norm", what, y.d, y.h, /*tol_f32=*/1e-6, /*ulps=*/1);
        }
    }
}

// ---- elementwise
// -----------------------------------------------------------------------------------

TEST_F(CudaOps, Elementwise) {
    const Shape shapes[] = {{1, 2048}, {3, 1001}, {64, 8192}};
    const std::pair<ops::Activation, const char*> acts[] = {{ops::Activation::kSilu, "silu"},
                                                            {ops::Activation::kRelu, "relu"},
                                                            {ops::Activation::kGeluErf, "gelu"},
                                                            {ops::Activation::kSigmoid, "sigmoid"},
                                                            {ops::Activation::kExp, "exp"}};
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(3000 + int(p));
        for (const Shape& s : shapes) {
            const std::string what = shape_str(s);
            auto a = e.act(s, rng, 2.0f), b = e.act(s, rng, 2.0f);
            auto y = e.out(s);
            ops::add(e.cpu(), a.h, b.h, y.h);
            ops::add(e.gpu(), a.d, b.d, y.d);
            e.check("add", what, y.d, y.h, /*tol_f32=*/1e-6, /*ulps=*/1);
            ops::add_scaled(e.cpu(), a.h, b.h, 0.37f, y.h);
            ops::add_scaled(e.gpu(), a.d, b.d, 0.37f, y.d);
            e.check("add_scaled", what, y.d, y.h, /*tol_f32=*/1e-6, /*ulps=*/2);
            ops::mul(e.cpu(), a.h, b.h, y.h);
            ops::mul(e.gpu(), a.d, b.d, y.d);
            e.check("mul", what, y.d, y.h, /*tol_f32=*/1e-6, /*ulps=*/1);
            ops::swiglu(e.cpu(), a.h, b.h, y.h);
            ops::swiglu(e.gpu(), a.d, b.d, y.d);
            e.check("swiglu", what, y.d, y.h, /*tol_f32=*/1e-6, /*ulps=*/2);
            for (auto [act, name] : acts) {
                ops::activation(e.cpu(), act, a.h, y.h);
                ops::activation(e.gpu(), act, a.d, y.d);
                e.check(std::string("activation ") + name, what, y.d, y.h, /*tol_f32=*/1e-6,
                        /*ulps=*/1);
            }
            // in place (y aliases a)
            auto c = e.act(s, rng);
            ops::add(e.cpu(), c.h, b.h, c.h);
            ops::add(e.gpu(), c.d, b.d, c.d);
            e.check("add in place", what, c.d, c.h, /*tol_f32=*/1e-6, /*ulps=*/1);
            const Shape half = {s[0], s[1] / 2};
            if (s[1] % 2 == 0) {
                auto g = e.out(half);
                ops::glu(e.cpu(), a.h, g.h);
                ops::glu(e.gpu(), a.d, g.d);
                e.check("glu", shape_str(half), g.d, g.h, /*tol_f32=*/1e-6, /*ulps=*/1);
            }
        }
    }
}

// ---- embeddings
// ------------------------------------------------------------------------------------

TEST_F(CudaOps, Embeddings) {
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(4000 + int(p));
        auto table = e.param({4096, 2048}, rng, DType::kBF16);
        auto ids = e.ids({5, 4095, 0, -3, 5000, 77, 1234}, {7});  // -3 and 5000 clamp
        auto y = e.out({7, 2048});
        ops::embedding(e.cpu(), table.h, ids.h, y.h);
        ops::embedding(e.gpu(), table.d, ids.d, y.d);
        e.check_exact("embedding", "V4096 D2048 n7", y.d, y.h);

        const int Q = 8, per = 2049;
        auto bag = e.param({Q * per, 1024}, rng, DType::kBF16);
        std::vector<int32_t> codes;
        for (int i = 0; i < 3 * Q; ++i) codes.push_back(rng.below(per));
        auto bag_ids = e.ids(codes, {3, Q});
        for (bool mean : {false, true}) {
            auto yb = e.out({3, 1024});
            ops::embedding_bag(e.cpu(), bag.h, bag_ids.h, per, mean, yb.h);
            ops::embedding_bag(e.gpu(), bag.d, bag_ids.d, per, mean, yb.d);
            e.check_exact(mean ? "embedding_bag mean" : "embedding_bag sum", "Q8x2049 D1024 n3",
                          yb.d, yb.h);
        }
    }
}

// ---- rope
// ------------------------------------------------------------------------------------------

TEST_F(CudaOps, Rope) {
    const int P = 4096;
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(5000 + int(p));
        for (int Dh : {64, 32}) {
            std::vector<float> c(static_cast<size_t>(P) * Dh / 2), s(c.size());
            for (int pos = 0; pos < P; ++pos)
                for (int i = 0; i < Dh / 2; ++i) {
                    const double inv = std::pow(1e6, -2.0 * i / Dh);
                    c[pos * Dh / 2 + i] = static_cast<float>(std::cos(pos * inv));
                    s[pos * Dh / 2 + i] = static_cast<float>(std::sin(pos * inv));
                }
            Env::Pair cos_t{e.host_f32({P, Dh / 2}), e.dev({P, Dh / 2}, DType::kF32)};
            Env::Pair sin_t{e.host_f32({P, Dh / 2}), e.dev({P, Dh / 2}, DType::kF32)};
            std::copy(c.begin(), c.end(), cos_t.h.ptr<float>());
            std::copy(s.begin(), s.end(), sin_t.h.ptr<float>());
            ops::copy(e.gpu(), cos_t.h, cos_t.d);
            ops::copy(e.gpu(), sin_t.h, sin_t.d);
            for (int T : {1, 37}) {
                std::vector<int32_t> pv;
                for (int t = 0; t < T; ++t)
                    pv.push_back(t == 5 ? P + 10 : rng.below(P));  // one clamps
                auto pos = e.ids(pv, {T});
                for (ops::RopeStyle style : {ops::RopeStyle::kNeox, ops::RopeStyle::kPairs}) {
                    auto x = e.act({T, 32, Dh}, rng);
                    ops::rope(e.cpu(), x.h, pos.h, cos_t.h, sin_t.h, style);
                    ops::rope(e.gpu(), x.d, pos.d, cos_t.d, sin_t.d, style);
                    char what[64];
                    std::snprintf(what, sizeof what, "[%d,32,%d]", T, Dh);
                    e.check(style == ops::RopeStyle::kNeox ? "rope neox" : "rope pairs", what, x.d,
                            x.h,
                            /*tol_f32=*/1e-6, /*ulps=*/2);
                }
            }
        }
    }
}

// ---- kv_write + attention
// --------------------------------------------------------------------------

TEST_F(CudaOps, KvWriteAndAttention) {
    struct Case {
        int T, H, Hkv, Dh, S, p0, window;
    };
    const Case cases[] = {
        {1, 32, 8, 64, 4096, 2500, 0},   // backbone decode deep into the context
        {1, 32, 8, 64, 4096, 0, 0},      // first token: one key
        {4, 32, 8, 64, 1024, 100, 0},    // a few tokens at once (decode kernel)
        {300, 32, 8, 64, 512, 0, 0},     // prefill (tiled kernel)
        {300, 32, 8, 64, 512, 50, 128},  // prefill after 50 cached rows, sliding window
        {1, 32, 8, 64, 512, 400, 128},   // decode with a window
        {1, 16, 4, 32, 64, 7, 0},        // small head dim
        {70, 16, 4, 32, 128, 0, 0},
        {50, 8, 2, 128, 256, 20, 0},  // head dim 128
        {3, 12, 12, 64, 256, 30, 0},  // no GQA
        // head dims without a fast kernel take the generic fallback (the tiny test checkpoints:
        // depthformer 2, backbone 16; 20 is arbitrary), decode and prefill, with a window
        {1, 32, 8, 2, 8, 5, 0},
        {8, 32, 8, 2, 8, 0, 0},
        {40, 4, 2, 16, 64, 0, 0},
        {1, 4, 2, 16, 64, 50, 0},
        {40, 4, 4, 20, 64, 10, 30},
        // short windows (one warp per query and head): the batched depthformer frame's 8, the
        // detokenizer's 30, the largest such window, head dims 64 and 128
        {256, 32, 8, 32, 2048, 0, 8},
        {1, 32, 8, 32, 64, 5, 8},
        {48, 16, 8, 32, 256, 29, 30},
        {40, 8, 2, 64, 256, 100, 64},
        {5, 8, 2, 128, 128, 3, 16},
    };
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(6000 + int(p));
        for (const Case& c : cases) {
            char what[96];
            std::snprintf(what, sizeof what, "T%d H%d/%d Dh%d S%d p%d w%d", c.T, c.H, c.Hkv, c.Dh,
                          c.S, c.p0, c.window);
            auto kc = e.act({c.Hkv, c.S, c.Dh}, rng), vc = e.act({c.Hkv, c.S, c.Dh}, rng);
            auto k = e.act({c.T, c.Hkv, c.Dh}, rng), v = e.act({c.T, c.Hkv, c.Dh}, rng);
            std::vector<int32_t> pv;
            for (int t = 0; t < c.T; ++t) pv.push_back(c.p0 + t);
            auto pos = e.ids(pv, {c.T});
            ops::kv_write(e.cpu(), k.h, v.h, pos.h, kc.h, vc.h);
            ops::kv_write(e.gpu(), k.d, v.d, pos.d, kc.d, vc.d);
            e.check_exact("kv_write k", what, kc.d, kc.h);
            e.check_exact("kv_write v", what, vc.d, vc.h);
            auto q = e.act({c.T, c.H, c.Dh}, rng);
            auto o = e.out({c.T, c.H, c.Dh});
            const float scale = 1.0f / std::sqrt(static_cast<float>(c.Dh));
            ops::attention(e.cpu(), q.h, kc.h, vc.h, pos.h, scale, c.window, o.h);
            ops::attention(e.gpu(), q.d, kc.d, vc.d, pos.d, scale, c.window, o.d);
            e.check("attention", what, o.d, o.h, /*tol_f32=*/1e-5, /*ulps=*/1);
        }
    }
}

// ---- the encoder's relative-position attention
// -----------------------------------------------------

// The CUDA kernel sums each score's dot product over the head dimension lane by lane and then
// across the warp; the CPU op sums it in order. fp32: rounding only (H200: rel L2 5.7e-7 at T
// 434). bf16: a score that lands on the other side of a bf16 rounding boundary moves its softmax
// weight by 2^-8 relative. An output is a weighted average of up to 434 value rows; where they
// nearly cancel (outputs ~1e-4 against an rms near 1) that moves it by many ulps of its own small
// magnitude: at T 434, 11 of 222,208 outputs were more than 4 bf16 ulps off, the largest error
// 1.95e-3 (half an ulp at magnitude 1), rel L2 7.5e-5. So bf16 is judged on rel L2 over the
// tensor (bar 1e-3), not per element.
TEST_F(CudaOps, RelPosAttention) {
    struct Case {
        int T, H, Dk;
    };
    // T 434: 34.7 s of audio (the benchmark's longest input); 5 and 62: short inputs; Dk 20 and
    // 5: head dims that are not a multiple of the warp.
    const Case cases[] = {{5, 8, 64}, {62, 8, 64}, {434, 8, 64}, {40, 4, 20}, {7, 3, 5}};
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(7100 + int(p));
        for (const Case& c : cases) {
            char what[64];
            std::snprintf(what, sizeof what, "T%d H%d Dk%d", c.T, c.H, c.Dk);
            const int64_t D = static_cast<int64_t>(c.H) * c.Dk;
            auto q = e.act({c.T, D}, rng), k = e.act({c.T, D}, rng), v = e.act({c.T, D}, rng);
            auto pe = e.act({2 * c.T - 1, D}, rng);
            auto u = e.param({c.H, c.Dk}, rng, DType::kF32, 0.3f);
            auto vb = e.param({c.H, c.Dk}, rng, DType::kF32, 0.3f);
            auto o = e.out({c.T, D});
            ops::rel_pos_attention(e.cpu(), q.h, k.h, v.h, pe.h, u.h, vb.h, c.H, o.h);
            ops::rel_pos_attention(e.gpu(), q.d, k.d, v.d, pe.d, u.d, vb.d, c.H, o.d);
            e.check("rel_pos_attention", what, o.d, o.h, /*tol_f32=*/1e-5, /*ulps=*/-1,
                    /*tol_bf16=*/1e-3);
        }
    }
}

// ---- short conv
// ------------------------------------------------------------------------------------

TEST_F(CudaOps, ShortConv) {
    const int C = 2048, K = 3;
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(7000 + int(p));
        auto w = e.param({C, K}, rng, DType::kBF16, 0.5f);
        for (int T : {1, 5, 100}) {
            for (bool alias : {false, true}) {
                auto state = e.act({K - 1, C}, rng);
                auto pos = e.ids({0}, {1});
                // two calls in a row: the second sees the state the first left
                for (int call = 0; call < 2; ++call) {
                    const int Tc = call == 0 ? T : 1;
                    auto x = e.act({Tc, C}, rng);
                    Env::Pair y = alias ? x : e.out({Tc, C});
                    ops::short_conv(e.cpu(), x.h, w.h, state.h, pos.h, y.h);
                    ops::short_conv(e.gpu(), x.d, w.d, state.d, pos.d, y.d);
                    char what[64];
                    std::snprintf(what, sizeof what, "T%d C%d%s call%d", Tc, C,
                                  alias ? " alias" : "", call);
                    e.check("short_conv y", what, y.d, y.h, /*tol_f32=*/1e-6, /*ulps=*/1);
                    e.check_exact("short_conv state", what, state.d, state.h);
                }
            }
        }
    }
}

// ---- argmax / sampling
// -----------------------------------------------------------------------------

TEST_F(CudaOps, Argmax) {
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(8000 + int(p));
        const int M = 4, N = 65536;
        std::vector<float> v(static_cast<size_t>(M) * N);
        for (auto& x : v)
            x = std::round(rng.normal() * 4.0f) / 4.0f;   // coarse: many ties at the max
        for (int n = 0; n < N; ++n) v[2 * N + n] = 1.5f;  // a row of equal values
        v[3 * N + 777] = NAN;                             // NaN wins, the first one
        v[3 * N + 1000] = NAN;
        auto lg = e.act_from(v, {M, N});
        auto oh = e.ids(std::vector<int32_t>(M, -1), {M});
        auto od = e.ids(std::vector<int32_t>(M, -1), {M});
        ops::argmax(e.cpu(), lg.h, oh.h);
        ops::argmax(e.gpu(), lg.d, od.d);
        e.check_exact("argmax", "[4,65536] ties+NaN", od.d, oh.h);
        EXPECT_EQ(oh.h.ptr<int32_t>()[3], 777);
        EXPECT_EQ(oh.h.ptr<int32_t>()[2], 0);
    }
}

TEST_F(CudaOps, SampleTopK) {
    struct Case {
        int M, N, top_k;
        float temperature;
    };
    const Case cases[] = {{8, 2049, 4, 1.0f},
                          {8, 2049, 4, 0.7f},
                          {1, 2049, 0, 1.0f},
                          {2, 65536, 50, 0.9f},
                          {2, 65536, 3000, 1.0f}};
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(9000 + int(p));
        for (const Case& c : cases) {
            auto lg = e.act({c.M, c.N}, rng, 2.0f);
            int mismatches = 0, total = 0;
            for (int counter = 0; counter < 20; ++counter) {
                auto ctr = e.ids({counter}, {1});
                auto oh = e.ids(std::vector<int32_t>(c.M, -1), {c.M});
                auto od = e.ids(std::vector<int32_t>(c.M, -1), {c.M});
                ops::sample_top_k(e.cpu(), lg.h, c.temperature, c.top_k, 0x5EEDull, ctr.h, oh.h);
                ops::sample_top_k(e.gpu(), lg.d, c.temperature, c.top_k, 0x5EEDull, ctr.d, od.d);
                std::vector<int32_t> got(c.M);
                Tensor gh = with_shape(got.data(), DType::kI32, Device::kCPU, {c.M});
                ops::copy(e.gpu(), od.d, gh);
                for (int m = 0; m < c.M; ++m) {
                    ++total;
                    if (got[m] != oh.h.ptr<int32_t>()[m]) ++mismatches;
                }
            }
            EXPECT_TRUE(ops::synchronize(e.gpu()).is_ok());
            std::printf("[ops_cuda] %-22s M%d N%d k%d T%.1f %-10s %-4s draws differing: %d/%d\n",
                        "sample_top_k", c.M, c.N, c.top_k, c.temperature, "", prec_name(p),
                        mismatches, total);
            EXPECT_EQ(mismatches, 0) << "N" << c.N << " k" << c.top_k;
        }
    }
}

// ---- a decode batch's per-row ops (one kernel over rows against the per-row loop) ---------------

TEST_F(CudaOps, BatchRowOps) {
    const int C = 2048, K = 3, B = 5;
    for (Precision p : kBoth) {
        Env e = env(p);
        Rng rng(9500 + int(p));
        Arena gpu_scratch, cpu_scratch;
        ASSERT_TRUE(gpu_scratch.reserve(Device::kCUDA, 1 << 20));
        // short_conv_rows: each row on its own state, two steps in a row.
        auto w = e.param({C, K}, rng, DType::kBF16, 0.5f);
        std::vector<Env::Pair> states;
        for (int b = 0; b < B; ++b) states.push_back(e.act({K - 1, C}, rng));
        std::vector<Tensor> sh, sd;
        for (auto& st : states) {
            sh.push_back(st.h);
            sd.push_back(st.d);
        }
        for (int call = 0; call < 2; ++call) {
            auto x = e.act({B, C}, rng);
            auto y = e.out({B, C});
            ops::short_conv_rows(e.cpu(), x.h, w.h, sh.data(), y.h, cpu_scratch);
            ops::short_conv_rows(e.gpu(), x.d, w.d, sd.data(), y.d, gpu_scratch);
            e.check("short_conv_rows y", "B5 C2048 call" + std::to_string(call), y.d, y.h, 1e-6, 1);
            for (int b = 0; b < B; ++b)
                e.check_exact("short_conv_rows state", "row " + std::to_string(b), sd[b], sh[b]);
        }
        // sample_rows: greedy and sampled rows, with and without a forbidden index, each with its
        // own seed and counters.
        const int N = 2049, Q = 3;
        std::vector<Env::Pair> counters;
        for (int b = 0; b < 6; ++b) counters.push_back(e.ids({b, 10 + b, 20 + 3 * b}, {Q}));
        std::vector<ops::RowSampling> hr(6), dr(6);
        const float temps[6] = {0.0f, 0.0f, 0.8f, 1.0f, 1.2f, 0.9f};
        const int ks[6] = {0, 1, 4, 0, 50, 1};
        for (int b = 0; b < 6; ++b) {
            for (auto* r : {&hr[b], &dr[b]}) {
                r->temperature = temps[b];
                r->top_k = ks[b];
                r->seed = 0x5EEDull + 977u * static_cast<uint64_t>(b);
                r->forbid = b % 2 ? N - 1 : -1;
            }
            hr[b].counters = &counters[b].h;
            dr[b].counters = &counters[b].d;
        }
        auto lg = e.act({6, N}, rng, 2.0f);
        // make the forbidden index the largest in rows 1 and 3, so forbidding it matters
        std::vector<float> v = Env::values(lg.h);
        for (int b : {1, 3}) v[static_cast<size_t>(b * N + N - 1)] = 50.0f;
        lg = e.act_from(v, {6, N});
        for (int ci = 0; ci < Q; ++ci) {
            auto oh = e.ids(std::vector<int32_t>(6, -1), {6});
            auto od = e.ids(std::vector<int32_t>(6, -1), {6});
            const ops::SampleRows rh = ops::upload_sample_rows(e.cpu(), hr.data(), 6, cpu_scratch);
            const ops::SampleRows rd = ops::upload_sample_rows(e.gpu(), dr.data(), 6, gpu_scratch);
            ops::sample_rows(e.cpu(), lg.h, rh, ci, oh.h);
            ops::sample_rows(e.gpu(), lg.d, rd, ci, od.d);
            e.check_exact("sample_rows", "6 rows, counter " + std::to_string(ci), od.d, oh.h);
            // the logits as set_value leaves them (compare() counts -inf against -inf as a
            // difference, so they are compared here)
            const std::vector<float> got = e.fetch(lg.d), want = Env::values(lg.h);
            int differ = 0, forbidden = 0;
            for (size_t j = 0; j < want.size(); ++j) {
                if (std::isinf(want[j]) && want[j] < 0) ++forbidden;
                if (!(got[j] == want[j])) ++differ;
            }
            EXPECT_EQ(differ, 0) << "sample_rows logits";
            EXPECT_EQ(forbidden, 3) << "rows 1, 3 and 5 forbid their last index";
            EXPECT_NE(oh.h.ptr<int32_t>()[1], N - 1);
            EXPECT_NE(oh.h.ptr<int32_t>()[3], N - 1);
        }
        // copy_many and increment_many: sizes that are and are not multiples of 16 bytes.
        std::vector<Env::Pair> from, to;
        for (int n : {3, 2048, 5, 64}) {
            std::vector<int32_t> a(static_cast<size_t>(n)), z(static_cast<size_t>(n), 0);
            for (auto& x : a) x = rng.below(1000);
            from.push_back(e.ids(a, {n}));
            to.push_back(e.ids(z, {n}));
        }
        std::vector<Tensor> fh, th, fd, td;
        for (size_t i = 0; i < from.size(); ++i) {
            fh.push_back(from[i].h);
            th.push_back(to[i].h);
            fd.push_back(from[i].d);
            td.push_back(to[i].d);
        }
        ops::copy_many(e.cpu(), fh.data(), th.data(), fh.size(), cpu_scratch);
        ops::copy_many(e.gpu(), fd.data(), td.data(), fd.size(), gpu_scratch);
        ops::increment_many(e.cpu(), th.data(), th.size(), 7, cpu_scratch);
        ops::increment_many(e.gpu(), td.data(), td.size(), 7, gpu_scratch);
        for (size_t i = 0; i < to.size(); ++i) {
            e.check_exact("copy_many+increment", "tensor " + std::to_string(i), td[i], th[i]);
            EXPECT_EQ(th[i].ptr<int32_t>()[0], from[i].h.ptr<int32_t>()[0] + 7);
        }
    }
}

// ---- copies, conversion, transpose, zero, round, set_value
// -------------------------------------------

TEST_F(CudaOps, CopyConvertTransposeZero) {
    Env e = env(Precision::kBF16);
    Rng rng(10000);
    const Shape s = {300, 77};
    auto src = e.param(s, rng, DType::kF32, 3.0f);  // host F32 -> device F32
    // host F32 -> device BF16 (converted on the host) -> host F32
    Tensor b16 = e.dev(s, DType::kBF16);
    ops::copy(e.gpu(), src.h, b16);
    Tensor want = e.host_f32(s);
    for (int64_t i = 0; i < want.numel(); ++i)
        want.ptr<float>()[i] = round_bf16(src.h.ptr<float>()[i]);
    e.check_exact("copy h2d f32->bf16", shape_str(s), b16, want);
    // device F32 -> device BF16 (conversion kernel)
    Tensor b16b = e.dev(s, DType::kBF16);
    ops::copy(e.gpu(), src.d, b16b);
    e.check_exact("copy d2d f32->bf16", shape_str(s), b16b, want);
    // device BF16 -> device F32 -> host
    Tensor f32 = e.dev(s, DType::kF32);
    ops::copy(e.gpu(), b16b, f32);
    e.check_exact("copy d2d bf16->f32", shape_str(s), f32, want);
    // I32 -> I64 -> I32 on the device, and host I32 -> device I64
    std::vector<int32_t> iv(1000);
    for (auto& x : iv) x = static_cast<int32_t>(rng.next());
    auto ids = e.ids(iv, {1000});
    Tensor i64 = e.dev({1000}, DType::kI64), back = e.dev({1000}, DType::kI32);
    ops::copy(e.gpu(), ids.d, i64);
    ops::copy(e.gpu(), i64, back);
    e.check_exact("copy i32->i64->i32", "[1000]", back, ids.h);
    ops::copy(e.gpu(), ids.h, i64);
    ops::copy(e.gpu(), i64, back);
    e.check_exact("copy h2d i32->i64", "[1000]", back, ids.h);
    // transpose, BF16 and F32
    for (DType dt : {DType::kBF16, DType::kF32}) {
        Tensor xt = dt == DType::kBF16 ? b16b : src.d;
        Tensor yt = e.dev({s[1], s[0]}, dt);
        ops::transpose(e.gpu(), xt, yt);
        Tensor ref = e.host_f32({s[1], s[0]});
        for (int64_t a = 0; a < s[0]; ++a)
            for (int64_t b = 0; b < s[1]; ++b)
                ref.ptr<float>()[b * s[0] + a] = dt == DType::kBF16
                                                     ? want.ptr<float>()[a * s[1] + b]
                                                     : src.h.ptr<float>()[a * s[1] + b];
        e.check_exact(dt == DType::kBF16 ? "transpose bf16" : "transpose f32", shape_str(s), yt,
                      ref);
    }
    // round_to_act on an F32 device tensor in a bf16 context
    Tensor r = e.dev(s, DType::kF32);
    ops::copy(e.gpu(), src.h, r);
    ops::round_to_act(e.gpu(), r);
    e.check_exact("round_to_act", shape_str(s), r, want);
    // set_value
    Tensor sv = e.dev({10}, DType::kBF16), svf = e.dev({10}, DType::kF32);
    ops::zero(e.gpu(), sv);
    ops::zero(e.gpu(), svf);
    ops::set_value(e.gpu(), sv, 3, -INFINITY);
    ops::set_value(e.gpu(), svf, 9, 0.1f);
    const std::vector<float> g1 = e.fetch(sv), g2 = e.fetch(svf);
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(g1[i], i == 3 ? -INFINITY : 0.0f) << i;
        EXPECT_EQ(g2[i], i == 9 ? 0.1f : 0.0f) << i;
    }
    // zero
    ops::zero(e.gpu(), f32);
    for (float v : e.fetch(f32)) ASSERT_EQ(v, 0.0f);
    EXPECT_TRUE(ops::synchronize(e.gpu()).is_ok());
}

// ---- graph capture
// ----------------------------------------------------------------------------------

// A toy decode step: embedding -> rms_norm -> q/k/v projections -> rope -> kv_write -> attention ->
// output projection -> argmax, every position read on the device. Captured once, replayed for 10
// steps with new ids/positions written between replays; must equal the same ops issued eagerly
// (bit for bit) and the CPU (within bf16 tolerance).
TEST_F(CudaOps, GraphCaptureDecodeStep) {
    const int D = 2048, V = 4096, H = 32, Hkv = 8, Dh = 64, S = 64, P = 64, steps = 10;
    Env e = env(Precision::kBF16);
    Rng rng(11000);
    auto table = e.param({V, D}, rng, DType::kBF16);
    auto nw = e.param({D}, rng, DType::kBF16, 0.1f, 1.0f);
    auto wq = e.param({H * Dh, D}, rng, DType::kBF16, 0.02f);
    auto wk = e.param({Hkv * Dh, D}, rng, DType::kBF16, 0.02f);
    auto wv = e.param({Hkv * Dh, D}, rng, DType::kBF16, 0.02f);
    auto wo = e.param({V, H * Dh}, rng, DType::kBF16, 0.02f);
    auto cs = e.param({P, Dh / 2}, rng, DType::kF32, 0.7f),
         sn = e.param({P, Dh / 2}, rng, DType::kF32, 0.7f);

    // Per-path state: eager CUDA (0), graph CUDA (1), CPU (2).
    struct Path {
        Env::Pair ids, pos, x, h, q, k, v, kc, vc, o, logits, tok;
    };
    auto make_path = [&](void) {
        Path p;
        p.ids = e.ids({0}, {1});
        p.pos = e.ids({0}, {1});
        p.x = e.out({1, D});
        p.h = e.out({1, D});
        p.q = e.out({1, H, Dh});
        p.k = e.out({1, Hkv, Dh});
        p.v = e.out({1, Hkv, Dh});
        p.kc = e.out({Hkv, S, Dh});
        p.vc = e.out({Hkv, S, Dh});
        ops::zero(e.gpu(), p.kc.d);
        ops::zero(e.gpu(), p.vc.d);
        p.o = e.out({1, H, Dh});
        p.logits = e.out({1, V});
        p.tok = e.ids({-1}, {1});
        return p;
    };
    Path paths[3] = {make_path(), make_path(), make_path()};
    auto step = [&](const ops::Context& ctx, Path& p, bool dev) {
        auto T = [&](Env::Pair& pr) -> Tensor& { return dev ? pr.d : pr.h; };
        ops::embedding(ctx, T(table), T(p.ids), T(p.x));
        ops::rms_norm(ctx, T(p.x), T(nw), 1e-5f, ops::RmsStyle::kLfm2, T(p.h));
        Tensor q2 = T(p.q).reshape({1, H * Dh}), k2 = T(p.k).reshape({1, Hkv * Dh}),
               v2 = T(p.v).reshape({1, Hkv * Dh});
        ops::linear(ctx, T(p.h), T(wq), nullptr, q2);
        ops::linear(ctx, T(p.h), T(wk), nullptr, k2);
        ops::linear(ctx, T(p.h), T(wv), nullptr, v2);
        ops::rope(ctx, T(p.q), T(p.pos), T(cs), T(sn), ops::RopeStyle::kNeox);
        ops::rope(ctx, T(p.k), T(p.pos), T(cs), T(sn), ops::RopeStyle::kNeox);
        ops::kv_write(ctx, T(p.k), T(p.v), T(p.pos), T(p.kc), T(p.vc));
        ops::attention(ctx, T(p.q), T(p.kc), T(p.vc), T(p.pos), 0.125f, 0, T(p.o));
        Tensor o2 = T(p.o).reshape({1, H * Dh});
        ops::linear(ctx, o2, T(wo), nullptr, T(p.logits));
        ops::argmax(ctx, T(p.logits), T(p.tok));
    };

    backend::Graph graph;
    ASSERT_TRUE(graph.begin(e.gpu()).is_ok());
    step(e.gpu(), paths[1], true);
    const Status st = graph.end(e.gpu());
    ASSERT_TRUE(st.is_ok()) << st.message();
    ASSERT_TRUE(graph.captured());

    int agree_cpu = 0;
    for (int s = 0; s < steps; ++s) {
        const int32_t id = rng.below(V);
        for (Path& p : paths) {
            p.ids.h.ptr<int32_t>()[0] = id;
            p.pos.h.ptr<int32_t>()[0] = s;
        }
        for (int i = 0; i < 2; ++i) {
            ops::copy(e.gpu(), paths[i].ids.h, paths[i].ids.d);
            ops::copy(e.gpu(), paths[i].pos.h, paths[i].pos.d);
        }
        step(e.gpu(), paths[0], true);
        ASSERT_TRUE(graph.replay(e.gpu()).is_ok());
        step(e.cpu(), paths[2], false);
        const std::vector<float> eager = e.fetch(paths[0].logits.d),
                                 replay = e.fetch(paths[1].logits.d);
        ASSERT_EQ(eager, replay) << "step " << s << ": graph replay differs from eager execution";
        int32_t tok[2];
        for (int i = 0; i < 2; ++i) {
            Tensor th = with_shape(&tok[i], DType::kI32, Device::kCPU, {1});
            ops::copy(e.gpu(), paths[i].tok.d, th);
        }
        EXPECT_EQ(tok[0], tok[1]);
        agree_cpu += tok[1] == paths[2].tok.h.ptr<int32_t>()[0];
        const Diff d = compare(replay, Env::values(paths[2].logits.h), -1, 0);
        std::printf(
            "[ops_cuda] graph step %d pos %d: token %d (cpu %d), logits rel_l2 vs cpu %.2e\n", s, s,
            tok[1], paths[2].tok.h.ptr<int32_t>()[0], d.rel_l2);
        EXPECT_LE(d.rel_l2, 1e-2);  // bf16 activations through 4 roundings: a few 1e-3
    }
    EXPECT_TRUE(ops::synchronize(e.gpu()).is_ok());
    std::printf("[ops_cuda] graph: %d/%d greedy tokens equal the CPU's\n", agree_cpu, steps);
}

// ---- decode-step bookkeeping: increment, fill_rows_led_by, copy_to_host_async
// ------------------------------------------------------------------------------------------------

// The ops that keep a decode step on the device, against the CPU, eagerly and inside a replayed
// graph (what Session::step does: counters and position advanced by the graph itself, the choice
// read back into page-locked memory with one synchronize).
TEST_F(CudaOps, StepBookkeeping) {
    Env e = env(Precision::kBF16);
    Rng rng(12000);
    const int Q = 8;
    const int32_t end = 2048;
    // increment: eager, against the CPU
    std::vector<int32_t> ctr0(Q + 1);
    for (int i = 0; i <= Q; ++i) ctr0[static_cast<size_t>(i)] = i;
    ctr0[Q] = 0x7ffffff9;  // wraps like the CPU
    auto ctr = e.ids(ctr0, {Q + 1});
    ops::increment(e.cpu(), ctr.h, Q + 1);
    ops::increment(e.gpu(), ctr.d, Q + 1);
    e.check_exact("increment", "[9] +9", ctr.d, ctr.h);
    // fill_rows_led_by: rows led by 2048 (filled), with 2048 elsewhere (kept), without (kept)
    std::vector<int32_t> codes0(64 * Q);
    for (auto& c : codes0) c = rng.below(end + 1);
    for (int m = 0; m < 64; m += 3) codes0[static_cast<size_t>(m * Q)] = end;
    for (int m = 1; m < 64; m += 3) codes0[static_cast<size_t>(m * Q + 5)] = end;
    auto codes = e.ids(codes0, {64, Q});
    ops::fill_rows_led_by(e.cpu(), codes.h, end);
    ops::fill_rows_led_by(e.gpu(), codes.d, end);
    e.check_exact("fill_rows_led_by", "[64,8]", codes.d, codes.h);

    // In a graph: position +1, counters +(Q+1), a frame made whole; replayed `steps` times.
    auto pos = e.ids({37}, {1});
    auto gctr = e.ids(std::vector<int32_t>(ctr0.begin(), ctr0.begin() + Q + 1), {Q + 1});
    std::vector<int32_t> frame0(Q, 5);
    frame0[0] = end;
    auto frame = e.ids(frame0, {1, Q});
    backend::Graph graph;
    ASSERT_TRUE(graph.begin(e.gpu()).is_ok());
    ops::increment(e.gpu(), pos.d, 1);
    ops::increment(e.gpu(), gctr.d, Q + 1);
    ops::fill_rows_led_by(e.gpu(), frame.d, end);
    const Status st = graph.end(e.gpu());
    ASSERT_TRUE(st.is_ok()) << st.message();
    const int steps = 5;
    for (int s = 0; s < steps; ++s) {
        ASSERT_TRUE(graph.replay(e.gpu()).is_ok());
        ops::increment(e.cpu(), pos.h, 1);
        ops::increment(e.cpu(), gctr.h, Q + 1);
    }
    ops::fill_rows_led_by(e.cpu(), frame.h, end);
    e.check_exact("increment (graph)", "pos, 5 replays", pos.d, pos.h);
    e.check_exact("increment (graph)", "counters, 5 replays", gctr.d, gctr.h);
    e.check_exact("fill_rows_led_by (graph)", "[1,8]", frame.d, frame.h);
    EXPECT_EQ(pos.h.ptr<int32_t>()[0], 37 + steps);

    // copy_to_host_async into page-locked memory: valid after synchronize().
    const int64_t n = 1 << 20;
    std::vector<int32_t> big(static_cast<size_t>(n));
    for (auto& v : big) v = static_cast<int32_t>(rng.next());
    auto src = e.ids(big, {n});
    Buffer pinned = Buffer::allocate_pinned(static_cast<size_t>(n) * sizeof(int32_t));
    ASSERT_NE(pinned.data(), nullptr);
    Tensor dst = pinned.view(DType::kI32, {n});
    ops::copy_to_host_async(e.gpu(), src.d, dst);
    ASSERT_TRUE(ops::synchronize(e.gpu()).is_ok());
    EXPECT_TRUE(std::equal(big.begin(), big.end(), dst.ptr<int32_t>()));
    Tensor first = dst.rows(0, Q + 1);
    ops::copy_to_host_async(e.gpu(), gctr.d, first);
    ASSERT_TRUE(ops::synchronize(e.gpu()).is_ok());
    for (int i = 0; i <= Q; ++i) EXPECT_EQ(dst.ptr<int32_t>()[i], gctr.h.ptr<int32_t>()[i]) << i;
}

// ---- errors
// ------------------------------------------------------------------------------------------

TEST_F(CudaOps, ErrorsBecomeStatuses) {
    ops::Context cpu;
    backend::Graph g;
    EXPECT_EQ(g.begin(cpu).code(), StatusCode::kUnsupported);
    EXPECT_FALSE(g.replay(gpu_[0]).is_ok());

    auto bad_dev = backend::create_context(Device::kCUDA, Precision::kF32, 1000);
    ASSERT_FALSE(bad_dev.is_ok());
    EXPECT_EQ(bad_dev.status().code(), StatusCode::kInvalidArgument);

    backend::ContextOptions huge;
    huge.scratch_bytes = size_t{1} << 50;
    auto oom = backend::create_context(Device::kCUDA, Precision::kF32, 0, huge);
    ASSERT_FALSE(oom.is_ok());
    EXPECT_EQ(oom.status().code(), StatusCode::kOutOfMemory) << oom.status().message();
    std::printf("[ops_cuda] out-of-memory status: %s\n", oom.status().message().c_str());
}

}  // namespace
}  // namespace voxrt
