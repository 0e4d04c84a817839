// CPU embedding lookups.
#include <algorithm>
#include <vector>

#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"

namespace voxrt::cpu {

void embedding(const ops::Context& ctx, const Tensor& table, const Tensor& ids, Tensor& y) {
    const int64_t V = table.shape[0], D = table.shape[1];
    const int32_t* idp = static_cast<const int32_t*>(ids.data);
    float* yp = act(y);
    for (int64_t n = 0; n < ids.numel(); ++n) {
        const int64_t id = std::clamp<int64_t>(idp[n], 0, V - 1);
        load_row(table, id * D, D, yp + n * D);
    }
    (void)ctx;
}

void embedding_bag(const ops::Context& ctx, const Tensor& table, const Tensor& ids, int64_t stride,
                   bool mean, Tensor& y) {
    const int64_t V = table.shape[0], D = table.shape[1];
    const int64_t N = ids.shape[0], Q = ids.shape[1];
    const int32_t* idp = static_cast<const int32_t*>(ids.data);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    float* row = thread_scratch(0, static_cast<size_t>(D));
    for (int64_t n = 0; n < N; ++n) {
        float* yr = yp + n * D;
        std::fill(yr, yr + D, 0.0f);
        for (int64_t q = 0; q < Q; ++q) {
            const int64_t id = std::clamp<int64_t>(idp[n * Q + q] + q * stride, 0, V - 1);
            load_row(table, id * D, D, row);
            for (int64_t d = 0; d < D; ++d) yr[d] += row[d];
        }
        for (int64_t d = 0; d < D; ++d) yr[d] = rnd(mean ? yr[d] / static_cast<float>(Q) : yr[d]);
    }
}

}  // namespace voxrt::cpu
