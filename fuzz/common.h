// Helpers shared by the fuzz targets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace voxrt::fuzz {

// An anonymous in-memory file holding data[0..size), for entry points that take a path: its path
// is "/proc/self/fd/N", a regular file as far as open()/fstat()/mmap() can tell. Closed on
// destruction.
class MemFile {
public:
    MemFile(const uint8_t* data, size_t size);
    ~MemFile();
    MemFile(const MemFile&) = delete;
    MemFile& operator=(const MemFile&) = delete;
    const std::string& path() const { return path_; }

private:
    int fd_ = -1;
    std::string path_;
};

// Stops the fuzzer with a message when a property that must hold does not (a finding).
[[noreturn]] void fail(const char* what, const std::string& detail);

}  // namespace voxrt::fuzz
