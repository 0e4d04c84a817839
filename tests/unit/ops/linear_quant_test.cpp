// The CPU linear op over weight-only quantized matrices (int8 and e4m3 codes with row scales):
// every kernel the host can run (AVX-512, AVX2, the scalar dequantizing path), the decode GEMV
// (few rows) and the packed GEMM (kPackedGemmMinRows rows and more), against the same product on
// the dequantized fp32 weights (quant::dequantize_rows), which is what weight-only quantization
// promises: rel L2 ≤ 1e-6. The kernels scale once per output (scale · Σ x·q) where the reference
// scales every weight (Σ x·(scale·q)), so the two differ by fp32 rounding only.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <vector>

#include "backend/cpu/linear_bf16.h"
#include "backend/cpu/linear_quant.h"
#include "core/bf16.h"
#include "core/quant.h"
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
    Tensor w;                       // the quantized tensor
};

Quantized quantize(DType dt, const std::vector<float>& wf, int64_t N, int64_t K) {
    Quantized r;
    r.q.resize(wf.size());
    r.scale.resize(static_cast<size_t>(N));
    r.deq.resize(wf.size());
    quant::quantize_rows(dt, wf.data(), N, K, r.q.data(), r.scale.data());
    quant::dequantize_rows(dt, r.q.data(), r.scale.data(), N, K, r.deq.data());
    r.w = Tensor::make(r.q.data(), dt, Device::kCPU, {N, K});
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

// The reference: the same op on the dequantized F32 weights.
std::vector<float> reference(const ops::Context& ctx, std::vector<float>& x, int64_t M, int64_t K,
                             Quantized& qw, const Tensor* bias) {
    const int64_t N = qw.w.shape[0];
    std::vector<float> y(static_cast<size_t>(M * N));
    Tensor xt = f32(x, M, K), wt = f32(qw.deq, N, K), yt = f32(y, M, N);
    ops::linear(ctx, xt, wt, bias, yt);
    return y;
}

TEST(LinearQuant, DequantizeRowIsTheReferenceDecode) {
    for (DType dt : {DType::kI8, DType::kF8E4M3}) {
        const int64_t N = 5, K = 300;
        Quantized qw = quantize(dt, randn(static_cast<size_t>(N * K), 7), N, K);
        std::vector<float> row(static_cast<size_t>(K));
        for (int64_t n = 0; n < N; ++n) {
            cpu::dequantize_row(qw.w, n, row.data());
            for (int64_t k = 0; k < K; ++k)
                ASSERT_EQ(row[static_cast<size_t>(k)], qw.deq[static_cast<size_t>(n * K + k)])
                    << dtype_name(dt) << " row " << n << " col " << k;
        }
    }
}

// Every e4m3 code through the vector decode: a matrix whose row n is all of code c, times x = 1
// at one column, gives decode(c) · scale exactly (a sum of one product and zeros).
TEST(LinearQuant, VectorDecodeIsExactForEveryCode) {
    for (DType dt : {DType::kI8, DType::kF8E4M3}) {
        const int64_t N = 256, K = 48;  // three AVX-512 chunks (six AVX2), no scalar tail
        std::vector<uint8_t> q(static_cast<size_t>(N * K));
        std::vector<float> scale(static_cast<size_t>(N), 1.0f);
        for (int64_t n = 0; n < N; ++n)
            for (int64_t k = 0; k < K; ++k)
                q[static_cast<size_t>(n * K + k)] = static_cast<uint8_t>(n);
        if (dt == DType::kF8E4M3) {  // the NaN codes are never produced; give them a finite value
            for (int64_t n : {0x7f, 0xff})
                for (int64_t k = 0; k < K; ++k) q[static_cast<size_t>(n * K + k)] = 0;
        }
        Tensor w = Tensor::make(q.data(), dt, Device::kCPU, {N, K});
        w.scale = scale.data();
        for (int64_t col : {int64_t{0}, int64_t{13}, K - 1}) {
            std::vector<float> x(static_cast<size_t>(K), 0.0f), y(static_cast<size_t>(N));
            x[static_cast<size_t>(col)] = 1.0f;
            Tensor xt = f32(x, 1, K), yt = f32(y, 1, N);
            for (cpu::QuantIsa isa : host_isas()) {
                ops::Context ctx;
                cpu::linear_quantized_gemv(ctx, isa, xt, w, nullptr, yt);
                for (int64_t n = 0; n < N; ++n) {
                    const float want = quant::decode(dt, q[static_cast<size_t>(n * K + col)]);
                    ASSERT_EQ(y[static_cast<size_t>(n)], want)
                        << dtype_name(dt) << " code " << n << " " << cpu::quant_isa_name(isa);
                }
            }
        }
    }
}

TEST(LinearQuant, KernelsMatchDequantizedWeights) {
    ThreadPool pool(2);
    for (DType dt : {DType::kI8, DType::kF8E4M3}) {
        for (auto [M, K, N] : {std::array<int64_t, 3>{1, 5, 3},
                               {1, 37, 19},
                               {2, 100, 33},
                               {3, 64, 70},
                               {7, 129, 17},
                               {1, 2048, 41},
                               {5, 1031, 9}}) {
            std::vector<float> x = randn(static_cast<size_t>(M * K), 11),
                               b = randn(static_cast<size_t>(N), 13);
            Quantized qw = quantize(dt, randn(static_cast<size_t>(N * K), 12), N, K);
            Tensor bt = Tensor::make(b.data(), DType::kF32, Device::kCPU, {N});
            ops::Context ctx;
            ctx.pool = &pool;
            const std::vector<float> ref = reference(ctx, x, M, K, qw, &bt);
            for (cpu::QuantIsa isa : host_isas()) {
                std::vector<float> y(static_cast<size_t>(M * N));
                Tensor xt = f32(x, M, K), yt = f32(y, M, N);
                cpu::linear_quantized_gemv(ctx, isa, xt, qw.w, &bt, yt);
                EXPECT_LE(rel_l2(y, ref), 1e-6) << dtype_name(dt) << " " << cpu::quant_isa_name(isa)
                                                << " M=" << M << " K=" << K << " N=" << N;
            }
        }
    }
}

// Through ops::linear: the decode GEMV (T = 1, and a few rows) and the packed GEMM (T ≥ 64, whose
// panels are the dequantized weights, so it equals the F32 GEMM exactly), in fp32 and bf16 modes.
TEST(LinearQuant, OpsLinearDecodeAndPrefill) {
    ThreadPool pool(2);
    for (DType dt : {DType::kI8, DType::kF8E4M3}) {
        for (auto [M, K, N] :
             {std::array<int64_t, 3>{1, 257, 45}, {6, 96, 31}, {70, 130, 37}, {129, 64, 18}}) {
            for (ops::Precision prec : {ops::Precision::kF32, ops::Precision::kBF16}) {
                std::vector<float> x = randn(static_cast<size_t>(M * K), 21);
                Quantized qw = quantize(dt, randn(static_cast<size_t>(N * K), 22), N, K);
                ops::Context ctx;
                ctx.pool = &pool;
                ctx.precision = prec;
                const std::vector<float> ref = reference(ctx, x, M, K, qw, nullptr);
                std::vector<float> y(static_cast<size_t>(M * N));
                Tensor xt = f32(x, M, K), yt = f32(y, M, N);
                ops::linear(ctx, xt, qw.w, nullptr, yt);
                if (M >= 64) {
                    EXPECT_EQ(y, ref) << dtype_name(dt) << " M=" << M;  // same GEMM, same panels
                } else if (prec == ops::Precision::kF32) {
                    EXPECT_LE(rel_l2(y, ref), 1e-6) << dtype_name(dt) << " M=" << M;
                } else {
                    // bf16 outputs: the fp32 sums differ in the last bits, which can move a
                    // rounding by one bf16 step (2^-8 relative) and no more.
                    for (size_t i = 0; i < y.size(); ++i)
                        EXPECT_LE(std::fabs(y[i] - ref[i]), std::fabs(ref[i]) / 128 + 1e-30) << i;
                    EXPECT_LE(rel_l2(y, ref), 1e-3) << dtype_name(dt) << " M=" << M;
                }
            }
        }
    }
}

// A row's result does not depend on which other rows share the call (decode batches).
TEST(LinearQuant, RowsIndependentOfBatch) {
    const int64_t M = 7, K = 333, N = 21;
    std::vector<float> x = randn(static_cast<size_t>(M * K), 31);
    Quantized qw = quantize(DType::kI8, randn(static_cast<size_t>(N * K), 32), N, K);
    for (cpu::QuantIsa isa : host_isas()) {
        ops::Context ctx;
        std::vector<float> all(static_cast<size_t>(M * N)), one(static_cast<size_t>(N));
        Tensor xt = f32(x, M, K), yt = f32(all, M, N);
        cpu::linear_quantized_gemv(ctx, isa, xt, qw.w, nullptr, yt);
        for (int64_t m = 0; m < M; ++m) {
            Tensor xr = Tensor::make(x.data() + m * K, DType::kF32, Device::kCPU, {1, K});
            Tensor yr = f32(one, 1, N);
            cpu::linear_quantized_gemv(ctx, isa, xr, qw.w, nullptr, yr);
            for (int64_t n = 0; n < N; ++n)
                ASSERT_EQ(one[static_cast<size_t>(n)], all[static_cast<size_t>(m * N + n)])
                    << cpu::quant_isa_name(isa) << " row " << m;
        }
    }
}

// Prefill in bf16 with bf16 activations: the bf16 dot-product GEMM on the codes (scale after the
// dot product) where the host has it, against the same op on the dequantized weights (the fp32 GEMM
// there), within the bars of the bf16 GEMV above; odd shapes (K odd, rows not multiples of 16).
// With the bf16 GEMM off, the packed GEMM on dequantized panels, equal to the reference.
TEST(LinearQuant, Bf16GemmOnCodesMatchesDequantizedWeights) {
    if (!cpu::bf16_gemm_supported()) GTEST_SKIP() << "host lacks AVX512_BF16";
    ThreadPool pool(2);
    for (DType dt : {DType::kI8, DType::kF8E4M3}) {
        for (auto [M, K, N] : {std::array<int64_t, 3>{9, 3, 5}, {70, 131, 37}, {129, 1027, 53}}) {
            std::vector<float> x = randn(static_cast<size_t>(M * K), 41);
            for (float& v : x) v = round_bf16(v);
            std::vector<float> bias = randn(static_cast<size_t>(N), 43);
            Tensor bt = Tensor::make(bias.data(), DType::kF32, Device::kCPU, {N});
            Quantized qw = quantize(dt, randn(static_cast<size_t>(N * K), 42), N, K);
            ops::Context ctx;
            ctx.pool = &pool;
            ctx.precision = ops::Precision::kBF16;
            const std::vector<float> ref = reference(ctx, x, M, K, qw, &bt);
            std::vector<float> y(static_cast<size_t>(M * N)), y_op(y.size()), y_off(y.size());
            Tensor xt = f32(x, M, K), yt = f32(y, M, N), yo = f32(y_op, M, N),
                   yf = f32(y_off, M, N);
            ASSERT_TRUE(cpu::linear_bf16_gemm(ctx, xt, qw.w, &bt, yt)) << dtype_name(dt);
            ops::linear(ctx, xt, qw.w, &bt, yo);
            EXPECT_EQ(y_op, y) << "linear() did not take the bf16 GEMM";
            // One bf16 step of the output, plus what two fp32 sums of the same K products in
            // different orders can differ by (K·2^-24·Σ|x·w|), which outputs near zero (sums that
            // cancel, here K up to 1027) can show beyond one step.
            for (int64_t m = 0; m < M; ++m)
                for (int64_t n = 0; n < N; ++n) {
                    double abs_sum = 0;
                    for (int64_t k = 0; k < K; ++k)
                        abs_sum +=
                            std::fabs(static_cast<double>(x[static_cast<size_t>(m * K + k)]) *
                                      qw.deq[static_cast<size_t>(n * K + k)]);
                    const size_t i = static_cast<size_t>(m * N + n);
                    EXPECT_LE(std::fabs(y[i] - ref[i]),
                              std::fabs(ref[i]) / 128 + K * 0x1p-24 * abs_sum)
                        << dtype_name(dt) << " M=" << M << " " << i;
                }
            EXPECT_LE(rel_l2(y, ref), 1e-3) << dtype_name(dt) << " M=" << M;
            cpu::set_bf16_gemm_enabled(false);
            ops::linear(ctx, xt, qw.w, &bt, yf);
            cpu::set_bf16_gemm_enabled(true);
            if (M >= 64) {
                EXPECT_EQ(y_off, ref) << dtype_name(dt) << " M=" << M;  // the packed GEMM
            } else {
                EXPECT_LE(rel_l2(y_off, ref), 1e-3) << dtype_name(dt) << " M=" << M;
            }
        }
    }
}

}  // namespace
}  // namespace voxrt
