// int4 weights (core/quant.h kI4: 4-bit codes, one F32 scale per kI4Group inputs): the packing,
// the reference quantizer on known rows, the load-time quantizer against it, and the CPU linear op
// (AVX-512, AVX2 and the scalar path; decode GEMV and prefill GEMM) against the same product on
// the dequantized fp32 weights (rel L2 ≤ 1e-6), with rows independent of the batch.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/linear_bf16.h"
#include "backend/cpu/linear_quant.h"
#include "core/bf16.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "model/quantize.h"
#include "ops/ops.h"

namespace voxrt {
namespace {

std::vector<float> randn(size_t n, uint32_t seed) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = static_cast<float>((seed >> 8) / 16777216.0 - 0.5) * 2.0f;
    }
    return v;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double d = static_cast<double>(a[i]) - ref[i];
        num += d * d;
        den += static_cast<double>(ref[i]) * ref[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1));
}

struct Quantized {
    std::vector<uint8_t> q;
    std::vector<float> scale, deq;  // deq: the dequantized matrix, the reference's weights
    Tensor w;
};

Quantized quantize(const std::vector<float>& wf, int64_t N, int64_t K) {
    Quantized r;
    r.q.resize(static_cast<size_t>(N * K / 2));
    r.scale.resize(static_cast<size_t>(N * K / kI4Group));
    r.deq.resize(wf.size());
    quant::quantize_rows(DType::kI4, wf.data(), N, K, r.q.data(), r.scale.data());
    quant::dequantize_rows(DType::kI4, r.q.data(), r.scale.data(), N, K, r.deq.data());
    r.w = Tensor::make(r.q.data(), DType::kI4, Device::kCPU, {N, K});
    r.w.scale = r.scale.data();
    return r;
}

std::vector<cpu::QuantIsa> host_isas() {
    std::vector<cpu::QuantIsa> v = {cpu::QuantIsa::kScalar};
    if (cpu::best_quant_isa() >= cpu::QuantIsa::kAvx2) v.push_back(cpu::QuantIsa::kAvx2);
    if (cpu::best_quant_isa() >= cpu::QuantIsa::kAvx512) v.push_back(cpu::QuantIsa::kAvx512);
    return v;
}

Tensor f32(std::vector<float>& v, int64_t rows, int64_t cols) {
    return Tensor::make(v.data(), DType::kF32, Device::kCPU, {rows, cols});
}

std::vector<float> reference(const ops::Context& ctx, std::vector<float>& x, int64_t M, int64_t K,
                             Quantized& qw, const Tensor* bias) {
    const int64_t N = qw.w.shape[0];
    std::vector<float> y(static_cast<size_t>(M * N));
    Tensor xt = f32(x, M, K), wt = f32(qw.deq, N, K), yt = f32(y, M, N);
    ops::linear(ctx, xt, wt, bias, yt);
    return y;
}

TEST(Int4, PackUnpackRoundTrip) {
    const int64_t K = 96;
    std::vector<uint8_t> row(static_cast<size_t>(K / 2), 0);
    for (int64_t k = 0; k < K; ++k) quant::set_i4_code(row.data(), k, static_cast<int>(k % 16) - 8);
    for (int64_t k = 0; k < K; ++k) ASSERT_EQ(quant::i4_code(row.data(), k), k % 16 - 8) << k;
    // The layout: byte b of a 32-code block holds code b (low nibble) and code b + 16 (high).
    std::vector<uint8_t> one(16, 0x88);
    quant::set_i4_code(one.data(), 3, 5);
    quant::set_i4_code(one.data(), 19, -7);
    EXPECT_EQ(one[3], static_cast<uint8_t>((5 + 8) | ((-7 + 8) << 4)));
    for (int b = 0; b < 16; ++b) {
        if (b != 3) {
            EXPECT_EQ(one[static_cast<size_t>(b)], 0x88) << b;
        }
    }
}

TEST(Int4, QuantizesKnownRows) {
    const int64_t K = 2 * kI4Group;
    std::vector<float> w(static_cast<size_t>(K), 0.0f);
    // Group 0: max 7, so the scale is 1 and values are codes; halves round to even.
    const float vals[] = {7.0f, -7.0f, 0.5f, 1.5f, 2.5f, -2.5f, 3.49f, -6.51f, 0.0f, -0.0f};
    const int want[] = {7, -7, 0, 2, 2, -2, 3, -7, 0, 0};
    for (size_t i = 0; i < std::size(vals); ++i) w[i] = vals[i];
    // Group 1: zeros.
    std::vector<uint8_t> q(static_cast<size_t>(K / 2));
    std::vector<float> s(2);
    quant::quantize_rows(DType::kI4, w.data(), 1, K, q.data(), s.data());
    EXPECT_EQ(s[0], 1.0f);
    EXPECT_EQ(s[1], 0.0f);
    for (size_t i = 0; i < std::size(vals); ++i)
        EXPECT_EQ(quant::i4_code(q.data(), static_cast<int64_t>(i)), want[i]) << vals[i];
    for (int64_t k = kI4Group; k < K; ++k) EXPECT_EQ(quant::i4_code(q.data(), k), 0) << k;

    // An outlier group (× 1000) takes its own scale; the other groups' codes and scales do not
    // move (a per-row scale would leave them at most a code or two).
    const int64_t K3 = 3 * kI4Group;
    std::vector<float> base = randn(static_cast<size_t>(K3), 5), spiked = base;
    for (int64_t k = kI4Group; k < 2 * kI4Group; ++k) spiked[static_cast<size_t>(k)] *= 1000.0f;
    std::vector<uint8_t> qa(static_cast<size_t>(K3 / 2)), qb(qa.size());
    std::vector<float> sa(3), sb(3);
    quant::quantize_rows(DType::kI4, base.data(), 1, K3, qa.data(), sa.data());
    quant::quantize_rows(DType::kI4, spiked.data(), 1, K3, qb.data(), sb.data());
    EXPECT_EQ(sa[0], sb[0]);
    EXPECT_EQ(sa[2], sb[2]);
    EXPECT_NEAR(sb[1] / sa[1], 1000.0f, 1.0f);
    for (int64_t k = 0; k < K3; ++k)
        EXPECT_EQ(quant::i4_code(qa.data(), k), quant::i4_code(qb.data(), k)) << k;
    // Every code within [-7, 7]; the dequantized row is within half a step of each value.
    std::vector<float> deq(static_cast<size_t>(K3));
    quant::dequantize_rows(DType::kI4, qb.data(), sb.data(), 1, K3, deq.data());
    for (int64_t k = 0; k < K3; ++k) {
        EXPECT_GE(quant::i4_code(qb.data(), k), -7);
        EXPECT_LE(std::fabs(deq[static_cast<size_t>(k)] - spiked[static_cast<size_t>(k)]),
                  0.5f * sb[static_cast<size_t>(k / kI4Group)] * (1 + 1e-6f))
            << k;
    }
}

// The load-time quantizer (model::quantize_row) gives the reference's codes and scales exactly.
TEST(Int4, LoadTimeQuantizerEqualsTheReference) {
    uint32_t seed = 3;
    auto next = [&] {
        seed = seed * 1664525u + 1013904223u;
        return seed;
    };
    auto expect_same = [](const std::vector<float>& row, const char* what) {
        const int64_t n = static_cast<int64_t>(row.size());
        std::vector<uint8_t> q_ref(row.size() / 2), q(row.size() / 2);
        std::vector<float> s_ref(row.size() / kI4Group), s(s_ref.size());
        quant::quantize_rows(DType::kI4, row.data(), 1, n, q_ref.data(), s_ref.data());
        model::quantize_row(DType::kI4, row.data(), n, q.data(), s.data());
        ASSERT_EQ(std::memcmp(s.data(), s_ref.data(), s.size() * 4), 0) << what;
        for (size_t i = 0; i < q.size(); ++i) ASSERT_EQ(q[i], q_ref[i]) << what << " byte " << i;
    };
    for (int r = 0; r < 100; ++r) {
        const int64_t n = kI4Group * (1 + static_cast<int64_t>(next() % 64));
        const float mag = std::pow(10.0f, static_cast<float>(next() % 10) - 6.0f);
        std::vector<float> row(static_cast<size_t>(n));
        for (float& v : row) v = (static_cast<float>(next() >> 8) / 16777216.0f - 0.5f) * mag;
        expect_same(row, "random");
    }
    // Ties: scale 1 (max 7), every half step and its neighbours.
    std::vector<float> ties(static_cast<size_t>(4 * kI4Group), 0.0f);
    size_t i = 0;
    for (int g = 0; g < 4; ++g) {
        ties[static_cast<size_t>(g * kI4Group)] = 7.0f;
        i = static_cast<size_t>(g * kI4Group + 1);
        for (float h = -6.5f; h <= 6.5f && i < static_cast<size_t>((g + 1) * kI4Group); h += 1.0f)
            ties[i++] = g == 0 ? h : g == 1 ? std::nextafter(h, 0.0f) : std::nextafter(h, 9.0f);
    }
    expect_same(ties, "ties");
    std::vector<float> special(static_cast<size_t>(2 * kI4Group), 1.0f);
    special[1] = std::numeric_limits<float>::quiet_NaN();
    special[kI4Group + 2] = std::numeric_limits<float>::infinity();
    expect_same(special, "nan/inf");
}

// Every code through each kernel: one-hot x picks one column, so y is scale · code exactly.
TEST(Int4, VectorDecodeIsExactForEveryCode) {
    const int64_t N = 16, K = 64;
    std::vector<uint8_t> q(static_cast<size_t>(N * K / 2));
    std::vector<float> scale(static_cast<size_t>(N * K / kI4Group));
    for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k)
            quant::set_i4_code(q.data() + n * K / 2, k, static_cast<int>((n + k) % 16) - 8);
    for (size_t i = 0; i < scale.size(); ++i) scale[i] = 0.1f * static_cast<float>(i + 1);
    Tensor w = Tensor::make(q.data(), DType::kI4, Device::kCPU, {N, K});
    w.scale = scale.data();
    for (int64_t col : {int64_t{0}, int64_t{5}, int64_t{16}, int64_t{31}, int64_t{40}, K - 1}) {
        std::vector<float> x(static_cast<size_t>(K), 0.0f), y(static_cast<size_t>(N));
        x[static_cast<size_t>(col)] = 1.0f;
        Tensor xt = f32(x, 1, K), yt = f32(y, 1, N);
        for (cpu::QuantIsa isa : host_isas()) {
            ops::Context ctx;
            cpu::linear_quantized_gemv(ctx, isa, xt, w, nullptr, yt);
            for (int64_t n = 0; n < N; ++n) {
                const float want = scale[static_cast<size_t>(n * (K / kI4Group) + col / kI4Group)] *
                                   static_cast<float>(quant::i4_code(q.data() + n * K / 2, col));
                ASSERT_EQ(y[static_cast<size_t>(n)], want)
                    << "row " << n << " col " << col << " " << cpu::quant_isa_name(isa);
            }
        }
    }
}

TEST(Int4, KernelsMatchDequantizedWeights) {
    ThreadPool pool(2);
    for (int64_t M = 1; M <= 8; ++M) {
        for (auto [K, N] :
             {std::array<int64_t, 2>{32, 3}, {64, 19}, {96, 33}, {2048, 41}, {1024, 70}}) {
            std::vector<float> x = randn(static_cast<size_t>(M * K), 11),
                               b = randn(static_cast<size_t>(N), 13);
            Quantized qw = quantize(randn(static_cast<size_t>(N * K), 12), N, K);
            Tensor bt = Tensor::make(b.data(), DType::kF32, Device::kCPU, {N});
            ops::Context ctx;
            ctx.pool = &pool;
            const std::vector<float> ref = reference(ctx, x, M, K, qw, &bt);
            for (cpu::QuantIsa isa : host_isas()) {
                std::vector<float> y(static_cast<size_t>(M * N));
                Tensor xt = f32(x, M, K), yt = f32(y, M, N);
                cpu::linear_quantized_gemv(ctx, isa, xt, qw.w, &bt, yt);
                EXPECT_LE(rel_l2(y, ref), 1e-6)
                    << cpu::quant_isa_name(isa) << " M=" << M << " K=" << K << " N=" << N;
            }
        }
    }
}

// Through ops::linear: the decode GEMV (few rows) and the packed GEMM (≥ 64 rows, whose panels
// are the dequantized weights, so it equals the F32 GEMM exactly), in fp32 and bf16 modes.
TEST(Int4, OpsLinearDecodeAndPrefill) {
    ThreadPool pool(2);
    for (auto [M, K, N] : {std::array<int64_t, 3>{1, 256, 45},
                           {6, 96, 31},
                           {64, 128, 37},
                           {70, 160, 37},
                           {129, 64, 18}}) {
        for (ops::Precision prec : {ops::Precision::kF32, ops::Precision::kBF16}) {
            std::vector<float> x = randn(static_cast<size_t>(M * K), 21);
            Quantized qw = quantize(randn(static_cast<size_t>(N * K), 22), N, K);
            ops::Context ctx;
            ctx.pool = &pool;
            ctx.precision = prec;
            const std::vector<float> ref = reference(ctx, x, M, K, qw, nullptr);
            std::vector<float> y(static_cast<size_t>(M * N));
            Tensor xt = f32(x, M, K), yt = f32(y, M, N);
            ops::linear(ctx, xt, qw.w, nullptr, yt);
            if (M >= 64) {
                EXPECT_EQ(y, ref) << "M=" << M;  // same GEMM, same panels
            } else if (prec == ops::Precision::kF32) {
                EXPECT_LE(rel_l2(y, ref), 1e-6) << "M=" << M;
            } else {
                // bf16 outputs: the fp32 sums differ in the last bits, which can move a rounding
                // by one bf16 step (2^-8 relative) and no more.
                for (size_t i = 0; i < y.size(); ++i)
                    EXPECT_LE(std::fabs(y[i] - ref[i]), std::fabs(ref[i]) / 128 + 1e-30) << i;
            }
        }
    }
}

// A row's result does not depend on which other rows share the call (1..8 rows, every kernel).
TEST(Int4, RowsIndependentOfBatch) {
    const int64_t K = 320, N = 21;
    std::vector<float> x = randn(static_cast<size_t>(8 * K), 31);
    Quantized qw = quantize(randn(static_cast<size_t>(N * K), 32), N, K);
    for (cpu::QuantIsa isa : host_isas()) {
        ops::Context ctx;
        std::vector<float> one(static_cast<size_t>(N));
        for (int64_t m = 0; m < 8; ++m) {
            Tensor xr = Tensor::make(x.data() + m * K, DType::kF32, Device::kCPU, {1, K});
            Tensor yr = f32(one, 1, N);
            cpu::linear_quantized_gemv(ctx, isa, xr, qw.w, nullptr, yr);
            for (int64_t M = m + 1; M <= 8; ++M) {
                std::vector<float> all(static_cast<size_t>(M * N));
                Tensor xt = f32(x, M, K), yt = f32(all, M, N);
                cpu::linear_quantized_gemv(ctx, isa, xt, qw.w, nullptr, yt);
                for (int64_t n = 0; n < N; ++n)
                    ASSERT_EQ(one[static_cast<size_t>(n)], all[static_cast<size_t>(m * N + n)])
                        << cpu::quant_isa_name(isa) << " row " << m << " of " << M;
            }
        }
    }
}

// The bf16 dot-product kernel (bf16 activations, AVX-512 BF16 hosts): against the dequantized
// fp32 weights (rel L2 ≤ 1e-6: products are exact, only the sum order differs), rows 1..8 and
// row-invariant; x that is not all bf16 falls back to the fp32 kernel, which must agree too.
TEST(Int4, Bf16DotKernelMatchesDequantizedWeights) {
    if (!cpu::int4_bf16_dot_supported() || cpu::best_quant_isa() != cpu::QuantIsa::kAvx512)
        GTEST_SKIP() << "host lacks AVX512_BF16";
    ThreadPool pool(2);
    for (auto [K, N] : {std::array<int64_t, 2>{64, 19}, {2048, 41}, {1024, 70}, {96, 5}}) {
        std::vector<float> x = randn(static_cast<size_t>(8 * K), 51),
                           b = randn(static_cast<size_t>(N), 53);
        for (float& v : x) v = round_bf16(v);
        Quantized qw = quantize(randn(static_cast<size_t>(N * K), 52), N, K);
        Tensor bt = Tensor::make(b.data(), DType::kF32, Device::kCPU, {N});
        ops::Context ctx;  // fp32 outputs: nothing rounded, so the sums are compared as they are
        ctx.pool = &pool;
        const std::vector<float> ref_all = reference(ctx, x, 8, K, qw, &bt);
        std::vector<float> one(static_cast<size_t>(N));
        for (int64_t M = 1; M <= 8; ++M) {
            std::vector<float> y(static_cast<size_t>(M * N));
            Tensor xt = f32(x, M, K), yt = f32(y, M, N);
            cpu::linear_int4_gemv(ctx, cpu::QuantIsa::kAvx512, true, xt, qw.w, &bt, yt);
            const std::vector<float> ref(ref_all.begin(), ref_all.begin() + M * N);
            EXPECT_LE(rel_l2(y, ref), 1e-6) << "M=" << M << " K=" << K << " N=" << N;
            for (int64_t m = 0; m < M; ++m) {
                Tensor xr = Tensor::make(x.data() + m * K, DType::kF32, Device::kCPU, {1, K});
                Tensor yr = f32(one, 1, N);
                cpu::linear_int4_gemv(ctx, cpu::QuantIsa::kAvx512, true, xr, qw.w, &bt, yr);
                for (int64_t n = 0; n < N; ++n)
                    ASSERT_EQ(one[static_cast<size_t>(n)], y[static_cast<size_t>(m * N + n)])
                        << "row " << m << " of " << M << " K=" << K;
            }
        }
        // One value that is not bf16: the fp32 kernel, bit for bit.
        x[3] = 1.0f + 0x1p-20f;
        std::vector<float> y(static_cast<size_t>(2 * N)), y32(y.size());
        Tensor xt = f32(x, 2, K), yt = f32(y, 2, N), y32t = f32(y32, 2, N);
        cpu::linear_int4_gemv(ctx, cpu::QuantIsa::kAvx512, true, xt, qw.w, &bt, yt);
        cpu::linear_int4_gemv(ctx, cpu::QuantIsa::kAvx512, false, xt, qw.w, &bt, y32t);
        EXPECT_EQ(y, y32) << "K=" << K;
    }
}

// Prefill-sized products with bf16 activations (AVX-512 BF16 hosts): the bf16 dot-product GEMM on
// the codes, each group's dot product times its scale. Against the dequantized fp32 weights
// (rel L2 <= 1e-6: products exact, only the sum order differs); a row's result is the same bits
// whatever the number of rows in the call (tiles of 1..4 blocks of 16 rows, partial blocks, more
// than one task of weight rows, k blocks of 512); x that is not all bf16 is declined.
TEST(Int4, Bf16GemmMatchesDequantizedWeights) {
    if (!cpu::bf16_gemm_supported()) GTEST_SKIP() << "host lacks AVX512_BF16";
    ThreadPool pool(2);
    std::vector<bool> kernels = {false};  // vdpbf16ps; and AMX tiles where the host has them
    if (cpu::bf16_gemm_amx_supported()) kernels.push_back(true);
    for (bool amx : kernels)
        for (auto [K, N] : {std::array<int64_t, 2>{32, 7}, {96, 50}, {2048, 41}, {1536, 130}}) {
            cpu::set_bf16_gemm_amx_enabled(amx);
            SCOPED_TRACE(amx ? "amx" : "vdpbf16ps");
            const int64_t M_all = 100;
            std::vector<float> x = randn(static_cast<size_t>(M_all * K), 61),
                               b = randn(static_cast<size_t>(N), 63);
            for (float& v : x) v = round_bf16(v);
            Quantized qw = quantize(randn(static_cast<size_t>(N * K), 62), N, K);
            Tensor bt = Tensor::make(b.data(), DType::kF32, Device::kCPU, {N});
            ops::Context ctx;  // fp32 outputs: the sums are compared as they are
            ctx.pool = &pool;
            const std::vector<float> ref = reference(ctx, x, M_all, K, qw, &bt);
            std::vector<float> all(static_cast<size_t>(M_all * N));
            {
                Tensor xt = f32(x, M_all, K), yt = f32(all, M_all, N);
                ASSERT_TRUE(cpu::linear_bf16_gemm(ctx, xt, qw.w, &bt, yt)) << "K=" << K;
            }
            EXPECT_LE(rel_l2(all, ref), 1e-6) << "K=" << K << " N=" << N;
            for (int64_t M : {9, 16, 17, 33, 64, 73}) {
                std::vector<float> y(static_cast<size_t>(M * N));
                Tensor xt = f32(x, M, K), yt = f32(y, M, N);
                ASSERT_TRUE(cpu::linear_bf16_gemm(ctx, xt, qw.w, &bt, yt));
                for (int64_t i = 0; i < M * N; ++i)
                    ASSERT_EQ(y[static_cast<size_t>(i)], all[static_cast<size_t>(i)])
                        << "row " << i / N << " of " << M << " K=" << K << " N=" << N;
            }
            // Through ops::linear in bf16: the same sums, rounded to bf16
            ctx.precision = ops::Precision::kBF16;
            std::vector<float> y(static_cast<size_t>(M_all * N));
            Tensor xt = f32(x, M_all, K), yt = f32(y, M_all, N);
            ops::linear(ctx, xt, qw.w, &bt, yt);
            for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], round_bf16(all[i])) << i;
            // One value that is not bf16: declined, nothing written
            x[5] = 1.0f + 0x1p-20f;
            std::vector<float> untouched(static_cast<size_t>(M_all * N), -3.0f);
            Tensor xt2 = f32(x, M_all, K), yt2 = f32(untouched, M_all, N);
            EXPECT_FALSE(cpu::linear_bf16_gemm(ctx, xt2, qw.w, &bt, yt2));
            for (float v : untouched) ASSERT_EQ(v, -3.0f);
        }
    cpu::set_bf16_gemm_amx_enabled(true);
}

// rows() of an int4 matrix keeps its group scales with its codes.
TEST(Int4, RowsViewKeepsGroupScales) {
    const int64_t N = 6, K = 128;
    Quantized qw = quantize(randn(static_cast<size_t>(N * K), 41), N, K);
    EXPECT_EQ(qw.w.nbytes(), static_cast<size_t>(N * K / 2));
    Tensor part = qw.w.rows(2, 5);
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t n = 0; n < 3; ++n) {
        cpu::dequantize_row(part, n, row.data());
        for (int64_t k = 0; k < K; ++k)
            ASSERT_EQ(row[static_cast<size_t>(k)], qw.deq[static_cast<size_t>((n + 2) * K + k)]);
    }
}

}  // namespace
}  // namespace voxrt
