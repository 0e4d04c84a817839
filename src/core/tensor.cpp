#include "core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace voxrt {

size_t dtype_size(DType dt) {
    switch (dt) {
        case DType::kF32:
            return 4;
        case DType::kBF16:
            return 2;
        case DType::kF16:
            return 2;
        case DType::kF64:
            return 8;
        case DType::kI64:
            return 8;
        case DType::kI32:
            return 4;
        case DType::kI16:
            return 2;
        case DType::kU8:
            return 1;
        case DType::kI8:
            return 1;
        case DType::kBool:
            return 1;
        case DType::kF8E4M3:
            return 1;
        case DType::kI4:
            return 1;
    }
    return 0;
}

const char* dtype_name(DType dt) {
    switch (dt) {
        case DType::kF32:
            return "F32";
        case DType::kBF16:
            return "BF16";
        case DType::kF16:
            return "F16";
        case DType::kF64:
            return "F64";
        case DType::kI64:
            return "I64";
        case DType::kI32:
            return "I32";
        case DType::kI16:
            return "I16";
        case DType::kU8:
            return "U8";
        case DType::kI8:
            return "I8";
        case DType::kBool:
            return "BOOL";
        case DType::kF8E4M3:
            return "F8_E4M3";
        case DType::kI4:
            return "I4";
    }
    return "?";
}

const char* device_name(Device dev) {
    return dev == Device::kCPU ? "cpu" : "cuda";
}

Tensor Tensor::make(void* data, DType dt, Device dev, std::initializer_list<int64_t> dims) {
    VOXRT_ASSERT(dims.size() <= static_cast<size_t>(kMaxDims), "too many dims (%zu)", dims.size());
    Tensor t;
    t.data = data;
    t.dtype = dt;
    t.device = dev;
    t.ndim = static_cast<int>(dims.size());
    int i = 0;
    for (int64_t d : dims) t.shape[i++] = d;
    return t;
}

Tensor Tensor::reshape(std::initializer_list<int64_t> dims) const {
    Tensor t = make(data, dtype, device, dims);
    VOXRT_ASSERT(t.numel() == numel(), "reshape %s to %lld elements", describe().c_str(),
                 static_cast<long long>(t.numel()));
    if (scale && ndim >= 1 && t.ndim >= 1 && t.shape[0] == shape[0] &&
        (dtype != DType::kI4 || t.scales_per_row() == scales_per_row()))
        t.scale = scale;
    return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
    VOXRT_ASSERT(ndim >= 1 && begin >= 0 && begin <= end && end <= shape[0],
                 "rows [%lld,%lld) of %s", static_cast<long long>(begin),
                 static_cast<long long>(end), describe().c_str());
    Tensor t = *this;
    size_t row_bytes = shape[0] ? nbytes() / static_cast<size_t>(shape[0]) : 0;
    t.data = static_cast<char*>(data) + static_cast<size_t>(begin) * row_bytes;
    if (scale) t.scale = scale + begin * scales_per_row();
    t.shape[0] = end - begin;
    return t;
}

Tensor Tensor::row(int64_t i) const {
    Tensor t = rows(i, i + 1);
    for (int k = 1; k < ndim; ++k) t.shape[k - 1] = shape[k];
    t.shape[ndim - 1] = 0;
    t.ndim = ndim - 1;
    if (t.ndim == 0) {  // a scalar: keep one dimension of size 1
        t.ndim = 1;
        t.shape[0] = 1;
    }
    return t;
}

std::string Tensor::describe() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    s += "] ";
    s += dtype_name(dtype);
    s += " ";
    s += device_name(device);
    if (scale) s += " row-scaled";
    return s;
}

namespace {
DeviceAllocator g_device_allocators[kDeviceKinds];  // the CPU's slot stays unused
DeviceAllocator g_pinned_allocator;

const DeviceAllocator& allocator_of(Device dev) {
    return g_device_allocators[static_cast<size_t>(dev) < kDeviceKinds ? static_cast<size_t>(dev)
                                                                       : 0];
}
}  // namespace

void set_device_allocator(Device dev, DeviceAllocator a) {
    if (dev != Device::kCPU && static_cast<size_t>(dev) < kDeviceKinds)
        g_device_allocators[static_cast<size_t>(dev)] = a;
}

void set_pinned_host_allocator(DeviceAllocator a) {
    g_pinned_allocator = a;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        reset();
        data_ = std::exchange(o.data_, nullptr);
        bytes_ = std::exchange(o.bytes_, 0);
        device_ = o.device_;
        pinned_ = std::exchange(o.pinned_, false);
    }
    return *this;
}

Buffer Buffer::allocate(Device dev, size_t bytes) {
    Buffer b;
    b.device_ = dev;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    if (dev == Device::kCPU) {
        b.data_ = std::aligned_alloc(64, rounded);
        if (b.data_) std::memset(b.data_, 0, rounded);
    } else if (const DeviceAllocator& a = allocator_of(dev); a.alloc) {
        b.data_ = a.alloc(rounded);
    }
    if (b.data_) b.bytes_ = bytes;
    return b;
}

Buffer Buffer::allocate_pinned(size_t bytes) {
    if (!g_pinned_allocator.alloc) return allocate(Device::kCPU, bytes);
    Buffer b;
    b.device_ = Device::kCPU;
    const size_t rounded = std::max<size_t>((bytes + 63) / 64 * 64, 64);
    b.data_ = g_pinned_allocator.alloc(rounded);
    if (b.data_) {
        std::memset(b.data_, 0, rounded);
        b.bytes_ = bytes;
        b.pinned_ = true;
    }
    return b;
}

void Buffer::reset() {
    if (data_) {
        if (pinned_) {
            g_pinned_allocator.free(data_);
        } else if (device_ == Device::kCPU) {
            std::free(data_);
        } else if (const DeviceAllocator& a = allocator_of(device_); a.free) {
            a.free(data_);
        }
    }
    data_ = nullptr;
    bytes_ = 0;
    pinned_ = false;
}

Tensor Buffer::view(DType dt, std::initializer_list<int64_t> dims, size_t byte_offset) const {
    Tensor t = Tensor::make(static_cast<char*>(data_) + byte_offset, dt, device_, dims);
    VOXRT_ASSERT(byte_offset + t.nbytes() <= bytes_, "view %s at +%zu exceeds buffer of %zu bytes",
                 t.describe().c_str(), byte_offset, bytes_);
    return t;
}

}  // namespace voxrt
