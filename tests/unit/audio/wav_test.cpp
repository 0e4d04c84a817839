#include "audio/wav.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "unit/audio/audio_fixtures.h"
#include "util/test_paths.h"

namespace voxrt::audio {
namespace {

// ---- a WAV image builder for the bad-input table ------------------------------------------------

struct WavSpec {
    const char* riff = "RIFF";
    const char* form = "WAVE";
    uint16_t tag = 1;
    uint16_t channels = 1;
    uint32_t rate = 16000;
    uint16_t bits = 16;
    int block_align = -1;  // -1: channels * bits / 8
    uint32_t fmt_size = 16;
    bool extensible = false;
    uint16_t cb_size = 22;
    uint16_t valid_bits = 0;  // 0: = bits
    uint32_t sub_tag = 1;
    bool junk_guid = false;
    std::vector<uint8_t> data = std::vector<uint8_t>(3200, 0);  // 0.1 s of 16 kHz int16 silence
    int64_t data_size = -1;                                     // -1: data.size()
    bool data_before_fmt = false;
    bool omit_data = false;
};

void put16(std::vector<uint8_t>& v, uint32_t x) {
    v.push_back(static_cast<uint8_t>(x));
    v.push_back(static_cast<uint8_t>(x >> 8));
}
void put32(std::vector<uint8_t>& v, uint32_t x) {
    put16(v, x & 0xFFFF);
    put16(v, x >> 16);
}
void put4(std::vector<uint8_t>& v, const char* s) {
    v.insert(v.end(), s, s + 4);
}

std::vector<uint8_t> build(const WavSpec& s) {
    std::vector<uint8_t> fmt;
    const uint16_t tag = s.extensible ? 0xFFFE : s.tag;
    put16(fmt, tag);
    put16(fmt, s.channels);
    put32(fmt, s.rate);
    const uint16_t align =
        s.block_align >= 0 ? static_cast<uint16_t>(s.block_align) : s.channels * (s.bits / 8);
    put32(fmt, s.rate * align);
    put16(fmt, align);
    put16(fmt, s.bits);
    uint32_t fmt_size = s.fmt_size;
    if (s.extensible) {
        put16(fmt, s.cb_size);
        put16(fmt, s.valid_bits ? s.valid_bits : s.bits);
        put32(fmt, s.channels == 2 ? 3 : 4);  // channel mask
        put32(fmt, s.sub_tag);
        const uint8_t tail[12] = {0x00, 0x00, 0x10, 0x00, 0x80, 0x00,
                                  0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
        for (uint8_t b : tail) fmt.push_back(s.junk_guid ? static_cast<uint8_t>(b ^ 0x5A) : b);
        fmt_size = std::max<uint32_t>(fmt_size, 40);
    }
    fmt.resize(fmt_size, 0);

    std::vector<uint8_t> fmt_chunk, data_chunk;
    put4(fmt_chunk, "fmt ");
    put32(fmt_chunk, fmt_size);
    fmt_chunk.insert(fmt_chunk.end(), fmt.begin(), fmt.end());
    put4(data_chunk, "data");
    put32(data_chunk, s.data_size >= 0 ? static_cast<uint32_t>(s.data_size)
                                       : static_cast<uint32_t>(s.data.size()));
    data_chunk.insert(data_chunk.end(), s.data.begin(), s.data.end());

    std::vector<uint8_t> body;
    put4(body, s.form);
    if (s.data_before_fmt) body.insert(body.end(), data_chunk.begin(), data_chunk.end());
    body.insert(body.end(), fmt_chunk.begin(), fmt_chunk.end());
    if (!s.data_before_fmt && !s.omit_data) {
        body.insert(body.end(), data_chunk.begin(), data_chunk.end());
    }
    std::vector<uint8_t> out;
    put4(out, s.riff);
    put32(out, static_cast<uint32_t>(body.size()));
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

std::vector<uint8_t> float_data(std::initializer_list<float> xs) {
    std::vector<uint8_t> d(xs.size() * 4);
    size_t i = 0;
    for (float x : xs) std::memcpy(&d[4 * i++], &x, 4);
    return d;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

struct BadCase {
    const char* name;
    std::vector<uint8_t> bytes;
    StatusCode code;
    const char* message;  // substring of the error
};

std::vector<BadCase> bad_cases() {
    std::vector<BadCase> v;
    auto with = [](auto f) {
        WavSpec s;
        f(s);
        return build(s);
    };
    const std::vector<uint8_t> good = build(WavSpec{});
    v.push_back({"non_riff", std::vector<uint8_t>{'O', 'g', 'g', 'S', 0, 2, 0, 0, 0, 0, 0, 0, 1, 2},
                 StatusCode::kInvalidFile, "not a RIFF file"});
    v.push_back({"tiny", {'R', 'I', 'F', 'F'}, StatusCode::kInvalidFile, "too short"});
    v.push_back({"not_wave", with([](WavSpec& s) { s.form = "AVI "; }), StatusCode::kInvalidFile,
                 "expected 'WAVE'"});
    v.push_back(
        {"rf64", with([](WavSpec& s) { s.riff = "RF64"; }), StatusCode::kUnsupported, "RF64"});
    v.push_back({"truncated_header", std::vector<uint8_t>(good.begin(), good.begin() + 20),
                 StatusCode::kInvalidFile, "truncated"});
    v.push_back({"truncated_chunk_header", std::vector<uint8_t>(good.begin(), good.begin() + 40),
                 StatusCode::kInvalidFile, "truncated chunk header"});
    v.push_back({"truncated_data", std::vector<uint8_t>(good.begin(), good.begin() + 44 + 100),
                 StatusCode::kInvalidFile, "data chunk declares 3200 bytes but only 100 remain"});
    v.push_back({"huge_declared_data", with([](WavSpec& s) { s.data_size = 0xFFFFFFF0; }),
                 StatusCode::kInvalidFile, "truncated file"});
    v.push_back({"zero_samples", with([](WavSpec& s) { s.data.clear(); }), StatusCode::kInvalidFile,
                 "0 samples"});
    v.push_back({"no_data_chunk", with([](WavSpec& s) { s.omit_data = true; }),
                 StatusCode::kInvalidFile, "no data chunk"});
    v.push_back({"data_before_fmt", with([](WavSpec& s) { s.data_before_fmt = true; }),
                 StatusCode::kInvalidFile, "precedes the fmt chunk"});
    v.push_back({"fmt_too_small", with([](WavSpec& s) { s.fmt_size = 12; }),
                 StatusCode::kInvalidFile, "fmt chunk is 12 bytes"});
    v.push_back({"channels_0", with([](WavSpec& s) { s.channels = 0; }), StatusCode::kInvalidFile,
                 "fmt.channels = 0"});
    v.push_back({"channels_6", with([](WavSpec& s) {
                     s.channels = 6;
                     s.data.resize(1200);
                 }),
                 StatusCode::kUnsupported, "fmt.channels = 6"});
    v.push_back({"channels_65535", with([](WavSpec& s) { s.channels = 65535; }),
                 StatusCode::kUnsupported, "fmt.channels = 65535"});
    v.push_back(
        {"pcm_8bit", with([](WavSpec& s) { s.bits = 8; }), StatusCode::kUnsupported, "8-bit PCM"});
    v.push_back({"pcm_7bit", with([](WavSpec& s) {
                     s.bits = 7;
                     s.block_align = 1;
                 }),
                 StatusCode::kInvalidFile, "bits_per_sample = 7"});
    v.push_back({"float_64bit", with([](WavSpec& s) {
                     s.tag = 3;
                     s.bits = 64;
                 }),
                 StatusCode::kUnsupported, "64-bit float"});
    v.push_back({"adpcm", with([](WavSpec& s) {
                     s.tag = 2;
                     s.bits = 4;
                     s.block_align = 256;
                 }),
                 StatusCode::kUnsupported, "format_tag = 0x0002"});
    v.push_back({"rate_0", with([](WavSpec& s) { s.rate = 0; }), StatusCode::kInvalidFile,
                 "fmt.sample_rate = 0 Hz"});
    v.push_back({"rate_1", with([](WavSpec& s) { s.rate = 1; }), StatusCode::kInvalidFile,
                 "fmt.sample_rate = 1 Hz"});
    v.push_back({"rate_1e9", with([](WavSpec& s) { s.rate = 1000000000; }),
                 StatusCode::kInvalidFile, "fmt.sample_rate = 1000000000 Hz"});
    v.push_back({"block_align_mismatch", with([](WavSpec& s) { s.block_align = 3; }),
                 StatusCode::kInvalidFile, "fmt.block_align = 3"});
    v.push_back({"partial_frame", with([](WavSpec& s) { s.data.resize(3201); }),
                 StatusCode::kInvalidFile, "not a multiple of the frame size"});
    v.push_back({"extensible_junk_guid", with([](WavSpec& s) {
                     s.extensible = true;
                     s.junk_guid = true;
                 }),
                 StatusCode::kUnsupported, "SubFormat GUID"});
    v.push_back({"extensible_alaw", with([](WavSpec& s) {
                     s.extensible = true;
                     s.sub_tag = 6;
                 }),
                 StatusCode::kUnsupported, "SubFormat GUID"});
    v.push_back({"extensible_short_cb", with([](WavSpec& s) {
                     s.extensible = true;
                     s.cb_size = 2;
                 }),
                 StatusCode::kInvalidFile, "cbSize = 2"});
    v.push_back({"extensible_valid_bits", with([](WavSpec& s) {
                     s.extensible = true;
                     s.valid_bits = 20;
                 }),
                 StatusCode::kInvalidFile, "wValidBitsPerSample = 20"});
    v.push_back({"float_nan", with([](WavSpec& s) {
                     s.tag = 3;
                     s.bits = 32;
                     s.data = float_data({0.5f, std::numeric_limits<float>::quiet_NaN(), 0.1f});
                 }),
                 StatusCode::kInvalidFile, "float sample 1 (channel 0) is nan"});
    v.push_back(
        {"float_inf", with([](WavSpec& s) {
             s.tag = 3;
             s.bits = 32;
             s.channels = 2;
             s.data = float_data({0.5f, 0.25f, 0.1f, -std::numeric_limits<float>::infinity()});
         }),
         StatusCode::kInvalidFile, "float sample 1 (channel 1) is -inf"});
    v.push_back({"float_absurd", with([](WavSpec& s) {
                     s.tag = 3;
                     s.bits = 32;
                     s.data = float_data({1e30f});
                 }),
                 StatusCode::kInvalidFile, "|x| <= 1e+06"});
    std::vector<uint8_t> huge_fmt = good;  // fmt chunk size field = 0x7FFFFFF0
    huge_fmt[16] = 0xF0, huge_fmt[17] = 0xFF, huge_fmt[18] = 0xFF, huge_fmt[19] = 0x7F;
    v.push_back({"bad_chunk_size", huge_fmt, StatusCode::kInvalidFile,
                 "'fmt ' chunk at offset 12 declares 2147483632 bytes"});
    return v;
}

TEST(Wav, BadInputTable) {
    const std::string dir = voxrt::test::make_temp_dir("wav-bad");
    ASSERT_FALSE(dir.empty());
    for (const BadCase& c : bad_cases()) {
        SCOPED_TRACE(c.name);
        const std::string path = dir + "/" + c.name + ".wav";
        write_file(path, c.bytes);
        auto r = read_wav(path);
        ASSERT_FALSE(r.is_ok());
        EXPECT_EQ(r.status().code(), c.code) << r.status().message();
        EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().message();
        EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
        // The in-memory decoder gives the same error with its label.
        auto m = decode_wav(c.bytes.data(), c.bytes.size(), {}, "buf");
        ASSERT_FALSE(m.is_ok());
        EXPECT_EQ(m.status().code(), c.code);
    }
    std::filesystem::remove_all(dir);
}

TEST(Wav, MissingFileIsNotFound) {
    auto r = read_wav("/nonexistent/dir/x.wav");
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
}

TEST(Wav, DurationCapBeforeAllocation) {
    WavSpec s;
    s.data.resize(32000 * 2);  // 2 s
    auto bytes = build(s);
    WavOptions opt;
    opt.max_seconds = 1.5;
    auto r = decode_wav(bytes.data(), bytes.size(), opt, "long");
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
    EXPECT_NE(r.status().message().find("32000 frames at 16000 Hz (2.000000 s) are longer than the "
                                        "cap of 1.5 s"),
              std::string::npos)
        << r.status().message();
    // One frame over the cap says so, rather than "2.0 s exceeds the cap of 2.0 s".
    opt.max_seconds = 31999.0 / 16000.0;
    r = decode_wav(bytes.data(), bytes.size(), opt, "long");
    ASSERT_FALSE(r.is_ok());
    EXPECT_NE(r.status().message().find("(2.000000 s) are longer than the cap of 1.99994 s"),
              std::string::npos)
        << r.status().message();
    opt.max_seconds = 2.0;
    EXPECT_TRUE(decode_wav(bytes.data(), bytes.size(), opt, "long").is_ok());
}

// Every truncation and random byte corruption of a valid file decodes or fails cleanly.
TEST(Wav, TruncationsAndMutationsNeverCrash) {
    WavSpec s;
    s.extensible = true;
    s.bits = 24;
    s.channels = 2;
    s.data.resize(600);
    const auto good = build(s);
    ASSERT_TRUE(decode_wav(good.data(), good.size()).is_ok());
    for (size_t n = 0; n < good.size(); ++n) {
        EXPECT_FALSE(decode_wav(good.data(), n).is_ok()) << n;
    }
    std::mt19937 rng(7);
    for (int it = 0; it < 20000; ++it) {
        auto b = good;
        int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; ++k) b[rng() % 80] = static_cast<uint8_t>(rng());
        auto r = decode_wav(b.data(), b.size());
        if (r.is_ok()) {
            EXPECT_GT(r->samples.size(), 0u);
            EXPECT_TRUE(r->channels == 1 || r->channels == 2);
        }
    }
}

TEST(Wav, DecodesAllSampleFormats) {
    // 24-bit PCM stereo: (-2^23, 2^23 - 1), (1, -1).
    WavSpec s;
    s.channels = 2;
    s.bits = 24;
    s.data = {0x00, 0x00, 0x80, 0xFF, 0xFF, 0x7F, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0xFF};
    auto bytes = build(s);
    auto r = decode_wav(bytes.data(), bytes.size());
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->channels, 2);
    EXPECT_EQ(r->frames(), 2u);
    EXPECT_EQ(r->samples[0], -1.0f);
    EXPECT_EQ(r->samples[1], 8388607.0f / 8388608.0f);
    EXPECT_EQ(r->samples[2], 1.0f / 8388608.0f);
    EXPECT_EQ(r->samples[3], -1.0f / 8388608.0f);

    // 32-bit int PCM via WAVE_FORMAT_EXTENSIBLE (24 valid bits).
    s = WavSpec{};
    s.extensible = true;
    s.bits = 32;
    s.valid_bits = 24;
    s.data = {0x00, 0x00, 0x00, 0x80, 0x00, 0x01, 0x00, 0x40};
    bytes = build(s);
    r = decode_wav(bytes.data(), bytes.size());
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->samples[0], -1.0f);
    EXPECT_EQ(r->samples[1], static_cast<float>(0x40000100 / 2147483648.0));

    // IEEE float via WAVE_FORMAT_EXTENSIBLE, values kept as stored (even beyond +-1).
    s = WavSpec{};
    s.extensible = true;
    s.sub_tag = 3;
    s.bits = 32;
    s.data = float_data({0.25f, -3.5f});
    bytes = build(s);
    r = decode_wav(bytes.data(), bytes.size());
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->samples, (std::vector<float>{0.25f, -3.5f}));

    // 16-bit: -32768 -> -1, 32767 -> 32767/32768.
    s = WavSpec{};
    s.data = {0x00, 0x80, 0xFF, 0x7F};
    bytes = build(s);
    r = decode_wav(bytes.data(), bytes.size());
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r->samples, (std::vector<float>{-1.0f, 32767.0f / 32768.0f}));
}

TEST(Wav, SkipsOtherChunksAndOddPadding) {
    WavSpec s;
    s.data = {0x00, 0x40};
    auto bytes = build(s);
    // Insert a 3-byte LIST chunk (padded to 4) between fmt and data.
    std::vector<uint8_t> list = {'L', 'I', 'S', 'T', 3, 0, 0, 0, 'a', 'b', 'c', 0};
    bytes.insert(bytes.begin() + 12 + 8 + 16, list.begin(), list.end());
    auto r = decode_wav(bytes.data(), bytes.size());
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->samples, std::vector<float>{0.5f});
}

TEST(Wav, UnknownLengthSentinelAndAllowTruncated) {
    WavSpec s;
    s.data.assign(11, 0);  // 5 frames + a stray byte
    s.data_size = 0xFFFFFFFF;
    auto bytes = build(s);
    auto r = decode_wav(bytes.data(), bytes.size());
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->frames(), 5u);

    s.data_size = 400;
    bytes = build(s);
    EXPECT_FALSE(decode_wav(bytes.data(), bytes.size()).is_ok());
    WavOptions opt;
    opt.allow_truncated = true;
    r = decode_wav(bytes.data(), bytes.size(), opt);
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r->frames(), 5u);
}

TEST(Wav, WriteReadRoundTripIsLossless) {
    const std::string dir = voxrt::test::make_temp_dir("wav-rt");
    const std::string path = dir + "/out.wav";
    std::mt19937 rng(3);
    std::vector<float> x(24000);
    for (float& v : x) v = static_cast<float>(static_cast<int>(rng() % 65536) - 32768) / 32768.0f;
    x[0] = -1.0f;
    x[1] = 32767.0f / 32768.0f;
    ASSERT_TRUE(write_wav(path, x.data(), x.size(), 24000).is_ok());
    auto r = read_wav(path);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(r->sample_rate, 24000);
    EXPECT_EQ(r->channels, 1);
    EXPECT_EQ(r->samples, x);
    // Nothing but the final file in the directory (the temp file was renamed).
    int files = 0;
    for (auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
    EXPECT_EQ(files, 1);
    std::filesystem::remove_all(dir);
}

TEST(Wav, WriteClampsAndZeroesNaN) {
    const std::string dir = voxrt::test::make_temp_dir("wav-clamp");
    const std::string path = dir + "/c.wav";
    const float x[] = {1.5f,           -2.0f, std::numeric_limits<float>::quiet_NaN(),
                       1.0f,           -1.0f, std::numeric_limits<float>::infinity(),
                       0.5f / 32768.0f};
    ASSERT_TRUE(write_wav(path, x, 7, 16000).is_ok());
    auto r = read_wav(path);
    ASSERT_TRUE(r.is_ok());
    const float top = 32767.0f / 32768.0f;
    EXPECT_EQ(r->samples, (std::vector<float>{top, -1.0f, 0.0f, top, -1.0f, top, 0.0f}));
    std::filesystem::remove_all(dir);
}

TEST(Wav, WriteFailureLeavesNoFile) {
    const float x[] = {0.0f};
    Status st = write_wav("/nonexistent/dir/y.wav", x, 1, 16000);
    EXPECT_FALSE(st.is_ok());
    EXPECT_FALSE(std::filesystem::exists("/nonexistent/dir/y.wav"));
    EXPECT_FALSE(write_wav("/tmp/voxrt-bad-rate.wav", x, 1, 0).is_ok());
}

TEST(Wav, DownmixAveragesChannels) {
    Pcm p;
    p.channels = 2;
    p.sample_rate = 16000;
    p.samples = {1.0f, 3.0f, -0.5f, 0.25f};
    EXPECT_EQ(downmix_mono(p), (std::vector<float>{2.0f, -0.125f}));
    p.channels = 1;
    EXPECT_EQ(downmix_mono(p), p.samples);
}

// The cases of tools/reference/audio_cases.py decode exactly as the Python reference does.
TEST(Wav, CasesMatchReferenceDecode) {
    for (const char* name : test::kCases) {
        SCOPED_TRACE(name);
        auto r = read_wav(test::case_path(name));
        ASSERT_TRUE(r.is_ok()) << r.status().message();
        auto meta = test::fixture_f64(std::string("wav_meta.") + name);
        ASSERT_EQ(meta.size(), 4u);
        EXPECT_EQ(static_cast<double>(r->frames()), meta[0]);
        EXPECT_EQ(r->channels, static_cast<int>(meta[1]));
        EXPECT_EQ(r->sample_rate, static_cast<int>(meta[2]));
        double sum = 0;
        for (float v : r->samples) sum += v;
        EXPECT_NEAR(sum, meta[3], 1e-9 * (1 + std::fabs(meta[3])));
        auto ref = test::fixture(std::string("wav.") + name);  // [C, min(N, 16000)]
        ASSERT_EQ(ref.shape.size(), 2u);
        const int64_t C = ref.shape[0], n = ref.shape[1];
        for (int64_t c = 0; c < C; ++c) {
            for (int64_t i = 0; i < n; ++i) {
                ASSERT_EQ(r->samples[i * C + c], ref.data[c * n + i]) << "ch " << c << " i " << i;
            }
        }
    }
}

}  // namespace
}  // namespace voxrt::audio
