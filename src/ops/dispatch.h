// The one dispatch point from a device-agnostic op to its backend implementation:
// VOXRT_DISPATCH(name(args...)) calls cpu::name(args...) or cuda::name(args...) on ctx.device.
// (A build without CUDA links backend/none, whose cuda:: entry points fail loudly.)
#pragma once

#define VOXRT_DISPATCH(call)              \
    do {                                  \
        if (ctx.device == Device::kCPU) { \
            cpu::call;                    \
        } else {                          \
            cuda::call;                   \
        }                                 \
    } while (0)
