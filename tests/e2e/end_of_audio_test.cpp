// An end-of-audio frame (code 2048 drawn for codebook 0) is yielded, and fed back to the backbone,
// as the frame whose every code is 2048, as liquid-audio does. The feedback happens inside the
// decode step (on the device); a fresh session that prefills the same history, the end-of-audio
// frame given as all-2048 codes, must see the same next-step logits and choose the same token.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "audio/wav.h"
#include "model/lfm_audio.h"
#include "runtime/session.h"
#include "util/compare.h"
#include "util/s2s_prompt.h"
#include "util/test_paths.h"
#include "util/tiny_model.h"

namespace voxrt {
namespace {

TEST(EndOfAudio, FedBackAsTheWholeEndFrame) {
    auto m = test::load_tiny_model(ops::Precision::kF32, 1024);
    ASSERT_TRUE(m);
    const int32_t end = m->config().audio_vocab - 1;
    auto pcm = audio::read_wav(test::data_dir() + "/audio/question.wav");
    ASSERT_TRUE(pcm.is_ok()) << pcm.status().message();
    std::vector<float> wav = audio::downmix_mono(*pcm);

    // Near-uniform audio sampling: on the tiny checkpoint, seed 107 draws 2048 for codebook 0 at
    // step 60 (the other codebooks' draws are not 2048), and greedy text follows.
    runtime::GenerateOptions g;
    g.mode = runtime::GenerationMode::kInterleaved;
    g.max_new_tokens = 70;
    g.decode_audio = false;
    g.audio_temperature = 50.0f;
    g.audio_top_k = 0;
    g.seed = 107;
    auto a = runtime::Session::create(*m, runtime::SessionOptions{});
    ASSERT_TRUE(a.is_ok());
    ASSERT_TRUE(test::open_s2s_turn(**a, wav, pcm->sample_rate).is_ok());
    (*a)->set_capture(true);
    std::vector<std::vector<float>> logits;  // per step; empty for frame steps
    Status st = (*a)->generate(g, [&](const runtime::Event& e) {
        if (e.kind == runtime::EventKind::kText) logits.push_back((*a)->captured_text_logits());
        if (e.kind == runtime::EventKind::kAudioFrame) logits.emplace_back();
        return true;
    });
    ASSERT_TRUE(st.is_ok()) << st.message();
    const std::vector<runtime::GeneratedItem> items = (*a)->last_turn();
    ASSERT_EQ(items.size(), logits.size());
    size_t k = 0;
    while (k < items.size() && !(items[k].is_frame && items[k].codes[0] == end)) ++k;
    ASSERT_LT(k + 1, items.size()) << "no end-of-audio frame followed by a step: the test has "
                                      "lost its subject (seed, checkpoint or input changed)";
    std::printf("[end-of-audio] end frame at step %zu of %zu\n", k, items.size());
    for (int q = 0; q < m->config().codebooks; ++q)
        EXPECT_EQ(items[k].codes[static_cast<size_t>(q)], end) << "codebook " << q;
    ASSERT_FALSE(items[k + 1].is_frame) << "an end-of-audio frame switches to text";

    // The same history, prefilled: prompt + items 0..k (the end frame as all-2048 codes).
    auto b = runtime::Session::create(*m, runtime::SessionOptions{});
    ASSERT_TRUE(b.is_ok());
    ASSERT_TRUE(test::open_s2s_turn(**b, wav, pcm->sample_rate).is_ok());
    for (size_t i = 0; i <= k; ++i) {
        if (items[i].is_frame) {
            ASSERT_TRUE((*b)->add_frame(items[i].codes).is_ok());
        } else {
            ASSERT_TRUE((*b)->add_tokens({items[i].token}).is_ok());
        }
    }
    (*b)->set_capture(true);
    runtime::GenerateOptions g1;
    g1.max_new_tokens = 1;
    g1.decode_audio = false;
    std::vector<float> b_logits;
    st = (*b)->generate(g1, [&](const runtime::Event& e) {
        if (e.kind == runtime::EventKind::kText) b_logits = (*b)->captured_text_logits();
        return true;
    });
    ASSERT_TRUE(st.is_ok()) << st.message();
    ASSERT_EQ((*b)->last_turn().size(), 1u);
    EXPECT_EQ((*b)->last_turn()[0].token, items[k + 1].token);
    ASSERT_EQ(b_logits.size(), logits[k + 1].size());
    // fp32, same kernels, the last position run as a decode step vs inside a prefill chunk: only
    // summation grouping differs (as in multiturn_test). A frame fed back with its drawn codes
    // instead of all-2048 changes the input embedding, and the logits, entirely.
    auto e = test::compare(logits[k + 1].data(), b_logits.data(), b_logits.size());
    EXPECT_LT(e.rel_l2, 1e-5) << "text step after the end frame: " << e.str();
}

}  // namespace
}  // namespace voxrt
