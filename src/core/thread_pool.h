// A fixed pool of worker threads for data-parallel loops on the CPU backend.
//
// parallel_for splits [0, n) into contiguous chunks, runs them on the workers and the calling
// thread, and returns when all are done. Calls from inside a task run serially (no nesting).
// One pool may be shared by many sessions only if they do not call it concurrently: a call holds
// the pool for its duration (calls from different threads are serialized).
//
// Waiting: a decode step makes hundreds of short calls a few microseconds apart, so between calls
// the workers (and, at the end of a call, the caller) spin for a short while (kSpin) before they
// park on a condition variable; a call that finds a worker parked wakes it. Chunks are claimed
// with an atomic counter, not under a lock.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace voxrt {

class ThreadPool {
public:
    // How long an idle worker, or a caller waiting for the workers, spins before it parks.
    static constexpr std::chrono::microseconds kSpin{100};

    // n_threads <= 0 picks the hardware concurrency.
    explicit ThreadPool(int n_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    // fn(begin, end) over [0, n) in chunks of at least min_chunk items.
    void parallel_for(int64_t n, int64_t min_chunk,
                      const std::function<void(int64_t, int64_t)>& fn);

private:
    void worker_loop();
    void run_chunks();
    // Returns the generation to run, or 0 when the pool is stopping.
    uint64_t wait_for_work(uint64_t seen);
    void wait_for_workers();

    std::vector<std::thread> workers_;
    std::mutex call_mu_;  // one parallel_for at a time

    // The current call: written by the caller before it bumps generation_, read by the workers
    // after they see the new generation.
    const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
    int64_t n_ = 0;
    int64_t chunk_ = 0;
    std::atomic<int64_t> next_{0};
    std::atomic<int> pending_{0};  // workers still in the current call
    std::atomic<uint64_t> generation_{0};
    std::atomic<bool> stop_{false};

    // Parking: a worker or the caller that stopped spinning waits on these; the other side takes
    // mu_ to notify only when it sees someone parked.
    std::mutex mu_;
    std::condition_variable cv_work_;
    std::condition_variable cv_done_;
    std::atomic<int> parked_workers_{0};
    std::atomic<bool> caller_parked_{false};
};

}  // namespace voxrt
