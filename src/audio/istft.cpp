#include "audio/istft.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "core/thread_pool.h"

namespace voxrt::audio {

void irfft_windowed(const Fft& fft, const float* X, const float* window, Fft::Complex* in,
                    Fft::Complex* out, float* frame_out) {
    const int n = fft.size();
    const int half = n / 2;
    // irfft(X)[j] = (1/n) Re(sum_k Z[k] e^{+2 pi i jk/n}) with Z Hermitian; computed as the
    // forward transform of conj(Z). DC and Nyquist imaginary parts are ignored (c2r semantics).
    in[0] = Fft::Complex(X[0], 0.0);
    in[half] = Fft::Complex(X[2 * half], 0.0);
    for (int k = 1; k < half; ++k) {
        Fft::Complex z(X[2 * k], X[2 * k + 1]);
        in[k] = std::conj(z);
        in[n - k] = z;
    }
    fft.forward(in, out);
    const double inv_n = 1.0 / n;
    for (int j = 0; j < n; ++j)
        frame_out[j] = static_cast<float>(out[j].real() * inv_n) * window[j];
}

Status validate_istft_config(const IstftConfig& c) {
    if (c.n_fft != c.win_length) {
        return make_error(StatusCode::kUnsupported, "[istft] n_fft %d != win_length %d", c.n_fft,
                          c.win_length);
    }
    if (c.n_fft < 2 || c.n_fft > 65536 || c.n_fft % 2 != 0 || !Fft::supported(c.n_fft)) {
        return make_error(StatusCode::kInvalidArgument,
                          "[istft] n_fft %d: needs an even size with prime factors <= 7", c.n_fft);
    }
    // hop < win keeps the trimmed envelope > 0 everywhere (periodic Hann is 0 only at index 0).
    if (c.hop < 1 || c.hop >= c.win_length || (c.win_length - c.hop) % 2 != 0) {
        return make_error(StatusCode::kInvalidArgument,
                          "[istft] hop %d: needs 1 <= hop < win_length %d with an even difference",
                          c.hop, c.win_length);
    }
    return Status::ok();
}

std::vector<float> istft_same(const float* spec, size_t n_frames, const IstftConfig& cfg,
                              const float* window_in) {
    const Status st = validate_istft_config(cfg);
    VOXRT_ASSERT(st.is_ok(), "%s", st.message().c_str());
    if (n_frames == 0) return {};
    const int n = cfg.n_fft, hop = cfg.hop, nb = n / 2 + 1;
    const int pad = (cfg.win_length - hop) / 2;
    const Fft fft(n);
    const std::vector<float> window = window_in ? std::vector<float>(window_in, window_in + n)
                                                : hann_window(n, /*periodic=*/true);
    std::vector<float> window_sq(n);
    for (int i = 0; i < n; ++i) window_sq[i] = window[i] * window[i];

    const size_t total = (n_frames - 1) * hop + n;
    std::vector<float> y(total, 0.0f), env(total, 0.0f), frame(n);
    std::vector<Fft::Complex> in(n), out(n);
    for (size_t f = 0; f < n_frames; ++f) {
        irfft_windowed(fft, spec + f * 2 * nb, window.data(), in.data(), out.data(), frame.data());
        float* yf = &y[f * hop];
        float* ef = &env[f * hop];
        for (int i = 0; i < n; ++i) {
            yf[i] += frame[i];
            ef[i] += window_sq[i];
        }
    }
    std::vector<float> result(n_frames * hop);
    for (size_t p = 0; p < result.size(); ++p) result[p] = y[pad + p] / env[pad + p];
    return result;
}

void spectrum_from_logmag_phase(const float* logmag, const float* phase, int n_bins, float* out) {
    for (int k = 0; k < n_bins; ++k) {
        float mag = std::exp(logmag[k]);
        out[2 * k] = mag * std::cos(phase[k]);
        out[2 * k + 1] = mag * std::sin(phase[k]);
    }
}

IstftStream::IstftStream(const IstftConfig& cfg, const float* window) : cfg_(cfg) {
    const Status st = validate_istft_config(cfg);
    VOXRT_ASSERT(st.is_ok(), "%s", st.message().c_str());
    const int n = cfg.n_fft;
    pad_ = (cfg.win_length - cfg.hop) / 2;
    fft_ = Fft(n);
    window_ = window ? std::vector<float>(window, window + n) : hann_window(n, /*periodic=*/true);
    frame_.resize(n);
    window_sq_.resize(n);
    for (int i = 0; i < n; ++i) window_sq_[i] = window_[i] * window_[i];
    buf_in_.resize(n);
    buf_out_.resize(n);
    acc_.assign(n, 0.0f);
    env_.assign(n, 0.0f);
    reset();
}

int IstftStream::max_flush_samples() const {
    return std::max(pad_, cfg_.hop);
}

void IstftStream::reset() {
    std::fill(acc_.begin(), acc_.end(), 0.0f);
    std::fill(env_.begin(), env_.end(), 0.0f);
    frames_ = 0;
    emitted_ = pad_;
}

size_t IstftStream::emit_until(int64_t end, float* out) {
    const int n = cfg_.n_fft;
    size_t count = 0;
    for (int64_t a = std::max<int64_t>(emitted_, pad_); a < end; ++a) {
        const size_t slot = static_cast<size_t>(a % n);
        out[count++] = acc_[slot] / env_[slot];
    }
    emitted_ = std::max(emitted_, end);
    return count;
}

size_t IstftStream::step(const float* frame, float* out) {
    irfft_windowed(fft_, frame, window_.data(), buf_in_.data(), buf_out_.data(), frame_.data());
    return add_windowed(frame_.data(), out);
}

void IstftStream::reserve_batch(int count) {
    const size_t n = static_cast<size_t>(cfg_.n_fft), c = static_cast<size_t>(std::max(count, 0));
    batch_in_.resize(c * n);
    batch_out_.resize(c * n);
    batch_frames_.resize(c * n);
    batch_cap_ = static_cast<int>(c);
}

size_t IstftStream::step_batch(const float* frames, int count, float* out, ThreadPool* pool) {
    const int n = cfg_.n_fft, nb = n_bins();
    size_t written = 0;
    if (batch_cap_ < 1) {
        for (int f = 0; f < count; ++f)
            written += step(frames + static_cast<size_t>(f) * 2 * nb, out + written);
        return written;
    }
    for (int f0 = 0; f0 < count; f0 += batch_cap_) {
        const int m = std::min(batch_cap_, count - f0);
        auto transform = [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
                const size_t o = static_cast<size_t>(i) * static_cast<size_t>(n);
                irfft_windowed(fft_, frames + static_cast<size_t>(f0 + i) * 2 * nb, window_.data(),
                               &batch_in_[o], &batch_out_[o], &batch_frames_[o]);
            }
        };
        if (pool && m > 1) {
            pool->parallel_for(m, 1, transform);
        } else {
            transform(0, m);
        }
        for (int i = 0; i < m; ++i)
            written += add_windowed(&batch_frames_[static_cast<size_t>(i) * static_cast<size_t>(n)],
                                    out + written);
    }
    return written;
}

size_t IstftStream::add_windowed(const float* w, float* out) {
    const int n = cfg_.n_fft, hop = cfg_.hop;
    const int64_t start = static_cast<int64_t>(frames_) * hop;
    // Slots of samples [prev_end, start + n) are reused: their previous occupants (n samples
    // earlier) were final and emitted (or trimmed) after the previous step.
    const int64_t prev_end = frames_ == 0 ? 0 : start - hop + n;
    for (int64_t a = prev_end; a < start + n; ++a) {
        acc_[a % n] = 0.0f;
        env_[a % n] = 0.0f;
    }
    for (int i = 0; i < n; ++i) {
        const size_t slot = static_cast<size_t>((start + i) % n);
        acc_[slot] += w[i];
        env_[slot] += window_sq_[i];
    }
    ++frames_;
    // Every sample below start + hop is final now.
    return emit_until(start + hop, out);
}

size_t IstftStream::flush(float* out) {
    size_t count = 0;
    if (frames_ > 0) count = emit_until(static_cast<int64_t>(frames_) * cfg_.hop + pad_, out);
    reset();
    return count;
}

}  // namespace voxrt::audio
