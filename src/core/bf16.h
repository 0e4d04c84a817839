// bfloat16 <-> float conversion, bit-exact with PyTorch (round to nearest even, NaN kept quiet).
#pragma once

#include <cstdint>
#include <cstring>

namespace voxrt {

using bf16_t = uint16_t;  // raw bfloat16 bits

inline float bf16_to_f32(bf16_t h) {
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

inline bf16_t f32_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return static_cast<bf16_t>((bits >> 16) | 0x40u);  // NaN
    uint32_t lsb = (bits >> 16) & 1u;
    bits += 0x7fffu + lsb;
    return static_cast<bf16_t>(bits >> 16);
}

// Rounds a float to the nearest bfloat16 value and returns it as float.
inline float round_bf16(float f) {
    return bf16_to_f32(f32_to_bf16(f));
}

// IEEE half -> float (for F16 tensors in checkpoints).
inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) {
                mant <<= 1;
                --exp;
            }
            mant &= 0x3ffu;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

}  // namespace voxrt
