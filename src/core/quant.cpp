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

void quantize_rows_i4(const float* w, int64_t rows, int64_t cols, int64_t group, uint8_t* q,
                      float* scale) {
    const int64_t groups = cols / group;
    for (int64_t r = 0; r < rows; ++r) {
        uint8_t* o = q + r * (cols / 2);
        std::memset(o, 0x88, static_cast<size_t>(cols / 2));  // every code 0
        for (int64_t g = 0; g < groups; ++g) {
            const float* x = w + r * cols + g * group;
            float amax = 0.0f;
            for (int64_t c = 0; c < group; ++c) amax = std::fmax(amax, std::fabs(x[c]));
            const float s = amax / 7.0f;
            scale[r * groups + g] = s;
            if (s == 0.0f || !std::isfinite(s)) continue;
            for (int64_t c = 0; c < group; ++c) {
                float t = std::nearbyint(x[c] / s);  // default rounding mode: half to even
                t = std::fmin(7.0f, std::fmax(-7.0f, t));
                set_i4_code(o, g * group + c, static_cast<int>(t));
            }
        }
    }
}

void dequantize_rows_i4(const uint8_t* q, const float* scale, int64_t rows, int64_t cols,
                        int64_t group, float* w) {
    const int64_t groups = cols / group;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            w[r * cols + c] =
                scale[r * groups + c / group] * static_cast<float>(i4_code(q + r * (cols / 2), c));
}

void quantize_rows(DType dt, const float* w, int64_t rows, int64_t cols, void* q, float* scale) {
    if (dt == DType::kI4) {
        quantize_rows_i4(w, rows, cols, kI4Group, static_cast<uint8_t*>(q), scale);
        return;
    }
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
    if (dt == DType::kI4) {
        dequantize_rows_i4(static_cast<const uint8_t*>(q), scale, rows, cols, kI4Group, w);
        return;
    }
    const uint8_t* in = static_cast<const uint8_t*>(q);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            w[r * cols + c] = scale[r] * decode(dt, in[r * cols + c]);
}

}  // namespace voxrt::quant
