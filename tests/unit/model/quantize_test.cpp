// The load-time row quantizer (model/quantize.h) gives the codes and scales of the format's
// reference (quant::quantize_rows), code for code: random rows over several magnitudes, rows
// holding every e4m3 rounding tie and every int8 tie, zeros, NaN and infinity.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/quant.h"
#include "model/quantize.h"

namespace voxrt {
namespace {

void expect_same(DType dt, const std::vector<float>& row, const char* what) {
    const int64_t n = static_cast<int64_t>(row.size());
    std::vector<uint8_t> q_ref(row.size()), q(row.size());
    float s_ref = 0, s = 0;
    quant::quantize_rows(dt, row.data(), 1, n, q_ref.data(), &s_ref);
    model::quantize_row(dt, row.data(), n, q.data(), &s);
    ASSERT_EQ(std::memcmp(&s, &s_ref, 4), 0) << what << " " << dtype_name(dt);
    for (size_t i = 0; i < row.size(); ++i)
        ASSERT_EQ(q[i], q_ref[i]) << what << " " << dtype_name(dt) << " element " << i << " value "
                                  << row[i] << " scale " << s_ref;
}

TEST(QuantizeRow, EqualsTheReference) {
    uint32_t seed = 1;
    auto next = [&] {
        seed = seed * 1664525u + 1013904223u;
        return seed;
    };
    for (DType dt : {DType::kI8, DType::kF8E4M3}) {
        // Random rows, magnitudes from 1e-6 to 1e3, odd lengths, some spread over many octaves.
        for (int r = 0; r < 200; ++r) {
            const int64_t n = 1 + static_cast<int64_t>(next() % 3000);
            const float mag = std::pow(10.0f, static_cast<float>(next() % 10) - 6.0f);
            std::vector<float> row(static_cast<size_t>(n));
            for (float& v : row) {
                const float u = static_cast<float>(next() >> 8) / 16777216.0f - 0.5f;
                const float octaves = (r % 2) ? std::exp2(static_cast<float>(next() % 24) - 12) : 1;
                v = u * mag * octaves;
            }
            expect_same(dt, row, "random");
        }
        // Every tie: with max 448 (e4m3) or 127 (int8) the scale is 1 and values are codes.
        std::vector<float> ties;
        const float top = dt == DType::kI8 ? 127.0f : 448.0f;
        ties.push_back(top);
        for (int c = 0; c < 256; ++c) {
            const float a = quant::decode(dt, static_cast<uint8_t>(c));
            const float b = quant::decode(dt, static_cast<uint8_t>(c + 1));
            if (std::isfinite(a)) ties.push_back(a);
            if (std::isfinite(a) && std::isfinite(b) && c != 0x7f) {
                ties.push_back(0.5f * (a + b));
                ties.push_back(std::nextafter(0.5f * (a + b), 0.0f));
                ties.push_back(std::nextafter(0.5f * (a + b), 1e9f));
            }
        }
        for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 447.9f, 440.0f, -440.0f, 126.5f, -126.5f,
                        0.5f, -0.5f, 1.5f, 2.5f})
            ties.push_back(v);
        expect_same(dt, ties, "ties");
        expect_same(dt, std::vector<float>(17, 0.0f), "zeros");
        std::vector<float> with_nan = {1.0f, std::numeric_limits<float>::quiet_NaN(), -3.0f, 0.25f};
        expect_same(dt, with_nan, "nan");
        std::vector<float> with_inf = {1.0f, std::numeric_limits<float>::infinity(), -3.0f};
        expect_same(dt, with_inf, "inf");
    }
}

}  // namespace
}  // namespace voxrt
