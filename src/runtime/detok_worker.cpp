#include "runtime/detok_worker.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "backend/device.h"
#include "core/check.h"

namespace voxrt::runtime {

DetokWorker::DetokWorker(const model::Detokenizer& det, const ops::Context& ctx,
                         model::DetokenizerState& st)
    : det_(&det), ctx_(ctx), st_(st) {
    thread_ = std::thread([this] { loop(); });
}

DetokWorker::DetokWorker(model::DetokenizerState& st, DetokBatcher& batcher)
    : ctx_(batcher.context()), st_(st), batcher_(&batcher) {
    batcher.add(this);
}

DetokWorker::~DetokWorker() {
    if (batcher_) {
        // The queued jobs finish on the batcher's thread; then the worker leaves it.
        {
            std::unique_lock<std::mutex> lk(mu_);
            paused_ = false;
        }
        batcher_->notify();
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_done_.wait(lk, [this] { return jobs_.empty() && !running_; });
        }
        batcher_->remove(this);
        return;
    }
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_job_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void DetokWorker::submit(const int32_t* codes, int n_frames, int step) {
    Job j;
    j.n_frames = n_frames;
    j.step = step;
    const int n = std::clamp(n_frames, 0, model::kDetokMaxStepFrames) * model::kDetokCodebooks;
    std::copy(codes, codes + n, j.codes.begin());
    {
        std::lock_guard<std::mutex> lk(mu_);
        jobs_.push_back(j);
    }
    if (batcher_)
        batcher_->notify();
    else
        cv_job_.notify_one();
}

void DetokWorker::submit_flush(int step) {
    Job j;
    j.flush = true;
    j.step = step;
    {
        std::lock_guard<std::mutex> lk(mu_);
        jobs_.push_back(j);
    }
    if (batcher_)
        batcher_->notify();
    else
        cv_job_.notify_one();
}

void DetokWorker::take(std::vector<Result>& out) {
    std::lock_guard<std::mutex> lk(mu_);
    for (Result& r : done_) out.push_back(std::move(r));
    done_.clear();
}

bool DetokWorker::finished(std::vector<Result>& out) {
    std::lock_guard<std::mutex> lk(mu_);
    for (Result& r : done_) out.push_back(std::move(r));
    done_.clear();
    return jobs_.empty() && !running_;
}

void DetokWorker::wait(std::vector<Result>& out) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [this] { return jobs_.empty() && !running_; });
    for (Result& r : done_) out.push_back(std::move(r));
    done_.clear();
}

void DetokWorker::pause() {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = true;
}

void DetokWorker::resume() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        paused_ = false;
    }
    if (batcher_)
        batcher_->notify();
    else
        cv_job_.notify_all();
}

void DetokWorker::loop() {
    using Clock = std::chrono::steady_clock;
    std::vector<Job> batch;
    std::vector<int32_t> codes(
        static_cast<size_t>(model::kDetokMaxStepFrames * model::kDetokCodebooks));
    std::vector<float> pcm;  // a joined step's samples, before they are handed out
    std::vector<Result> results;
    for (;;) {
        batch.clear();
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_job_.wait(lk, [this] { return stop_ || (!paused_ && !jobs_.empty()); });
            if (jobs_.empty()) return;  // stop_ with nothing left
            // A worker that has fallen behind takes every queued chunk that fits one step: a step
            // costs about the same launches and one synchronize whatever its rows
            // (audio_decoder.h). Only on the CPU, where the detokenizer's fp32 products give a row
            // the same bits whatever the number of rows (docs/detokenizer.md; tested): on CUDA a
            // joined step's products take another kernel (the GEMV up to 8 rows, a cuBLAS GEMM
            // above, whose algorithm depends on the row count), so the PCM would depend on how far
            // behind the worker happened to be, and a conversation's audio on the load beside it
            // (measured: 9 of 30 rounds of ApiThreads.EachSessionEqualsItselfAlone on an H100
            // differed in PCM, never in codes).
            const bool may_join = ctx_.device == Device::kCPU;
            int frames = 0;
            while (!jobs_.empty()) {
                const Job& j = jobs_.front();
                if (!batch.empty() && (!may_join || j.flush || batch.front().flush ||
                                       frames + j.n_frames > det_->max_step_frames()))
                    break;
                frames += j.flush ? 0 : j.n_frames;
                batch.push_back(j);
                jobs_.pop_front();
            }
            running_ = true;
        }
        results.assign(batch.size(), Result{});
        const auto t0 = Clock::now();
        if (batch.front().flush) {
            results[0].status = det_->flush(ctx_, st_, results[0].pcm);
        } else {
            run_steps(batch, codes, pcm, results);
        }
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        int total = 0;
        for (const Job& j : batch) total += j.n_frames;
        for (size_t i = 0; i < batch.size(); ++i) {
            results[i].step = batch[i].step;
            results[i].joined = static_cast<int>(batch.size());
            results[i].ms = batch[i].flush || total == 0 ? ms : ms * batch[i].n_frames / total;
        }
        {
            std::lock_guard<std::mutex> lk(mu_);
            for (Result& r : results) done_.push_back(std::move(r));
            running_ = false;
        }
        cv_done_.notify_all();
    }
}

void DetokWorker::run_steps(const std::vector<Job>& batch, std::vector<int32_t>& codes,
                            std::vector<float>& pcm, std::vector<Result>& results) {
    if (batch.size() > 1) {
        // One step for all, its samples handed back per chunk (Detokenizer::step_samples).
        const int64_t before = st_.frames();
        int frames = 0;
        for (const Job& j : batch) {
            std::copy(j.codes.begin(), j.codes.begin() + j.n_frames * model::kDetokCodebooks,
                      codes.begin() + frames * model::kDetokCodebooks);
            frames += j.n_frames;
        }
        pcm.clear();
        Status s = det_->step(ctx_, st_, codes.data(), frames, pcm);
        if (s.is_ok()) {
            size_t at = 0;
            int64_t done = before;
            for (size_t i = 0; i < batch.size(); ++i) {
                const size_t n =
                    static_cast<size_t>(model::Detokenizer::step_samples(done, batch[i].n_frames));
                done += batch[i].n_frames;
                VOXRT_ASSERT(at + n <= pcm.size(),
                             "detokenizer step returned %zu samples, expected more", pcm.size());
                results[i].pcm.assign(pcm.begin() + static_cast<std::ptrdiff_t>(at),
                                      pcm.begin() + static_cast<std::ptrdiff_t>(at + n));
                at += n;
            }
            VOXRT_ASSERT(at == pcm.size(), "detokenizer step returned %zu samples, expected %zu",
                         pcm.size(), at);
            return;
        }
        // A rejected step changes nothing (Detokenizer::step validates first): run the chunks one
        // by one, so that only the bad one fails, as without joining.
    }
    for (size_t i = 0; i < batch.size(); ++i)
        results[i].status =
            det_->step(ctx_, st_, batch[i].codes.data(), batch[i].n_frames, results[i].pcm);
}

// ---- DetokBatcher ------------------------------------------------------------------------------

Expected<std::unique_ptr<DetokBatcher>> DetokBatcher::create(const model::Detokenizer& det,
                                                             const ops::Context& ctx, bool owns_ctx,
                                                             int64_t max_rows) {
    Expected<model::DetokenizerBatch> b = det.new_batch(ctx, max_rows);
    if (!b.is_ok()) {
        ops::Context c = ctx;
        if (owns_ctx) backend::destroy_context(c);
        return b.status();
    }
    return std::unique_ptr<DetokBatcher>(
        new DetokBatcher(det, ctx, owns_ctx, std::move(b).value()));
}

DetokBatcher::DetokBatcher(const model::Detokenizer& det, const ops::Context& ctx, bool owns_ctx,
                           model::DetokenizerBatch batch)
    : det_(det), ctx_(ctx), owns_ctx_(owns_ctx), batch_(std::move(batch)) {
    thread_ = std::thread([this] { loop(); });
}

DetokBatcher::~DetokBatcher() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        VOXRT_ASSERT(workers_.empty(), "DetokBatcher destroyed with %zu workers", workers_.size());
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    batch_.release();
    if (owns_ctx_) backend::destroy_context(ctx_);
}

int64_t DetokBatcher::steps() const {
    std::lock_guard<std::mutex> lk(mu_);
    return steps_;
}

int64_t DetokBatcher::chunks() const {
    std::lock_guard<std::mutex> lk(mu_);
    return chunks_;
}

void DetokBatcher::pause() {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = true;
}

void DetokBatcher::resume() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        paused_ = false;
    }
    cv_.notify_one();
}

void DetokBatcher::add(DetokWorker* w) {
    std::lock_guard<std::mutex> lk(mu_);
    workers_.push_back(w);
}

void DetokBatcher::remove(DetokWorker* w) {
    std::lock_guard<std::mutex> lk(mu_);
    workers_.erase(std::remove(workers_.begin(), workers_.end(), w), workers_.end());
}

void DetokBatcher::notify() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        pending_ = true;
    }
    cv_.notify_one();
}

void DetokBatcher::loop() {
    using Clock = std::chrono::steady_clock;
    std::vector<Taken> taken;
    std::vector<Taken*> chunks, flushes;
    for (;;) {
        taken.clear();
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [this] { return stop_ || (pending_ && !paused_); });
            if (stop_) return;  // no worker is left (the destructor checks)
            pending_ = false;
            for (DetokWorker* w : workers_) {
                std::lock_guard<std::mutex> wl(w->mu_);
                if (w->paused_ || w->jobs_.empty()) continue;
                taken.push_back(Taken{w, w->jobs_.front(), DetokWorker::Result{}});
                w->jobs_.pop_front();
                w->running_ = true;
            }
            // A worker with more queued jobs gives its next one in the next round.
            if (!taken.empty()) pending_ = true;
        }
        if (taken.empty()) continue;
        chunks.clear();
        flushes.clear();
        for (Taken& t : taken) {
            t.result.step = t.job.step;
            (t.job.flush ? flushes : chunks).push_back(&t);
        }
        run_chunks(chunks);
        if (!flushes.empty()) {  // the round's utterance ends, with one synchronization
            std::vector<model::DetokenizerJob> jobs;
            for (Taken* t : flushes)
                jobs.push_back(model::DetokenizerJob{&t->worker->st_, nullptr, 0, &t->result.pcm,
                                                     Status::ok()});
            const auto t0 = Clock::now();
            const Status s = det_.flush_many(ctx_, batch_, jobs.data(), jobs.size());
            const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            for (size_t k = 0; k < flushes.size(); ++k) {
                flushes[k]->result.status = s.is_ok() ? jobs[k].status : s;
                flushes[k]->result.ms = ms / static_cast<double>(flushes.size());
                flushes[k]->result.joined = static_cast<int>(flushes.size());
            }
        }
        int64_t n_chunks = 0;
        for (Taken& t : taken) {
            n_chunks += t.job.flush ? 0 : 1;
            DetokWorker* w = t.worker;
            std::lock_guard<std::mutex> wl(w->mu_);
            w->done_.push_back(std::move(t.result));
            w->running_ = false;
            // Under the worker's lock: its destructor may return as soon as it sees this.
            w->cv_done_.notify_all();
        }
        std::lock_guard<std::mutex> lk(mu_);
        ++steps_;
        chunks_ += n_chunks;
    }
}

void DetokBatcher::run_chunks(std::vector<Taken*>& chunks) {
    using Clock = std::chrono::steady_clock;
    std::vector<model::DetokenizerJob> jobs;
    size_t at = 0;
    while (at < chunks.size()) {
        // As many chunks as fit one step (each fits alone: max_rows >= 6 · kDetokMaxStepFrames).
        jobs.clear();
        int64_t rows = 0, frames = 0;
        size_t end = at;
        for (; end < chunks.size(); ++end) {
            const DetokWorker::Job& j = chunks[end]->job;
            const int64_t r = model::kDetokUpsample * std::max(j.n_frames, 1);
            if (end > at && rows + r > batch_.max_rows()) break;
            rows += r;
            frames += j.n_frames;
            jobs.push_back(model::DetokenizerJob{&chunks[end]->worker->st_, j.codes.data(),
                                                 j.n_frames, &chunks[end]->result.pcm,
                                                 Status::ok()});
        }
        const auto t0 = Clock::now();
        const Status s = det_.step_many(ctx_, batch_, jobs.data(), jobs.size());
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        for (size_t k = 0; k < jobs.size(); ++k) {
            DetokWorker::Result& r = chunks[at + k]->result;
            r.status = s.is_ok() ? jobs[k].status : s;
            r.joined = static_cast<int>(jobs.size());
            r.ms = frames > 0 ? ms * jobs[k].n_frames / static_cast<double>(frames) : ms;
        }
        at = end;
    }
}

}  // namespace voxrt::runtime
