// Parity of the LFM2.5 detokenizer against the official liquid-audio module (fp32 on both sides)
// on the tiny random-weight checkpoint: tests/data/tiny/dumps/detok.safetensors holds seeded
// random codes [8, Tc] and the reference's stages emb [Tc, 512], hidden [6Tc, 512],
// spec [6Tc, 1282] and pcm [1920·Tc] (docs/reference-dumps.md). Tolerances: docs/detokenizer.md.
//
// VOXRT_DETOK_MODEL (an audio_detokenizer/ directory) and VOXRT_DETOK_DUMP (a dump in the same
// format) point the test at another checkpoint, e.g. a full-size random one. The CUDA case runs
// when a GPU is present (the network on the device, the ISTFT on the host).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/arena.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "model/audio_decoder.h"
#include "model/weights.h"
#include "util/compare.h"
#include "util/test_paths.h"

namespace voxrt {
namespace {

std::string env_or(const char* name, const std::string& dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : dflt;
}

struct Fixture {
    std::string model_dir =
        env_or("VOXRT_DETOK_MODEL", test::data_dir() + "/tiny/model/audio_detokenizer");
    std::string dump_path =
        env_or("VOXRT_DETOK_DUMP", test::data_dir() + "/tiny/dumps/detok.safetensors");
};

// Frame-major [Tc, 8] I32 from the dump's [8, Tc] I64.
std::vector<int32_t> frame_major_codes(const io::SafeTensorsFile& dump, int64_t& Tc) {
    const std::vector<int64_t> shape = test::shape_of(dump, "codes");
    EXPECT_EQ(shape.size(), 2u);
    if (shape.size() != 2) return {};
    EXPECT_EQ(shape[0], model::kDetokCodebooks);
    Tc = shape[1];
    const std::vector<int64_t> c = test::read_i64(dump, "codes");
    std::vector<int32_t> out(static_cast<size_t>(Tc * model::kDetokCodebooks));
    for (int64_t q = 0; q < model::kDetokCodebooks; ++q)
        for (int64_t t = 0; t < Tc; ++t)
            out[static_cast<size_t>(t * model::kDetokCodebooks + q)] =
                static_cast<int32_t>(c[static_cast<size_t>(q * Tc + t)]);
    return out;
}

void expect_close(const char* stage, const std::vector<float>& ours, const std::vector<float>& ref,
                  double max_rel) {
    ASSERT_EQ(ours.size(), ref.size()) << stage;
    const test::ErrorStats s = test::compare(ours.data(), ref.data(), ref.size());
    std::printf("[detok parity] %-6s %s\n", stage, s.str().c_str());
    EXPECT_LE(s.rel_l2, max_rel) << stage << ": " << s.str();
}

// fp32 against fp32: only summation order and libm differ (docs/detokenizer.md).
void run_parity(Device dev) {
    const Fixture fx;
    auto dump = io::SafeTensorsFile::open(fx.dump_path);
    ASSERT_TRUE(dump.is_ok()) << dump.status().message();
    ThreadPool pool(2);
    ops::Context ctx;
    ctx.pool = &pool;
    if (dev == Device::kCUDA) {
        auto made = backend::create_context(Device::kCUDA, ops::Precision::kBF16);
        ASSERT_TRUE(made.is_ok()) << made.status().message();
        ctx = made.value();
        std::printf("[detok parity] device: %s\n", backend::hardware_name(Device::kCUDA).c_str());
    }
    ctx.precision = ops::Precision::kBF16;  // ignored: the detokenizer always runs in fp32
    {
        model::WeightStore store(ctx);
        auto det = model::Detokenizer::load(fx.model_dir, store);
        ASSERT_TRUE(det.is_ok()) << det.status().message();

        int64_t Tc = 0;
        const std::vector<int32_t> codes = frame_major_codes(*dump, Tc);
        ASSERT_GT(Tc, 0);
        Arena scratch;
        ASSERT_TRUE(scratch.reserve(dev, det->decode_scratch_bytes(Tc)));
        std::vector<float> pcm;
        model::DetokenizerStages stages;
        Status st = det->decode(ctx, codes.data(), Tc, scratch, pcm, &stages);
        ASSERT_TRUE(st.is_ok()) << st.message();
        EXPECT_EQ(scratch.mark(), 0u);
        ASSERT_EQ(pcm.size(), static_cast<size_t>(model::kDetokSamplesPerFrame * Tc));

        expect_close("emb", stages.emb, test::read_f32(*dump, "emb"), 1e-6);
        expect_close("hidden", stages.hidden, test::read_f32(*dump, "hidden"), 1e-5);
        expect_close("spec", stages.spec, test::read_f32(*dump, "spec"), 1e-5);
        expect_close("pcm", pcm, test::read_f32(*dump, "pcm"), 1e-5);
    }
    if (dev == Device::kCUDA) backend::destroy_context(ctx);
}

TEST(DetokenizerParity, StagesMatchReference) {
    run_parity(Device::kCPU);
}

TEST(DetokenizerParity, StagesMatchReferenceCuda) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    run_parity(Device::kCUDA);
}

TEST(DetokenizerParity, RejectsOutOfRangeCodes) {
    const Fixture fx;
    ops::Context ctx;
    model::WeightStore store(ctx);
    auto det = model::Detokenizer::load(fx.model_dir, store);
    ASSERT_TRUE(det.is_ok()) << det.status().message();
    Arena scratch;
    ASSERT_TRUE(scratch.reserve(Device::kCPU, det->decode_scratch_bytes(2)));
    std::vector<float> pcm;
    for (int32_t bad : {2048, -1, 4096}) {
        std::vector<int32_t> codes(2 * model::kDetokCodebooks, 7);
        codes[1 * model::kDetokCodebooks + 3] = bad;
        Status st = det->decode(ctx, codes.data(), 2, scratch, pcm);
        EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
        EXPECT_NE(st.message().find("frame 1 codebook 3"), std::string::npos) << st.message();
    }
    // Too little scratch is an error, not an abort.
    std::vector<int32_t> codes(3 * model::kDetokCodebooks, 5);
    Status st = det->decode(ctx, codes.data(), 3, scratch, pcm);
    EXPECT_EQ(st.code(), StatusCode::kOutOfRange) << st.message();
    // Zero frames: no samples.
    st = det->decode(ctx, codes.data(), 0, scratch, pcm);
    EXPECT_TRUE(st.is_ok()) << st.message();
    EXPECT_TRUE(pcm.empty());
}

// A copy of the fixture directory whose config.json has `from` replaced by `to`.
std::string with_config_edit(const std::string& src, const std::string& from,
                             const std::string& to) {
    const std::string dir = test::make_temp_dir("detok-cfg");
    std::ifstream in(src + "/config.json");
    std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t at = cfg.find(from);
    EXPECT_NE(at, std::string::npos) << "fixture config has no " << from;
    if (at != std::string::npos) cfg.replace(at, from.size(), to);
    std::ofstream(dir + "/config.json") << cfg;
    std::filesystem::create_symlink(std::filesystem::absolute(src + "/model.safetensors"),
                                    dir + "/model.safetensors");
    return dir;
}

TEST(DetokenizerParity, RejectsConfigsItCannotRun) {
    const Fixture fx;
    ops::Context ctx;
    struct Case {
        const char* from;
        const char* to;
        const char* message;
    };
    for (const Case& c :
         {Case{"\"hidden_size\": 512", "\"hidden_size\": 256", "hard-codes 512"},
          Case{"\"output_size\": 1282", "\"output_size\": 1000", "output_size"},
          Case{"\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", "layer_types"}}) {
        model::WeightStore store(ctx);
        auto det = model::Detokenizer::load(with_config_edit(fx.model_dir, c.from, c.to), store);
        ASSERT_FALSE(det.is_ok()) << c.to;
        EXPECT_NE(det.status().message().find(c.message), std::string::npos)
            << det.status().message();
    }
}

}  // namespace
}  // namespace voxrt
