// Bad input through the command line: each case must exit with status 1 (2 for usage errors) and
// print exactly one "error: …" line that names the offending file or field — never crash.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/test_paths.h"

namespace fs = std::filesystem;

namespace voxrt {
namespace {

struct CliResult {
    int exit_code = -1;
    bool signaled = false;
    std::string err;
    std::string out;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Runs the CLI under `timeout` (exit status 124 if it runs longer: a hang fails quickly).
CliResult run_cli(const std::string& args, int timeout_s = 300) {
    const std::string dir = test::make_temp_dir("cli");
    const std::string err_path = dir + "/stderr.txt", out_path = dir + "/stdout.txt";
    const std::string cmd = "timeout -k 5 " + std::to_string(timeout_s) + " " + test::cli_path() +
                            " " + args + " >" + out_path + " 2>" + err_path;
    int rc = std::system(cmd.c_str());
    CliResult r;
    if (WIFSIGNALED(rc)) r.signaled = true;
    if (WIFEXITED(rc)) r.exit_code = WEXITSTATUS(rc);
    r.err = slurp(err_path);
    r.out = slurp(out_path);
    fs::remove_all(dir);
    return r;
}

int count_error_lines(const std::string& s) {
    int n = 0;
    std::istringstream in(s);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("error: ", 0) == 0) ++n;
    return n;
}

std::string tiny() {
    return test::data_dir() + "/tiny/model";
}
std::string tone_wav(double seconds, int rate = 16000);

// The input of the cases that need a valid WAV: made here (a 2 s tone at 44.1 kHz, so that the
// resampler runs too), not read from outside the repository.
std::string question() {
    static const std::string path = tone_wav(2.0, 44100);
    return path;
}

// A copy of the tiny model directory (links to the big files) in which `replace` is a real file.
std::string model_copy(const std::string& tag) {
    const std::string dir = test::make_temp_dir(tag);
    for (const auto& e : fs::directory_iterator(tiny())) {
        fs::create_symlink(e.path(), fs::path(dir) / e.path().filename());
    }
    return dir;
}

void replace_file(const std::string& dir, const std::string& name, const std::string& bytes) {
    fs::remove(fs::path(dir) / name);
    std::ofstream(fs::path(dir) / name, std::ios::binary) << bytes;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Rewrites model.safetensors with a modified header (data kept).
std::string with_header_edit(const std::string& dir,
                             const std::function<void(nlohmann::json&)>& edit) {
    std::string bytes = read_file(tiny() + "/model.safetensors");
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
    edit(h);
    std::string hs = h.dump();
    while (hs.size() % 8) hs += ' ';
    uint64_t m = hs.size();
    std::string out(reinterpret_cast<const char*>(&m), 8);
    out += hs;
    out += bytes.substr(8 + n);
    replace_file(dir, "model.safetensors", out);
    return dir;
}

std::string wav_bytes(int channels, int rate, int bits, int format, uint32_t n_frames,
                      bool truncate = false) {
    const uint32_t block = static_cast<uint32_t>(channels * bits / 8);
    const uint32_t data = n_frames * block;
    std::string b;
    auto u32 = [&](uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); };
    auto u16 = [&](uint16_t v) { b.append(reinterpret_cast<const char*>(&v), 2); };
    b += "RIFF";
    u32(36 + data);
    b += "WAVEfmt ";
    u32(16);
    u16(static_cast<uint16_t>(format));
    u16(static_cast<uint16_t>(channels));
    u32(static_cast<uint32_t>(rate));
    u32(static_cast<uint32_t>(rate) * block);
    u16(static_cast<uint16_t>(block));
    u16(static_cast<uint16_t>(bits));
    b += "data";
    u32(data);
    b.append(truncate ? data / 2 : data, '\0');
    return b;
}

std::string temp_wav(const std::string& bytes) {
    const std::string dir = test::make_temp_dir("wav");
    const std::string p = dir + "/in.wav";
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
}

// Exit status `code`, and stderr holds exactly one "error: " line (with "error: usage: " for a
// usage error) that contains `needle`.
void expect_error(const CliResult& r, const std::string& needle, int code = 1) {
    EXPECT_FALSE(r.signaled) << "crashed: " << r.err;
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_EQ(count_error_lines(r.err), 1) << r.err;
    if (code == 2) {
        EXPECT_EQ(r.err.find("error: usage: "), 0u) << r.err;
    }
    EXPECT_NE(r.err.find(needle), std::string::npos)
        << "expected \"" << needle << "\" in: " << r.err;
}

std::string s2s(const std::string& model, const std::string& in, const std::string& extra = "") {
    return "s2s --device cpu -q -m " + model + " -i " + in +
           " -o /tmp/voxrt-cli-test-out.wav -n 4 " + extra;
}

TEST(CliErrors, UsageErrorsExit2) {
    expect_error(run_cli("s2s -i x.wav -o y.wav"), "", 2);  // -m missing
    expect_error(run_cli("tts -m " + tiny() + " --text hi --voice robot -o y.wav"), "", 2);
    expect_error(run_cli("frobnicate"), "", 2);
}

TEST(CliErrors, MissingFiles) {
    expect_error(run_cli(s2s("/nonexistent/model", question())), "/nonexistent/model");
    expect_error(run_cli(s2s(tiny(), "/nonexistent/in.wav")), "/nonexistent/in.wav");
    const std::string d = model_copy("nodetok");
    fs::remove(fs::path(d) / "audio_detokenizer");
    expect_error(run_cli(s2s(d, question())), "audio_detokenizer");
}

TEST(CliErrors, BadSafetensors) {
    std::string full = read_file(tiny() + "/model.safetensors");
    {
        const std::string d = model_copy("trunc");
        replace_file(d, "model.safetensors", full.substr(0, full.size() / 2));
        expect_error(run_cli(s2s(d, question())), "model.safetensors");
    }
    {
        const std::string d = model_copy("garbage");
        replace_file(d, "model.safetensors", std::string(4096, '\x7f'));
        expect_error(run_cli(s2s(d, question())), "model.safetensors");
    }
    {
        const std::string d = model_copy("shape");
        with_header_edit(d, [](nlohmann::json& h) {
            h["lfm.embedding_norm.weight"]["shape"] = {32, 2};
        });
        expect_error(run_cli(s2s(d, question())), "lfm.embedding_norm.weight");
    }
    {
        const std::string d = model_copy("dtype");
        with_header_edit(
            d, [](nlohmann::json& h) { h["lfm.embedding_norm.weight"]["dtype"] = "I16"; });
        expect_error(run_cli(s2s(d, question())), "lfm.embedding_norm.weight");
    }
    {
        const std::string d = model_copy("missing");
        with_header_edit(d, [](nlohmann::json& h) {
            // rename keeps the file consistent but removes the required name
            h["lfm.embedding_norm.weightX"] = h["lfm.embedding_norm.weight"];
            h.erase("lfm.embedding_norm.weight");
        });
        expect_error(run_cli(s2s(d, question())), "lfm.embedding_norm.weight");
    }
}

TEST(CliErrors, BadConfigAndTokenizer) {
    std::string cfg = read_file(tiny() + "/config.json");
    {
        const std::string d = model_copy("cfgjson");
        replace_file(d, "config.json", cfg.substr(0, cfg.size() / 2));
        expect_error(run_cli(s2s(d, question())), "config.json");
    }
    {
        const std::string d = model_copy("cfgfield");
        nlohmann::json j = nlohmann::json::parse(cfg);
        j["lfm"]["hidden_size"] = -64;
        replace_file(d, "config.json", j.dump());
        expect_error(run_cli(s2s(d, question())), "lfm.hidden_size");
    }
    {
        const std::string d = model_copy("cfgtype");
        nlohmann::json j = nlohmann::json::parse(cfg);
        j["encoder"]["n_layers"] = "two";
        replace_file(d, "config.json", j.dump());
        expect_error(run_cli(s2s(d, question())), "encoder.n_layers");
    }
    {
        const std::string d = model_copy("tok");
        replace_file(d, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": 3}}");
        expect_error(run_cli(s2s(d, question())), "tokenizer.json");
    }
}

TEST(CliErrors, BadAudio) {
    expect_error(run_cli(s2s(tiny(), temp_wav("this is not a wav file at all, just text"))),
                 "in.wav");
    expect_error(
        run_cli(s2s(tiny(), temp_wav(wav_bytes(1, 16000, 16, 1, 16000, /*truncate=*/true)))),
        "in.wav");
    expect_error(run_cli(s2s(tiny(), temp_wav(wav_bytes(1, 16000, 16, 1, 0)))), "in.wav");
    expect_error(run_cli(s2s(tiny(), temp_wav(wav_bytes(6, 16000, 16, 1, 1600)))), "in.wav");
    expect_error(run_cli(s2s(tiny(), temp_wav(wav_bytes(1, 16000, 8, 1, 1600)))), "in.wav");
    expect_error(run_cli(s2s(tiny(), temp_wav(wav_bytes(1, 0, 16, 1, 1600)))), "in.wav");
    expect_error(run_cli(s2s(tiny(), temp_wav(wav_bytes(1, 1000000000, 16, 1, 1600)))), "in.wav");
}

TEST(CliErrors, AudioLongerThanContext) {
    expect_error(run_cli(s2s(tiny(), question(), "--context 48")), "context");
}

// Within voxrt's limit (131,072) but beyond the checkpoint's max_position_embeddings (128,000):
// refused at load, naming the checkpoint's field.
TEST(CliErrors, ContextBeyondTheModelsPositions) {
    expect_error(run_cli(s2s(tiny(), question(), "--context 130000")), "max_position_embeddings");
}

// Beyond voxrt's limit: a usage error naming the option.
TEST(CliErrors, ContextBeyondVoxrtsLimitIsAUsageError) {
    expect_error(run_cli(s2s(tiny(), question(), "--context 1000000")), "--context", 2);
}

TEST(CliErrors, GoodRunsSucceed) {
    CliResult r = run_cli(s2s(tiny(), question()));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(count_error_lines(r.err), 0) << r.err;
    r = run_cli("inspect -m " + tiny());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    r = run_cli("asr --device cpu -q -n 4 -m " + tiny() + " -i " + question());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    r = run_cli("tts --device cpu -q -n 4 -m " + tiny() +
                " --text hello --voice uk-male -o /tmp/voxrt-cli-tts.wav");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    r = run_cli("chat --device cpu -q -n 4 -m " + tiny() + " --text hello");
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

// The load line says how long the warm-up turn took; --no-warm-up skips it.
TEST(CliErrors, NoWarmUpSkipsTheLoadsTurn) {
    const std::string args = "asr --device cpu -n 4 -m " + tiny() + " -i " + question();
    CliResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("warm-up turn"), std::string::npos) << r.err;
    r = run_cli(args + " --no-warm-up");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("voxrt: loaded"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("warm-up turn"), std::string::npos) << r.err;
}

// A mono 16-bit WAV of a wavering tone (so that the encoder sees something other than silence).
std::string tone_wav(double seconds, int rate) {
    const auto n = static_cast<uint32_t>(seconds * rate);
    std::string b = wav_bytes(1, rate, 16, 1, n);
    for (uint32_t i = 0; i < n; ++i) {
        const double t = static_cast<double>(i) / rate;
        const double f = 220.0 + 80.0 * std::sin(2.0 * M_PI * 0.3 * t);
        const auto v = static_cast<int16_t>(9000.0 * std::sin(2.0 * M_PI * f * t) *
                                            (0.6 + 0.4 * std::sin(2.0 * M_PI * 3.0 * t)));
        std::memcpy(&b[44 + 2 * static_cast<size_t>(i)], &v, 2);
    }
    return temp_wav(b);
}

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

bool valid_utf8(const std::string& s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        const size_t len = c < 0x80         ? 1
                           : (c >> 5) == 6  ? 2
                           : (c >> 4) == 14 ? 3
                           : (c >> 3) == 30 ? 4
                                            : 0;
        if (len == 0 || i + len > s.size()) return false;
        for (size_t k = 1; k < len; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += len;
    }
    return true;
}

TEST(CliErrors, UsageErrorsForBadValues) {
    const std::string in = tone_wav(1.0);
    const std::string base = "s2s --device cpu -q -n 4 -m " + tiny() + " -i " + in;
    expect_error(run_cli(base + " -o ''"), "--output", 2);
    expect_error(run_cli("s2s --device cpu -q -m " + tiny() + " -i '' -o /dev/null"), "--input", 2);
    expect_error(run_cli("asr --device cpu -q -m '' -i " + in), "--model", 2);
    expect_error(run_cli(base + " -o /dev/null --temp nan"), "--temp", 2);
    expect_error(run_cli(base + " -o /dev/null --temp -0.5"), "--temp", 2);
    expect_error(run_cli(base + " -o /dev/null --audio-temp inf"), "--audio-temp", 2);
    expect_error(run_cli(base + " -o /dev/null --seed -1"), "--seed", 2);
    expect_error(run_cli(base + " -o /dev/null --seed 18446744073709551616"), "--seed", 2);
    expect_error(run_cli(base + " -o /dev/null --seed 0x10"), "--seed", 2);
    // One range for --detok-chunk, the library's (kDetokMaxStepFrames = 32).
    expect_error(run_cli(base + " -o /dev/null --detok-chunk 33"), "--detok-chunk", 2);
    expect_error(run_cli("bench --device cpu -m " + tiny() + " -i " + in + " --detok-chunk 33"),
                 "--detok-chunk", 2);
    expect_error(run_cli("bench --device cpu -m " + tiny() + " -i " + in + " --json ''"), "--json",
                 2);
    // The largest seed and chunk are accepted.
    CliResult r = run_cli(base + " -o /dev/null --seed 18446744073709551615 --detok-chunk 32");
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

// voxrt bench --sessions: one table row and one JSON line per count, every conversation decoding
// (frames come out), and a count out of range refused naming the option.
TEST(CliBench, SessionsRampReportsEachCount) {
    const std::string dir = test::make_temp_dir("bench");
    const std::string json = dir + "/s.jsonl";
    CliResult r = run_cli("bench --device cpu -m " + tiny() + " -i " + question() +
                          " -n 24 --sessions 1,3 --json " + json);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string j = slurp(json);
    fs::remove_all(dir);
    EXPECT_NE(j.find("\"sessions\":1,"), std::string::npos) << j;
    EXPECT_NE(j.find("\"sessions\":3,"), std::string::npos) << j;
    EXPECT_EQ(j.find("\"frames_per_s\":0.0,"), std::string::npos) << j;
    EXPECT_NE(r.out.find("| 3 |"), std::string::npos) << r.out;
    expect_error(run_cli("bench --device cpu -m " + tiny() + " -i " + question() + " --sessions 0"),
                 "--sessions", 2);
}

TEST(CliErrors, OutputThatIsNotARegularFileIsWrittenThrough) {
    const std::string in = tone_wav(1.0);
    const std::string base = "s2s --device cpu -q -n 40 -m " + tiny() + " -i " + in;
    // /dev/null stays the device.
    CliResult r = run_cli(base + " -o /dev/null");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    struct stat st {};
    ASSERT_EQ(::stat("/dev/null", &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));

    // A FIFO is written through to its reader and stays a FIFO.
    const std::string dir = test::make_temp_dir("cliout");
    const std::string fifo = dir + "/pipe.wav", got = dir + "/got.wav";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    const std::string cmd =
        "cd " + dir + " && (timeout 60 cat pipe.wav > got.wav &) && timeout 60 " +
        test::cli_path() + " " + base + " -o " + fifo + " 2>/dev/null >/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    for (int i = 0; i < 100 && slurp(got).size() < 44; ++i) ::usleep(50 * 1000);
    const std::string bytes = slurp(got);
    ASSERT_GE(bytes.size(), 44u);
    EXPECT_EQ(bytes.substr(0, 4), "RIFF");
    ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
    EXPECT_TRUE(S_ISFIFO(st.st_mode));

    // A symlink stays a symlink; the file it leads to gets the WAV.
    const std::string target = dir + "/target.wav", link = dir + "/link.wav";
    std::ofstream(target) << "old";
    fs::create_symlink(target, link);
    r = run_cli(base + " -o " + link);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(fs::is_symlink(link));
    EXPECT_EQ(slurp(target).substr(0, 4), "RIFF");

    // A directory is refused and left alone.
    expect_error(run_cli(base + " -o " + dir), dir + ": is a directory");
    EXPECT_TRUE(fs::is_directory(dir));
    fs::remove_all(dir);
}

TEST(CliErrors, InputsThatAreNotRegularFilesAreRefusedWithoutHanging) {
    const std::string dir = test::make_temp_dir("clififo");
    const std::string fifo = dir + "/in.wav";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    // Nobody writes the FIFO: a reader that opens before checking would wait forever (the
    // timeout turns that into exit status 124).
    expect_error(run_cli("asr --device cpu -q -m " + tiny() + " -i " + fifo, 30),
                 fifo + ": is a FIFO");
    expect_error(run_cli("asr --device cpu -q -m " + tiny() + " -i " + dir, 30),
                 dir + ": is a directory");
    expect_error(run_cli("asr --device cpu -q -m " + tiny() + " -i /dev/null", 30),
                 "/dev/null: is a character device");
    // The model's files as FIFOs.
    const std::string in = tone_wav(0.5);
    for (const char* name : {"config.json", "model.safetensors", "tokenizer.json"}) {
        const std::string d = model_copy("fifomodel");
        fs::remove(fs::path(d) / name);
        ASSERT_EQ(::mkfifo((d + "/" + name).c_str(), 0600), 0);
        expect_error(run_cli("asr --device cpu -q -m " + d + " -i " + in, 30), d + "/" + name);
    }
    fs::remove_all(dir);
}

TEST(CliErrors, SymlinkLoopsAreReportedAsSuch) {
    const std::string dir = test::make_temp_dir("cliloop");
    fs::create_symlink(dir + "/b", dir + "/a");
    fs::create_symlink(dir + "/a", dir + "/b");
    const std::string in = tone_wav(0.5);
    const std::string loop = "Too many levels of symbolic links";
    expect_error(run_cli("asr --device cpu -q -m " + tiny() + " -i " + dir + "/a"), loop);
    expect_error(run_cli("asr --device cpu -q -m " + dir + "/a -i " + in), loop);
    for (const char* name : {"config.json", "model.safetensors", "tokenizer.json"}) {
        const std::string d = model_copy("loopmodel");
        fs::remove(fs::path(d) / name);
        fs::create_symlink(dir + "/a", fs::path(d) / name);
        CliResult r = run_cli("asr --device cpu -q -m " + d + " -i " + in);
        expect_error(r, loop);
        EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
    }
    fs::remove_all(dir);
}

TEST(CliErrors, ErrorTextIsEscapedAndNumbersAreNotWrapped) {
    const std::string in = tone_wav(0.5);
    {
        // Raw non-UTF-8 bytes and a control character from a corrupt config.json.
        const std::string d = model_copy("rawbytes");
        replace_file(d, "config.json", std::string("{\"lfm\": {\"a\xFF\xFE\x01z\": 1, "));
        CliResult r = run_cli("asr --device cpu -q -m " + d + " -i " + in);
        expect_error(r, "config.json");
        EXPECT_TRUE(valid_utf8(r.err)) << r.err;
        EXPECT_NE(r.err.find("\\xFF"), std::string::npos) << r.err;
        EXPECT_EQ(r.err.find('\x01'), std::string::npos) << r.err;
    }
    {
        const std::string d = model_copy("bigint");
        nlohmann::json j = nlohmann::json::parse(read_file(tiny() + "/config.json"));
        j["lfm"]["hidden_size"] = uint64_t{1} << 63;
        replace_file(d, "config.json", j.dump());
        CliResult r = run_cli("asr --device cpu -q -m " + d + " -i " + in);
        expect_error(r, "lfm.hidden_size: value 9223372036854775808 outside");
        EXPECT_EQ(r.err.find("-9223372036854775808"), std::string::npos) << r.err;
    }
    // A WAV one frame over the 600 s cap says how much longer, not "600.0 s exceeds 600.0 s".
    const std::string over = temp_wav(wav_bytes(1, 1000, 16, 1, 600 * 1000 + 1));
    expect_error(run_cli("asr --device cpu -q -m " + tiny() + " -i " + over),
                 "600001 frames at 1000 Hz (600.001000 s) are longer than the cap of 600 s");
}

TEST(CliErrors, TimingLineShowsOnlyTheStagesThatRan) {
    const std::string in = tone_wav(1.0);
    CliResult asr = run_cli("asr --device cpu -n 4 -m " + tiny() + " -i " + in);
    ASSERT_EQ(asr.exit_code, 0) << asr.err;
    EXPECT_NE(asr.err.find("timing: load"), std::string::npos) << asr.err;
    EXPECT_NE(asr.err.find("| encoder "), std::string::npos) << asr.err;
    EXPECT_EQ(asr.err.find("first audio frame"), std::string::npos) << asr.err;
    EXPECT_EQ(asr.err.find("detokenizer"), std::string::npos) << asr.err;
    EXPECT_EQ(asr.err.find("-1.0"), std::string::npos) << asr.err;

    CliResult chat = run_cli("chat --device cpu -n 4 -m " + tiny() + " --text hello");
    ASSERT_EQ(chat.exit_code, 0) << chat.err;
    EXPECT_EQ(chat.err.find("resample+mel"), std::string::npos) << chat.err;
    EXPECT_EQ(chat.err.find("encoder"), std::string::npos) << chat.err;

    CliResult s2s = run_cli("s2s --device cpu -n 40 -m " + tiny() + " -i " + in + " -o /dev/null");
    ASSERT_EQ(s2s.exit_code, 0) << s2s.err;
    ASSERT_EQ(s2s.err.find(" 0 audio frames"), std::string::npos) << s2s.err;
    EXPECT_NE(s2s.err.find("| detokenizer "), std::string::npos) << s2s.err;
    EXPECT_NE(s2s.err.find("| first audio frame "), std::string::npos) << s2s.err;
}

// With stdout and stderr on one terminal, no progress line lands inside the answer; elsewhere
// progress is shown (which is what makes the first check meaningful).
TEST(CliErrors, ProgressNeverSplitsTheAnswerOnATerminal) {
    if (std::system("command -v script >/dev/null 2>&1") != 0) GTEST_SKIP() << "no script(1)";
    const std::string args = "chat --device cpu -n 120 -m " + tiny() + " --text hello";
    CliResult piped = run_cli(args);
    ASSERT_EQ(piped.exit_code, 0) << piped.err;
    ASSERT_NE(piped.err.find("voxrt: step 50/120"), std::string::npos) << piped.err;

    const std::string dir = test::make_temp_dir("clitty");
    const std::string log = dir + "/tty.txt";
    const std::string cmd = "timeout 120 script -qefc " +
                            shell_quote(test::cli_path() + " " + args) + " " + log +
                            " >/dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    const std::string tty = slurp(log);
    EXPECT_NE(tty.find("timing: load"), std::string::npos) << tty;
    EXPECT_EQ(tty.find("voxrt: step"), std::string::npos) << tty;
    fs::remove_all(dir);
}

// Reads N from "run with --context N or more".
int needed_context(const std::string& err) {
    const std::string key = "run with --context ";
    const size_t at = err.find(key);
    return at == std::string::npos ? -1 : std::atoi(err.c_str() + at + key.size());
}

TEST(CliErrors, ContextTooSmallSaysWhichContextIsNeeded) {
    const std::string in = tone_wav(10.0);
    const std::string base = "asr --device cpu -q -n 16 -m " + tiny() + " -i " + in;
    CliResult r = run_cli(base + " --context 64");
    expect_error(r, "run with --context ");
    const int need = needed_context(r.err);
    ASSERT_GT(need, 64) << r.err;
    r = run_cli(base + " --context " + std::to_string(need - 1));
    expect_error(r, "run with --context " + std::to_string(need) + " or more");
    r = run_cli(base + " --context " + std::to_string(need));
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

// The README's promise: recordings up to 600 s (a ten-minute meeting for ASR). The default
// context is too small for one; the error says which --context is, and that one works.
TEST(CliErrors, TenMinuteRecordingTranscribes) {
    const std::string in = tone_wav(600.0);
    const std::string base = "asr --device cpu -q -n 8 -m " + tiny() + " -i " + in;
    CliResult r = run_cli(base, 60);
    expect_error(r, "audio of 600.0 s needs 7501 positions");
    const int need = needed_context(r.err);
    ASSERT_GT(need, 7501) << r.err;
    r = run_cli(base + " --context " + std::to_string(need));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(count_error_lines(r.err), 0) << r.err;
}

}  // namespace
}  // namespace voxrt
