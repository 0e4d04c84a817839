// voxrt bench: the speech-to-speech turn of bench/protocol.md, timed end to end.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cli_common.h"

namespace voxrt::cli {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct RunResult {
    double total_ms, prefill_ms, mel_ms, encoder_ms, decode_ms, detok_ms, detok_busy_ms,
        first_frame_ms, first_pcm_ms, text_step_ms, audio_frame_ms;  // the last two: per step
    int steps, text_tokens, audio_frames;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

void add_bench(CLI::App* app, BenchArgs& b) {
    app->add_option("-i,--input", b.inputs, "input WAV files")->required()->check(non_empty_path());
    app->add_option("-n,--steps", b.steps, "generation steps per turn")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 16));
    app->add_option("--runs", b.runs, "timed runs per input")
        ->capture_default_str()
        ->check(CLI::Range(1, 1000));
    app->add_option("--warmup", b.warmup, "untimed runs first")
        ->capture_default_str()
        ->check(CLI::Range(0, 100));
    app->add_option("--json", b.json_out, "write results as JSON lines here")
        ->check(non_empty_path());
    app->add_flag("--detok-sync", b.detok_sync,
                  "detokenize inside the generation loop (not on its own thread)");
    app->add_option("--detok-chunk", b.detok_chunk,
                    "audio frames per detokenizer call after the first")
        ->capture_default_str()
        ->check(CLI::Range(1, 32));
    app->add_option("--sessions", b.sessions,
                    "conversations stepped together (continuous batching): each count in turn, "
                    "e.g. --sessions 1,8,64")
        ->delimiter(',')
        ->check(CLI::Range(1, 4096));
    app->add_option("--max-rows", b.max_rows, "with --sessions: rows per batched call")
        ->capture_default_str()
        ->check(CLI::Range(1, 4096));
    app->add_flag("--no-audio", b.no_audio, "with --sessions: no detokenizer (decode only)");
    app->add_flag("--profile", b.profile,
                  "with --sessions: where a step's time goes (synchronizes between the phases)");
    app->add_option("--prefill-rows", b.prefill_rows,
                    "with --sessions: new turns' prefill chunks joined into one backbone call of "
                    "at most this many positions a step; 0: each alone; -1: the default")
        ->capture_default_str();
    app->add_flag("--warm-graphs", b.warm_graphs,
                  "with --sessions: make the batch's frame graphs for every row count first "
                  "(Batch::warm_up), as voxrt serve does before it listens");
    app->add_flag("--no-batch-graphs", b.no_batch_graphs,
                  "with --sessions: run the batched audio frame op by op, not as a CUDA graph");
}

namespace {

// The protocol's question: the speech-chat system prompt, then the input as the user's turn.
Status ask(Session& s, const TaskDefaults& task, const AudioClip& wav) {
    VOXRT_RETURN_IF_ERROR(s.add_turn(Role::kSystem, task.system_prompt));
    VOXRT_RETURN_IF_ERROR(s.begin_user_turn());
    VOXRT_RETURN_IF_ERROR(s.append_audio(wav.samples.data(), wav.samples.size(), wav.sample_rate));
    return s.end_user_turn();
}

// The protocol's answer: `steps` steps, end tokens suppressed (random weights: the same amount of
// work for every engine and run).
ResponseOptions workload(const BenchArgs& a, uint64_t seed) {
    ResponseOptions g = ResponseOptions::for_task(Task::kSpeechChat);
    g.max_steps = a.steps;
    g.detok_async = !a.detok_sync;
    g.detok_chunk_frames = a.detok_chunk;
    g.seed = seed;
    g.suppress_end = true;
    return g;
}

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
    return v[i];
}

// N conversations on the first input, answered together through voxrt::Batch (bench/protocol.md's
// workload per conversation: the input as a spoken question, `steps` steps with end tokens
// suppressed). The N prefills run first (in the batch's first steps, joined on a GPU); then every
// engine step advances all N by one step. Reported per N: the engine step's time (p50, p99), each
// conversation's audio frames per second (real time needs 12.5 with its text steps), the
// aggregate, and the weights' GB/s. Then one more conversation joins the running batch: its time
// to first audio and the longest step the others waited meanwhile.
Status run_sessions_bench(const CommonArgs& c, const BenchArgs& a, const std::shared_ptr<Model>& m,
                          std::ofstream& json) {
    const ModelInfo& info = m->info();
    VOXRT_ASSIGN_OR_RETURN(AudioClip wav, read_wav_file(a.inputs.front()));
    const TaskDefaults task = task_defaults(Task::kSpeechChat);
    VOXRT_ASSIGN_OR_RETURN(std::unique_ptr<Batch> batch, Batch::create(m, a.max_rows));
    batch->set_device_graphs(!a.no_batch_graphs);
    if (a.prefill_rows >= 0) batch->set_prefill_rows(a.prefill_rows);
    if (a.warm_graphs) {
        const auto tw = Clock::now();
        VOXRT_RETURN_IF_ERROR(batch->warm_up(a.max_rows));
        std::printf("batch warm-up (frame graphs for 1..%d rows): %.0f ms\n", a.max_rows,
                    ms_since(tw));
    }
    // As the server makes them: driven by this one thread, so they share one device lane.
    SessionOptions so = session_options(c);
    so.share_device_context = true;
    auto make = [&](int i) -> Expected<std::unique_ptr<Session>> {
        VOXRT_ASSIGN_OR_RETURN(std::unique_ptr<Session> s, Session::create(m, so));
        VOXRT_RETURN_IF_ERROR(ask(*s, task, wav));
        ResponseOptions g = workload(a, static_cast<uint64_t>(i));
        g.audio = !a.no_audio;
        VOXRT_RETURN_IF_ERROR(s->start_response(g));
        return s;
    };
    std::printf(
        "| sessions | engine steps | step ms p50 | step ms p99 | step ms p50 without the newcomer "
        "| frames/s per session | real time "
        "| aggregate frames/s | aggregate text tok/s | weights GB/s | prefill of all ms | newcomer "
        "first audio ms | longest step meanwhile ms | device MB per session |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const int n : a.sessions) {
        const size_t free_before = m->free_memory_bytes();
        std::vector<std::unique_ptr<Session>> owned;
        std::vector<Session*> live;
        for (int i = 0; i < n; ++i) {
            VOXRT_ASSIGN_OR_RETURN(std::unique_ptr<Session> s, make(i));
            live.push_back(s.get());
            owned.push_back(std::move(s));
        }
        std::vector<std::vector<Event>> ev;
        std::vector<BatchResult> res;
        auto count = [&](size_t k, int* text, int* frames) {
            for (const Event& e : ev[k]) {
                if (e.kind == EventKind::kTextDelta && e.token >= 0) ++*text;
                if (e.kind == EventKind::kAudioFrame) ++*frames;
            }
        };
        // The first steps prefill every conversation (a chunk of at most 256 positions each per
        // step, joined into one backbone call per step on a GPU; the step that ends a prefill
        // also makes its first step).
        const auto tp = Clock::now();
        for (bool again = true; again;) {
            VOXRT_RETURN_IF_ERROR(batch->step(live, ev, res));
            again = false;
            for (size_t k = 0; k < live.size(); ++k) {
                if (!res[k].status.is_ok())
                    return make_error(StatusCode::kInternal, "sessions bench: %s",
                                      res[k].status.message().c_str());
                again = again || live[k]->prefilling();
            }
        }
        const double prefill_ms = ms_since(tp);
        int text = 0, frames = 0;
        std::vector<double> step_ms, own_ms;  // own_ms: the steps the newcomer was not part of
        int drain_waits = 0;
        double longest_drain_wait = 0;
        struct StepNote {
            double ms;
            int index, rows, frames;
            bool newcomer;
            Batch::Phases ph;  // with --profile: this step's phases
        };
        std::vector<StepNote> notes;  // every step, for the longest ones in the report
        size_t bytes = 0;
        std::unique_ptr<Session> newcomer;
        double join_t0 = -1, newcomer_first_audio = -1, longest_meanwhile = 0;
        const int join_at = std::max(1, a.steps / 4);
        batch->set_profile(a.profile);
        batch->reset_phases();
        const auto t0 = Clock::now();
        for (int t = 1;; ++t) {
            std::vector<Session*> step_list;
            for (size_t k = 0; k < live.size(); ++k)
                if (!res[k].done) step_list.push_back(live[k]);
            if (t == join_at && !newcomer) {
                VOXRT_ASSIGN_OR_RETURN(newcomer, make(n));
                join_t0 = ms_since(t0);
            }
            const bool with_newcomer = newcomer && newcomer->responding();
            if (with_newcomer) step_list.push_back(newcomer.get());
            if (step_list.empty()) break;
            for (std::vector<Event>& e : ev) e.clear();  // step() appends
            const auto ts = Clock::now();
            const Batch::Phases before = batch->phases();
            VOXRT_RETURN_IF_ERROR(batch->step(step_list, ev, res));
            const double ms = ms_since(ts);
            for (size_t k = 0; k < res.size(); ++k)
                if (!res[k].status.is_ok())
                    return make_error(StatusCode::kInternal, "sessions bench: %s",
                                      res[k].status.message().c_str());
            const Batch::Shape sh = batch->last_shape();
            Batch::Phases d = batch->phases();
            d.prepare -= before.prepare;
            d.prefill -= before.prefill;
            d.backbone -= before.backbone;
            d.frames -= before.frames;
            d.complete -= before.complete;
            if (!sh.drain_wait) {
                notes.push_back(StepNote{ms, t, sh.backbone, sh.frames, with_newcomer, d});
                bytes += sh.frames > 0 ? std::max(info.text_step_bytes, info.audio_frame_bytes)
                                       : info.text_step_bytes;
            }
            if (with_newcomer) {
                const size_t k = step_list.size() - 1;
                for (const Event& e : ev[k])
                    if (e.kind == EventKind::kAudioFrame && newcomer_first_audio < 0 && a.no_audio)
                        newcomer_first_audio = ms_since(t0) - join_t0;
                for (const Event& e : ev[k])
                    if (e.kind == EventKind::kAudio && newcomer_first_audio < 0)
                        newcomer_first_audio = ms_since(t0) - join_t0;
                if (newcomer_first_audio < 0) longest_meanwhile = std::max(longest_meanwhile, ms);
                ev.pop_back();
                res.pop_back();
                step_list.pop_back();
            }
            // res/ev now line up with step_list (the original conversations still running)
            std::vector<BatchResult> full(live.size());
            for (size_t k = 0, j = 0; k < live.size(); ++k) {
                if (j < step_list.size() && step_list[j] == live[k]) {
                    count(j, &text, &frames);
                    full[k] = res[j];
                    ++j;
                } else {
                    full[k].done = true;
                }
            }
            res = std::move(full);
            // A call in which nothing ran but a wait for a finishing detokenizer (the last
            // conversation's last chunk) is not an engine step: no answer waited for it.
            if (sh.drain_wait) {
                ++drain_waits;
                longest_drain_wait = std::max(longest_drain_wait, ms);
                continue;
            }
            step_ms.push_back(ms);
            if (!with_newcomer) own_ms.push_back(ms);
        }
        const double wall_s = ms_since(t0) / 1000.0;
        // What the n conversations hold at the end of their answers (the newcomer's included,
        // still alive): device memory gone since before they were made, per conversation.
        const size_t free_after = m->free_memory_bytes();
        const double mb_per_session =
            free_before > free_after && free_after > 0
                ? static_cast<double>(free_before - free_after) / 1e6 / (n + (newcomer ? 1 : 0))
                : 0.0;
        const double per_session = frames / wall_s / n;
        const double gbs = bytes / wall_s / 1e9;
        const bool real_time = per_session >= 12.5 && percentile(step_ms, 0.99) <= 40.0;
        std::printf(
            "| %d | %zu | %.2f | %.2f | %.2f | %.1f | %s | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f "
            "| "
            "%.1f |\n",
            n, step_ms.size(), percentile(step_ms, 0.5), percentile(step_ms, 0.99),
            percentile(own_ms, 0.5), per_session, real_time ? "yes" : "no", frames / wall_s,
            text / wall_s, gbs, prefill_ms, newcomer_first_audio, longest_meanwhile,
            mb_per_session);
        if (drain_waits > 0)
            std::printf(
                "|   | %d call(s) only waited for a finishing detokenizer (longest %.1f ms), not "
                "counted as engine steps |\n",
                drain_waits, longest_drain_wait);
        const Batch::Phases ph = batch->phases();
        const double per = ph.steps > 0 ? 1.0 / ph.steps : 0;
        char phases[512] = "";
        if (a.profile) {
            std::printf(
                "|   | per step (ms): prepare %.2f, prefill %.2f, gather %.2f, backbone %.2f, "
                "text %.2f, depthformer %.2f, scatter %.2f, complete %.2f |\n",
                ph.prepare * per, ph.prefill * per, ph.gather * per, ph.backbone * per,
                ph.text * per, ph.frames * per, ph.scatter * per, ph.complete * per);
            std::snprintf(phases, sizeof phases,
                          ",\"phases_ms_per_step\":{\"prepare\":%.3f,\"prefill\":%.3f,"
                          "\"gather\":%.3f,\"backbone\":%.3f,\"text\":%.3f,"
                          "\"depthformer\":%.3f,\"scatter\":%.3f,\"complete\":%.3f}",
                          ph.prepare * per, ph.prefill * per, ph.gather * per, ph.backbone * per,
                          ph.text * per, ph.frames * per, ph.scatter * per, ph.complete * per);
        }
        // The longest steps: which step, its rows and frame rows, and whether the newcomer was in
        // it.
        std::sort(notes.begin(), notes.end(),
                  [](const StepNote& x, const StepNote& y) { return x.ms > y.ms; });
        notes.resize(std::min<size_t>(notes.size(), 4));
        std::string longest;
        for (const StepNote& s : notes) {
            char one[128];
            std::snprintf(one, sizeof one,
                          "%s{\"step\":%d,\"ms\":%.2f,\"rows\":%d,\"frame_rows\":%d,"
                          "\"newcomer\":%s}",
                          longest.empty() ? "" : ",", s.index, s.ms, s.rows, s.frames,
                          s.newcomer ? "true" : "false");
            longest += one;
        }
        if (a.profile) {
            std::printf("|   | longest steps:");
            for (const StepNote& s : notes)
                std::printf(
                    " #%d %.1f ms (%d rows, %d frames%s; prepare %.1f, prefill %.1f, backbone "
                    "%.1f, depthformer %.1f, complete %.1f)",
                    s.index, s.ms, s.rows, s.frames, s.newcomer ? ", newcomer" : "", s.ph.prepare,
                    s.ph.prefill, s.ph.backbone, s.ph.frames, s.ph.complete);
            std::printf(" |\n");
        }
        std::fflush(stdout);
        if (json.is_open()) {
            char line[2048];
            std::snprintf(
                line, sizeof line,
                "{\"engine\":\"voxrt\",\"bench\":\"sessions\",\"device\":\"%s\","
                "\"precision\":\"%s\",\"sessions\":%d,\"max_rows\":%d,\"audio\":%s,"
                "\"engine_steps\":%zu,\"step_ms_p50\":%.3f,\"step_ms_p99\":%.3f,"
                "\"step_ms_p50_without_newcomer\":%.3f,"
                "\"frames_per_s_per_session\":%.2f,\"real_time\":%s,\"frames_per_s\":%.1f,"
                "\"text_tokens_per_s\":%.1f,\"weights_gb_s\":%.1f,\"prefill_all_ms\":%.1f,"
                "\"newcomer_first_audio_ms\":%.2f,\"longest_step_meanwhile_ms\":%.2f,"
                "\"device_mb_per_session\":%.1f,\"drain_waits\":%d,"
                "\"longest_drain_wait_ms\":%.2f,\"longest_steps\":[%s]%s}\n",
                info.device.c_str(), c.precision.c_str(), n, a.max_rows,
                a.no_audio ? "false" : "true", step_ms.size(), percentile(step_ms, 0.5),
                percentile(step_ms, 0.99), percentile(own_ms, 0.5), per_session,
                real_time ? "true" : "false", frames / wall_s, text / wall_s, gbs, prefill_ms,
                newcomer_first_audio, longest_meanwhile, mb_per_session, drain_waits,
                longest_drain_wait, longest.c_str(), phases);
            json << line;
        }
    }
    return Status::ok();
}

}  // namespace

Status run_bench(const CommonArgs& c, const BenchArgs& a) {
    const ModelOptions o = model_options(c);
    const auto tl = Clock::now();
    VOXRT_ASSIGN_OR_RETURN(std::shared_ptr<Model> m, Model::load(c.model_dir, o));
    const double load_ms = ms_since(tl);
    const ModelInfo& info = m->info();
    const std::string& dev = info.device;
    std::fprintf(stderr, "voxrt bench: %s on %s, %s, load %.0f ms\n", c.model_dir.c_str(),
                 dev.c_str(), c.precision.c_str(), load_ms);
    std::ofstream json;
    if (!a.json_out.empty()) {
        json.open(a.json_out);
        if (!json)
            return make_error(StatusCode::kInvalidArgument, "%s: cannot write", a.json_out.c_str());
    }
    if (!a.sessions.empty()) return run_sessions_bench(c, a, m, json);
    // Medians over the runs. "decode GB/s": the weight bytes every text step and audio frame of the
    // turn must read, over the whole decode's wall time. "text step ms" and "audio frame ms": the
    // wall time of one text step and one audio-frame step (TurnStats::text_step_ms / text_tokens,
    // audio_step_ms / audio_frames).
    std::printf(
        "| input | audio s | total ms (min-max) | prefill ms | mel ms | encoder ms | first frame "
        "ms | first sample ms | steps/s | text step ms | audio frame ms | detok ms | decode GB/s "
        "|\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    const TaskDefaults task = task_defaults(Task::kSpeechChat);
    for (const std::string& path : a.inputs) {
        VOXRT_ASSIGN_OR_RETURN(AudioClip wav, read_wav_file(path));
        std::vector<RunResult> runs;
        for (int r = 0; r < a.warmup + a.runs; ++r) {
            VOXRT_ASSIGN_OR_RETURN(std::unique_ptr<Session> s,
                                   Session::create(m, session_options(c)));
            const auto t0 = Clock::now();
            // From decoded samples in memory to the last output sample (bench/protocol.md).
            VOXRT_RETURN_IF_ERROR(ask(*s, task, wav));
            const ResponseOptions g = workload(a, static_cast<uint64_t>(r));
            TurnStats st;
            double first_pcm_abs = -1;
            const double before_gen = ms_since(t0);
            VOXRT_RETURN_IF_ERROR(s->generate(g, [&](const Event& e) {
                if (e.kind == EventKind::kAudio && first_pcm_abs < 0) first_pcm_abs = ms_since(t0);
                if (e.kind == EventKind::kEndOfTurn) st = e.stats;
                return true;
            }));
            const double total = ms_since(t0);
            if (r < a.warmup) continue;
            RunResult rr{total,
                         st.prefill_ms,
                         st.mel_ms,
                         st.encoder_ms,
                         st.decode_ms,
                         st.detok_ms,
                         st.detok_busy_ms,
                         before_gen + st.first_frame_ms,
                         first_pcm_abs,
                         st.text_tokens ? st.text_step_ms / st.text_tokens : 0.0,
                         st.audio_frames ? st.audio_step_ms / st.audio_frames : 0.0,
                         st.steps,
                         st.text_tokens,
                         st.audio_frames};
            runs.push_back(rr);
        }
        auto col = [&](double RunResult::*f) {
            std::vector<double> v;
            for (const auto& r : runs) v.push_back(r.*f);
            return v;
        };
        std::vector<double> tot = col(&RunResult::total_ms);
        const double dec = median(col(&RunResult::decode_ms));
        const RunResult& r0 = runs.front();
        const double sps = dec > 0 ? 1000.0 * r0.steps / dec : 0;
        // Achieved weight bandwidth during decode: bytes the steps must read / decode time.
        const double bytes = static_cast<double>(r0.text_tokens) * info.text_step_bytes +
                             static_cast<double>(r0.audio_frames) * info.audio_frame_bytes;
        const double gbs = dec > 0 ? bytes / (dec * 1e-3) / 1e9 : 0;
        std::printf(
            "| %s | %.1f | %.1f (%.1f-%.1f) | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.3f | "
            "%.3f | %.1f | %.1f |\n",
            path.c_str(), wav.seconds(), median(tot), *std::min_element(tot.begin(), tot.end()),
            *std::max_element(tot.begin(), tot.end()), median(col(&RunResult::prefill_ms)),
            median(col(&RunResult::mel_ms)), median(col(&RunResult::encoder_ms)),
            median(col(&RunResult::first_frame_ms)), median(col(&RunResult::first_pcm_ms)), sps,
            median(col(&RunResult::text_step_ms)), median(col(&RunResult::audio_frame_ms)),
            median(col(&RunResult::detok_ms)), gbs);
        if (json) {
            char line[2048];
            std::snprintf(
                line, sizeof line,
                "{\"engine\":\"voxrt\",\"device\":\"%s\",\"precision\":\"%s\",\"input\":\"%s\","
                "\"audio_s\":%.3f,"
                "\"runs\":%zu,\"total_ms_median\":%.3f,\"total_ms_min\":%.3f,\"total_ms_max\":%.3f,"
                "\"prefill_ms\":%.3f,\"mel_ms\":%.3f,\"encoder_ms\":%.3f,\"decode_ms\":%.3f,"
                "\"steps\":%d,"
                "\"text_tokens\":%d,\"audio_frames\":%d,\"steps_per_s\":%.2f,\"first_frame_ms\":%."
                "3f,"
                "\"first_sample_ms\":%.3f,\"detok_ms\":%.3f,\"detok_busy_ms\":%.3f,\"detok_async\":"
                "%s,\"detok_device\":\"%s\",\"mel_device\":\"%s\","
                "\"decode_gb_s\":%.1f,\"text_step_ms\":%.4f,\"audio_frame_ms\":%.4f,"
                "\"text_step_bytes\":%zu,\"audio_frame_bytes\":%zu}\n",
                dev.c_str(), c.precision.c_str(), path.c_str(), wav.seconds(), runs.size(),
                median(tot), *std::min_element(tot.begin(), tot.end()),
                *std::max_element(tot.begin(), tot.end()), median(col(&RunResult::prefill_ms)),
                median(col(&RunResult::mel_ms)), median(col(&RunResult::encoder_ms)), dec, r0.steps,
                r0.text_tokens, r0.audio_frames, sps, median(col(&RunResult::first_frame_ms)),
                median(col(&RunResult::first_pcm_ms)), median(col(&RunResult::detok_ms)),
                median(col(&RunResult::detok_busy_ms)), a.detok_sync ? "false" : "true",
                info.detokenizer_device.c_str(), info.on_gpu && !c.host_mel ? "cuda" : "cpu", gbs,
                median(col(&RunResult::text_step_ms)), median(col(&RunResult::audio_frame_ms)),
                info.text_step_bytes, info.audio_frame_bytes);
            // Every run's turn, in order: with --warmup 0 the first input's first entry is the
            // first turn of the process.
            std::string l(line);
            l.pop_back();  // "}\n"
            l.pop_back();
            l += ",\"total_ms_runs\":[";
            for (size_t i = 0; i < tot.size(); ++i) {
                char v[32];
                std::snprintf(v, sizeof v, "%s%.3f", i ? "," : "", tot[i]);
                l += v;
            }
            json << l << "]}\n";
        }
    }
    return Status::ok();
}

}  // namespace voxrt::cli
