// Prometheus metrics of one server process (text exposition format 0.0.4, GET /metrics). All
// methods are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace voxrt::server {

class Histogram {
public:
    explicit Histogram(std::vector<double> bounds)
        : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
    void observe(double v);
    // "name_bucket{le=…} n" lines, _sum and _count.
    void render(std::string& out, const std::string& name) const;
    uint64_t count() const;

private:
    std::vector<double> bounds_;
    mutable std::mutex mu_;
    std::vector<uint64_t> counts_;
    double sum_ = 0;
    uint64_t count_ = 0;
};

struct Metrics {
    std::atomic<int64_t> sessions_active{0};             // slots in use (REST requests and sockets)
    std::atomic<int64_t> realtime_active{0};             // of those, Realtime sockets
    std::atomic<uint64_t> sessions_total{0};             // slots ever granted
    std::atomic<uint64_t> sessions_refused{0};           // 429s and refused sockets
    std::atomic<uint64_t> sessions_refused_capacity{0};  // of those, by admission control
    std::atomic<int64_t> capacity_sessions{-1};          // measured capacity (-1: not yet / off)
    std::atomic<int64_t> queue_depth{0};         // sessions with an answer waiting for its step
    std::atomic<uint64_t> commands_deferred{0};  // sessions' commands left to the next round
    std::atomic<uint64_t> steps_total{0};        // generation steps run
    std::atomic<uint64_t> responses_total{0};    // answers finished (any finish reason)
    std::atomic<uint64_t> responses_cancelled{0};
    std::atomic<uint64_t> http_requests{0};
    std::atomic<uint64_t> client_errors{0};  // 4xx answers and error events
    std::atomic<int64_t> slots{0};           // --max-sessions
    Histogram step_seconds{{0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64}};
    // Answers the engine advanced in one device pass, per step round (continuous batching).
    Histogram batch_rows{{1, 2, 4, 8, 16, 32, 64, 128}};
    Histogram first_audio_seconds{{0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10}};

    std::string render() const;  // steps/s over the last window is computed here
    mutable std::mutex rate_mu;
    mutable double last_t = 0;
    mutable uint64_t last_steps = 0;
    mutable double last_rate = 0;
};

}  // namespace voxrt::server
