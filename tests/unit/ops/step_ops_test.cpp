// The small integer ops a decode step uses to stay on the device (ops::increment,
// ops::fill_rows_led_by), the host read-back (ops::copy_to_host_async) and Buffer::allocate_pinned,
// on the CPU backend (the CUDA versions are checked against these in tests/cuda/ops_cuda_test.cpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "core/tensor.h"
#include "ops/ops.h"

namespace voxrt {
namespace {

Tensor i32(std::vector<int32_t>& v, std::initializer_list<int64_t> dims) {
    return Tensor::make(v.data(), DType::kI32, Device::kCPU, dims);
}

TEST(Increment, AddsToEveryElementAndWraps) {
    ops::Context ctx;
    std::vector<int32_t> v = {0, 1, -5, 9, std::numeric_limits<int32_t>::max()};
    Tensor t = i32(v, {5});
    ops::increment(ctx, t, 9);
    EXPECT_EQ(v, (std::vector<int32_t>{9, 10, 4, 18, std::numeric_limits<int32_t>::min() + 8}));
    ops::increment(ctx, t, -9);
    EXPECT_EQ(v, (std::vector<int32_t>{0, 1, -5, 9, std::numeric_limits<int32_t>::max()}));
}

// Counters advanced step by step equal the values the session used to upload before each step.
TEST(Increment, StepCountersMatchTheirClosedForm) {
    ops::Context ctx;
    const int Q = 8;
    std::vector<int32_t> v(Q + 1);
    for (int i = 0; i <= Q; ++i) v[static_cast<size_t>(i)] = i;
    Tensor t = i32(v, {Q + 1});
    for (int step = 0; step < 50; ++step) {
        for (int i = 0; i <= Q; ++i) ASSERT_EQ(v[static_cast<size_t>(i)], step * (Q + 1) + i);
        ops::increment(ctx, t, Q + 1);
    }
}

TEST(FillRowsLedBy, FillsOnlyRowsWhoseFirstElementMatches) {
    ops::Context ctx;
    const int32_t end = 2048;
    std::vector<int32_t> v = {
        end, 1,   2,   3, 4, 5,   6, 7,    // led by end: becomes all end
        0,   end, 2,   3, 4, end, 6, end,  // end elsewhere only: unchanged
        7,   6,   5,   4, 3, 2,   1, 0,    // unchanged
        end, end, end, 0, 0, 0,   0, 0,    // led by end: all end
    };
    std::vector<int32_t> want = v;
    for (int q = 0; q < 8; ++q) {
        want[static_cast<size_t>(q)] = end;
        want[static_cast<size_t>(24 + q)] = end;
    }
    Tensor t = i32(v, {4, 8});
    ops::fill_rows_led_by(ctx, t, end);
    EXPECT_EQ(v, want);
    // A single frame viewed as [1, Q] (how the session calls it).
    std::vector<int32_t> one = {end, 3, 3, 3};
    Tensor o = i32(one, {1, 4});
    ops::fill_rows_led_by(ctx, o, end);
    EXPECT_EQ(one, (std::vector<int32_t>{end, end, end, end}));
}

TEST(CopyToHostAsync, CopiesOnTheCpuAtOnce) {
    ops::Context ctx;
    std::vector<int32_t> src = {3, 1, 4, 1, 5}, dst(5, -1);
    Tensor s = i32(src, {5}), d = i32(dst, {5});
    ops::copy_to_host_async(ctx, s, d);
    EXPECT_EQ(dst, src);
    EXPECT_TRUE(ops::synchronize(ctx).is_ok());
}

// Without a CUDA context (this test creates none), pinned buffers are plain zeroed host memory.
TEST(PinnedBuffer, HostMemoryZeroedAndMovable) {
    Buffer b = Buffer::allocate_pinned(40);
    ASSERT_NE(b.data(), nullptr);
    EXPECT_EQ(b.device(), Device::kCPU);
    EXPECT_EQ(b.size(), 40u);
    Tensor t = b.view(DType::kI32, {10});
    for (int i = 0; i < 10; ++i) EXPECT_EQ(t.ptr<int32_t>()[i], 0);
    Buffer moved = std::move(b);
    EXPECT_EQ(b.data(), nullptr);
    EXPECT_EQ(moved.view(DType::kI32, {10}).data, t.data);
}

}  // namespace
}  // namespace voxrt
