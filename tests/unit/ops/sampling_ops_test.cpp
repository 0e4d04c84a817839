// The CPU sampler draws only from the top-k (ties at the k-th value kept, as liquid-audio's
// `logits < topk(...).values[-1]` mask does) with frequencies matching softmax(logits / T).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "ops/ops.h"

namespace voxrt {
namespace {

TEST(SampleTopK, FrequenciesMatchSoftmaxOverTopK) {
    std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.5f, 1.0f, 3.0f, -2.0f, 0.0f};
    const int N = static_cast<int>(logits.size()), K = 4, draws = 20000;
    const float T = 0.8f;
    ops::Context ctx;
    Tensor lt = Tensor::make(logits.data(), DType::kF32, Device::kCPU, {1, N});
    std::vector<int> counts(static_cast<size_t>(N), 0);
    for (int i = 0; i < draws; ++i) {
        int32_t ctr = i, out = -1;
        Tensor ct = Tensor::make(&ctr, DType::kI32, Device::kCPU, {1});
        Tensor ot = Tensor::make(&out, DType::kI32, Device::kCPU, {1});
        ops::sample_top_k(ctx, lt, T, K, /*seed=*/42, ct, ot);
        ASSERT_GE(out, 0);
        ASSERT_LT(out, N);
        ++counts[static_cast<size_t>(out)];
    }
    // top-4 by value: indices 5 (3.0), 1 (2.0), 3 (1.5), 4 (1.0)
    const int top[] = {5, 1, 3, 4};
    double z = 0;
    for (int i : top) z += std::exp(logits[static_cast<size_t>(i)] / T);
    for (int i = 0; i < N; ++i) {
        bool in_top = false;
        for (int t : top) in_top = in_top || t == i;
        if (!in_top) {
            EXPECT_EQ(counts[static_cast<size_t>(i)], 0)
                << "index " << i << " is outside the top-" << K;
            continue;
        }
        const double p = std::exp(logits[static_cast<size_t>(i)] / T) / z;
        const double sd = std::sqrt(p * (1 - p) / draws);
        EXPECT_NEAR(counts[static_cast<size_t>(i)] / static_cast<double>(draws), p, 4 * sd)
            << "index " << i;
    }
}

TEST(SampleTopK, TiesAtTheThresholdAreKept) {
    std::vector<float> logits = {1.0f, 1.0f, 1.0f, 0.0f};
    ops::Context ctx;
    Tensor lt = Tensor::make(logits.data(), DType::kF32, Device::kCPU, {1, 4});
    std::vector<int> counts(4, 0);
    for (int i = 0; i < 3000; ++i) {
        int32_t ctr = i, out = -1;
        Tensor ct = Tensor::make(&ctr, DType::kI32, Device::kCPU, {1});
        Tensor ot = Tensor::make(&out, DType::kI32, Device::kCPU, {1});
        ops::sample_top_k(ctx, lt, 1.0f, /*top_k=*/2, 1, ct, ot);
        ++counts[static_cast<size_t>(out)];
    }
    EXPECT_GT(counts[0], 0);
    EXPECT_GT(counts[1], 0);
    EXPECT_GT(counts[2], 0);  // tied with the 2nd largest: kept, as the reference keeps it
    EXPECT_EQ(counts[3], 0);
}

TEST(Argmax, FirstMaximumWins) {
    std::vector<float> logits = {0.0f, 2.0f, 2.0f, 1.0f};
    ops::Context ctx;
    int32_t out = -1;
    Tensor lt = Tensor::make(logits.data(), DType::kF32, Device::kCPU, {1, 4});
    Tensor ot = Tensor::make(&out, DType::kI32, Device::kCPU, {1});
    ops::argmax(ctx, lt, ot);
    EXPECT_EQ(out, 1);
}

}  // namespace
}  // namespace voxrt
