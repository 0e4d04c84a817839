#include "common.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace voxrt::fuzz {

MemFile::MemFile(const uint8_t* data, size_t size) {
    fd_ = ::memfd_create("voxrt-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) fail("memfd_create failed", "");
    size_t off = 0;
    while (off < size) {
        const ssize_t w = ::write(fd_, data + off, size - off);
        if (w <= 0) fail("write to memfd failed", "");
        off += static_cast<size_t>(w);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
}

MemFile::~MemFile() {
    if (fd_ >= 0) ::close(fd_);
}

void fail(const char* what, const std::string& detail) {
    std::fprintf(stderr, "fuzz finding: %s\n%s\n", what, detail.c_str());
    std::abort();
}

}  // namespace voxrt::fuzz
