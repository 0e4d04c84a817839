#include "scheduler.h"

#include <algorithm>
#include <cstdio>

namespace voxrt::server {

Slot::~Slot() = default;

void Slot::post(Command cmd) {
    {
        std::lock_guard<std::mutex> lk(sched_.mu_);
        cmds_.push_back([this, cmd = std::move(cmd)] { cmd(conv_.get(), open_error_); });
    }
    sched_.wake();
}

void Slot::open(const ConversationOptions& opt) {
    {
        std::lock_guard<std::mutex> lk(sched_.mu_);
        cmds_.push_back([this, opt] {
            if (conv_) return;
            std::string err = sched_.engine_.open(opt, &conv_);
            if (!err.empty() || !conv_) {
                conv_.reset();
                open_error_ = "the engine could not open a conversation: " + err;
            } else {
                open_error_.clear();
            }
        });
    }
    sched_.wake();
}

void Slot::respond(const ResponseOptions& opt, Sink sink) {
    responding_ = true;
    auto t0 = std::chrono::steady_clock::now();
    {
        std::lock_guard<std::mutex> lk(sched_.mu_);
        cancel_ = false;
        cmds_.push_back([this, opt, t0, sink = std::move(sink)]() mutable {
            std::vector<EngineEvent> out;
            std::string err = conv_ ? conv_->start(opt) : open_error_;
            if (!err.empty() || generating_) {
                EngineEvent ev;
                ev.kind = EngineEvent::kDone;
                ev.finish = "error";
                ev.error = err.empty() ? "an answer is already in progress" : err;
                sink(std::move(ev));
                if (!generating_) responding_ = false;
                return;
            }
            generating_ = true;
            sched_.responding_++;
            sink_ = std::move(sink);
            t_start_ = t0;
            got_audio_ = false;
        });
    }
    sched_.wake();
}

void Slot::cancel() {
    {
        std::lock_guard<std::mutex> lk(sched_.mu_);
        cancel_ = true;
    }
    sched_.wake();
}

void Slot::release() {
    {
        std::lock_guard<std::mutex> lk(sched_.mu_);
        released_ = true;
    }
    sched_.wake();
}

Scheduler::Scheduler(Engine& engine, int slots, Metrics& metrics, double round_budget_ms,
                     double commands_budget_ms)
    : engine_(engine),
      slots_(slots),
      metrics_(metrics),
      budget_ms_(round_budget_ms),
      commands_budget_ms_(commands_budget_ms) {
    metrics_.slots = slots;
    thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void Scheduler::wake() {
    cv_.notify_all();
}

bool Scheduler::fit(double* a, double* b) const {
    const size_t n = rounds_.size();
    if (n < static_cast<size_t>(kMinRounds)) return false;
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (const Round& r : rounds_) {
        sx += r.answers;
        sy += r.ms;
        sxx += double(r.answers) * r.answers;
        sxy += r.answers * r.ms;
    }
    const double var = sxx - sx * sx / double(n);
    if (var > 1e-9) {
        *b = (sxy - sx * sy / double(n)) / var;
        *a = (sy - *b * sx) / double(n);
    } else {  // one batch size only: charge it all per answer (conservative)
        *a = 0;
        *b = sy / sx;
    }
    if (*a < 0) {  // through the origin
        *a = 0;
        *b = sxy / sxx;
    }
    if (*b < 0) {  // no growth seen: the mean round
        *b = 0;
        *a = sy / double(n);
    }
    return true;
}

void Scheduler::record_round(int answers, double ms) {
    std::lock_guard<std::mutex> lk(adm_mu_);
    if (rounds_.size() < static_cast<size_t>(kRounds)) {
        rounds_.push_back(Round{answers, ms});
    } else {
        rounds_[round_next_] = Round{answers, ms};
        round_next_ = (round_next_ + 1) % rounds_.size();
    }
}

int Scheduler::capacity() const {
    if (budget_ms_ <= 0) return -1;
    std::lock_guard<std::mutex> lk(adm_mu_);
    double a = 0, b = 0;
    if (!fit(&a, &b)) return -1;
    if (a > budget_ms_) return 0;
    if (b <= 0) return slots_;
    return std::min<int>(slots_, static_cast<int>((budget_ms_ - a) / b));
}

std::shared_ptr<Slot> Scheduler::acquire(std::string* why) {
    int n = in_use_.load();
    if (budget_ms_ > 0 && n >= 1) {
        std::lock_guard<std::mutex> lk(adm_mu_);
        double a = 0, b = 0;
        if (fit(&a, &b) && a + b * (n + 1) > budget_ms_) {
            metrics_.sessions_refused++;
            metrics_.sessions_refused_capacity++;
            if (why) {
                char m[200];
                std::snprintf(m, sizeof m,
                              "the engine is at its measured capacity (%d conversations within a "
                              "%.0f ms step); retry shortly",
                              n, budget_ms_);
                *why = m;
            }
            return nullptr;
        }
    }
    do {
        if (n >= slots_) {
            metrics_.sessions_refused++;
            if (why) *why = "every session slot is in use; retry shortly";
            return nullptr;
        }
    } while (!in_use_.compare_exchange_weak(n, n + 1));
    metrics_.sessions_active++;
    metrics_.sessions_total++;
    std::shared_ptr<Slot> s(new Slot(*this));
    {
        std::lock_guard<std::mutex> lk(mu_);
        added_.push_back(s);
    }
    wake();
    // The client's handle: when its last copy goes, the slot is released.
    return std::shared_ptr<Slot>(s.get(), [s](Slot*) { s->release(); });
}

void Scheduler::run() {
    size_t rr = 0;
    std::vector<EngineEvent> out;
    // An answer ends: the slot's books.
    auto finish_answer = [&](Slot* s, bool cancelled) {
        s->generating_ = false;
        s->responding_ = false;
        responding_--;
        metrics_.responses_total++;
        if (cancelled) metrics_.responses_cancelled++;
        s->sink_ = nullptr;
    };
    // Hands a slot's events to its sink (and clears them).
    auto deliver = [&](Slot* s, std::vector<EngineEvent>& out) {
        for (auto& ev : out) {
            const bool done = ev.kind == EngineEvent::kDone;
            const bool cancelled = done && ev.finish == "cancelled";
            if (ev.kind == EngineEvent::kAudio && !s->got_audio_) {
                s->got_audio_ = true;
                metrics_.first_audio_seconds.observe(
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - s->t_start_)
                        .count());
            }
            if (done && s->generating_) {
                // The books first, so that whoever the last event wakes sees the answer over.
                Slot::Sink sink = std::move(s->sink_);
                finish_answer(s, cancelled);
                if (sink) sink(std::move(ev));
            } else if (s->sink_) {
                s->sink_(std::move(ev));
            }
        }
        out.clear();
    };
    std::vector<Slot*> stepping;
    std::vector<Conversation*> convs;
    std::vector<std::vector<EngineEvent>> outs;
    std::vector<char> more;
    for (;;) {
        std::vector<std::shared_ptr<Slot>> order;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] {
                if (stop_ || !added_.empty()) return true;
                for (auto& s : live_)
                    if (s->generating_ || !s->cmds_.empty() || s->released_ || s->cancel_)
                        return true;
                return false;
            });
            if (stop_) break;
            for (auto& s : added_) live_.push_back(std::move(s));
            added_.clear();
            if (live_.empty()) continue;
            rr %= live_.size();
            order.insert(order.end(), live_.begin() + long(rr), live_.end());
            order.insert(order.end(), live_.begin(), live_.begin() + long(rr));
            ++rr;
        }
        // The commands the budget deferred last round go first.
        if (resume_) {
            auto it = std::find_if(order.begin(), order.end(), [&](const std::shared_ptr<Slot>& s) {
                return s.get() == resume_;
            });
            if (it != order.end()) std::rotate(order.begin(), it, order.end());
            resume_ = nullptr;
        }
        int waiting = 0;
        for (auto& s : order) waiting += s->generating_ ? 1 : 0;
        metrics_.queue_depth = waiting;
        const auto t_cmds = std::chrono::steady_clock::now();
        bool over_budget = false;
        for (auto& s : order) {
            std::deque<std::function<void()>> cmds;
            bool cancel = false, released = false;
            // Answers are running and this round's commands have had their time: this slot's
            // wait for the next round (which starts with the first of them).
            if (!over_budget && waiting > 0 && commands_budget_ms_ > 0 &&
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_cmds)
                        .count() >= commands_budget_ms_)
                over_budget = true;
            {
                std::lock_guard<std::mutex> lk(mu_);
                if (over_budget && !s->cmds_.empty()) {
                    if (!resume_) resume_ = s.get();
                    metrics_.commands_deferred++;
                } else {
                    cmds.swap(s->cmds_);
                }
                cancel = s->cancel_;
                s->cancel_ = false;
                released = s->released_;
            }
            if (released) {
                if (s->generating_ && s->conv_) {
                    s->conv_->cancel(out);
                    s->sink_ = nullptr;  // nobody listens any more
                    out.clear();
                    finish_answer(s.get(), true);
                }
                s->conv_.reset();
                {
                    std::lock_guard<std::mutex> lk(mu_);
                    live_.erase(std::find(live_.begin(), live_.end(), s));
                }
                in_use_--;
                metrics_.sessions_active--;
                continue;
            }
            // A cancel asked before this round's commands applies to the answer running now, not to
            // one the commands start.
            if (cancel && s->generating_ && s->conv_) {
                s->conv_->cancel(out);
                deliver(s.get(), out);
                if (s->generating_) {  // the engine reports the cancellation at its next step
                    s->conv_->step(out);
                    deliver(s.get(), out);
                }
            }
            for (auto& c : cmds) c();
            if (s->generating_) stepping.push_back(s.get());
        }
        // Every answer in progress advances by one step, together (the engine batches them).
        if (stepping.empty()) continue;
        convs.clear();
        for (Slot* s : stepping) convs.push_back(s->conv_.get());
        const auto t0 = std::chrono::steady_clock::now();
        const int rows = engine_.step_many(convs, outs, more);
        const double dt =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        metrics_.steps_total += stepping.size();
        metrics_.step_seconds.observe(dt);
        metrics_.batch_rows.observe(double(rows));
        record_round(static_cast<int>(stepping.size()), dt * 1000.0);
        metrics_.capacity_sessions = capacity();
        for (size_t i = 0; i < stepping.size(); ++i) {
            std::vector<EngineEvent>& o = outs[i];
            if (!more[i] && (o.empty() || o.back().kind != EngineEvent::kDone)) {
                EngineEvent ev;
                ev.kind = EngineEvent::kDone;
                ev.finish = "error";
                ev.error = "the engine ended the answer without saying why";
                o.push_back(std::move(ev));
            }
            deliver(stepping[i], o);
        }
        stepping.clear();
    }
    // Shutting down: drop every conversation on this thread.
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& s : live_) s->conv_.reset();
    for (auto& s : added_) s->conv_.reset();
}

}  // namespace voxrt::server
