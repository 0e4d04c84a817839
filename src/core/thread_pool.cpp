#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace voxrt {

namespace {

thread_local bool t_in_pool_task = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Spins until done() or kSpin has passed; true when done() became true.
template <class Done>
bool spin_until(Done done) {
    const auto until = std::chrono::steady_clock::now() + ThreadPool::kSpin;
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            if (done()) return true;
            cpu_relax();
        }
        if (std::chrono::steady_clock::now() >= until) return done();
    }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0)
        n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_.store(true);
    }
    cv_work_.notify_all();
    for (auto& t : workers_) t.join();
}

uint64_t ThreadPool::wait_for_work(uint64_t seen) {
    auto ready = [&] {
        return stop_.load(std::memory_order_acquire) ||
               generation_.load(std::memory_order_acquire) != seen;
    };
    if (!spin_until(ready)) {
        std::unique_lock<std::mutex> lk(mu_);
        // seq_cst pairs with parallel_for's bump of generation_ and its read of parked_workers_:
        // either this worker sees the new generation here, or the caller sees it parked and
        // notifies under mu_ (which it can take only once this wait has released it).
        parked_workers_.fetch_add(1);
        cv_work_.wait(lk, [&] { return stop_.load() || generation_.load() != seen; });
        parked_workers_.fetch_sub(1);
    }
    if (stop_.load(std::memory_order_acquire)) return 0;
    return generation_.load(std::memory_order_acquire);
}

void ThreadPool::run_chunks() {
    const auto& fn = *fn_;
    const int64_t n = n_, chunk = chunk_;
    for (;;) {
        const int64_t b = next_.fetch_add(chunk, std::memory_order_relaxed);
        if (b >= n) break;
        t_in_pool_task = true;
        fn(b, std::min(n, b + chunk));
        t_in_pool_task = false;
    }
}

void ThreadPool::worker_loop() {
    uint64_t seen = 0;
    for (;;) {
        const uint64_t gen = wait_for_work(seen);
        if (gen == 0) return;
        seen = gen;
        run_chunks();
        // the last worker out wakes a caller that parked (same pairing as in wait_for_work)
        if (pending_.fetch_sub(1) == 1 && caller_parked_.load()) {
            std::lock_guard<std::mutex> lk(mu_);
            cv_done_.notify_all();
        }
    }
}

void ThreadPool::wait_for_workers() {
    auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    if (spin_until(done)) return;
    std::unique_lock<std::mutex> lk(mu_);
    caller_parked_.store(true);
    cv_done_.wait(lk, [&] { return pending_.load() == 0; });
    caller_parked_.store(false);
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
    fn_ = &fn;
    n_ = n;
    chunk_ = std::max(min_chunk, (n + parts - 1) / parts);
    next_.store(0, std::memory_order_relaxed);
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1);  // publishes the call (seq_cst: see wait_for_work)
    if (parked_workers_.load() > 0) {
        std::lock_guard<std::mutex> lk(mu_);
        cv_work_.notify_all();
    }
    run_chunks();
    wait_for_workers();
    fn_ = nullptr;
}

}  // namespace voxrt
