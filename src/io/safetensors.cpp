#include "io/safetensors.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "io/json.h"

namespace voxrt::io {

namespace {

struct DTypeEntry {
    const char* name;
    int bits;
    std::optional<DType> dtype;
};

// The closed list of dtypes the safetensors format defines.
const DTypeEntry kDTypes[] = {
    {"BOOL", 8, DType::kBool},
    {"U8", 8, DType::kU8},
    {"I8", 8, DType::kI8},
    {"I16", 16, DType::kI16},
    {"U16", 16, std::nullopt},
    {"F16", 16, DType::kF16},
    {"BF16", 16, DType::kBF16},
    {"I32", 32, DType::kI32},
    {"U32", 32, std::nullopt},
    {"F32", 32, DType::kF32},
    {"F64", 64, DType::kF64},
    {"I64", 64, DType::kI64},
    {"U64", 64, std::nullopt},
    {"C64", 64, std::nullopt},
    {"F8_E5M2", 8, std::nullopt},
    {"F8_E4M3", 8, std::nullopt},
    {"F8_E8M0", 8, std::nullopt},
    {"F8_E4M3FNUZ", 8, std::nullopt},
    {"F8_E5M2FNUZ", 8, std::nullopt},
    {"F4", 4, std::nullopt},
    {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt},
};

const DTypeEntry* find_dtype(const std::string& name) {
    for (const auto& e : kDTypes)
        if (name == e.name) return &e;
    return nullptr;
}

bool mul_overflow(uint64_t a, uint64_t b, uint64_t* out) {
    return __builtin_mul_overflow(a, b, out);
}

Status bad(const std::string& label, const std::string& what) {
    return Status(StatusCode::kInvalidFile, label + ": " + what);
}

}  // namespace

std::string shape_to_string(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

Expected<SafeTensorsHeader> parse_safetensors(const uint8_t* data, size_t size,
                                              const std::string& label) {
    if (size < 8)
        return bad(label, "file of " + std::to_string(size) +
                              " bytes is too small for a safetensors header");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (n > kSafetensorsMaxHeader)
        return bad(label, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
    if (n > size - 8)
        return bad(label, "header length " + std::to_string(n) + " exceeds the file size " +
                              std::to_string(size) + " (truncated file?)");
    const char* hdr = reinterpret_cast<const char*>(data + 8);
    if (n == 0 || hdr[0] != '{') return bad(label, "header is not a JSON object");
    if (std::memchr(hdr, '\0', n) != nullptr) return bad(label, "header contains a NUL byte");

    // Limits, nesting and duplicate keys first, in one streaming pass; then the tree.
    JsonLimits limits;
    limits.max_depth = 8;
    limits.max_values = kSafetensorsMaxValues;
    limits.reject_duplicate_keys = true;
    const std::string_view text(hdr, n);
    VOXRT_RETURN_IF_ERROR(check_json(text, limits, label + ": header"));
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text.begin(), text.end());
    } catch (const std::exception& e) {
        return bad(label, std::string("header: not valid JSON: ") + e.what());
    }
    if (!j.is_object()) return bad(label, "header is not a JSON object");

    const size_t entries = j.size() - (j.contains("__metadata__") ? 1 : 0);
    if (entries > kSafetensorsMaxTensors)
        return bad(label, "header lists " + std::to_string(entries) + " tensors, more than the " +
                              "limit of " + std::to_string(kSafetensorsMaxTensors));
    SafeTensorsHeader out;
    out.data_start = 8 + n;
    const uint64_t data_size = size - out.data_start;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        if (name == "__metadata__") {
            if (!it->is_object()) return bad(label, "__metadata__ is not an object");
            for (auto m = it->begin(); m != it->end(); ++m) {
                if (!m->is_string())
                    return bad(label, "__metadata__[\"" + m.key() + "\"] is not a string");
                out.metadata[m.key()] = std::move(m->get_ref<std::string&>());
            }
            continue;
        }
        const auto& t = *it;
        std::string where = "tensor \"" + name + "\"";
        if (!t.is_object()) return bad(label, where + " entry is not an object");
        if (!t.contains("dtype") || !t["dtype"].is_string())
            return bad(label, where + ": missing dtype");
        if (!t.contains("shape") || !t["shape"].is_array())
            return bad(label, where + ": missing shape");
        if (!t.contains("data_offsets") || !t["data_offsets"].is_array() ||
            t["data_offsets"].size() != 2)
            return bad(label, where + ": data_offsets must be [begin, end]");
        TensorInfo info;
        info.name = name;
        info.dtype_name = t["dtype"].get<std::string>();
        const DTypeEntry* de = find_dtype(info.dtype_name);
        if (!de) return bad(label, where + ": unknown dtype " + info.dtype_name);
        info.dtype = de->dtype;
        if (t["shape"].size() > 8) return bad(label, where + ": more than 8 dimensions");
        uint64_t numel = 1;
        for (const auto& d : t["shape"]) {
            if (!d.is_number_unsigned())
                return bad(label, where + ": shape entries must be non-negative integers");
            uint64_t v = d.get<uint64_t>();
            if (v > (uint64_t{1} << 62) || mul_overflow(numel, v, &numel))
                return bad(label, where + ": shape product overflows");
            info.shape.push_back(static_cast<int64_t>(v));
        }
        uint64_t bits = 0;
        if (mul_overflow(numel, static_cast<uint64_t>(de->bits), &bits))
            return bad(label, where + ": byte size overflows");
        if (bits % 8 != 0) return bad(label, where + ": size is not a whole number of bytes");
        const auto& off = t["data_offsets"];
        if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            return bad(label, where + ": data_offsets must be non-negative integers");
        info.begin = off[0].get<uint64_t>();
        info.end = off[1].get<uint64_t>();
        if (info.end < info.begin) return bad(label, where + ": data_offsets end < begin");
        if (info.end - info.begin != bits / 8)
            return bad(label, where + ": " + std::to_string(info.end - info.begin) +
                                  " bytes of data for shape " + shape_to_string(info.shape) + " " +
                                  info.dtype_name + " (expected " + std::to_string(bits / 8) + ")");
        if (info.end > data_size)
            return bad(label, where + ": data ends at byte " + std::to_string(info.end) +
                                  " beyond the data section of " + std::to_string(data_size) +
                                  " bytes (truncated file?)");
        out.tensors.push_back(std::move(info));
    }
    std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t expect = 0;
    for (const auto& t : out.tensors) {
        if (t.begin != expect)
            return bad(
                label,
                "tensor \"" + t.name + "\" starts at byte " + std::to_string(t.begin) +
                    (t.begin < expect ? " overlapping the previous tensor" : " leaving a gap") +
                    " (expected " + std::to_string(expect) + ")");
        expect = t.end;
    }
    if (expect != data_size)
        return bad(label, "tensor data covers " + std::to_string(expect) +
                              " bytes but the file has " + std::to_string(data_size) +
                              " bytes after the header");
    return out;
}

Expected<SafeTensorsFile> SafeTensorsFile::open(const std::string& path) {
    VOXRT_ASSIGN_OR_RETURN(MappedFile mf, MappedFile::open(path));
    VOXRT_ASSIGN_OR_RETURN(SafeTensorsHeader h, parse_safetensors(mf.data(), mf.size(), path));
    SafeTensorsFile f;
    f.file_ = std::move(mf);
    f.header_ = std::move(h);
    for (size_t i = 0; i < f.header_.tensors.size(); ++i) f.index_[f.header_.tensors[i].name] = i;
    return f;
}

const TensorInfo* SafeTensorsFile::find(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

Expected<Tensor> SafeTensorsFile::get(std::string_view name) const {
    const TensorInfo* info = find(name);
    if (!info)
        return make_error(StatusCode::kNotFound, "%s: tensor \"%.*s\" not found", path().c_str(),
                          static_cast<int>(name.size()), name.data());
    if (!info->dtype)
        return make_error(StatusCode::kUnsupported, "%s: tensor \"%s\" has unsupported dtype %s",
                          path().c_str(), info->name.c_str(), info->dtype_name.c_str());
    if (info->shape.size() > static_cast<size_t>(kMaxDims))
        return make_error(StatusCode::kUnsupported, "%s: tensor \"%s\" has %zu dimensions (max %d)",
                          path().c_str(), info->name.c_str(), info->shape.size(), kMaxDims);
    Tensor t;
    t.data = const_cast<uint8_t*>(file_.data() + header_.data_start + info->begin);
    t.dtype = *info->dtype;
    t.device = Device::kCPU;
    t.ndim = static_cast<int>(info->shape.size());
    for (int i = 0; i < t.ndim; ++i) t.shape[i] = info->shape[i];
    if (t.ndim == 0) {  // a scalar: view it as [1]
        t.ndim = 1;
        t.shape[0] = 1;
    }
    return t;
}

Expected<Tensor> SafeTensorsFile::get(std::string_view name, DType dtype,
                                      std::initializer_list<int64_t> shape) const {
    return get(name, dtype, std::vector<int64_t>(shape));
}

Expected<Tensor> SafeTensorsFile::get(std::string_view name, DType dtype,
                                      const std::vector<int64_t>& shape) const {
    const TensorInfo* info = find(name);
    if (!info)
        return make_error(StatusCode::kNotFound, "%s: required tensor \"%.*s\" is missing",
                          path().c_str(), static_cast<int>(name.size()), name.data());
    if (info->shape != shape)
        return make_error(StatusCode::kInvalidFile, "%s: tensor \"%s\" has shape %s, expected %s",
                          path().c_str(), info->name.c_str(), shape_to_string(info->shape).c_str(),
                          shape_to_string(shape).c_str());
    if (!info->dtype || *info->dtype != dtype)
        return make_error(StatusCode::kInvalidFile, "%s: tensor \"%s\" has dtype %s, expected %s",
                          path().c_str(), info->name.c_str(), info->dtype_name.c_str(),
                          dtype_name(dtype));
    return get(name);
}

}  // namespace voxrt::io
