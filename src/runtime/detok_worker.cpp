#include "runtime/detok_worker.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace voxrt::runtime {

DetokWorker::DetokWorker(const model::Detokenizer& det, const ops::Context& ctx, model::DetokenizerState& st)
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

void DetokWorker::wait(std::vector<Result>& out) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [this] { return jobs_.empty() && !running_; });
    for (Result& r : done_) out.push_back(std::move(r));
    done_.clear();
}

void DetokWorker::loop() {
    using Clock = std::chrono::steady_clock;
    for (;;) {
        Job j;
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_job_.wait(lk, [this] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) return;  // stop_ with nothing left
            j = jobs_.front();
            jobs_.pop_front();
            running_ = true;
        }
        Result r;
        r.step = j.step;
        const auto t0 = Clock::now();
        r.status = j.flush ? det_.flush(ctx_, st_, r.pcm) : det_.step(ctx_, st_, j.codes.data(), j.n_frames, r.pcm);
        r.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        {
            std::lock_guard<std::mutex> lk(mu_);
            done_.push_back(std::move(r));
            running_ = false;
        }
        cv_done_.notify_all();
    }
}

}  // namespace voxrt::runtime
