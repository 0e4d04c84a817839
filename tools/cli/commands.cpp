// The voxrt subcommands (except bench).
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli_common.h"

namespace voxrt::cli {

bool g_stdout_line_open = false;

namespace {

// Length of the well-formed UTF-8 sequence at s[i] (its code point in *cp), 0 if there is none
// (invalid lead or continuation bytes, overlong forms, surrogates, beyond U+10FFFF, truncated).
size_t utf8_sequence(std::string_view s, size_t i, uint32_t* cp) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const unsigned char c = b(0);
    size_t len = 0;
    uint32_t v = 0, min = 0;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (i + len > s.size()) return 0;
    for (size_t k = 1; k < len; ++k) {
        if ((b(k) & 0xC0) != 0x80) return 0;
        v = (v << 6) | (b(k) & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

}  // namespace

std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = 0;
        const size_t len = utf8_sequence(s, i, &cp);
        if (len == 0 || cp < 0x20 || cp == 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned char>(s[i]));
            out += buf;
            ++i;
        } else {
            out.append(s, i, len);
            i += len;
        }
    }
    return out;
}

CLI::Validator non_empty_path() {
    return CLI::Validator(
        [](std::string& v) { return v.empty() ? std::string("must not be empty") : std::string(); },
        "PATH", "non_empty");
}

CLI::Validator finite_range(double lo, double hi) {
    return CLI::Validator(
        [lo, hi](std::string& v) {
            char* end = nullptr;
            errno = 0;
            const double x = std::strtod(v.c_str(), &end);
            if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(x) || x < lo || x > hi)
                return "value " + v + " is not a number in [" + CLI::detail::to_string(lo) + ", " +
                       CLI::detail::to_string(hi) + "]";
            return std::string();
        },
        "FLOAT in [" + CLI::detail::to_string(lo) + " - " + CLI::detail::to_string(hi) + "]",
        "finite_range");
}

namespace {

// A decimal integer in [0, 2^64 - 1]: CLI11 alone would wrap "-1" and larger values silently.
CLI::Validator seed_value() {
    return CLI::Validator(
        [](std::string& v) {
            const bool digits =
                !v.empty() && v.find_first_not_of("0123456789") == std::string::npos;
            errno = 0;
            if (digits) (void)std::strtoull(v.c_str(), nullptr, 10);
            if (!digits || errno == ERANGE)
                return "value " + v + " is not an integer in [0, 18446744073709551615]";
            return std::string();
        },
        "UINT64", "seed");
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string fmt_ms(double ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f ms", ms);
    return buf;
}

}  // namespace

Expected<Loaded> load(const CommonArgs& c, bool need_detok) {
    ModelOptions o = model_options(c);
    o.load_detokenizer = need_detok;
    Loaded l;
    const auto t0 = Clock::now();
    VOXRT_ASSIGN_OR_RETURN(l.model, Model::load(c.model_dir, o));
    VOXRT_ASSIGN_OR_RETURN(l.session, Session::create(l.model, session_options(c)));
    l.load_ms = ms_since(t0);
    if (!c.quiet) {
        const ModelInfo& mi = l.model->info();
        std::fprintf(stderr, "voxrt: loaded %s on %s (%s) in %.0f ms", c.model_dir.c_str(),
                     mi.device.c_str(), mi.precision.c_str(), l.load_ms);
        if (mi.quantization_saved_bytes > 0)
            std::fprintf(stderr, ", quantized weights %.1f MB smaller",
                         mi.quantization_saved_bytes / 1e6);
        if (mi.warm_up_ms > 0)
            std::fprintf(stderr, " (of which warm-up turn %.0f ms)", mi.warm_up_ms);
        std::fprintf(stderr, "\n");
    }
    return l;
}

ResponseOptions response_options(const GenerationArgs& g, const TaskDefaults& d) {
    ResponseOptions o;
    o.mode = d.mode;
    o.audio = d.audio_out;
    o.max_steps = g.max_steps;
    o.seed = g.seed;
    o.sampling.text_temperature = g.temp;
    o.sampling.text_top_k = g.top_k;
    o.sampling.audio_temperature = g.audio_temp;
    o.sampling.audio_top_k = g.audio_top_k;
    o.detok_chunk_frames = g.detok_chunk;
    o.detok_async = !g.detok_sync;
    return o;
}

namespace {

void print_text_piece(const std::string& s) {
    if (s.empty()) return;
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
    g_stdout_line_open = s.back() != '\n';
}

// Collects text and PCM from events, prints text as it comes (whole characters: the library holds a
// character split across tokens until it is complete), shows progress on stderr.
struct Collector {
    std::vector<float> pcm;
    bool print_text = true;
    bool quiet = false;
    int max_steps = 0;
    TurnStats stats;
    // Progress would land inside the answer when both go to the terminal: none then.
    bool text_on_tty = isatty(fileno(stdout)) && isatty(fileno(stderr));
    bool operator()(const Event& e) {
        switch (e.kind) {
            case EventKind::kTextDelta:
                if (print_text) print_text_piece(e.text);
                break;
            case EventKind::kAudio:
                pcm.insert(pcm.end(), e.pcm.begin(), e.pcm.end());
                break;
            case EventKind::kEndOfTurn:
                stats = e.stats;
                break;
            default:
                break;
        }
        // Progress on stderr, unless the streamed text shares the terminal with it.
        if (!quiet && !text_on_tty && e.step >= 0 && (e.step + 1) % 50 == 0 &&
            (e.kind == EventKind::kAudioFrame || (e.kind == EventKind::kTextDelta && e.token >= 0)))
            std::fprintf(stderr, "voxrt: step %d/%d\n", e.step + 1, max_steps);
        return true;
    }
};

// The per-stage timing line, with only the stages this turn ran.
void print_timing(const CommonArgs& c, double load_ms, const TurnStats& s, double total_ms,
                  bool audio_in) {
    if (c.quiet) return;
    std::string line = "timing: load " + fmt_ms(load_ms);
    if (audio_in) {
        line += " | resample+mel " + fmt_ms(s.mel_ms);
        line += " | encoder " + fmt_ms(s.encoder_ms);
    }
    line += " | prefill " + fmt_ms(s.prefill_ms) + " (" + std::to_string(s.prefill_positions) +
            " positions)";
    if (s.steps > 0) {
        char rate[48];
        std::snprintf(rate, sizeof rate, " (%.1f steps/s)",
                      s.decode_ms > 0 ? 1000.0 * s.steps / s.decode_ms : 0.0);
        line += " | decode " + fmt_ms(s.decode_ms) + rate;
    }
    if (s.audio_frames > 0) line += " | detokenizer " + fmt_ms(s.detok_ms);
    if (s.first_frame_ms >= 0) line += " | first audio frame " + fmt_ms(s.first_frame_ms);
    line += " | total " + fmt_ms(total_ms);
    std::fprintf(stderr, "voxrt: %d steps (%d text, %d audio frames)\n%s\n", s.steps, s.text_tokens,
                 s.audio_frames, line.c_str());
}

}  // namespace

namespace {

// --help without the A/B group. (An empty group would hide the options too, but CLI11 then leaves
// their names out of error messages.)
class HideAbFormatter : public CLI::Formatter {
public:
    std::string make_group(std::string group, bool is_positional,
                           std::vector<const CLI::Option*> opts) const override {
        if (group == kAbGroup) return {};
        return CLI::Formatter::make_group(std::move(group), is_positional, std::move(opts));
    }
};

}  // namespace

void hide_ab_in_help(CLI::App* app) {
    app->formatter(std::make_shared<HideAbFormatter>());
}

ModelOptions model_options(const CommonArgs& c) {
    ModelOptions o;
    o.device = c.device;
    o.precision = c.precision;
    o.threads = c.threads;
    o.max_context = c.context;
    o.detokenizer_device = c.detok_device;
    o.warm_up = !c.no_warm_up;
    return o;
}

SessionOptions session_options(const CommonArgs& c) {
    SessionOptions s;
    s.tuning.fused_kernels = !c.no_fused;
    s.tuning.fused_backbone = !c.no_fused_backbone;
    s.tuning.mel_on_device = !c.host_mel;
    return s;
}

void add_common(CLI::App* app, CommonArgs& a, bool show_ab) {
    app->add_option("-m,--model", a.model_dir, "model directory (Hugging Face layout)")
        ->required()
        ->check(non_empty_path());
    app->add_option("-t,--threads", a.threads, "CPU threads (0 = all cores)")
        ->check(CLI::Range(0, 1024));
    app->add_option("--device", a.device, "auto, cpu or cuda")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
    app->add_option("--precision", a.precision,
                    "bf16 (as the reference runs), fp32, or weight-only 8-bit quantized at load "
                    "with bf16 activations: int8 (CPU and CUDA) or fp8 (e4m3, for Hopper GPUs), "
                    "or 4-bit int4 (CPU only, one scale per 32 inputs)")
        ->capture_default_str()
        ->check(CLI::IsMember({"bf16", "fp32", "int8", "fp8", "int4"}));
    app->add_option("--context", a.context, "positions a conversation may hold")
        ->capture_default_str()
        ->check(CLI::Range(16, kMaxContextPositions));
    app->add_flag("-q,--quiet", a.quiet, "no progress or timing on stderr");
    app->add_flag("--no-warm-up", a.no_warm_up,
                  "skip the short throwaway turn at load (faster load; the first turn then pays "
                  "one-time costs such as CUDA graph capture)");
    // A/B switches for comparisons: accepted everywhere, listed only by voxrt bench --help.
    const std::string ab = kAbGroup;
    if (!show_ab) hide_ab_in_help(app);
    app->add_flag("--no-fused", a.no_fused,
                  "CUDA: decode op by op instead of with the fused kernels (for comparison)")
        ->group(ab);
    app->add_flag("--host-mel", a.host_mel,
                  "CUDA: compute the mel spectrogram on the host and upload it (for comparison)")
        ->group(ab);
    app->add_flag("--no-fused-backbone", a.no_fused_backbone,
                  "CUDA: run the backbone decode step op by op (the depthformer stays fused)")
        ->group(ab);
    app->add_option(
           "--detok-device", a.detok_device,
           "where the detokenizer and its ISTFT run: same (as --device), cpu (on the host "
           "beside GPU decode) or auto (cpu with a CUDA model and at least 8 host threads, "
           "else same)")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "same", "cpu"}))
        ->group(ab);
}

void add_generation(CLI::App* app, GenerationArgs& g, const TaskDefaults& d) {
    g.max_steps = d.max_steps;
    g.temp = d.sampling.text_temperature;
    g.top_k = d.sampling.text_top_k;
    g.audio_temp = d.sampling.audio_temperature;
    g.audio_top_k = d.sampling.audio_top_k;
    app->add_option("-n,--max-steps", g.max_steps, "maximum text tokens + audio frames")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 20));
    app->add_option("--seed", g.seed, "sampling seed (0 to 2^64-1)")
        ->capture_default_str()
        ->check(seed_value());
    app->add_option("--temp", g.temp, "text temperature (0 = greedy)")
        ->capture_default_str()
        ->check(finite_range(0.0, 100.0));
    app->add_option("--top-k", g.top_k, "text top-k (0 = off)")
        ->capture_default_str()
        ->check(CLI::Range(0, 1 << 20));
    app->add_option("--audio-temp", g.audio_temp, "audio temperature (0 = greedy)")
        ->capture_default_str()
        ->check(finite_range(0.0, 100.0));
    app->add_option("--audio-top-k", g.audio_top_k, "audio top-k (0 = off)")
        ->capture_default_str()
        ->check(CLI::Range(0, 4096));
    app->add_option("--detok-chunk", g.detok_chunk,
                    "audio frames per detokenizer call after the first (1 = per frame)")
        ->capture_default_str()
        ->check(CLI::Range(1, 32))
        ->group(kAbGroup);
    app->add_flag("--detok-sync", g.detok_sync,
                  "detokenize inside the generation loop instead of on its own thread")
        ->group(kAbGroup);
}

namespace {

// One turn as the official README builds it: optional system turn, the user turn (text or audio),
// then the assistant turn, generated with `opt`; prints text (unless `print_text` is false), writes
// the audio to `output` (unless empty), and prints the timing line.
struct TurnSpec {
    std::string system;
    std::string user_text;
    const AudioClip* user_audio = nullptr;
    std::string input_label;
    ResponseOptions opt;
    bool print_text = true;
    std::string output;
};

// A context too small for the turn: says which --context it needs (`need` positions).
Status context_hint(const Status& st, int64_t need) {
    if (st.code() != StatusCode::kOutOfRange || st.message().find("context") == std::string::npos)
        return st;
    return Status(st.code(),
                  st.message() + "; run with --context " + std::to_string(need) + " or more");
}

Status run_turn(const CommonArgs& c, const TurnSpec& t) {
    VOXRT_ASSIGN_OR_RETURN(Loaded l, load(c, /*need_detok=*/t.opt.audio));
    const auto t0 = Clock::now();
    Session& s = *l.session;
    const Model& m = *l.model;
    // The positions this turn needs (as the session counts them), for the message when --context
    // is too small.
    int64_t need = s.positions() + m.response_positions(t.opt.max_steps);
    if (!t.system.empty()) need += m.turn_positions(Role::kSystem, t.system);
    need += t.user_audio
                ? m.audio_turn_positions(t.user_audio->samples.size(), t.user_audio->sample_rate)
                : m.turn_positions(Role::kUser, t.user_text);
    auto check = [&](const Status& st) { return context_hint(st, need); };

    if (!t.system.empty()) VOXRT_RETURN_IF_ERROR(check(s.add_turn(Role::kSystem, t.system)));
    if (t.user_audio) {
        VOXRT_RETURN_IF_ERROR(check(s.begin_user_turn()));
        VOXRT_RETURN_IF_ERROR(
            check(s.append_audio(t.user_audio->samples.data(), t.user_audio->samples.size(),
                                 t.user_audio->sample_rate))
                .with_context(t.input_label));
        VOXRT_RETURN_IF_ERROR(check(s.end_user_turn()).with_context(t.input_label));
    } else {
        VOXRT_RETURN_IF_ERROR(check(s.add_turn(Role::kUser, t.user_text)));
    }
    Collector col;
    col.print_text = t.print_text;
    col.quiet = c.quiet;
    col.max_steps = t.opt.max_steps;
    const Status gen = s.generate(t.opt, [&](const Event& e) { return col(e); });
    VOXRT_RETURN_IF_ERROR(check(gen));
    if (t.print_text) print_text_piece("\n");
    if (!t.output.empty())
        VOXRT_RETURN_IF_ERROR(
            write_wav_file(t.output, col.pcm.data(), col.pcm.size(), m.info().output_sample_rate));
    print_timing(c, l.load_ms, col.stats, ms_since(t0), t.user_audio != nullptr);
    if (!t.output.empty() && !c.quiet)
        std::fprintf(stderr, "voxrt: wrote %s (%.2f s at 24 kHz)\n", t.output.c_str(),
                     col.pcm.size() / static_cast<double>(m.info().output_sample_rate));
    return Status::ok();
}

ResponseOptions text_only(Task task, int max_steps) {
    ResponseOptions o = ResponseOptions::for_task(task);
    o.max_steps = max_steps;
    o.audio = false;
    return o;
}

}  // namespace

Status run_s2s(const CommonArgs& c, const S2sArgs& a) {
    const TaskDefaults d = task_defaults(Task::kSpeechChat);
    VOXRT_ASSIGN_OR_RETURN(AudioClip wav, read_wav_file(a.input));
    TurnSpec t;
    t.system = a.system.empty() ? d.system_prompt : a.system;
    t.user_audio = &wav;
    t.input_label = a.input;
    t.opt = response_options(a.gen, d);
    t.output = a.output;
    return run_turn(c, t);
}

Status run_asr(const CommonArgs& c, const AsrArgs& a) {
    const TaskDefaults d = task_defaults(Task::kAsr);
    VOXRT_ASSIGN_OR_RETURN(AudioClip wav, read_wav_file(a.input));
    TurnSpec t;
    t.system = d.system_prompt;
    t.user_audio = &wav;
    t.input_label = a.input;
    t.opt = text_only(Task::kAsr, a.max_steps);
    return run_turn(c, t);
}

Status run_tts(const CommonArgs& c, const TtsArgs& a) {
    const std::optional<Voice> voice = parse_voice(a.voice);
    if (!voice)
        return Status(StatusCode::kInvalidArgument,
                      "usage: --voice must be us-male, us-female, uk-male or uk-female");
    const TaskDefaults d = task_defaults(Task::kTts, *voice);
    TurnSpec t;
    t.system = d.system_prompt;
    t.user_text = a.text;
    t.opt = response_options(a.gen, d);
    t.print_text = false;
    t.output = a.output;
    return run_turn(c, t);
}

Status run_chat(const CommonArgs& c, const ChatArgs& a) {
    TurnSpec t;
    t.system = a.system;  // text chat has no system prompt of its own (task_defaults)
    t.user_text = a.text;
    t.opt = text_only(Task::kTextChat, a.max_steps);
    return run_turn(c, t);
}

Status run_inspect(const CommonArgs& c) {
    CommonArgs cc = c;
    cc.device = "cpu";
    cc.quiet = true;
    VOXRT_ASSIGN_OR_RETURN(Loaded l, load(cc, /*need_detok=*/true));
    const ModelInfo& i = l.model->info();
    std::printf("model: %s\n", c.model_dir.c_str());
    std::printf("precision: %s\n", i.precision.c_str());
    std::printf("backbone: LFM2, %d layers (%s), hidden %d, heads %d/%d kv, ffn %d, vocab %d\n",
                i.backbone_layers, i.backbone_layer_kinds.c_str(), i.hidden_size, i.num_heads,
                i.num_kv_heads, i.ff_dim, i.vocab_size);
    std::printf("encoder: FastConformer, %d layers, d_model %d, %d heads, subsampling x%d\n",
                i.encoder_layers, i.encoder_d_model, i.encoder_heads, i.encoder_subsampling);
    std::printf("depthformer: %d layers, dim %d, %d codebooks x %d codes\n", i.depthformer_layers,
                i.depthformer_dim, i.codebooks, i.audio_vocab);
    std::printf("interleaving: %d text : %d audio\n", i.interleaved_text, i.interleaved_audio);
    std::printf("tokenizer: %d tokens\n", i.tokenizer_size);
    if (i.model_file_tensors > 0)
        std::printf("model.safetensors: %zu tensors, %zu bytes\n", i.model_file_tensors,
                    i.model_file_bytes);
    if (i.detok_file_tensors > 0)
        std::printf("audio_detokenizer/model.safetensors: %zu tensors, %zu bytes\n",
                    i.detok_file_tensors, i.detok_file_bytes);
    std::printf("decode roofline: %.3f GB per text step, %.3f GB per audio frame\n",
                i.text_step_bytes / 1e9, i.audio_frame_bytes / 1e9);
    if (i.quantization_saved_bytes > 0)
        std::printf("%s weights: %zu bytes fewer than in bf16\n", i.precision.c_str(),
                    i.quantization_saved_bytes);
    std::printf("ok\n");
    return Status::ok();
}

}  // namespace voxrt::cli
