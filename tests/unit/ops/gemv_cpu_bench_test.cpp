// Achieved bandwidth of the CPU decode GEMV (ops::linear, one row of x) at the full model's
// shapes, bf16 weights against int8 and fp8 (e4m3) weight-only quantized ones: time per call and
// weight bytes read per second (codes + row scales for the quantized ones). Each shape rotates over
// enough weight copies (>= 256 MB of bf16) that the caches cannot serve them, bf16 and quantized
// passes alternating, the fastest of 9 each. Runs only with
// VOXRT_CPU_GEMV_BENCH=1 (it takes a minute and several hundred MB); it checks that the quantized
// products agree with the bf16 ones to within the quantization error and prints the numbers that
// docs/benchmark-log.md records.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "backend/cpu/linear_bf16.h"
#include "backend/cpu/linear_quant.h"
#include "io/safetensors.h"
#include "model/weights.h"
#include "core/bf16.h"
#include "core/quant.h"
#include "core/thread_pool.h"
#include "ops/ops.h"

namespace voxrt {
namespace {

using Clock = std::chrono::steady_clock;

struct Shape {
    const char* name;
    int64_t N, K;
};

struct Copy {
    std::vector<uint16_t> bf16;
    std::vector<uint8_t> codes;
    std::vector<float> scale;
};

float uniform(uint32_t& s) {
    s = s * 1664525u + 1013904223u;
    return static_cast<float>((s >> 8) / 16777216.0 - 0.5) * 0.1f;
}

TEST(GemvCpuBench, DecodeShapes) {
    const char* on = std::getenv("VOXRT_CPU_GEMV_BENCH");
    if (!on || std::string(on) != "1") GTEST_SKIP() << "set VOXRT_CPU_GEMV_BENCH=1 to run";
    ThreadPool pool(0);
    std::printf("[gemv_cpu_bench] %d threads, quantized kernel: %s\n", pool.size(),
                cpu::quant_isa_name(cpu::best_quant_isa()));
    const Shape shapes[] = {{"attn/conv out 2048x2048", 2048, 2048},
                            {"ffn w1/w3 8192x2048", 8192, 2048},
                            {"ffn w2 2048x8192", 2048, 8192},
                            {"text head 65536x2048", 65536, 2048}};
    for (const Shape& sh : shapes) {
        const int64_t N = sh.N, K = sh.K;
        const size_t bf16_bytes = static_cast<size_t>(N * K) * 2;
        const int copies = static_cast<int>(std::max<size_t>(1, (256u << 20) / bf16_bytes));
        for (DType qdt : {DType::kI8, DType::kF8E4M3, DType::kI4}) {
            const bool i4 = qdt == DType::kI4;
            const int64_t row_bytes = i4 ? K / 2 : K, row_scales = i4 ? K / kI4Group : 1;
            std::vector<Copy> w(static_cast<size_t>(copies));
            uint32_t seed = 1;
            std::vector<float> row(static_cast<size_t>(K));
            for (Copy& c : w) {
                c.bf16.resize(static_cast<size_t>(N * K));
                c.codes.resize(static_cast<size_t>(N * row_bytes));
                c.scale.resize(static_cast<size_t>(N * row_scales));
                for (int64_t n = 0; n < N; ++n) {
                    for (int64_t k = 0; k < K; ++k) {
                        const uint16_t b = f32_to_bf16(uniform(seed));
                        c.bf16[static_cast<size_t>(n * K + k)] = b;
                        row[static_cast<size_t>(k)] = bf16_to_f32(b);
                    }
                    quant::quantize_rows(qdt, row.data(), 1, K, c.codes.data() + n * row_bytes,
                                         c.scale.data() + n * row_scales);
                }
            }
            std::vector<float> x(static_cast<size_t>(K)), y_b(static_cast<size_t>(N)),
                y_q(static_cast<size_t>(N));
            for (float& v : x) v = round_bf16(uniform(seed) * 20.0f);
            Tensor xt = Tensor::make(x.data(), DType::kF32, Device::kCPU, {1, K});
            Tensor yb = Tensor::make(y_b.data(), DType::kF32, Device::kCPU, {1, N});
            Tensor yq = Tensor::make(y_q.data(), DType::kF32, Device::kCPU, {1, N});
            ops::Context ctx;
            ctx.pool = &pool;
            ctx.precision = ops::Precision::kBF16;
            auto wb = [&](int i) {
                return Tensor::make(w[static_cast<size_t>(i)].bf16.data(), DType::kBF16,
                                    Device::kCPU, {N, K});
            };
            auto wq = [&](int i) {
                Tensor t =
                    Tensor::make(w[static_cast<size_t>(i)].codes.data(), qdt, Device::kCPU, {N, K});
                t.scale = w[static_cast<size_t>(i)].scale.data();
                return t;
            };
            // The machine may be shared: bf16 and quantized passes over all copies alternate,
            // and each reports its fastest pass (per call), the least disturbed one.
            auto pass = [&](auto make_w, Tensor& y) {
                const auto t0 = Clock::now();
                for (int i = 0; i < copies; ++i) ops::linear(ctx, xt, make_w(i), nullptr, y);
                return std::chrono::duration<double>(Clock::now() - t0).count() / copies;
            };
            double tb = 1e30, tq = 1e30;
            for (int round = 0; round < 9; ++round) {
                tb = std::min(tb, pass(wb, yb));
                tq = std::min(tq, pass(wq, yq));
            }
            const double q_bytes = static_cast<double>(N * row_bytes) + 4.0 * N * row_scales;
            std::printf(
                "[gemv_cpu_bench] %-24s bf16 %8.1f us %6.1f GB/s | %s %8.1f us %6.1f GB/s | "
                "speedup %.2fx (%d copies)\n",
                sh.name, tb * 1e6, bf16_bytes / tb / 1e9,
                i4                  ? "int4"
                : qdt == DType::kI8 ? "int8"
                                    : "fp8 ",
                tq * 1e6, q_bytes / tq / 1e9, tb / tq, copies);
            // The two products differ by the quantization error only (a few % relative).
            double num = 0, den = 0;
            for (int64_t n = 0; n < N; ++n) {
                const double d = y_q[static_cast<size_t>(n)] - y_b[static_cast<size_t>(n)];
                num += d * d;
                den +=
                    static_cast<double>(y_b[static_cast<size_t>(n)]) * y_b[static_cast<size_t>(n)];
            }
            EXPECT_LT(std::sqrt(num / den), qdt == DType::kI8 ? 0.02 : i4 ? 0.2 : 0.08) << sh.name;
        }
    }
}

// Load-time quantization: WeightStore::fetch_matrix on the text head's shape (65536 × 2048 bf16,
// in a safetensors file), rows over the thread pool, and its rate in parameters per second; the
// full model quantizes ≈ 1.27 G parameters (backbone 1.04 G, text head 0.13 G, depthformer with its
// input projection and heads ≈ 0.1 G).
TEST(GemvCpuBench, LoadTimeQuantization) {
    const char* on = std::getenv("VOXRT_CPU_GEMV_BENCH");
    if (!on || std::string(on) != "1") GTEST_SKIP() << "set VOXRT_CPU_GEMV_BENCH=1 to run";
    const int64_t N = 65536, K = 2048;
    const std::string path = ::testing::TempDir() + "voxrt_quant_bench.safetensors";
    {
        std::string header = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[" + std::to_string(N) + "," +
                             std::to_string(K) + "],\"data_offsets\":[0," +
                             std::to_string(N * K * 2) + "]}}";
        while (header.size() % 8) header += ' ';
        std::vector<uint16_t> w(static_cast<size_t>(N * K));
        uint32_t seed = 5;
        for (uint16_t& v : w) v = f32_to_bf16(uniform(seed));
        std::ofstream f(path, std::ios::binary);
        const uint64_t n = header.size();
        f.write(reinterpret_cast<const char*>(&n), 8);
        f.write(header.data(), static_cast<std::streamsize>(n));
        f.write(reinterpret_cast<const char*>(w.data()),
                static_cast<std::streamsize>(w.size() * 2));
    }
    auto file = io::SafeTensorsFile::open(path);
    ASSERT_TRUE(file.is_ok()) << file.status().message();
    ThreadPool pool(0);
    ops::Context ctx;
    ctx.pool = &pool;
    for (model::WeightQuant q : {model::WeightQuant::kI8, model::WeightQuant::kF8E4M3}) {
        double best = 1e30, best_cpu = 1e30;  // wall seconds; CPU seconds of all threads
        for (int round = 0; round < 3; ++round) {
            model::WeightStore store(ctx, q);
            const auto t0 = Clock::now();
            const std::clock_t c0 = std::clock();
            auto t = store.fetch_matrix(*file, "w", {N, K});
            best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
            best_cpu = std::min(best_cpu, static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
            ASSERT_TRUE(t.is_ok()) << t.status().message();
            ASSERT_TRUE(t->quantized());
        }
        const double rate = static_cast<double>(N * K) / best;
        std::printf(
            "[gemv_cpu_bench] quantize %s 65536x2048: %.0f ms wall, %.0f ms CPU, %.0f M params/s "
            "-> full model (1.27 G params) %.1f s on %d threads, %.1f CPU-s\n",
            model::weight_quant_name(q), best * 1e3, best_cpu * 1e3, rate / 1e6, 1.27e9 / rate,
            pool.size(), best_cpu * 1.27e9 / static_cast<double>(N * K));
    }
    std::remove(path.c_str());
}

#if defined(__x86_64__) && defined(__GNUC__)
// The instruction's peak on one core: 24 independent vdpbf16ps chains (more than latency ×
// throughput on any AVX512_BF16 core), `iters` times; returns FLOP (64 per instruction: 32
// products, 32 additions).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline)) double dpbf16_peak_loop(
    int64_t iters, float* sink) {
    __m512 a[24];
    for (int i = 0; i < 24; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
    const __m512i x = _mm512_set1_epi32(0x3f803f80), w = _mm512_set1_epi32(0x00010001);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; ++i) a[i] = _mm512_dpbf16_ps(a[i], (__m512bh)x, (__m512bh)w);
        __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]));
    }
    __m512 s = a[0];
    for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, a[i]);
    *sink = _mm512_reduce_add_ps(s);
    return static_cast<double>(iters) * 24 * 64;
}
// AMX: tdpbf16ps on four 16 × 16 fp32 tiles (16·16·32·2 = 16,384 FLOP each), the operands kept in
// tiles (no loads), as the bf16 GEMM configures them. The caller checks bf16_gemm_amx_supported().
__attribute__((target("amx-tile,amx-bf16"), noinline)) double amx_peak_loop(int64_t iters,
                                                                            float* sink) {
    struct alignas(64) {
        uint8_t palette = 1, start_row = 0, reserved[14] = {};
        uint16_t colsb[16] = {};
        uint8_t rows[16] = {};
    } cfg;
    for (int t = 0; t < 8; ++t) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    asm volatile("ldtilecfg %0" : : "m"(cfg));
    alignas(64) uint16_t ones[16 * 32];
    for (uint16_t& v : ones) v = 0x3f80;  // bf16 1.0
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, ones, 64);
    _tile_loadd(5, ones, 64);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    for (int64_t it = 0; it < iters; ++it) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    alignas(64) float out[256];
    _tile_stored(0, out, 64);
    *sink = out[0];
    _tile_release();
    return static_cast<double>(iters) * 4 * 16384;
}
// The same for fp32 FMAs on 16 lanes (vfmadd231ps zmm, 32 FLOP per instruction), for comparison.
__attribute__((target("avx512f"), noinline)) double fma512_peak_loop(int64_t iters, float* sink) {
    __m512 a[24];
    for (int i = 0; i < 24; ++i) a[i] = _mm512_set1_ps(static_cast<float>(i));
    const __m512 x = _mm512_set1_ps(1.0f), w = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; ++i) a[i] = _mm512_fmadd_ps(x, w, a[i]);
        __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]));
    }
    __m512 s = a[0];
    for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, a[i]);
    *sink = _mm512_reduce_add_ps(s);
    return static_cast<double>(iters) * 24 * 32;
}
#pragma GCC diagnostic pop
#endif

// Prefill and encoder GEMMs in bf16 (x bf16 values, BF16 weights, Precision::kBF16): the fp32
// packed GEMM (the bf16 GEMM turned off) against the vdpbf16ps GEMM, GFLOP/s and the share of the
// instruction's peak on all cores (measured first; each time the fastest of 5 runs of ~0.2 s), and
// the vdpbf16ps GEMM on int8 and int4 weights. Shapes: the
// backbone's at 73 and 300 positions, the audio encoder's (d 512, FF 2048, conv 2·512) at 125
// frames (10 s of audio) and 375.
TEST(GemvCpuBench, PrefillShapes) {
    const char* on = std::getenv("VOXRT_CPU_GEMV_BENCH");
    if (!on || std::string(on) != "1") GTEST_SKIP() << "set VOXRT_CPU_GEMV_BENCH=1 to run";
    if (!cpu::bf16_gemm_supported()) GTEST_SKIP() << "host lacks AVX512_BF16";
    ThreadPool pool(0);
#if defined(__x86_64__) && defined(__GNUC__)
    double peak = 0, peak1 = 0;  // FLOP/s, all threads; one thread
    for (int round = 0; round < 5; ++round) {
        std::vector<float> sink(static_cast<size_t>(pool.size()) * 16);
        const int64_t iters = 2000000;
        auto t0 = Clock::now();
        dpbf16_peak_loop(iters, sink.data());
        peak1 = std::max(
            peak1, iters * 24 * 64.0 / std::chrono::duration<double>(Clock::now() - t0).count());
        t0 = Clock::now();
        pool.parallel_for(pool.size(), 1, [&](int64_t a, int64_t b) {
            for (int64_t i = a; i < b; ++i)
                dpbf16_peak_loop(iters, &sink[static_cast<size_t>(i * 16)]);
        });
        peak = std::max(peak, pool.size() * iters * 24 * 64.0 /
                                  std::chrono::duration<double>(Clock::now() - t0).count());
    }
    // The cores' peak: threads × one core's best (the all-threads run is shown as a check; on a
    // shared machine it is the one more likely to be disturbed).
    std::printf(
        "[gemm_cpu_bench] vdpbf16ps peak: %.1f GFLOP/s on 1 thread -> %.1f on %d cores (measured "
        "on all threads at once: %.1f)\n",
        peak1 / 1e9, peak1 * pool.size() / 1e9, pool.size(), peak / 1e9);
    peak = std::max(peak, peak1 * pool.size());
    // Where the bf16 GEMM runs on AMX tiles, its share is of the tile unit's peak instead.
    if (cpu::bf16_gemm_amx_supported()) {
        double amx1 = 0;
        for (int round = 0; round < 5; ++round) {
            float sink = 0;
            const auto t0 = Clock::now();
            const double f = amx_peak_loop(200000, &sink);
            amx1 = std::max(amx1, f / std::chrono::duration<double>(Clock::now() - t0).count());
        }
        std::printf(
            "[gemm_cpu_bench] AMX tdpbf16ps peak: %.1f GFLOP/s on 1 thread -> %.1f on %d cores; "
            "the "
            "%% of peak below is of this\n",
            amx1 / 1e9, amx1 * pool.size() / 1e9, pool.size());
        peak = amx1 * pool.size();
    }
    double fma1 = 0;
    for (int round = 0; round < 5; ++round) {
        float sink = 0;
        const auto t0 = Clock::now();
        const double f = fma512_peak_loop(2000000, &sink);
        fma1 = std::max(fma1, f / std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::printf("[gemm_cpu_bench] for comparison, fp32 FMA on 16 lanes: %.1f GFLOP/s on 1 thread\n",
                fma1 / 1e9);
#else
    const double peak = 0;
#endif
    struct GemmShape {
        const char* name;
        int64_t T, N, K;
    };
    const GemmShape shapes[] = {
        {"backbone qkv 2048->6144", 73, 6144, 2048}, {"backbone qkv 2048->6144", 300, 6144, 2048},
        {"backbone w1 2048->8192", 73, 8192, 2048},  {"backbone w1 2048->8192", 300, 8192, 2048},
        {"backbone w2 8192->2048", 73, 2048, 8192},  {"backbone w2 8192->2048", 300, 2048, 8192},
        {"backbone out 2048->2048", 73, 2048, 2048}, {"backbone out 2048->2048", 300, 2048, 2048},
        {"encoder ff1 512->2048", 125, 2048, 512},   {"encoder ff2 2048->512", 125, 512, 2048},
        {"encoder att 512->512", 125, 512, 512},     {"encoder pw1 512->1024", 125, 1024, 512},
        {"encoder ff1 512->2048", 375, 2048, 512},   {"encoder ff2 2048->512", 375, 512, 2048},
    };
    for (const GemmShape& sh : shapes) {
        const int64_t T = sh.T, N = sh.N, K = sh.K;
        uint32_t seed = 7;
        std::vector<uint16_t> wb(static_cast<size_t>(N * K));
        for (uint16_t& v : wb) v = f32_to_bf16(uniform(seed));
        std::vector<float> x(static_cast<size_t>(T * K)), y_f(static_cast<size_t>(T * N)),
            y_b(static_cast<size_t>(T * N));
        for (float& v : x) v = round_bf16(uniform(seed) * 20.0f);
        Tensor xt = Tensor::make(x.data(), DType::kF32, Device::kCPU, {T, K});
        Tensor wt = Tensor::make(wb.data(), DType::kBF16, Device::kCPU, {N, K});
        Tensor yf = Tensor::make(y_f.data(), DType::kF32, Device::kCPU, {T, N});
        Tensor yb = Tensor::make(y_b.data(), DType::kF32, Device::kCPU, {T, N});
        ops::Context ctx;
        ctx.pool = &pool;
        ctx.precision = ops::Precision::kBF16;
        const double flop = 2.0 * T * N * K;
        const int reps = std::max(1, static_cast<int>(2e10 / 100 / flop));  // ~0.2 s at 100 GFLOP/s
        auto time = [&](bool bf16, Tensor& y) {
            cpu::set_bf16_gemm_enabled(bf16);
            double best = 1e30;
            for (int round = 0; round < 5; ++round) {
                const auto t0 = Clock::now();
                for (int i = 0; i < reps; ++i) ops::linear(ctx, xt, wt, nullptr, y);
                best =
                    std::min(best, std::chrono::duration<double>(Clock::now() - t0).count() / reps);
            }
            cpu::set_bf16_gemm_enabled(true);
            return best;
        };
        const double tf = time(false, yf), tb = time(true, yb);
        // The same product on int8 weights (the codes as bf16, the row scale after): the codes'
        // conversion on top of the bf16 GEMM.
        std::vector<float> wrow(static_cast<size_t>(K)), scale(static_cast<size_t>(N));
        std::vector<uint8_t> codes(static_cast<size_t>(N * K));
        for (int64_t n = 0; n < N; ++n) {
            for (int64_t k = 0; k < K; ++k)
                wrow[static_cast<size_t>(k)] = bf16_to_f32(wb[static_cast<size_t>(n * K + k)]);
            quant::quantize_rows(DType::kI8, wrow.data(), 1, K, codes.data() + n * K,
                                 scale.data() + n);
        }
        Tensor wq = Tensor::make(codes.data(), DType::kI8, Device::kCPU, {N, K});
        wq.scale = scale.data();
        std::vector<float> y_q(static_cast<size_t>(T * N));
        Tensor yq = Tensor::make(y_q.data(), DType::kF32, Device::kCPU, {T, N});
        double tq = 1e30;
        for (int round = 0; round < 5; ++round) {
            const auto t0 = Clock::now();
            for (int i = 0; i < reps; ++i) ops::linear(ctx, xt, wq, nullptr, yq);
            tq = std::min(tq, std::chrono::duration<double>(Clock::now() - t0).count() / reps);
        }
        // And on int4 weights (groups of 32, each group's dot product scaled and added)
        std::vector<uint8_t> codes4(static_cast<size_t>(N * K / 2));
        std::vector<float> scale4(static_cast<size_t>(N * K / kI4Group)),
            wf(static_cast<size_t>(N * K));
        for (size_t i = 0; i < wf.size(); ++i) wf[i] = bf16_to_f32(wb[i]);
        quant::quantize_rows(DType::kI4, wf.data(), N, K, codes4.data(), scale4.data());
        Tensor w4 = Tensor::make(codes4.data(), DType::kI4, Device::kCPU, {N, K});
        w4.scale = scale4.data();
        double t4 = 1e30;
        for (int round = 0; round < 5; ++round) {
            const auto t0 = Clock::now();
            for (int i = 0; i < reps; ++i) ops::linear(ctx, xt, w4, nullptr, yq);
            t4 = std::min(t4, std::chrono::duration<double>(Clock::now() - t0).count() / reps);
        }
        std::printf(
            "[gemm_cpu_bench] %-24s T %3lld | fp32 %7.2f ms %6.1f GFLOP/s | bf16 dp %7.2f ms %6.1f "
            "GFLOP/s %4.0f%% of peak | speedup %.2fx | int8 dp %7.2f ms | int4 dp %7.2f ms %4.0f%% "
            "of "
            "peak\n",
            sh.name, static_cast<long long>(T), tf * 1e3, flop / tf / 1e9, tb * 1e3,
            flop / tb / 1e9, peak > 0 ? 100.0 * flop / tb / peak : 0.0, tf / tb, tq * 1e3, t4 * 1e3,
            peak > 0 ? 100.0 * flop / t4 / peak : 0.0);
        // Same products, different summation order: the outputs agree to the bf16 rounding.
        double num = 0, den = 0;
        for (size_t i = 0; i < y_f.size(); ++i) {
            num += (static_cast<double>(y_b[i]) - y_f[i]) * (static_cast<double>(y_b[i]) - y_f[i]);
            den += static_cast<double>(y_f[i]) * y_f[i];
        }
        EXPECT_LT(std::sqrt(num / den), 4e-3) << sh.name << " T " << T;
    }
}

}  // namespace
}  // namespace voxrt
