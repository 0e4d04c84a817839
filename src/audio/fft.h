// Compact mixed-radix complex FFT used by the mel front end (512-point) and the ISTFT
// (1280 = 2^8 * 5 point). Computes in float64 so that the float32 results of the callers are
// limited by their own float32 steps, not by the transform.
//
// Algorithm: recursive decimation in time over the factorisation of n (radix 4 first, then 2, 3,
// 5, 7), with an O(p^2) butterfly per radix p and a twiddle table exp(-2*pi*i*k/n) evaluated
// directly per index (no recurrence, so every twiddle is correctly rounded to ~1 ulp).
//
// Thread-compatible: a const Fft may be used from many threads at once.
#pragma once

#include <complex>
#include <vector>

namespace voxrt::audio {

class Fft {
public:
    using Complex = std::complex<double>;

    // True when n >= 1 and every prime factor of n is at most 7.
    static bool supported(int n);

    // n must satisfy supported(n) (checked; callers validate configs first).
    explicit Fft(int n);

    int size() const { return n_; }

    // out[k] = sum_j in[j] * exp(-2*pi*i*j*k/n). `in` and `out` must not alias; both hold n values.
    void forward(const Complex* in, Complex* out) const;

private:
    void work(Complex* out, const Complex* in, int stride, int level) const;

    int n_ = 0;
    std::vector<int> radix_;        // radix per recursion level
    std::vector<int> sub_;          // sub-transform length after that level's split
    std::vector<Complex> twiddle_;  // [n] exp(-2*pi*i*k/n)
};

// torch.hann_window(n, periodic) in float32, computed like torch:
// w[i] = cos(i * float(2*pi / M)) * -0.5f + 0.5f with M = n (periodic) or n - 1 (symmetric).
std::vector<float> hann_window(int n, bool periodic);

}  // namespace voxrt::audio
