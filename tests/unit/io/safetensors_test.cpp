#include "io/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "util/test_paths.h"

namespace voxrt::io {
namespace {

// Builds a safetensors image: 8-byte little-endian header length, header JSON, data bytes.
std::vector<uint8_t> image(const std::string& header, size_t data_bytes,
                           uint64_t declared_len = UINT64_MAX) {
    uint64_t n = declared_len == UINT64_MAX ? header.size() : declared_len;
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
    out.insert(out.end(), header.begin(), header.end());
    out.resize(out.size() + data_bytes, 0x11);
    return out;
}

Status parse(const std::vector<uint8_t>& img) {
    auto r = parse_safetensors(img.data(), img.size(), "t.safetensors");
    return r.is_ok() ? Status::ok() : r.status();
}

TEST(SafeTensors, ParsesValidFile) {
    auto img =
        image(R"({"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
              R"("b":{"dtype":"F32","shape":[],"data_offsets":[12,16]},"__metadata__":{"k":"v"}})",
              16);
    auto r = parse_safetensors(img.data(), img.size(), "t");
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    ASSERT_EQ(r->tensors.size(), 2u);
    EXPECT_EQ(r->tensors[0].name, "a");
    EXPECT_EQ(r->metadata.at("k"), "v");
}

struct BadCase {
    const char* what;
    std::vector<uint8_t> img;
    const char* needle;
};

TEST(SafeTensors, RejectsEveryMalformedHeader) {
    const std::string ok_t = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    std::vector<BadCase> cases = {
        {"too small", std::vector<uint8_t>(5, 0), "too small"},
        {"header > 100MB", image(ok_t, 8, 200'000'000), "100 MB"},
        {"header > file", image(ok_t, 8, 100000), "exceeds the file size"},
        {"not json", image("{nope", 0), "not valid JSON"},
        {"not object", image("[1,2]", 0), "not a JSON object"},
        {"unknown dtype", image(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8),
         "unknown dtype"},
        {"byte count", image(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
         "expected 12"},
        {"overflow",
         image(
             R"({"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]}})",
             8),
         "overflows"},
        {"negative dim", image(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
         "non-negative"},
        {"gap", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), "gap"},
        {"overlap",
         image(
             R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
             12),
         "overlapping"},
        {"trailing bytes", image(ok_t, 12), "after the header"},
        {"truncated data", image(ok_t, 4), "beyond the data section"},
        {"duplicate key",
         image(
             R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
             8),
         "duplicate"},
        {"metadata not str", image(R"({"__metadata__":{"k":1}})", 0), "not a string"},
        {"NUL in header", image(std::string("{\"a\0\":1}", 8), 0), "NUL"},
        {"end < begin", image(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
         "end < begin"},
    };
    for (const auto& c : cases) {
        Status s = parse(c.img);
        EXPECT_FALSE(s.is_ok()) << c.what;
        EXPECT_NE(s.message().find(c.needle), std::string::npos) << c.what << ": " << s.message();
    }
}

TEST(SafeTensors, TruncationSweepNeverCrashes) {
    auto img = image(
        R"({"a":{"dtype":"BF16","shape":[4,4],"data_offsets":[0,32]},"b":{"dtype":"I64","shape":[3],"data_offsets":[32,56]}})",
        56);
    for (size_t cut = 0; cut < img.size(); ++cut) {
        auto r = parse_safetensors(img.data(), cut, "t");
        EXPECT_FALSE(r.is_ok()) << cut;
    }
    EXPECT_TRUE(parse_safetensors(img.data(), img.size(), "t").is_ok());
}

TEST(SafeTensors, FileGetChecksShapeAndDtype) {
    std::string dir = test::make_temp_dir("st");
    std::string path = dir + "/m.safetensors";
    auto img = image(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})", 8);
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(img.data()), img.size());
    auto f = SafeTensorsFile::open(path);
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    EXPECT_TRUE(f->get("w", DType::kBF16, {2, 2}).is_ok());
    auto bad_shape = f->get("w", DType::kBF16, {4});
    ASSERT_FALSE(bad_shape.is_ok());
    EXPECT_NE(bad_shape.status().message().find("expected [4]"), std::string::npos);
    auto bad_dtype = f->get("w", DType::kF32, {2, 2});
    ASSERT_FALSE(bad_dtype.is_ok());
    EXPECT_NE(bad_dtype.status().message().find("expected F32"), std::string::npos);
    auto missing = f->get("x", DType::kF32, {1});
    ASSERT_FALSE(missing.is_ok());
    EXPECT_NE(missing.status().message().find("\"x\" is missing"), std::string::npos);
    EXPECT_EQ(SafeTensorsFile::open(dir + "/nope.safetensors").status().code(),
              StatusCode::kNotFound);
    EXPECT_EQ(SafeTensorsFile::open(dir).status().code(), StatusCode::kInvalidFile);
}

}  // namespace
}  // namespace voxrt::io
