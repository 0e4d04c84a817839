// The counter-based uniform generator shared by the CPU and CUDA samplers, so that both backends
// draw the same number for the same (seed, counter, index).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define VOXRT_HOST_DEVICE __host__ __device__
#else
#define VOXRT_HOST_DEVICE
#endif

namespace voxrt::ops {

// splitmix64 over a packed (seed, counter, index) key; the top 24 bits give a float in [0, 1).
VOXRT_HOST_DEVICE inline float uniform_from_key(uint64_t seed, uint32_t counter, uint32_t index) {
    uint64_t z = seed ^ ((static_cast<uint64_t>(counter) << 32) | index) * 0x9E3779B97F4A7C15ull;
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

}  // namespace voxrt::ops
