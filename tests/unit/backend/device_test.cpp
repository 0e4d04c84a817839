// The device-neutral device API (backend/device.h) and the entry-point tables behind it, on what
// every build has: the CPU backend, and a GPU kind that is either served or cleanly absent.
#include "backend/device.h"

#include <gtest/gtest.h>

#include <vector>

#include "backend/entry_points.h"
#include "ops/ops.h"

namespace voxrt {
namespace {

TEST(BackendDevice, CpuIsAlwaysThere) {
    EXPECT_TRUE(backend::device_available(Device::kCPU));
    EXPECT_EQ(backend::hardware_name(Device::kCPU), "cpu");
    const backend::EntryPoints* e = backend::entry_points(Device::kCPU);
    ASSERT_NE(e, nullptr);
    EXPECT_STREQ(e->backend_name, "cpu");
}

TEST(BackendDevice, CpuContext) {
    auto c = backend::create_context(Device::kCPU, ops::Precision::kBF16);
    ASSERT_TRUE(c.is_ok()) << c.status().message();
    ops::Context ctx = *c;
    EXPECT_EQ(ctx.device, Device::kCPU);
    EXPECT_EQ(ctx.precision, ops::Precision::kBF16);
    EXPECT_EQ(ctx.backend_state, nullptr);
    EXPECT_EQ(ctx.act_dtype(), DType::kF32);  // CPU activations are F32 holding bf16 values
    EXPECT_TRUE(ops::synchronize(ctx).is_ok());
    { ops::ProfileRange r(ctx, "a range on the CPU does nothing"); }
    backend::destroy_context(ctx);
    backend::destroy_context(ctx);  // idempotent

    auto bad = backend::create_context(Device::kCPU, ops::Precision::kF32, 3);
    ASSERT_FALSE(bad.is_ok());
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(BackendDevice, CpuHasNoGraphs) {
    ops::Context ctx;
    backend::Graph g;
    EXPECT_EQ(g.begin(ctx).code(), StatusCode::kUnsupported);
    EXPECT_FALSE(g.captured());
    EXPECT_EQ(g.end(ctx).code(), StatusCode::kInternal);  // no capture was begun
    EXPECT_EQ(g.replay(ctx).code(), StatusCode::kInternal);
    backend::Graph moved = std::move(g);
    EXPECT_FALSE(moved.captured());
}

// Ops go through the table of ctx.device: the CPU's add, copy_to_host_async and fused entries.
TEST(BackendDevice, OpsDispatchThroughTheCpuTable) {
    ops::Context ctx;
    std::vector<float> a = {1, 2, 3}, b = {10, 20, 30}, y(3), z(3);
    const Tensor ta = Tensor::make(a.data(), DType::kF32, Device::kCPU, {3});
    const Tensor tb = Tensor::make(b.data(), DType::kF32, Device::kCPU, {3});
    Tensor ty = Tensor::make(y.data(), DType::kF32, Device::kCPU, {3});
    Tensor tz = Tensor::make(z.data(), DType::kF32, Device::kCPU, {3});
    ops::add(ctx, ta, tb, ty);
    ops::copy_to_host_async(ctx, ty, tz);
    ASSERT_TRUE(ops::synchronize(ctx).is_ok());
    EXPECT_EQ(z, (std::vector<float>{11, 22, 33}));
    const backend::EntryPoints& e = backend::entry_points_of(Device::kCPU);
    EXPECT_EQ(e.log_mel(ctx, LogMelArgs{}).code(), StatusCode::kUnsupported);
}

// The GPU kind: served by a table in a build with its backend, absent (null table, not available,
// kUnsupported contexts) without. Either way nothing aborts here.
TEST(BackendDevice, GpuKindServedOrCleanlyAbsent) {
    const backend::EntryPoints* e = backend::entry_points(Device::kCUDA);
#ifdef VOXRT_HAVE_CUDA
    ASSERT_NE(e, nullptr);
    EXPECT_STREQ(e->backend_name, "cuda");
#else
    EXPECT_EQ(e, nullptr);
    EXPECT_FALSE(backend::device_available(Device::kCUDA));
#endif
    if (!backend::device_available(Device::kCUDA)) {
        EXPECT_EQ(backend::hardware_name(Device::kCUDA), "");
        auto c = backend::create_context(Device::kCUDA, ops::Precision::kF32);
        ASSERT_FALSE(c.is_ok());
        EXPECT_EQ(c.status().code(), StatusCode::kUnsupported);
        EXPECT_NE(c.status().message().find("cuda"), std::string::npos) << c.status().message();
    } else {
        EXPECT_NE(backend::hardware_name(Device::kCUDA), "");
    }
    ops::Context none;
    none.device = Device::kCUDA;  // made by nobody: destroying it does nothing
    backend::destroy_context(none);
}

#ifndef VOXRT_HAVE_CUDA
// An op on a device this build has no backend for is a caller bug (sessions refuse the device
// first): it aborts naming the device instead of calling through a null table.
TEST(BackendDeviceDeathTest, OpOnAnAbsentBackendAborts) {
    ops::Context ctx;
    ctx.device = Device::kCUDA;
    EXPECT_DEATH((void)ops::synchronize(ctx), "no cuda backend");
}
#endif

TEST(BackendDevice, OutOfRangeDeviceKindHasNoTable) {
    EXPECT_EQ(backend::entry_points(static_cast<Device>(kDeviceKinds)), nullptr);
}

}  // namespace
}  // namespace voxrt
