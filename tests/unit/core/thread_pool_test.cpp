// ThreadPool: every index runs exactly once per call, calls from many threads are serialized,
// calls from inside a task run serially, workers that went to sleep wake for the next call, and
// the pool shuts down cleanly whether its workers spin or sleep. ThreadPoolBench (skipped unless
// VOXRT_POOL_BENCH is set) prints the cost of one parallel_for as a decode step sees it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "core/thread_pool.h"

namespace voxrt {
namespace {

void expect_each_once(ThreadPool& pool, int64_t n, int64_t min_chunk) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    for (auto& h : hits) h.store(0);
    pool.parallel_for(n, min_chunk, [&](int64_t b, int64_t e) {
        ASSERT_LE(0, b);
        ASSERT_LT(b, e);
        ASSERT_LE(e, n);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i << " of " << n;
}

TEST(ThreadPool, EveryIndexOnceForManySizes) {
    for (int threads : {1, 2, 3, 8}) {
        ThreadPool pool(threads);
        EXPECT_EQ(pool.size(), threads);
        for (int64_t n : {0, 1, 2, 3, 7, 64, 1000, 4097})
            for (int64_t min_chunk : {1, 4, 100}) expect_each_once(pool, n, min_chunk);
    }
}

TEST(ThreadPool, ManyCallsBackToBack) {
    // The decode path: thousands of short calls one after another, workers never sleeping between
    ThreadPool pool(2);
    std::atomic<int64_t> sum{0};
    for (int call = 0; call < 20000; ++call)
        pool.parallel_for(16, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
    EXPECT_EQ(sum.load(), 20000 * 16);
}

TEST(ThreadPool, WorkersWakeAfterSleeping) {
    // Gaps longer than any spin: the workers park, and the next call must still reach them (a lost
    // wake-up hangs here, and ctest's timeout fails it)
    ThreadPool pool(3);
    for (int call = 0; call < 6; ++call) {
        std::this_thread::sleep_for(std::chrono::milliseconds(call % 2 ? 20 : 1));
        std::vector<std::thread::id> who(64);
        pool.parallel_for(64, 1, [&](int64_t b, int64_t e) {
            // long enough that the workers take chunks as well
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            for (int64_t i = b; i < e; ++i)
                who[static_cast<size_t>(i)] = std::this_thread::get_id();
        });
        for (const auto& id : who) EXPECT_NE(id, std::thread::id());
    }
}

TEST(ThreadPool, WorkersShareLongTasks) {
    // With tasks long enough, the calling thread alone does not run them all
    ThreadPool pool(2);
    std::vector<std::thread::id> who(8);
    pool.parallel_for(8, 1, [&](int64_t b, int64_t e) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        for (int64_t i = b; i < e; ++i) who[static_cast<size_t>(i)] = std::this_thread::get_id();
    });
    int not_caller = 0;
    for (const auto& id : who) not_caller += id != std::this_thread::get_id();
    EXPECT_GT(not_caller, 0);
}

TEST(ThreadPool, CallsFromManyThreadsAreSerialized) {
    // Each calling thread uses its own size; a chunk of one call handed to another call's function
    // (shared state overwritten by an overlapping call) shows up as a wrong count or index
    ThreadPool pool(2);
    constexpr int kCallers = 4, kCalls = 300;
    std::vector<int64_t> totals(kCallers, 0);
    std::atomic<int> bad{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < kCallers; ++t)
        callers.emplace_back([&, t] {
            const int64_t n = 17 + 13 * t;
            std::atomic<int64_t> mine{0};
            for (int call = 0; call < kCalls; ++call)
                pool.parallel_for(n, 1, [&](int64_t b, int64_t e) {
                    if (b < 0 || e > n || b >= e) bad.fetch_add(1);
                    mine.fetch_add(e - b);
                });
            totals[static_cast<size_t>(t)] = mine.load();
        });
    for (auto& c : callers) c.join();
    EXPECT_EQ(bad.load(), 0);
    for (int t = 0; t < kCallers; ++t)
        EXPECT_EQ(totals[static_cast<size_t>(t)], kCalls * (17 + 13 * t)) << t;
}

TEST(ThreadPool, NestedCallRunsSerially) {
    ThreadPool pool(2);
    std::atomic<int64_t> inner{0};
    pool.parallel_for(8, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
            pool.parallel_for(10, 1, [&](int64_t ib, int64_t ie) { inner.fetch_add(ie - ib); });
    });
    EXPECT_EQ(inner.load(), 80);
}

TEST(ThreadPool, DestroyWhileWorkersSpinOrSleep) {
    for (int gap_ms : {0, 30}) {
        ThreadPool pool(4);
        pool.parallel_for(100, 1, [](int64_t, int64_t) {});
        std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
    }  // the destructor joins; a hang here is ctest's timeout
    SUCCEED();
}

// The cost of one call as the decode step sees it: back-to-back calls of a few microseconds of
// work each (a GEMV tile range), and calls after a short serial gap (a norm or a sampling step).
TEST(ThreadPoolBench, CallOverhead) {
    const char* on = std::getenv("VOXRT_POOL_BENCH");
    if (!on || !*on) GTEST_SKIP() << "set VOXRT_POOL_BENCH=1 to time parallel_for";
    const int threads = static_cast<int>(std::thread::hardware_concurrency());
    ThreadPool pool(threads);
    auto spin_us = [](double us) {
        const auto until = std::chrono::steady_clock::now() +
                           std::chrono::nanoseconds(static_cast<int64_t>(us * 1e3));
        while (std::chrono::steady_clock::now() < until) {
        }
    };
    for (double work_us : {0.0, 5.0, 20.0}) {
        for (double gap_us : {0.0, 10.0, 50.0}) {
            const int calls = 4000;
            const auto t0 = std::chrono::steady_clock::now();
            for (int c = 0; c < calls; ++c) {
                pool.parallel_for(threads * 4, 1, [&](int64_t b, int64_t e) {
                    spin_us(work_us * double(e - b) / 4.0);
                });
                spin_us(gap_us);
            }
            const double us =
                std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                    .count() /
                calls;
            // the ideal: the work split over the threads, plus the gap
            std::printf(
                "pool %d threads  work %5.1f us/thread  gap %5.1f us:  %7.2f us a call (ideal "
                "%6.2f)\n",
                threads, work_us, gap_us, us, work_us + gap_us);
        }
    }
}

}  // namespace
}  // namespace voxrt
