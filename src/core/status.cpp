#include "core/status.h"

#include <cstdio>
#include <vector>

namespace voxrt {

const char* status_code_name(StatusCode code) {
    switch (code) {
        case StatusCode::kOk:
            return "ok";
        case StatusCode::kInvalidArgument:
            return "invalid argument";
        case StatusCode::kNotFound:
            return "not found";
        case StatusCode::kInvalidFile:
            return "invalid file";
        case StatusCode::kUnsupported:
            return "unsupported";
        case StatusCode::kOutOfMemory:
            return "out of memory";
        case StatusCode::kOutOfRange:
            return "out of range";
        case StatusCode::kDevice:
            return "device error";
        case StatusCode::kInternal:
            return "internal error";
    }
    return "unknown";
}

Status Status::with_context(const std::string& ctx) const {
    if (is_ok()) return *this;
    return Status(code_, ctx + ": " + message_);
}

Status make_error(StatusCode code, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    std::string msg;
    if (n > 0) {
        std::vector<char> buf(static_cast<size_t>(n) + 1);
        std::vsnprintf(buf.data(), buf.size(), fmt, ap2);
        msg.assign(buf.data(), static_cast<size_t>(n));
    }
    va_end(ap2);
    return Status(code, std::move(msg));
}

}  // namespace voxrt
