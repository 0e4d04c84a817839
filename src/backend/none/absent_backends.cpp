// A build without the GPU backend: the device kind it would serve has no entry points, so
// backend::device_available() is false for it, backend::create_context() returns kUnsupported,
// and an op reaching it aborts with a clear message (sessions refuse such a device first).
#include "backend/entry_points.h"

namespace voxrt::backend {

template <>
const EntryPoints* backend_for<Device::kCUDA>() {
    return nullptr;
}

}  // namespace voxrt::backend
