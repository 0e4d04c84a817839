// End-to-end greedy generation on the tiny random-weight checkpoint, compared with the official
// liquid-audio generate_interleaved / generate_sequential run (tests/data/tiny/dumps/greedy_*).
// The whole pipeline runs: WAV decode, resampling, mel, encoder, tokenizer, prompt assembly,
// backbone, heads, the interleaving / sequential state machines, all through the public API.
#include <gtest/gtest.h>

#include <voxrt/voxrt.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "util/api_util.h"
#include "util/reference_dumps.h"

namespace voxrt {
namespace {

std::shared_ptr<Model> load_parity_model(const std::string& precision) {
    ModelOptions o;
    o.device = test::parity_device_name();
    o.precision = precision;
    o.threads = 0;
    o.max_context = 1024;
    auto m = Model::load(test::parity_dir() + "/model", o);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return m.is_ok() ? *m : nullptr;
}

std::vector<ResponseItem> run(const std::shared_ptr<Model>& m, const std::string& mode, int steps) {
    auto s = Session::create(m);
    EXPECT_TRUE(s.is_ok()) << s.status().message();
    if (!s.is_ok()) return {};
    Session& ss = **s;
    const Task task = mode == "s2s" ? Task::kSpeechChat : mode == "asr" ? Task::kAsr : Task::kTts;
    const TaskDefaults d = task_defaults(task, Voice::kUkFemale);
    EXPECT_TRUE(ss.add_turn(Role::kSystem, d.system_prompt).is_ok());
    if (mode == "tts") {
        EXPECT_TRUE(ss.add_turn(Role::kUser,
                                "What is this obsession people have with books? They put them in "
                                "their houses\xE2\x80\x94"
                                "like they're trophies. What do you need it for after you read it?")
                        .is_ok());
    } else {
        const AudioClip clip = test::read_clip(mode == "s2s" ? "question.wav" : "asr.wav");
        EXPECT_TRUE(ss.begin_user_turn().is_ok());
        Status st = ss.append_audio(clip.samples.data(), clip.samples.size(), clip.sample_rate);
        EXPECT_TRUE(st.is_ok()) << st.message();
        st = ss.end_user_turn();
        EXPECT_TRUE(st.is_ok()) << st.message();
    }
    ResponseOptions g;
    g.mode = d.mode;
    g.max_steps = steps;
    g.sampling = Sampling{0.0f, 0, 0.0f, 0};
    g.audio = false;
    const test::Response r = test::respond(ss, g);
    EXPECT_TRUE(r.status.is_ok()) << r.status.message();
    return r.items;
}

size_t agreement(const std::vector<ResponseItem>& a, const std::vector<ResponseItem>& b) {
    size_t n = 0;
    while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
    return n;
}

bool no_device() {
    return test::parity_device_name() == "cuda" && !cuda_available();
}

class GreedyE2E : public ::testing::TestWithParam<std::string> {};

// fp32: the official fp32 greedy sequence must be reproduced exactly, every one of its steps.
TEST_P(GreedyE2E, Fp32SequenceIdentical) {
    if (no_device()) GTEST_SKIP() << "no CUDA device";
    const std::string mode = GetParam();
    auto m = load_parity_model("fp32");
    ASSERT_TRUE(m);
    std::vector<ResponseItem> ref = test::greedy_reference("greedy_" + mode + "_fp32");
    ASSERT_GE(ref.size(), 64u);
    std::vector<ResponseItem> ours = run(m, mode, static_cast<int>(ref.size()));
    const size_t n = agreement(ours, ref);
    std::printf("[%s fp32 %s] %zu of %zu steps identical\n", mode.c_str(),
                test::parity_device_name().c_str(), n, ref.size());
    EXPECT_EQ(n, ref.size());
    EXPECT_EQ(ours.size(), ref.size());
}

// bf16: greedy sequences on random weights part after a few steps even between the reference's
// own bf16 and fp32 runs (docs/reference-dumps.md), so this reports the agreement length and
// only requires the first step (bf16 logits are judged teacher-forced in backbone_parity_test).
TEST_P(GreedyE2E, Bf16SequenceReport) {
    if (no_device()) GTEST_SKIP() << "no CUDA device";
    const std::string mode = GetParam();
    auto m = load_parity_model("bf16");
    ASSERT_TRUE(m);
    std::vector<ResponseItem> ref16 = test::greedy_reference("greedy_" + mode + "_bf16");
    std::vector<ResponseItem> ref32 = test::greedy_reference("greedy_" + mode + "_fp32");
    std::vector<ResponseItem> ours = run(m, mode, static_cast<int>(ref16.size()));
    std::printf(
        "[%s bf16] agrees with reference bf16 for %zu steps, with reference fp32 for %zu; "
        "reference bf16 vs fp32: %zu\n",
        mode.c_str(), agreement(ours, ref16), agreement(ours, ref32), agreement(ref16, ref32));
    EXPECT_GE(agreement(ours, ref16), 1u);
}

INSTANTIATE_TEST_SUITE_P(Modes, GreedyE2E, ::testing::Values("s2s", "asr", "tts"));

}  // namespace
}  // namespace voxrt
