#include "runtime/detok_worker.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "core/check.h"

namespace voxrt::runtime {

DetokWorker::DetokWorker(const model::Detokenizer& det, const ops::Context& ctx,
                         model::DetokenizerState& st)
    : det_(det), ctx_(ctx), st_(st) {
    thread_ = std::thread([this] { loop(); });
}

DetokWorker::~DetokWorker() {
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
                                       frames + j.n_frames > det_.max_step_frames()))
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
            results[0].status = det_.flush(ctx_, st_, results[0].pcm);
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
        Status s = det_.step(ctx_, st_, codes.data(), frames, pcm);
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
            det_.step(ctx_, st_, batch[i].codes.data(), batch[i].n_frames, results[i].pcm);
}

}  // namespace voxrt::runtime
