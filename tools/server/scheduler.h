// Scheduler: the one thread that runs the engine. Every Conversation lives on it; network threads
// hand it commands and read answers back through sinks.
//
// Why one engine thread working in rounds (and not a thread per session with a fair lock): the
// engine has one device queue, so work of different sessions is serialised anyway; with one thread
// each round is explicit: every session's commands run, then every session with an answer in
// progress advances by exactly one step, all of them in one batched engine call
// (Engine::step_many, continuous batching: a session joins the batch the round its answer starts
// and leaves it the round it ends). A session whose client left is dropped between two rounds
// (its slot is free within one step), and no engine state is ever touched from two threads.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine.h"
#include "metrics.h"

namespace voxrt::server {

class Scheduler;

// A client's hold on one session slot. Dropping the last reference (or calling release()) ends
// the conversation: an answer in progress is cancelled, and the slot is free after the engine's
// current step.
class Slot {
public:
    using Command = std::function<void(Conversation*, const std::string& open_error)>;
    // Called on the engine thread for each event of the answer; must be quick (hand the event to
    // the network thread) and must not call back into the scheduler.
    using Sink = std::function<void(EngineEvent&&)>;

    ~Slot();
    // Opens the conversation (first, before any other command).
    void open(const ConversationOptions& opt);
    // Runs `cmd` on the engine thread, in order with this slot's other commands. The conversation
    // is null if the engine could not open it (the error says why).
    void post(Command cmd);
    // Starts an answer after the commands posted before it. The sink gets every event; the last
    // is kDone.
    void respond(const ResponseOptions& opt, Sink sink);
    // Ends the answer in progress, if any (its kDone says "cancelled").
    void cancel();
    void release();
    bool responding() const { return responding_.load(); }

private:
    friend class Scheduler;
    explicit Slot(Scheduler& s) : sched_(s) {}
    Scheduler& sched_;
    // guarded by Scheduler::mu_
    std::deque<std::function<void()>> cmds_;
    bool cancel_ = false;
    bool released_ = false;
    // engine thread only
    std::unique_ptr<Conversation> conv_;
    std::string open_error_ = "no conversation was opened";
    bool generating_ = false;
    Sink sink_;
    std::chrono::steady_clock::time_point t_start_;
    bool got_audio_ = false;
    std::atomic<bool> responding_{false};
};

class Scheduler {
public:
    // round_budget_ms > 0: admission control. A session is admitted only while the rounds measured
    // so far say that one more would keep a round (one step of every answer) within the budget:
    // each round's time and size go into a least-squares fit ms = a + b·answers over the last
    // kRounds rounds, and the next client is refused when a + b·(slots in use + 1) exceeds the
    // budget (every held slot may be answering at once). Until kMinRounds rounds are measured
    // only the slot count limits. 40 ms is the real-time bound: a conversation needs ~12.5 audio
    // frames a second plus its text steps, i.e. a step about every 40-50 ms.
    //
    // commands_budget_ms > 0: while answers are running, a round runs the sessions' commands
    // (opening conversations, adding messages and audio: a new turn's resampling, mel and
    // encoder run there) only until they have taken that long; the remaining sessions' commands
    // wait for the next round, which begins with them. Every running answer's next step then
    // waits at most about this long (plus one session's commands) for new turns, however many
    // arrive at once. 0: every round runs every command.
    Scheduler(Engine& engine, int slots, Metrics& metrics, double round_budget_ms = 0,
              double commands_budget_ms = 0);
    ~Scheduler();
    // A free slot, or null (the caller refuses the client): every slot in use, or the measured
    // capacity reached; *why (optional) says which, for the client.
    std::shared_ptr<Slot> acquire(std::string* why = nullptr);
    // Sessions the measured rounds say fit the budget (-1: no budget, or too few rounds yet).
    int capacity() const;
    static constexpr int kRounds = 256, kMinRounds = 16;
    int slots() const { return slots_; }
    int in_use() const { return in_use_.load(); }
    int responding() const { return responding_.load(); }
    Engine& engine() { return engine_; }

private:
    friend class Slot;
    void run();
    void wake();

    // Under adm_mu_: the fit's intercept and slope (ms, ms per answer); false: too few rounds.
    bool fit(double* a, double* b) const;
    void record_round(int answers, double ms);

    Engine& engine_;
    const int slots_;
    Metrics& metrics_;
    const double budget_ms_;
    const double commands_budget_ms_;
    mutable std::mutex adm_mu_;
    struct Round {
        int answers;
        double ms;
    };
    std::vector<Round> rounds_;  // a ring of the last kRounds
    size_t round_next_ = 0;
    std::atomic<int> in_use_{0};
    std::atomic<int> responding_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::vector<std::shared_ptr<Slot>> live_;  // engine thread's list (added under mu_)
    std::vector<std::shared_ptr<Slot>> added_;
    Slot* resume_ = nullptr;  // engine thread: the first slot whose commands the budget deferred
    std::thread thread_;
};

}  // namespace voxrt::server
