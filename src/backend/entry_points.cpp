#include "backend/entry_points.h"

namespace voxrt::backend {

const EntryPoints* entry_points(Device device) {
    // One slot per device kind, in the order of the Device enum.
    static const EntryPoints* const tables[kDeviceKinds] = {backend_for<Device::kCPU>(),
                                                            backend_for<Device::kCUDA>()};
    const auto i = static_cast<size_t>(device);
    return i < kDeviceKinds ? tables[i] : nullptr;
}

void no_backend(Device device) {
    VOXRT_ABORT("an op was called on a %s context, but this build of voxrt has no %s backend",
                device_name(device), device_name(device));
}

}  // namespace voxrt::backend
