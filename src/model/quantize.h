// Load-time quantization of one matrix row: the codes and scale of quant::quantize_rows (core/
// quant.h, the format's reference), computed branch-free (the int8 loop vectorizes; e4m3 takes
// integer bit operations instead of frexp): the 1.5B model's 1.27 G quantized parameters take
// ≈ 2.1 CPU-seconds in int8 and ≈ 4.1 in e4m3 instead of half a minute.
// Equality with the reference, code for code, is tested (tests/unit/model/quantize_test.cpp).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace voxrt::model {

// row[0..cols) → q[0..cols) codes of dtype dt (kI8 or kF8E4M3) and *scale. kI4: q[0..cols / 2)
// packed codes and scale[0..cols / kI4Group) (cols a multiple of kI4Group).
void quantize_row(DType dt, const float* row, int64_t cols, uint8_t* q, float* scale);

}  // namespace voxrt::model
