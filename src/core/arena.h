// Arena: bump allocation of tensors from one device buffer, reset between uses. Sessions size
// their arenas once (from the worst case the config allows) so that steady-state steps never
// allocate. An allocation that does not fit is a sizing bug and aborts with the numbers.
// Not thread-safe.
#pragma once

#include <initializer_list>

#include "core/tensor.h"

namespace voxrt {

class Arena {
public:
    Arena() = default;
    // Returns false if the device allocation failed.
    bool reserve(Device dev, size_t bytes) {
        buffer_ = Buffer::allocate(dev, bytes);
        offset_ = 0;
        high_water_ = 0;
        return buffer_.data() != nullptr;
    }
    Tensor alloc(DType dt, std::initializer_list<int64_t> dims) {
        Tensor t = Tensor::make(nullptr, dt, buffer_.device(), dims);
        const size_t bytes = (t.nbytes() + 255) / 256 * 256;
        VOXRT_ASSERT(offset_ + bytes <= buffer_.size(),
                     "arena: %s needs %zu bytes, %zu of %zu used", t.describe().c_str(), bytes,
                     offset_, buffer_.size());
        t.data = static_cast<char*>(buffer_.data()) + offset_;
        offset_ += bytes;
        if (offset_ > high_water_) high_water_ = offset_;
        return t;
    }
    // Everything allocated after `mark` is released.
    size_t mark() const { return offset_; }
    void release(size_t mark) { offset_ = mark; }
    void reset() { offset_ = 0; }
    size_t capacity() const { return buffer_.size(); }
    size_t high_water() const { return high_water_; }
    Device device() const { return buffer_.device(); }

private:
    Buffer buffer_;
    size_t offset_ = 0;
    size_t high_water_ = 0;
};

// Returns an arena to the mark it was made at when it goes out of scope (early returns included).
class ArenaMark {
public:
    explicit ArenaMark(Arena& a) : arena_(a), mark_(a.mark()) {}
    ~ArenaMark() { arena_.release(mark_); }
    ArenaMark(const ArenaMark&) = delete;
    ArenaMark& operator=(const ArenaMark&) = delete;

private:
    Arena& arena_;
    size_t mark_;
};

// Bytes an arena needs for a tensor of this shape (with the arena's 256-byte alignment).
inline size_t arena_bytes(DType dt, int64_t numel) {
    return (static_cast<size_t>(numel) * dtype_size(dt) + 255) / 256 * 256;
}

}  // namespace voxrt
