// CPU argmax and temperature / top-k sampling.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"
#include "ops/rng.h"

namespace voxrt::cpu {

void argmax(const ops::Context&, const Tensor& logits, Tensor& out) {
    const int64_t M = rows_of(logits), N = cols_of(logits);
    int32_t* o = static_cast<int32_t*>(out.data);
    for (int64_t m = 0; m < M; ++m) {
        int64_t best = 0;
        float bv = load(logits, m * N);
        for (int64_t n = 1; n < N; ++n) {
            const float v = load(logits, m * N + n);
            if (v > bv || (std::isnan(v) && !std::isnan(bv))) {
                bv = v;
                best = n;
            }
        }
        o[m] = static_cast<int32_t>(best);
    }
}

void sample_top_k(const ops::Context& ctx, const Tensor& logits, float temperature, int top_k,
                  uint64_t seed, const Tensor& counter, Tensor& out) {
    const int64_t M = rows_of(logits), N = cols_of(logits);
    int32_t* o = static_cast<int32_t*>(out.data);
    const uint32_t ctr = static_cast<uint32_t>(static_cast<const int32_t*>(counter.data)[0]);
    const Rounder rnd = rounder(ctx);
    float* v = thread_scratch(0, static_cast<size_t>(N));
    for (int64_t m = 0; m < M; ++m) {
        // logits / T in the logits' precision, as the reference divides the bf16 tensor in place.
        for (int64_t n = 0; n < N; ++n) v[n] = rnd(load(logits, m * N + n) / temperature);
        float thr = -INFINITY;
        if (top_k > 0 && top_k < N) {
            float* tmp = thread_scratch(1, static_cast<size_t>(N));
            std::copy(v, v + N, tmp);
            std::nth_element(tmp, tmp + (top_k - 1), tmp + N, std::greater<float>());
            thr = tmp[top_k - 1];
        }
        float mx = -INFINITY;
        for (int64_t n = 0; n < N; ++n)
            if (v[n] >= thr) mx = std::max(mx, v[n]);
        double sum = 0.0;
        for (int64_t n = 0; n < N; ++n)
            sum += v[n] >= thr ? std::exp(static_cast<double>(v[n] - mx)) : 0.0;
        const double u =
            static_cast<double>(ops::uniform_from_key(seed, ctr, static_cast<uint32_t>(m))) * sum;
        double c = 0.0;
        int64_t pick = -1;
        for (int64_t n = 0; n < N; ++n) {
            if (v[n] < thr) continue;
            c += std::exp(static_cast<double>(v[n] - mx));
            pick = n;
            if (c > u) break;
        }
        o[m] = static_cast<int32_t>(std::max<int64_t>(pick, 0));
    }
}

}  // namespace voxrt::cpu
