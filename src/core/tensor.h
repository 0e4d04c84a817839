// Tensor: a non-owning, contiguous, row-major view (data pointer + dtype + device + shape), and
// Buffer: an owning allocation on a device.
//
// Dimension names used across the code base (docs/glossary.md): T time steps / positions,
// D model width, H heads, Hkv key/value heads, Dh head dim, V vocabulary, Q codebooks.
// Views are cheap to copy; they never free. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/check.h"

namespace voxrt {

// kF8E4M3: OCP 8-bit float (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities,
// S.1111.111 is NaN, largest finite ±448), used for weight-only quantized matrices (core/quant.h).
// kI4: 4-bit weight codes, two per byte, with one F32 scale per group of kI4Group codes along the
// last dimension (core/quant.h); a row of K codes takes K / 2 bytes.
enum class DType : uint8_t {
    kF32,
    kBF16,
    kF16,
    kF64,
    kI64,
    kI32,
    kI16,
    kU8,
    kI8,
    kBool,
    kF8E4M3,
    kI4
};
// Codes of a kI4 matrix that share one scale (consecutive along K; K must be a multiple).
constexpr int64_t kI4Group = 32;
// Device kinds, one per backend (backend/entry_points.h): the host, and NVIDIA GPUs.
enum class Device : uint8_t { kCPU, kCUDA };
constexpr size_t kDeviceKinds = 2;  // the number of Device values

// Bytes per element; kI4 (half a byte) reports 1, so byte counts go through Tensor::nbytes().
size_t dtype_size(DType dt);
const char* dtype_name(DType dt);
const char* device_name(Device dev);

constexpr int kMaxDims = 4;

struct Tensor {
    void* data = nullptr;
    DType dtype = DType::kF32;
    Device device = Device::kCPU;
    int ndim = 0;
    int64_t shape[kMaxDims] = {0, 0, 0, 0};
    // Weight-only quantized matrices (dtype kI8 or kF8E4M3, shape [N, K], core/quant.h): one F32
    // scale per row (dimension 0), on the same device, so that the matrix stands for
    // w[n][k] = scale[n] · float(q[n][k]). kI4: K / kI4Group scales per row, row-major
    // ([N, K / kI4Group]), w[n][k] = scale[n][k / kI4Group] · (code - 8). Null for every other
    // tensor. rows() and row() keep it pointing at their first row's scales; reshape() keeps it
    // only while dimension 0 is unchanged.
    const float* scale = nullptr;

    static Tensor make(void* data, DType dt, Device dev, std::initializer_list<int64_t> dims);

    int64_t dim(int i) const {
        VOXRT_DASSERT(i >= 0 && i < ndim, "dim %d of %d-d tensor", i, ndim);
        return shape[i];
    }
    int64_t numel() const {
        int64_t n = 1;
        for (int i = 0; i < ndim; ++i) n *= shape[i];
        return n;
    }
    size_t nbytes() const {
        return dtype == DType::kI4 ? static_cast<size_t>((numel() + 1) / 2)
                                   : static_cast<size_t>(numel()) * dtype_size(dtype);
    }
    // F32 scales per row of a quantized matrix: K / kI4Group for kI4, one otherwise.
    int64_t scales_per_row() const {
        return dtype == DType::kI4 && ndim >= 1 ? shape[ndim - 1] / kI4Group : 1;
    }
    bool empty() const { return data == nullptr; }
    bool quantized() const { return scale != nullptr; }

    template <class T>
    T* ptr() const {
        return static_cast<T*>(data);
    }

    // Same data, new shape (numel must match).
    Tensor reshape(std::initializer_list<int64_t> dims) const;
    // Rows [begin, end) along dimension 0.
    Tensor rows(int64_t begin, int64_t end) const;
    // Row i along dimension 0, with that dimension dropped.
    Tensor row(int64_t i) const;
    // "[2, 3] bf16 cpu"
    std::string describe() const;
};

// Owning device allocation. Move-only; frees on destruction through the backend that made it.
class Buffer {
public:
    Buffer() = default;
    ~Buffer() { reset(); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept { *this = std::move(o); }
    Buffer& operator=(Buffer&& o) noexcept;

    // Allocates `bytes` on `dev` (64-byte aligned on the CPU). Returns an empty buffer on failure.
    static Buffer allocate(Device dev, size_t bytes);
    // Host memory (device() == kCPU, zeroed) that a device queue can copy into asynchronously:
    // page-locked once a GPU backend has installed its allocator (backend::create_context), plain
    // allocate(kCPU, bytes) otherwise. For small per-step read-backs; page-locked memory is scarce.
    static Buffer allocate_pinned(size_t bytes);

    void* data() const { return data_; }
    size_t size() const { return bytes_; }
    Device device() const { return device_; }
    void reset();

    // A tensor view over the first bytes of this buffer.
    Tensor view(DType dt, std::initializer_list<int64_t> dims, size_t byte_offset = 0) const;

private:
    void* data_ = nullptr;
    size_t bytes_ = 0;
    Device device_ = Device::kCPU;
    bool pinned_ = false;  // host memory from the pinned allocator (freed through it)
};

// Device memory hooks; the CPU ones live in core, a GPU backend installs those of its device kind
// when it makes its first context (so that core never includes a vendor's headers).
struct DeviceAllocator {
    void* (*alloc)(size_t bytes) = nullptr;
    void (*free)(void* p) = nullptr;
};
void set_device_allocator(Device dev, DeviceAllocator a);
// Page-locked host memory hooks for Buffer::allocate_pinned (installed by a GPU backend).
void set_pinned_host_allocator(DeviceAllocator a);

}  // namespace voxrt
