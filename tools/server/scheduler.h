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
    Scheduler(Engine& engine, int slots, Metrics& metrics);
    ~Scheduler();
    // A free slot, or null when all are in use (the caller refuses the client).
    std::shared_ptr<Slot> acquire();
    int slots() const { return slots_; }
    int in_use() const { return in_use_.load(); }
    int responding() const { return responding_.load(); }
    Engine& engine() { return engine_; }

private:
    friend class Slot;
    void run();
    void wake();

    Engine& engine_;
    const int slots_;
    Metrics& metrics_;
    std::atomic<int> in_use_{0};
    std::atomic<int> responding_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::vector<std::shared_ptr<Slot>> live_;  // engine thread's list (added under mu_)
    std::vector<std::shared_ptr<Slot>> added_;
    std::thread thread_;
};

}  // namespace voxrt::server
