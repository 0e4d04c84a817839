// An end-of-audio frame (code 2048 drawn for codebook 0) is yielded, and fed back to the backbone,
// as the frame whose every code is 2048, as liquid-audio does. The feedback happens inside the
// decode step (on the device); a fresh session that prefills the same history, the end-of-audio
// frame given as all-2048 codes, must see the same next-step logits and choose the same token.
// Public API only.
#include <gtest/gtest.h>

#include <voxrt/voxrt.h>

#include <cstdio>
#include <vector>

#include "util/api_util.h"

namespace voxrt {
namespace {

TEST(EndOfAudio, FedBackAsTheWholeEndFrame) {
    auto m = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m);
    const int32_t end = m->info().audio_vocab - 1;
    const AudioClip q = test::read_clip("question.wav");

    // Near-uniform audio sampling: on the tiny checkpoint, seed 107 draws 2048 for codebook 0 at
    // step 60 (the other codebooks' draws are not 2048), and greedy text follows.
    ResponseOptions g;
    g.mode = Mode::kInterleaved;
    g.max_steps = 70;
    g.audio = false;
    g.sampling = Sampling{0.0f, 0, 50.0f, 0};
    g.seed = 107;
    auto a = Session::create(m);
    ASSERT_TRUE(a.is_ok());
    ASSERT_TRUE(test::add_audio_prompt(**a, Task::kSpeechChat, q).is_ok());
    (*a)->set_capture_logits(true);
    std::vector<std::vector<float>> logits;  // per step; empty for frame steps
    Status st = (*a)->generate(g, [&](const Event& e) {
        if (e.kind == EventKind::kTextDelta && e.token >= 0)
            logits.push_back((*a)->captured_logits());
        if (e.kind == EventKind::kAudioFrame) logits.emplace_back();
        return true;
    });
    ASSERT_TRUE(st.is_ok()) << st.message();
    const std::vector<ResponseItem> items = (*a)->last_response();
    ASSERT_EQ(items.size(), logits.size());
    size_t k = 0;
    while (k < items.size() && !(items[k].is_frame && items[k].codes[0] == end)) ++k;
    ASSERT_LT(k + 1, items.size()) << "no end-of-audio frame followed by a step: the test has "
                                      "lost its subject (seed, checkpoint or input changed)";
    std::printf("[end-of-audio] end frame at step %zu of %zu\n", k, items.size());
    for (int c = 0; c < m->info().codebooks; ++c)
        EXPECT_EQ(items[k].codes[static_cast<size_t>(c)], end) << "codebook " << c;
    ASSERT_FALSE(items[k + 1].is_frame) << "an end-of-audio frame switches to text";

    // The same history, prefilled: prompt + items 0..k (the end frame as all-2048 codes), and the
    // response continued from there.
    auto b = Session::create(m);
    ASSERT_TRUE(b.is_ok());
    ASSERT_TRUE(test::add_audio_prompt(**b, Task::kSpeechChat, q).is_ok());
    ASSERT_TRUE(
        (*b)->add_assistant_items(std::vector<ResponseItem>(items.begin(), items.begin() + k + 1))
            .is_ok());
    ResponseOptions g1;
    g1.max_steps = 1;
    g1.audio = false;
    g1.continue_turn = true;
    const test::Response r = test::respond(**b, g1, /*capture_logits=*/true);
    ASSERT_TRUE(r.status.is_ok()) << r.status.message();
    ASSERT_EQ(r.items.size(), 1u);
    EXPECT_EQ(r.items[0].token, items[k + 1].token);
    ASSERT_EQ(r.logits.size(), 1u);
    // fp32, same kernels, the last position run as a decode step vs inside a prefill chunk: only
    // summation grouping differs (as in multiturn_test). A frame fed back with its drawn codes
    // instead of all-2048 changes the input embedding, and the logits, entirely.
    EXPECT_LT(test::rel_l2(logits[k + 1], r.logits[0]), 1e-5) << "text step after the end frame";
}

}  // namespace
}  // namespace voxrt
