// safetensors header limits: tensor count, JSON values, header length; the largest accepted
// headers parse in bounded time and memory.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "unit/io/mem_probe.h"

namespace voxrt::io {
namespace {

std::vector<uint8_t> image(const std::string& header, size_t data_bytes) {
    std::vector<uint8_t> out(8 + header.size() + data_bytes, 0);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(header.size() >> (8 * i));
    std::memcpy(out.data() + 8, header.data(), header.size());
    return out;
}

// n one-byte U8 tensors named t0, t1, ...
std::vector<uint8_t> many_tensors(size_t n) {
    std::string h = "{";
    for (size_t i = 0; i < n; ++i) {
        if (i) h += ",";
        h += "\"t" + std::to_string(i) + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" +
             std::to_string(i) + "," + std::to_string(i + 1) + "]}";
    }
    h += "}";
    return image(h, n);
}

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The most tensors accepted: parsed in well under a second (duplicate keys are found with a hash
// set; the linear search it replaced took seconds here), with its index.
TEST(SafeTensorsLimits, MostTensorsParseQuickly) {
    const auto img = many_tensors(kSafetensorsMaxTensors);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = parse_safetensors(img.data(), img.size(), "many.safetensors");
    const double ms = ms_since(t0);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->tensors.size(), kSafetensorsMaxTensors);
    std::printf("%zu tensors parsed in %.0f ms\n", kSafetensorsMaxTensors, ms);
    EXPECT_LT(ms, test::kUnderAsan ? 20000.0 : 3000.0);
}

TEST(SafeTensorsLimits, OneTensorTooManyIsRefused) {
    const auto img = many_tensors(kSafetensorsMaxTensors + 1);
    auto r = parse_safetensors(img.data(), img.size(), "many.safetensors");
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidFile);
    EXPECT_NE(r.status().message().find("many.safetensors: header lists 65537 tensors, more than "
                                        "the limit of 65536"),
              std::string::npos)
        << r.status().message();
}

// A shape of three million entries stops the parse at the value limit, before the tree holds
// them (the "more than 8 dimensions" check comes only after parsing).
TEST(SafeTensorsLimits, TooManyValuesIsRefusedWhileParsing) {
    std::string h = "{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1],\"shape\":[";
    for (size_t i = 0; i < 3'000'000; ++i) h += i ? ",1" : "1";
    h += "]}}";
    const auto img = image(h, 1);
    auto r = parse_safetensors(img.data(), img.size(), "wide.safetensors");
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find(
                  "wide.safetensors: header: more than 2097152 JSON values and keys (the limit)"),
              std::string::npos)
        << r.status().message();
}

TEST(SafeTensorsLimits, HeaderLengthOverTheLimitIsRefusedUnread) {
    std::vector<uint8_t> img(16, ' ');
    const uint64_t n = kSafetensorsMaxHeader + 1;
    for (int i = 0; i < 8; ++i) img[i] = static_cast<uint8_t>(n >> (8 * i));
    auto r = parse_safetensors(img.data(), img.size(), "big.safetensors");
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("big.safetensors: header length 100000001 exceeds the "
                                        "100 MB limit"),
              std::string::npos)
        << r.status().message();
}

// The longest header accepted (100 MB, almost all of it one metadata string) parses in memory of
// a small multiple of its length. The string passes through nlohmann's lexer twice (the limit
// check, then the tree), each time into a buffer that grows by doubling (128 MiB, with the
// 64 MiB one it replaces alive while copying), and the tree's copy is moved into the metadata
// map: measured 3.4 x the header. The bound is 4 x.
TEST(SafeTensorsLimits, LongestHeaderParsesInBoundedMemory) {
    const std::string head = R"({"__metadata__":{"k":")";
    const std::string tail = R"("},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
    std::string h = head;
    h.append(kSafetensorsMaxHeader - head.size() - tail.size(), 'x');
    h += tail;
    ASSERT_EQ(h.size(), kSafetensorsMaxHeader);
    auto img = image(h, 1);
    h = std::string();
    const bool can_measure = test::reset_peak_rss();
    const long before = test::rss_kib();
    auto r = parse_safetensors(img.data(), img.size(), "long.safetensors");
    const long peak = test::peak_rss_kib() - before;
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->metadata.at("k").size(), kSafetensorsMaxHeader - head.size() - tail.size());
    std::printf("a 100 MB header: peak RSS +%ld KiB\n", peak);
    if (can_measure && !test::kUnderAsan) {
        EXPECT_LE(peak, static_cast<long>(kSafetensorsMaxHeader / 1024 * 4));
    }
}

}  // namespace
}  // namespace voxrt::io
