// Where parity tests find their checkpoint + reference dumps, and on which device they run.
//   VOXRT_PARITY_DIR     a directory with model/ and dumps/ (default: tests/data/tiny)
//   VOXRT_PARITY_DEVICE  cpu (default) or cuda
// CI uses the defaults; the full-size GPU run sets both (docs/parity.md).
#pragma once

#include <cstdlib>
#include <string>

#include "core/tensor.h"
#include "util/test_paths.h"

namespace voxrt::test {

inline std::string parity_root() {
    const char* e = std::getenv("VOXRT_PARITY_DIR");
    return e && *e ? std::string(e) : data_dir() + "/tiny";
}

inline Device parity_device() {
    const char* e = std::getenv("VOXRT_PARITY_DEVICE");
    return e && std::string(e) == "cuda" ? Device::kCUDA : Device::kCPU;
}

}  // namespace voxrt::test
