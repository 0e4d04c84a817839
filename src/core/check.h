// Invariant checks. These abort with file:line and a message; they are for conditions that only a
// bug can violate. Anything driven by input (files, requests, CLI flags) returns a Status instead.
#pragma once

#include <cstdio>
#include <cstdlib>

#define VOXRT_ABORT(...)                                                  \
    do {                                                                  \
        std::fprintf(stderr, "voxrt: fatal %s:%d: ", __FILE__, __LINE__); \
        std::fprintf(stderr, __VA_ARGS__);                                \
        std::fprintf(stderr, "\n");                                       \
        std::abort();                                                     \
    } while (0)

// Always on: cheap checks of internal contracts.
#define VOXRT_ASSERT(cond, ...)                                                              \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            std::fprintf(stderr, "voxrt: assertion `%s` failed at %s:%d: ", #cond, __FILE__, \
                         __LINE__);                                                          \
            std::fprintf(stderr, __VA_ARGS__);                                               \
            std::fprintf(stderr, "\n");                                                      \
            std::abort();                                                                    \
        }                                                                                    \
    } while (0)

// Debug and sanitizer builds only.
#ifdef NDEBUG
#define VOXRT_DASSERT(cond, ...) ((void)0)
#else
#define VOXRT_DASSERT(cond, ...) VOXRT_ASSERT(cond, __VA_ARGS__)
#endif
