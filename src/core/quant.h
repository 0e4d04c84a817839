// Weight-only quantization of matrices, the format every backend reads (core/tensor.h
// Tensor::scale): a [N, K] matrix becomes N·K one-byte codes q and N F32 scales s, standing for
// w[n][k] = s[n] · decode(q[n][k]).
//
//   kI8      symmetric per row: s = max|w[n][:]| / 127, q = round-half-even(w / s) in [-127, 127]
//            (-128 is never produced).
//   kF8E4M3  per row: s = max|w[n][:]| / 448, q = the e4m3 value nearest w / s (ties to even,
//            finite: the largest magnitude is 448), decode = the exact e4m3 value.
//   kI4      symmetric per group of G = kI4Group consecutive codes of a row (core/tensor.h):
//            s = max|w[n][g·G .. g·G+G)| / 7, q = round-half-even(w / s) clamped to [-7, 7] (-8
//            is never produced), stored as the nibble q + 8 in [1, 15]. Two codes per byte: in
//            each block of 32 codes (16 bytes), byte b holds code b in its low nibble and code
//            b + 16 in its high nibble, so one 16-byte load widens to two runs of 16 codes.
//            Scales are F32, [N, K / G] row-major; a row takes K / 2 bytes of codes.
// A row (int4: a group) of zeros gets s = 0 and codes 0. The division by s is done in float, as is
// decode · s.
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
    return dt == DType::kI8 || dt == DType::kF8E4M3 || dt == DType::kI4;
}

// int4 (kI4): the signed code at column k of a packed row (in [-8, 7]; quantize gives [-7, 7]).
inline int i4_code(const uint8_t* row, int64_t k) {
    const int64_t block = k / 32, i = k % 32;
    const uint8_t b = row[block * 16 + (i % 16)];
    return (i < 16 ? (b & 0xf) : (b >> 4)) - 8;
}
// Stores the signed code q (in [-8, 7]) at column k of a packed row, leaving the other nibble.
inline void set_i4_code(uint8_t* row, int64_t k, int q) {
    const int64_t block = k / 32, i = k % 32;
    uint8_t& b = row[block * 16 + (i % 16)];
    const uint8_t n = static_cast<uint8_t>((q + 8) & 0xf);
    b = i < 16 ? static_cast<uint8_t>((b & 0xf0) | n) : static_cast<uint8_t>((b & 0x0f) | (n << 4));
}

// int4 with an explicit group size (a multiple of 32 dividing cols): codes → q (rows × cols / 2
// bytes), scales → scale (rows × cols / group floats). quantize_rows(kI4, ...) is this with
// group = kI4Group; other groups are for measuring the choice.
void quantize_rows_i4(const float* w, int64_t rows, int64_t cols, int64_t group, uint8_t* q,
                      float* scale);
void dequantize_rows_i4(const uint8_t* q, const float* scale, int64_t rows, int64_t cols,
                        int64_t group, float* w);

// Quantizes rows × cols floats (row-major) to `dt` (kI8 or kF8E4M3): codes → q (rows × cols bytes),
// scales → scale (rows floats). kI4: as quantize_rows_i4 with group kI4Group.
void quantize_rows(DType dt, const float* w, int64_t rows, int64_t cols, void* q, float* scale);

// The float one code stands for, before its row's scale (kI8, kF8E4M3).
inline float decode(DType dt, uint8_t code) {
    return dt == DType::kI8 ? static_cast<float>(static_cast<int8_t>(code)) : e4m3_to_float(code);
}

// w[r][c] = scale[r] · decode(q[r][c]) for rows × cols codes (kI4: dequantize_rows_i4).
void dequantize_rows(DType dt, const void* q, const float* scale, int64_t rows, int64_t cols,
                     float* w);

}  // namespace voxrt::quant
