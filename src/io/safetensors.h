// Validated safetensors reader.
//
// The header is checked completely before any tensor byte is touched, following the reference
// implementation's rules: header length <= 100 MB and inside the file, UTF-8 JSON object, known
// dtypes, shape products computed with overflow checks, data_offsets sorted with no gaps and no
// overlap, byte counts equal to numel * dtype size, and the data section exactly covering the rest
// of the file (no trailing bytes). Tensor data is mmap-ed, never copied.
// Thread-compatible: a const SafeTensorsFile can be read from many threads.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "io/mapped_file.h"

namespace voxrt::io {

// Limits on the header, checked while it is parsed (the parse stops at the first excess), so that
// its JSON tree stays within a small multiple of the header's size: the reference's 100 MB cap on
// the header length, at most kSafetensorsMaxTensors entries (the published checkpoint has about
// 1,000 tensors in model.safetensors) and kSafetensorsMaxValues JSON values in all.
constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;
constexpr size_t kSafetensorsMaxTensors = size_t{1} << 16;
constexpr size_t kSafetensorsMaxValues = size_t{1} << 21;

struct TensorInfo {
    std::string name;
    std::string dtype_name;      // as written in the file, e.g. "BF16", "F8_E4M3"
    std::optional<DType> dtype;  // empty for dtypes voxrt cannot compute with
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // byte offsets relative to the data section
    uint64_t end = 0;
};

struct SafeTensorsHeader {
    std::vector<TensorInfo> tensors;  // in file order of data_offsets
    std::map<std::string, std::string> metadata;
    uint64_t data_start = 0;  // 8 + header length
};

// Parses and validates a whole safetensors image held in memory (file bytes). `label` names the
// file in error messages. Pure function, used by the fuzz target.
Expected<SafeTensorsHeader> parse_safetensors(const uint8_t* data, size_t size,
                                              const std::string& label);

class SafeTensorsFile {
public:
    static Expected<SafeTensorsFile> open(const std::string& path);

    const std::string& path() const { return file_.path(); }
    const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
    const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
    const TensorInfo* find(std::string_view name) const;
    bool contains(std::string_view name) const { return find(name) != nullptr; }

    // A CPU view of the named tensor's bytes (any supported dtype).
    Expected<Tensor> get(std::string_view name) const;
    // Same, checking dtype and shape; the error names the tensor, the expected and actual values.
    Expected<Tensor> get(std::string_view name, DType dtype,
                         std::initializer_list<int64_t> shape) const;
    Expected<Tensor> get(std::string_view name, DType dtype,
                         const std::vector<int64_t>& shape) const;

private:
    MappedFile file_;
    SafeTensorsHeader header_;
    std::map<std::string, size_t, std::less<>> index_;
};

// "[2, 3]"
std::string shape_to_string(const std::vector<int64_t>& shape);

}  // namespace voxrt::io
