// A session's streaming detokenizer on its own thread (and, on CUDA, its own stream), so that
// generation never waits for it: chunks of frames go in, in order; their PCM comes out in the same
// order, picked up by the generating thread at its next step boundary (session.cpp). On the CPU, a
// worker that has fallen behind computes the queued chunks together, in steps of up to
// Detokenizer::max_step_frames() frames, and hands each chunk its own samples back; on CUDA it
// runs them one by one, so that the PCM never depends on timing (detok_worker.cpp says why).
//
// Or, for the sessions of one engine thread (a shared lane: voxrt serve, the sessions bench), the
// workers share one DetokBatcher: one thread (and on CUDA one context and stream) that takes, each
// round, the queued chunks of every worker that fit one step and runs them together as one
// Detokenizer::step_many. A conversation's chunks still run in order.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/status.h"
#include "model/audio_decoder.h"
#include "ops/ops.h"

namespace voxrt::runtime {

class DetokBatcher;

class DetokWorker {
public:
    struct Result {
        int step = 0;            // the step the PCM belongs to (as given to submit)
        std::vector<float> pcm;  // samples that became final with this job
        double ms = 0;           // time the job took on the worker (its share of a joined step)
        int joined = 1;  // chunks computed in the same step as this one (a batcher's: of all
                         // its workers)
        Status status;   // an error stops nothing else: later jobs still run
    };

    // `det`, `ctx` and `st` must outlive the worker; `st` is only touched by the worker's thread
    // while a job is queued or running (callers reset it only when idle(), e.g. between turns).
    DetokWorker(const model::Detokenizer& det, const ops::Context& ctx,
                model::DetokenizerState& st);
    // A worker without a thread: its jobs run on `batcher`'s (which must outlive it).
    DetokWorker(model::DetokenizerState& st, DetokBatcher& batcher);
    // Finishes the queued jobs, then joins the thread (or leaves the batcher).
    ~DetokWorker();
    DetokWorker(const DetokWorker&) = delete;
    DetokWorker& operator=(const DetokWorker&) = delete;

    // n_frames (1 .. kDetokMaxStepFrames) frames, host I32 [n_frames, kDetokCodebooks]
    // frame-major (copied), to Detokenizer::step.
    void submit(const int32_t* codes, int n_frames, int step);
    // Detokenizer::flush: the end of the utterance.
    void submit_flush(int step);
    // Appends the finished results, in submission order, without waiting.
    void take(std::vector<Result>& out);
    // Waits until every submitted job has finished, then appends the remaining results (not while
    // paused).
    void wait(std::vector<Result>& out);
    // Appends the finished results without waiting; true when every submitted job has finished
    // (all results are then in `out`).
    bool finished(std::vector<Result>& out);
    // While paused, jobs queue up and none starts (tests use it to queue several at once).
    void pause();
    void resume();

private:
    friend class DetokBatcher;
    struct Job {
        bool flush = false;
        int n_frames = 0;
        int step = 0;
        std::array<int32_t, model::kDetokMaxStepFrames * model::kDetokCodebooks> codes{};
    };
    void loop();
    // Consecutive chunks' codes in one frame-major block (a joined step's input); returns its
    // frames.
    static int join_codes(const std::vector<Job>& jobs, std::vector<int32_t>& codes);
    // A joined step's samples handed back per chunk (Detokenizer::step_samples), the state having
    // had frames_before frames before the step.
    static void split_samples(const std::vector<float>& pcm, int64_t frames_before,
                              const std::vector<Job>& jobs, std::vector<Result>& results);
    // Detokenizer::step for consecutive chunks (as one step when there are several).
    void run_steps(const std::vector<Job>& batch, std::vector<int32_t>& codes,
                   std::vector<float>& pcm, std::vector<Result>& results);

    const model::Detokenizer* det_ = nullptr;  // own thread only
    ops::Context ctx_;
    model::DetokenizerState& st_;
    DetokBatcher* batcher_ = nullptr;
    std::mutex mu_;
    std::condition_variable cv_job_, cv_done_;
    std::deque<Job> jobs_;
    std::vector<Result> done_;
    bool running_ = false;  // a job is between pop and its result
    bool stop_ = false;
    bool paused_ = false;
    std::thread thread_;
};

// The shared detokenizer thread of many DetokWorkers (above). Each round takes, from every worker
// that is not paused, its first queued job, or, when that is a chunk, every queued chunk that fits
// one step with it (a worker that has fallen behind catches up in one round, as a worker on its
// own thread does on the CPU): the chunks run together in Detokenizer::step_many calls of at most
// max_rows rows, the flushes together in one Detokenizer::flush_many. A chunk's PCM is what its
// worker would compute alone on the CPU, bit for bit; on a GPU the products over all rows may sum
// in another order (Detokenizer::step_many).
class DetokBatcher {
public:
    // `ctx` is the thread's (on CUDA its own stream); destroyed with the batcher when `owns_ctx`.
    static Expected<std::unique_ptr<DetokBatcher>> create(const model::Detokenizer& det,
                                                          const ops::Context& ctx, bool owns_ctx,
                                                          int64_t max_rows);
    // Every worker must have left first.
    ~DetokBatcher();
    DetokBatcher(const DetokBatcher&) = delete;
    DetokBatcher& operator=(const DetokBatcher&) = delete;

    const ops::Context& context() const { return ctx_; }
    size_t device_bytes() const { return batch_.device_bytes(); }
    // Rounds run and chunks computed since creation (tests, /metrics).
    int64_t steps() const;
    int64_t chunks() const;
    // While paused no round starts (tests use it to queue several workers' jobs first).
    void pause();
    void resume();

private:
    friend class DetokWorker;
    DetokBatcher(const model::Detokenizer& det, const ops::Context& ctx, bool owns_ctx,
                 model::DetokenizerBatch batch);
    void add(DetokWorker* w);
    void remove(DetokWorker* w);
    void notify();
    void loop();
    // A worker's share of a round: its first queued job, or (chunks only) its queued chunks that
    // fit one step, run as one job of the step_many (their samples split per chunk after).
    struct Taken {
        DetokWorker* worker = nullptr;
        std::vector<DetokWorker::Job> jobs;
        std::vector<DetokWorker::Result> results;
        std::vector<int32_t> codes;  // the chunks' codes, frame-major, when there are several
        std::vector<float> pcm;      // the joined step's samples
        int64_t frames_before = 0;   // the state's frames() before the step
        int n_frames = 0;
        bool flush() const { return jobs.front().flush; }
    };
    void run_chunks(std::vector<Taken*>& chunks);
    // Hands a joined step's samples to its chunks, or (when it was rejected) runs them one by one.
    // `joined`: the chunks of the whole step; `ms`: the worker's share of its time.
    void split_joined(Taken& t, const Status& s, bool call_ok, int joined, double ms);

    const model::Detokenizer& det_;
    ops::Context ctx_;
    bool owns_ctx_ = false;
    model::DetokenizerBatch batch_;
    mutable std::mutex mu_;  // before any worker's mu_, never after
    std::condition_variable cv_;
    std::vector<DetokWorker*> workers_;
    bool pending_ = false;
    bool stop_ = false;
    bool paused_ = false;
    int64_t steps_ = 0, chunks_ = 0;
    std::thread thread_;
};

}  // namespace voxrt::runtime
