// DetokStream: the audio frames of one response to PCM, beside the turn's state machine. Frames are
// buffered and detokenized in chunks: the turn's first frame alone and at once (first-sample
// latency does not depend on the chunk size), later ones `chunk_frames` at a time (or in chunks
// growing 2, 4, … up to that, with `ramp`), the rest when
// the turn ends, however it ends. With a DetokWorker the chunks after the first run on its thread
// (on CUDA its own stream) while generation goes on; their PCM is picked up by poll() at the next
// step boundary. The PCM is the same either way.
//
// Not thread-safe (the session's thread drives it; the worker is internal).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/audio_decoder.h"
#include "ops/ops.h"
#include "runtime/detok_worker.h"

namespace voxrt::runtime {

class DetokStream {
public:
    struct Chunk {
        int step = 0;  // the step of the chunk's last frame (the turn's last step for the tail)
        std::vector<float> pcm;
    };

    // `det`, `ctx`, `st` and `worker` (optional) must outlive the stream.
    void init(const model::Detokenizer* det, const ops::Context* ctx, model::DetokenizerState* st,
              DetokWorker* worker);

    // Starts a response; `enabled` false: push/poll/finish do nothing.
    // `ramp`: chunks after the first frame grow 2, 4, … up to `chunk_frames`.
    void begin(bool enabled, int chunk_frames, bool async, bool ramp = false);
    bool enabled() const { return enabled_; }
    // Whether the turn's first frame has gone in (to the worker or through the detokenizer).
    bool started() const { return started_; }
    // With a worker, before the turn's first frame is pushed: true hands it to the worker too
    // instead of detokenizing it at once on the caller's thread (begin() resets it to false).
    void set_first_async(bool on) { first_async_ = async_ && on; }

    // A decodable frame's first kDetokCodebooks codes, chosen at `step`.
    Status push(const int32_t* codes, int step, std::vector<Chunk>& out);
    // The worker's finished chunks, without waiting.
    Status poll(std::vector<Chunk>& out);
    // The end of the response: the buffered frames, the flush, and everything the worker still
    // has. `step`: the response's step count.
    Status finish(int step, std::vector<Chunk>& out);
    // The same end without waiting for the worker (a session in a batch, whose wait would hold up
    // every session of the step): finish_begin hands the buffered frames and the flush to the
    // worker; finish_poll appends what is done and says whether everything is in; finish_wait
    // waits for the rest. Without a worker, finish_begin is finish() and finish_poll is true.
    Status finish_begin(int step, std::vector<Chunk>& out);
    Expected<bool> finish_poll(std::vector<Chunk>& out);
    Status finish_wait(std::vector<Chunk>& out);
    // After an error: waits until the worker is idle and drops what is buffered.
    void abort();

    double wait_ms() const { return wait_ms_; }  // time the generating thread spent on it
    double busy_ms() const { return busy_ms_; }  // detokenizer work, wherever it ran

private:
    Status drain(std::vector<Chunk>& out);
    Status take_results(std::vector<DetokWorker::Result>& results, std::vector<Chunk>& out);

    const model::Detokenizer* det_ = nullptr;
    const ops::Context* ctx_ = nullptr;
    model::DetokenizerState* st_ = nullptr;
    DetokWorker* worker_ = nullptr;
    bool enabled_ = false;
    bool async_ = false;
    bool first_async_ = false;
    int chunk_frames_ = 8;
    int target_ = 8;  // frames the next chunk takes
    std::array<int32_t, model::kDetokMaxStepFrames * model::kDetokCodebooks> codes_{};
    int pending_ = 0;
    int last_step_ = 0;
    bool started_ = false;  // the turn's first frame has been detokenized
    double wait_ms_ = 0, busy_ms_ = 0;
    std::vector<DetokWorker::Result> results_;
};

}  // namespace voxrt::runtime
