// `voxrt serve` (and the voxrt-serve binary): options, model loading, serve().
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "fake_engine.h"
#include "server.h"
#include "voxrt_engine.h"

namespace voxrt::server {

// The most conversations --max-sessions' derived default allows (the goal: ~1,000 per GPU).
constexpr int kDerivedSessionsCap = 1024;

int serve_main(int argc, char** argv) {
    CLI::App app{"voxrt serve: OpenAI-compatible speech server (HTTP + WebSocket)", "voxrt serve"};
    ServerOptions opt;
    VoxrtEngineOptions eo;
    std::string engine_kind = "voxrt";
    double fake_step_ms = 2;
    int max_body_mb = int(opt.max_body_bytes >> 20);
    app.add_option("-m,--model", eo.model_dir, "model directory (LFM2.5-Audio-1.5B layout)");
    app.add_option("--host", opt.host, "address to listen on")->capture_default_str();
    app.add_option("--port", opt.port, "port (0: any free port, printed on stderr)")
        ->capture_default_str();
    app.add_option("--max-sessions", opt.max_sessions,
                   "conversations served at once; the next client gets 429 (default: as many as "
                   "fit in the device's free memory at the full --context, at most " +
                       std::to_string(kDerivedSessionsCap) + "; the fake engine: 4)")
        ->check(CLI::Range(1, 4096));
    app.add_option("--round-budget-ms", opt.round_budget_ms,
                   "admission control: refuse a new conversation when the measured engine rounds "
                   "say one more would make a round (one step of every answer) longer than this; "
                   "0: off")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 10000.0));
    app.add_option("--commands-budget-ms", opt.commands_budget_ms,
                   "while answers are running, run the sessions' commands (new turns' audio, "
                   "their encoders) for at most about this long a round, so that answers keep "
                   "their pace however many turns arrive; the rest wait a round; 0: no bound")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 10000.0));
    app.add_option("--prefill-rows", eo.prefill_rows,
                   "new turns' prefill: the chunks of every turn starting in a round run as one "
                   "backbone call of at most this many positions (the oldest turns first, the "
                   "rest wait a round); 0: each turn's chunk alone; -1: the default (1024 on a "
                   "GPU, 0 on the CPU)")
        ->capture_default_str()
        ->check(CLI::Range(-1, 65536));
    app.add_option("--batch-rows", eo.batch_rows,
                   "answers per batched engine call; a round over more answers runs several "
                   "calls, each reading the weights once")
        ->capture_default_str()
        ->check(CLI::Range(1, 4096));
    app.add_option("--device", eo.device, "auto, cpu or cuda")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
    app.add_option("--precision", eo.precision,
                   "bf16, fp32, or weight-only 8-bit quantized at load: int8 or fp8 (e4m3)")
        ->capture_default_str()
        ->check(CLI::IsMember({"bf16", "fp32", "int8", "fp8"}));
    app.add_option("-t,--threads", eo.threads, "CPU threads (0: all cores)")->capture_default_str();
    app.add_option("--context", eo.context,
                   "positions one conversation may hold (0: the model's default)")
        ->capture_default_str();
    app.add_option("--max-body-mb", max_body_mb, "largest HTTP request body, MiB")
        ->capture_default_str()
        ->check(CLI::Range(1, 1024));
    app.add_option("--request-timeout", opt.request_timeout_s, "seconds to receive one request")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600));
    app.add_option("--idle-timeout", opt.idle_timeout_s,
                   "seconds a kept-alive connection may wait; a WebSocket peer that stops "
                   "answering pings is dropped after this")
        ->capture_default_str()
        ->check(CLI::Range(1, 3600));
    app.add_option("--realtime-idle", opt.realtime_idle_s,
                   "seconds a Realtime session may go without a client event")
        ->capture_default_str()
        ->check(CLI::Range(1, 86400));
    app.add_option("--drain", opt.drain_s, "seconds SIGTERM gives answers in progress")
        ->capture_default_str()
        ->check(CLI::Range(0, 3600));
    app.add_option("--engine", engine_kind,
                   "voxrt, or fake (scripted answers, no model: for protocol tests)")
        ->capture_default_str()
        ->check(CLI::IsMember({"voxrt", "fake"}));
    app.add_option("--fake-step-ms", fake_step_ms, "fake engine: milliseconds per step")
        ->capture_default_str();
    // Benchmarks on random weights (bench/serve_bench.py): answers run to their max steps.
    app.add_flag("--bench-no-early-end", eo.suppress_end,
                 "benchmarks on random weights: answers never end before max_output_tokens")
        ->group("");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        std::fprintf(stderr, "error: usage: %s\n", e.what());
        return 2;
    }
    opt.max_body_bytes = size_t(max_body_mb) << 20;
    if (engine_kind == "voxrt") opt.model_dir = eo.model_dir;
    std::unique_ptr<Engine> engine;
    if (engine_kind == "fake") {
        FakeEngineOptions fo;
        fo.step_ms = fake_step_ms;
        engine = std::make_unique<FakeEngine>(fo);
    } else {
        if (eo.model_dir.empty()) {
            std::fprintf(stderr, "error: usage: -m MODEL_DIR is required\n");
            return 2;
        }
        std::string err = make_voxrt_engine(eo, &engine);
        if (!err.empty()) {
            std::fprintf(stderr, "error: %s\n", err.c_str());
            return 1;
        }
    }
    if (app.count("--max-sessions") > 0) {
        opt.max_sessions_from = "flag";
    } else {
        const Engine::MemoryCapacity c = engine->memory_capacity(kDerivedSessionsCap);
        if (c.sessions > 0) {
            opt.max_sessions = c.sessions;
            opt.max_sessions_from = "memory";
            opt.free_memory_bytes = c.free_bytes;
            opt.session_bytes = c.per_session_bytes;
            std::fprintf(stderr,
                         "voxrt serve: --max-sessions %d from free memory: %.0f MiB free, %.1f MiB "
                         "per conversation at its full context, %.0f MiB shared; a tenth kept "
                         "free, at most %d\n",
                         c.sessions, double(c.free_bytes) / (1 << 20),
                         double(c.per_session_bytes) / (1 << 20),
                         double(c.shared_bytes) / (1 << 20), kDerivedSessionsCap);
        }
    }
    return serve(*engine, opt);
}

}  // namespace voxrt::server
