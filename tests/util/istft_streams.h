// The streaming ISTFT run two ways over the same head-output rows ([rows][2·bins]: log|X| then
// ∠X) and the same chunking: on the host (audio::IstftStream, the reference) and through
// ops::StreamingIstft on a context's device. Shared by the CPU and CUDA tests of the op.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "audio/istft.h"
#include "core/tensor.h"
#include "ops/istft_ops.h"
#include "ops/ops.h"

namespace voxrt::test {

// Head-output rows like the detokenizer's: log-magnitudes around -2 (σ 1.5), phases in (-π, π].
inline std::vector<float> random_head_rows(int rows, int bins, uint32_t seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> mag(-2.0f, 1.5f);
    std::uniform_real_distribution<float> ph(-3.14159265f, 3.14159265f);
    std::vector<float> v(static_cast<size_t>(rows) * 2 * bins);
    for (int r = 0; r < rows; ++r)
        for (int k = 0; k < bins; ++k) {
            v[static_cast<size_t>(r) * 2 * bins + k] = mag(g);
            v[static_cast<size_t>(r) * 2 * bins + bins + k] = ph(g);
        }
    return v;
}

// The reference: spectrum_from_logmag_phase per row, IstftStream::step per row, then flush.
inline std::vector<float> host_istft_stream(const std::vector<float>& head, int rows,
                                            const audio::IstftConfig& cfg, const float* window) {
    audio::IstftStream s(cfg, window);
    const int bins = s.n_bins();
    std::vector<float> X(static_cast<size_t>(2 * bins)),
        buf(static_cast<size_t>(std::max(s.max_step_samples(), s.max_flush_samples())));
    std::vector<float> out;
    for (int r = 0; r < rows; ++r) {
        const float* row = &head[static_cast<size_t>(r) * 2 * bins];
        audio::spectrum_from_logmag_phase(row, row + bins, bins, X.data());
        const size_t n = s.step(X.data(), buf.data());
        out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    }
    const size_t n = s.flush(buf.data());
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    return out;
}

// The op on ctx's device: the rows uploaded, then steps of chunks[0], chunks[1], ... rows (cycled
// until all rows are in), then flush. Each call's count is checked against IstftStream's rule.
inline std::vector<float> device_istft_stream(const ops::Context& ctx, ops::StreamingIstft& s,
                                              const std::vector<float>& head, int rows,
                                              const std::vector<int>& chunks) {
    const int bins = s.n_bins(), hop = s.hop();
    const int64_t cols = 2 * bins;
    Buffer spec_b = Buffer::allocate(ctx.device, head.size() * sizeof(float));
    const int64_t pcm_n = std::max(s.max_step_samples(), s.max_flush_samples());
    Buffer pcm_b = Buffer::allocate(ctx.device, static_cast<size_t>(pcm_n) * sizeof(float));
    Tensor spec = Tensor::make(spec_b.data(), DType::kF32, ctx.device, {rows, cols});
    Tensor pcm = Tensor::make(pcm_b.data(), DType::kF32, ctx.device, {pcm_n});
    const Tensor head_h =
        Tensor::make(const_cast<float*>(head.data()), DType::kF32, Device::kCPU, {rows, cols});
    ops::copy(ctx, head_h, spec);
    std::vector<float> out, buf(static_cast<size_t>(pcm_n));
    auto take = [&](int64_t n) {
        if (n > 0) {
            Tensor h = Tensor::make(buf.data(), DType::kF32, Device::kCPU, {n});
            ops::copy(ctx, pcm.rows(0, n), h);
        }
        EXPECT_TRUE(ops::synchronize(ctx).is_ok());
        out.insert(out.end(), buf.begin(), buf.begin() + n);
    };
    int done = 0;
    for (size_t c = 0; done < rows; ++c) {
        const int n_rows = std::min(chunks[c % chunks.size()], rows - done);
        const int64_t before = s.frames();
        auto n = s.step(ctx, spec.rows(done, done + n_rows), pcm);
        EXPECT_TRUE(n.is_ok()) << n.status().message();
        if (!n.is_ok()) return {};
        EXPECT_EQ(s.frames(), before + n_rows);
        EXPECT_LE(*n, static_cast<int64_t>(n_rows) * hop);
        take(*n);
        done += n_rows;
    }
    auto n = s.flush(ctx, pcm);
    EXPECT_TRUE(n.is_ok()) << n.status().message();
    if (!n.is_ok()) return {};
    EXPECT_EQ(s.frames(), 0);
    take(*n);
    return out;
}

}  // namespace voxrt::test
