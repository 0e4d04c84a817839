// Weight-only quantization of matrices, the format every backend reads (core/tensor.h
// Tensor::scale): a [N, K] matrix becomes N·K one-byte codes q and N F32 scales s, standing for
// w[n][k] = s[n] · decode(q[n][k]).
//
//   kI8      symmetric per row: s = max|w[n][:]| / 127, q = round-half-even(w / s) in [-127, 127]
//            (-128 is never produced).
//   kF8E4M3  per row: s = max|w[n][:]| / 448, q = the e4m3 value nearest w / s (ties to even,
//            finite: the largest magnitude is 448), decode = the exact e4m3 value.
// A row of zeros gets s = 0 and codes 0. The division by s is done in float, as is decode · s.
//
// Host-side reference implementations; kernels must decode exactly as these do (e4m3 → float is
// exact, so a kernel's dequantized weight equals dequantize() bit for bit).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/tensor.h"

namespace voxrt::quant {

// The e4m3 code nearest to v (ties to even), saturated to ±448; NaN → 0x7f.
uint8_t float_to_e4m3(float v);
// The exact value of an e4m3 code (0x7f / 0xff: NaN).
float e4m3_to_float(uint8_t code);

// True for the dtypes a quantized matrix may have.
inline bool is_quantized_dtype(DType dt) {
    return dt == DType::kI8 || dt == DType::kF8E4M3;
}

// Quantizes rows × cols floats (row-major) to `dt` (kI8 or kF8E4M3): codes → q (rows × cols bytes),
// scales → scale (rows floats).
void quantize_rows(DType dt, const float* w, int64_t rows, int64_t cols, void* q, float* scale);

// The float one code stands for, before its row's scale.
inline float decode(DType dt, uint8_t code) {
    return dt == DType::kI8 ? static_cast<float>(static_cast<int8_t>(code)) : e4m3_to_float(code);
}

// w[r][c] = scale[r] · decode(q[r][c]) for rows × cols codes.
void dequantize_rows(DType dt, const void* q, const float* scale, int64_t rows, int64_t cols,
                     float* w);

}  // namespace voxrt::quant
