// tokenizer.json limits (file size, JSON values, vocabulary) and the text limit of
// encode_checked(); the largest accepted file loads in bounded memory.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "text/bpe.h"
#include "text/tokenizer.h"
#include "unit/io/mem_probe.h"
#include "util/test_paths.h"

namespace voxrt::text {
namespace {

Tokenizer tiny() {
    auto t = Tokenizer::load(test::data_dir() + "/tokenizer/tiny/tokenizer.json");
    EXPECT_TRUE(t.is_ok()) << t.status().message();
    return t.is_ok() ? *t : Tokenizer();
}

// A BPE tokenizer.json with `n` vocabulary entries, each name `width` characters long, no merges
// and no pre-tokenizer.
std::string vocab_file(size_t n, size_t width) {
    std::string s = R"({"added_tokens":[],"pre_tokenizer":null,"decoder":null,)"
                    R"("model":{"type":"BPE","merges":[],"vocab":{)";
    s.reserve(n * (width + 12) + 256);
    char name[32];
    for (size_t i = 0; i < n; ++i) {
        std::snprintf(name, sizeof name, "%zx", i);
        if (i) s += ',';
        s += '"';
        s.append(width - std::string(name).size(), 'v');
        s += name;
        s += "\":";
        s += std::to_string(i);
    }
    s += "}}}";
    return s;
}

TEST(TokenizerLimits, EncodeCheckedRefusesLongTextByField) {
    const Tokenizer tok = tiny();
    const std::string at_limit(kMaxTextBytes, 'a');
    auto ok = tok.encode_checked(at_limit);
    ASSERT_TRUE(ok.is_ok()) << ok.status().message();
    EXPECT_EQ(*ok, tok.encode(at_limit));
    auto over = tok.encode_checked(at_limit + "a", kMaxTextBytes, "tts.text");
    ASSERT_FALSE(over.is_ok());
    EXPECT_EQ(over.status().code(), StatusCode::kOutOfRange);
    EXPECT_EQ(over.status().message(),
              "tts.text: 524289 bytes of text exceed the limit of 524288 bytes");
    auto small = tok.encode_checked("hello world", 5, "chat.message");
    ASSERT_FALSE(small.is_ok());
    EXPECT_NE(small.status().message().find("chat.message: 11 bytes"), std::string::npos);
}

TEST(TokenizerLimits, TooManyJsonValuesRefusedBeforeParsing) {
    std::string s = R"({"model":[0)";
    s.reserve(2 * kMaxJsonValues + 64);
    for (size_t i = 0; i < kMaxJsonValues; ++i) s += ",0";
    s += "]}";
    const auto t0 = std::chrono::steady_clock::now();
    auto r = Tokenizer::load_from_string(s, "values.json");
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("values.json: up to 4194308 JSON values and keys, more "
                                        "than the limit of 4194304"),
              std::string::npos)
        << r.status().message();
    EXPECT_LT(ms, test::kUnderAsan ? 5000.0 : 500.0);  // a scan, not a parse
}

TEST(TokenizerLimits, OversizedTextRefused) {
    const std::string big(kMaxTokenizerFileBytes + 1, ' ');
    auto r = Tokenizer::load_from_string(big, "big.json");
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("big.json: 67108865 bytes exceeds the 67108864 byte limit"),
              std::string::npos)
        << r.status().message();
}

TEST(TokenizerLimits, OneVocabEntryTooManyRefused) {
    auto r = Tokenizer::load_from_string(vocab_file(kMaxVocabEntries + 1, 8), "vocab.json");
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("model.vocab: 1048577 entries (max 1048576)"),
              std::string::npos)
        << r.status().message();
}

// Added tokens: 1 MiB of content in all (256 tokens of 4,096 bytes), one byte more refused. At the
// old per-token limit alone, a 64 MiB file of 16,000 such tokens built a 4 GB matcher trie.
TEST(TokenizerLimits, AddedTokenContentInAll) {
    auto file = [](size_t n, size_t last_len) {
        std::string s = R"({"pre_tokenizer":null,"decoder":null,)"
                        R"("model":{"type":"BPE","merges":[],"vocab":{"a":0}},"added_tokens":[)";
        for (size_t i = 0; i < n; ++i) {
            std::string content = std::to_string(i) + "_";
            content.append((i + 1 == n ? last_len : kMaxAddedTokenBytes) - content.size(), 'x');
            if (i) s += ',';
            s += R"({"id":)" + std::to_string(i + 1) + R"(,"content":")" + content + R"("})";
        }
        return s + "]}";
    };
    const size_t n = kMaxAddedTokenTotalBytes / kMaxAddedTokenBytes;
    auto ok = Tokenizer::load_from_string(file(n, kMaxAddedTokenBytes), "added.json");
    ASSERT_TRUE(ok.is_ok()) << ok.status().message();
    EXPECT_EQ(ok->vocab_size(), static_cast<int32_t>(n + 1));
    std::string text = "a7_";
    text.append(kMaxAddedTokenBytes - 2, 'x');
    EXPECT_EQ(ok->encode(text), (std::vector<int32_t>{0, 8}));
    auto over = Tokenizer::load_from_string(file(n + 1, 16), "added.json");
    ASSERT_FALSE(over.is_ok());
    EXPECT_NE(over.status().message().find("added.json: added_tokens[256]: the added tokens' "
                                           "content exceeds 1048576 bytes in all (the limit)"),
              std::string::npos)
        << over.status().message();
}

// The largest vocabulary accepted, with names long enough to make a 57 MiB file (near the
// 64 MiB limit): it loads in 3 s, and the JSON tree plus the BPE tables take at most 9 x the
// file (measured: 7.0 x; each entry is a ~50-byte string held by the JSON tree, the
// vocabulary map and the id table, each with its allocation and node overheads). Under
// AddressSanitizer the vocabulary is 1/8 as large and the bound is not applied.
TEST(TokenizerLimits, LargestVocabularyLoadsInBoundedMemory) {
    const size_t n = test::kUnderAsan ? kMaxVocabEntries / 8 : kMaxVocabEntries;
    std::string text = vocab_file(n, 48);
    ASSERT_LE(text.size(), kMaxTokenizerFileBytes);
    const bool can_measure = test::reset_peak_rss();
    const long before = test::rss_kib();
    const auto t0 = std::chrono::steady_clock::now();
    auto r = Tokenizer::load_from_string(text, "largest.json");
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const long peak = test::peak_rss_kib() - before;
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->vocab_size(), static_cast<int32_t>(n));
    const long file_kib = static_cast<long>(text.size() / 1024);
    std::printf("%zu entries, %ld KiB file: loaded in %.0f ms, peak RSS +%ld KiB (%.1f x)\n", n,
                file_kib, ms, peak, static_cast<double>(peak) / static_cast<double>(file_kib));
    if (can_measure && !test::kUnderAsan) {
        EXPECT_LE(peak, 9 * file_kib);
    }
}

}  // namespace
}  // namespace voxrt::text
