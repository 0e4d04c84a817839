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

#include "audio/wav.h"
#include "backend/device.h"
#include "cli_common.h"
#include "io/safetensors.h"
#include "model/lfm_audio.h"
#include "runtime/session.h"
#include "text/stream_decoder.h"
#include "text/utf8.h"

namespace voxrt::cli {

bool g_stdout_line_open = false;

std::string printable(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = 0;
        const size_t len = text::utf8_decode(s, i, &cp);
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

// --detok-device auto puts the detokenizer of a CUDA model on the host from this many threads.
constexpr int kHostDetokMinThreads = 8;

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string fmt_ms(double ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f ms", ms);
    return buf;
}

Status usage(const std::string& what) {
    return Status(StatusCode::kInvalidArgument, "usage: " + what);
}

struct Loaded {
    std::unique_ptr<model::LfmAudioModel> model;
    std::unique_ptr<runtime::Session> session;
    double load_ms = 0;
};

Expected<Loaded> load(const CommonArgs& c, bool need_detok) {
    VOXRT_ASSIGN_OR_RETURN(model::ModelOptions o, model_options(c));
    o.load_detokenizer = need_detok;
    Loaded l;
    const auto t0 = Clock::now();
    VOXRT_ASSIGN_OR_RETURN(l.model, model::LfmAudioModel::load(c.model_dir, o));
    VOXRT_ASSIGN_OR_RETURN(l.session, runtime::Session::create(*l.model, session_options(c)));
    l.load_ms = ms_since(t0);
    if (!c.quiet)
        std::fprintf(
            stderr, "voxrt: loaded %s on %s (%s) in %.0f ms\n", c.model_dir.c_str(),
            o.device == Device::kCUDA ? backend::hardware_name(Device::kCUDA).c_str() : "cpu",
            o.precision == ops::Precision::kBF16 ? "bf16" : "fp32", l.load_ms);
    return l;
}

Expected<std::vector<float>> read_mono(const std::string& path, int* rate) {
    VOXRT_ASSIGN_OR_RETURN(audio::Pcm pcm, audio::read_wav(path));
    *rate = pcm.sample_rate;
    return audio::downmix_mono(pcm);
}

runtime::GenerateOptions generate_options(const GenerationArgs& g, runtime::GenerationMode mode) {
    runtime::GenerateOptions o;
    o.mode = mode;
    o.max_new_tokens = g.max_steps;
    o.seed = g.seed;
    o.text_temperature = g.temp;
    o.text_top_k = g.top_k;
    o.audio_temperature = g.audio_temp;
    o.audio_top_k = g.audio_top_k;
    o.detok_chunk_frames = g.detok_chunk;
    o.detok_async = !g.detok_sync;
    return o;
}

void print_text_piece(const std::string& s) {
    if (s.empty()) return;
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
    g_stdout_line_open = s.back() != '\n';
}

// Collects text and PCM from events, prints text as it comes (whole characters: a character split
// across tokens is held until complete), shows progress on stderr.
struct Collector {
    explicit Collector(const model::LfmAudioModel& m) : stream(m.tokenizer()) {}
    text::StreamDecoder stream;
    std::vector<int32_t> text;
    std::vector<float> pcm;
    bool print_text = true;
    bool quiet = false;
    int max_steps = 0;
    // Progress would land inside the answer when both go to the terminal: none then.
    bool text_on_tty = isatty(fileno(stdout)) && isatty(fileno(stderr));
    void finish() {
        if (print_text) print_text_piece(stream.finish());
    }
    bool operator()(const runtime::Event& e) {
        switch (e.kind) {
            case runtime::EventKind::kText: {
                text.push_back(e.token);
                if (print_text) print_text_piece(stream.push(e.token));
                break;
            }
            case runtime::EventKind::kPcm:
                pcm.insert(pcm.end(), e.pcm, e.pcm + e.n_pcm);
                break;
            default:
                break;
        }
        // Progress on stderr, unless the streamed text shares the terminal with it.
        if (!quiet && !text_on_tty && (e.step + 1) % 50 == 0 && e.kind != runtime::EventKind::kPcm)
            std::fprintf(stderr, "voxrt: step %d/%d\n", e.step + 1, max_steps);
        return true;
    }
};

// The per-stage timing line, with only the stages this turn ran.
void print_timing(const CommonArgs& c, double load_ms, const runtime::TurnStats& s, double total_ms,
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

std::string tts_prompt(const std::string& voice) {
    const std::string region = voice.substr(0, 2) == "us" ? "US" : "UK";
    const std::string sex = voice.find("female") != std::string::npos ? "female" : "male";
    return "Perform TTS. Use the " + region + " " + sex + " voice.";
}

}  // namespace

Expected<model::ModelOptions> model_options(const CommonArgs& c) {
    model::ModelOptions o;
    if (c.device == "auto") {
        o.device = backend::device_available(Device::kCUDA) ? Device::kCUDA : Device::kCPU;
    } else if (c.device == "cpu") {
        o.device = Device::kCPU;
    } else if (c.device == "cuda") {
        o.device = Device::kCUDA;
    } else {
        return usage("--device must be auto, cpu or cuda");
    }
    if (c.precision == "bf16") {
        o.precision = ops::Precision::kBF16;
    } else if (c.precision == "fp32") {
        o.precision = ops::Precision::kF32;
    } else {
        return usage("--precision must be bf16 or fp32");
    }
    o.threads = c.threads;
    o.max_context = c.context;
    if (c.detok_device == "auto") {
        // The host beside GPU decode when there are enough threads: it leaves the GPU to decode,
        // but the turn then depends on those threads staying free (docs/detokenizer.md).
        const int threads =
            c.threads > 0 ? c.threads : static_cast<int>(std::thread::hardware_concurrency());
        o.detokenizer_on_cpu = o.device == Device::kCUDA && threads >= kHostDetokMinThreads;
    } else if (c.detok_device == "same" || c.detok_device == "cpu") {
        o.detokenizer_on_cpu = c.detok_device == "cpu";
    } else {
        return usage("--detok-device must be auto, same or cpu");
    }
    return o;
}

runtime::SessionOptions session_options(const CommonArgs& c) {
    runtime::SessionOptions s;
    s.fused_kernels = !c.no_fused;
    s.fused_backbone = !c.no_fused_backbone;
    s.mel_on_device = !c.host_mel;
    return s;
}

void add_common(CLI::App* app, CommonArgs& a) {
    app->add_option("-m,--model", a.model_dir, "model directory (Hugging Face layout)")
        ->required()
        ->check(non_empty_path());
    app->add_option("-t,--threads", a.threads, "CPU threads (0 = all cores)")
        ->check(CLI::Range(0, 1024));
    app->add_option("--device", a.device, "auto, cpu or cuda")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
    app->add_option("--precision", a.precision, "bf16 (as the reference runs) or fp32")
        ->capture_default_str()
        ->check(CLI::IsMember({"bf16", "fp32"}));
    app->add_option("--context", a.context, "positions a conversation may hold")
        ->capture_default_str()
        ->check(CLI::Range(16, 1 << 20));
    app->add_flag("-q,--quiet", a.quiet, "no progress or timing on stderr");
    app->add_flag("--no-fused", a.no_fused,
                  "CUDA: decode op by op instead of with the fused kernels (for comparison)");
    app->add_flag("--host-mel", a.host_mel,
                  "CUDA: compute the mel spectrogram on the host and upload it (for comparison)");
    app->add_flag("--no-fused-backbone", a.no_fused_backbone,
                  "CUDA: run the backbone decode step op by op (the depthformer stays fused)");
    app->add_option(
           "--detok-device", a.detok_device,
           "where the detokenizer and its ISTFT run: same (as --device), cpu (on the host "
           "beside GPU decode) or auto (cpu with a CUDA model and at least 8 host threads, "
           "else same)")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "same", "cpu"}));
}

void add_generation(CLI::App* app, GenerationArgs& g, int max_steps, float audio_temp,
                    int audio_top_k) {
    g.max_steps = max_steps;
    g.audio_temp = audio_temp;
    g.audio_top_k = audio_top_k;
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
        ->check(CLI::Range(1, model::kDetokMaxStepFrames));
    app->add_flag("--detok-sync", g.detok_sync,
                  "detokenize inside the generation loop instead of on its own thread");
}

namespace {

// One turn as the official README builds it: optional system turn, the user turn (text or audio),
// then the assistant turn, generated with `opt`; prints text (unless `print_text` is false), writes
// the audio to `output` (unless empty), and prints the timing line.
struct TurnSpec {
    std::string system;
    std::string user_text;
    const std::vector<float>* user_audio = nullptr;
    int user_rate = 0;
    std::string input_label;
    runtime::GenerateOptions opt;
    bool print_text = true;
    std::string output;
};

// Backbone positions the encoder gives `n` samples at `rate` Hz (as Session::add_audio counts
// them).
int64_t audio_positions(const model::LfmAudioModel& m, size_t n, int rate) {
    const int target = m.config().preprocessor.sample_rate;
    const size_t n16 =
        rate == target
            ? n
            : static_cast<size_t>((static_cast<unsigned long long>(n) * target + rate - 1) /
                                  static_cast<unsigned long long>(rate));
    return m.encoder().output_frames(m.mel().shape(n16).frames);
}

// A context too small for the turn: says which --context it needs (`need` positions).
Status context_hint(const Status& st, int64_t need) {
    if (st.code() != StatusCode::kOutOfRange || st.message().find("context") == std::string::npos)
        return st;
    return Status(st.code(),
                  st.message() + "; run with --context " + std::to_string(need) + " or more");
}

Status run_turn(const CommonArgs& c, const TurnSpec& t) {
    VOXRT_ASSIGN_OR_RETURN(Loaded l, load(c, /*need_detok=*/t.opt.decode_audio));
    const auto t0 = Clock::now();
    runtime::Session& s = *l.session;
    // The positions this turn needs, counted as the session counts them (each piece of text is
    // encoded on its own), for the message when --context is too small.
    const text::Tokenizer& tok = l.model->tokenizer();
    auto n_tokens = [&](const std::string& text) {
        return static_cast<int64_t>(tok.encode(text).size());
    };
    int64_t need = s.positions() + s.pending_positions() + n_tokens("<|im_start|>user\n") +
                   n_tokens("<|im_end|>\n") + n_tokens("<|im_start|>assistant\n") +
                   t.opt.max_new_tokens;
    if (!t.system.empty())
        need += n_tokens("<|im_start|>system\n") + n_tokens(t.system) + n_tokens("<|im_end|>\n");
    need += t.user_audio ? audio_positions(*l.model, t.user_audio->size(), t.user_rate)
                         : n_tokens(t.user_text);
    auto check = [&](const Status& st) { return context_hint(st, need); };

    if (!t.system.empty()) {
        VOXRT_RETURN_IF_ERROR(check(s.new_turn("system")));
        VOXRT_RETURN_IF_ERROR(check(s.add_text(t.system)));
        VOXRT_RETURN_IF_ERROR(check(s.end_turn()));
    }
    VOXRT_RETURN_IF_ERROR(check(s.new_turn("user")));
    if (t.user_audio) {
        VOXRT_RETURN_IF_ERROR(
            check(s.add_audio(t.user_audio->data(), t.user_audio->size(), t.user_rate))
                .with_context(t.input_label));
    } else {
        VOXRT_RETURN_IF_ERROR(check(s.add_text(t.user_text)));
    }
    VOXRT_RETURN_IF_ERROR(check(s.end_turn()));
    VOXRT_RETURN_IF_ERROR(check(s.new_turn("assistant")));
    Collector col(*l.model);
    col.print_text = t.print_text;
    col.quiet = c.quiet;
    col.max_steps = t.opt.max_new_tokens;
    runtime::TurnStats stats;
    const Status gen = s.generate(
        t.opt, [&](const runtime::Event& e) { return col(e); }, &stats);
    col.finish();
    VOXRT_RETURN_IF_ERROR(check(gen));
    if (t.print_text) print_text_piece("\n");
    if (!t.output.empty())
        VOXRT_RETURN_IF_ERROR(audio::write_wav(t.output, col.pcm.data(), col.pcm.size(), 24000));
    print_timing(c, l.load_ms, stats, ms_since(t0), t.user_audio != nullptr);
    if (!t.output.empty() && !c.quiet)
        std::fprintf(stderr, "voxrt: wrote %s (%.2f s at 24 kHz)\n", t.output.c_str(),
                     col.pcm.size() / 24000.0);
    return Status::ok();
}

runtime::GenerateOptions text_only(int max_steps) {
    runtime::GenerateOptions o;
    o.mode = runtime::GenerationMode::kSequential;
    o.max_new_tokens = max_steps;
    o.decode_audio = false;
    return o;
}

}  // namespace

Status run_s2s(const CommonArgs& c, const S2sArgs& a) {
    TurnSpec t;
    VOXRT_ASSIGN_OR_RETURN(std::vector<float> wav, read_mono(a.input, &t.user_rate));
    t.system = a.system;
    t.user_audio = &wav;
    t.input_label = a.input;
    t.opt = generate_options(a.gen, runtime::GenerationMode::kInterleaved);
    t.output = a.output;
    return run_turn(c, t);
}

Status run_asr(const CommonArgs& c, const AsrArgs& a) {
    TurnSpec t;
    VOXRT_ASSIGN_OR_RETURN(std::vector<float> wav, read_mono(a.input, &t.user_rate));
    t.system = "Perform ASR.";
    t.user_audio = &wav;
    t.input_label = a.input;
    t.opt = text_only(a.max_steps);
    return run_turn(c, t);
}

Status run_tts(const CommonArgs& c, const TtsArgs& a) {
    TurnSpec t;
    t.system = tts_prompt(a.voice);
    t.user_text = a.text;
    t.opt = generate_options(a.gen, runtime::GenerationMode::kSequential);
    t.print_text = false;
    t.output = a.output;
    return run_turn(c, t);
}

Status run_chat(const CommonArgs& c, const ChatArgs& a) {
    TurnSpec t;
    t.system = a.system;
    t.user_text = a.text;
    t.opt = text_only(a.max_steps);
    return run_turn(c, t);
}

Status run_inspect(const CommonArgs& c) {
    CommonArgs cc = c;
    cc.device = "cpu";
    cc.quiet = true;
    VOXRT_ASSIGN_OR_RETURN(Loaded l, load(cc, /*need_detok=*/true));
    const model::AudioModelConfig& cfg = l.model->config();
    std::printf("model: %s\n", c.model_dir.c_str());
    std::printf("backbone: LFM2, %d layers (", cfg.lfm.n_layers());
    for (int i = 0; i < cfg.lfm.n_layers(); ++i)
        std::printf(
            "%s%s", i ? "," : "",
            cfg.lfm.layers[static_cast<size_t>(i)] == model::LayerKind::kConv ? "conv" : "attn");
    std::printf("), hidden %d, heads %d/%d kv, ffn %d, vocab %d\n", cfg.lfm.hidden_size,
                cfg.lfm.num_heads, cfg.lfm.num_kv_heads, cfg.lfm.ff_dim, cfg.lfm.vocab_size);
    std::printf("encoder: FastConformer, %d layers, d_model %d, %d heads, subsampling x%d\n",
                cfg.encoder.n_layers, cfg.encoder.d_model, cfg.encoder.n_heads,
                cfg.encoder.subsampling_factor);
    std::printf("depthformer: %d layers, dim %d, %d codebooks x %d codes\n", cfg.depthformer.layers,
                cfg.depthformer.dim, cfg.codebooks, cfg.audio_vocab);
    std::printf("interleaving: %d text : %d audio\n", cfg.interleaved_n_text,
                cfg.interleaved_n_audio);
    std::printf("tokenizer: %d tokens\n", l.model->tokenizer().vocab_size());
    auto mf = io::SafeTensorsFile::open(c.model_dir + "/model.safetensors");
    if (mf.is_ok()) {
        size_t bytes = 0;
        for (const auto& t : mf->tensors()) bytes += t.end - t.begin;
        std::printf("model.safetensors: %zu tensors, %zu bytes\n", mf->tensors().size(), bytes);
    }
    auto df = io::SafeTensorsFile::open(c.model_dir + "/audio_detokenizer/model.safetensors");
    if (df.is_ok()) {
        size_t bytes = 0;
        for (const auto& t : df->tensors()) bytes += t.end - t.begin;
        std::printf("audio_detokenizer/model.safetensors: %zu tensors, %zu bytes\n",
                    df->tensors().size(), bytes);
    }
    std::printf("decode roofline: %.3f GB per text step, %.3f GB per audio frame\n",
                l.model->text_step_bytes() / 1e9, l.model->audio_frame_bytes() / 1e9);
    std::printf("ok\n");
    return Status::ok();
}

}  // namespace voxrt::cli
