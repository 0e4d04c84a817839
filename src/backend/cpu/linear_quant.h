// CPU linear layers over weight-only quantized matrices (core/quant.h: int8 or e4m3 codes [N, K]
// with one F32 scale per row in Tensor::scale, or int4 codes with one F32 scale per kI4Group
// inputs).
//
// Decode-sized products (few rows of x) read the one-byte codes directly: each k-chunk of a tile of
// weight rows is widened to fp32 in registers (int8 → int32 → float; e4m3 by moving its exponent
// and mantissa bits into a float and rescaling by 2^120, exact for subnormals too), multiplied
// into fp32 accumulators against the activations, and the row's scale is applied once at the end:
//   y[m][n] = scale[n] · Σ_k x[m][k] · decode(q[n][k])   (+ bias[n], then the activation rounding)
// The kernel is picked at run time from the host's features: AVX-512 (16 lanes) or AVX2 (8 lanes).
// Each output is the same chain of lane-wise FMAs whatever the number of rows, so a row's result
// does not depend on how rows are batched. int4: a 16-byte load of codes widens to 32 nibbles
// (low nibbles codes k..k+16, high nibbles k+16..k+32), each turned into its dequantized weight
// fma(nibble, s, -8·s) = s · (code) exactly, then FMA-ed against x; the sum needs no scale after.
// Prefill-sized products in Precision::kBF16 with bf16
// activations take the bf16 dot-product GEMM (backend/cpu/linear_bf16.h) on the codes as bf16
// values, the scale applied to the finished dot product as here (int4: to each group's dot
// product); otherwise they dequantize weight panels into the packed GEMM (backend/cpu/linear.cpp)
// and so equal the GEMM on dequantized weights bit for bit.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "ops/ops.h"

namespace voxrt::cpu {

// The instruction sets the quantized GEMV has kernels for.
enum class QuantIsa : uint8_t { kScalar, kAvx2, kAvx512 };

// The best kernel this host and build can run.
QuantIsa best_quant_isa();
const char* quant_isa_name(QuantIsa isa);

// y[M, N] = x[M, K] · dequantize(w)ᵀ (+ bias) with the kernel of `isa` (which the host must
// support; kScalar dequantizes a tile of rows and takes fp32 dots). x and y F32 on the host.
void linear_quantized_gemv(const ops::Context& ctx, QuantIsa isa, const Tensor& x, const Tensor& w,
                           const Tensor* bias, Tensor& y);

// int4 weights: as linear_quantized_gemv (which passes bf16_dot = ctx.round_bf16()); with
// bf16_dot, x whose values are all bf16 and K a multiple of 64 take the AVX-512 bf16 dot-product
// kernel where the host has it (isa kAvx512 and int4_bf16_dot_supported()), else the fp32 FMA
// kernels. Either way each row's result is one fixed chain whatever the number of rows.
void linear_int4_gemv(const ops::Context& ctx, QuantIsa isa, bool bf16_dot, const Tensor& x,
                      const Tensor& w, const Tensor* bias, Tensor& y);
bool int4_bf16_dot_supported();

// dst[k] = scale[row] · decode(q[row][k]) for the K codes of one row of a quantized matrix; equal
// bit for bit to quant::dequantize_rows.
void dequantize_row(const Tensor& w, int64_t row, float* dst);

}  // namespace voxrt::cpu
