// CPU linear layers on the AVX-512 BF16 dot-product instruction (vdpbf16ps), for multi-row
// products (prefill, the audio encoder) in Precision::kBF16 with BF16 weights.
//
// Numerics. vdpbf16ps multiplies pairs of bf16 values and adds both products to an fp32
// accumulator. In kBF16 the activations entering a linear are bf16-representable (every op rounds
// its output, ops/ops.h) and the weights are bf16, so each product of two 8-bit significands is
// exact in fp32: the result differs from the fp32-FMA GEMM only in the order of the additions,
// each rounded to nearest even as an fp32 FMA chain's. Per its definition (and as measured by
// tests/unit/ops/linear_test.cpp) one instruction adds the pair's odd product, rounds, then the
// even one and rounds again: the chain is k+1, k, k+3, k+2, ... with one rounding per product.
// The kernel checks the activations while packing them and declines (the caller falls back to
// the fp32 path) if one is not a bf16 value.
//
// Denormals: the instruction ignores MXCSR, treats denormal bf16 inputs as zero and flushes
// denormal results to zero (measured: 2^-130 · 2^100 gives 0, not 2^-30). An input that is
// dropped is below 2^-126 in magnitude, so its product is below 2^-126·|w| (|w| ≤ 2^8 or so in
// trained weights); a flushed product or partial sum is below 2^-126. The difference from an IEEE
// computation is therefore at most 2^-126·(Σ_k |w_k| + K) absolute, far below the bf16 rounding
// the output then receives for any result of magnitude above ~2^-100. Activations that small are
// noise next to their row's other values (RMS-normalised inputs, bf16's 8-bit significands); the
// unit tests measure the behaviour and check this bound.
//
// Quantized weights (int8 / e4m3 codes with a row scale, core/quant.h): every code is exactly a
// bf16 value, so the kernel runs on the codes and applies the scale to the finished dot product,
// y = scale[n] · Σ_k x·q (+ bias), as the quantized GEMV does (backend/cpu/linear_quant.h); it
// differs from the product on the dequantized fp32 weights by fp32 rounding only. int4 codes
// (groups of kI4Group along k, one scale each) are exact bf16 values too; each group's dot product
// is summed from zero, then scaled and added: y = Σ_g scale[n][g] · Σ_{k in g} x·q (+ bias).
//
// Each output is one chain of vdpbf16ps over the k-pairs in order, then the bias and the output
// rounding: the result does not depend on the row count or on how the rows are tiled, so a product
// gives the same bits whether its rows come at once or in pieces of more than kBf16GemmMinRows.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "ops/ops.h"

namespace voxrt::cpu {

// Products of this many rows or more take the bf16 GEMM (when it applies); fewer, the GEMV. Decode
// steps of up to 8 rows (batched sequences, Lfm2Network::forward_batch) thus keep the GEMV, which
// gives a row the same bits whatever the row count; a caller that needs that for more rows turns
// ops::Context::cpu_packed_gemm off, which turns this path off as well.
constexpr int64_t kBf16GemmMinRows = 9;

// Whether this host and build have the instruction (cpuid: AVX512F, AVX512BW, AVX512_BF16).
bool bf16_gemm_supported();
// Whether linear() uses it: supported and not turned off by set_bf16_gemm_enabled(false) (a
// process-wide switch for tests and benchmarks, which then measure the fp32 fallback).
bool bf16_gemm_enabled();
void set_bf16_gemm_enabled(bool on);

// AMX (tdpbf16ps on tiles; Intel hosts since Sapphire Rapids, with the kernel's permission): when
// supported and enabled, the same products (K a multiple of 32) run on the tile unit. Products stay
// exact and each output is still one fixed chain per row of x (so rows remain independent of the
// row count), but the chain is the tile unit's, not vdpbf16ps's: results differ from the AVX-512
// path in the roundings of the additions (measured by tests/unit/ops/linear_test.cpp: within a pair
// the tile unit adds in k order or rounds once, where vdpbf16ps adds the odd product first and
// rounds twice; denormals are flushed as vdpbf16ps does). Tasks of 32 weight rows; int4 groups
// are one tile's k (32), each group's tile stored and scaled with AVX-512 as above. A process-wide
// switch as above, for tests and benchmarks.
bool bf16_gemm_amx_supported();
bool bf16_gemm_amx_enabled();
void set_bf16_gemm_amx_enabled(bool on);

// y[M, N] = x[M, K] · wᵀ (+ bias), rounded as ctx says, for BF16 or quantized (I8 / F8E4M3 / I4
// with scales) w [N, K] and F32 x/y on the host. Returns false and writes nothing if the kernel
// does not apply: the host lacks the instruction, w is neither, or an element of x is not a bf16
// value.
bool linear_bf16_gemm(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                      Tensor& y);

// The GEMV of the same arithmetic for BF16 weights (decode: fewer than kBf16GemmMinRows rows, or
// any row count with cpu_packed_gemm off): each output one fixed chain of vdpbf16ps over k (lane
// l of 16 sums pairs l, l + 16, ... in order, then the lanes are summed), the bias, the rounding;
// a row gets the same bits whatever M is. Streams each weight row once in place (no fp32 copy of
// the row, as the fp32 GEMV makes). Same conditions as linear_bf16_gemm (declines a non-bf16 x).
bool linear_bf16_gemv(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                      Tensor& y);

}  // namespace voxrt::cpu
