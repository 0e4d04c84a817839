// One speech-to-speech turn through the public API: a WAV question in, the answer's text on stdout
// and its audio in a WAV file.
//
//   s2s_turn MODEL_DIR IN.wav OUT.wav [MAX_STEPS]
#include <voxrt/voxrt.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL_DIR IN.wav OUT.wav [MAX_STEPS]\n", argv[0]);
        return 2;
    }
    auto fail = [](const voxrt::Status& st) {
        std::fprintf(stderr, "error: %s\n", st.message().c_str());
        return 1;
    };
    voxrt::ModelOptions mo;
    mo.device = "auto";
    auto model = voxrt::Model::load(argv[1], mo);
    if (!model) return fail(model.status());
    auto in = voxrt::read_wav_file(argv[2]);
    if (!in) return fail(in.status());

    auto session = voxrt::Session::create(*model);
    if (!session) return fail(session.status());
    voxrt::Session& s = **session;
    const voxrt::TaskDefaults task = voxrt::task_defaults(voxrt::Task::kSpeechChat);
    if (auto st = s.add_turn(voxrt::Role::kSystem, task.system_prompt); !st) return fail(st);
    if (auto st = s.begin_user_turn(); !st) return fail(st);
    // Audio may arrive in pieces (here 100 ms at a time, as from a microphone).
    const std::vector<float>& pcm = in->samples;
    const size_t chunk = static_cast<size_t>(in->sample_rate) / 10;
    for (size_t i = 0; i < pcm.size(); i += chunk) {
        const size_t n = std::min(chunk, pcm.size() - i);
        if (auto st = s.append_audio(pcm.data() + i, n, in->sample_rate); !st) return fail(st);
    }
    if (auto st = s.end_user_turn(); !st) return fail(st);

    voxrt::ResponseOptions ro = voxrt::ResponseOptions::for_task(voxrt::Task::kSpeechChat);
    if (argc > 4) ro.max_steps = std::atoi(argv[4]);
    if (auto st = s.start_response(ro); !st) return fail(st);
    std::vector<float> answer;
    std::vector<voxrt::Event> events;
    for (bool done = false; !done;) {
        events.clear();
        auto r = s.step(events);  // one text token or one audio frame
        if (!r) return fail(r.status());
        done = *r;
        for (const voxrt::Event& e : events) {
            if (e.kind == voxrt::EventKind::kTextDelta) std::fputs(e.text.c_str(), stdout);
            if (e.kind == voxrt::EventKind::kAudio)
                answer.insert(answer.end(), e.pcm.begin(), e.pcm.end());
            if (e.kind == voxrt::EventKind::kEndOfTurn)
                std::fprintf(stderr, "\n[%s after %d steps, %.0f ms]\n",
                             voxrt::end_reason_name(e.reason), e.stats.steps, e.stats.total_ms);
        }
    }
    std::fflush(stdout);
    const int rate = (*model)->info().output_sample_rate;
    if (auto st = voxrt::write_wav_file(argv[3], answer.data(), answer.size(), rate); !st)
        return fail(st);
    std::fprintf(stderr, "wrote %s (%.2f s)\n", argv[3], answer.size() / double(rate));
    return 0;
}
