// Read-only memory map of a whole file. The size is taken with fstat before mapping, so callers
// can validate every offset against size() before touching a page (a truncated file would
// otherwise SIGBUS inside the mapping). Move-only; unmaps on destruction. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace voxrt::io {

class MappedFile {
public:
    MappedFile() = default;
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& o) noexcept;
    MappedFile& operator=(MappedFile&& o) noexcept;

    // Fails with kNotFound (missing), kInvalidFile (a directory, FIFO or device, or empty).
    static Expected<MappedFile> open(const std::string& path);

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

// Reads a whole regular file into memory, refusing files larger than max_bytes.
Expected<std::string> read_text_file(const std::string& path, size_t max_bytes);

}  // namespace voxrt::io
