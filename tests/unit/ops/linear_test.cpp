// The CPU linear op: the multi-row path (packed GEMM, 64 rows or more) and the tiled GEMV both
// compute each output as an fp32 dot product with the bias added and one rounding; checked against
// a float64 reference, in fp32 and bf16 modes, with BF16 and F32 weights. With the packed path off
// (ops::Context::cpu_packed_gemm, as the detokenizer runs), a product gives the same bits whatever
// its row count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

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

}  // namespace
}  // namespace voxrt
