// Paths to test fixtures, set by CMake.
#pragma once

#include <string>

namespace voxrt::test {

// tests/data in the source tree: everything the tests read.
std::string data_dir();
// The built `voxrt` command-line binary.
std::string cli_path();
// A fresh empty temporary directory (removed at process exit is not guaranteed).
std::string make_temp_dir(const std::string& tag);

}  // namespace voxrt::test
