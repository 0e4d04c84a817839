#include "util/reference_dumps.h"

#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "util/compare.h"
#include "util/parity_env.h"

namespace voxrt::test {

std::vector<ResponseItem> greedy_reference(const std::string& name) {
    auto f = io::SafeTensorsFile::open(parity_root() + "/dumps/" + name + ".safetensors");
    EXPECT_TRUE(f.is_ok()) << f.status().message();
    if (!f.is_ok()) return {};
    auto kind = read_i64(*f, "greedy.kind"), text = read_i64(*f, "greedy.text"),
         codes = read_i64(*f, "greedy.codes");
    std::vector<ResponseItem> out;
    for (size_t i = 0; i < kind.size(); ++i) {
        ResponseItem it;
        it.is_frame = kind[i] != 0;
        if (it.is_frame) {
            for (int q = 0; q < 8; ++q)
                it.codes[static_cast<size_t>(q)] =
                    static_cast<int32_t>(codes[i * 8 + static_cast<size_t>(q)]);
        } else {
            it.token = static_cast<int32_t>(text[i]);
        }
        out.push_back(it);
    }
    return out;
}

std::string parity_dir() {
    return parity_root();
}

std::string parity_device_name() {
    return parity_device() == Device::kCUDA ? "cuda" : "cpu";
}

}  // namespace voxrt::test
