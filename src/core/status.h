// Status / Expected<T> are part of the public API (include/voxrt/status.h); this header adds the
// propagation macros the library uses internally.
#pragma once

#include "voxrt/status.h"

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
