// Shared pieces of the voxrt command line: flag groups and the subcommand runners. The command line
// is a frontend of the public API (include/voxrt) and nothing else.
#pragma once

#include <voxrt/voxrt.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
class Validator;
}  // namespace CLI

namespace voxrt::cli {

struct CommonArgs {
    std::string model_dir;
    int threads = 0;
    std::string device = "auto";     // auto | cpu | cuda
    std::string precision = "bf16";  // bf16 | fp32 | int8 | fp8
    int context = 4096;
    bool quiet = false;
    bool no_warm_up = false;  // skip the throwaway turn at load (ModelOptions::warm_up)
    // For comparisons (hidden from the subcommands' --help; shown by voxrt bench --help).
    bool no_fused = false;           // CUDA: the op sequences instead of the fused decode kernels
    bool no_fused_backbone = false;  // CUDA: the backbone step op by op (depthformer stays fused)
    std::string detok_device = "same";  // same | auto | cpu (ModelOptions::detokenizer_device)
    bool host_mel = false;  // CUDA: mel on the host (SessionOptions::Tuning::mel_on_device)
};

struct GenerationArgs {
    int max_steps = 512;
    uint64_t seed = 0;
    float temp = 0.0f;
    int top_k = 0;
    float audio_temp = 1.0f;
    int audio_top_k = 4;
    int detok_chunk = 8;      // ResponseOptions::detok_chunk_frames
    bool detok_sync = false;  // ResponseOptions::detok_async = false
};

struct S2sArgs {
    std::string input, output;
    std::string system;  // empty: the task's (task_defaults)
    GenerationArgs gen;
};
struct AsrArgs {
    std::string input;
    int max_steps = 512;
};
struct TtsArgs {
    std::string text, voice = "us-female", output;
    GenerationArgs gen;
};
struct ChatArgs {
    std::string text, system;
    int max_steps = 512;
};
struct TalkArgs {
    std::string in, out, events;  // --in/--out: files at real-time pace instead of devices
    bool list_devices = false;
    std::string input_device, output_device;  // PortAudio device index or name part
    std::string voice = "default";
    std::string system;  // empty: the task's (task_defaults)
    float threshold = 0.5f;
    int silence_ms = 500;
    int prefix_ms = 300;
    bool no_interrupt = false;
    GenerationArgs gen;
};
struct BenchArgs {
    std::vector<std::string> inputs;
    int steps = 200;
    int runs = 5;
    int warmup = 1;
    std::string json_out;
    bool detok_sync = false;  // ResponseOptions::detok_async = false
    int detok_chunk = 8;      // ResponseOptions::detok_chunk_frames
    // Continuous batching: conversation counts to measure, one after another (empty: the
    // single-conversation turn benchmark).
    std::vector<int> sessions;
    int max_rows = 64;             // Batch::create's max_rows
    bool no_audio = false;         // sessions: no detokenizer (the decode alone)
    bool profile = false;          // sessions: where a step's time goes (Batch::set_profile)
    bool no_batch_graphs = false;  // sessions: Batch::set_device_graphs(false)
    int prefill_rows = -1;         // sessions: Batch::set_prefill_rows (-1: its default)
    bool warm_graphs = false;      // sessions: Batch::warm_up(max_rows) before the first level
};

// Validators shared by the subcommands: a path that is not empty, a finite number in [lo, hi].
CLI::Validator non_empty_path();
CLI::Validator finite_range(double lo, double hi);

// `s` made safe for one line of a terminal: bytes that are not valid UTF-8 and control characters
// (newlines included) become \xNN; everything else is kept.
std::string printable(std::string_view s);

// True while the answer text on stdout has an unfinished line (so that a message on a shared
// terminal must start a new line first).
extern bool g_stdout_line_open;

// The option group of the A/B switches (comparisons and benchmarks), and a --help formatter that
// leaves it out.
inline constexpr const char* kAbGroup = "Comparisons (A/B)";
void hide_ab_in_help(CLI::App* app);

// `show_ab`: list the A/B switches in --help (voxrt bench); elsewhere they are accepted but hidden.
void add_common(CLI::App* app, CommonArgs& a, bool show_ab = false);
ModelOptions model_options(const CommonArgs& c);
SessionOptions session_options(const CommonArgs& c);
void add_generation(CLI::App* app, GenerationArgs& g, const TaskDefaults& d);
void add_bench(CLI::App* app, BenchArgs& b);

// A model and one session on it, as the subcommands load them (progress on stderr unless quiet).
struct Loaded {
    std::shared_ptr<Model> model;
    std::unique_ptr<Session> session;
    double load_ms = 0;
};
Expected<Loaded> load(const CommonArgs& c, bool need_detok);
// The generation flags over a task's defaults.
ResponseOptions response_options(const GenerationArgs& g, const TaskDefaults& d);

Status run_s2s(const CommonArgs& c, const S2sArgs& a);
Status run_asr(const CommonArgs& c, const AsrArgs& a);
Status run_tts(const CommonArgs& c, const TtsArgs& a);
Status run_chat(const CommonArgs& c, const ChatArgs& a);
Status run_inspect(const CommonArgs& c);
Status run_bench(const CommonArgs& c, const BenchArgs& a);
Status run_talk(const CommonArgs& c, const TalkArgs& a);  // talk.cpp

}  // namespace voxrt::cli
