// Tokenizer parity with HF `tokenizers` (fixtures from tools/reference/make_tokenizer_fixtures.py),
// hostile tokenizer.json handling, invalid UTF-8 input, and a performance guard.
#include "text/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "text/utf8.h"
#include "util/test_paths.h"

namespace voxrt::text {
namespace {

using nlohmann::json;

// VOXRT_TOKENIZER_DATA_DIR may point at another fixture set with the same layout, e.g. one made
// for a full-size (65536) tokenizer; only MatchesHfFixtures is meaningful then.
std::string tok_dir() {
    const char* env = std::getenv("VOXRT_TOKENIZER_DATA_DIR");
    return env && *env ? std::string(env) : test::data_dir() + "/tokenizer";
}

const Tokenizer& tiny() {
    static const Tokenizer t = [] {
        auto r = Tokenizer::load(tok_dir() + "/tiny/tokenizer.json");
        if (!r) {
            ADD_FAILURE() << r.status().message();
            std::abort();
        }
        return std::move(r).value();
    }();
    return t;
}

const Tokenizer& variant() {
    static const Tokenizer t = [] {
        auto r = Tokenizer::load(tok_dir() + "/tiny_variant/tokenizer.json");
        if (!r) {
            ADD_FAILURE() << r.status().message();
            std::abort();
        }
        return std::move(r).value();
    }();
    return t;
}

std::string show(const std::string& s) {
    std::string out;
    for (unsigned char c : s.substr(0, 120)) {
        if (c < 0x20 || c == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\x%02X", c);
            out += buf;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out;
}

std::string show(const std::vector<int32_t>& ids) {
    std::ostringstream os;
    for (size_t i = 0; i < ids.size() && i < 40; ++i) os << (i ? "," : "") << ids[i];
    if (ids.size() > 40) os << ",...";
    return os.str();
}

// ---- basic facts about the LFM2-shaped tiny tokenizer -------------------------------------------

TEST(TokenizerTest, SpecialTokenIds) {
    const Tokenizer& t = tiny();
    EXPECT_EQ(t.vocab_size(), 2048);
    const std::pair<const char*, int32_t> expected[] = {
        {"<|pad|>", 0},
        {"<|startoftext|>", 1},
        {"<|endoftext|>", 2},
        {"<|fim_pre|>", 3},
        {"<|im_start|>", 6},
        {"<|im_end|>", 7},
        {"<|reserved_4|>", 14},
        {"<|audio_start|>", 128},
        {"<|text_start|>", 129},
        {"<|text_end|>", 130},
        {"<|mixed_start|>", 131},
        {"<|mixed_end|>", 132},
        {"<|reserved_123|>", 133},
        {"<image>", 396},
        {"<|image_end|>", 499},
        {"<|reserved_490|>", 500},
    };
    for (auto [tok, id] : expected) {
        EXPECT_EQ(t.token_to_id(tok), std::optional<int32_t>(id)) << tok;
        EXPECT_EQ(t.encode(tok), std::vector<int32_t>{id}) << tok;
        EXPECT_TRUE(t.is_special(id)) << tok;
        EXPECT_EQ(t.id_to_token(id), std::optional<std::string>(tok));
    }
    EXPECT_EQ(t.token_to_id("<|cot_start|>"), std::optional<int32_t>(2042));
    EXPECT_EQ(t.token_to_id("<|file_end|>"), std::optional<int32_t>(2047));
    EXPECT_FALSE(t.is_special(*t.token_to_id("python")));  // a non-special added token
    EXPECT_EQ(t.token_to_id("no such token"), std::nullopt);
    EXPECT_EQ(t.id_to_token(2048), std::nullopt);
    EXPECT_EQ(t.id_to_token(-1), std::nullopt);
    EXPECT_EQ(t.regex_failures(), 0u);
}

TEST(TokenizerTest, PromptSegmentsEncodeSeparately) {
    // Spec §10.2: each piece is encoded on its own; merges never cross segment boundaries.
    const Tokenizer& t = tiny();
    std::vector<int32_t> a = t.encode("<|im_start|>user\n");
    std::vector<int32_t> b = t.encode("Hello<|im_end|>\n");
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a.front(), 6);
    EXPECT_EQ(b[b.size() - 2], 7);
    EXPECT_EQ(t.decode(a, false) + t.decode(b, false), "<|im_start|>user\nHello<|im_end|>\n");
    EXPECT_EQ(t.decode(b, true), "Hello\n");
}

// ---- parity with HF tokenizers ------------------------------------------------------------------

TEST(TokenizerTest, MatchesHfFixtures) {
    std::ifstream in(tok_dir() + "/fixtures.jsonl");
    ASSERT_TRUE(in.good()) << "missing fixtures.jsonl";
    size_t n_encode = 0, n_decode = 0, n_fail = 0;
    std::string line;
    while (std::getline(in, line)) {
        json r = json::parse(line);
        const Tokenizer& t = r.value("v", 0) == 1 ? variant() : tiny();
        const char* which = r.value("v", 0) == 1 ? "variant" : "tiny";
        if (r.contains("di")) {
            std::vector<int32_t> ids = r["di"].get<std::vector<int32_t>>();
            std::string d = t.decode(ids, false), s = t.decode(ids, true);
            ++n_decode;
            if (d != r["d"].get<std::string>() || s != r["s"].get<std::string>()) {
                if (++n_fail <= 20) {
                    ADD_FAILURE() << which << " decode(" << show(ids) << ") = '" << show(d)
                                  << "' / '" << show(s) << "', HF '"
                                  << show(r["d"].get<std::string>()) << "' / '"
                                  << show(r["s"].get<std::string>()) << "'";
                }
            }
            continue;
        }
        const std::string text = r["t"].get<std::string>();
        const std::vector<int32_t> want = r["i"].get<std::vector<int32_t>>();
        const std::string want_d = r.value("d", text), want_s = r.value("s", text);
        std::vector<int32_t> got = t.encode(text);
        ++n_encode;
        std::string d = t.decode(want, false), s = t.decode(want, true);
        if (got != want || d != want_d || s != want_s) {
            if (++n_fail <= 20) {
                ADD_FAILURE() << which << " text '" << show(text) << "'\n  ids  " << show(got)
                              << "\n  HF   " << show(want) << "\n  dec  '" << show(d)
                              << "'\n  HF   '" << show(want_d) << "'\n  skip '" << show(s)
                              << "'\n  HF   '" << show(want_s) << "'";
            }
        }
    }
    std::printf("[ fixtures ] %zu encode cases, %zu decode cases, %zu mismatches\n", n_encode,
                n_decode, n_fail);
    EXPECT_GE(n_encode, 10000u);
    EXPECT_EQ(n_fail, 0u);
    EXPECT_EQ(tiny().regex_failures(), 0u);
}

// ---- invalid UTF-8 input ------------------------------------------------------------------------

TEST(TokenizerTest, InvalidUtf8IsRepairedNotCrashed) {
    const Tokenizer& t = tiny();
    const std::string bad[] = {
        std::string("\xFF"),         std::string("abc\xC3"),          std::string("\xED\xA0\x80"),
        std::string("\xF0\x9F\x98"), std::string("\xC0\xAF x"),       std::string("a\0b", 3),
        std::string("\x80\x80\x80"), std::string("<|im_start|\xFF>"),
    };
    for (const std::string& s : bad) {
        std::vector<int32_t> ids = t.encode(s);
        EXPECT_EQ(ids, t.encode(utf8_lossy(s))) << show(s);
        std::string back = t.decode(ids, false);
        EXPECT_TRUE(utf8_is_valid(back));
        EXPECT_EQ(back, utf8_lossy(s));
    }
    EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"
                         "a"),
              "\xEF\xBF\xBD"
              "a");  // one U+FFFD per subpart
    EXPECT_EQ(utf8_lossy("\xE0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TokenizerTest, DecodeArbitraryIdsIsValidUtf8) {
    const Tokenizer& t = tiny();
    uint32_t x = 12345;
    for (int iter = 0; iter < 2000; ++iter) {
        std::vector<int32_t> ids(1 + iter % 9);
        for (int32_t& id : ids) {
            x = x * 1664525u + 1013904223u;
            id = static_cast<int32_t>(x % 2300) - 100;
        }
        EXPECT_TRUE(utf8_is_valid(t.decode(ids, iter % 2 == 0)));
    }
}

// ---- performance guard --------------------------------------------------------------------------

double encode_ms(const Tokenizer& t, const std::string& text, size_t* n_ids) {
    auto t0 = std::chrono::steady_clock::now();
    *n_ids = t.encode(text).size();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

TEST(TokenizerTest, PathologicalInputsAreFast) {
    const Tokenizer& t = tiny();
    std::string cjk;
    uint32_t x = 7;
    for (int i = 0; i < 30000; ++i) {
        x = x * 1103515245u + 12345u;
        utf8_append(cjk, 0x4E00 + (x >> 8) % 0x5000);
    }
    std::string zwj;
    for (int i = 0; i < 10000; ++i) zwj += "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9";
    std::string mixed;
    for (int i = 0; i < 20000; ++i) mixed += (i % 7 == 0) ? "\n \t" : "ab1 ";
    const std::pair<const char*, std::string> cases[] = {
        {"a x 100000", std::string(100000, 'a')},
        {"30k CJK", cjk},
        {"100k spaces", std::string(100000, ' ') + "x"},
        {"100k newlines", std::string(100000, '\n')},
        {"10k ZWJ emoji", zwj},
        {"digits x 100000", std::string(100000, '7')},
        {"punct x 100000", std::string(100000, '!')},
        {"mixed 80KB", mixed},
        {"specials x 20000",
         [] {
             std::string s;
             for (int i = 0; i < 20000; ++i) s += "<|im_start|><|im";
             return s;
         }()},
    };
    for (const auto& [name, text] : cases) {
        size_t n = 0;
        double ms = encode_ms(t, text, &n);
        std::printf("[ perf ] %-18s %8zu bytes -> %7zu ids in %7.1f ms\n", name, text.size(), n,
                    ms);
        EXPECT_GT(n, 0u) << name;
        EXPECT_LT(ms, 1000.0) << name;
    }
    EXPECT_EQ(t.regex_failures(), 0u);
}

TEST(TokenizerTest, ConcurrentEncodeIsConsistent) {
    const Tokenizer& t = tiny();
    const std::string text = "<|im_start|>user\nHello, world! 12345 — ¿qué tal? 你好<|im_end|>\n";
    const std::vector<int32_t> want = t.encode(text);
    std::vector<std::thread> threads;
    std::vector<int> bad(4, 0);
    for (int k = 0; k < 4; ++k) {
        threads.emplace_back([&, k] {
            for (int i = 0; i < 500; ++i) bad[k] += t.encode(text) != want;
        });
    }
    for (auto& th : threads) th.join();
    for (int b : bad) EXPECT_EQ(b, 0);
}

// ---- hostile tokenizer.json ---------------------------------------------------------------------

// A minimal valid byte-level BPE tokenizer.json; tests break one thing at a time.
json minimal_tokenizer() {
    json vocab = json::object();
    const auto& strs = byte_level_strings();
    for (int b = 0; b < 256; ++b) vocab[strs[b]] = b;
    vocab["ab"] = 256;
    vocab["abc"] = 257;
    vocab["<|special|>"] = 258;
    json model = {{"type", "BPE"},
                  {"dropout", nullptr},
                  {"unk_token", nullptr},
                  {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr},
                  {"fuse_unk", false},
                  {"byte_fallback", false},
                  {"ignore_merges", false},
                  {"vocab", vocab},
                  {"merges", json::array({json::array({"a", "b"}), json::array({"ab", "c"})})}};
    return {
        {"version", "1.0"},
        {"truncation", nullptr},
        {"padding", nullptr},
        {"added_tokens", json::array({{{"id", 258},
                                       {"content", "<|special|>"},
                                       {"single_word", false},
                                       {"lstrip", false},
                                       {"rstrip", false},
                                       {"normalized", false},
                                       {"special", true}}})},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers",
           json::array({{{"type", "Split"},
                         {"pattern", {{"Regex", "\\p{L}+|\\p{N}{1,3}|\\s+|[^\\s\\p{L}\\p{N}]+"}}},
                         {"behavior", "Isolated"},
                         {"invert", false}},
                        {{"type", "ByteLevel"},
                         {"add_prefix_space", false},
                         {"trim_offsets", true},
                         {"use_regex", false}}})}}},
        {"post_processor", nullptr},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", model}};
}

Expected<Tokenizer> load_text(const std::string& name, const std::string& text) {
    static const std::string dir = test::make_temp_dir("tokenizer_hostile");
    std::string path = dir + "/" + name + ".json";
    std::ofstream(path, std::ios::binary) << text;
    return Tokenizer::load(path);
}

Expected<Tokenizer> load_json(const std::string& name, const json& j) {
    return load_text(name, j.dump());
}

void expect_rejected(const std::string& name, const Expected<Tokenizer>& r, const char* needle) {
    ASSERT_FALSE(r.is_ok()) << name << " was accepted";
    EXPECT_NE(r.status().message().find(needle), std::string::npos)
        << name << ": message '" << r.status().message() << "' lacks '" << needle << "'";
}

TEST(TokenizerHostileTest, MinimalFileLoadsAndWorks) {
    auto r = load_json("minimal", minimal_tokenizer());
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->vocab_size(), 259);
    EXPECT_EQ(r->encode("abc<|special|>ab"), (std::vector<int32_t>{257, 258, 256}));
    EXPECT_EQ(r->decode({257, 258, 256}, true), "abcab");
}

TEST(TokenizerHostileTest, RejectsBrokenFiles) {
    {
        auto r = Tokenizer::load(tok_dir() + "/does_not_exist.json");
        ASSERT_FALSE(r.is_ok());
        EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
    }
    expect_rejected("directory", Tokenizer::load(tok_dir()), "not a regular file");
    expect_rejected("empty", load_text("empty", ""), "not valid JSON");
    expect_rejected("garbage", load_text("garbage", "{\"model\": [1, 2"), "not valid JSON");
    expect_rejected("array", load_text("array", "[1, 2, 3]"), "not a JSON object");
    expect_rejected("deep", load_text("deep", std::string(100000, '[') + std::string(100000, ']')),
                    "nested 100000 levels deep, more than the limit of 64");

    auto broken = [](auto&& edit) {
        json j = minimal_tokenizer();
        edit(j);
        return j;
    };
    expect_rejected("no model", load_json("no_model", broken([](json& j) { j.erase("model"); })),
                    "model");
    expect_rejected(
        "wordpiece",
        load_json("wordpiece", broken([](json& j) { j["model"]["type"] = "WordPiece"; })),
        "model.type 'WordPiece'");
    expect_rejected("merge oov",
                    load_json("merge_oov", broken([](json& j) {
                                  j["model"]["merges"].push_back(json::array({"a", "zz"}));
                              })),
                    "not in the vocab");
    expect_rejected("merge result oov",
                    load_json("merge_res", broken([](json& j) {
                                  j["model"]["merges"].push_back(json::array({"b", "c"}));
                              })),
                    "merged token 'bc'");
    expect_rejected("merge 3 parts", load_json("merge_3", broken([](json& j) {
                                                   j["model"]["merges"] = json::array({"a b c"});
                                               })),
                    "merges[0]");
    expect_rejected(
        "merge wrong type",
        load_json("merge_type", broken([](json& j) { j["model"]["merges"] = json::array({42}); })),
        "merges[0]");
    expect_rejected("negative id",
                    load_json("neg_id", broken([](json& j) { j["model"]["vocab"]["ab"] = -5; })),
                    "outside");
    expect_rejected("id gap",
                    load_json("gap", broken([](json& j) { j["model"]["vocab"]["abc"] = 100000; })),
                    "outside");
    expect_rejected("duplicate id",
                    load_json("dup_id", broken([](json& j) { j["model"]["vocab"]["abc"] = 256; })),
                    "is used by both");
    expect_rejected(
        "string id",
        load_json("str_id", broken([](json& j) { j["model"]["vocab"]["abc"] = "257"; })),
        "not an integer");
    expect_rejected("missing byte",
                    load_json("no_byte", broken([](json& j) {
                                  j["model"]["vocab"].erase(byte_level_strings()[0x0A]);
                                  j["model"]["vocab"]["zz"] = 0x0A;  // keep the ids contiguous
                              })),
                    "byte 0x");
    expect_rejected("added id mismatch",
                    load_json("added_id", broken([](json& j) { j["added_tokens"][0]["id"] = 5; })),
                    "does not match");
    expect_rejected("added out of range",
                    load_json("added_oor", broken([](json& j) {
                                  j["added_tokens"].push_back(
                                      {{"id", 900000}, {"content", "<|new|>"}, {"special", true}});
                              })),
                    "does not match");
    expect_rejected("added duplicate",
                    load_json("added_dup", broken([](json& j) {
                                  j["added_tokens"].push_back(j["added_tokens"][0]);
                              })),
                    "duplicate");
    expect_rejected(
        "added empty",
        load_json("added_empty", broken([](json& j) { j["added_tokens"][0]["content"] = ""; })),
        "empty");
    expect_rejected("nfc", load_json("nfc", broken([](json& j) {
                                         j["normalizer"] = {{"type", "NFC"}};
                                     })),
                    "normalizer: type 'NFC'");
    expect_rejected("whitespace pre", load_json("ws_pre", broken([](json& j) {
                                                    j["pre_tokenizer"] = {{"type", "Whitespace"}};
                                                })),
                    "type 'Whitespace'");
    expect_rejected("bad regex",
                    load_json("bad_regex", broken([](json& j) {
                                  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] =
                                      "(ab|c";
                              })),
                    "does not compile");
    expect_rejected("bad behavior",
                    load_json("bad_beh", broken([](json& j) {
                                  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Explode";
                              })),
                    "Explode");
    expect_rejected("split after bytelevel",
                    load_json("after_bl", broken([](json& j) {
                                  j["pre_tokenizer"]["pretokenizers"].push_back(
                                      j["pre_tokenizer"]["pretokenizers"][0]);
                              })),
                    "after ByteLevel");
    expect_rejected("dropout",
                    load_json("dropout", broken([](json& j) { j["model"]["dropout"] = 0.1; })),
                    "dropout");
    expect_rejected("truncation", load_json("trunc", broken([](json& j) {
                                                j["truncation"] = {{"max_length", 8}};
                                            })),
                    "truncation");
    expect_rejected("unk oov",
                    load_json("unk", broken([](json& j) { j["model"]["unk_token"] = "<unk>"; })),
                    "unk_token");
    expect_rejected("bad decoder", load_json("bad_dec", broken([](json& j) {
                                                 j["decoder"] = {{"type", "WordPiece"}};
                                             })),
                    "decoder: type 'WordPiece'");
    expect_rejected(
        "vocab not object",
        load_json("vocab_arr", broken([](json& j) { j["model"]["vocab"] = json::array(); })),
        "model.vocab");
}

TEST(TokenizerHostileTest, BpeScalesAsNLogN) {
    // Merges a+a, aa+aa, ... make every level of a long run of 'a' merge: the worst case for a
    // quadratic BPE.
    json j = minimal_tokenizer();
    std::string unit = "a";
    for (int k = 0; k < 12; ++k) {
        j["model"]["vocab"][unit + unit] = 259 + k;
        j["model"]["merges"].push_back(json::array({unit, unit}));
        unit += unit;
    }
    auto r = load_json("doubling", j);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->encode(std::string(4096 + 2, 'a')), (std::vector<int32_t>{270, 259}));
    size_t n_small = 0, n_big = 0;
    double ms_small = 1e9, ms_big = 1e9;
    for (int rep = 0; rep < 3; ++rep) {  // best of 3 against scheduling noise
        ms_small = std::min(ms_small, encode_ms(*r, std::string(20000, 'a'), &n_small));
        ms_big = std::min(ms_big, encode_ms(*r, std::string(200000, 'a'), &n_big));
    }
    std::printf("[ perf ] 20k a: %.2f ms, 200k a: %.2f ms\n", ms_small, ms_big);
    EXPECT_LT(ms_big, 1000.0);
    // 10x the input: n log n is ~12x (more with cache misses), a quadratic BPE >= 100x.
    EXPECT_LT(ms_big, 80.0 * std::max(ms_small, 0.05));
}

TEST(TokenizerHostileTest, HugeFileRejectedBeforeReading) {
    std::string dir = test::make_temp_dir("tokenizer_huge");
    std::string path = dir + "/huge.json";
    { std::ofstream(path) << "{"; }
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(kMaxTokenizerFileBytes + 1)), 0);
    auto t0 = std::chrono::steady_clock::now();
    auto r = Tokenizer::load(path);
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    expect_rejected("huge", r, "byte limit");
    EXPECT_LT(ms, 100.0);
    std::remove(path.c_str());
}

TEST(TokenizerHostileTest, CatastrophicRegexDoesNotHang) {
    json j = minimal_tokenizer();
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a+)+$|(a|aa)+b";
    auto r = load_json("redos", j);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    std::string text(5000, 'a');
    text += "!";
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids = r->encode(text);
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(r->decode(ids, false), text);  // nothing is lost even when the regex gives up
    EXPECT_LT(ms, 5000.0);
}

TEST(TokenizerHostileTest, LegacyMergesUnkAndByteFallback) {
    // Non-byte-level BPE with string merges, an unk token and byte fallback.
    json vocab = {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"ab", 3}, {"<0xC3>", 4}, {"<0xA9>", 5}};
    json j = {{"added_tokens", json::array()},
              {"pre_tokenizer", nullptr},
              {"decoder",
               {{"type", "Sequence"},
                {"decoders", json::array({{{"type", "ByteFallback"}}, {{"type", "Fuse"}}})}}},
              {"model",
               {{"type", "BPE"},
                {"unk_token", "<unk>"},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"vocab", vocab},
                {"merges", json::array({"#version: 0.2", "a b"})}}}};
    auto r = load_json("legacy", j);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    // "é" = C3 A9 falls back to bytes; "xy" are unknown and fused into one <unk>.
    EXPECT_EQ(r->encode("abé xyab"), (std::vector<int32_t>{3, 4, 5, 0, 3}));
    EXPECT_EQ(r->decode({3, 4, 5, 0, 3}, false), "abé<unk>ab");
    EXPECT_EQ(r->decode({4, 3}, false),
              "\xEF\xBF\xBD"
              "ab");  // lone byte -> U+FFFD
}

}  // namespace
}  // namespace voxrt::text
