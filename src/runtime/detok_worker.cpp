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
    std::vector<int32_t> codes;  // a joined step's codes
    codes.reserve(static_cast<size_t>(model::kDetokMaxStepFrames * model::kDetokCodebooks));
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

int DetokWorker::join_codes(const std::vector<Job>& jobs, std::vector<int32_t>& codes) {
    codes.clear();
    int frames = 0;
    for (const Job& j : jobs) {
        codes.insert(codes.end(), j.codes.begin(),
                     j.codes.begin() + j.n_frames * model::kDetokCodebooks);
        frames += j.n_frames;
    }
    return frames;
}

void DetokWorker::split_samples(const std::vector<float>& pcm, int64_t frames_before,
                                const std::vector<Job>& jobs, std::vector<Result>& results) {
    size_t at = 0;
    int64_t done = frames_before;
    for (size_t i = 0; i < jobs.size(); ++i) {
        const size_t n =
            static_cast<size_t>(model::Detokenizer::step_samples(done, jobs[i].n_frames));
        done += jobs[i].n_frames;
        VOXRT_ASSERT(at + n <= pcm.size(), "detokenizer step returned %zu samples, expected more",
                     pcm.size());
        results[i].pcm.assign(pcm.begin() + static_cast<std::ptrdiff_t>(at),
                              pcm.begin() + static_cast<std::ptrdiff_t>(at + n));
        at += n;
    }
    VOXRT_ASSERT(at == pcm.size(), "detokenizer step returned %zu samples, expected %zu",
                 pcm.size(), at);
}

void DetokWorker::run_steps(const std::vector<Job>& batch, std::vector<int32_t>& codes,
                            std::vector<float>& pcm, std::vector<Result>& results) {
    if (batch.size() > 1) {
        // One step for all, its samples handed back per chunk.
        const int64_t before = st_.frames();
        const int frames = join_codes(batch, codes);
        pcm.clear();
        Status s = det_->step(ctx_, st_, codes.data(), frames, pcm);
        if (s.is_ok()) {
            split_samples(pcm, before, batch, results);
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
    std::vector<Taken> taken;  // reused: each worker's vectors keep their capacity
    std::vector<Taken*> chunks, flushes;
    for (;;) {
        size_t n_taken = 0;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [this] { return stop_ || (pending_ && !paused_); });
            if (stop_) return;  // no worker is left (the destructor checks)
            pending_ = false;
            for (DetokWorker* w : workers_) {
                std::lock_guard<std::mutex> wl(w->mu_);
                if (w->paused_ || w->jobs_.empty()) continue;
                if (n_taken == taken.size()) taken.emplace_back();
                Taken& t = taken[n_taken++];
                t.worker = w;
                t.jobs.clear();
                t.n_frames = 0;
                // Its first job; after a chunk, the chunks queued behind it that fit one step.
                while (!w->jobs_.empty()) {
                    const DetokWorker::Job& j = w->jobs_.front();
                    if (!t.jobs.empty() &&
                        (j.flush || t.n_frames + j.n_frames > det_.max_step_frames()))
                        break;
                    const bool flush = j.flush;
                    t.n_frames += flush ? 0 : j.n_frames;
                    t.jobs.push_back(j);
                    w->jobs_.pop_front();
                    if (flush) break;
                }
                w->running_ = true;
            }
            // A worker with more queued jobs gives its next ones in the next round.
            if (n_taken > 0) pending_ = true;
        }
        if (n_taken == 0) continue;
        chunks.clear();
        flushes.clear();
        for (size_t i = 0; i < n_taken; ++i) {
            Taken& t = taken[i];
            t.results.assign(t.jobs.size(), DetokWorker::Result{});
            for (size_t k = 0; k < t.jobs.size(); ++k) t.results[k].step = t.jobs[k].step;
            (t.flush() ? flushes : chunks).push_back(&t);
        }
        run_chunks(chunks);
        if (!flushes.empty()) {  // the round's utterance ends, with one synchronization
            std::vector<model::DetokenizerJob> jobs;
            for (Taken* t : flushes)
                jobs.push_back(model::DetokenizerJob{&t->worker->st_, nullptr, 0,
                                                     &t->results[0].pcm, Status::ok()});
            const auto t0 = Clock::now();
            const Status s = det_.flush_many(ctx_, batch_, jobs.data(), jobs.size());
            const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            for (size_t k = 0; k < flushes.size(); ++k) {
                DetokWorker::Result& r = flushes[k]->results[0];
                r.status = s.is_ok() ? jobs[k].status : s;
                r.ms = ms / static_cast<double>(flushes.size());
                r.joined = static_cast<int>(flushes.size());
            }
        }
        int64_t n_chunks = 0;
        for (size_t i = 0; i < n_taken; ++i)
            n_chunks += taken[i].flush() ? 0 : static_cast<int64_t>(taken[i].jobs.size());
        {  // counted before the results go out: a worker that has its results sees its round
            std::lock_guard<std::mutex> lk(mu_);
            ++steps_;
            chunks_ += n_chunks;
        }
        for (size_t i = 0; i < n_taken; ++i) {
            Taken& t = taken[i];
            DetokWorker* w = t.worker;
            std::lock_guard<std::mutex> wl(w->mu_);
            for (DetokWorker::Result& r : t.results) w->done_.push_back(std::move(r));
            w->running_ = false;
            // Under the worker's lock: its destructor may return as soon as it sees this.
            w->cv_done_.notify_all();
        }
    }
}

void DetokBatcher::run_chunks(std::vector<Taken*>& chunks) {
    using Clock = std::chrono::steady_clock;
    std::vector<model::DetokenizerJob> jobs;
    size_t at = 0;
    while (at < chunks.size()) {
        // As many workers' chunks as fit one step (each fits alone: max_rows >= 6 ·
        // kDetokMaxStepFrames, and a worker's joined chunks are at most that many frames).
        jobs.clear();
        int64_t rows = 0, frames = 0;
        int n_chunks = 0;  // the step's chunks, of all its workers
        size_t end = at;
        for (; end < chunks.size(); ++end) {
            Taken& t = *chunks[end];
            const int64_t r = model::kDetokUpsample * std::max(t.n_frames, 1);
            if (end > at && rows + r > batch_.max_rows()) break;
            rows += r;
            frames += t.n_frames;
            n_chunks += static_cast<int>(t.jobs.size());
            const int32_t* codes = t.jobs[0].codes.data();
            std::vector<float>* out = &t.results[0].pcm;
            if (t.jobs.size() > 1) {  // the chunks' codes in one block, their samples split after
                DetokWorker::join_codes(t.jobs, t.codes);
                t.pcm.clear();
                t.frames_before = t.worker->st_.frames();
                codes = t.codes.data();
                out = &t.pcm;
            }
            jobs.push_back(
                model::DetokenizerJob{&t.worker->st_, codes, t.n_frames, out, Status::ok()});
        }
        const auto t0 = Clock::now();
        const Status s = det_.step_many(ctx_, batch_, jobs.data(), jobs.size());
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        for (size_t k = 0; k < jobs.size(); ++k) {
            Taken& t = *chunks[at + k];
            const Status st = s.is_ok() ? jobs[k].status : s;
            const double share = frames > 0 ? ms * t.n_frames / static_cast<double>(frames) : ms;
            if (t.jobs.size() > 1) {
                split_joined(t, st, /*call_ok=*/s.is_ok(), n_chunks, share);
                continue;
            }
            DetokWorker::Result& r = t.results[0];
            r.status = st;
            r.joined = n_chunks;
            r.ms = share;
        }
        at = end;
    }
}

void DetokBatcher::split_joined(Taken& t, const Status& s, bool call_ok, int joined, double ms) {
    if (s.is_ok()) {
        DetokWorker::split_samples(t.pcm, t.frames_before, t.jobs, t.results);
        for (size_t i = 0; i < t.jobs.size(); ++i) {
            DetokWorker::Result& r = t.results[i];
            r.status = Status::ok();
            r.joined = joined;
            r.ms = ms * t.jobs[i].n_frames / static_cast<double>(t.n_frames);
        }
        return;
    }
    if (!call_ok) {  // the whole call failed: every chunk with it
        for (DetokWorker::Result& r : t.results) {
            r.status = s;
            r.joined = joined;
            r.ms = ms / static_cast<double>(t.jobs.size());
        }
        return;
    }
    // A rejected job changes nothing (step_many validates each job first): the chunks again one
    // by one, so that only the bad one fails and the later ones still run, as on a worker's own
    // thread.
    for (size_t i = 0; i < t.jobs.size(); ++i) {
        DetokWorker::Result& r = t.results[i];
        model::DetokenizerJob one{&t.worker->st_, t.jobs[i].codes.data(), t.jobs[i].n_frames,
                                  &r.pcm, Status::ok()};
        const auto t0 = std::chrono::steady_clock::now();
        const Status s1 = det_.step_many(ctx_, batch_, &one, 1);
        r.status = s1.is_ok() ? one.status : s1;
        r.joined = 1;
        r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                   .count();
    }
}

}  // namespace voxrt::runtime
