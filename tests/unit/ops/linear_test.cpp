// The CPU linear op: the multi-row path (packed GEMM, 64 rows or more) and the tiled GEMV both
// compute each output as an fp32 dot product with the bias added and one rounding; checked against
// a float64 reference, in fp32 and bf16 modes, with BF16 and F32 weights. With the packed path off
// (ops::Context::cpu_packed_gemm, as the detokenizer runs), a product gives the same bits whatever
// its row count. The bf16 dot-product GEMM (backend/cpu/linear_bf16.h, kBF16 with BF16 weights and
// bf16 activations, where the host has AVX512_BF16) against the float64 reference on odd shapes,
// and the fp32 fallback with it turned off; its GEMV for decode rows likewise.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "backend/cpu/linear_bf16.h"
#include "core/bf16.h"
#include "core/thread_pool.h"
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

// y [M, N] = linear(x [M, K], w, bias), called on `piece` rows at a time (M: all at once).
std::vector<float> linear_in_pieces(const ops::Context& ctx, const std::vector<float>& x, int64_t M,
                                    int64_t K, const Tensor& w, const Tensor* bias, int64_t piece) {
    const int64_t N = w.shape[0];
    std::vector<float> y(static_cast<size_t>(M * N));
    for (int64_t m = 0; m < M; m += piece) {
        const int64_t r = std::min(piece, M - m);
        Tensor xr =
            Tensor::make(const_cast<float*>(x.data()) + m * K, DType::kF32, Device::kCPU, {r, K});
        Tensor yr = Tensor::make(y.data() + m * N, DType::kF32, Device::kCPU, {r, N});
        ops::linear(ctx, xr, w, bias, yr);
    }
    return y;
}

TEST(Linear, GemmAndGemvPathsMatchFloat64) {
    ThreadPool pool(2);
    for (auto [M, K, N] :
         {std::array<int64_t, 3>{2, 5, 3}, {7, 13, 19}, {50, 64, 33}, {300, 128, 70}}) {
        for (bool bf16_weights : {false, true}) {
            for (ops::Precision prec : {ops::Precision::kF32, ops::Precision::kBF16}) {
                std::vector<float> x = randn(static_cast<size_t>(M * K), 1),
                                   wf = randn(static_cast<size_t>(N * K), 2),
                                   b = randn(static_cast<size_t>(N), 3);
                std::vector<uint16_t> wb(wf.size());
                for (size_t i = 0; i < wf.size(); ++i) {
                    wb[i] = f32_to_bf16(wf[i]);
                    if (bf16_weights) wf[i] = bf16_to_f32(wb[i]);
                }
                Tensor w = bf16_weights
                               ? Tensor::make(wb.data(), DType::kBF16, Device::kCPU, {N, K})
                               : Tensor::make(wf.data(), DType::kF32, Device::kCPU, {N, K});
                Tensor bt = Tensor::make(b.data(), DType::kF32, Device::kCPU, {N});
                ops::Context ctx;
                ctx.pool = &pool;
                ctx.precision = prec;
                const std::vector<float> y_all =
                    linear_in_pieces(ctx, x, M, K, w, &bt, M);  // M rows at once
                const std::vector<float> y_rows =
                    linear_in_pieces(ctx, x, M, K, w, &bt, 1);  // one at a time
                const bool round = prec == ops::Precision::kBF16;
                for (int64_t m = 0; m < M; ++m)
                    for (int64_t n = 0; n < N; ++n) {
                        double ref = b[static_cast<size_t>(n)];
                        for (int64_t k = 0; k < K; ++k)
                            ref += static_cast<double>(x[static_cast<size_t>(m * K + k)]) *
                                   wf[static_cast<size_t>(n * K + k)];
                        // fp32 accumulation vs float64: ~K·2^-24 relative; bf16 output: half an
                        // ulp.
                        const double tol = round ? std::fabs(ref) * (1.0 / 256) + 1e-4
                                                 : 1e-5 * (std::fabs(ref) + K);
                        const size_t i = static_cast<size_t>(m * N + n);
                        EXPECT_NEAR(y_all[i], ref, tol)
                            << M << "x" << K << "x" << N << " row " << m;
                        EXPECT_NEAR(y_rows[i], ref, tol)
                            << M << "x" << K << "x" << N << " row " << m;
                        if (round) {
                            EXPECT_EQ(y_all[i], round_bf16(y_all[i]));
                        }
                    }
            }
        }
    }
}

TEST(Linear, WithoutPackedGemmRowCountDoesNotMatter) {
    // Rows go through the three-row kernel in threes and through dot_tile one by one (the rest);
    // both must give every output the same bits, with and without a tail of K beyond the last
    // eight.
    ThreadPool pool(2);
    const int64_t M = 300, N = 70;
    for (int64_t K : {128, 131}) {
        std::vector<float> x = randn(static_cast<size_t>(M * K), 4),
                           wf = randn(static_cast<size_t>(N * K), 5);
        std::vector<uint16_t> wb(wf.size());
        for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
        Tensor w = Tensor::make(wb.data(), DType::kBF16, Device::kCPU, {N, K});
        for (bool packed : {false, true}) {
            ops::Context ctx;
            ctx.pool = &pool;
            ctx.cpu_packed_gemm = packed;
            const std::vector<float> y_all = linear_in_pieces(ctx, x, M, K, w, nullptr, M);
            // In pieces of 6 rows, as detokenizer steps, and of one row, as decode steps.
            for (int64_t piece : {6, 1}) {
                const std::vector<float> y_rows = linear_in_pieces(ctx, x, M, K, w, nullptr, piece);
                size_t differ = 0;
                for (size_t i = 0; i < y_all.size(); ++i) differ += y_all[i] != y_rows[i];
                if (packed) {
                    EXPECT_GT(differ, 0u)
                        << "300 rows should have taken the packed GEMM (a different sum order)";
                } else {
                    EXPECT_EQ(differ, 0u) << "K " << K << ", pieces of " << piece;
                }
            }
        }
    }
}

// Float64 reference of y = x · wᵀ + b.
double ref_dot(const std::vector<float>& x, const std::vector<float>& wf,
               const std::vector<float>& b, int64_t K, int64_t m, int64_t n) {
    double r = b.empty() ? 0.0 : b[static_cast<size_t>(n)];
    for (int64_t k = 0; k < K; ++k)
        r += static_cast<double>(x[static_cast<size_t>(m * K + k)]) *
             wf[static_cast<size_t>(n * K + k)];
    return r;
}

// Restores the bf16 GEMM's switch when a test ends.
struct Bf16GemmSwitch {
    explicit Bf16GemmSwitch(bool on) { cpu::set_bf16_gemm_enabled(on); }
    ~Bf16GemmSwitch() { cpu::set_bf16_gemm_enabled(true); }
};

// The bf16 GEMM's two kernels: vdpbf16ps, and AMX tiles where the host has them (K a multiple of
// 32). Each test below runs on every kernel this host has.
struct AmxSwitch {
    explicit AmxSwitch(bool on) { cpu::set_bf16_gemm_amx_enabled(on); }
    ~AmxSwitch() { cpu::set_bf16_gemm_amx_enabled(true); }
};
std::vector<bool> amx_modes() {
    if (cpu::bf16_gemm_amx_supported()) return {false, true};
    return {false};
}
const char* kernel_name(bool amx) {
    return amx ? "amx" : "vdpbf16ps";
}

TEST(Linear, Bf16GemmMatchesFloat64OnOddShapes) {
    if (!cpu::bf16_gemm_supported()) GTEST_SKIP() << "host lacks AVX512_BF16";
    ThreadPool pool(2);
    // M, K, N: rows not multiples of 16 (tiles of 1–4 blocks of 16 rows), K odd (pairs of k) and
    // beyond one k block (512), N not a multiple of the 48-row task or the 6/8/12-row tiles. The
    // shapes with K a multiple of 32 take AMX where it is on: an odd number of 16-row blocks (73),
    // a part of a 32-row weight task (61, 50, 7), more than one k block (2048).
    for (bool amx : amx_modes())
        for (auto [M, K, N] : {std::array<int64_t, 3>{9, 1, 1},
                               {13, 7, 5},
                               {17, 33, 49},
                               {73, 131, 61},
                               {65, 1025, 97},
                               {300, 517, 100},
                               {40, 1024, 50},
                               {9, 32, 7},
                               {73, 2048, 61},
                               {33, 96, 130}}) {
            AmxSwitch kernel(amx);
            SCOPED_TRACE(kernel_name(amx));
            std::vector<float> x = randn(static_cast<size_t>(M * K), 11),
                               wf = randn(static_cast<size_t>(N * K), 12),
                               b = randn(static_cast<size_t>(N), 13);
            for (float& v : x) v = round_bf16(v);  // kBF16 activations are bf16 values
            std::vector<uint16_t> wb(wf.size());
            for (size_t i = 0; i < wf.size(); ++i) {
                wb[i] = f32_to_bf16(wf[i]);
                wf[i] = bf16_to_f32(wb[i]);
            }
            Tensor w = Tensor::make(wb.data(), DType::kBF16, Device::kCPU, {N, K});
            Tensor bt = Tensor::make(b.data(), DType::kF32, Device::kCPU, {N});
            ops::Context ctx;
            ctx.pool = &pool;
            ctx.precision = ops::Precision::kBF16;
            std::vector<float> y_direct(static_cast<size_t>(M * N));
            {
                Tensor xt = Tensor::make(x.data(), DType::kF32, Device::kCPU, {M, K});
                Tensor yt = Tensor::make(y_direct.data(), DType::kF32, Device::kCPU, {M, N});
                ASSERT_TRUE(cpu::linear_bf16_gemm(ctx, xt, w, &bt, yt))
                    << M << "x" << K << "x" << N;
            }
            const std::vector<float> y_on = linear_in_pieces(ctx, x, M, K, w, &bt, M);
            // In pieces of 9 rows or more every piece takes the bf16 GEMM: the same bits.
            const std::vector<float> y_pieces = linear_in_pieces(ctx, x, M, K, w, &bt, 9);
            std::vector<float> y_off;
            {
                Bf16GemmSwitch off(false);
                y_off = linear_in_pieces(ctx, x, M, K, w, &bt, M);
            }
            for (int64_t m = 0; m < M; ++m)
                for (int64_t n = 0; n < N; ++n) {
                    const double ref = ref_dot(x, wf, b, K, m, n);
                    const double tol =
                        std::fabs(ref) * (1.0 / 256) + 1e-4;  // bf16 output, half an ulp
                    const size_t i = static_cast<size_t>(m * N + n);
                    EXPECT_NEAR(y_direct[i], ref, tol) << M << "x" << K << "x" << N << " row " << m;
                    EXPECT_NEAR(y_off[i], ref, tol) << M << "x" << K << "x" << N << " row " << m;
                    EXPECT_EQ(y_direct[i], round_bf16(y_direct[i]));
                    EXPECT_EQ(y_on[i], y_direct[i]) << "linear() did not take the bf16 GEMM";
                    EXPECT_EQ(y_pieces[i], y_direct[i])
                        << M << "x" << K << "x" << N << " row " << m;
                }
        }
}

// A bf16 dot-product kernel given x with one value bf16 cannot hold (row `bad_row`, last column)
// declines and writes nothing; linear() then takes the fp32 path: the exact activations, not
// their bf16 roundings.
using Bf16Kernel = bool (*)(const ops::Context&, const Tensor&, const Tensor&, const Tensor*,
                            Tensor&);
void expect_declines_non_bf16(Bf16Kernel kernel, int64_t M, int64_t K, int64_t N, int64_t bad_row,
                              uint32_t seed) {
    ThreadPool pool(2);
    std::vector<float> x = randn(static_cast<size_t>(M * K), seed),
                       wf = randn(static_cast<size_t>(N * K), seed + 1);
    for (float& v : x) v = round_bf16(v);
    x[static_cast<size_t>(bad_row * K + K - 1)] += 1e-4f;
    std::vector<uint16_t> wb(wf.size());
    for (size_t i = 0; i < wf.size(); ++i) {
        wb[i] = f32_to_bf16(wf[i]);
        wf[i] = bf16_to_f32(wb[i]);
    }
    Tensor w = Tensor::make(wb.data(), DType::kBF16, Device::kCPU, {N, K});
    ops::Context ctx;
    ctx.pool = &pool;
    ctx.precision = ops::Precision::kBF16;
    std::vector<float> y(static_cast<size_t>(M * N), -7.0f);
    Tensor xt = Tensor::make(x.data(), DType::kF32, Device::kCPU, {M, K});
    Tensor yt = Tensor::make(y.data(), DType::kF32, Device::kCPU, {M, N});
    EXPECT_FALSE(kernel(ctx, xt, w, nullptr, yt));
    for (float v : y) ASSERT_EQ(v, -7.0f) << "a declined product must write nothing";
    ops::linear(ctx, xt, w, nullptr, yt);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            const double ref = ref_dot(x, wf, {}, K, m, n);
            EXPECT_NEAR(y[static_cast<size_t>(m * N + n)], ref, std::fabs(ref) / 256 + 1e-5);
        }
}

TEST(Linear, Bf16GemmDeclinesNonBf16Activations) {
    if (!cpu::bf16_gemm_supported()) GTEST_SKIP() << "host lacks AVX512_BF16";
    expect_declines_non_bf16(cpu::linear_bf16_gemm, 40, 33, 20, 37, 21);
}

// The bf16 GEMV (decode rows): against the float64 reference, linear() takes it, a row gets the
// same bits whatever the row count (rows go through the 1–4-row kernels), K's tail past the last
// 32 (masked loads) and N's past the last 4-row tile; it declines a non-bf16 x without writing.
TEST(Linear, Bf16GemvMatchesFloat64AndRowCountDoesNotMatter) {
    if (!cpu::bf16_gemm_supported()) GTEST_SKIP() << "host lacks AVX512_BF16";
    ThreadPool pool(2);
    for (auto [M, K, N] : {std::array<int64_t, 3>{1, 1, 1},
                           {2, 31, 3},
                           {3, 32, 4},
                           {5, 33, 5},
                           {8, 100, 13},
                           {7, 2048, 70},
                           {1, 2048, 130}}) {
        std::vector<float> x = randn(static_cast<size_t>(M * K), 31),
                           wf = randn(static_cast<size_t>(N * K), 32),
                           b = randn(static_cast<size_t>(N), 33);
        for (float& v : x) v = round_bf16(v);
        std::vector<uint16_t> wb(wf.size());
        for (size_t i = 0; i < wf.size(); ++i) {
            wb[i] = f32_to_bf16(wf[i]);
            wf[i] = bf16_to_f32(wb[i]);
        }
        Tensor w = Tensor::make(wb.data(), DType::kBF16, Device::kCPU, {N, K});
        Tensor bt = Tensor::make(b.data(), DType::kF32, Device::kCPU, {N});
        ops::Context ctx;
        ctx.pool = &pool;
        ctx.precision = ops::Precision::kBF16;
        std::vector<float> y_direct(static_cast<size_t>(M * N));
        {
            Tensor xt = Tensor::make(x.data(), DType::kF32, Device::kCPU, {M, K});
            Tensor yt = Tensor::make(y_direct.data(), DType::kF32, Device::kCPU, {M, N});
            ASSERT_TRUE(cpu::linear_bf16_gemv(ctx, xt, w, &bt, yt)) << M << "x" << K << "x" << N;
        }
        const std::vector<float> y_on = linear_in_pieces(ctx, x, M, K, w, &bt, M);
        const std::vector<float> y_rows = linear_in_pieces(ctx, x, M, K, w, &bt, 1);
        std::vector<float> y_off;
        {
            Bf16GemmSwitch off(false);
            y_off = linear_in_pieces(ctx, x, M, K, w, &bt, M);
        }
        for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
                const double ref = ref_dot(x, wf, b, K, m, n);
                const double tol = std::fabs(ref) * (1.0 / 256) + 1e-4;  // bf16 output
                const size_t i = static_cast<size_t>(m * N + n);
                EXPECT_NEAR(y_direct[i], ref, tol) << M << "x" << K << "x" << N << " row " << m;
                EXPECT_NEAR(y_off[i], ref, tol) << M << "x" << K << "x" << N << " row " << m;
                EXPECT_EQ(y_direct[i], round_bf16(y_direct[i]));
                EXPECT_EQ(y_on[i], y_direct[i]) << "linear() did not take the bf16 GEMV";
                EXPECT_EQ(y_rows[i], y_direct[i]) << M << "x" << K << "x" << N << " row " << m;
            }
    }
    expect_declines_non_bf16(cpu::linear_bf16_gemv, 3, 40, 6, 2, 34);
}

// vdpbf16ps treats denormal inputs as zero and flushes denormal sums (it ignores MXCSR). Measured
// here and bounded: the difference from IEEE arithmetic is at most 2^-126·Σ|w| for the flushed
// inputs plus 2^-126 per flushed partial sum, before the output's bf16 rounding.
TEST(Linear, Bf16GemmDenormalsStayWithinTheFlushBound) {
    if (!cpu::bf16_gemm_supported()) GTEST_SKIP() << "host lacks AVX512_BF16";
    for (bool amx : amx_modes()) {
        AmxSwitch kernel(amx);
        SCOPED_TRACE(kernel_name(amx));
        const int64_t M = 16, K = 32, N = 2;  // K = 32: the AMX kernel's unit (zeros past k = 1)
        std::vector<float> x(static_cast<size_t>(M * K), 0.0f);
        std::vector<float> wf(static_cast<size_t>(N * K), 0.0f);
        const float denorm = 0x1p-130f;  // a bf16 denormal (bits 0x0008)
        ASSERT_EQ(round_bf16(denorm), denorm);
        for (int64_t m = 0; m < M; ++m) {
            x[static_cast<size_t>(m * K)] = denorm;
            x[static_cast<size_t>(m * K + 1)] = m % 2 ? 1.0f : 0.0f;
        }
        wf[0] = 0x1p100f;  // row 0: denormal · 2^100 = 2^-30 in IEEE arithmetic
        wf[1] = 0x1p-60f;
        wf[static_cast<size_t>(K)] = 0x1p-20f;  // row 1: denormal · 2^-20, itself below 2^-126
        std::vector<uint16_t> wb(wf.size());
        for (size_t i = 0; i < wf.size(); ++i) wb[i] = f32_to_bf16(wf[i]);
        Tensor w = Tensor::make(wb.data(), DType::kBF16, Device::kCPU, {N, K});
        ops::Context ctx;
        ctx.precision = ops::Precision::kBF16;
        std::vector<float> y(static_cast<size_t>(M * N));
        Tensor xt = Tensor::make(x.data(), DType::kF32, Device::kCPU, {M, K});
        Tensor yt = Tensor::make(y.data(), DType::kF32, Device::kCPU, {M, N});
        ASSERT_TRUE(cpu::linear_bf16_gemm(ctx, xt, w, nullptr, yt));
        std::printf("[bf16 gemm, %s] denormal x 2^100: %g (IEEE %g); 2^-130 x 2^-20: %g\n",
                    kernel_name(amx), static_cast<double>(y[0]), 0x1p-30,
                    static_cast<double>(y[1]));
        for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
                double sum_w = 0;
                for (int64_t k = 0; k < K; ++k)
                    sum_w += std::fabs(wf[static_cast<size_t>(n * K + k)]);
                const double ref = ref_dot(x, wf, {}, K, m, n);
                const double bound = 0x1p-126 * (sum_w + K) + std::fabs(ref) / 256;
                EXPECT_LE(std::fabs(y[static_cast<size_t>(m * N + n)] - ref), bound)
                    << "row " << m << " col " << n;
            }
    }
}

// The order of additions inside one vdpbf16ps: the instruction's definition adds the pair's odd
// product, rounds, then adds the even one and rounds (two fp32 roundings, not one). Row
// [1, 0, -1, 2^-24] · [1, 1, 1, 1]: in k order the sum is 2^-24; odd first, 1 + 2^-24 rounds to 1
// (a tie, to even) and the -1 then gives 0. A single rounding of the pair would give 2^-24 too.
TEST(Linear, Bf16GemmPairOrderWithinTheInstruction) {
    if (!cpu::bf16_gemm_supported()) GTEST_SKIP() << "host lacks AVX512_BF16";
    for (bool amx : amx_modes()) {
        AmxSwitch kernel(amx);
        const int64_t M = 9, K = 32, N = 1;  // zeros past k = 3 (K = 32: the AMX kernel's unit)
        std::vector<float> x(static_cast<size_t>(M * K), 0.0f);
        for (int64_t m = 0; m < M; ++m) {
            const float row[4] = {1.0f, 0.0f, -1.0f, 0x1p-24f};
            std::memcpy(x.data() + m * K, row, sizeof row);
        }
        std::vector<uint16_t> wb(static_cast<size_t>(K), f32_to_bf16(1.0f));
        Tensor w = Tensor::make(wb.data(), DType::kBF16, Device::kCPU, {N, K});
        ops::Context ctx;
        ctx.precision = ops::Precision::kBF16;
        std::vector<float> y(static_cast<size_t>(M * N));
        Tensor xt = Tensor::make(x.data(), DType::kF32, Device::kCPU, {M, K});
        Tensor yt = Tensor::make(y.data(), DType::kF32, Device::kCPU, {M, N});
        ASSERT_TRUE(cpu::linear_bf16_gemm(ctx, xt, w, nullptr, yt));
        std::printf("[bf16 gemm, %s] 1 + 0 - 1 + 2^-24 = %g (%s)\n", kernel_name(amx),
                    static_cast<double>(y[0]),
                    y[0] == 0.0f ? "odd product first, two roundings" : "k order or one rounding");
        EXPECT_TRUE(y[0] == 0.0f || y[0] == 0x1p-24f) << y[0];
        for (float v : y) EXPECT_EQ(v, y[0]);
    }
}

}  // namespace
}  // namespace voxrt
