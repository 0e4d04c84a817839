#include "runtime/detok_stream.h"

#include <algorithm>
#include <chrono>

#include "runtime/util.h"

namespace voxrt::runtime {

void DetokStream::init(const model::Detokenizer* det, const ops::Context* ctx,
                       model::DetokenizerState* st, DetokWorker* worker) {
    det_ = det;
    ctx_ = ctx;
    st_ = st;
    worker_ = worker;
}

void DetokStream::begin(bool enabled, int chunk_frames, bool async, bool ramp) {
    enabled_ = enabled && det_ != nullptr;
    async_ = async && worker_ != nullptr;
    first_async_ = false;
    chunk_frames_ = chunk_frames;
    target_ = ramp ? std::min(2, chunk_frames) : chunk_frames;
    pending_ = 0;
    last_step_ = 0;
    started_ = false;
    wait_ms_ = busy_ms_ = 0;
    results_.clear();
    if (enabled_) det_->reset(*st_);
}

Status DetokStream::take_results(std::vector<DetokWorker::Result>& results,
                                 std::vector<Chunk>& out) {
    Status first;
    for (DetokWorker::Result& r : results) {
        if (!r.status && first) first = r.status;
        if (!r.status) continue;
        busy_ms_ += r.ms;
        if (!r.pcm.empty()) out.push_back(Chunk{r.step, std::move(r.pcm)});
    }
    results.clear();
    return first;
}

// Detokenizes the buffered frames in one call, or hands them to the worker. The turn's first frame
// is detokenized here even with a worker (idle then): its samples are the first the listener hears,
// and on a GPU the worker's kernels would wait behind decode kernels. Not with first_async_ (set
// by a batch step in which many conversations reach audio at once, which would all wait for them).
Status DetokStream::drain(std::vector<Chunk>& out) {
    if (pending_ == 0) return Status::ok();
    if (async_ && (started_ || first_async_)) {
        worker_->submit(codes_.data(), pending_, last_step_);
        pending_ = 0;
        started_ = true;
        return Status::ok();
    }
    const auto t0 = Clock::now();
    Chunk c{last_step_, {}};
    VOXRT_RETURN_IF_ERROR(det_->step(*ctx_, *st_, codes_.data(), pending_, c.pcm));
    const double ms = ms_since(t0);
    wait_ms_ += ms;
    busy_ms_ += ms;
    pending_ = 0;
    started_ = true;
    if (!c.pcm.empty()) out.push_back(std::move(c));
    return Status::ok();
}

Status DetokStream::push(const int32_t* codes, int step, std::vector<Chunk>& out) {
    if (!enabled_) return Status::ok();
    std::copy(codes, codes + model::kDetokCodebooks,
              codes_.begin() + pending_ * model::kDetokCodebooks);
    ++pending_;
    last_step_ = step;
    if (!started_) return drain(out);
    if (pending_ < target_) return Status::ok();
    target_ = std::min(2 * target_, chunk_frames_);
    return drain(out);
}

Status DetokStream::poll(std::vector<Chunk>& out) {
    if (!enabled_ || !async_) return Status::ok();
    worker_->take(results_);
    return take_results(results_, out);
}

Status DetokStream::finish(int step, std::vector<Chunk>& out) {
    if (!enabled_) return Status::ok();
    if (async_) {
        VOXRT_RETURN_IF_ERROR(finish_begin(step, out));
        return finish_wait(out);
    }
    VOXRT_RETURN_IF_ERROR(drain(out));
    const auto t0 = Clock::now();
    Chunk c{step, {}};
    VOXRT_RETURN_IF_ERROR(det_->flush(*ctx_, *st_, c.pcm));
    const double ms = ms_since(t0);
    wait_ms_ += ms;
    busy_ms_ += ms;
    if (!c.pcm.empty()) out.push_back(std::move(c));
    return Status::ok();
}

Status DetokStream::finish_begin(int step, std::vector<Chunk>& out) {
    if (!enabled_ || !async_) return finish(step, out);
    VOXRT_RETURN_IF_ERROR(drain(out));
    worker_->submit_flush(step);
    return Status::ok();
}

Expected<bool> DetokStream::finish_poll(std::vector<Chunk>& out) {
    if (!enabled_ || !async_) return true;
    const bool all = worker_->finished(results_);
    VOXRT_RETURN_IF_ERROR(take_results(results_, out));
    return all;
}

Status DetokStream::finish_wait(std::vector<Chunk>& out) {
    if (!enabled_ || !async_) return Status::ok();
    const auto t0 = Clock::now();
    worker_->wait(results_);
    wait_ms_ += ms_since(t0);
    return take_results(results_, out);
}

void DetokStream::abort() {
    if (worker_) {
        std::vector<DetokWorker::Result> rest;
        worker_->wait(rest);
    }
    pending_ = 0;
    results_.clear();
}

}  // namespace voxrt::runtime
