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
    for (;;) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_work_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        const auto* fn = fn_;
        for (;;) {
            int64_t b = next_;
            if (b >= n_) break;
            int64_t e = std::min(n_, b + chunk_);
            next_ = e;
            lk.unlock();
            t_in_pool_task = true;
            (*fn)(b, e);
            t_in_pool_task = false;
            lk.lock();
        }
        if (--pending_ == 0) cv_done_.notify_all();
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
    std::unique_lock<std::mutex> lk(mu_);
    fn_ = &fn;
    n_ = n;
    chunk_ = chunk;
    next_ = 0;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
    cv_work_.notify_all();
    for (;;) {
        int64_t b = next_;
        if (b >= n_) break;
        int64_t e = std::min(n_, b + chunk_);
        next_ = e;
        lk.unlock();
        t_in_pool_task = true;
        fn(b, e);
        t_in_pool_task = false;
        lk.lock();
    }
    cv_done_.wait(lk, [&] { return pending_ == 0; });
    fn_ = nullptr;
}

}  // namespace voxrt
