#include "core/quant.h"

#include <cmath>
#include <cstring>

namespace voxrt::quant {

float e4m3_to_float(uint8_t code) {
    const int sign = code >> 7;
    const int exp = (code >> 3) & 0xf;
    const int man = code & 0x7;
    if (exp == 0xf && man == 0x7) return std::nanf("");
    float v;
    if (exp == 0)
        v = std::ldexp(static_cast<float>(man), -9);  // subnormal: man/8 · 2^(1-7)
    else
        v = std::ldexp(static_cast<float>(8 + man), exp - 10);  // (1 + man/8) · 2^(exp-7)
    return sign ? -v : v;
}

uint8_t float_to_e4m3(float v) {
    if (std::isnan(v)) return 0x7f;
    const uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
    const float a = std::fabs(v);
    if (a >= 448.0f) return sign | 0x7e;  // saturate to the largest finite magnitude
    int code;
    if (a < 0.015625f) {
        // Subnormals step by 2^-9; 8 steps is the smallest normal, code 0x08. Scaling by a power
        // of two is exact, and nearbyint rounds half to even (the default rounding mode).
        code = static_cast<int>(std::nearbyint(a * 512.0f));
    } else {
        int e = 0;
        const float f = std::frexp(a, &e);  // a = f · 2^e, f in [0.5, 1)
        // mantissa steps of 1/8 above 1.0; a carry to 8 moves to the next exponent's code
        const int man = static_cast<int>(std::nearbyint((2.0f * f - 1.0f) * 8.0f));
        code = ((e - 1 + 7) << 3) + man;
    }
    return code == 0 ? 0 : static_cast<uint8_t>(sign | code);  // no negative zero
}

void quantize_rows(DType dt, const float* w, int64_t rows, int64_t cols, void* q, float* scale) {
    uint8_t* out = static_cast<uint8_t*>(q);
    const float top = dt == DType::kI8 ? 127.0f : 448.0f;
    for (int64_t r = 0; r < rows; ++r) {
        const float* x = w + r * cols;
        uint8_t* o = out + r * cols;
        float amax = 0.0f;
        for (int64_t c = 0; c < cols; ++c) amax = std::fmax(amax, std::fabs(x[c]));
        const float s = amax / top;
        scale[r] = s;
        if (s == 0.0f || !std::isfinite(s)) {
            std::memset(o, 0, static_cast<size_t>(cols));
            continue;
        }
        for (int64_t c = 0; c < cols; ++c) {
            const float y = x[c] / s;
            if (dt == DType::kI8) {
                float t = std::nearbyint(y);  // default rounding mode: half to even
                t = std::fmin(127.0f, std::fmax(-127.0f, t));
                o[c] = static_cast<uint8_t>(static_cast<int8_t>(t));
            } else {
                o[c] = float_to_e4m3(y);
            }
        }
    }
}

void dequantize_rows(DType dt, const void* q, const float* scale, int64_t rows, int64_t cols,
                     float* w) {
    const uint8_t* in = static_cast<const uint8_t*>(q);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            w[r * cols + c] = scale[r] * decode(dt, in[r * cols + c]);
}

}  // namespace voxrt::quant
