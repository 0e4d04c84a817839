// A fixed pool of worker threads for data-parallel loops on the CPU backend.
//
// parallel_for splits [0, n) into contiguous chunks, runs them on the workers and the calling
// thread, and returns when all are done. Calls from inside a task run serially (no nesting).
// One pool may be shared by many sessions only if they do not call it concurrently: a call holds
// the pool for its duration (calls from different threads are serialized).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace voxrt {

class ThreadPool {
public:
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
    void worker_loop(int index);

    std::vector<std::thread> workers_;
    std::mutex call_mu_;  // one parallel_for at a time
    std::mutex mu_;
    std::condition_variable cv_work_;
    std::condition_variable cv_done_;
    const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
    int64_t n_ = 0;
    int64_t chunk_ = 0;
    int64_t next_ = 0;
    int pending_ = 0;
    uint64_t generation_ = 0;
    bool stop_ = false;
};

}  // namespace voxrt
