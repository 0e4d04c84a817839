// Limits on configuration values and load options that size allocations: each refused with an
// error naming the file and field, and the largest accepted values loading in bounded memory.
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "io/json.h"
#include "model/config.h"
#include "model/lfm_audio.h"
#include "runtime/session.h"
#include "unit/io/mem_probe.h"
#include "util/test_paths.h"

namespace voxrt::model {
namespace {

std::string read_all(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

io::Json tiny_config() {
    return io::Json::parse(read_all(test::data_dir() + "/tiny/model/config.json"));
}
io::Json tiny_detok_config() {
    return io::Json::parse(
        read_all(test::data_dir() + "/tiny/model/audio_detokenizer/config.json"));
}

void expect_refused(const Status& st, const std::string& file, const std::string& field,
                    const std::string& what) {
    ASSERT_FALSE(st.is_ok()) << field << " was accepted";
    EXPECT_EQ(st.code(), StatusCode::kInvalidFile) << st.message();
    EXPECT_NE(st.message().find(file + ": " + field + ": "), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(what), std::string::npos) << st.message();
}

TEST(ConfigLimits, TinyConfigsParse) {
    auto c = parse_model_config(tiny_config().dump(), "config.json");
    ASSERT_TRUE(c.is_ok()) << c.status().message();
    EXPECT_EQ(c->encoder.pos_emb_max_len, 5000);
    auto d = parse_detokenizer_config(tiny_detok_config().dump(), "d/config.json");
    ASSERT_TRUE(d.is_ok()) << d.status().message();
    EXPECT_EQ(d->sliding_window, 30);
}

TEST(ConfigLimits, EncoderPositionTable) {
    io::Json j = tiny_config();
    j["encoder"]["pos_emb_max_len"] = kMaxEncoderFrames;
    EXPECT_TRUE(parse_model_config(j.dump(), "config.json").is_ok());
    j["encoder"]["pos_emb_max_len"] = kMaxEncoderFrames + 1;
    expect_refused(parse_model_config(j.dump(), "config.json").status(), "config.json",
                   "encoder.pos_emb_max_len", "outside [1, 131072]");
}

// A short hop makes millions of mel frames of a 600 s recording (and an encoder position table
// sized for them): refused, naming the hop.
TEST(ConfigLimits, MelFramesOfTheLongestRecording) {
    io::Json j = tiny_config();
    // 600 s at 16 kHz with a hop of 74 samples: 129,730 frames, the shortest hop accepted.
    j["preprocessor"]["window_stride"] = 74.0 / 16000.0;
    auto ok = parse_model_config(j.dump(), "config.json");
    ASSERT_TRUE(ok.is_ok()) << ok.status().message();
    EXPECT_EQ(longest_mel_segment(ok->preprocessor), 129730);
    j["preprocessor"]["window_stride"] = 73.0 / 16000.0;  // 131,507 frames
    expect_refused(parse_model_config(j.dump(), "config.json").status(), "config.json",
                   "preprocessor.window_stride", "131507 mel frames");
    j["preprocessor"]["window_stride"] = 1e-4;
    j["preprocessor"]["window_size"] = 0.01;
    j["preprocessor"]["sample_rate"] = 48000;
    expect_refused(parse_model_config(j.dump(), "config.json").status(), "config.json",
                   "preprocessor.window_stride", "more than the limit of 131072");
}

TEST(ConfigLimits, DetokenizerWindow) {
    io::Json j = tiny_detok_config();
    j["sliding_window"] = kMaxDetokenizerWindow;
    auto ok = parse_detokenizer_config(j.dump(), "d/config.json");
    ASSERT_TRUE(ok.is_ok()) << ok.status().message();
    EXPECT_EQ(ok->sliding_window, kMaxDetokenizerWindow);
    j["sliding_window"] = kMaxDetokenizerWindow + 1;
    expect_refused(parse_detokenizer_config(j.dump(), "d/config.json").status(), "d/config.json",
                   "sliding_window", "exceeds the detokenizer limit of 4096");
    j["sliding_window"] = 1 << 20;
    expect_refused(parse_detokenizer_config(j.dump(), "d/config.json").status(), "d/config.json",
                   "sliding_window", "limit");
}

TEST(ConfigLimits, SizeAndNesting) {
    // Padded with spaces past 1 MiB: refused before parsing, naming the file.
    std::string big = tiny_config().dump();
    big.append(kMaxConfigBytes + 1 - big.size(), ' ');
    for (const Status& st : {parse_model_config(big, "config.json").status(),
                             parse_detokenizer_config(big, "config.json").status()}) {
        ASSERT_FALSE(st.is_ok());
        EXPECT_NE(st.message().find("config.json: 1048577 bytes exceeds the 1048576-byte limit"),
                  std::string::npos)
            << st.message();
    }
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    auto r = parse_model_config(deep, "config.json");
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("config.json: nesting deeper than 64 levels"),
              std::string::npos)
        << r.status().message();
    // From a file: the same limit through load_model_config.
    const std::string dir = test::make_temp_dir("config-limits");
    { std::ofstream(dir + "/config.json") << big; }
    auto f = load_model_config(dir + "/config.json");
    ASSERT_FALSE(f.is_ok());
    EXPECT_NE(f.status().message().find("exceeds the 1048576-byte limit"), std::string::npos)
        << f.status().message();
    std::filesystem::remove_all(dir);
}

// A config.json of 1 MiB holding 90,000 empty objects in one object parses in linear time.
// nlohmann's callback parser, used here before, rescanned the enclosing object at the end of each
// nested one: quadratic, 1.8 s for 20,000 entries and about 40 s for this file.
TEST(ConfigLimits, ManyEntriesParseInLinearTime) {
    std::string text = "{";
    for (int i = 0; text.size() < kMaxConfigBytes - 32; ++i)
        text += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":{}";
    text += "}";
    const auto t0 = std::chrono::steady_clock::now();
    auto r = parse_model_config(text, "config.json");
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("config.json: codebooks: missing"), std::string::npos)
        << r.status().message();
    EXPECT_LT(ms, test::kUnderAsan ? 10000.0 : 2000.0);
}

TEST(ModelOptionLimits, ContextAndThreadsAreRefusedByName) {
    const std::string dir = test::data_dir() + "/tiny/model";
    struct Case {
        int context, threads;
        const char* needle;
    } cases[] = {
        {15, 2, "max_context: 15 positions is outside [16, 131072]"},
        {4096, kMaxThreads + 1, "threads: 1025 is outside [0, 1024]"},
        {4096, -1, "threads: -1 is outside [0, 1024]"},
        // Beyond the checkpoint's own limit: named with the file and field.
        {128001, 2, "config.json lfm.max_position_embeddings (128000)"},
        {1 << 20, 2, "config.json lfm.max_position_embeddings (128000)"},
    };
    for (const Case& c : cases) {
        ModelOptions o;
        o.max_context = c.context;
        o.threads = c.threads;
        auto m = LfmAudioModel::load(dir, o);
        ASSERT_FALSE(m.is_ok()) << c.needle;
        EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
        EXPECT_NE(m.status().message().find(c.needle), std::string::npos) << m.status().message();
    }
}

// A checkpoint whose max_position_embeddings exceeds voxrt's limit: the limit applies.
TEST(ModelOptionLimits, ContextBeyondTheLimitWithinTheCheckpoint) {
    const std::string src = test::data_dir() + "/tiny/model";
    const std::string dir = test::make_temp_dir("limits-context");
    namespace fs = std::filesystem;
    fs::create_symlink(src + "/tokenizer.json", dir + "/tokenizer.json");
    io::Json c = tiny_config();
    c["lfm"]["max_position_embeddings"] = 1 << 24;
    { std::ofstream(dir + "/config.json") << c.dump(); }
    ModelOptions o;
    o.max_context = kMaxContext + 1;
    auto m = LfmAudioModel::load(dir, o);
    ASSERT_FALSE(m.is_ok());
    EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(m.status().message(), "max_context: 131073 positions is outside [16, 131072]");
    fs::remove_all(dir);
}

// The tiny checkpoint with every limit at its largest accepted value: an encoder position table
// for 131,072 frames, a detokenizer window of 4,096 rows, a session of 128,000 positions (the
// checkpoint's max_position_embeddings). What it takes is what those sizes imply for this model:
// the encoder table [2 * 16384 - 1, 64] F32 (8 MiB), RoPE tables 2 * 128000 * 8 F32 (7.8 MiB), a
// KV cache of 2 layers * 2 * 2 heads * 128000 * 16 F32 (62.5 MiB), the session's audio-input rows
// [128000, 64] F32 (31.3 MiB) and the detokenizer cache of 8,385 rows (4,095 + 6 * 715) for one
// attention layer * 2 * 8 heads * 32 F32 (16.4 MiB): 126 MiB. The bound is that plus 9 MiB of
// allocator slack, over the model with its defaults (measured: +118 MiB).
TEST(ModelOptionLimits, LargestAcceptedValuesLoadInBoundedMemory) {
    const std::string src = test::data_dir() + "/tiny/model";
    const std::string dir = test::make_temp_dir("limits-model");
    namespace fs = std::filesystem;
    fs::create_directory(dir + "/audio_detokenizer");
    for (const char* f :
         {"model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
          "chat_template.jinja", "audio_detokenizer/model.safetensors"})
        fs::create_symlink(src + "/" + f, dir + "/" + f);
    io::Json c = tiny_config();
    c["encoder"]["pos_emb_max_len"] = kMaxEncoderFrames;
    { std::ofstream(dir + "/config.json") << c.dump(); }
    io::Json d = tiny_detok_config();
    d["sliding_window"] = kMaxDetokenizerWindow;
    { std::ofstream(dir + "/audio_detokenizer/config.json") << d.dump(); }

    ModelOptions o;
    o.precision = ops::Precision::kF32;
    o.threads = 2;
    auto measure = [&](const std::string& model_dir, int context) -> long {
        const long before = test::rss_kib();
        test::reset_peak_rss();
        o.max_context = context;
        auto m = LfmAudioModel::load(model_dir, o);
        EXPECT_TRUE(m.is_ok()) << m.status().message();
        if (!m.is_ok()) return -1;
        auto s = runtime::Session::create(**m, {});
        EXPECT_TRUE(s.is_ok()) << s.status().message();
        return test::peak_rss_kib() - before;
    };
    const bool can_measure = test::reset_peak_rss();
    const long base = measure(src, 1024);
    const long largest = measure(dir, 128000);
    std::printf("tiny model + session: %ld KiB peak with defaults, %ld KiB at the limits\n", base,
                largest);
    if (can_measure && !test::kUnderAsan) {
        EXPECT_LE(largest - base, 135 * 1024);
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace voxrt::model
