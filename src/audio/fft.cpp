#include "audio/fft.h"

#include <cmath>
#include <numbers>

#include "core/check.h"

namespace voxrt::audio {

namespace {

constexpr int kMaxRadix = 7;

// Radices in the order the recursion splits them off: 4s first (cheapest per point), then 2, 3,
// 5, 7. Returns false when a prime factor > 7 remains.
bool factorize(int n, std::vector<int>* radices) {
    if (n < 1) return false;
    radices->clear();
    while (n % 4 == 0) {
        radices->push_back(4);
        n /= 4;
    }
    for (int p : {2, 3, 5, 7}) {
        while (n % p == 0) {
            radices->push_back(p);
            n /= p;
        }
    }
    return n == 1;
}

}  // namespace

bool Fft::supported(int n) {
    std::vector<int> r;
    return factorize(n, &r);
}

Fft::Fft(int n) : n_(n) {
    VOXRT_ASSERT(factorize(n, &radix_), "[fft] size %d has a prime factor > 7", n);
    int m = n;
    for (int p : radix_) {
        m /= p;
        sub_.push_back(m);
    }
    twiddle_.resize(n);
    for (int k = 0; k < n; ++k) {
        double a = -2.0 * std::numbers::pi * static_cast<double>(k) / n;
        twiddle_[k] = Complex(std::cos(a), std::sin(a));
    }
}

void Fft::forward(const Complex* in, Complex* out) const {
    if (n_ == 1) {
        out[0] = in[0];
        return;
    }
    work(out, in, 1, 0);
}

// Transform of length p*m whose inputs are in[0], in[stride], ...; writes out[0 .. p*m).
void Fft::work(Complex* out, const Complex* in, int stride, int level) const {
    const int p = radix_[level];
    const int m = sub_[level];
    if (m == 1) {
        for (int q = 0; q < p; ++q) out[q] = in[q * stride];
    } else {
        // Sub-transform q takes every p-th input starting at q.
        for (int q = 0; q < p; ++q) work(out + q * m, in + q * stride, stride * p, level + 1);
    }
    // Butterflies: X[k + q*m] = sum_r W_{pm}^{r*k} * W_p^{r*q} * S_r[k].
    // W_{pm} = W_n^{stride}, W_p = W_n^{n/p}.
    const int tw_step = stride;
    const int p_step = n_ / p;
    Complex t[kMaxRadix];
    for (int k = 0; k < m; ++k) {
        for (int r = 0; r < p; ++r) {
            Complex v = out[k + r * m];
            t[r] = r == 0 ? v : v * twiddle_[(static_cast<long>(r) * k * tw_step) % n_];
        }
        if (p == 2) {
            out[k] = t[0] + t[1];
            out[k + m] = t[0] - t[1];
        } else if (p == 4) {
            // W_4 = -i.
            Complex a = t[0] + t[2], b = t[0] - t[2];
            Complex c = t[1] + t[3], d = t[1] - t[3];
            Complex d_mi(d.imag(), -d.real());  // d * (-i)
            out[k] = a + c;
            out[k + m] = b + d_mi;
            out[k + 2 * m] = a - c;
            out[k + 3 * m] = b - d_mi;
        } else {
            for (int q = 0; q < p; ++q) {
                Complex acc = t[0];
                for (int r = 1; r < p; ++r) acc += t[r] * twiddle_[((r * q) % p) * p_step];
                out[k + q * m] = acc;
            }
        }
    }
}

std::vector<float> hann_window(int n, bool periodic) {
    std::vector<float> w(n > 0 ? n : 0);
    if (n == 1) w[0] = 1.0f;
    if (n <= 1) return w;
    const int m = periodic ? n : n - 1;
    const auto s = static_cast<float>(2.0 * std::numbers::pi / m);
    for (int i = 0; i < n; ++i) w[i] = std::cos(static_cast<float>(i) * s) * -0.5f + 0.5f;
    return w;
}

}  // namespace voxrt::audio
