#include "core/thread_pool.h"

#include <algorithm>

namespace voxrt {

namespace {
thread_local bool t_in_pool_task = false;
}

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0)
        n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_work_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        cv_work_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        run_chunks(lk);
    }
}

// Takes chunks of the current call until none is left (mu_ held on entry and exit).
void ThreadPool::run_chunks(std::unique_lock<std::mutex>& lk) {
    while (next_ < n_) {
        const int64_t b = next_, e = std::min(n_, b + chunk_);
        next_ = e;
        ++in_flight_;
        const auto* fn = fn_;
        lk.unlock();
        t_in_pool_task = true;
        (*fn)(b, e);
        t_in_pool_task = false;
        lk.lock();
        if (--in_flight_ == 0 && next_ >= n_) cv_done_.notify_all();
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t min_chunk,
                              const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    min_chunk = std::max<int64_t>(1, min_chunk);
    if (workers_.empty() || t_in_pool_task || n <= min_chunk) {
        fn(0, n);
        return;
    }
    std::lock_guard<std::mutex> call_lk(call_mu_);
    const int64_t parts = static_cast<int64_t>(size()) * 4;
    const int64_t chunk = std::max(min_chunk, (n + parts - 1) / parts);
    const int64_t chunks = (n + chunk - 1) / chunk;
    std::unique_lock<std::mutex> lk(mu_);
    fn_ = &fn;
    n_ = n;
    chunk_ = chunk;
    next_ = 0;
    ++generation_;
    // Only as many workers as there are chunks besides the caller's are woken; the call is over
    // when every chunk has been taken and finished, whichever threads took them (a worker that
    // wakes late finds nothing left and sleeps again), so a worker the OS has not scheduled yet
    // delays nothing.
    const int64_t wake = std::min<int64_t>(static_cast<int64_t>(workers_.size()), chunks - 1);
    if (wake >= static_cast<int64_t>(workers_.size())) {
        cv_work_.notify_all();
    } else {
        for (int64_t i = 0; i < wake; ++i) cv_work_.notify_one();
    }
    run_chunks(lk);
    cv_done_.wait(lk, [&] { return next_ >= n_ && in_flight_ == 0; });
    fn_ = nullptr;
}

}  // namespace voxrt
