// Replays every seed in fuzz/corpus/<target>/ through the fuzz targets' own code (compiled in
// here under other names), so that the corpora, and any input a fuzzer finds once it is fixed and
// added there, run in every ctest (Release and ASan + UBSan), without clang or libFuzzer.
// A property a target checks that does not hold aborts the test with "fuzz finding: ...".
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "util/test_paths.h"

#define LLVMFuzzerTestOneInput fuzz_one_wav
#include "../../../fuzz/wav_fuzz.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_safetensors
#include "../../../fuzz/safetensors_fuzz.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_config
#include "../../../fuzz/config_fuzz.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_tokenizer_json
#include "../../../fuzz/tokenizer_json_fuzz.cpp"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_bpe
#include "../../../fuzz/bpe_fuzz.cpp"
#undef LLVMFuzzerTestOneInput
#include "../../../fuzz/common.cpp"

namespace {

using Target = int (*)(const uint8_t*, size_t);

// Runs every file of fuzz/corpus/<name>/ through `fn`; returns how many there were.
size_t replay(const std::string& name, Target fn) {
    const std::filesystem::path dir =
        std::filesystem::path(voxrt::test::data_dir()) / ".." / ".." / "fuzz" / "corpus" / name;
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        std::ifstream f(e.path(), std::ios::binary);
        const std::vector<char> bytes((std::istreambuf_iterator<char>(f)),
                                      std::istreambuf_iterator<char>());
        SCOPED_TRACE(e.path().string());
        fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
        ++n;
    }
    return n;
}

TEST(FuzzCorpus, Wav) {
    EXPECT_GE(replay("wav", fuzz_one_wav), 8u);
}
TEST(FuzzCorpus, Safetensors) {
    EXPECT_GE(replay("safetensors", fuzz_one_safetensors), 2u);
}
TEST(FuzzCorpus, Config) {
    EXPECT_GE(replay("config", fuzz_one_config), 2u);
}
TEST(FuzzCorpus, TokenizerJson) {
    EXPECT_GE(replay("tokenizer_json", fuzz_one_tokenizer_json), 2u);
}
TEST(FuzzCorpus, Bpe) {
    EXPECT_GE(replay("bpe", fuzz_one_bpe), 20u);
}

}  // namespace
