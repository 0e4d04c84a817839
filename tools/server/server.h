// voxrt serve: one process, one engine, HTTP/1.1 + WebSocket (Boost.Beast) on one port.
// Endpoints and what each supports: docs/server.md.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "engine.h"
#include "protocol.h"

namespace voxrt::server {

struct ServerOptions {
    // The loaded checkpoint's directory (empty for the fake engine): /v1/models reports whether it
    // is a random-weight checkpoint made by tools/reference/make_checkpoint.py.
    std::string model_dir;
    std::string host = "127.0.0.1";
    uint16_t port = 8080;  // 0: any free port (printed on stderr)
    int max_sessions = 4;
    // How max_sessions was chosen ("flag", "memory": derived from free memory, "default"), and the
    // numbers behind "memory" (shown at startup and in /v1/models).
    std::string max_sessions_from = "default";
    size_t free_memory_bytes = 0;
    size_t session_bytes = 0;  // one conversation at its full context
    // Admission control (Scheduler): refuse a new session when the measured rounds say one more
    // would push an engine round past this many ms; 0: off (only max_sessions limits).
    double round_budget_ms = 40;
    // While answers run, a round runs the sessions' commands (new turns' audio and encoders among
    // them) for at most about this long; the rest wait for the next round (Scheduler). 0: no bound.
    double commands_budget_ms = 10;
    Limits limits;
    size_t max_body_bytes = 32u << 20;  // one HTTP request body
    size_t max_ws_message = 16u << 20;  // one WebSocket message
    size_t max_ws_backlog = 32u << 20;  // server events queued for a client that does not read
    int request_timeout_s = 60;         // reading one request, headers and body
    int idle_timeout_s = 30;            // keep-alive wait for the next request
    int write_timeout_s = 30;           // one write to a client
    int realtime_idle_s = 300;          // a Realtime socket with no client event for this long
    int drain_s = 30;                   // SIGTERM: time given to answers in progress
    int max_connections = 1024;
};

// Runs until SIGTERM / SIGINT (drains, then returns 0) or a setup error (returns 1 with a message
// on stderr). `on_listening` gets the bound port.
int serve(Engine& engine, const ServerOptions& opt,
          const std::function<void(uint16_t)>& on_listening = {});

// `voxrt serve …` / `voxrt-serve …`: parses the options, loads the model, serves.
int serve_main(int argc, char** argv);

}  // namespace voxrt::server
