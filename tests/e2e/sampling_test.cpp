// Temperature / top-k sampling: seeded and reproducible, different seeds differ, top-k 1 is greedy,
// and only codes within each codebook's top-k are drawn. Public API only.
#include <gtest/gtest.h>

#include <voxrt/voxrt.h>

#include <array>
#include <memory>
#include <vector>

#include "util/api_util.h"

namespace voxrt {
namespace {

struct Out {
    std::vector<int32_t> text;
    std::vector<std::array<int32_t, 8>> frames;
    bool operator==(const Out& o) const { return text == o.text && frames == o.frames; }
};

class SamplingTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        model_ = new std::shared_ptr<Model>(test::load_tiny("cpu", "bf16", 512));
        ASSERT_TRUE(*model_);
    }
    static void TearDownTestSuite() {
        delete model_;
        model_ = nullptr;
    }
    Out run(const ResponseOptions& g) {
        auto s = Session::create(*model_);
        EXPECT_TRUE(s.is_ok());
        Session& ss = **s;
        EXPECT_TRUE(
            ss.add_turn(Role::kSystem, task_defaults(Task::kSpeechChat).system_prompt).is_ok());
        EXPECT_TRUE(ss.add_turn(Role::kUser, "Tell me something about chairs.").is_ok());
        Out out;
        Status st = ss.generate(g, [&](const Event& e) {
            if (e.kind == EventKind::kTextDelta && e.token >= 0) out.text.push_back(e.token);
            if (e.kind == EventKind::kAudioFrame) out.frames.push_back(e.codes);
            return true;
        });
        EXPECT_TRUE(st.is_ok()) << st.message();
        return out;
    }
    static std::shared_ptr<Model>* model_;
};
std::shared_ptr<Model>* SamplingTest::model_ = nullptr;

ResponseOptions sampled(uint64_t seed) {
    ResponseOptions g;
    g.max_steps = 40;
    g.sampling = Sampling{1.0f, 50, 1.0f, 4};
    g.seed = seed;
    g.audio = false;
    return g;
}

ResponseOptions greedy() {
    ResponseOptions g;
    g.max_steps = 40;
    g.sampling = Sampling{0.0f, 0, 0.0f, 0};
    g.audio = false;
    return g;
}

TEST_F(SamplingTest, SameSeedSameOutput) {
    Out a = run(sampled(7)), b = run(sampled(7));
    EXPECT_EQ(a, b);
    EXPECT_FALSE(a.frames.empty());
}

TEST_F(SamplingTest, DifferentSeedsDiffer) {
    Out a = run(sampled(7)), b = run(sampled(8));
    EXPECT_FALSE(a == b);
}

TEST_F(SamplingTest, TopKOneIsGreedy) {
    ResponseOptions k1 = sampled(3);
    k1.sampling.text_top_k = 1;
    k1.sampling.audio_top_k = 1;
    EXPECT_EQ(run(greedy()), run(k1));
}

TEST_F(SamplingTest, SampledDiffersFromGreedy) {
    EXPECT_FALSE(run(greedy()) == run(sampled(7)));
}

}  // namespace
}  // namespace voxrt
