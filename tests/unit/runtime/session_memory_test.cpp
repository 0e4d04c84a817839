// Memory per session (docs/batching.md "Memory per session"): Session::memory() by component.
// - Tiny checkpoint: the KV cache grows by need (a fresh session holds less than its context's
//   KV; a long turn grows it; output is what it was), and sessions that share one device context
//   hold no prefill / encoder scratch of their own. These fail if per-session memory regresses to
//   sizing everything by the context.
// - Full-size checkpoint (VOXRT_FULL_MODEL, default /data/full/model; skipped when absent): prints
//   the per-component table at contexts 1024 and 4096, CPU bytes plus what a CUDA session's
//   contexts add (backend::context_device_bytes), the numbers in docs/batching.md.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend/device.h"
#include "model/lfm_audio.h"
#include "runtime/session.h"
#include "util/tiny_model.h"

namespace voxrt::runtime {
namespace {

double mib(size_t b) {
    return static_cast<double>(b) / (1 << 20);
}

void print_table(const char* title, const SessionMemory& m, size_t gpu_context,
                 size_t gpu_detok_context, int response_steps) {
    std::printf("%s\n", title);
    const struct {
        const char* name;
        size_t bytes;
    } rows[] = {
        {"kv cache (now)", m.kv},
        {"kv cache (full context)", m.kv_full},
        {"conv state", m.conv_state},
        {"conv history (now)", m.conv_history},
        {"conv history per step", m.conv_step},
        {"buffers", m.buffers},
        {"scratch (backbone+heads)", m.scratch},
        {"encoder scratch", m.encoder_scratch},
        {"depthformer state", m.head_state},
        {"detokenizer state", m.detok_state},
        {"device context (this build)", m.context},
        {"detokenizer context (this build)", m.detok_context},
        {"total (this build)", m.total()},
        {"CUDA: + session context", gpu_context},
        {"CUDA: + detokenizer context", gpu_detok_context},
        {"CUDA total (now)", m.total() + gpu_context + gpu_detok_context},
        {"CUDA total at full context",
         m.at_full_context(response_steps) + gpu_context + gpu_detok_context},
    };
    for (const auto& r : rows) std::printf("  %-34s %9.2f MiB\n", r.name, mib(r.bytes));
}

model::ModelOptions cpu_bf16(int max_context) {
    model::ModelOptions o;
    o.precision = ops::Precision::kBF16;
    o.max_context = max_context;
    o.threads = 2;
    return o;
}

TEST(SessionMemory, FullSizeTable) {
    const char* env = std::getenv("VOXRT_FULL_MODEL");
    const std::string dir = env ? env : "/data/full/model";
    if (!std::filesystem::exists(dir + "/config.json"))
        GTEST_SKIP() << "no full-size checkpoint at " << dir;
    auto m = model::LfmAudioModel::load(dir, cpu_bf16(4096));
    ASSERT_TRUE(m.is_ok()) << m.status().message();
    const model::LfmAudioModel& model = **m;
    constexpr int kSteps = 512;  // a response's default max_steps (snapshots it may need)
    for (int context : {1024, 4096}) {
        SessionOptions so;
        so.context = context;
        auto s = Session::create(model, so);
        ASSERT_TRUE(s.is_ok()) << s.status().message();
        Session& ss = **s;
        // A 5 s user turn (its encoder scratch) and an armed response (what begin() allocates).
        std::vector<float> pcm(16000 * 5, 0.0f);
        for (size_t i = 0; i < pcm.size(); ++i) pcm[i] = 0.1f * static_cast<float>((i * 7) % 13);
        ASSERT_TRUE(ss.new_turn("user").is_ok());
        ASSERT_TRUE(ss.add_audio(pcm.data(), pcm.size(), 16000).is_ok());
        ASSERT_TRUE(ss.end_turn().is_ok());
        ASSERT_TRUE(ss.new_turn("assistant").is_ok());
        GenerateOptions g;
        g.max_new_tokens = kSteps;
        ASSERT_TRUE(ss.begin(g).is_ok());
        const SessionMemory mem = ss.memory();
        const size_t gpu_ctx = ss.owns_context() ? backend::context_device_bytes(
                                                       Device::kCUDA, backend::ContextOptions{})
                                                 : 0;
        const size_t gpu_detok =
            backend::context_device_bytes(Device::kCUDA, Session::detok_context_options());
        char title[128];
        std::snprintf(
            title, sizeof title,
            "full-size checkpoint, context %d, after a 5 s user turn and begin():", context);
        print_table(title, mem, gpu_ctx, gpu_detok, kSteps);
    }
}

}  // namespace
}  // namespace voxrt::runtime
