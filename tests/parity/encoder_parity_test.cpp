// Audio encoder + adapter parity against the official liquid-audio code.
//
// Fixtures: the tiny random-weight checkpoint tests/data/tiny/model and the stage dumps
// tests/data/tiny/dumps/stages_{fp32,bf16}.safetensors written by tools/reference/make_dumps.py
// (docs/reference-dumps.md): mel.<case> [128, T] is what the reference fed its encoder,
// enc.<case> [T', d_model] and adapter.<case> [T', hidden] what came out. The environment
// variable VOXRT_ENCODER_PARITY_DIR=<dir> points the test at <dir>/model and <dir>/dumps instead
// (e.g. a full-size random checkpoint).
//
// Per case and device (CPU; CUDA when present): voxrt fp32 vs reference fp32 and voxrt bf16 vs
// reference bf16 (the gates), and voxrt bf16 vs reference fp32, judged against the reference's own
// bf16-vs-fp32 error. Tolerances and their reasons: docs/encoder.md.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/arena.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "model/audio_encoder.h"
#include "model/config.h"
#include "model/weights.h"
#include "ops/ops.h"
#include "util/compare.h"
#include "util/test_paths.h"

namespace voxrt::model {
namespace {

// fp32: relative L2 and max |err| / max |ref| (docs/encoder.md, "Tolerances").
constexpr double kF32RelL2 = 3e-6, kF32MaxRel = 1e-5;
// bf16 vs the bf16 reference: at most kBF16Spread times the reference's own bf16-vs-fp32 distance
// (two bf16 runs are two independent roundings of one fp32 computation), and absolute caps.
constexpr double kBF16Spread = 1.5, kBF16RelL2 = 3e-2, kBF16MaxRel = 8e-2;
// bf16 vs the fp32 reference: no worse than the reference's own bf16 run, with 25% slack.
constexpr double kBF16VsF32Slack = 1.25;

std::string fixture_dir() {
    if (const char* d = std::getenv("VOXRT_ENCODER_PARITY_DIR")) return d;
    return test::data_dir() + "/tiny";
}

double process_cpu_ms() {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// The cases of a dump: every "mel.<case>" tensor, in file order.
std::vector<std::string> cases_of(const io::SafeTensorsFile& dump) {
    std::vector<std::string> cases;
    for (const io::TensorInfo& t : dump.tensors())
        if (t.name.rfind("mel.", 0) == 0) cases.push_back(t.name.substr(4));
    return cases;
}

double max_rel(const test::ErrorStats& e) {
    return e.ref_max > 0 ? e.max_abs / e.ref_max : e.max_abs;
}

struct Output {
    std::vector<float> enc, adapter;  // host F32 copies
    int64_t n = 0;
    double ms = 0;      // encode() wall time (CUDA: including the final synchronize)
    double cpu_ms = 0;  // process CPU time during encode() (all pool threads)
};

// Runs voxrt's encoder on every case's mel from `mel_dump` (the reference's input in that
// precision) on `device`.
// bf16_pos_table: the positional table bf16-rounded, as in the bf16 load cast back to float.
std::vector<Output> run(Device device, ops::Precision prec, const io::SafeTensorsFile& mel_dump,
                        ThreadPool* pool, bool bf16_pos_table = false) {
    const std::string dir = fixture_dir();
    ops::Context ctx;
    if (device == Device::kCUDA) {
        auto c = backend::create_context(Device::kCUDA, prec);
        EXPECT_TRUE(c.is_ok()) << c.status().message();
        if (!c.is_ok()) return {};
        ctx = *c;
    } else {
        ctx.precision = prec;
        ctx.pool = pool;
    }
    std::vector<Output> outs;
    {
        auto cfg = load_model_config(dir + "/model/config.json");
        EXPECT_TRUE(cfg.is_ok()) << cfg.status().message();
        auto file = io::SafeTensorsFile::open(dir + "/model/model.safetensors");
        EXPECT_TRUE(file.is_ok()) << file.status().message();
        if (!cfg.is_ok() || !file.is_ok()) return {};
        WeightStore store(ctx);
        auto enc = AudioEncoder::load(*cfg, *file, store, bf16_pos_table);
        EXPECT_TRUE(enc.is_ok()) << enc.status().message();
        if (!enc.is_ok()) return {};
        const DType at = ctx.act_dtype();
        for (const std::string& c : cases_of(mel_dump)) {
            const std::vector<float> mel = test::read_f32(mel_dump, "mel." + c);
            const int64_t T = test::shape_of(mel_dump, "mel." + c)[1];
            Output o;
            o.n = enc->output_frames(T);
            const int64_t D = enc->d_model(), A = enc->adapter_dim();
            Buffer eb = Buffer::allocate(device, static_cast<size_t>(o.n * D) * dtype_size(at));
            Buffer ab = Buffer::allocate(device, static_cast<size_t>(o.n * A) * dtype_size(at));
            Tensor e = eb.view(at, {o.n, D}), a = ab.view(at, {o.n, A});
            Arena arena;
            const size_t need = enc->workspace_bytes(T, ctx);
            EXPECT_TRUE(arena.reserve(device, need));
            const auto t0 = std::chrono::steady_clock::now();
            const double c0 = process_cpu_ms();
            Status st = enc->encode(ctx, mel.data(), T, arena, e, a);
            if (st.is_ok()) st = ops::synchronize(ctx);
            o.cpu_ms = process_cpu_ms() - c0;
            o.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                       .count();
            EXPECT_TRUE(st.is_ok()) << c << ": " << st.message();
            EXPECT_EQ(arena.high_water(), need) << "workspace_bytes disagrees with encode()";
            o.enc.resize(static_cast<size_t>(o.n * D));
            o.adapter.resize(static_cast<size_t>(o.n * A));
            Tensor eh = Tensor::make(o.enc.data(), DType::kF32, Device::kCPU, {o.n, D});
            Tensor ah = Tensor::make(o.adapter.data(), DType::kF32, Device::kCPU, {o.n, A});
            ops::copy(ctx, e, eh);
            ops::copy(ctx, a, ah);
            outs.push_back(std::move(o));
        }
    }
    if (device == Device::kCUDA) backend::destroy_context(ctx);
    return outs;
}

void check_parity(Device device) {
    const std::string dumps = fixture_dir() + "/dumps/";
    if (!std::filesystem::exists(dumps + "stages_fp32.safetensors") ||
        !std::filesystem::exists(dumps + "stages_bf16.safetensors"))
        GTEST_SKIP() << "reference dumps not found under " << dumps;
    auto ref32 = io::SafeTensorsFile::open(dumps + "stages_fp32.safetensors");
    auto ref16 = io::SafeTensorsFile::open(dumps + "stages_bf16.safetensors");
    ASSERT_TRUE(ref32.is_ok()) << ref32.status().message();
    ASSERT_TRUE(ref16.is_ok()) << ref16.status().message();
    const std::vector<std::string> cases = cases_of(*ref32);
    ASSERT_FALSE(cases.empty()) << "no mel.<case> tensors in stages_fp32.safetensors";
    ASSERT_EQ(cases, cases_of(*ref16));

    ThreadPool pool(2);
    const std::vector<Output> got32 = run(device, ops::Precision::kF32, *ref32, &pool);
    const std::vector<Output> got16 = run(device, ops::Precision::kBF16, *ref16, &pool);
    ASSERT_EQ(got32.size(), cases.size());
    ASSERT_EQ(got16.size(), cases.size());

    std::printf("device %s\n", device_name(device));
    std::printf("%-9s %-7s %5s | %-20s | %-20s | %-20s | %-20s\n", "case", "stage", "T'",
                "fp32 vs ref fp32", "bf16 vs ref bf16", "bf16 vs ref fp32", "ref bf16 vs ref fp32");
    std::printf("%-9s %-7s %5s | %-20s | %-20s | %-20s | %-20s\n", "", "", "",
                "relL2    maxabs/max", "relL2    maxabs/max", "relL2    maxabs/max",
                "relL2    maxabs/max");
    int bit_exact_cases = 0;  // cases whose bf16 enc and adapter equal the reference's bits
    for (size_t ci = 0; ci < cases.size(); ++ci) {
        const std::string& c = cases[ci];
        bool exact = true;
        for (const char* stage : {"enc", "adapter"}) {
            const std::string key = std::string(stage) + "." + c;
            const std::vector<float> v32 = test::read_f32(*ref32, key);
            const std::vector<float> v16 = test::read_f32(*ref16, key);
            const bool is_enc = std::string(stage) == "enc";
            const std::vector<float>& g32 = is_enc ? got32[ci].enc : got32[ci].adapter;
            const std::vector<float>& g16 = is_enc ? got16[ci].enc : got16[ci].adapter;
            ASSERT_EQ(test::shape_of(*ref32, key)[0], got32[ci].n) << key;
            ASSERT_EQ(g32.size(), v32.size()) << key;
            ASSERT_EQ(g16.size(), v16.size()) << key;
            const test::ErrorStats e32 = test::compare(g32.data(), v32.data(), v32.size());
            const test::ErrorStats e16 = test::compare(g16.data(), v16.data(), v16.size());
            const test::ErrorStats e16_32 = test::compare(g16.data(), v32.data(), v32.size());
            const test::ErrorStats eref = test::compare(v16.data(), v32.data(), v32.size());
            std::printf("%-9s %-7s %5lld | %.2e %.2e | %.2e %.2e | %.2e %.2e | %.2e %.2e\n",
                        c.c_str(), stage, static_cast<long long>(got32[ci].n), e32.rel_l2,
                        max_rel(e32), e16.rel_l2, max_rel(e16), e16_32.rel_l2, max_rel(e16_32),
                        eref.rel_l2, max_rel(eref));
            EXPECT_LE(e32.rel_l2, kF32RelL2) << key << " fp32";
            EXPECT_LE(max_rel(e32), kF32MaxRel) << key << " fp32";
            EXPECT_LE(e16.rel_l2, std::min(kBF16RelL2, kBF16Spread * eref.rel_l2 + 1e-6))
                << key << " bf16";
            EXPECT_LE(max_rel(e16), kBF16MaxRel) << key << " bf16";
            EXPECT_LE(e16_32.rel_l2, kBF16VsF32Slack * eref.rel_l2 + 1e-6)
                << key << " bf16 vs fp32 reference";
            exact = exact && e16.max_abs == 0.0;
        }
        bit_exact_cases += exact;
    }
    std::printf("bf16 bit-exact cases: %d of %zu\n", bit_exact_cases, cases.size());
    // Canary for the placement of bf16 roundings, which the statistical gates above cannot see
    // (a misplaced rounding stays at bf16 noise level): with the tiny 2-layer fixture, a correct
    // forward reproduces the reference's bits on several cases (3 of 6 on the CPU: the short
    // synthetic ones; 3 of 6 on an H100 with the earlier recordings), a misplaced rounding on none.
    // Not applied to other fixtures (deeper models decorrelate).
    if (!std::getenv("VOXRT_ENCODER_PARITY_DIR")) {
        EXPECT_GE(bit_exact_cases, 1) << "no case reproduces the bf16 reference bit for bit";
    }
    // The fp32 gate can fail: with the bf16-rounded positional table (the bf16 load cast to float)
    // the encoder's distance from the float32 reference grows on every case (tiny fixture, CPU:
    // 1.3e-6 to 7.9e-6 against 2.5e-7 to 3.3e-7 with the exact table) and misses the gate on some
    // (the 2-layer fixture barely propagates the table's error; 3x is well under the 4x seen).
    const std::vector<Output> old32 = run(device, ops::Precision::kF32, *ref32, &pool, true);
    ASSERT_EQ(old32.size(), cases.size());
    int rounded_over_gate = 0;
    for (size_t ci = 0; ci < cases.size(); ++ci) {
        const std::string key = "enc." + cases[ci];
        const std::vector<float> v32 = test::read_f32(*ref32, key);
        ASSERT_EQ(old32[ci].enc.size(), v32.size()) << key;
        const test::ErrorStats e = test::compare(old32[ci].enc.data(), v32.data(), v32.size());
        const test::ErrorStats exact = test::compare(got32[ci].enc.data(), v32.data(), v32.size());
        std::printf(
            "%-9s enc with bf16-rounded pos table vs ref fp32: relL2 %.2e maxabs/max %.2e\n",
            cases[ci].c_str(), e.rel_l2, max_rel(e));
        EXPECT_GT(e.rel_l2, 3.0 * exact.rel_l2)
            << key << " rounded table as close as the exact one";
        rounded_over_gate += e.rel_l2 > kF32RelL2 || max_rel(e) > kF32MaxRel;
    }
    EXPECT_GE(rounded_over_gate, 1) << "the bf16-rounded table passes the fp32 gate on every case";
    for (size_t ci = 0; ci < cases.size(); ++ci)
        std::printf("encode %-9s T'=%-5lld wall/cpu ms: fp32 %7.1f / %7.1f   bf16 %7.1f / %7.1f\n",
                    cases[ci].c_str(), static_cast<long long>(got32[ci].n), got32[ci].ms,
                    got32[ci].cpu_ms, got16[ci].ms, got16[ci].cpu_ms);
}

TEST(EncoderParity, Cpu) {
    check_parity(Device::kCPU);
}

TEST(EncoderParity, Cuda) {
    if (!backend::device_available(Device::kCUDA)) GTEST_SKIP() << "no CUDA device";
    check_parity(Device::kCUDA);
}

}  // namespace
}  // namespace voxrt::model
