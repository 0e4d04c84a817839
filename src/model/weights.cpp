#include "model/weights.h"

#include <algorithm>

#include "core/bf16.h"
#include "core/thread_pool.h"
#include "model/quantize.h"

namespace voxrt::model {

const char* weight_quant_name(WeightQuant q) {
    switch (q) {
        case WeightQuant::kI8:
            return "int8";
        case WeightQuant::kF8E4M3:
            return "fp8";
        case WeightQuant::kI4:
            return "int4";
        default:
            return "none";
    }
}

Expected<Tensor> WeightStore::place(const Tensor& host) {
    if (ctx_.device == Device::kCPU) return host;
    Buffer b = Buffer::allocate(ctx_.device, host.nbytes());
    if (!b.data())
        return make_error(StatusCode::kOutOfMemory, "cannot allocate %zu bytes on %s for weights",
                          host.nbytes(), device_name(ctx_.device));
    Tensor dst = host;
    dst.data = b.data();
    dst.device = ctx_.device;
    ops::copy(ctx_, host, dst);
    owned_bytes_ += b.size();
    buffers_.push_back(std::move(b));
    return dst;
}

namespace {

// A floating-point parameter by name, with its shape checked: BF16, F32 or F16 as stored.
Expected<Tensor> float_tensor(const io::SafeTensorsFile& f, const std::string& name,
                              const std::vector<int64_t>& shape) {
    const io::TensorInfo* info = f.find(name);
    if (!info)
        return make_error(StatusCode::kNotFound, "%s: required tensor \"%s\" is missing",
                          f.path().c_str(), name.c_str());
    if (info->dtype != DType::kBF16 && info->dtype != DType::kF32 && info->dtype != DType::kF16)
        return make_error(StatusCode::kInvalidFile,
                          "%s: tensor \"%s\" has dtype %s, expected BF16 or F32", f.path().c_str(),
                          name.c_str(), info->dtype_name.c_str());
    return f.get(name, *info->dtype, shape);
}

}  // namespace

Expected<Tensor> WeightStore::fetch(const io::SafeTensorsFile& f, const std::string& name,
                                    const std::vector<int64_t>& shape) {
    VOXRT_ASSIGN_OR_RETURN(Tensor t, float_tensor(f, name, shape));
    if (t.dtype == DType::kF16) {
        std::vector<float> v(static_cast<size_t>(t.numel()));
        Tensor dst = t;
        dst.dtype = DType::kF32;
        dst.data = v.data();
        ops::Context cpu;
        ops::copy(cpu, t, dst);
        owned_bytes_ += v.size() * 4;
        host_f32_.push_back(std::move(v));
        dst.data = host_f32_.back().data();
        return place(dst);
    }
    return place(t);
}

Expected<std::vector<float>> WeightStore::fetch_host_f32(const io::SafeTensorsFile& f,
                                                         const std::string& name,
                                                         const std::vector<int64_t>& shape) {
    VOXRT_ASSIGN_OR_RETURN(Tensor t, float_tensor(f, name, shape));
    std::vector<float> v(static_cast<size_t>(t.numel()));
    Tensor dst = t;
    dst.dtype = DType::kF32;
    dst.data = v.data();
    ops::Context cpu;
    ops::copy(cpu, t, dst);
    return v;
}

Expected<Tensor> WeightStore::fetch_matrix(const io::SafeTensorsFile& f, const std::string& name,
                                           const std::vector<int64_t>& shape, bool tied) {
    if (quant_ == WeightQuant::kNone) return fetch(f, name, shape);
    if (shape.size() != 2)
        return make_error(StatusCode::kInternal, "%s: fetch_matrix(\"%s\") needs a 2-d shape",
                          f.path().c_str(), name.c_str());
    VOXRT_ASSIGN_OR_RETURN(Tensor t, float_tensor(f, name, shape));
    return quantize(t, f.path() + ": " + name, tied);
}

Expected<Tensor> WeightStore::quantize(const Tensor& t, const std::string& name, bool tied) {
    if (t.ndim != 2 || t.device != Device::kCPU)
        return make_error(StatusCode::kInternal, "%s: cannot quantize %s (a host matrix is needed)",
                          name.c_str(), t.describe().c_str());
    const DType dt = quant_ == WeightQuant::kI8   ? DType::kI8
                     : quant_ == WeightQuant::kI4 ? DType::kI4
                                                  : DType::kF8E4M3;
    const int64_t N = t.shape[0], K = t.shape[1];
    if (dt == DType::kI4) {
        if (ctx_.device != Device::kCPU)
            return make_error(StatusCode::kInvalidArgument,
                              "%s: int4 runs on the CPU only (the model's device is %s)",
                              name.c_str(), device_name(ctx_.device));
        if (K % kI4Group != 0)
            return make_error(StatusCode::kInvalidFile,
                              "%s: int4 needs the input dimension to be a multiple of the group "
                              "size %lld, got shape [%lld, %lld]",
                              name.c_str(), static_cast<long long>(kI4Group),
                              static_cast<long long>(N), static_cast<long long>(K));
    }
    // Codes per row (bytes) and scales per row.
    const int64_t row_bytes = dt == DType::kI4 ? K / 2 : K;
    const int64_t row_scales = dt == DType::kI4 ? K / kI4Group : 1;
    std::vector<uint8_t> codes(static_cast<size_t>(N * row_bytes));
    std::vector<float> scales(static_cast<size_t>(N * row_scales));
    // Rows are independent: each worker converts a row to F32 and quantizes it.
    auto work = [&](int64_t r0, int64_t r1) {
        std::vector<float> row(static_cast<size_t>(K));
        Tensor dst = Tensor::make(row.data(), DType::kF32, Device::kCPU, {K});
        ops::Context cpu;
        for (int64_t r = r0; r < r1; ++r) {
            if (t.dtype == DType::kBF16) {  // the checkpoint's dtype: widened inline
                const uint16_t* s = static_cast<const uint16_t*>(t.data) + r * K;
                for (int64_t k = 0; k < K; ++k) row[static_cast<size_t>(k)] = bf16_to_f32(s[k]);
            } else {
                Tensor src = t.row(r);
                ops::copy(cpu, src, dst);
            }
            quantize_row(dt, row.data(), K, codes.data() + r * row_bytes,
                         scales.data() + r * row_scales);
        }
    };
    if (ctx_.pool) {
        ctx_.pool->parallel_for(N, std::max<int64_t>(1, 65536 / std::max<int64_t>(K, 1)), work);
    } else {
        work(0, N);
    }
    const size_t stored = t.nbytes(), quantized = codes.size() + scales.size() * sizeof(float);
    saved_bytes_ += tied ? -static_cast<int64_t>(quantized)
                         : static_cast<int64_t>(stored) - static_cast<int64_t>(quantized);
    ++quantized_matrices_;

    Tensor host_q = Tensor::make(codes.data(), dt, Device::kCPU, {N, K});
    Tensor host_s = Tensor::make(scales.data(), DType::kF32, Device::kCPU, {N * row_scales});
    if (ctx_.device == Device::kCPU) {
        owned_bytes_ += quantized;
        host_u8_.push_back(std::move(codes));
        host_f32_.push_back(std::move(scales));
        host_q.data = host_u8_.back().data();
        host_q.scale = host_f32_.back().data();
        return host_q;
    }
    // A device: one upload for the codes, one for the scales; the host copies go with this scope.
    VOXRT_ASSIGN_OR_RETURN(Tensor dev_s, place(host_s));
    VOXRT_ASSIGN_OR_RETURN(Tensor dev_q, place(host_q));
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    dev_q.scale = static_cast<const float*>(dev_s.data);
    return dev_q;
}

template <class T>
Expected<Tensor> WeightStore::upload(std::deque<std::vector<T>>& keep, std::vector<T> host,
                                     DType dt, std::initializer_list<int64_t> shape) {
    keep.push_back(std::move(host));
    owned_bytes_ += keep.back().size() * sizeof(T);
    Tensor t = Tensor::make(keep.back().data(), dt, Device::kCPU, shape);
    VOXRT_ASSERT(static_cast<size_t>(t.numel()) == keep.back().size(),
                 "upload: shape %s for %zu values", t.describe().c_str(), keep.back().size());
    return place(t);
}

Expected<Tensor> WeightStore::upload_f32(std::vector<float> host,
                                         std::initializer_list<int64_t> shape) {
    return upload(host_f32_, std::move(host), DType::kF32, shape);
}

Expected<Tensor> WeightStore::upload_i32(std::vector<int32_t> host,
                                         std::initializer_list<int64_t> shape) {
    return upload(host_i32_, std::move(host), DType::kI32, shape);
}

}  // namespace voxrt::model
