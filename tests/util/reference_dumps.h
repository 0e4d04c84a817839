// The official package's recorded outputs (tests/data/tiny/dumps, or VOXRT_PARITY_DIR), for tests
// written against the public API: they see plain values, not the library's internal readers.
#pragma once

#include <voxrt/session.h>

#include <string>
#include <vector>

namespace voxrt::test {

// The greedy sequence of a liquid-audio run (dumps/<name>.safetensors: greedy.kind / text / codes),
// as response items; empty, with a test failure recorded, when it cannot be read.
std::vector<ResponseItem> greedy_reference(const std::string& name);
// VOXRT_PARITY_DIR (default tests/data/tiny): a directory with model/ and dumps/.
std::string parity_dir();
// VOXRT_PARITY_DEVICE: "cpu" (default) or "cuda".
std::string parity_device_name();

}  // namespace voxrt::test
