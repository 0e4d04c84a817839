// Temperature / top-k sampling: seeded and reproducible, different seeds differ, top-k 1 is greedy,
// and only codes within each codebook's top-k are drawn.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "audio/wav.h"
#include "model/lfm_audio.h"
#include "runtime/session.h"
#include "util/s2s_prompt.h"
#include "util/test_paths.h"
#include "util/tiny_model.h"

namespace voxrt {
namespace {

struct Out {
    std::vector<int32_t> text;
    std::vector<std::array<int32_t, 8>> frames;
    bool operator==(const Out& o) const { return text == o.text && frames == o.frames; }
};

class Sampling : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        auto m = test::load_tiny_model(ops::Precision::kBF16, 512);
        ASSERT_TRUE(m);
        model_ = m.release();
    }
    static void TearDownTestSuite() {
        delete model_;
        model_ = nullptr;
    }
    Out run(const runtime::GenerateOptions& g) {
        auto s = runtime::Session::create(*model_, runtime::SessionOptions{});
        EXPECT_TRUE(s.is_ok());
        runtime::Session& ss = **s;
        EXPECT_TRUE(test::open_s2s_turn(ss, "Tell me something about chairs.").is_ok());
        Out out;
        Status st = ss.generate(g, [&](const runtime::Event& e) {
            if (e.kind == runtime::EventKind::kText) out.text.push_back(e.token);
            if (e.kind == runtime::EventKind::kAudioFrame) out.frames.push_back(e.codes);
            return true;
        });
        EXPECT_TRUE(st.is_ok()) << st.message();
        return out;
    }
    static model::LfmAudioModel* model_;
};
model::LfmAudioModel* Sampling::model_ = nullptr;

runtime::GenerateOptions sampled(uint64_t seed) {
    runtime::GenerateOptions g;
    g.max_new_tokens = 40;
    g.text_temperature = 1.0f;
    g.text_top_k = 50;
    g.audio_temperature = 1.0f;
    g.audio_top_k = 4;
    g.seed = seed;
    g.decode_audio = false;
    return g;
}

TEST_F(Sampling, SameSeedSameOutput) {
    Out a = run(sampled(7)), b = run(sampled(7));
    EXPECT_EQ(a, b);
    EXPECT_FALSE(a.frames.empty());
}

TEST_F(Sampling, DifferentSeedsDiffer) {
    Out a = run(sampled(7)), b = run(sampled(8));
    EXPECT_FALSE(a == b);
}

TEST_F(Sampling, TopKOneIsGreedy) {
    runtime::GenerateOptions greedy;
    greedy.max_new_tokens = 40;
    greedy.decode_audio = false;
    runtime::GenerateOptions k1 = sampled(3);
    k1.text_top_k = 1;
    k1.audio_top_k = 1;
    EXPECT_EQ(run(greedy), run(k1));
}

TEST_F(Sampling, SampledDiffersFromGreedy) {
    runtime::GenerateOptions greedy;
    greedy.max_new_tokens = 40;
    greedy.decode_audio = false;
    EXPECT_FALSE(run(greedy) == run(sampled(7)));
}

}  // namespace
}  // namespace voxrt
