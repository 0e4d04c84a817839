// Bad input through the command line: each case must exit with status 1 (2 for usage errors) and
// print exactly one "error: …" line that names the offending file or field — never crash.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
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
};

CliResult run_cli(const std::string& args) {
    const std::string dir = test::make_temp_dir("cli");
    const std::string err_path = dir + "/stderr.txt";
    const std::string cmd = test::cli_path() + " " + args + " >/dev/null 2>" + err_path;
    int rc = std::system(cmd.c_str());
    CliResult r;
    if (WIFSIGNALED(rc)) r.signaled = true;
    if (WIFEXITED(rc)) r.exit_code = WEXITSTATUS(rc);
    std::ifstream in(err_path);
    std::stringstream ss;
    ss << in.rdbuf();
    r.err = ss.str();
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
std::string question() {
    return test::data_dir() + "/audio/question.wav";
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

void expect_error(const CliResult& r, const std::string& needle, int code = 1) {
    EXPECT_FALSE(r.signaled) << "crashed: " << r.err;
    EXPECT_EQ(r.exit_code, code) << r.err;
    if (code == 1) {
        EXPECT_EQ(count_error_lines(r.err), 1) << r.err;
        EXPECT_NE(r.err.find(needle), std::string::npos)
            << "expected \"" << needle << "\" in: " << r.err;
    }
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

TEST(CliErrors, ContextBeyondTheModelsPositions) {
    expect_error(run_cli(s2s(tiny(), question(), "--context 1000000")), "max_position_embeddings");
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

}  // namespace
}  // namespace voxrt
