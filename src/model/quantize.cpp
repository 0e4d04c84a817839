#include "model/quantize.h"

#include <bit>
#include <cmath>
#include <cstring>

namespace voxrt::model {

namespace {

inline uint32_t bits_of(float f) {
    return std::bit_cast<uint32_t>(f);
}

// quant::float_to_e4m3 for |v| as the reference computes it: NaN → 0x7f, ≥ 448 saturates, below
// 2^-6 subnormal steps of 2^-9 rounded half to even, else the float's mantissa rounded to 3 bits
// half to even (a carry moves to the next exponent, as the reference's man = 8 does).
inline uint8_t e4m3_code(float v) {
    const uint32_t u = bits_of(v);
    const uint32_t sign = (u >> 24) & 0x80u;
    const uint32_t abits = u & 0x7fffffffu;
    const float a = std::bit_cast<float>(abits);
    // Subnormal range: a · 512 is exact; adding and removing 1.5 · 2^23 rounds it half to even.
    // (Only the subnormal range is converted, so the float-to-int conversion never overflows.)
    const float a_sub = abits < 0x3c800000u ? a : 0.0f;
    const float sub = (a_sub * 512.0f + 12582912.0f) - 12582912.0f;
    const uint32_t sub_code = static_cast<uint32_t>(static_cast<int32_t>(sub));
    const uint32_t b = abits + 0x7ffffu + ((abits >> 20) & 1u);
    // ((e + 7) << 3) | man with e = (b >> 23) - 127, i.e. ((b >> 23) - 120) << 3 | man
    const uint32_t norm_code = (((b >> 23) - 120u) << 3) | ((b >> 20) & 7u);
    // (compared as bits: 0x3c800000 is 2^-6, 0x43e00000 is 448)
    uint32_t code = abits < 0x3c800000u ? sub_code : norm_code;
    code = abits >= 0x43e00000u ? 0x7eu : code;
    code = code == 0 ? 0u : (sign | code);
    code = abits > 0x7f800000u ? 0x7fu : code;  // NaN
    return static_cast<uint8_t>(code);
}

// max |v| over n floats, NaN ignored (as std::fmax does in the reference). Non-negative floats
// order as their bit patterns do, so the maximum is taken on integers, eight lanes at a time.
inline float abs_max(const float* v, int64_t n) {
    auto abs_bits = [](float f) {
        const uint32_t b = bits_of(f) & 0x7fffffffu;
        return b > 0x7f800000u ? 0u : b;  // NaN counts as 0
    };
    uint32_t lanes[8] = {};
    int64_t c0 = 0;
    for (; c0 + 8 <= n; c0 += 8)
        for (int j = 0; j < 8; ++j) {
            const uint32_t b = abs_bits(v[c0 + j]);
            lanes[j] = b > lanes[j] ? b : lanes[j];
        }
    uint32_t amax_bits = 0;
    for (int j = 0; j < 8; ++j) amax_bits = lanes[j] > amax_bits ? lanes[j] : amax_bits;
    for (; c0 < n; ++c0) {
        const uint32_t b = abs_bits(v[c0]);
        amax_bits = b > amax_bits ? b : amax_bits;
    }
    return std::bit_cast<float>(amax_bits);
}

// quant::quantize_rows_i4 for one row with group kI4Group: per group s = max|w| / 7, codes
// round-half-even(w / s) clamped to [-7, 7] (NaN → -7 as the reference's clamps give), packed
// 32 codes to 16 bytes (code b low, code b + 16 high).
void quantize_row_i4(const float* row, int64_t cols, uint8_t* q, float* scale) {
    for (int64_t g = 0; g < cols / kI4Group; ++g) {
        const float* x = row + g * kI4Group;
        uint8_t* o = q + g * (kI4Group / 2);
        const float s = abs_max(x, kI4Group) / 7.0f;
        scale[g] = s;
        if (s == 0.0f || !std::isfinite(s)) {
            std::memset(o, 0x88, kI4Group / 2);  // every code 0
            continue;
        }
        for (int64_t b0 = 0; b0 < kI4Group; b0 += 32) {
            uint8_t n[32];
            for (int c = 0; c < 32; ++c) {
                const float y = x[b0 + c] / s;
                float t = (y + 12582912.0f) - 12582912.0f;  // half to even, as nearbyint
                t = t > -7.0f ? t : -7.0f;
                t = t < 7.0f ? t : 7.0f;
                n[c] = static_cast<uint8_t>(static_cast<int>(t) + 8);
            }
            for (int b = 0; b < 16; ++b)
                o[b0 / 2 + b] = static_cast<uint8_t>(n[b] | (n[b + 16] << 4));
        }
    }
}

}  // namespace

void quantize_row(DType dt, const float* row, int64_t cols, uint8_t* q, float* scale) {
    if (dt == DType::kI4) {
        quantize_row_i4(row, cols, q, scale);
        return;
    }
    // max |w|, NaN ignored (as std::fmax does in the reference). Non-negative floats order as
    // their bit patterns do, so the maximum is taken on integers, eight lanes at a time.
    auto abs_bits = [](float v) {
        const uint32_t b = bits_of(v) & 0x7fffffffu;
        return b > 0x7f800000u ? 0u : b;  // NaN counts as 0
    };
    uint32_t lanes[8] = {};
    int64_t c0 = 0;
    for (; c0 + 8 <= cols; c0 += 8)
        for (int j = 0; j < 8; ++j) {
            const uint32_t b = abs_bits(row[c0 + j]);
            lanes[j] = b > lanes[j] ? b : lanes[j];
        }
    uint32_t amax_bits = 0;
    for (int j = 0; j < 8; ++j) amax_bits = lanes[j] > amax_bits ? lanes[j] : amax_bits;
    for (; c0 < cols; ++c0) {
        const uint32_t b = abs_bits(row[c0]);
        amax_bits = b > amax_bits ? b : amax_bits;
    }
    const float amax = std::bit_cast<float>(amax_bits);
    const float top = dt == DType::kI8 ? 127.0f : 448.0f;
    const float s = amax / top;
    *scale = s;
    if (s == 0.0f || !std::isfinite(s)) {
        std::memset(q, 0, static_cast<size_t>(cols));
        return;
    }
    if (dt == DType::kI8) {
        for (int64_t c = 0; c < cols; ++c) {
            const float y = row[c] / s;
            // |y| ≤ 127 (plus rounding) or NaN: 1.5 · 2^23 rounds it half to even as nearbyint
            // does; the clamps then map NaN to -127 as the reference's fmin(127, fmax(-127, ·)).
            float t = (y + 12582912.0f) - 12582912.0f;
            t = t > -127.0f ? t : -127.0f;
            t = t < 127.0f ? t : 127.0f;
            q[c] = static_cast<uint8_t>(static_cast<int8_t>(static_cast<int>(t)));
        }
    } else {
        for (int64_t c = 0; c < cols; ++c) q[c] = e4m3_code(row[c] / s);
    }
}

}  // namespace voxrt::model
