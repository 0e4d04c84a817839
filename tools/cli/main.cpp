// voxrt — the command line. Thin: parses flags, reads/writes files, prints progress; inference is
// the library's, through its public API only (include/voxrt: Model, Session, tasks).
//
//   voxrt s2s  -m MODEL_DIR -i IN.wav -o OUT.wav [-n MAX_STEPS] [--seed S] [--temp T] [--top-k K]
//              [--audio-temp T] [--audio-top-k K] [--system TEXT] [-t THREADS]
//              [--device cpu|cuda]
//   voxrt asr  -m MODEL_DIR -i IN.wav
//   voxrt tts  -m MODEL_DIR --text "…" --voice us-male|us-female|uk-male|uk-female -o OUT.wav
//              (and the generation options of s2s)
//   voxrt chat -m MODEL_DIR --text "…"
//   voxrt inspect -m MODEL_DIR
//   voxrt bench -m MODEL_DIR -i IN.wav [...]        (bench.cpp)
//   voxrt talk -m MODEL_DIR [--in IN.wav --out OUT.wav] [...]   (talk.cpp; docs/talk.md)
//
// A/B switches for comparisons (--no-fused, --no-fused-backbone, --host-mel, --detok-device,
// --detok-chunk, --detok-sync) are accepted but left out of the subcommands' --help; voxrt bench
// --help lists them.
//
// Exit status: 0 success, 2 usage error, 1 any other error. Every error is one "error: …" line on
// stderr (usage errors as "error: usage: …"), with bytes that are not printable UTF-8 escaped.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <unistd.h>

#include "cli_common.h"
#include "server.h"  // voxrt serve (tools/server)

namespace {

// The one place errors are printed: one line, escaped, on a line of its own.
void print_error(const std::string& message) {
    std::fflush(stdout);
    if (voxrt::cli::g_stdout_line_open && isatty(fileno(stdout)) && isatty(fileno(stderr)))
        std::fputc('\n', stderr);
    std::fprintf(stderr, "error: %s\n", voxrt::cli::printable(message).c_str());
}

// -o: a regular file is replaced atomically; a FIFO, device or symlink target is written through.
constexpr const char* kOutputHelp = "output WAV (24 kHz mono 16-bit)";

}  // namespace

int main(int argc, char** argv) {
    // `voxrt serve …`: the server's own options (tools/server/serve_main.cpp).
    if (argc >= 2 && std::string(argv[1]) == "serve")
        return voxrt::server::serve_main(argc - 1, argv + 1);
    using namespace voxrt::cli;
    CLI::App app{"voxrt: speech-to-speech inference for LFM2.5-Audio"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all");

    CommonArgs common;
    S2sArgs s2s;
    AsrArgs asr;
    TtsArgs tts;
    ChatArgs chat;
    BenchArgs bench;
    TalkArgs talk;

    CLI::App* c_s2s =
        app.add_subcommand("s2s", "speech in, text + speech out (interleaved generation)");
    add_common(c_s2s, common);
    c_s2s->add_option("-i,--input", s2s.input, "input WAV (any rate, mono or stereo)")
        ->required()
        ->check(non_empty_path());
    c_s2s->add_option("-o,--output", s2s.output, kOutputHelp)->required()->check(non_empty_path());
    add_generation(c_s2s, s2s.gen, voxrt::task_defaults(voxrt::Task::kSpeechChat));
    s2s.system = voxrt::task_defaults(voxrt::Task::kSpeechChat).system_prompt;
    c_s2s->add_option("--system", s2s.system, "system prompt")->capture_default_str();

    CLI::App* c_asr = app.add_subcommand("asr", "speech in, transcript out");
    add_common(c_asr, common);
    c_asr->add_option("-i,--input", asr.input, "input WAV")->required()->check(non_empty_path());
    c_asr->add_option("-n,--max-steps", asr.max_steps, "maximum tokens")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 20));

    CLI::App* c_tts = app.add_subcommand("tts", "text in, speech out");
    add_common(c_tts, common);
    c_tts->add_option("--text", tts.text, "text to speak")->required();
    c_tts->add_option("--voice", tts.voice, "us-male, us-female, uk-male or uk-female")
        ->capture_default_str()
        ->check(CLI::IsMember({"us-male", "us-female", "uk-male", "uk-female"}));
    c_tts->add_option("-o,--output", tts.output, kOutputHelp)->required()->check(non_empty_path());
    add_generation(c_tts, tts.gen, voxrt::task_defaults(voxrt::Task::kTts));

    CLI::App* c_chat = app.add_subcommand("chat", "text in, text out");
    add_common(c_chat, common);
    c_chat->add_option("--text", chat.text, "user message")->required();
    c_chat->add_option("--system", chat.system, "system prompt (none by default)");
    c_chat->add_option("-n,--max-steps", chat.max_steps, "maximum tokens")
        ->capture_default_str()
        ->check(CLI::Range(1, 1 << 20));

    CLI::App* c_inspect =
        app.add_subcommand("inspect", "validate a model directory and summarize it");
    add_common(c_inspect, common);

    CLI::App* c_bench =
        app.add_subcommand("bench", "time the speech-to-speech turn (bench/protocol.md)");
    add_common(c_bench, common, /*show_ab=*/true);
    add_bench(c_bench, bench);

    CLI::App* c_talk = app.add_subcommand(
        "talk", "a spoken conversation: microphone → answer on the speakers, with barge-in");
    add_common(c_talk, common);
    c_talk->get_option("--model")->required(false);  // not for --list-devices
    c_talk->add_option("--in", talk.in, "input WAV heard at real-time pace instead of a microphone")
        ->check(non_empty_path());
    c_talk
        ->add_option("--out", talk.out,
                     "output WAV: what the speakers would play, on the input's timeline")
        ->check(non_empty_path());
    c_talk->add_option("--events", talk.events, "write the conversation's events here (JSON lines)")
        ->check(non_empty_path());
    c_talk->add_flag("--list-devices", talk.list_devices, "list the audio devices and exit");
    c_talk->add_option("--input-device", talk.input_device,
                       "microphone: an index from --list-devices or part of a name");
    c_talk->add_option("--output-device", talk.output_device,
                       "speakers: an index from --list-devices or part of a name");
    c_talk->add_option("--voice", talk.voice, "the answer's voice (speech chat has one: default)")
        ->capture_default_str();
    talk.system = voxrt::task_defaults(voxrt::Task::kSpeechChat).system_prompt;
    c_talk->add_option("--system", talk.system, "instructions (the system prompt)")
        ->capture_default_str();
    c_talk
        ->add_option("--threshold", talk.threshold,
                     "voice activity: how far above the background speech is, 0..1")
        ->capture_default_str()
        ->check(finite_range(0.0, 1.0));
    c_talk->add_option("--silence-ms", talk.silence_ms, "silence that ends your turn, ms")
        ->capture_default_str()
        ->check(CLI::Range(100, 10000));
    c_talk->add_option("--prefix-ms", talk.prefix_ms, "audio kept before the speech starts, ms")
        ->capture_default_str()
        ->check(CLI::Range(0, 2000));
    c_talk->add_flag("--no-interrupt", talk.no_interrupt,
                     "talking over the answer does not stop it (no barge-in)");
    add_generation(c_talk, talk.gen, voxrt::task_defaults(voxrt::Task::kSpeechChat));

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        const auto subs = app.get_subcommands();
        const std::string help =
            subs.empty() ? "voxrt --help" : "voxrt " + subs.front()->get_name() + " --help";
        print_error("usage: " + std::string(e.what()) + " (see " + help + ")");
        return 2;
    }

    voxrt::Status st;
    if (c_s2s->parsed())
        st = run_s2s(common, s2s);
    else if (c_asr->parsed())
        st = run_asr(common, asr);
    else if (c_tts->parsed())
        st = run_tts(common, tts);
    else if (c_chat->parsed())
        st = run_chat(common, chat);
    else if (c_inspect->parsed())
        st = run_inspect(common);
    else if (c_bench->parsed())
        st = run_bench(common, bench);
    else if (c_talk->parsed())
        st = run_talk(common, talk);
    if (!st.is_ok()) {
        print_error(st.message());
        return st.code() == voxrt::StatusCode::kInvalidArgument &&
                       st.message().rfind("usage:", 0) == 0
                   ? 2
                   : 1;
    }
    return 0;
}
