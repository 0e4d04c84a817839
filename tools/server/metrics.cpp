#include "metrics.h"

#include <chrono>
#include <cstdio>

namespace voxrt::server {

namespace {
std::string num(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}
double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}
void line(std::string& out, const char* name, const char* type, const char* help, double v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + num(v) + "\n";
}
}  // namespace

void Histogram::observe(double v) {
    std::lock_guard<std::mutex> lk(mu_);
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    ++counts_[i];
    sum_ += v;
    ++count_;
}

uint64_t Histogram::count() const {
    std::lock_guard<std::mutex> lk(mu_);
    return count_;
}

void Histogram::render(std::string& out, const std::string& name) const {
    std::lock_guard<std::mutex> lk(mu_);
    uint64_t cum = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
        cum += counts_[i];
        out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
    }
    cum += counts_.back();
    out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
    out += name + "_sum " + num(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
}

std::string Metrics::render() const {
    std::string out;
    line(out, "voxrt_sessions_active", "gauge",
         "Session slots in use (REST requests and Realtime sockets).",
         double(sessions_active.load()));
    line(out, "voxrt_realtime_sessions_active", "gauge", "Realtime WebSocket sessions open.",
         double(realtime_active.load()));
    line(out, "voxrt_session_slots", "gauge", "Session slots (--max-sessions).",
         double(slots.load()));
    line(out, "voxrt_sessions_total", "counter", "Session slots granted.",
         double(sessions_total.load()));
    line(out, "voxrt_sessions_refused_total", "counter",
         "Requests and sockets refused because every slot was in use.",
         double(sessions_refused.load()));
    line(out, "voxrt_sessions_refused_capacity_total", "counter",
         "Of those, refused by admission control (the measured rounds said one more conversation "
         "would exceed the step budget).",
         double(sessions_refused_capacity.load()));
    line(out, "voxrt_capacity_sessions", "gauge",
         "Conversations the measured rounds say fit the step budget (-1: not measured yet, or "
         "admission control off).",
         double(capacity_sessions.load()));
    line(out, "voxrt_queue_depth", "gauge",
         "Sessions with an answer in progress waiting for the engine.", double(queue_depth.load()));
    line(out, "voxrt_commands_deferred_total", "counter",
         "Times a session's commands waited for the next round (--commands-budget-ms).",
         double(commands_deferred.load()));
    const uint64_t steps = steps_total.load();
    line(out, "voxrt_steps_total", "counter", "Generation steps run.", double(steps));
    {
        std::lock_guard<std::mutex> lk(rate_mu);
        double t = now_s();
        if (last_t > 0 && t - last_t >= 0.5) last_rate = double(steps - last_steps) / (t - last_t);
        if (last_t == 0 || t - last_t >= 0.5) {
            last_t = t;
            last_steps = steps;
        }
    }
    line(out, "voxrt_steps_per_second", "gauge",
         "Generation steps per second since the previous scrape (at least 0.5 s before).",
         last_rate);
    line(out, "voxrt_responses_total", "counter", "Answers finished.",
         double(responses_total.load()));
    line(out, "voxrt_responses_cancelled_total", "counter",
         "Answers cancelled (client, barge-in, disconnect).", double(responses_cancelled.load()));
    line(out, "voxrt_http_requests_total", "counter", "HTTP requests received.",
         double(http_requests.load()));
    line(out, "voxrt_client_errors_total", "counter", "4xx answers and Realtime error events.",
         double(client_errors.load()));
    out +=
        "# HELP voxrt_step_seconds Wall time of one generation step.\n# TYPE voxrt_step_seconds "
        "histogram\n";
    step_seconds.render(out, "voxrt_step_seconds");
    out +=
        "# HELP voxrt_batch_rows Answers the engine advanced in one device pass, per step "
        "round.\n# TYPE "
        "voxrt_batch_rows histogram\n";
    batch_rows.render(out, "voxrt_batch_rows");
    out +=
        "# HELP voxrt_time_to_first_audio_seconds From the start of an answer (after the user's "
        "turn "
        "ended) to its first audio.\n# TYPE voxrt_time_to_first_audio_seconds histogram\n";
    first_audio_seconds.render(out, "voxrt_time_to_first_audio_seconds");
    return out;
}

}  // namespace voxrt::server
