// voxrt/status.h — errors as values: Status and Expected<T>. No voxrt call throws; every call that
// can fail because of its input (a file, an option, a request) returns one of these.
//
// Messages name the file, option or field at fault, prefixed by the component that failed
// ("[safetensors] model.safetensors: header length 9e18 exceeds file size 1024"). Invariants that
// can only fail through a bug abort instead (they are not errors a caller can handle).
// Status and Expected are values: copyable/movable, thread-compatible.
#pragma once

#include <cstdarg>
#include <optional>
#include <string>
#include <utility>

namespace voxrt {

enum class StatusCode : int {
    kOk = 0,
    kInvalidArgument,  // a caller-supplied value is out of range or malformed
    kNotFound,         // a file or a named tensor/field is missing
    kInvalidFile,      // a file exists but its contents are malformed
    kUnsupported,      // valid input that this build does not handle (e.g. 8-bit PCM, CUDA off)
    kOutOfMemory,      // host or device allocation failed
    kOutOfRange,       // a length exceeds a fixed capacity (context, duration caps)
    kDevice,           // a CUDA / driver error
    kInternal,         // a bug; should not happen
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

    static Status ok() { return {}; }
    bool is_ok() const { return code_ == StatusCode::kOk; }
    explicit operator bool() const { return is_ok(); }
    StatusCode code() const { return code_; }
    const std::string& message() const { return message_; }

    // Prepends context, e.g. the file being read: "<ctx>: <message>".
    Status with_context(const std::string& ctx) const;

private:
    StatusCode code_ = StatusCode::kOk;
    std::string message_;
};

// printf-style constructor for errors: make_error(StatusCode::kInvalidFile, "[wav] %s: ...", path)
Status make_error(StatusCode code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Value or error. Thread-compatible; cheap to move.
template <class T>
class [[nodiscard]] Expected {
public:
    Expected(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
    Expected(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

    bool is_ok() const { return value_.has_value(); }
    explicit operator bool() const { return is_ok(); }
    const Status& status() const { return status_; }

    T& value() & { return *value_; }
    const T& value() const& { return *value_; }
    T&& value() && { return std::move(*value_); }
    T* operator->() { return &*value_; }
    const T* operator->() const { return &*value_; }
    T& operator*() & { return *value_; }
    const T& operator*() const& { return *value_; }
    T&& operator*() && { return std::move(*value_); }

private:
    std::optional<T> value_;
    Status status_;
};

}  // namespace voxrt

// Helpers for code built on the API (the library uses them too).
// Propagates a non-OK Status out of the calling function.
#define VOXRT_RETURN_IF_ERROR(expr)                       \
    do {                                                  \
        ::voxrt::Status voxrt_status_ = (expr);           \
        if (!voxrt_status_.is_ok()) return voxrt_status_; \
    } while (0)

#define VOXRT_CONCAT_INNER_(a, b) a##b
#define VOXRT_CONCAT_(a, b) VOXRT_CONCAT_INNER_(a, b)

// `VOXRT_ASSIGN_OR_RETURN(auto x, make_x());` — unwraps an Expected or returns its Status.
#define VOXRT_ASSIGN_OR_RETURN(lhs, expr)                    \
    auto VOXRT_CONCAT_(voxrt_exp_, __LINE__) = (expr);       \
    if (!VOXRT_CONCAT_(voxrt_exp_, __LINE__).is_ok())        \
        return VOXRT_CONCAT_(voxrt_exp_, __LINE__).status(); \
    lhs = std::move(VOXRT_CONCAT_(voxrt_exp_, __LINE__)).value()
