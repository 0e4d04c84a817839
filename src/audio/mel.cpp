#include "audio/mel.h"

#include "core/thread_pool.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <numbers>

namespace voxrt::audio {

namespace {
// x[t] = p[t * stride]: one feature's values across frames, whatever the layout.
struct Strided {
    const double* p;
    int64_t stride;
    double operator[](int64_t t) const { return p[t * stride]; }
};
}  // namespace

namespace {

// librosa hz_to_mel / mel_to_hz, Slaney scale (htk=False), scalar float64 forms.
constexpr double kFsp = 200.0 / 3;
constexpr double kMinLogHz = 1000.0;
constexpr double kMinLogMel = kMinLogHz / kFsp;

double logstep() {
    return std::log(6.4) / 27.0;
}

double hz_to_mel(double f) {
    double m = f / kFsp;
    if (f >= kMinLogHz) m = kMinLogMel + std::log(f / kMinLogHz) / logstep();
    return m;
}

double mel_to_hz(double m) {
    double f = kFsp * m;
    if (m >= kMinLogMel) f = kMinLogHz * std::exp(logstep() * (m - kMinLogMel));
    return f;
}

}  // namespace

std::vector<float> mel_filterbank_slaney(int sample_rate, int n_fft, int n_mels, double fmin,
                                         double fmax) {
    const int n_bins = n_fft / 2 + 1;
    // np.fft.rfftfreq(n_fft, d=1/sr) = arange(n_bins) * (1 / (n_fft * d)).
    const double val = 1.0 / (n_fft * (1.0 / sample_rate));
    std::vector<double> fftfreqs(n_bins);
    for (int k = 0; k < n_bins; ++k) fftfreqs[k] = k * val;
    // mel_frequencies: np.linspace(min_mel, max_mel, n_mels + 2) = i * step + start, last = stop.
    const int n_pts = n_mels + 2;
    const double min_mel = hz_to_mel(fmin), max_mel = hz_to_mel(fmax);
    const double step = (max_mel - min_mel) / (n_pts - 1);
    std::vector<double> mel_f(n_pts);
    for (int i = 0; i < n_pts; ++i) {
        double m = i == n_pts - 1 ? max_mel : i * step + min_mel;
        mel_f[i] = mel_to_hz(m);
    }
    std::vector<float> w(static_cast<size_t>(n_mels) * n_bins);
    for (int i = 0; i < n_mels; ++i) {
        const double fdiff_lo = mel_f[i + 1] - mel_f[i];
        const double fdiff_hi = mel_f[i + 2] - mel_f[i + 1];
        const double enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (int k = 0; k < n_bins; ++k) {
            double lower = -(mel_f[i] - fftfreqs[k]) / fdiff_lo;
            double upper = (mel_f[i + 2] - fftfreqs[k]) / fdiff_hi;
            // weights[i] = max(0, min(lower, upper)) stored into a float32 array, then
            // `weights *= enorm[:, None]` (float32 * float64 -> float64 -> float32).
            auto w32 = static_cast<float>(std::max(0.0, std::min(lower, upper)));
            w[static_cast<size_t>(i) * n_bins + k] = static_cast<float>(w32 * enorm);
        }
    }
    return w;
}

MelFrontend::MelFrontend(const MelConfig& config) : cfg_(config) {}

Expected<MelFrontend> MelFrontend::create(const MelConfig& c, const float* window) {
    auto bad = [](const char* what) {
        return make_error(StatusCode::kUnsupported, "[mel] preprocessor.%s is not supported", what);
    };
    if (c.sample_rate < 1000 || c.sample_rate > 384000) {
        return make_error(StatusCode::kInvalidArgument, "[mel] preprocessor.sample_rate = %d",
                          c.sample_rate);
    }
    // NeMo: n_window_size = int(window_size * sample_rate) (Python int() truncation).
    const double win_d = c.window_size * c.sample_rate;
    const double hop_d = c.window_stride * c.sample_rate;
    if (!(win_d >= 1 && win_d < 1e6) || !(hop_d >= 1 && hop_d < 1e6)) {
        return make_error(StatusCode::kInvalidArgument,
                          "[mel] preprocessor.window_size/window_stride give %g/%g samples", win_d,
                          hop_d);
    }
    const int win = static_cast<int>(win_d);
    const int hop = static_cast<int>(hop_d);
    if (c.n_fft < win || c.n_fft > 65536 || c.n_fft % 2 != 0 || !Fft::supported(c.n_fft)) {
        return make_error(StatusCode::kInvalidArgument,
                          "[mel] preprocessor.n_fft = %d (window %d samples): needs an even size "
                          ">= the window with prime factors <= 7",
                          c.n_fft, win);
    }
    if (c.features < 1 || c.features > 4096) {
        return make_error(StatusCode::kInvalidArgument, "[mel] preprocessor.features = %d",
                          c.features);
    }
    if (c.window != "hann") return bad("window (only \"hann\")");
    if (!c.log) return bad("log = false");
    if (c.frame_splicing != 1) return bad("frame_splicing != 1");
    if (c.normalize != "per_feature" && c.normalize != "" && c.normalize != "none") {
        return bad("normalize (only \"per_feature\" or none)");
    }
    if (c.pad_to < 0) return bad("pad_to < 0");
    if (!(c.log_guard > 0)) return bad("log_guard <= 0");

    MelFrontend m(c);
    m.win_ = win;
    m.hop_ = hop;
    m.n_fft_ = c.n_fft;
    m.fft_ = Fft(c.n_fft);
    m.window_ =
        window ? std::vector<float>(window, window + win) : hann_window(win, /*periodic=*/false);
    m.fb_ = mel_filterbank_slaney(c.sample_rate, c.n_fft, c.features, 0.0, c.sample_rate / 2.0);
    const int nb = m.n_bins();
    m.fb_lo_.assign(c.features, 0);
    m.fb_hi_.assign(c.features, 0);
    for (int f = 0; f < c.features; ++f) {
        const float* row = &m.fb_[static_cast<size_t>(f) * nb];
        int lo = 0, hi = nb;
        while (lo < nb && row[lo] == 0.0f) ++lo;
        while (hi > lo && row[hi - 1] == 0.0f) --hi;
        m.fb_lo_[f] = lo;
        m.fb_hi_[f] = hi;
    }
    return m;
}

MelFrontend::Shape MelFrontend::shape(size_t n) const {
    Shape s;
    s.valid = static_cast<int>(n / hop_);
    s.spectra = 1 + s.valid;
    s.frames = s.spectra;
    if (cfg_.pad_to > 0 && s.spectra % cfg_.pad_to != 0)
        s.frames = s.spectra + cfg_.pad_to - s.spectra % cfg_.pad_to;
    return s;
}

Expected<MelSpectrogram> MelFrontend::compute(const float* pcm, size_t n, ThreadPool* pool) const {
    if (n == 0 || pcm == nullptr) {
        return make_error(StatusCode::kInvalidArgument, "[mel] empty input");
    }
    if (n / hop_ >= static_cast<size_t>(INT_MAX / std::max(cfg_.features, 1)) - 1) {
        return make_error(StatusCode::kOutOfRange, "[mel] %zu samples is too long", n);
    }
    const int F = cfg_.features;
    const int valid = static_cast<int>(n / hop_);
    const int T = 1 + valid;
    int T_out = T;
    if (cfg_.pad_to > 0 && T % cfg_.pad_to != 0) T_out = T + cfg_.pad_to - T % cfg_.pad_to;

    // Everything below runs in float64 on the float32 input, window and filterbank values, and is
    // rounded to float32 once at the end (see mel.h: the float32 reference's own rounding noise
    // is larger than anything a float32 re-implementation could match).
    std::vector<double> y(n);
    y[0] = pcm[0];
    for (size_t t = 1; t < n; ++t) y[t] = static_cast<double>(pcm[t]) - cfg_.preemph * pcm[t - 1];

    MelSpectrogram out;
    out.features = F;
    out.frames = T_out;
    out.valid_frames = valid;
    out.data.assign(static_cast<size_t>(F) * T_out, static_cast<float>(cfg_.pad_value));

    std::vector<double> logmel(static_cast<size_t>(F) * T);  // [F, T]
    // Frames are independent: split them over the pool (each chunk has its own FFT buffers).
    auto frames = [&](int64_t t0, int64_t t1) {
        FrameScratch fs;
        for (int64_t t = t0; t < t1; ++t)
            log_mel_frame(y.data(), 0, static_cast<int64_t>(n), t, fs, &logmel[t], T);
    };
    if (pool) {
        pool->parallel_for(T, 64, frames);
    } else {
        frames(0, T);
    }
    normalize(logmel.data(), T, 1, valid, out);
    return out;
}

// Frame t from the pre-emphasised signal y (sample s at yb[s - yb_start], n samples in all; the
// frame's samples inside [0, n) must be at or after yb_start): F log-mel values at out[f * stride].
void MelFrontend::log_mel_frame(const double* yb, int64_t yb_start, int64_t n, int64_t t,
                                FrameScratch& fs, double* out, int64_t stride) const {
    const int F = cfg_.features;
    const int nb = n_bins();
    const int half = n_fft_ / 2;           // center=True padding
    const int left = (n_fft_ - win_) / 2;  // window offset inside the n_fft frame
    fs.frame.resize(n_fft_);
    fs.spec.resize(n_fft_);
    fs.power.resize(nb);
    // Padded-signal index of frame sample k is t*hop + k; signal index is that minus `half`.
    const int64_t base = t * hop_ - half;
    std::fill(fs.frame.begin(), fs.frame.end(), Fft::Complex(0.0, 0.0));
    for (int k = 0; k < win_; ++k) {
        const int64_t s = base + left + k;
        if (s >= 0 && s < n) fs.frame[left + k] = Fft::Complex(yb[s - yb_start] * window_[k], 0.0);
    }
    fft_.forward(fs.frame.data(), fs.spec.data());
    for (int b = 0; b < nb; ++b) fs.power[b] = std::norm(fs.spec[b]);  // |X|^2 (mag_power 2)
    for (int f = 0; f < F; ++f) {
        const float* row = &fb_[static_cast<size_t>(f) * nb];
        double acc = 0.0;
        for (int b = fb_lo_[f]; b < fb_hi_[f]; ++b) acc += row[b] * fs.power[b];
        out[static_cast<int64_t>(f) * stride] = std::log(acc + cfg_.log_guard);
    }
}

int64_t MelFrontend::frame_first_sample(int64_t t) const {
    return t * hop_ - n_fft_ / 2 + (n_fft_ - win_) / 2;
}

// Per-feature normalisation of logmel (value of feature f, frame t at f * f_stride + t * t_stride)
// over the first `valid` frames into out (already sized and filled with pad_value), rounded to
// float32 once.
void MelFrontend::normalize(const double* logmel, int64_t f_stride, int64_t t_stride, int valid,
                            MelSpectrogram& out) const {
    const int F = cfg_.features;
    const int T_out = out.frames;
    const bool per_feature = cfg_.normalize == "per_feature";
    for (int f = 0; f < F; ++f) {
        const Strided x{logmel + f * f_stride, t_stride};
        float* o = &out.data[static_cast<size_t>(f) * T_out];
        if (!per_feature) {
            for (int t = 0; t < valid; ++t) o[t] = static_cast<float>(x[t]);
            continue;
        }
        if (valid == 0) continue;  // mean is 0/0: every frame is masked to pad_value anyway
        double sum = 0.0;
        for (int t = 0; t < valid; ++t) sum += x[t];
        double mean = sum / valid;
        // One correction pass: makes the mean of a constant feature exact, so digital silence
        // normalises to exactly 0.
        double corr = 0.0;
        for (int t = 0; t < valid; ++t) corr += x[t] - mean;
        mean += corr / valid;
        double sd = 0.0;  // NaN (valid == 1) -> 0, as the reference
        if (valid > 1) {
            double ss = 0.0;
            for (int t = 0; t < valid; ++t) ss += (x[t] - mean) * (x[t] - mean);
            sd = std::sqrt(ss / (valid - 1.0));
        }
        sd += 1e-5;
        for (int t = 0; t < valid; ++t) o[t] = static_cast<float>((x[t] - mean) / sd);
    }
}

MelStream::MelStream(const MelFrontend& mel) : mel_(&mel) {}

void MelStream::reset() {
    // The memory goes too: an utterance's frames can be megabytes, and a session may wait long
    // for the next one.
    std::vector<double>().swap(y_);
    y_start_ = 0;
    n_ = 0;
    last_ = 0;
    std::vector<double>().swap(logmel_);
    frames_done_ = 0;
}

void MelStream::frames_ready(int64_t n_known, bool final, ThreadPool* pool) {
    const int F = mel_->features();
    // Frame t is final once its last sample is in (later samples never reach it), or at the end.
    int64_t t_end = frames_done_;
    const int64_t spectra = final ? mel_->shape(static_cast<size_t>(n_)).spectra : INT64_MAX;
    while (t_end < spectra &&
           (final || mel_->frame_first_sample(t_end) + mel_->win_length() <= n_known))
        ++t_end;
    if (t_end == frames_done_) return;
    const int64_t count = t_end - frames_done_;
    // Frame-major [T][F] here (the stream grows in T); normalisation reads it with stride.
    logmel_.resize(static_cast<size_t>(t_end * F));
    const int64_t t0 = frames_done_;
    auto run = [&](int64_t a, int64_t b) {
        MelFrontend::FrameScratch fs;
        for (int64_t i = a; i < b; ++i) {
            const int64_t t = t0 + i;
            mel_->log_mel_frame(y_.data(), y_start_, n_known, t, fs, &logmel_[t * F], 1);
        }
    };
    if (pool) {
        pool->parallel_for(count, 64, run);
    } else {
        run(0, count);
    }
    frames_done_ = t_end;
    // Samples before the next frame's first are no longer needed.
    const int64_t keep_from = mel_->frame_first_sample(frames_done_);
    if (keep_from - y_start_ > static_cast<int64_t>(y_.size() / 2) && keep_from > y_start_) {
        const int64_t drop =
            std::min<int64_t>(keep_from - y_start_, static_cast<int64_t>(y_.size()));
        y_.erase(y_.begin(), y_.begin() + drop);
        y_start_ += drop;
    }
}

void MelStream::push(const float* pcm, size_t n, ThreadPool* pool) {
    if (n == 0) return;
    const double p = mel_->config().preemph;
    for (size_t i = 0; i < n; ++i) {
        // Pre-emphasis, as compute(): y[0] = x[0], y[t] = x[t] - preemph * x[t-1].
        y_.push_back(n_ == 0 && i == 0 ? static_cast<double>(pcm[0])
                                       : static_cast<double>(pcm[i]) - p * last_);
        last_ = pcm[i];
    }
    n_ += static_cast<int64_t>(n);
    frames_ready(n_, /*final=*/false, pool);
}

Expected<MelSpectrogram> MelStream::finish(ThreadPool* pool) {
    if (n_ == 0) return make_error(StatusCode::kInvalidArgument, "[mel] empty input");
    if (static_cast<size_t>(n_) / mel_->hop() >=
        static_cast<size_t>(INT_MAX / std::max(mel_->features(), 1)) - 1)
        return make_error(StatusCode::kOutOfRange, "[mel] %lld samples is too long",
                          static_cast<long long>(n_));
    frames_ready(n_, /*final=*/true, pool);
    const MelFrontend::Shape sh = mel_->shape(static_cast<size_t>(n_));
    const int F = mel_->features();
    MelSpectrogram out;
    out.features = F;
    out.frames = sh.frames;
    out.valid_frames = sh.valid;
    out.data.assign(static_cast<size_t>(F) * sh.frames,
                    static_cast<float>(mel_->config().pad_value));
    mel_->normalize(logmel_.data(), 1, F, sh.valid, out);
    reset();
    return out;
}

}  // namespace voxrt::audio
