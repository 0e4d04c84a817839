// Helpers shared by the CUDA backend tests: host/device tensor pairs, random data, comparison
// with the CPU reference in relative L2 and in bf16 ulps.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backend/device.h"
#include "core/bf16.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace voxrt::test {

// splitmix64-based generator (deterministic per seed).
class Rng {
public:
    explicit Rng(uint64_t seed) : s_(seed) {}
    uint64_t next() {
        uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }
    float normal() {
        const float u1 = std::max(uniform(), 1e-7f), u2 = uniform();
        return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
    }
    int32_t below(int32_t n) { return static_cast<int32_t>(next() % static_cast<uint64_t>(n)); }

private:
    uint64_t s_;
};

inline Tensor with_shape(void* data, DType dt, Device dev, const std::vector<int64_t>& shape) {
    Tensor t;
    t.data = data;
    t.dtype = dt;
    t.device = dev;
    t.ndim = static_cast<int>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) t.shape[i] = shape[i];
    return t;
}

// Relative L2 error, largest absolute error, and the number of elements off by more than
// `ulps` bf16 ulps of their magnitude plus `atol` (ulps < 0: no per-element check).
struct Diff {
    double rel_l2 = 0, max_abs = 0;
    int64_t bad = 0, n = 0;
    int64_t first_bad = -1;
};

inline double bf16_ulp(double v) {
    v = std::fabs(v);
    if (v == 0) return 0;
    int e;
    std::frexp(v, &e);              // v = m·2^e, m in [0.5, 1)
    return std::ldexp(1.0, e - 8);  // 8 significant bits
}

inline Diff compare(const std::vector<float>& got, const std::vector<float>& ref, double ulps,
                    double atol) {
    Diff d;
    d.n = static_cast<int64_t>(ref.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double g = got[i], r = ref[i];
        const double e = std::fabs(g - r);
        if (std::isnan(g) != std::isnan(r) || (!std::isnan(r) && std::isnan(e))) {
            ++d.bad;
            if (d.first_bad < 0) d.first_bad = static_cast<int64_t>(i);
            num = INFINITY;
            continue;
        }
        if (std::isnan(r)) continue;
        num += e * e;
        den += r * r;
        d.max_abs = std::max(d.max_abs, e);
        if (ulps >= 0 && e > ulps * bf16_ulp(std::max(std::fabs(g), std::fabs(r))) + atol) {
            ++d.bad;
            if (d.first_bad < 0) d.first_bad = static_cast<int64_t>(i);
        }
    }
    d.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    return d;
}

inline double rms(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    return v.empty() ? 0 : std::sqrt(s / v.size());
}

// A test with one fp32 CUDA context, ctx_ (skipped without a GPU).
class CudaContextTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
        auto c = backend::create_context(Device::kCUDA, ops::Precision::kF32);
        ASSERT_TRUE(c.is_ok()) << c.status().message();
        ctx_ = *c;
        made_ = true;
    }
    void TearDown() override {
        if (made_) backend::destroy_context(ctx_);
    }
    ops::Context ctx_;

private:
    bool made_ = false;
};

}  // namespace voxrt::test
