#include "model/weights.h"

namespace voxrt::model {

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
