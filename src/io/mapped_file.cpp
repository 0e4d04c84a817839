#include "io/mapped_file.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

namespace voxrt::io {

Status open_error(const std::string& path, int err) {
    return make_error(
        err == ENOENT || err == ENOTDIR ? StatusCode::kNotFound : StatusCode::kInvalidFile,
        "%s: cannot open: %s", path.c_str(), std::strerror(err));
}

const char* file_kind(const struct stat& st) {
    if (S_ISREG(st.st_mode)) return "a regular file";
    if (S_ISDIR(st.st_mode)) return "a directory";
    if (S_ISFIFO(st.st_mode)) return "a FIFO";
    if (S_ISCHR(st.st_mode)) return "a character device";
    if (S_ISBLK(st.st_mode)) return "a block device";
    if (S_ISSOCK(st.st_mode)) return "a socket";
    return "not a regular file";
}

Expected<int> open_regular_file(const std::string& path, struct stat* st) {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return open_error(path, errno);
    if (fstat(fd, st) != 0) {
        int err = errno;
        ::close(fd);
        return make_error(StatusCode::kInvalidFile, "%s: cannot stat: %s", path.c_str(),
                          std::strerror(err));
    }
    if (!S_ISREG(st->st_mode)) {
        ::close(fd);
        return make_error(StatusCode::kInvalidFile, "%s: is %s, not a regular file", path.c_str(),
                          file_kind(*st));
    }
    const int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int err = errno;
        ::close(fd);
        return make_error(StatusCode::kInvalidFile, "%s: cannot open: %s", path.c_str(),
                          std::strerror(err));
    }
    return fd;
}

MappedFile::~MappedFile() {
    if (data_ && size_) munmap(const_cast<uint8_t*>(data_), size_);
}

MappedFile::MappedFile(MappedFile&& o) noexcept {
    *this = std::move(o);
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        if (data_ && size_) munmap(const_cast<uint8_t*>(data_), size_);
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        path_ = std::move(o.path_);
    }
    return *this;
}

Expected<MappedFile> MappedFile::open(const std::string& path) {
    struct stat st {};
    VOXRT_ASSIGN_OR_RETURN(int fd, open_regular_file(path, &st));
    if (st.st_size <= 0) {
        ::close(fd);
        return make_error(StatusCode::kInvalidFile, "%s: file is empty", path.c_str());
    }
    size_t size = static_cast<size_t>(st.st_size);
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    if (p == MAP_FAILED) {
        return make_error(StatusCode::kInvalidFile, "%s: mmap failed: %s", path.c_str(),
                          std::strerror(err));
    }
    MappedFile f;
    f.data_ = static_cast<const uint8_t*>(p);
    f.size_ = size;
    f.path_ = path;
    return f;
}

Expected<std::string> read_text_file(const std::string& path, size_t max_bytes) {
    struct stat st {};
    VOXRT_ASSIGN_OR_RETURN(int fd, open_regular_file(path, &st));
    if (static_cast<uint64_t>(st.st_size) > max_bytes) {
        ::close(fd);
        return make_error(StatusCode::kInvalidFile,
                          "%s: file of %lld bytes exceeds the %zu-byte limit", path.c_str(),
                          static_cast<long long>(st.st_size), max_bytes);
    }
    std::string out(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < out.size()) {
        ssize_t r = ::read(fd, out.data() + got, out.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += static_cast<size_t>(r);
    }
    ::close(fd);
    out.resize(got);
    return out;
}

}  // namespace voxrt::io
