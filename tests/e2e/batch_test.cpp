// voxrt::Batch (continuous batching) on the tiny checkpoint: a conversation's output does not
// depend on who shares its batch.
//
// Six conversations of every task (speech chat, ASR, TTS, text chat; greedy and sampled) are run
// alone, then together through Batch::step while the batch changes under them: they join at
// different steps, one is cancelled mid-batch, and the rows are split over several batched calls
// (max_rows below the batch). Then each conversation takes a second turn alone, which shows that
// the batched steps left its state (KV cache, conv state, position, sampling counters) exactly as
// its own steps would have.
// - CPU (fp32 and bf16): items, text and PCM equal to the lone runs bit for bit (the CPU linear
//   kernels give a row the same bits for 1 to 8 rows; the batches here have at most 6).
// - CUDA (fp32): the lone runs take the fused kernels and the batch the op sequence, which differ
//   in summation order only (~1e-7): the items (hence text and PCM) must still be identical. On a
//   shared lane the conversations' detokenizer chunks run together (DetokBatcher): the products
//   over all their rows take cuBLAS algorithms chosen by the row count, so the PCM equals the lone
//   run's within 1e-5 relative (the detokenizer's own streaming bar), not bit for bit.
// A row given another session's state (a wrong slot) changes its output entirely: caught.
#include <gtest/gtest.h>
#include <voxrt/voxrt.h>

#include <memory>
#include <string>
#include <vector>

#include "util/api_util.h"
#include "util/compare.h"
#include "util/test_paths.h"

namespace voxrt {
namespace {

struct Job {
    Task task;
    std::string input;  // WAV under tests/data/audio, or text
    uint64_t seed;
    bool sampled;
};

// ~700 positions with the tiny tokenizer: more than two prefill chunks (256 positions).
std::string long_text() {
    std::string t;
    for (int i = 0; i < 20; ++i)
        t += "The quick brown fox jumps over the lazy dog, number " + std::to_string(i) + ". ";
    return t;
}

const std::vector<Job>& jobs() {
    static const std::vector<Job> j = {
        {Task::kSpeechChat, "question.wav", 1, false},
        {Task::kSpeechChat, "question.wav", 2, true},
        {Task::kAsr, "asr.wav", 3, false},
        {Task::kTts, "Hello there, how are you?", 4, true},
        {Task::kTextChat, "What is a chair?", 5, true},
        {Task::kSpeechChat, "st48k.wav", 6, false},
        {Task::kTextChat, long_text(), 7, false},  // its prefill takes several steps
    };
    return j;
}

Status add_prompt(Session& s, const Job& j) {
    const TaskDefaults d = task_defaults(j.task, Voice::kUkMale);
    if (d.audio_in) return test::add_audio_prompt(s, j.task, test::read_clip(j.input));
    if (!d.system_prompt.empty()) VOXRT_RETURN_IF_ERROR(s.add_turn(Role::kSystem, d.system_prompt));
    return s.add_turn(Role::kUser, j.input);
}

ResponseOptions options(const Job& j, int steps = 40) {
    ResponseOptions o = ResponseOptions::for_task(j.task);
    o.max_steps = steps;
    o.seed = j.seed;
    if (j.sampled) {
        o.sampling.text_temperature = 0.7f;
        o.sampling.text_top_k = 20;
        o.sampling.audio_temperature = 0.8f;
        o.sampling.audio_top_k = 4;
    }
    return o;
}

// Collects one response's events (as test::respond does).
void collect(test::Response& r, const std::vector<Event>& ev) {
    for (const Event& e : ev) {
        if (e.kind == EventKind::kTextDelta) r.text += e.text;
        if (e.kind == EventKind::kAudio) r.pcm.insert(r.pcm.end(), e.pcm.begin(), e.pcm.end());
        if (e.kind == EventKind::kEndOfTurn) {
            r.reason = e.reason;
            r.steps = e.stats.steps;
        }
    }
}

struct Conversation {
    test::Response first, second;
};

// Alone: the first response (cut by cancel() after `cancel_at` steps when >= 0), then a second
// text turn answered greedily.
Conversation alone(const std::shared_ptr<Model>& m, const Job& j, int cancel_at) {
    Conversation c;
    auto s = Session::create(m);
    EXPECT_TRUE(s.is_ok()) << s.status().message();
    if (!s.is_ok()) return c;
    EXPECT_TRUE(add_prompt(**s, j).is_ok());
    EXPECT_TRUE((*s)->start_response(options(j)).is_ok());
    std::vector<Event> ev;
    for (int k = 0;; ++k) {
        if (k == cancel_at) (*s)->cancel();
        ev.clear();
        Expected<bool> done = (*s)->step(ev);
        EXPECT_TRUE(done.is_ok()) << done.status().message();
        if (!done.is_ok()) return c;
        collect(c.first, ev);
        if (*done) break;
    }
    c.first.items = (*s)->last_response();
    EXPECT_TRUE((*s)->add_turn(Role::kUser, "Tell me more.").is_ok());
    c.second = test::respond(**s, options(Job{Task::kTextChat, "", 9, false}, 16));
    return c;
}

// The jobs through one Batch: conversation i joins at engine step 3·i, conversation kCancelled is
// cancelled at its kCancelAt-th step, the batch holds those still responding; then each takes a
// second text turn alone. *replays: the steps whose frame rows / backbone step replayed a graph.
constexpr int kCancelled = 2, kCancelAt = 9;

struct Replays {
    int frames = 0, backbone = 0;
};

void run_batched(const std::shared_ptr<Model>& m, int max_rows, bool graphs,
                 std::vector<Conversation>& got, Replays* replays, bool shared_lane = false,
                 bool warm = false) {
    const std::vector<Job>& js = jobs();
    *replays = Replays{};
    auto batch = Batch::create(m, max_rows);
    ASSERT_TRUE(batch.is_ok()) << batch.status().message();
    batch.value()->set_device_graphs(graphs);
    if (warm) {
        const Status st = batch.value()->warm_up(max_rows);
        ASSERT_TRUE(st.is_ok()) << st.message();
    }
    std::vector<std::unique_ptr<Session>> ss;
    SessionOptions so;
    so.share_device_context = shared_lane;
    for (const Job& j : js) {
        auto s = Session::create(m, so);
        ASSERT_TRUE(s.is_ok());
        ASSERT_TRUE(add_prompt(**s, j).is_ok());
        ss.push_back(std::move(*s));
    }
    got.assign(js.size(), Conversation{});
    std::vector<int> own_steps(js.size(), 0);
    std::vector<bool> joined(js.size(), false), over(js.size(), false);
    std::vector<std::vector<Event>> ev;
    std::vector<BatchResult> res;
    int max_rows_seen = 0;
    for (int t = 0; t < 400; ++t) {
        std::vector<Session*> live;
        std::vector<size_t> who;
        for (size_t i = 0; i < js.size(); ++i) {
            if (!joined[i] && t >= 3 * static_cast<int>(i)) {
                ASSERT_TRUE(ss[i]->start_response(options(js[i])).is_ok());
                joined[i] = true;
            }
            if (joined[i] && !over[i]) {
                if (static_cast<int>(i) == kCancelled && own_steps[i] == kCancelAt) ss[i]->cancel();
                live.push_back(ss[i].get());
                who.push_back(i);
            }
        }
        if (live.empty()) break;
        ev.clear();
        ASSERT_TRUE(batch.value()->step(live, ev, res).is_ok());
        ASSERT_EQ(ev.size(), live.size());
        max_rows_seen = std::max(max_rows_seen, batch.value()->last_shape().backbone);
        if (batch.value()->last_shape().frame_graph) ++replays->frames;
        if (batch.value()->last_shape().backbone_graph) ++replays->backbone;
        for (size_t k = 0; k < live.size(); ++k) {
            const size_t i = who[k];
            ASSERT_TRUE(res[k].status.is_ok())
                << "conversation " << i << ": " << res[k].status.message();
            collect(got[i].first, ev[k]);
            ++own_steps[i];
            if (res[k].done) over[i] = true;
        }
    }
    EXPECT_GE(max_rows_seen, 4) << "the batch never held several conversations";
    for (size_t i = 0; i < js.size(); ++i) {
        ASSERT_TRUE(over[i]) << "conversation " << i << " never ended";
        got[i].first.items = ss[i]->last_response();
        ASSERT_TRUE(ss[i]->add_turn(Role::kUser, "Tell me more.").is_ok());
        got[i].second = test::respond(*ss[i], options(Job{Task::kTextChat, "", 9, false}, 16));
        ASSERT_TRUE(got[i].second.status.is_ok()) << got[i].second.status.message();
    }
}

// A batched first answer against its lone run: items and text equal; PCM equal, or within the
// detokenizer's streaming bar (1e-5 relative) where the conversations' detokenizer chunks ran
// joined on a GPU (`joined_pcm`: the products over all their rows take other cuBLAS algorithms).
void expect_first_equal(const test::Response& got, const test::Response& ref, bool joined_pcm,
                        size_t i) {
    EXPECT_EQ(got.items, ref.items) << "conversation " << i;
    EXPECT_EQ(got.text, ref.text) << "conversation " << i;
    if (!joined_pcm) {
        EXPECT_EQ(got.pcm, ref.pcm) << "conversation " << i;
        return;
    }
    ASSERT_EQ(got.pcm.size(), ref.pcm.size()) << "conversation " << i;
    if (ref.pcm.empty()) return;
    const test::ErrorStats e = test::compare(got.pcm.data(), ref.pcm.data(), ref.pcm.size());
    EXPECT_LE(e.rel_l2, 1e-5) << "conversation " << i << ": " << e.str();
}

struct Case {
    std::string device, precision;
    int max_rows;
    // Sessions sharing one device lane, as the server makes them: their first frame and their
    // end go to the detokenizer's worker without waiting (the answer ends at a later step).
    bool shared_lane = false;
};

class BatchApi : public ::testing::TestWithParam<Case> {};

TEST_P(BatchApi, EachConversationEqualsItselfAlone) {
    const Case& c = GetParam();
    if (c.device == "cuda" && !gpu_available()) GTEST_SKIP() << "no CUDA device";
    auto m = test::load_tiny(c.device, c.precision);
    ASSERT_TRUE(m);
    const std::vector<Job>& js = jobs();
    std::vector<Conversation> ref;
    for (size_t i = 0; i < js.size(); ++i)
        ref.push_back(alone(m, js[i], static_cast<int>(i) == kCancelled ? kCancelAt : -1));

    std::vector<Conversation> got;
    Replays replays;
    ASSERT_NO_FATAL_FAILURE(
        run_batched(m, c.max_rows, /*graphs=*/true, got, &replays, c.shared_lane));
    for (size_t i = 0; i < js.size(); ++i) {
        expect_first_equal(got[i].first, ref[i].first, c.device == "cuda" && c.shared_lane, i);
        EXPECT_EQ(got[i].first.reason, ref[i].first.reason) << "conversation " << i;
        EXPECT_EQ(got[i].second.items, ref[i].second.items) << "conversation " << i;
        EXPECT_EQ(got[i].second.text, ref[i].second.text) << "conversation " << i;
    }
    // On a GPU the frame rows' step and the backbone step were replayed from graphs (the row
    // counts repeat).
    if (c.device == "cuda") {
        EXPECT_GT(replays.frames, 0);
        EXPECT_GT(replays.backbone, 0);
    }
    // Not trivially equal: the conversations differ, one was cut, and audio came out.
    EXPECT_NE(ref[0].first.items, ref[1].first.items);
    EXPECT_EQ(ref[kCancelled].first.reason, EndReason::kCancelled);
    EXPECT_FALSE(ref[0].first.pcm.empty());
}

INSTANTIATE_TEST_SUITE_P(Devices, BatchApi,
                         ::testing::Values(Case{"cpu", "fp32", 64}, Case{"cpu", "bf16", 64},
                                           Case{"cpu", "fp32", 4}, Case{"cpu", "fp32", 64, true},
                                           Case{"cuda", "fp32", 64}, Case{"cuda", "fp32", 4},
                                           Case{"cuda", "fp32", 64, true}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                             return i.param.device + "_" + i.param.precision + "_rows" +
                                    std::to_string(i.param.max_rows) +
                                    (i.param.shared_lane ? "_shared_lane" : "");
                         });

// The batched frame and backbone step replayed from CUDA graphs give what the same ops give run
// one by one, bit for bit (the same kernels; a graph only launches them), in fp32 and bf16.
TEST(BatchGraphs, ReplayEqualsOpByOp) {
    if (!gpu_available()) GTEST_SKIP() << "no CUDA device";
    for (const char* prec : {"fp32", "bf16"}) {
        auto m = test::load_tiny("cuda", prec);
        ASSERT_TRUE(m);
        std::vector<Conversation> eager, graphed, warmed;
        Replays none, replays, warm_replays;
        ASSERT_NO_FATAL_FAILURE(run_batched(m, 64, /*graphs=*/false, eager, &none));
        ASSERT_NO_FATAL_FAILURE(run_batched(m, 64, /*graphs=*/true, graphed, &replays));
        // Batch::warm_up made every frame-row count's graph first: every frame step replays.
        ASSERT_NO_FATAL_FAILURE(run_batched(m, 64, /*graphs=*/true, warmed, &warm_replays,
                                            /*shared_lane=*/false, /*warm=*/true));
        EXPECT_EQ(none.frames + none.backbone, 0);
        EXPECT_GT(replays.frames, 0) << prec;
        EXPECT_GT(replays.backbone, 0) << prec;
        EXPECT_GT(warm_replays.frames, replays.frames) << prec;
        for (size_t i = 0; i < eager.size(); ++i) {
            EXPECT_EQ(graphed[i].first.items, eager[i].first.items)
                << prec << " conversation " << i;
            EXPECT_EQ(graphed[i].first.pcm, eager[i].first.pcm) << prec << " conversation " << i;
            EXPECT_EQ(graphed[i].second.items, eager[i].second.items)
                << prec << " conversation " << i;
            EXPECT_EQ(warmed[i].first.items, eager[i].first.items) << prec << " conversation " << i;
            EXPECT_EQ(warmed[i].first.pcm, eager[i].first.pcm) << prec << " conversation " << i;
        }
    }
}

// New turns that start in the same step: their prefill chunks run as one backbone call of at most
// prefill_rows positions a step (the responses begun first go first, the rest wait a step), and
// each conversation still equals itself alone, in both turns. All seven jobs start together, on a
// shared lane as the server makes them; the long one's prefill takes three chunks. A segment given
// another conversation's memory or positions would change its answer entirely.
// - CPU: the joined call's products take the packed GEMM where a lone chunk of fewer than 64 rows
//   takes the tiled one (another summation order), so the prefill's hidden states differ in their
//   last bits; the items, and so text and PCM, must still be identical. (The CPU's default stays
//   each chunk alone: set_prefill_rows(0).)
// - CUDA: the products over the joined rows take other cuBLASLt algorithms; items identical, PCM
//   within the shared lane's 1e-5.
struct PrefillCase {
    std::string device;
    int prefill_rows;
};

class BatchApiJoinedPrefill : public ::testing::TestWithParam<PrefillCase> {};

TEST_P(BatchApiJoinedPrefill, EachConversationEqualsItselfAlone) {
    const PrefillCase& c = GetParam();
    if (c.device == "cuda" && !gpu_available()) GTEST_SKIP() << "no CUDA device";
    auto m = test::load_tiny(c.device, "fp32");
    ASSERT_TRUE(m);
    const std::vector<Job>& js = jobs();
    std::vector<Conversation> ref;
    for (const Job& j : js) ref.push_back(alone(m, j, -1));

    auto batch = Batch::create(m, 64);
    ASSERT_TRUE(batch.is_ok()) << batch.status().message();
    EXPECT_EQ(batch.value()->prefill_rows(), c.device == "cpu" ? 0 : 1024) << "the default";
    batch.value()->set_prefill_rows(c.prefill_rows);
    ASSERT_EQ(batch.value()->prefill_rows(), c.prefill_rows);
    SessionOptions so;
    so.share_device_context = true;
    std::vector<std::unique_ptr<Session>> ss;
    std::vector<Session*> live;
    for (const Job& j : js) {
        auto s = Session::create(m, so);
        ASSERT_TRUE(s.is_ok());
        ASSERT_TRUE(add_prompt(**s, j).is_ok());
        ASSERT_TRUE((*s)->start_response(options(j)).is_ok());
        live.push_back(s->get());
        ss.push_back(std::move(*s));
    }
    std::vector<Conversation> got(js.size());
    std::vector<int> prefilled_at(js.size(), -1);
    std::vector<bool> over(js.size(), false);
    int most_joined = 0, deferred = 0, most_rows = 0;
    std::vector<std::vector<Event>> ev;
    std::vector<BatchResult> res;
    for (int t = 0; t < 400; ++t) {
        std::vector<Session*> step_list;
        std::vector<size_t> who;
        for (size_t i = 0; i < js.size(); ++i)
            if (!over[i]) {
                step_list.push_back(live[i]);
                who.push_back(i);
            }
        if (step_list.empty()) break;
        ev.clear();
        ASSERT_TRUE(batch.value()->step(step_list, ev, res).is_ok());
        const Batch::Shape sh = batch.value()->last_shape();
        most_joined = std::max(most_joined, sh.prefill_sessions);
        most_rows = std::max(most_rows, sh.prefill_rows);
        deferred += sh.prefill_deferred;
        for (size_t k = 0; k < step_list.size(); ++k) {
            const size_t i = who[k];
            ASSERT_TRUE(res[k].status.is_ok())
                << "conversation " << i << ": " << res[k].status.message();
            if (prefilled_at[i] < 0 && !live[i]->prefilling()) prefilled_at[i] = t;
            collect(got[i].first, ev[k]);
            if (res[k].done) over[i] = true;
        }
    }
    EXPECT_LE(most_rows, c.prefill_rows);
    EXPECT_EQ(prefilled_at[0], 0) << "the first begun is prefilled first";
    if (c.prefill_rows < 512) {  // the seven first chunks hold ~750 positions
        EXPECT_GE(most_joined, 2);
        EXPECT_GT(deferred, 0) << "the bound held some back";
        EXPECT_GT(prefilled_at.back(), 2) << "the last begun waited";
    } else {
        EXPECT_EQ(most_joined, static_cast<int>(js.size())) << "every first chunk in one call";
        EXPECT_EQ(deferred, 0);
        EXPECT_EQ(prefilled_at.back(), 2) << "the long turn: three chunks, one a step";
    }
    for (size_t i = 0; i < js.size(); ++i) {
        ASSERT_TRUE(over[i]) << "conversation " << i << " never ended";
        got[i].first.items = ss[i]->last_response();
        ASSERT_TRUE(ss[i]->add_turn(Role::kUser, "Tell me more.").is_ok());
        got[i].second = test::respond(*ss[i], options(Job{Task::kTextChat, "", 9, false}, 16));
        expect_first_equal(got[i].first, ref[i].first, c.device == "cuda", i);
        EXPECT_EQ(got[i].second.items, ref[i].second.items) << "conversation " << i;
    }
    EXPECT_NE(ref[0].first.items, ref[1].first.items);
}

INSTANTIATE_TEST_SUITE_P(Devices, BatchApiJoinedPrefill,
                         ::testing::Values(PrefillCase{"cpu", 300}, PrefillCase{"cpu", 1024},
                                           PrefillCase{"cuda", 300}, PrefillCase{"cuda", 1024}),
                         [](const ::testing::TestParamInfo<PrefillCase>& i) {
                             return i.param.device + "_rows" + std::to_string(i.param.prefill_rows);
                         });

// Barge-in while others answer: conversations are cut mid-answer in the batch (cancel), truncated
// to what was "heard" (the batch's conv-state snapshots are what truncation restores), then asked
// again, their second answers joining the batch while the others still run their first; each
// equals the same conversation done alone: the kept items, the second answer's items and text
// (fp32; on the CPU bit for bit, on CUDA to summation order, with the items equal). A batch that
// kept no conv-state snapshots fails it.
struct Barge {
    size_t job;
    int cut_at;     // the first answer is cancelled at this step of its own
    bool by_audio;  // truncate_to_audio_ms(amount), else truncate_to_text(amount)
    double amount;
};

const std::vector<Barge>& barges() {
    static const std::vector<Barge> b = {
        {0, 14, true, 160}, {1, 18, true, 240}, {3, 20, false, 4}, {4, 12, false, 3}};
    return b;
}

struct BargeResult {
    std::vector<ResponseItem> first, kept;
    test::Response second;
};

Status barge(Session& s, const Barge& b) {
    return b.by_audio ? s.truncate_to_audio_ms(b.amount)
                      : s.truncate_to_text(static_cast<size_t>(b.amount));
}

ResponseOptions second_options() {
    return options(Job{Task::kTextChat, "", 11, true}, 12);
}

class BatchApiTruncate : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchApiTruncate, CutMidBatchThenAskedAgainEqualsAlone) {
    if (GetParam() == "cuda" && !gpu_available()) GTEST_SKIP() << "no CUDA device";
    auto m = test::load_tiny(GetParam(), "fp32");
    ASSERT_TRUE(m);
    const std::vector<Job>& js = jobs();
    const std::vector<Barge>& bs = barges();
    std::vector<BargeResult> ref(bs.size());
    for (size_t i = 0; i < bs.size(); ++i) {
        const Barge& b = bs[i];
        auto s = Session::create(m);
        ASSERT_TRUE(s.is_ok());
        ASSERT_TRUE(add_prompt(**s, js[b.job]).is_ok());
        ASSERT_TRUE((*s)->start_response(options(js[b.job])).is_ok());
        std::vector<Event> ev;
        for (int k = 0;; ++k) {
            if (k == b.cut_at) (*s)->cancel();
            ev.clear();
            Expected<bool> done = (*s)->step(ev);
            ASSERT_TRUE(done.is_ok()) << done.status().message();
            if (*done) break;
        }
        ref[i].first = (*s)->last_response();
        const Status cut = barge(**s, b);
        ASSERT_TRUE(cut.is_ok()) << cut.message();
        ref[i].kept = (*s)->last_response();
        ASSERT_LT(ref[i].kept.size(), ref[i].first.size()) << "barge " << i << ": nothing cut";
        ASSERT_TRUE((*s)->add_turn(Role::kUser, "Tell me more.").is_ok());
        ref[i].second = test::respond(**s, second_options());
        ASSERT_TRUE(ref[i].second.status.is_ok()) << ref[i].second.status.message();
    }

    auto batch = Batch::create(m, 64);
    ASSERT_TRUE(batch.is_ok());
    SessionOptions so;
    so.share_device_context = true;
    std::vector<std::unique_ptr<Session>> ss;
    for (const Barge& b : bs) {
        auto s = Session::create(m, so);
        ASSERT_TRUE(s.is_ok());
        ASSERT_TRUE(add_prompt(**s, js[b.job]).is_ok());
        ss.push_back(std::move(*s));
    }
    std::vector<BargeResult> got(bs.size());
    std::vector<int> phase(bs.size(), -1), own(bs.size(), 0);  // -1 waiting, 0 first, 1 second
    std::vector<std::vector<Event>> ev;
    std::vector<BatchResult> res;
    bool overlapped = false;  // a second answer ran while another conversation's first did
    for (int t = 0; t < 600; ++t) {
        std::vector<Session*> live;
        std::vector<size_t> who;
        for (size_t i = 0; i < bs.size(); ++i) {
            if (phase[i] == -1 && t >= 2 * static_cast<int>(i)) {
                ASSERT_TRUE(ss[i]->start_response(options(js[bs[i].job])).is_ok());
                phase[i] = 0;
            }
            if (phase[i] == 0 && own[i] == bs[i].cut_at) ss[i]->cancel();
            if (phase[i] == 0 || phase[i] == 1) {
                live.push_back(ss[i].get());
                who.push_back(i);
            }
        }
        if (live.empty()) break;
        bool firsts = false, seconds = false;
        for (size_t i : who) (phase[i] == 0 ? firsts : seconds) = true;
        overlapped = overlapped || (firsts && seconds);
        ev.clear();
        ASSERT_TRUE(batch.value()->step(live, ev, res).is_ok());
        for (size_t k = 0; k < live.size(); ++k) {
            const size_t i = who[k];
            ASSERT_TRUE(res[k].status.is_ok())
                << "conversation " << i << ": " << res[k].status.message();
            if (phase[i] == 0) {
                ++own[i];
            } else {
                collect(got[i].second, ev[k]);
            }
            if (!res[k].done) continue;
            if (phase[i] == 0) {
                got[i].first = ss[i]->last_response();
                const Status cut = barge(*ss[i], bs[i]);
                ASSERT_TRUE(cut.is_ok()) << cut.message();
                got[i].kept = ss[i]->last_response();
                ASSERT_TRUE(ss[i]->add_turn(Role::kUser, "Tell me more.").is_ok());
                ASSERT_TRUE(ss[i]->start_response(second_options()).is_ok());
                phase[i] = 1;
            } else {
                got[i].second.items = ss[i]->last_response();
                phase[i] = 2;
            }
        }
    }
    EXPECT_TRUE(overlapped) << "no second answer ran beside a first one";
    for (size_t i = 0; i < bs.size(); ++i) {
        ASSERT_EQ(phase[i], 2) << "conversation " << i << " did not finish";
        EXPECT_EQ(got[i].first, ref[i].first) << "conversation " << i;
        EXPECT_EQ(got[i].kept, ref[i].kept) << "conversation " << i;
        EXPECT_EQ(got[i].second.items, ref[i].second.items) << "conversation " << i;
        EXPECT_EQ(got[i].second.text, ref[i].second.text) << "conversation " << i;
        EXPECT_FALSE(ref[i].second.items.empty());
    }
    EXPECT_NE(ref[0].second.items, ref[1].second.items);
}

INSTANTIATE_TEST_SUITE_P(Devices, BatchApiTruncate, ::testing::Values("cpu", "cuda"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// A prefill longer than one chunk runs over several step()s (no events, prefilling()), the last
// of which also makes the first step; a cancel() during it ends the response once it is over, and
// the conversation goes on.
TEST(BatchApiPrefill, LongTurnPrefillsOneChunkPerStep) {
    auto m = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m);
    for (const bool cancel : {false, true}) {
        auto s = Session::create(m);
        ASSERT_TRUE(s.is_ok());
        Session& ses = **s;
        const Status added = ses.add_turn(Role::kUser, long_text());
        ASSERT_TRUE(added.is_ok()) << added.message();
        ASSERT_TRUE(ses.start_response(options(Job{Task::kTextChat, "", 1, false}, 8)).is_ok());
        const int positions = ses.positions();  // all pending: nothing ran yet
        ASSERT_GT(positions, 2 * 256);
        const int chunks = (positions + 255) / 256;
        std::vector<Event> ev;
        int empty_steps = 0;
        bool over = false;
        while (ses.prefilling()) {
            ev.clear();
            auto r = ses.step(ev);
            ASSERT_TRUE(r.is_ok()) << r.status().message();
            over = *r;
            if (ses.prefilling()) {
                EXPECT_FALSE(*r);
                EXPECT_TRUE(ev.empty());
                ++empty_steps;
                if (cancel) ses.cancel();
            }
        }
        EXPECT_EQ(empty_steps, chunks - 1) << positions << " positions";
        test::Response rest;
        collect(rest, ev);
        for (bool done = over; !done;) {
            ev.clear();
            auto r = ses.step(ev);
            ASSERT_TRUE(r.is_ok()) << r.status().message();
            collect(rest, ev);
            done = *r;
        }
        if (cancel) {
            EXPECT_EQ(rest.reason, EndReason::kCancelled);
        }
        if (!cancel) {
            EXPECT_NE(rest.reason, EndReason::kCancelled);
        }
        ASSERT_TRUE(ses.add_turn(Role::kUser, "Tell me more.").is_ok());
        test::Response next = test::respond(ses, options(Job{Task::kTextChat, "", 2, false}, 8));
        EXPECT_TRUE(next.status.is_ok()) << next.status.message();
        EXPECT_FALSE(next.items.empty());
    }
}

// Conversations that reach audio in the same step: the first frames of at most two of them are
// detokenized inline (their first samples come in that step's events); the others' go to their
// detokenizer workers and come at a later step, so the step does not wait for one detokenizer call
// per conversation. Their audio is the same either way.
TEST(BatchApiFirstAudio, AtMostTwoFirstFramesInlinePerStep) {
    auto m = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m);
    const Job j{Task::kSpeechChat, "question.wav", 1, false};
    const int kSessions = 5;
    auto batch = Batch::create(m);
    ASSERT_TRUE(batch.is_ok()) << batch.status().message();
    std::vector<std::unique_ptr<Session>> ss;
    std::vector<Session*> live;
    for (int i = 0; i < kSessions; ++i) {
        auto s = Session::create(m);
        ASSERT_TRUE(s.is_ok());
        ASSERT_TRUE(add_prompt(**s, j).is_ok());
        ASSERT_TRUE((*s)->start_response(options(j)).is_ok());
        live.push_back(s->get());
        ss.push_back(std::move(*s));
    }
    std::vector<int> frame_step(kSessions, -1), pcm_step(kSessions, -1);
    std::vector<test::Response> got(kSessions);
    std::vector<bool> over(kSessions, false);
    std::vector<std::vector<Event>> ev;
    std::vector<BatchResult> res;
    for (int t = 0; t < 200; ++t) {
        std::vector<Session*> step_list;
        std::vector<int> who;
        for (int i = 0; i < kSessions; ++i)
            if (!over[static_cast<size_t>(i)]) {
                step_list.push_back(live[static_cast<size_t>(i)]);
                who.push_back(i);
            }
        if (step_list.empty()) break;
        ev.clear();
        ASSERT_TRUE(batch.value()->step(step_list, ev, res).is_ok());
        for (size_t k = 0; k < step_list.size(); ++k) {
            const size_t i = static_cast<size_t>(who[k]);
            ASSERT_TRUE(res[k].status.is_ok()) << res[k].status.message();
            for (const Event& e : ev[k]) {
                if (e.kind == EventKind::kAudioFrame && frame_step[i] < 0) frame_step[i] = t;
                if (e.kind == EventKind::kAudio && pcm_step[i] < 0) pcm_step[i] = t;
            }
            collect(got[i], ev[k]);
            if (res[k].done) over[i] = true;
        }
    }
    int inline_first = 0;
    for (int i = 0; i < kSessions; ++i) {
        const size_t u = static_cast<size_t>(i);
        ASSERT_GE(frame_step[u], 0) << "session " << i << " made no audio frame";
        ASSERT_GE(pcm_step[u], frame_step[u]) << "session " << i;
        EXPECT_EQ(frame_step[u], frame_step[0]) << "the same answer reaches audio at the same step";
        if (pcm_step[u] == frame_step[u]) ++inline_first;
        EXPECT_EQ(got[u].pcm, got[0].pcm) << "session " << i;
        ASSERT_TRUE(over[u]);
    }
    EXPECT_EQ(inline_first, 2);
    EXPECT_FALSE(got[0].pcm.empty());
}

TEST(BatchApiErrors, RefusesWhatItCannotStep) {
    auto m = test::load_tiny("cpu", "fp32");
    auto other = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m && other);
    EXPECT_FALSE(Batch::create(m, 0).is_ok());
    EXPECT_FALSE(Batch::create(nullptr).is_ok());
    auto batch = Batch::create(m);
    ASSERT_TRUE(batch.is_ok());
    auto a = Session::create(m);
    auto b = Session::create(other);
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    std::vector<std::vector<Event>> ev;
    std::vector<BatchResult> res;
    // Nothing to respond to: done at once, no events.
    ASSERT_TRUE(batch.value()->step({a->get()}, ev, res).is_ok());
    EXPECT_TRUE(res[0].done);
    EXPECT_TRUE(ev[0].empty());
    const Status dup = batch.value()->step({a->get(), a->get()}, ev, res);
    EXPECT_FALSE(dup.is_ok());
    EXPECT_NE(dup.message().find("same session"), std::string::npos) << dup.message();
    const Status foreign = batch.value()->step({a->get(), b->get()}, ev, res);
    EXPECT_FALSE(foreign.is_ok());
    EXPECT_NE(foreign.message().find("another model"), std::string::npos) << foreign.message();
}

}  // namespace
}  // namespace voxrt
