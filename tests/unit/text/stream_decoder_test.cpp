// text::StreamDecoder: streamed pieces concatenate to exactly the whole-sequence decode, every
// piece is valid UTF-8, and a character split across byte-level tokens comes out whole.
#include "text/stream_decoder.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "text/tokenizer.h"
#include "text/utf8.h"
#include "util/test_paths.h"

namespace voxrt::text {
namespace {

std::string tokenizer_path() {
    return test::data_dir() + "/tiny/model/tokenizer.json";
}

const Tokenizer& tiny() {
    static const Tokenizer t = [] {
        auto r = Tokenizer::load(tokenizer_path());
        if (!r) {
            ADD_FAILURE() << r.status().message();
            std::abort();
        }
        return std::move(r).value();
    }();
    return t;
}

std::string hex(const std::string& s) {
    std::string out;
    char buf[8];
    for (unsigned char c : s) {
        std::snprintf(buf, sizeof buf, "%02X ", c);
        out += buf;
    }
    return out;
}

std::string show(const std::vector<int32_t>& ids) {
    std::ostringstream os;
    for (size_t i = 0; i < ids.size(); ++i) os << (i ? "," : "") << ids[i];
    return os.str();
}

// Streams `ids` through a StreamDecoder and checks the pieces against the whole decode.
void expect_stream_matches(const Tokenizer& tok, const std::vector<int32_t>& ids,
                           bool skip_special) {
    StreamDecoder sd(tok, skip_special);
    std::string joined;
    for (size_t i = 0; i < ids.size(); ++i) {
        const std::string piece = sd.push(ids[i]);
        ASSERT_TRUE(utf8_is_valid(piece))
            << "piece " << i << " [" << hex(piece) << "] of ids " << show(ids);
        joined += piece;
    }
    const std::string tail = sd.finish();
    ASSERT_TRUE(utf8_is_valid(tail)) << "tail [" << hex(tail) << "] of ids " << show(ids);
    joined += tail;
    const std::string whole = tok.decode(ids, skip_special);
    ASSERT_EQ(joined, whole) << "ids " << show(ids) << "\nstreamed " << hex(joined) << "\nwhole    "
                             << hex(whole);
}

// Id of the byte-level token for byte b.
int32_t byte_token(const Tokenizer& tok, int b) {
    auto id = tok.token_to_id(byte_level_strings()[static_cast<size_t>(b)]);
    EXPECT_TRUE(id.has_value()) << "no token for byte " << b;
    return id.value_or(0);
}

const char* const kTexts[] = {
    "café, naïve, résumé, Ærøskøbing, Straße",
    "日本語のテキストを東京で読みます。",
    "中文字符和标点：你好，世界！",
    "한국어 문장입니다",
    "emoji 👋🏽 family 👨‍👩‍👧 flag 🇯🇵 party 🎉🎉",
    "mixed: ½ → ∞ ≠ ∑, ‰ and \xF0\x9D\x84\x9E",
    "<|im_start|>assistant\nこんにちは<|im_end|>\n",
    "plain ASCII text with spaces   and\nnewlines\t",
    "",
};

TEST(StreamDecoder, TextRoundTripsExactly) {
    for (const char* text : kTexts) {
        const std::vector<int32_t> ids = tiny().encode(text);
        for (bool skip : {true, false}) {
            SCOPED_TRACE(std::string(text) + (skip ? " (skip special)" : ""));
            expect_stream_matches(tiny(), ids, skip);
        }
    }
}

// The problem this exists for: with this tokenizer, CJK text and emoji have characters split
// across tokens, so decoding token by token would not give the text back.
TEST(StreamDecoder, PerTokenDecodeWouldMangleTheseTexts) {
    for (const char* text : {kTexts[1], kTexts[4]}) {
        const std::vector<int32_t> ids = tiny().encode(text);
        std::string per_token;
        for (int32_t id : ids) per_token += tiny().decode(&id, 1, true);
        EXPECT_NE(per_token, tiny().decode(ids, true)) << text;
        EXPECT_NE(per_token.find("\xEF\xBF\xBD"), std::string::npos) << text;
    }
}

TEST(StreamDecoder, HoldsASplitCharacterUntilItCompletes) {
    // U+1F389 PARTY POPPER = F0 9F 8E 89, one byte-level token per byte.
    const std::vector<int32_t> ids = {byte_token(tiny(), 'a'),  byte_token(tiny(), 0xF0),
                                      byte_token(tiny(), 0x9F), byte_token(tiny(), 0x8E),
                                      byte_token(tiny(), 0x89), byte_token(tiny(), 'b')};
    StreamDecoder sd(tiny());
    EXPECT_EQ(sd.push(ids[0]), "a");
    EXPECT_EQ(sd.push(ids[1]), "");
    EXPECT_EQ(sd.push(ids[2]), "");
    EXPECT_EQ(sd.push(ids[3]), "");
    EXPECT_EQ(sd.push(ids[4]), "\xF0\x9F\x8E\x89");
    EXPECT_EQ(sd.push(ids[5]), "b");
    EXPECT_EQ(sd.finish(), "");
}

TEST(StreamDecoder, TruncatedAndInvalidBytesComeOutAsInTheWholeDecode) {
    // A truncated 3-byte sequence then ASCII: one U+FFFD, then the ASCII.
    expect_stream_matches(
        tiny(), {byte_token(tiny(), 0xE3), byte_token(tiny(), 0x81), byte_token(tiny(), 'x')},
        true);
    // Stray continuation bytes, an overlong lead, a surrogate, a truncated tail at the end.
    expect_stream_matches(
        tiny(),
        {byte_token(tiny(), 0x80), byte_token(tiny(), 0xC0), byte_token(tiny(), 0xAF),
         byte_token(tiny(), 0xED), byte_token(tiny(), 0xA0), byte_token(tiny(), 0x80),
         byte_token(tiny(), 'y'), byte_token(tiny(), 0xF0), byte_token(tiny(), 0x9F)},
        true);
    // Ends on an incomplete sequence: finish() gives its U+FFFD.
    StreamDecoder sd(tiny());
    EXPECT_EQ(sd.push(byte_token(tiny(), 'z')), "z");
    EXPECT_EQ(sd.push(byte_token(tiny(), 0xE6)), "");
    EXPECT_EQ(sd.finish(), "\xEF\xBF\xBD");
}

TEST(StreamDecoder, RandomTokenSequences) {
    std::mt19937 rng(1234);
    const int32_t V = tiny().vocab_size();
    std::uniform_int_distribution<int32_t> any(0, V - 1);
    for (int trial = 0; trial < 3000; ++trial) {
        std::uniform_int_distribution<int> len(0, 48);
        std::vector<int32_t> ids(static_cast<size_t>(len(rng)));
        for (int32_t& id : ids) id = any(rng);
        expect_stream_matches(tiny(), ids, trial % 2 == 0);
        if (HasFatalFailure()) return;
    }
}

TEST(StreamDecoder, RandomByteSequences) {
    // Byte-level tokens for random bytes, weighted towards UTF-8 lead and continuation bytes so
    // that valid, truncated and ill-formed sequences all occur often.
    std::mt19937 rng(99);
    std::vector<int32_t> byte_ids(256);
    for (int b = 0; b < 256; ++b) byte_ids[static_cast<size_t>(b)] = byte_token(tiny(), b);
    std::uniform_int_distribution<int> kind(0, 5), ascii(0x20, 0x7E), cont(0x80, 0xBF),
        lead2(0xC0, 0xDF), lead3(0xE0, 0xEF), lead4(0xF0, 0xFF);
    for (int trial = 0; trial < 3000; ++trial) {
        std::uniform_int_distribution<int> len(1, 40);
        std::vector<int32_t> ids(static_cast<size_t>(len(rng)));
        for (int32_t& id : ids) {
            int b = 0;
            switch (kind(rng)) {
                case 0:
                    b = ascii(rng);
                    break;
                case 1:
                case 2:
                    b = cont(rng);
                    break;
                case 3:
                    b = lead2(rng);
                    break;
                case 4:
                    b = lead3(rng);
                    break;
                default:
                    b = lead4(rng);
                    break;
            }
            id = byte_ids[static_cast<size_t>(b)];
        }
        expect_stream_matches(tiny(), ids, true);
        if (HasFatalFailure()) return;
    }
}

TEST(StreamDecoder, LongRunsOfStrayBytesStayBoundedAndExact) {
    // 1000 stray continuation bytes never end on a complete character: the decoder flushes after
    // kMaxHeldTokens instead of growing; stray bytes decode the same either way.
    std::vector<int32_t> ids(1000, byte_token(tiny(), 0x80));
    ids.push_back(byte_token(tiny(), 'k'));
    expect_stream_matches(tiny(), ids, true);
}

TEST(StreamDecoder, FinishResetsForTheNextStream) {
    StreamDecoder sd(tiny());
    std::string a;
    for (int32_t id : tiny().encode("東京")) a += sd.push(id);
    a += sd.finish();
    EXPECT_EQ(a, "東京");
    std::string b;
    for (int32_t id : tiny().encode("大阪")) b += sd.push(id);
    b += sd.finish();
    EXPECT_EQ(b, "大阪");
}

// A SentencePiece-style decoder (Replace, ByteFallback, Fuse, Strip of the leading space) over
// the same vocabulary plus 256 "<0xNN>" tokens: the byte-fallback run and the stripped leading
// space both depend on neighbouring tokens.
TEST(StreamDecoder, ByteFallbackAndLeadingStripDecoders) {
    std::ifstream in(tokenizer_path());
    nlohmann::json j = nlohmann::json::parse(in);
    j["decoder"] = nlohmann::json::parse(R"({"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "Ġ"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})");
    const int32_t first = tiny().vocab_size();
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        j["added_tokens"].push_back({{"id", first + b},
                                     {"content", name},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", false}});
    }
    auto loaded = Tokenizer::load_from_string(j.dump(), "variant");
    ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
    const Tokenizer& tok = loaded.value();
    auto fb = [&](int b) { return first + b; };
    const int32_t sp = tok.token_to_id("Ġ").value_or(0);
    const int32_t word = tiny().encode(" the").at(0);

    // "<0xE3><0x81><0x82>" is あ; a run cut short is one U+FFFD per byte token.
    expect_stream_matches(tok, {word, fb(0xE3), fb(0x81), fb(0x82), sp, word}, true);
    expect_stream_matches(tok, {fb(0x41), fb(0xE3), fb(0x81), word, fb(0x42)}, true);
    expect_stream_matches(tok, {sp, word, sp, sp, word}, true);  // only the first space strips
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> any(0, tok.vocab_size() - 1), byte(0, 255), coin(0, 2);
    for (int trial = 0; trial < 1500; ++trial) {
        std::vector<int32_t> ids(static_cast<size_t>(trial % 30));
        for (int32_t& id : ids) id = coin(rng) == 0 ? any(rng) : fb(byte(rng));
        expect_stream_matches(tok, ids, trial % 2 == 0);
        if (HasFatalFailure()) return;
    }
}

}  // namespace
}  // namespace voxrt::text
