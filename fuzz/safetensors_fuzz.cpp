// safetensors header and index: parse_safetensors on the bytes, then SafeTensorsFile::open on the
// same bytes as a file (mmap) and a read of every tensor's first and last byte through get(), so
// that any offset the validator lets through is checked by AddressSanitizer against the mapping.
#include <string>

#include "common.h"
#include "io/safetensors.h"

using namespace voxrt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto parsed = io::parse_safetensors(data, size, "fuzz.safetensors");
    if (!parsed.is_ok()) {
        if (parsed.status().message().find("fuzz.safetensors") == std::string::npos)
            fuzz::fail("error does not name the file", parsed.status().message());
        return 0;
    }
    if (parsed->tensors.size() > io::kSafetensorsMaxTensors)
        fuzz::fail("more tensors than the limit", std::to_string(parsed->tensors.size()));
    if (size == 0) return 0;
    fuzz::MemFile file(data, size);
    auto f = io::SafeTensorsFile::open(file.path());
    if (!f.is_ok())
        fuzz::fail("open() refuses what parse_safetensors accepted", f.status().message());
    unsigned sum = 0;
    for (const io::TensorInfo& info : f->tensors()) {
        if (!f->contains(info.name)) fuzz::fail("index misses a tensor", info.name);
        auto t = f->get(info.name);
        if (!t.is_ok() || info.end == info.begin) continue;
        const auto* b = static_cast<const uint8_t*>(t->data);
        sum += b[0] + b[info.end - info.begin - 1];
    }
    return static_cast<int>(sum & 0);
}
