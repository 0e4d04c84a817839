// Read-only memory map of a whole file. The size is taken with fstat before mapping, so callers
// can validate every offset against size() before touching a page (a truncated file would
// otherwise SIGBUS inside the mapping). Move-only; unmaps on destruction. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/status.h"

struct stat;

namespace voxrt::io {

// The Status for a failed open() or stat() of `path` with errno `err`: kNotFound for ENOENT and
// ENOTDIR, kInvalidFile otherwise; the message names the path and the reason ("Too many levels of
// symbolic links", "Permission denied", ...).
Status open_error(const std::string& path, int err);

// What a file that is not a regular file is, for messages: "a directory", "a FIFO", "a device", ...
const char* file_kind(const struct stat& st);

// Opens `path` read-only, refusing anything but a regular file (kInvalidFile naming what it is)
// before a byte is read: the open itself never blocks, so a FIFO nobody writes cannot hang the
// caller. Returns a blocking, close-on-exec descriptor that the caller closes; fills *st.
Expected<int> open_regular_file(const std::string& path, struct stat* st);

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
