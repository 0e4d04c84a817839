// End-to-end greedy generation on the tiny random-weight checkpoint, compared with the official
// liquid-audio generate_interleaved / generate_sequential run (tests/data/tiny/dumps/greedy_*).
// The whole pipeline runs: WAV decode, resampling, mel, encoder, tokenizer, prompt assembly,
// backbone, heads, the interleaving / sequential state machines.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "audio/wav.h"
#include "io/safetensors.h"
#include "model/lfm_audio.h"
#include "runtime/session.h"
#include "util/compare.h"
#include "util/parity_env.h"
#include "util/test_paths.h"
#include "backend/device.h"

namespace voxrt {
namespace {

struct Item {
    int kind;  // 0 text, 1 frame
    int32_t token;
    std::array<int32_t, 8> codes;
    bool operator==(const Item& o) const {
        return kind == o.kind && (kind == 0 ? token == o.token : codes == o.codes);
    }
};

std::vector<Item> reference(const std::string& name) {
    auto f = io::SafeTensorsFile::open(test::parity_root() + "/dumps/" + name + ".safetensors");
    EXPECT_TRUE(f.is_ok()) << f.status().message();
    if (!f.is_ok()) return {};
    auto kind = test::read_i64(*f, "greedy.kind"), text = test::read_i64(*f, "greedy.text"),
         codes = test::read_i64(*f, "greedy.codes");
    std::vector<Item> out;
    for (size_t i = 0; i < kind.size(); ++i) {
        Item it{static_cast<int>(kind[i]), static_cast<int32_t>(text[i]), {}};
        for (int q = 0; q < 8; ++q)
            it.codes[static_cast<size_t>(q)] =
                static_cast<int32_t>(codes[i * 8 + static_cast<size_t>(q)]);
        out.push_back(it);
    }
    return out;
}

std::unique_ptr<model::LfmAudioModel> load_tiny(ops::Precision prec) {
    model::ModelOptions o;
    o.device = test::parity_device();
    o.precision = prec;
    o.threads = 0;
    o.max_context = 1024;
    auto m = model::LfmAudioModel::load(test::parity_root() + "/model", o);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return m.is_ok() ? std::move(*m) : nullptr;
}

std::vector<float> read_audio(const std::string& path, int* rate) {
    auto pcm = audio::read_wav(path);
    EXPECT_TRUE(pcm.is_ok()) << pcm.status().message();
    if (!pcm.is_ok()) return {};
    *rate = pcm->sample_rate;
    return audio::downmix_mono(*pcm);
}

std::vector<Item> run(const model::LfmAudioModel& m, const std::string& mode, int steps) {
    auto s = runtime::Session::create(m, runtime::SessionOptions{});
    EXPECT_TRUE(s.is_ok()) << s.status().message();
    if (!s.is_ok()) return {};
    runtime::Session& ss = **s;
    const std::string system = mode == "s2s"   ? "Respond with interleaved text and audio."
                               : mode == "asr" ? "Perform ASR."
                                               : "Perform TTS. Use the UK female voice.";
    EXPECT_TRUE(ss.new_turn("system").is_ok());
    EXPECT_TRUE(ss.add_text(system).is_ok());
    EXPECT_TRUE(ss.end_turn().is_ok());
    EXPECT_TRUE(ss.new_turn("user").is_ok());
    if (mode == "tts") {
        EXPECT_TRUE(ss.add_text("What is this obsession people have with books? They put them in "
                                "their houses\xE2\x80\x94"
                                "like they're trophies. What do you need it for after you read it?")
                        .is_ok());
    } else {
        int rate = 0;
        std::vector<float> wav = read_audio(
            test::data_dir() + (mode == "s2s" ? "/audio/question.wav" : "/audio/asr.wav"), &rate);
        Status st = ss.add_audio(wav.data(), wav.size(), rate);
        EXPECT_TRUE(st.is_ok()) << st.message();
    }
    EXPECT_TRUE(ss.end_turn().is_ok());
    EXPECT_TRUE(ss.new_turn("assistant").is_ok());
    runtime::GenerateOptions g;
    g.mode = mode == "s2s" ? runtime::GenerationMode::kInterleaved
                           : runtime::GenerationMode::kSequential;
    g.max_new_tokens = steps;
    g.decode_audio = false;
    std::vector<Item> out;
    Status st = ss.generate(g, [&](const runtime::Event& e) {
        if (e.kind == runtime::EventKind::kText) out.push_back(Item{0, e.token, {}});
        if (e.kind == runtime::EventKind::kAudioFrame) out.push_back(Item{1, -1, e.codes});
        return true;
    });
    EXPECT_TRUE(st.is_ok()) << st.message();
    return out;
}

size_t agreement(const std::vector<Item>& a, const std::vector<Item>& b) {
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
    return n;
}

class GreedyE2E : public ::testing::TestWithParam<std::string> {};

// fp32: the official fp32 greedy sequence must be reproduced exactly, every one of its steps.
TEST_P(GreedyE2E, Fp32SequenceIdentical) {
    if (test::parity_device() == Device::kCUDA && !backend::device_available(Device::kCUDA))
        GTEST_SKIP() << "no CUDA device";
    const std::string mode = GetParam();
    auto m = load_tiny(ops::Precision::kF32);
    ASSERT_TRUE(m);
    std::vector<Item> ref = reference("greedy_" + mode + "_fp32");
    ASSERT_GE(ref.size(), 64u);
    std::vector<Item> ours = run(*m, mode, static_cast<int>(ref.size()));
    const size_t n = agreement(ours, ref);
    std::printf("[%s fp32 %s] %zu of %zu steps identical\n", mode.c_str(),
                device_name(test::parity_device()), n, ref.size());
    EXPECT_EQ(n, ref.size());
    EXPECT_EQ(ours.size(), ref.size());
}

// bf16: greedy sequences on random weights part after a few steps even between the reference's
// own bf16 and fp32 runs (docs/reference-dumps.md), so this reports the agreement length and
// only requires the first step (bf16 logits are judged teacher-forced in backbone_parity_test).
TEST_P(GreedyE2E, Bf16SequenceReport) {
    if (test::parity_device() == Device::kCUDA && !backend::device_available(Device::kCUDA))
        GTEST_SKIP() << "no CUDA device";
    const std::string mode = GetParam();
    auto m = load_tiny(ops::Precision::kBF16);
    ASSERT_TRUE(m);
    std::vector<Item> ref16 = reference("greedy_" + mode + "_bf16");
    std::vector<Item> ref32 = reference("greedy_" + mode + "_fp32");
    std::vector<Item> ours = run(*m, mode, static_cast<int>(ref16.size()));
    std::printf(
        "[%s bf16] agrees with reference bf16 for %zu steps, with reference fp32 for %zu; "
        "reference bf16 vs fp32: %zu\n",
        mode.c_str(), agreement(ours, ref16), agreement(ours, ref32), agreement(ref16, ref32));
    EXPECT_GE(agreement(ours, ref16), 1u);
}

INSTANTIATE_TEST_SUITE_P(Modes, GreedyE2E, ::testing::Values("s2s", "asr", "tts"));

}  // namespace
}  // namespace voxrt
