// The public Session (include/voxrt) end to end on the tiny checkpoint: step-driven responses,
// cancel, truncation to what the listener heard (KV and short-conv state), many sessions on one
// model from many threads. Device-parameterised: "cuda" cases skip without a GPU.
#include <gtest/gtest.h>

#include <voxrt/voxrt.h>

#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "util/api_util.h"

namespace voxrt {
namespace {

bool skip_device(const std::string& device) {
    return device == "cuda" && !gpu_available();
}

TEST(ApiTasks, DefaultsAreTheReferencePrompts) {
    EXPECT_EQ(task_defaults(Task::kSpeechChat).system_prompt,
              "Respond with interleaved text and audio.");
    EXPECT_EQ(task_defaults(Task::kSpeechChat).mode, Mode::kInterleaved);
    EXPECT_EQ(task_defaults(Task::kAsr).system_prompt, "Perform ASR.");
    EXPECT_EQ(task_defaults(Task::kTts, Voice::kUkMale).system_prompt,
              "Perform TTS. Use the UK male voice.");
    EXPECT_EQ(task_defaults(Task::kTts, Voice::kUsFemale).system_prompt,
              "Perform TTS. Use the US female voice.");
    EXPECT_EQ(task_defaults(Task::kTextChat).system_prompt, "");
    EXPECT_FLOAT_EQ(task_defaults(Task::kTts).sampling.audio_temperature, 0.8f);
    EXPECT_EQ(task_defaults(Task::kTts).sampling.audio_top_k, 64);
    for (Voice v : {Voice::kUsMale, Voice::kUsFemale, Voice::kUkMale, Voice::kUkFemale})
        EXPECT_EQ(parse_voice(voice_name(v)), v);
    EXPECT_FALSE(parse_voice("robot").has_value());
    EXPECT_EQ(parse_task("asr"), Task::kAsr);
}

// ModelOptions::warm_up: load() runs a throwaway turn (timed in ModelInfo::warm_up_ms) and the
// model's sessions are unaffected by it: the same conversation gives the same answer, PCM included,
// as on a model loaded without it.
TEST(ApiModel, WarmUpLeavesSessionsUnchanged) {
    for (const char* prec : {"fp32", "bf16"}) {
        ModelOptions o;
        o.device = "cpu";
        o.precision = prec;
        o.max_context = 1024;
        o.threads = 2;
        o.warm_up = false;
        auto cold = Model::load(test::data_dir() + "/tiny/model", o);
        ASSERT_TRUE(cold.is_ok()) << cold.status().message();
        EXPECT_EQ((*cold)->info().warm_up_ms, 0.0);
        o.warm_up = true;
        auto warm = Model::load(test::data_dir() + "/tiny/model", o);
        ASSERT_TRUE(warm.is_ok()) << warm.status().message();
        EXPECT_GT((*warm)->info().warm_up_ms, 0.0);
        const AudioClip q = test::read_clip("question.wav");
        ResponseOptions ro = ResponseOptions::for_task(Task::kSpeechChat);
        ro.max_steps = 24;
        ro.suppress_end = true;
        std::vector<test::Response> r;
        for (const auto& m : {*cold, *warm}) {
            auto s = Session::create(m);
            ASSERT_TRUE(s.is_ok()) << s.status().message();
            ASSERT_TRUE(test::add_audio_prompt(**s, Task::kSpeechChat, q).is_ok());
            r.push_back(test::respond(**s, ro));
            ASSERT_TRUE(r.back().status.is_ok()) << r.back().status.message();
        }
        EXPECT_EQ(r[0].text, r[1].text) << prec;
        EXPECT_EQ(r[0].pcm, r[1].pcm) << prec;
        EXPECT_FALSE(r[1].pcm.empty());
    }
}

TEST(ApiSession, StepByStepEqualsGenerate) {
    auto m = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m);
    const AudioClip q = test::read_clip("question.wav");
    ResponseOptions o = ResponseOptions::for_task(Task::kSpeechChat);
    o.max_steps = 40;
    o.seed = 3;

    auto a = Session::create(m);
    ASSERT_TRUE(a.is_ok()) << a.status().message();
    ASSERT_TRUE(test::add_audio_prompt(**a, Task::kSpeechChat, q).is_ok());
    const test::Response whole = test::respond(**a, o);
    ASSERT_TRUE(whole.status.is_ok()) << whole.status.message();
    EXPECT_EQ(whole.reason, EndReason::kMaxSteps);
    EXPECT_EQ(whole.steps, 40);
    EXPECT_FALSE(whole.pcm.empty());

    auto b = Session::create(m);
    ASSERT_TRUE(b.is_ok());
    ASSERT_TRUE(test::add_audio_prompt(**b, Task::kSpeechChat, q).is_ok());
    ASSERT_TRUE((*b)->start_response(o).is_ok());
    EXPECT_TRUE((*b)->responding());
    std::vector<Event> ev;
    std::vector<float> pcm;
    std::string text;
    int calls = 0, ends = 0, generated = 0;
    for (bool done = false; !done; ++calls) {
        ev.clear();
        auto r = (*b)->step(ev);
        ASSERT_TRUE(r.is_ok()) << r.status().message();
        done = *r;
        int produced = 0;
        for (const Event& e : ev) {
            if (e.kind == EventKind::kAudio) pcm.insert(pcm.end(), e.pcm.begin(), e.pcm.end());
            if (e.kind == EventKind::kTextDelta) text += e.text;
            if (e.kind == EventKind::kEndOfTurn) ++ends;
            produced += e.kind == EventKind::kAudioFrame ||
                        (e.kind == EventKind::kTextDelta && e.token >= 0);
        }
        EXPECT_LE(produced, 1) << "one text token or audio frame per step";
        generated += produced;
    }
    EXPECT_EQ(calls, 40);
    EXPECT_EQ(ends, 1);
    EXPECT_EQ(generated, 40);
    EXPECT_FALSE((*b)->responding());
    EXPECT_EQ((*b)->last_response(), whole.items);
    EXPECT_EQ(text, whole.text);
    EXPECT_EQ(pcm, whole.pcm);
    ev.clear();
    EXPECT_FALSE((*b)->step(ev).is_ok()) << "no response is running";
}

TEST(ApiSession, CancelEndsTheResponseAtTheNextStep) {
    auto m = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m);
    auto s = Session::create(m);
    ASSERT_TRUE(s.is_ok());
    ASSERT_TRUE(
        test::add_audio_prompt(**s, Task::kSpeechChat, test::read_clip("question.wav")).is_ok());
    ResponseOptions o = ResponseOptions::for_task(Task::kSpeechChat);
    o.max_steps = 100;
    ASSERT_TRUE((*s)->start_response(o).is_ok());
    std::vector<Event> ev;
    for (int i = 0; i < 10; ++i) ASSERT_FALSE(*(*s)->step(ev));
    (*s)->cancel();
    ev.clear();
    auto r = (*s)->step(ev);
    ASSERT_TRUE(r.is_ok());
    EXPECT_TRUE(*r);
    ASSERT_FALSE(ev.empty());
    EXPECT_EQ(ev.back().kind, EventKind::kEndOfTurn);
    EXPECT_EQ(ev.back().reason, EndReason::kCancelled);
    EXPECT_EQ(ev.back().stats.steps, 10);
    EXPECT_EQ((*s)->last_response().size(), 10u);
    // The conversation goes on.
    ASSERT_TRUE((*s)->add_turn(Role::kUser, "And then?").is_ok());
    o.max_steps = 5;
    const test::Response next = test::respond(**s, o);
    EXPECT_TRUE(next.status.is_ok()) << next.status.message();
    EXPECT_EQ(next.items.size(), 5u);
}

TEST(ApiSession, BadInputNamesTheField) {
    auto m = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m);
    SessionOptions so;
    so.max_text_bytes = 64;
    auto s = Session::create(m, so);
    ASSERT_TRUE(s.is_ok());
    Status st = (*s)->add_turn(Role::kUser, std::string(65, 'a'));
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(st.message().find("max_text_bytes"), std::string::npos) << st.message();
    ASSERT_TRUE((*s)->begin_user_turn().is_ok());
    st = (*s)->append_text(std::string(100, 'b'));
    EXPECT_NE(st.message().find("max_text_bytes"), std::string::npos) << st.message();
    const float x[4] = {0, 0, 0, 0};
    st = (*s)->append_audio(x, 4, 500);
    EXPECT_NE(st.message().find("sample rate"), std::string::npos) << st.message();
    ASSERT_TRUE((*s)->append_audio(x, 4, 16000).is_ok());
    st = (*s)->append_audio(x, 4, 8000);
    EXPECT_NE(st.message().find("differs"), std::string::npos) << st.message();
    st = (*s)->start_response(ResponseOptions{});
    EXPECT_NE(st.message().find("end_user_turn"), std::string::npos) << st.message();
    ResponseOptions bad;
    bad.detok_chunk_frames = 0;
    ASSERT_TRUE((*s)->end_user_turn().is_ok());
    st = (*s)->start_response(bad);
    EXPECT_NE(st.message().find("detok_chunk_frames"), std::string::npos) << st.message();
    ModelOptions mo;
    mo.device = "tpu";
    auto bad_model = Model::load(test::data_dir() + "/tiny/model", mo);
    ASSERT_FALSE(bad_model.is_ok());
    EXPECT_NE(bad_model.status().message().find("ModelOptions.device"), std::string::npos);
}

// ---- truncation ---------------------------------------------------------------------------------

struct TruncateCase {
    std::string device;
    bool by_audio;  // truncate_to_audio_ms, else truncate_to_text
    double amount;  // ms or characters
};

void PrintTo(const TruncateCase& c, std::ostream* os) {
    *os << c.device << (c.by_audio ? ", audio ms " : ", chars ") << c.amount;
}

class ApiTruncate : public ::testing::TestWithParam<TruncateCase> {};

// Truncate-then-continue equals a fresh session given only the kept history: the same next
// response, and text logits at every text step equal to fp32 summation-order noise.
TEST_P(ApiTruncate, ContinueEqualsFreshSessionWithTheKeptHistory) {
    const TruncateCase c = GetParam();
    if (skip_device(c.device)) GTEST_SKIP() << "no CUDA device";
    auto m = test::load_tiny(c.device, "fp32");
    ASSERT_TRUE(m);
    const AudioClip q = test::read_clip("question.wav");
    ResponseOptions o = ResponseOptions::for_task(Task::kSpeechChat);
    o.max_steps = 40;
    o.seed = 5;
    o.audio = false;
    o.suppress_end = true;  // all 40 steps (random weights)

    auto a = Session::create(m);
    ASSERT_TRUE(a.is_ok());
    ASSERT_TRUE(test::add_audio_prompt(**a, Task::kSpeechChat, q).is_ok());
    const test::Response first = test::respond(**a, o);
    ASSERT_TRUE(first.status.is_ok()) << first.status.message();
    ASSERT_EQ(first.items.size(), 40u);
    const int before = (*a)->positions();
    const Status st = c.by_audio ? (*a)->truncate_to_audio_ms(c.amount)
                                 : (*a)->truncate_to_text(static_cast<size_t>(c.amount));
    ASSERT_TRUE(st.is_ok()) << st.message();
    const std::vector<ResponseItem> kept = (*a)->last_response();
    ASSERT_LT(kept.size(), first.items.size()) << "the cut must drop something";
    ASSERT_TRUE(std::equal(kept.begin(), kept.end(), first.items.begin()));
    EXPECT_EQ((*a)->positions(), before - static_cast<int>(first.items.size() - kept.size()));
    std::printf("[%s, %s %g] kept %zu of %zu items\n", c.device.c_str(),
                c.by_audio ? "audio ms" : "chars", c.amount, kept.size(), first.items.size());

    ResponseOptions o2 = ResponseOptions::for_task(Task::kSpeechChat);
    o2.max_steps = 30;
    o2.audio = false;
    o2.seed = 9;
    ASSERT_TRUE((*a)->add_turn(Role::kUser, "Go on, but shorter.").is_ok());
    const test::Response cont = test::respond(**a, o2, /*capture_logits=*/true);
    ASSERT_TRUE(cont.status.is_ok()) << cont.status.message();

    auto b = Session::create(m);
    ASSERT_TRUE(b.is_ok());
    ASSERT_TRUE(test::add_audio_prompt(**b, Task::kSpeechChat, q).is_ok());
    ASSERT_TRUE((*b)->add_assistant_items(kept).is_ok());
    ASSERT_TRUE((*b)->add_turn(Role::kUser, "Go on, but shorter.").is_ok());
    const test::Response fresh = test::respond(**b, o2, /*capture_logits=*/true);
    ASSERT_TRUE(fresh.status.is_ok()) << fresh.status.message();

    EXPECT_EQ(cont.items, fresh.items);
    EXPECT_EQ((*a)->positions(), (*b)->positions());
    ASSERT_EQ(cont.logits.size(), fresh.logits.size());
    ASSERT_FALSE(cont.logits.empty());
    // fp32, same kernels; the truncated session ran the kept positions one step at a time, the
    // fresh one prefilled them in one chunk: only summation grouping differs (~1e-6 relative).
    for (size_t i = 0; i < cont.logits.size(); ++i)
        EXPECT_LT(test::rel_l2(cont.logits[i], fresh.logits[i]), 1e-5) << "text step " << i;
}

TEST_P(ApiTruncate, TheCutMattersWithoutIt) {
    // Control for the test above: continuing the *whole* first response differs from the fresh
    // session with the kept history (so equal logits there are not a coincidence).
    const TruncateCase c = GetParam();
    if (skip_device(c.device)) GTEST_SKIP() << "no CUDA device";
    auto m = test::load_tiny(c.device, "fp32");
    ASSERT_TRUE(m);
    const AudioClip q = test::read_clip("question.wav");
    ResponseOptions o = ResponseOptions::for_task(Task::kSpeechChat);
    o.max_steps = 40;
    o.seed = 5;
    o.audio = false;
    o.suppress_end = true;
    auto a = Session::create(m);
    ASSERT_TRUE(a.is_ok());
    ASSERT_TRUE(test::add_audio_prompt(**a, Task::kSpeechChat, q).is_ok());
    const test::Response first = test::respond(**a, o);
    ASSERT_TRUE(first.status.is_ok());
    auto probe = Session::create(m);
    ASSERT_TRUE(probe.is_ok());
    ASSERT_TRUE(test::add_audio_prompt(**probe, Task::kSpeechChat, q).is_ok());
    ASSERT_TRUE(test::respond(**probe, o).status.is_ok());
    ASSERT_TRUE(c.by_audio ? (*probe)->truncate_to_audio_ms(c.amount).is_ok()
                           : (*probe)->truncate_to_text(static_cast<size_t>(c.amount)).is_ok());
    const std::vector<ResponseItem> kept = (*probe)->last_response();

    ResponseOptions o2 = ResponseOptions::for_task(Task::kSpeechChat);
    o2.max_steps = 30;
    o2.audio = false;
    o2.seed = 9;
    ASSERT_TRUE((*a)->add_turn(Role::kUser, "Go on, but shorter.").is_ok());
    const test::Response whole = test::respond(**a, o2, true);
    auto b = Session::create(m);
    ASSERT_TRUE(b.is_ok());
    ASSERT_TRUE(test::add_audio_prompt(**b, Task::kSpeechChat, q).is_ok());
    ASSERT_TRUE((*b)->add_assistant_items(kept).is_ok());
    ASSERT_TRUE((*b)->add_turn(Role::kUser, "Go on, but shorter.").is_ok());
    const test::Response fresh = test::respond(**b, o2, true);
    ASSERT_FALSE(whole.logits.empty());
    ASSERT_FALSE(fresh.logits.empty());
    EXPECT_GT(test::rel_l2(whole.logits[0], fresh.logits[0]), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(
    Cuts, ApiTruncate,
    ::testing::Values(TruncateCase{"cpu", true, 0}, TruncateCase{"cpu", true, 250},
                      TruncateCase{"cpu", true, 1500}, TruncateCase{"cpu", false, 3},
                      TruncateCase{"cpu", false, 12}, TruncateCase{"cuda", true, 250},
                      TruncateCase{"cuda", true, 1500}, TruncateCase{"cuda", false, 12}),
    [](const ::testing::TestParamInfo<TruncateCase>& i) {
        return i.param.device + (i.param.by_audio ? "_ms" : "_chars") +
               std::to_string(static_cast<int>(i.param.amount));
    });

TEST(ApiTruncate, OnlyRightAfterAResponse) {
    auto m = test::load_tiny("cpu", "fp32");
    ASSERT_TRUE(m);
    auto s = Session::create(m);
    ASSERT_TRUE(s.is_ok());
    EXPECT_FALSE((*s)->truncate_to_audio_ms(100).is_ok());
    ASSERT_TRUE((*s)->add_turn(Role::kUser, "hello").is_ok());
    ResponseOptions o = ResponseOptions::for_task(Task::kTextChat);
    o.max_steps = 8;
    ASSERT_TRUE(test::respond(**s, o).status.is_ok());
    EXPECT_TRUE((*s)->truncate_to_text(1000).is_ok());  // beyond the end: keeps everything
    EXPECT_EQ((*s)->last_response().size(), 8u);
    EXPECT_FALSE((*s)->truncate_to_audio_ms(-1).is_ok());
    ASSERT_TRUE((*s)->add_turn(Role::kUser, "again").is_ok());
    EXPECT_FALSE((*s)->truncate_to_text(0).is_ok());
}

// ---- many sessions, one model, many threads ---------------------------------------------------

struct Job {
    Task task;
    std::string input;  // WAV under tests/data/audio, or text
    uint64_t seed;
};

test::Response run_job(const std::shared_ptr<Model>& m, const Job& j) {
    test::Response r;
    auto s = Session::create(m);
    if (!s.is_ok()) {
        r.status = s.status();
        return r;
    }
    const TaskDefaults d = task_defaults(j.task, Voice::kUkMale);
    if (d.audio_in) {
        r.status = test::add_audio_prompt(**s, j.task, test::read_clip(j.input));
    } else {
        if (!d.system_prompt.empty()) r.status = (*s)->add_turn(Role::kSystem, d.system_prompt);
        if (r.status) r.status = (*s)->add_turn(Role::kUser, j.input);
    }
    if (!r.status) return r;
    ResponseOptions o = ResponseOptions::for_task(j.task);
    o.max_steps = 48;
    o.seed = j.seed;
    o.sampling.text_temperature = 0.7f;
    o.sampling.text_top_k = 20;
    return test::respond(**s, o);
}

class ApiThreads : public ::testing::TestWithParam<std::string> {};

// Six sessions on one model, driven from six threads at once (twice over), each produce exactly
// what they produce alone: the same items, text and PCM, bit for bit.
TEST_P(ApiThreads, EachSessionEqualsItselfAlone) {
    const std::string device = GetParam();
    if (skip_device(device)) GTEST_SKIP() << "no CUDA device";
    auto m = test::load_tiny(device, "bf16");
    ASSERT_TRUE(m);
    const std::vector<Job> jobs = {
        {Task::kSpeechChat, "question.wav", 1},
        {Task::kSpeechChat, "question.wav", 2},
        {Task::kAsr, "asr.wav", 3},
        {Task::kTts, "Hello there, how are you?", 4},
        {Task::kTextChat, "What is a chair?", 5},
        {Task::kSpeechChat, "st48k.wav", 6},
    };
    std::vector<test::Response> alone;
    for (const Job& j : jobs) {
        alone.push_back(run_job(m, j));
        ASSERT_TRUE(alone.back().status.is_ok()) << alone.back().status.message();
    }
    for (int round = 0; round < 2; ++round) {
        std::vector<test::Response> together(jobs.size());
        std::vector<std::thread> threads;
        for (size_t i = 0; i < jobs.size(); ++i)
            threads.emplace_back([&, i] { together[i] = run_job(m, jobs[i]); });
        for (std::thread& t : threads) t.join();
        for (size_t i = 0; i < jobs.size(); ++i) {
            ASSERT_TRUE(together[i].status.is_ok()) << together[i].status.message();
            EXPECT_EQ(together[i].items, alone[i].items) << "job " << i;
            EXPECT_EQ(together[i].text, alone[i].text) << "job " << i;
            EXPECT_EQ(together[i].pcm, alone[i].pcm) << "job " << i;
        }
    }
    // The jobs differ from one another (so equality above is not trivial).
    EXPECT_NE(alone[0].items, alone[1].items);
    EXPECT_FALSE(alone[0].pcm.empty());
}

INSTANTIATE_TEST_SUITE_P(Devices, ApiThreads, ::testing::Values("cpu", "cuda"));

}  // namespace
}  // namespace voxrt
