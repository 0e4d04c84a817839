// WeightStore: fetches named tensors from checkpoint files onto the model's device.
//
// Every fetch checks the tensor's shape against the value the config implies and fails with a
// message naming the file, the tensor, the expected and the actual shape/dtype. BF16 and F32
// tensors are used as stored (zero-copy views into the mmap on the CPU; one upload per tensor on
// CUDA); F16 is converted to F32. Derived tables (RoPE cos/sin, folded norms) are made on the host
// and placed through upload_f32. Owns what it uploads; must outlive every Tensor it returned.
// Not thread-safe (used during load only).
#pragma once

#include <deque>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace voxrt::model {

class WeightStore {
public:
    // ctx: the device context used for uploads (its device decides where tensors live).
    explicit WeightStore(const ops::Context& ctx) : ctx_(ctx) {}
    WeightStore(const WeightStore&) = delete;
    WeightStore& operator=(const WeightStore&) = delete;

    Device device() const { return ctx_.device; }

    Expected<Tensor> fetch(const io::SafeTensorsFile& f, const std::string& name,
                           const std::vector<int64_t>& shape);
    // Fetches and converts to F32 (for parameters read on the host, e.g. BatchNorm statistics).
    Expected<std::vector<float>> fetch_host_f32(const io::SafeTensorsFile& f,
                                                const std::string& name,
                                                const std::vector<int64_t>& shape);
    // Places a host F32 table on the device.
    Expected<Tensor> upload_f32(std::vector<float> host, std::initializer_list<int64_t> shape);
    Expected<Tensor> upload_i32(std::vector<int32_t> host, std::initializer_list<int64_t> shape);

    // Bytes this store allocated (device copies and host tables; mmap views not counted).
    size_t owned_bytes() const { return owned_bytes_; }

private:
    Expected<Tensor> place(const Tensor& host);
    template <class T>
    Expected<Tensor> upload(std::deque<std::vector<T>>& keep, std::vector<T> host, DType dt,
                            std::initializer_list<int64_t> shape);

    ops::Context ctx_;
    std::deque<Buffer> buffers_;
    std::deque<std::vector<float>> host_f32_;
    std::deque<std::vector<int32_t>> host_i32_;
    size_t owned_bytes_ = 0;
};

}  // namespace voxrt::model
