// The streaming WAV readers: read_wav_mono against downmix_mono(read_wav / decode_wav) on every
// test recording and on damaged files, chunk boundaries, and the memory the longest accepted
// recording at a high rate takes.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "audio/wav.h"
#include "unit/io/mem_probe.h"
#include "util/test_paths.h"

namespace voxrt::audio {
namespace {

void put(std::vector<uint8_t>& v, uint32_t x, int bytes) {
    for (int i = 0; i < bytes; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}

// A canonical 44-byte header for `frames` frames; the samples are not included.
std::vector<uint8_t> header(uint16_t tag, uint16_t channels, uint32_t rate, uint16_t bits,
                            uint64_t frames) {
    const uint32_t align = channels * bits / 8;
    const auto data = static_cast<uint32_t>(frames * align);
    std::vector<uint8_t> h;
    h.insert(h.end(), {'R', 'I', 'F', 'F'});
    put(h, 36 + data, 4);
    h.insert(h.end(), {'W', 'A', 'V', 'E', 'f', 'm', 't', ' '});
    put(h, 16, 4);
    put(h, tag, 2);
    put(h, channels, 2);
    put(h, rate, 4);
    put(h, rate * align, 4);
    put(h, align, 2);
    put(h, bits, 2);
    h.insert(h.end(), {'d', 'a', 't', 'a'});
    put(h, data, 4);
    return h;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

TEST(WavStream, MonoEqualsDownmixOfEveryRecording) {
    for (const char* name :
         {"short.wav", "question.wav", "asr.wav", "silence.wav", "sr8k.wav", "st48k.wav"}) {
        SCOPED_TRACE(name);
        const std::string path = test::data_dir() + "/audio/" + name;
        auto whole = read_wav(path);
        ASSERT_TRUE(whole.is_ok()) << whole.status().message();
        auto mono = read_wav_mono(path);
        ASSERT_TRUE(mono.is_ok()) << mono.status().message();
        EXPECT_EQ(mono->sample_rate, whole->sample_rate);
        EXPECT_TRUE(same_floats(mono->samples, downmix_mono(*whole)));
    }
}

// Files several chunks long in every sample format, with a frame split across no chunk boundary
// and a last chunk shorter than the others: read_wav equals decode_wav, read_wav_mono equals the
// downmix, bit for bit.
TEST(WavStream, ChunkedReadEqualsWholeDecode) {
    const std::string dir = test::make_temp_dir("wav-stream");
    std::mt19937 rng(3);
    struct Fmt {
        uint16_t tag, channels, bits;
    };
    for (const Fmt f : {Fmt{1, 1, 16}, Fmt{1, 2, 16}, Fmt{1, 2, 24}, Fmt{1, 1, 32}, Fmt{3, 2, 32},
                        Fmt{3, 1, 32}}) {
        SCOPED_TRACE(std::to_string(f.tag) + "/" + std::to_string(f.channels) + "/" +
                     std::to_string(f.bits));
        const size_t align = f.channels * f.bits / 8;
        const uint64_t frames = 3 * kWavChunkBytes / align + 12345;
        std::vector<uint8_t> bytes = header(f.tag, f.channels, 16000, f.bits, frames);
        const size_t data_at = bytes.size();
        bytes.resize(data_at + frames * align);
        for (size_t i = data_at; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(rng());
        if (f.tag == 3) {
            std::uniform_real_distribution<float> u(-1.5f, 1.5f);
            for (size_t i = data_at; i < bytes.size(); i += 4) {
                const float x = u(rng);
                std::memcpy(&bytes[i], &x, 4);
            }
        }
        const std::string path = dir + "/chunked.wav";
        write_file(path, bytes);
        auto mem = decode_wav(bytes.data(), bytes.size());
        ASSERT_TRUE(mem.is_ok()) << mem.status().message();
        auto whole = read_wav(path);
        ASSERT_TRUE(whole.is_ok()) << whole.status().message();
        EXPECT_TRUE(same_floats(whole->samples, mem->samples));
        auto mono = read_wav_mono(path);
        ASSERT_TRUE(mono.is_ok()) << mono.status().message();
        EXPECT_EQ(mono->samples.size(), frames);
        EXPECT_TRUE(same_floats(mono->samples, downmix_mono(*mem)));
    }
    std::filesystem::remove_all(dir);
}

// A bad float sample in a later chunk is found, and named by its index in the whole file.
TEST(WavStream, BadSampleInALaterChunkIsNamed) {
    const std::string dir = test::make_temp_dir("wav-stream-nan");
    const uint64_t frames = kWavChunkBytes / 8 * 2 + 100;  // stereo float: 8 bytes a frame
    std::vector<uint8_t> bytes = header(3, 2, 16000, 32, frames);
    const size_t data_at = bytes.size();
    bytes.resize(data_at + frames * 8, 0);
    const uint64_t bad_frame = frames - 7;
    const float nan = std::nanf("");
    std::memcpy(&bytes[data_at + bad_frame * 8 + 4], &nan, 4);  // channel 1
    const std::string path = dir + "/nan.wav";
    write_file(path, bytes);
    const std::string needle = "float sample " + std::to_string(bad_frame) + " (channel 1)";
    for (const Status& st : {read_wav_mono(path).status(), read_wav(path).status(),
                             decode_wav(bytes.data(), bytes.size(), {}, path).status()}) {
        ASSERT_FALSE(st.is_ok());
        EXPECT_EQ(st.code(), StatusCode::kInvalidFile);
        EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
        EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
    }
    std::filesystem::remove_all(dir);
}

// Truncations and corruptions: the three readers agree on success, error code and message.
TEST(WavStream, DamagedFilesGiveTheSameErrors) {
    const std::string dir = test::make_temp_dir("wav-stream-bad");
    std::vector<uint8_t> good = header(1, 2, 44100, 16, 3000);
    good.resize(good.size() + 3000 * 4, 0x5A);
    std::mt19937 rng(11);
    const std::string path = dir + "/bad.wav";
    for (int it = 0; it < 400; ++it) {
        std::vector<uint8_t> b = good;
        if (it % 2 == 0) {
            b.resize(rng() % b.size());
        } else {
            for (int k = 0; k < 3; ++k) b[rng() % 48] = static_cast<uint8_t>(rng());
        }
        write_file(path, b);
        auto mem = decode_wav(b.data(), b.size(), {}, path);
        auto whole = read_wav(path);
        auto mono = read_wav_mono(path);
        ASSERT_EQ(mem.is_ok(), mono.is_ok()) << it;
        ASSERT_EQ(whole.is_ok(), mono.is_ok()) << it;
        if (!mem.is_ok()) {
            EXPECT_EQ(mem.status().message(), mono.status().message());
            EXPECT_EQ(whole.status().message(), mono.status().message());
            EXPECT_EQ(mem.status().code(), mono.status().code());
        } else {
            EXPECT_TRUE(same_floats(mono->samples, downmix_mono(*mem)));
        }
    }
    std::filesystem::remove_all(dir);
}

// The longest accepted recording at a high rate: 600 s of 16-bit stereo at 96 kHz, a 230 MB file
// (sparse: the samples are the zeros of a hole). read_wav_mono holds the 230 MB mono result and
// its chunk buffers, never the file (230 MB) or the interleaved floats (461 MB) as the whole-file
// path did (921 MB at its peak). The bound: the result plus 16 MiB. Under AddressSanitizer the
// recording is 60 s and the bound is not applied.
TEST(WavStream, LongestRecordingAtHighRateReadsInBoundedMemory) {
    const std::string dir = test::make_temp_dir("wav-stream-long");
    const uint32_t rate = 96000;
    const double seconds = test::kUnderAsan ? 60.0 : WavOptions{}.max_seconds;
    const auto frames = static_cast<uint64_t>(seconds * rate);
    const std::string path = dir + "/long.wav";
    write_file(path, header(1, 2, rate, 16, frames));
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(44 + frames * 4)), 0);

    const bool can_measure = test::reset_peak_rss();
    const long before = test::rss_kib();
    auto mono = read_wav_mono(path);
    const long peak = test::peak_rss_kib();
    ASSERT_TRUE(mono.is_ok()) << mono.status().message();
    EXPECT_EQ(mono->samples.size(), frames);
    EXPECT_EQ(mono->sample_rate, static_cast<int>(rate));
    EXPECT_EQ(mono->samples.front(), 0.0f);
    EXPECT_EQ(mono->samples.back(), 0.0f);
    const long result_kib = static_cast<long>(frames * 4 / 1024);
    std::printf("read_wav_mono of %.0f s at %u Hz stereo: peak RSS +%ld KiB (result %ld KiB)\n",
                seconds, rate, peak - before, result_kib);
    if (can_measure && !test::kUnderAsan) {
        EXPECT_LE(peak - before, result_kib + 16 * 1024);
    }
    mono = Status::ok();
    std::filesystem::remove_all(dir);
}

// One frame more than the cap is refused before anything is allocated.
TEST(WavStream, OneFrameOverTheCapIsRefused) {
    const std::string dir = test::make_temp_dir("wav-stream-cap");
    const uint32_t rate = 192000;
    const auto frames = static_cast<uint64_t>(WavOptions{}.max_seconds * rate) + 1;
    const std::string path = dir + "/over.wav";
    write_file(path, header(1, 1, rate, 16, frames));
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(44 + frames * 2)), 0);
    auto r = read_wav_mono(path);
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
    EXPECT_NE(r.status().message().find("longer than the cap of 600 s"), std::string::npos)
        << r.status().message();
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace voxrt::audio
