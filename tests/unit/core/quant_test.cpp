// The weight-only quantization format (core/quant.h): e4m3 encode/decode against an exhaustive
// nearest-value search, int8 and fp8 row quantization, and the Tensor views that carry scales.
#include "core/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace voxrt {
namespace {

// The nearest finite e4m3 code by brute force (ties to the even code), saturating.
uint8_t nearest_e4m3(float v) {
    const float a = std::fabs(v);
    int best = 0;
    float best_d = std::numeric_limits<float>::infinity();
    for (int c = 0; c <= 0x7e; ++c) {
        const float d = std::fabs(quant::e4m3_to_float(static_cast<uint8_t>(c)) - a);
        if (d < best_d || (d == best_d && (c & 1) == 0)) {
            best = c;
            best_d = d;
        }
    }
    if (best == 0) return 0;
    return static_cast<uint8_t>((v < 0 ? 0x80 : 0) | best);
}

TEST(Quant, E4m3DecodesTheOcpTable) {
    EXPECT_EQ(quant::e4m3_to_float(0x00), 0.0f);
    EXPECT_EQ(quant::e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
    EXPECT_EQ(quant::e4m3_to_float(0x08), std::ldexp(1.0f, -6));  // smallest normal
    EXPECT_EQ(quant::e4m3_to_float(0x38), 1.0f);
    EXPECT_EQ(quant::e4m3_to_float(0x7e), 448.0f);
    EXPECT_EQ(quant::e4m3_to_float(0xfe), -448.0f);
    EXPECT_TRUE(std::isnan(quant::e4m3_to_float(0x7f)));
    EXPECT_TRUE(std::isnan(quant::e4m3_to_float(0xff)));
}

TEST(Quant, E4m3EncodeIsTheNearestCode) {
    // every code round-trips
    for (int c = 0; c <= 0xfe; ++c) {
        if ((c & 0x7f) == 0x7f || c == 0x80) continue;
        EXPECT_EQ(quant::float_to_e4m3(quant::e4m3_to_float(static_cast<uint8_t>(c))), c) << c;
    }
    // midpoints go to the even code; values between codes to the nearest
    for (int c = 0; c < 0x7e; ++c) {
        const float lo = quant::e4m3_to_float(static_cast<uint8_t>(c));
        const float hi = quant::e4m3_to_float(static_cast<uint8_t>(c + 1));
        const float mid = 0.5f * (lo + hi);
        EXPECT_EQ(quant::float_to_e4m3(mid), nearest_e4m3(mid)) << c;
        EXPECT_EQ(quant::float_to_e4m3(-mid), nearest_e4m3(-mid)) << c;
        EXPECT_EQ(quant::float_to_e4m3(std::nextafter(mid, 0.0f)), c) << c;
        EXPECT_EQ(quant::float_to_e4m3(std::nextafter(mid, 1e9f)), c + 1) << c;
    }
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> e(-14.0f, 10.0f);
    for (int i = 0; i < 20000; ++i) {
        const float v = (i & 1 ? -1.0f : 1.0f) * std::exp2(e(rng));
        ASSERT_EQ(quant::float_to_e4m3(v), nearest_e4m3(v)) << v;
    }
    EXPECT_EQ(quant::float_to_e4m3(1e6f), 0x7e);
    EXPECT_EQ(quant::float_to_e4m3(-1e6f), 0xfe);
    EXPECT_EQ(quant::float_to_e4m3(-0.0f), 0x00);
    EXPECT_EQ(quant::float_to_e4m3(std::nanf("")), 0x7f);
}

TEST(Quant, RowsKeepTheRelativeErrorOfTheirCodes) {
    const int64_t rows = 64, cols = 512;
    std::mt19937 rng(11);
    std::normal_distribution<float> g(0.0f, 0.02f);
    std::vector<float> w(rows * cols);
    for (auto& v : w) v = g(rng);
    w[3 * cols + 17] = 1.5f;  // an outlier owns its row's scale, not the others'
    for (int64_t c = 0; c < cols; ++c) w[5 * cols + c] = 0.0f;  // a row of zeros
    for (DType dt : {DType::kI8, DType::kF8E4M3}) {
        std::vector<uint8_t> q(rows * cols);
        std::vector<float> s(rows), back(rows * cols);
        quant::quantize_rows(dt, w.data(), rows, cols, q.data(), s.data());
        quant::dequantize_rows(dt, q.data(), s.data(), rows, cols, back.data());
        EXPECT_EQ(s[5], 0.0f);
        for (int64_t r = 0; r < rows; ++r) {
            float amax = 0;
            double err = 0, ref = 0;
            for (int64_t c = 0; c < cols; ++c) {
                amax = std::fmax(amax, std::fabs(w[r * cols + c]));
                const double d = back[r * cols + c] - w[r * cols + c];
                err += d * d;
                ref += double(w[r * cols + c]) * w[r * cols + c];
                if (dt == DType::kI8) {
                    // at most half a step off, and the codes stay in [-127, 127]
                    ASSERT_LE(std::fabs(d), 0.5 * s[r] * (1 + 1e-6)) << r << " " << c;
                    ASSERT_NE(q[r * cols + c], 0x80);
                } else {
                    // e4m3 keeps 3 mantissa bits: at most 1/16 relative, or half a subnormal step
                    ASSERT_LE(std::fabs(d), std::fmax(std::fabs(w[r * cols + c]) / 16.0,
                                                      s[r] * std::ldexp(1.0, -10)) *
                                                (1 + 1e-6));
                }
            }
            if (r == 5) continue;
            EXPECT_EQ(s[r], amax / (dt == DType::kI8 ? 127.0f : 448.0f));
            const double rel = std::sqrt(err / ref);
            if (r != 3)
                EXPECT_LT(rel, dt == DType::kI8 ? 0.02 : 0.04) << dtype_name(dt) << " row " << r;
        }
    }
}

TEST(Quant, TensorViewsCarryTheirRowsScales) {
    std::vector<int8_t> q(6 * 4);
    std::vector<float> s = {1, 2, 3, 4, 5, 6};
    Tensor t = Tensor::make(q.data(), DType::kI8, Device::kCPU, {6, 4});
    EXPECT_FALSE(t.quantized());
    t.scale = s.data();
    EXPECT_TRUE(t.quantized());
    EXPECT_EQ(t.rows(2, 5).scale, s.data() + 2);
    EXPECT_EQ(t.row(4).scale, s.data() + 4);
    EXPECT_EQ(t.reshape({6, 2, 2}).scale, s.data());
    EXPECT_EQ(t.reshape({24}).scale, nullptr);  // dimension 0 changed: no longer per row
    EXPECT_NE(t.describe().find("row-scaled"), std::string::npos);
    EXPECT_EQ(dtype_size(DType::kF8E4M3), 1u);
}

}  // namespace
}  // namespace voxrt
