#include "util/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <gtest/gtest.h>

#include "core/bf16.h"

namespace voxrt::test {

std::string ErrorStats::str() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "max_abs %.3g rel_l2 %.3g (ref max %.3g)", max_abs, rel_l2,
                  ref_max);
    return buf;
}

std::string LogitStats::str() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "top1 %.2f%% mean_kl %.3g max_kl %.3g over %d rows",
                  100.0 * top1_agree, mean_kl, max_kl, rows);
    return buf;
}

ErrorStats compare(const float* a, const float* b, size_t n) {
    ErrorStats s;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        s.max_abs = std::max(s.max_abs, std::fabs(d));
        s.ref_max = std::max(s.ref_max, std::fabs(static_cast<double>(b[i])));
        num += d * d;
        den += static_cast<double>(b[i]) * b[i];
    }
    s.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    if (!std::isfinite(s.max_abs) || !std::isfinite(s.rel_l2)) s.max_abs = s.rel_l2 = INFINITY;
    return s;
}

LogitStats compare_logits(const float* a, const float* b, int64_t rows, int64_t n) {
    LogitStats s;
    s.rows = static_cast<int>(rows);
    int agree = 0;
    double kl_sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
        const float* ar = a + r * n;
        const float* br = b + r * n;
        int64_t ia = std::max_element(ar, ar + n) - ar;
        int64_t ib = std::max_element(br, br + n) - br;
        agree += ia == ib;
        double ma = *std::max_element(ar, ar + n), mb = *std::max_element(br, br + n);
        double za = 0, zb = 0;
        for (int64_t i = 0; i < n; ++i) {
            za += std::exp(ar[i] - ma);
            zb += std::exp(br[i] - mb);
        }
        double kl = 0;
        for (int64_t i = 0; i < n; ++i) {
            const double lpb = br[i] - mb - std::log(zb), lpa = ar[i] - ma - std::log(za);
            kl += std::exp(lpb) * (lpb - lpa);
        }
        kl = std::max(0.0, kl);
        kl_sum += kl;
        s.max_kl = std::max(s.max_kl, kl);
    }
    s.top1_agree = rows ? static_cast<double>(agree) / rows : 1.0;
    s.mean_kl = rows ? kl_sum / rows : 0.0;
    return s;
}

std::vector<int64_t> shape_of(const io::SafeTensorsFile& f, const std::string& name) {
    const io::TensorInfo* info = f.find(name);
    return info ? info->shape : std::vector<int64_t>{};
}

std::vector<float> read_f32(const io::SafeTensorsFile& f, const std::string& name) {
    auto t = f.get(name);
    EXPECT_TRUE(t.is_ok()) << t.status().message();
    if (!t.is_ok()) return {};
    std::vector<float> out(static_cast<size_t>(t->numel()));
    for (size_t i = 0; i < out.size(); ++i) {
        switch (t->dtype) {
            case DType::kF32:
                out[i] = t->ptr<float>()[i];
                break;
            case DType::kBF16:
                out[i] = bf16_to_f32(t->ptr<uint16_t>()[i]);
                break;
            case DType::kF64:
                out[i] = static_cast<float>(t->ptr<double>()[i]);
                break;
            default:
                ADD_FAILURE() << name << ": not a float tensor";
                return {};
        }
    }
    return out;
}

std::vector<int64_t> read_i64(const io::SafeTensorsFile& f, const std::string& name) {
    auto t = f.get(name);
    EXPECT_TRUE(t.is_ok()) << t.status().message();
    if (!t.is_ok()) return {};
    std::vector<int64_t> out(static_cast<size_t>(t->numel()));
    for (size_t i = 0; i < out.size(); ++i) {
        switch (t->dtype) {
            case DType::kI64:
                out[i] = t->ptr<int64_t>()[i];
                break;
            case DType::kI32:
                out[i] = t->ptr<int32_t>()[i];
                break;
            default:
                ADD_FAILURE() << name << ": not an integer tensor";
                return {};
        }
    }
    return out;
}

}  // namespace voxrt::test
