#include "util/test_paths.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

namespace voxrt::test {

std::string data_dir() {
    return VOXRT_TEST_DATA_DIR;
}
std::string cli_path() {
    return VOXRT_CLI_PATH;
}

std::string make_temp_dir(const std::string& tag) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / ("voxrt-" + tag + "-XXXXXX")).string();
    char* p = mkdtemp(tmpl.data());
    return p ? std::string(p) : std::string();
}

}  // namespace voxrt::test
