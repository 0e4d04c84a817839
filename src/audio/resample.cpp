#include "audio/resample.h"

#include "core/thread_pool.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <numeric>

#include "core/check.h"

namespace voxrt::audio {

namespace {

constexpr int kLowpassWidth = 6;     // torchaudio default lowpass_filter_width
constexpr double kRolloff = 0.99;    // torchaudio default rolloff
constexpr int kMaxRate = 1'000'000;  // precondition bound; keeps the filter bank small

}  // namespace

Resampler::Resampler(int sr_in, int sr_out) {
    VOXRT_ASSERT(sr_in > 0 && sr_out > 0 && sr_in <= kMaxRate && sr_out <= kMaxRate,
                 "[resample] rates %d -> %d outside [1, %d]", sr_in, sr_out, kMaxRate);
    const int g = std::gcd(sr_in, sr_out);
    orig_ = sr_in / g;
    new_ = sr_out / g;

    // torchaudio _get_sinc_resample_kernel, float32 dtype (that of the waveform).
    const double base = std::min(orig_, new_) * kRolloff;  // Python float
    width_ = static_cast<int>(std::ceil(kLowpassWidth * orig_ / base));
    const int kernel_len = 2 * width_ + orig_;
    const float base_f = static_cast<float>(base);
    const float pi_f = static_cast<float>(std::numbers::pi);
    const float lw_f = static_cast<float>(kLowpassWidth);
    const float scale_f = static_cast<float>(base / orig_);
    const float orig_f = static_cast<float>(orig_);
    const float new_f = static_cast<float>(new_);

    first_.resize(new_);
    count_.resize(new_);
    offset_.resize(new_);
    std::vector<float> phase_taps;
    for (int j = 0; j < new_; ++j) {
        // Candidate taps: |t| < 6 <=> |(i - width)/orig - j/new| < 6/base, with a 2-tap margin
        // for rounding; the exact float32 test below decides.
        const double centre = static_cast<double>(orig_) * j / new_;
        const double half = static_cast<double>(orig_) * kLowpassWidth / base;
        int lo = static_cast<int>(std::floor(centre - half)) - 2 + width_;
        int hi = static_cast<int>(std::ceil(centre + half)) + 2 + width_;
        lo = std::max(lo, 0);
        hi = std::min(hi, kernel_len - 1);
        phase_taps.clear();
        int first = -1;
        const float tj = static_cast<float>(-j) / new_f;
        for (int i = lo; i <= hi; ++i) {
            float idx = static_cast<float>(i - width_) / orig_f;
            float t = (tj + idx) * base_f;
            if (!(t > -lw_f && t < lw_f)) {
                if (first >= 0) break;  // past the support
                continue;
            }
            if (first < 0) first = i;
            float window = std::cos(t * pi_f / lw_f / 2.0f);
            window = window * window;
            float tp = t * pi_f;
            float k = tp == 0.0f ? 1.0f : std::sin(tp) / tp;
            phase_taps.push_back(k * (window * scale_f));
        }
        first_[j] = first < 0 ? 0 : first;
        count_[j] = static_cast<int>(phase_taps.size());
        offset_[j] = taps_.size();
        taps_.insert(taps_.end(), phase_taps.begin(), phase_taps.end());
    }
}

size_t Resampler::output_size(size_t n) const {
    return (static_cast<uint64_t>(n) * new_ + orig_ - 1) / orig_;
}

// Output o = k * new + j: block k of the input, phase j. Input sample s is xb[s - xb_start]; the
// input has n samples (all of them, or all so far when the output's taps end before n).
float Resampler::output(const float* xb, int64_t xb_start, int64_t n, int64_t k, int j) const {
    const float* h = taps_.data() + offset_[j];
    const int c = count_[j];
    // Input index of tap 0: padded offset k*orig + first minus the left pad `width`.
    const int64_t start = k * orig_ + first_[j] - width_;
    double acc = 0.0;
    if (start >= 0 && start + c <= n) {
        // Four running sums (one would wait out an add latency per tap).
        const float* xs = xb + (start - xb_start);
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        int i = 0;
        for (; i + 4 <= c; i += 4) {
            a0 += static_cast<double>(xs[i]) * h[i];
            a1 += static_cast<double>(xs[i + 1]) * h[i + 1];
            a2 += static_cast<double>(xs[i + 2]) * h[i + 2];
            a3 += static_cast<double>(xs[i + 3]) * h[i + 3];
        }
        for (; i < c; ++i) a0 += static_cast<double>(xs[i]) * h[i];
        acc = (a0 + a1) + (a2 + a3);
    } else {
        for (int i = 0; i < c; ++i) {
            const int64_t s = start + i;
            if (s >= 0 && s < n) acc += static_cast<double>(xb[s - xb_start]) * h[i];
        }
    }
    return static_cast<float>(acc);
}

int64_t Resampler::input_end(int64_t k, int j) const {
    return k * orig_ + first_[j] - width_ + count_[j];
}

void Resampler::process(const float* x, size_t n, float* y, ThreadPool* pool) const {
    const size_t total = output_size(n);
    const auto n_signed = static_cast<int64_t>(n);
    // Blocks are independent.
    const int64_t blocks = static_cast<int64_t>((total + new_ - 1) / new_);
    auto run = [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
            for (int j = 0; j < new_; ++j) {
                const size_t o = static_cast<size_t>(k) * new_ + j;
                if (o >= total) break;
                y[o] = output(x, 0, n_signed, k, j);
            }
        }
    };
    if (pool) {
        pool->parallel_for(blocks, 256, run);
    } else {
        run(0, blocks);
    }
}

ResampleStream::ResampleStream(int sr_in, int sr_out)
    : same_(sr_in == sr_out), r_(same_ ? 1 : sr_in, same_ ? 1 : sr_out) {}

void ResampleStream::ready(int64_t n_known, bool final, std::vector<float>& out) {
    const int64_t total =
        final ? static_cast<int64_t>(r_.output_size(static_cast<size_t>(n_in_))) : INT64_MAX;
    for (;;) {
        const int64_t k = next_ / r_.next();
        const int j = static_cast<int>(next_ % r_.next());
        if (next_ >= total) break;
        if (!final && r_.input_end(k, j) > n_known) break;
        out.push_back(r_.output(buf_.data(), buf_start_, n_known, k, j));
        ++next_;
    }
    // Drop input no later output needs (outputs of block k start at k*orig - width or later).
    const int64_t keep_from = (next_ / r_.next()) * r_.orig() - r_.width();
    if (keep_from - buf_start_ > static_cast<int64_t>(buf_.size() / 2) && keep_from > buf_start_) {
        const int64_t drop =
            std::min<int64_t>(keep_from - buf_start_, static_cast<int64_t>(buf_.size()));
        buf_.erase(buf_.begin(), buf_.begin() + drop);
        buf_start_ += drop;
    }
}

void ResampleStream::push(const float* x, size_t n, std::vector<float>& out) {
    if (same_) {
        out.insert(out.end(), x, x + n);
        n_in_ += static_cast<int64_t>(n);
        return;
    }
    buf_.insert(buf_.end(), x, x + n);
    n_in_ += static_cast<int64_t>(n);
    ready(n_in_, /*final=*/false, out);
}

void ResampleStream::finish(std::vector<float>& out) {
    if (!same_) ready(n_in_, /*final=*/true, out);
}

void ResampleStream::reset() {
    std::vector<float>().swap(buf_);
    buf_start_ = 0;
    n_in_ = 0;
    next_ = 0;
}

std::vector<float> resample(const float* x, size_t n, int sr_in, int sr_out, ThreadPool* pool) {
    if (sr_in == sr_out) return std::vector<float>(x, x + n);
    Resampler r(sr_in, sr_out);
    std::vector<float> y(r.output_size(n));
    r.process(x, n, y.data(), pool);
    return y;
}

}  // namespace voxrt::audio
