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

// Rows of the table: one column per session variant.
struct Column {
    const char* name;
    SessionMemory m;
    size_t gpu_context;  // what the session's own CUDA context would hold (0: shared / none)
    size_t gpu_detok_context;
};

void print_table(const char* title, const std::vector<Column>& cols, int response_steps) {
    std::printf("%s\n  %-34s", title, "MiB");
    for (const Column& c : cols) std::printf(" %16s", c.name);
    std::printf("\n");
    auto row = [&](const char* name, auto get) {
        std::printf("  %-34s", name);
        for (const Column& c : cols) std::printf(" %16.2f", mib(get(c)));
        std::printf("\n");
    };
    row("KV cache (now)", [](const Column& c) { return c.m.kv; });
    row("KV cache (full context)", [](const Column& c) { return c.m.kv_full; });
    row("conv state", [](const Column& c) { return c.m.conv_state; });
    row("conv snapshots (now)", [](const Column& c) { return c.m.conv_history; });
    row("conv snapshot per step", [](const Column& c) { return c.m.conv_step; });
    row("buffers", [](const Column& c) { return c.m.buffers; });
    row("scratch (backbone+heads+chunk)", [](const Column& c) { return c.m.scratch; });
    row("encoder scratch", [](const Column& c) { return c.m.encoder_scratch; });
    row("depthformer state", [](const Column& c) { return c.m.head_state; });
    row("detokenizer state", [](const Column& c) { return c.m.detok_state; });
    row("total (this build)", [](const Column& c) { return c.m.total(); });
    row("CUDA: session context", [](const Column& c) { return c.gpu_context; });
    row("CUDA: detokenizer context", [](const Column& c) { return c.gpu_detok_context; });
    row("CUDA total (now)",
        [](const Column& c) { return c.m.total() + c.gpu_context + c.gpu_detok_context; });
    row("CUDA total at full context", [&](const Column& c) {
        return c.m.at_full_context(response_steps) + c.gpu_context + c.gpu_detok_context;
    });
    row("shared lane (once, not above)", [](const Column& c) { return c.m.shared; });
}

model::ModelOptions cpu_bf16(int max_context) {
    model::ModelOptions o;
    o.precision = ops::Precision::kBF16;
    o.max_context = max_context;
    o.threads = 2;
    return o;
}

// ~700 positions with the tiny tokenizer: several prefill chunks and KV growth steps.
std::string long_text() {
    std::string t;
    for (int i = 0; i < 20; ++i)
        t += "The quick brown fox jumps over the lazy dog, number " + std::to_string(i) + ". ";
    return t;
}

struct Turn {
    std::vector<GeneratedItem> items;
    int positions = 0;
};

// A user turn of `text`, then a greedy interleaved response of `steps` steps.
Turn run_turn(Session& s, const std::string& text, int steps) {
    Turn t;
    EXPECT_TRUE(s.new_turn("user").is_ok());
    EXPECT_TRUE(s.add_text(text).is_ok());
    EXPECT_TRUE(s.end_turn().is_ok());
    EXPECT_TRUE(s.new_turn("assistant").is_ok());
    GenerateOptions g;
    g.max_new_tokens = steps;
    g.decode_audio = false;
    g.suppress_end = true;
    const Status st = s.generate(g, nullptr);
    EXPECT_TRUE(st.is_ok()) << st.message();
    t.items = s.last_turn();
    t.positions = s.positions();
    return t;
}

bool same_items(const std::vector<GeneratedItem>& a, const std::vector<GeneratedItem>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i].is_frame != b[i].is_frame || a[i].token != b[i].token || a[i].codes != b[i].codes)
            return false;
    return true;
}

// The KV cache grows by need: a fresh session holds one chunk (256 positions) of its 1024-position
// context; a long turn grows it to what the conversation holds (through prefill chunks and decode
// steps that cross chunk boundaries); the output equals that of a session whose cache was allocated
// for the whole context up front (the old behaviour); reset() shrinks it back.
TEST(SessionMemory, KvGrowsByNeed) {
    auto m = test::load_tiny_model(ops::Precision::kF32, 1024);
    ASSERT_TRUE(m);
    SessionOptions grow;
    grow.context = 1024;
    SessionOptions upfront = grow;
    upfront.kv_reserve = 1024;
    auto a = Session::create(*m, grow);
    auto b = Session::create(*m, upfront);
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    Session& sa = **a;
    Session& sb = **b;
    const SessionMemory fresh = sa.memory();
    EXPECT_EQ(sa.kv_positions(), 256);
    EXPECT_LT(fresh.kv * 4, fresh.kv_full + 1);  // a quarter of the context's cache
    EXPECT_EQ(sb.memory().kv, fresh.kv_full);
    EXPECT_EQ(fresh.conv_history, 0u);

    // ~230 positions of prompt, then 40 steps: the decode crosses position 256 (growth between
    // steps, the replayed graphs made again on CUDA); then ~400 more positions of prefill (chunks
    // that cross further boundaries).
    auto prompt_of = [&](size_t tokens) {
        const std::string all = long_text() + long_text();
        size_t n = 0;
        while (n < all.size() && m->tokenizer().encode(all.substr(0, n)).size() < tokens) n += 8;
        return all.substr(0, n);
    };
    const std::string short_text = prompt_of(220), second = prompt_of(400);
    const Turn a1 = run_turn(sa, short_text, 40), b1 = run_turn(sb, short_text, 40);
    ASSERT_GT(a1.positions, 256);
    ASSERT_LT(a1.positions, 512);
    EXPECT_TRUE(same_items(a1.items, b1.items));
    EXPECT_EQ(sa.kv_positions(), 512);
    const Turn a2 = run_turn(sa, second, 24), b2 = run_turn(sb, second, 24);
    ASSERT_GT(a2.positions, 512);
    EXPECT_TRUE(same_items(a2.items, b2.items));
    EXPECT_EQ(a2.positions, b2.positions);
    EXPECT_GE(sa.kv_positions(), a2.positions);
    EXPECT_EQ(sa.kv_positions() % 256, 0);
    const SessionMemory grown = sa.memory();
    EXPECT_GT(grown.kv, fresh.kv);
    EXPECT_LE(grown.kv, grown.kv_full);
    // Snapshots for 41 steps (one history chunk of 64), not for max_new_tokens.
    EXPECT_EQ(grown.conv_history, 64 * grown.conv_step);

    ASSERT_TRUE(sa.reset().is_ok());
    EXPECT_EQ(sa.kv_positions(), 256);
    EXPECT_EQ(sa.memory().kv, fresh.kv);
    EXPECT_EQ(sa.memory().conv_history, 0u);
    // After the reset the session answers as a fresh one does.
    auto c = Session::create(*m, grow);
    ASSERT_TRUE(c.is_ok());
    EXPECT_TRUE(
        same_items(run_turn(sa, short_text, 12).items, run_turn(**c, short_text, 12).items));
}

// Sessions sharing one lane hold no context or scratch of their own, and interleaving their work on
// it (prefill chunks and steps alternating) changes nothing: each answers what it answers alone.
TEST(SessionMemory, SharedLane) {
    auto m = test::load_tiny_model(ops::Precision::kF32, 1024);
    ASSERT_TRUE(m);
    auto lane = DeviceLane::create(*m);
    ASSERT_TRUE(lane.is_ok()) << lane.status().message();
    SessionOptions shared;
    shared.context = 1024;
    shared.lane = *lane;
    SessionOptions own;
    own.context = 1024;
    auto a = Session::create(*m, shared);
    auto b = Session::create(*m, shared);
    auto lone_a = Session::create(*m, own);
    auto lone_b = Session::create(*m, own);
    ASSERT_TRUE(a.is_ok() && b.is_ok() && lone_a.is_ok() && lone_b.is_ok());
    const SessionMemory ma = (*a)->memory(), mo = (*lone_a)->memory();
    EXPECT_FALSE((*a)->owns_context());
    EXPECT_EQ(ma.scratch, 0u);
    EXPECT_EQ(ma.encoder_scratch, 0u);
    EXPECT_GT(ma.shared, 0u);
    EXPECT_GT(mo.scratch, 0u);
    EXPECT_EQ(mo.shared, 0u);
    EXPECT_LT(ma.total(), mo.total());

    const std::string ta = long_text(), tb = "What is a chair? Tell me about chairs.";
    const Turn ra = run_turn(**lone_a, ta, 30), rb = run_turn(**lone_b, tb, 30);
    for (Session* s : {a->get(), b->get()}) {
        ASSERT_TRUE(s->new_turn("user").is_ok());
        ASSERT_TRUE(s->add_text(s == a->get() ? ta : tb).is_ok());
        ASSERT_TRUE(s->end_turn().is_ok());
        ASSERT_TRUE(s->new_turn("assistant").is_ok());
        GenerateOptions g;
        g.max_new_tokens = 30;
        g.decode_audio = false;
        g.suppress_end = true;
        ASSERT_TRUE(s->begin(g).is_ok());
    }
    bool done_a = false, done_b = false;
    std::vector<Event> ev;
    while (!done_a || !done_b) {
        if (!done_a) {
            auto r = (*a)->step(ev);
            ASSERT_TRUE(r.is_ok()) << r.status().message();
            done_a = *r;
        }
        if (!done_b) {
            auto r = (*b)->step(ev);
            ASSERT_TRUE(r.is_ok()) << r.status().message();
            done_b = *r;
        }
    }
    EXPECT_TRUE(same_items((*a)->last_turn(), ra.items));
    EXPECT_TRUE(same_items((*b)->last_turn(), rb.items));
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
    const size_t gpu_ctx =
        backend::context_device_bytes(Device::kCUDA, DeviceLane::context_options());
    const size_t gpu_detok =
        backend::context_device_bytes(Device::kCUDA, Session::detok_context_options());
    for (int context : {1024, 4096}) {
        // A session with its own lane (the library's default) and one sharing the lane of the
        // model's sessions (voxrt serve), each after a 5 s user turn (its encoder scratch) and an
        // armed response of kSteps steps (what begin() allocates).
        auto lane = DeviceLane::create(model);
        ASSERT_TRUE(lane.is_ok()) << lane.status().message();
        std::vector<Column> cols;
        std::vector<std::unique_ptr<Session>> keep;
        for (bool shared : {false, true}) {
            SessionOptions so;
            so.context = context;
            if (shared) so.lane = *lane;
            auto s = Session::create(model, so);
            ASSERT_TRUE(s.is_ok()) << s.status().message();
            Session& ss = **s;
            std::vector<float> pcm(16000 * 5, 0.0f);
            for (size_t i = 0; i < pcm.size(); ++i)
                pcm[i] = 0.1f * static_cast<float>((i * 7) % 13);
            ASSERT_TRUE(ss.new_turn("user").is_ok());
            ASSERT_TRUE(ss.add_audio(pcm.data(), pcm.size(), 16000).is_ok());
            ASSERT_TRUE(ss.end_turn().is_ok());
            ASSERT_TRUE(ss.new_turn("assistant").is_ok());
            GenerateOptions g;
            g.max_new_tokens = kSteps;
            ASSERT_TRUE(ss.begin(g).is_ok());
            cols.push_back(Column{shared ? "after, shared" : "after, own lane", ss.memory(),
                                  ss.owns_context() ? gpu_ctx : 0, gpu_detok});
            keep.push_back(std::move(*s));
        }
        // Before this change: the same components at the sizes the old code gave them (fixed by
        // the context and max_new_tokens), from the same config.
        const ops::Context& ctx = keep[0]->context();
        const size_t a = dtype_size(ctx.act_dtype());
        const model::AudioModelConfig& c = model.config();
        const size_t D = static_cast<size_t>(c.lfm.hidden_size),
                     Q = static_cast<size_t>(c.codebooks),
                     V = static_cast<size_t>(c.lfm.vocab_size), chunk = 256;
        SessionMemory before = cols[0].m;
        before.kv = before.kv_full;
        before.conv_state = 2 * before.conv_state;  // the unused per-layer states + the block
        before.conv_history = static_cast<size_t>(kSteps + 1) * before.conv_step;
        // audio_in_ [context, D], x_ / out_ [256, D], h_ [1, D], pos_ / ids_ [256], codes_ [Q],
        // token_ [1], counters_ [Q + 1], text_logits_ [1, V]
        before.buffers = static_cast<size_t>(context) * D * a + 2 * chunk * D * a + D * a +
                         2 * chunk * 4 + Q * 4 + 4 + (Q + 1) * 4 + V * a;
        before.scratch = model.backbone().scratch_bytes(ctx, 256) +
                         model.audio_head().scratch_bytes(ctx) + (1u << 20);
        cols.insert(cols.begin(), Column{"before", before, gpu_ctx, gpu_detok});
        char title[160];
        std::snprintf(title, sizeof title,
                      "full-size checkpoint (bf16, CPU build), context %d, after a 5 s user turn "
                      "and begin() of %d steps:",
                      context, kSteps);
        print_table(title, cols, kSteps);
        // The regression bound: a shared-lane session holds at most a quarter of the old size.
        EXPECT_LT((cols[2].m.total() + cols[2].gpu_detok_context) * 4,
                  cols[0].m.total() + cols[0].gpu_context + cols[0].gpu_detok_context)
            << "per-session memory regressed";
    }
}

}  // namespace
}  // namespace voxrt::runtime
