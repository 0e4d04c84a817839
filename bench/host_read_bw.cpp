// Host DRAM read bandwidth: the denominator of "% of bandwidth" for CPU decode
// (docs/quantization.md). T threads each sum their share of a 1 GiB buffer with 256-bit loads;
// reports bytes read / time, best of several passes.
//
//   g++ -O2 -march=native -pthread bench/host_read_bw.cpp -o /tmp/host_read_bw
//   /tmp/host_read_bw [threads=2] [MiB=1024] [passes=8]
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
    const size_t mib = argc > 2 ? static_cast<size_t>(std::atol(argv[2])) : 1024;
    const int passes = argc > 3 ? std::atoi(argv[3]) : 8;
    const size_t bytes = mib << 20;
    auto* buf = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!buf || threads < 1) return 1;
    std::memset(buf, 1, bytes);  // touch every page before timing
    const size_t floats = bytes / 4, share = floats / static_cast<size_t>(threads) / 64 * 64;
    std::vector<float> sums(static_cast<size_t>(threads));
    double best = 0;
    for (int p = 0; p < passes; ++p) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                const float* a = buf + static_cast<size_t>(t) * share;
                __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
                for (size_t i = 0; i < share; i += 32) {
                    s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
                    s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
                    s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
                    s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
                }
                float o[8];
                _mm256_storeu_ps(o, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
                sums[static_cast<size_t>(t)] = o[0] + o[7];
            });
        for (auto& th : pool) th.join();
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double gbs = static_cast<double>(share) * 4 * threads / s / 1e9;
        std::printf("pass %d: %.2f GB/s\n", p, gbs);
        if (gbs > best) best = gbs;
    }
    std::printf("read bandwidth, %d threads, %zu MiB: best %.2f GB/s (checksum %g)\n", threads, mib,
                best, static_cast<double>(sums[0]));
    std::free(buf);
    return 0;
}
