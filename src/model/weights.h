// WeightStore: fetches named tensors from checkpoint files onto the model's device.
//
// Every fetch checks the tensor's shape against the value the config implies and fails with a
// message naming the file, the tensor, the expected and the actual shape/dtype. BF16 and F32
// tensors are used as stored (zero-copy views into the mmap on the CPU; one upload per tensor on
// CUDA); F16 is converted to F32. Linear weights fetched through fetch_matrix() may instead be
// quantized at load (WeightQuant, docs/quantization.md). Derived tables (RoPE cos/sin, folded
// norms) are made on the host and placed through upload_f32. Owns what it uploads; must outlive
// every Tensor it returned. Not thread-safe (used during load only).
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

// Weight-only quantization of the matrices a model reads through fetch_matrix (core/quant.h):
// none (as stored), int8 or e4m3 codes with one F32 scale per output row, or int4 codes with one
// F32 scale per group of kI4Group inputs (host only: a device context refuses it).
enum class WeightQuant : uint8_t { kNone, kI8, kF8E4M3, kI4 };

const char* weight_quant_name(WeightQuant q);  // "none" | "int8" | "fp8" | "int4"

class WeightStore {
public:
    // ctx: the device context used for uploads (its device decides where tensors live).
    explicit WeightStore(const ops::Context& ctx, WeightQuant quant = WeightQuant::kNone)
        : ctx_(ctx), quant_(quant) {}
    WeightStore(const WeightStore&) = delete;
    WeightStore& operator=(const WeightStore&) = delete;

    Device device() const { return ctx_.device; }

    Expected<Tensor> fetch(const io::SafeTensorsFile& f, const std::string& name,
                           const std::vector<int64_t>& shape);
    // A linear layer's weight [N, K]: with quantization on, read as stored, quantized per row on
    // the host (rows spread over ctx.pool) and placed as codes + scales (Tensor::scale); otherwise
    // the same as fetch(). tied: the tensor is also used as stored (an embedding table whose
    // quantized copy is a head), so the copy adds bytes instead of saving them.
    Expected<Tensor> fetch_matrix(const io::SafeTensorsFile& f, const std::string& name,
                                  const std::vector<int64_t>& shape, bool tied = false);

    WeightQuant quant() const { return quant_; }
    // Quantized matrices: how many, and the bytes their bf16 (as-stored) originals would take
    // beyond their codes + scales.
    int quantized_matrices() const { return quantized_matrices_; }
    size_t quantization_saved_bytes() const {
        return saved_bytes_ > 0 ? static_cast<size_t>(saved_bytes_) : 0;
    }
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
    Expected<Tensor> quantize(const Tensor& t, const std::string& name, bool tied);
    template <class T>
    Expected<Tensor> upload(std::deque<std::vector<T>>& keep, std::vector<T> host, DType dt,
                            std::initializer_list<int64_t> shape);

    ops::Context ctx_;
    WeightQuant quant_ = WeightQuant::kNone;
    std::deque<Buffer> buffers_;
    std::deque<std::vector<uint8_t>> host_u8_;
    std::deque<std::vector<float>> host_f32_;
    std::deque<std::vector<int32_t>> host_i32_;
    size_t owned_bytes_ = 0;
    int quantized_matrices_ = 0;
    int64_t saved_bytes_ = 0;
};

}  // namespace voxrt::model
