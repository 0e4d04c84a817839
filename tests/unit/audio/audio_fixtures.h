// Shared helpers for the audio tests: the reference fixtures written by
// tools/reference/make_audio_fixtures.py and the case WAV paths of tools/reference/audio_cases.py.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "util/test_paths.h"

namespace voxrt::audio::test {

inline std::string case_path(const std::string& name) {
    return voxrt::test::data_dir() + "/audio/" + name + ".wav";
}

inline const char* const kCases[] = {"question", "asr", "short", "silence", "sr8k", "st48k"};

// Opened once per test binary.
inline const io::SafeTensorsFile& fixtures() {
    static auto* f = [] {
        auto r = io::SafeTensorsFile::open(voxrt::test::data_dir() + "/audio/fixtures.safetensors");
        if (!r.is_ok()) {
            std::fprintf(stderr, "fixtures: %s\n", r.status().message().c_str());
            std::abort();
        }
        return new io::SafeTensorsFile(std::move(r).value());
    }();
    return *f;
}

inline bool has_fixture(const std::string& name) {
    return fixtures().contains(name);
}

// A float32 fixture tensor; fails the test (empty result) when absent.
struct Fixture {
    std::vector<int64_t> shape;
    const float* data = nullptr;
    size_t numel = 0;
};

inline Fixture fixture(const std::string& name) {
    Fixture out;
    auto t = fixtures().get(name);
    EXPECT_TRUE(t.is_ok()) << name << ": " << t.status().message();
    if (!t.is_ok()) return out;
    EXPECT_EQ(t->dtype, DType::kF32) << name;
    for (int i = 0; i < t->ndim; ++i) out.shape.push_back(t->shape[i]);
    out.data = t->ptr<float>();
    out.numel = static_cast<size_t>(t->numel());
    return out;
}

inline std::vector<double> fixture_f64(const std::string& name) {
    auto t = fixtures().get(name);
    EXPECT_TRUE(t.is_ok()) << name;
    if (!t.is_ok()) return {};
    const double* p = t->ptr<double>();
    return std::vector<double>(p, p + t->numel());
}

struct ErrorStats {
    double max_abs = 0;
    double max_rel = 0;  // |a - b| / max(|b|, floor)
    size_t argmax = 0;
};

inline ErrorStats compare(const float* a, const float* b, size_t n, double rel_floor = 1e-3) {
    ErrorStats s;
    for (size_t i = 0; i < n; ++i) {
        double d = std::fabs(static_cast<double>(a[i]) - b[i]);
        if (!(d <= s.max_abs)) {  // also catches NaN
            s.max_abs = std::isnan(d) ? INFINITY : d;
            s.argmax = i;
        }
        s.max_rel =
            std::max(s.max_rel, d / std::max(std::fabs(static_cast<double>(b[i])), rel_floor));
    }
    return s;
}

}  // namespace voxrt::audio::test
