// Achieved bandwidth of ops::linear on the decode shapes (batch 1 is memory-bound: the weight
// read is the cost). Prints, per shape, the time per call issued eagerly and inside a CUDA graph
// (as the decode step will run), the weight bytes over that time in GB/s, and the fraction of
// the card's device-to-device copy bandwidth measured in the same run (bytes read + written).
// Each shape rotates over enough weight copies (>= 256 MB) that L2 (50-60 MB) cannot serve them.
// QuantDecodeShapes: the same for BF16 against 8-bit weights (int8, e4m3) at batch 1, in weight
// bytes per second (codes only: the row scales are N·4 bytes, under 0.2% of them).
// Skipped without a GPU; it checks nothing but that the ops ran.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "backend/device.h"
#include "core/bf16.h"
#include "core/quant.h"
#include "cuda/cuda_test_util.h"
#include "ops/ops.h"

namespace voxrt {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Shape {
    const char* name;
    int M, N, K;
};

TEST(GemvBench, DecodeShapes) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    auto made = backend::create_context(Device::kCUDA, ops::Precision::kBF16);
    ASSERT_TRUE(made.is_ok()) << made.status().message();
    ops::Context ctx = made.value();
    std::printf("[gemv_bench] device: %s\n", backend::hardware_name(Device::kCUDA).c_str());

    // Copy bandwidth: 1 GiB device to device, counting bytes read and written.
    const size_t copy_bytes = size_t{1} << 30;
    Buffer a = Buffer::allocate(Device::kCUDA, copy_bytes),
           b = Buffer::allocate(Device::kCUDA, copy_bytes);
    ASSERT_TRUE(a.data() && b.data());
    Tensor ta = a.view(DType::kU8, {static_cast<int64_t>(copy_bytes)}),
           tb = b.view(DType::kU8, {static_cast<int64_t>(copy_bytes)});
    ops::copy(ctx, ta, tb);
    ASSERT_TRUE(ops::synchronize(ctx).is_ok());
    auto t0 = Clock::now();
    const int copy_iters = 10;
    for (int i = 0; i < copy_iters; ++i) ops::copy(ctx, i % 2 ? tb : ta, i % 2 ? ta : tb);
    ASSERT_TRUE(ops::synchronize(ctx).is_ok());
    const double copy_gbs = 2.0 * copy_bytes * copy_iters / seconds_since(t0) / 1e9;
    std::printf("[gemv_bench] device-to-device copy: %.0f GB/s (read + write)\n", copy_gbs);
    a.reset();
    b.reset();

    // Random bf16 source data, uploaded once and tiled into every weight copy.
    const int64_t src_elems = int64_t{16} << 20;  // 32 MB
    std::vector<uint16_t> host(static_cast<size_t>(src_elems));
    test::Rng rng(42);
    for (auto& v : host) v = f32_to_bf16(rng.normal() * 0.02f);
    Buffer src = Buffer::allocate(Device::kCUDA, host.size() * 2);
    Tensor src_d = src.view(DType::kBF16, {src_elems});
    Tensor src_h = Tensor::make(host.data(), DType::kBF16, Device::kCPU, {src_elems});
    ops::copy(ctx, src_h, src_d);

    const Shape shapes[] = {
        {"backbone conv in_proj", 1, 6144, 2048},
        {"backbone out/o_proj", 1, 2048, 2048},
        {"backbone w1/w3", 1, 8192, 2048},
        {"backbone w2", 1, 2048, 8192},
        {"text head (tied)", 1, 65536, 2048},
        {"depth_linear", 1, 8192, 2048},
        {"depthformer qkv", 1, 1536, 1024},
        {"depthformer w1/w3", 1, 2816, 1024},
        {"depthformer w2", 1, 1024, 2816},
        {"codebook head", 1, 2049, 1024},
        {"w1/w3 M=2", 2, 8192, 2048},
        {"w1/w3 M=4", 4, 8192, 2048},
        {"w1/w3 M=8", 8, 8192, 2048},
        {"text head M=8", 8, 65536, 2048},
        // A batch of conversations (continuous batching): M rows over the same weights.
        {"w1/w3 M=16", 16, 8192, 2048},
        {"w1/w3 M=32", 32, 8192, 2048},
        {"w1/w3 M=64", 64, 8192, 2048},
        {"w1/w3 M=128", 128, 8192, 2048},
        {"w2 M=64", 64, 2048, 8192},
        {"in_proj M=64", 64, 6144, 2048},
        {"out/o_proj M=64", 64, 2048, 2048},
        {"out/o_proj M=128", 128, 2048, 2048},
        {"text head M=64", 64, 65536, 2048},
        {"depthformer qkv M=64", 64, 1536, 1024},
        {"depthformer w1/w3 M=16", 16, 2816, 1024},
        {"depthformer w1/w3 M=64", 64, 2816, 1024},
        {"depthformer w2 M=64", 64, 1024, 2816},
        {"codebook head M=64", 64, 2049, 1024},
    };
    std::printf("[gemv_bench] %-22s %3s %6s %5s %9s %9s %9s %7s\n", "shape", "M", "N", "K", "MB",
                "eager us", "graph us", "GB/s");
    for (const Shape& s : shapes) {
        const int64_t w_elems = int64_t{s.N} * s.K;
        const size_t w_bytes = static_cast<size_t>(w_elems) * 2;
        const int copies =
            static_cast<int>(std::max<size_t>(2, ((size_t{256} << 20) + w_bytes - 1) / w_bytes));
        Buffer wbuf = Buffer::allocate(Device::kCUDA, w_bytes * copies);
        ASSERT_NE(wbuf.data(), nullptr);
        std::vector<Tensor> ws;
        for (int c = 0; c < copies; ++c) {
            Tensor w = wbuf.view(DType::kBF16, {s.N, s.K}, w_bytes * c);
            for (int64_t off = 0; off < w_elems; off += src_elems) {
                const int64_t n = std::min(src_elems, w_elems - off);
                Tensor dst = Tensor::make(static_cast<uint16_t*>(w.data) + off, DType::kBF16,
                                          Device::kCUDA, {n});
                Tensor from = Tensor::make(src_d.data, DType::kBF16, Device::kCUDA, {n});
                ops::copy(ctx, from, dst);
            }
            ws.push_back(w);
        }
        Buffer xb = Buffer::allocate(Device::kCUDA, size_t(s.M) * s.K * 2);
        Buffer yb = Buffer::allocate(Device::kCUDA, size_t(s.M) * s.N * 2);
        Tensor x = xb.view(DType::kBF16, {s.M, s.K}), y = yb.view(DType::kBF16, {s.M, s.N});
        ops::copy(ctx, Tensor::make(src_d.data, DType::kBF16, Device::kCUDA, {x.numel()}), x);

        // Eager: back-to-back launches.
        for (int i = 0; i < copies; ++i) ops::linear(ctx, x, ws[i], nullptr, y);
        ASSERT_TRUE(ops::synchronize(ctx).is_ok());
        const int iters = std::max(copies * 4, 200);
        t0 = Clock::now();
        for (int i = 0; i < iters; ++i) ops::linear(ctx, x, ws[i % copies], nullptr, y);
        ASSERT_TRUE(ops::synchronize(ctx).is_ok());
        const double eager_us = seconds_since(t0) / iters * 1e6;

        // Graph: the rotation captured once, replayed.
        backend::Graph g;
        ASSERT_TRUE(g.begin(ctx).is_ok());
        const int per_graph = std::max(copies, 32);
        for (int i = 0; i < per_graph; ++i) ops::linear(ctx, x, ws[i % copies], nullptr, y);
        const Status st = g.end(ctx);
        ASSERT_TRUE(st.is_ok()) << st.message();
        ASSERT_TRUE(g.replay(ctx).is_ok());
        ASSERT_TRUE(ops::synchronize(ctx).is_ok());
        const int replays = std::max(5, 2000 / per_graph);
        t0 = Clock::now();
        for (int r = 0; r < replays; ++r) ASSERT_TRUE(g.replay(ctx).is_ok());
        ASSERT_TRUE(ops::synchronize(ctx).is_ok());
        const double graph_us = seconds_since(t0) / (double(replays) * per_graph) * 1e6;
        const double gbs = w_bytes / (graph_us * 1e-6) / 1e9;
        std::printf("[gemv_bench] %-22s %3d %6d %5d %9.1f %9.2f %9.2f %7.0f  (%.0f%% of copy)\n",
                    s.name, s.M, s.N, s.K, w_bytes / 1e6, eager_us, graph_us, gbs,
                    100.0 * gbs / copy_gbs);
    }
    backend::destroy_context(ctx);
}

// Weight bytes per second of ops::linear at M = 1 for BF16, int8 and e4m3 weights of one shape,
// all in one run (same card, same clocks): 8-bit weights halve the bytes of a decode step, and
// the GEMV should keep the bandwidth (the codes are decoded in registers).
TEST(GemvBench, QuantDecodeShapes) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    auto made = backend::create_context(Device::kCUDA, ops::Precision::kBF16);
    ASSERT_TRUE(made.is_ok()) << made.status().message();
    ops::Context ctx = made.value();
    std::printf("[gemv_bench quant] device: %s\n", backend::hardware_name(Device::kCUDA).c_str());
    struct QShape {
        int N, K;
    };
    const QShape shapes[] = {{2048, 2048}, {8192, 2048}, {2048, 8192}, {65536, 2048}};
    const DType types[] = {DType::kBF16, DType::kI8, DType::kF8E4M3};
    std::printf("[gemv_bench quant] %6s %5s %5s %9s %9s %7s\n", "N", "K", "w", "MB", "graph us",
                "GB/s");
    test::Rng rng(7);
    for (const QShape& s : shapes) {
        const int64_t w_elems = int64_t{s.N} * s.K;
        // One random source matrix, quantized on the host once per type.
        std::vector<float> wf(static_cast<size_t>(w_elems));
        for (auto& v : wf) v = rng.normal() * 0.02f;
        double bf16_us = 0;
        for (DType dt : types) {
            const size_t w_bytes = static_cast<size_t>(w_elems) * dtype_size(dt);
            std::vector<uint8_t> bytes(w_bytes);
            std::vector<float> scales(static_cast<size_t>(s.N), 1.0f);
            if (dt == DType::kBF16) {
                for (int64_t i = 0; i < w_elems; ++i) {
                    const uint16_t b = f32_to_bf16(wf[static_cast<size_t>(i)]);
                    std::memcpy(bytes.data() + 2 * i, &b, 2);
                }
            } else {
                quant::quantize_rows(dt, wf.data(), s.N, s.K, bytes.data(), scales.data());
            }
            const int copies = static_cast<int>(
                std::max<size_t>(2, ((size_t{256} << 20) + w_bytes - 1) / w_bytes));
            Buffer wbuf = Buffer::allocate(Device::kCUDA, w_bytes * copies);
            Buffer sbuf = Buffer::allocate(Device::kCUDA, scales.size() * sizeof(float));
            ASSERT_NE(wbuf.data(), nullptr);
            ASSERT_NE(sbuf.data(), nullptr);
            Tensor sd = sbuf.view(DType::kF32, {s.N});
            ops::copy(ctx, Tensor::make(scales.data(), DType::kF32, Device::kCPU, {s.N}), sd);
            std::vector<Tensor> ws;
            for (int c = 0; c < copies; ++c) {
                Tensor w = wbuf.view(dt, {s.N, s.K}, w_bytes * c);
                ops::copy(ctx, Tensor::make(bytes.data(), dt, Device::kCPU, {s.N, s.K}), w);
                if (dt != DType::kBF16) w.scale = sd.ptr<float>();
                ws.push_back(w);
            }
            Buffer xb = Buffer::allocate(Device::kCUDA, size_t(s.K) * 2);
            Buffer yb = Buffer::allocate(Device::kCUDA, size_t(s.N) * 2);
            Tensor x = xb.view(DType::kBF16, {1, s.K}), y = yb.view(DType::kBF16, {1, s.N});
            std::vector<float> xh(static_cast<size_t>(s.K));
            for (auto& v : xh) v = rng.normal();
            ops::copy(ctx, Tensor::make(xh.data(), DType::kF32, Device::kCPU, {1, s.K}), x);
            for (int i = 0; i < copies; ++i) ops::linear(ctx, x, ws[i], nullptr, y);
            ASSERT_TRUE(ops::synchronize(ctx).is_ok());

            backend::Graph g;
            ASSERT_TRUE(g.begin(ctx).is_ok());
            const int per_graph = std::max(copies, 32);
            for (int i = 0; i < per_graph; ++i) ops::linear(ctx, x, ws[i % copies], nullptr, y);
            const Status st = g.end(ctx);
            ASSERT_TRUE(st.is_ok()) << st.message();
            ASSERT_TRUE(g.replay(ctx).is_ok());
            ASSERT_TRUE(ops::synchronize(ctx).is_ok());
            const int replays = std::max(5, 2000 / per_graph);
            const auto t0 = Clock::now();
            for (int r = 0; r < replays; ++r) ASSERT_TRUE(g.replay(ctx).is_ok());
            ASSERT_TRUE(ops::synchronize(ctx).is_ok());
            const double graph_us = seconds_since(t0) / (double(replays) * per_graph) * 1e6;
            const double gbs = w_bytes / (graph_us * 1e-6) / 1e9;
            if (dt == DType::kBF16) bf16_us = graph_us;
            std::printf("[gemv_bench quant] %6d %5d %5s %9.1f %9.2f %7.0f  (%.2fx the bf16 time)\n",
                        s.N, s.K, dtype_name(dt), w_bytes / 1e6, graph_us, gbs, graph_us / bf16_us);
        }
    }
    backend::destroy_context(ctx);
}

}  // namespace
}  // namespace voxrt
