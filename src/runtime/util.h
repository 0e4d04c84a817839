// Small helpers the runtime's files share: wall time since a point, and state tensors that each
// own their buffer.
#pragma once

#include <chrono>
#include <initializer_list>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace voxrt::runtime {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A tensor of `dims` in a new buffer on `dev`, kept alive in `keep`; the error names `who`.
inline Status alloc_tensor(Device dev, DType t, std::initializer_list<int64_t> dims,
                           std::vector<Buffer>& keep, Tensor* out, const char* who) {
    const Tensor probe = Tensor::make(nullptr, t, dev, dims);
    Buffer b = Buffer::allocate(dev, probe.nbytes());
    if (!b.data())
        return make_error(StatusCode::kOutOfMemory, "%s: cannot allocate %s", who,
                          probe.describe().c_str());
    *out = b.view(t, dims);
    keep.push_back(std::move(b));
    return Status::ok();
}

}  // namespace voxrt::runtime
