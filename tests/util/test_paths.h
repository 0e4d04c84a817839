// Paths to test fixtures, set by CMake.
#pragma once

#include <string>

namespace voxrt::test {

// tests/data in the source tree.
std::string data_dir();
// ../shared next to the checkout (real speech recordings).
std::string shared_dir();
// The built `voxrt` command-line binary.
std::string cli_path();
// A fresh empty temporary directory (removed at process exit is not guaranteed).
std::string make_temp_dir(const std::string& tag);

}  // namespace voxrt::test
