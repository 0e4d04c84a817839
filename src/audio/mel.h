// Log-mel front end: the official AudioToMelSpectrogramPreprocessor (NeMo FilterbankFeatures,
// liquid_audio/model/conformer/processor.py) in eval mode, for 16 kHz mono float32 PCM.
//
// Steps (spec section 2), n input samples, hop = int(window_stride * sr), win = int(window_size
// * sr), T = 1 + n / hop frames, valid = n / hop frames:
//   1. no dither (the reference applies it only in training);
//   2. pre-emphasis y[0] = x[0], y[t] = x[t] - preemph * x[t-1];
//   3. STFT, center=True (n_fft/2 zeros each side), symmetric Hann(win) zero-padded to n_fft and
//      centred, frame t starting at t*hop of the padded signal;
//   4. power |X|^2 (mag_power 2);
//   5. Slaney-normalised mel filterbank, built like librosa.filters.mel (float64, cast to float32
//      before the Slaney scaling, scaled in float64 and cast again): bit-identical to librosa;
//   6. log(mel + log_guard);
//   7. per-feature normalisation over the `valid` frames: mean, unbiased std (NaN -> 0) + 1e-5,
//      applied to all T frames;
//   8. frames >= valid set to pad_value (the terminal centred frame is kept but zeroed);
//      pad_to > 0 pads T up to a multiple of pad_to with pad_value.
//
// Precision: steps 2-7 run in float64 on the float32 input, window and filterbank values, and the
// result is rounded to float32 once. With the reference's exact window this reproduces the
// reference featurizer run in float64 exactly (after rounding). The float32 reference itself
// differs from that by its own rounding noise: up to ~3e-4 in mel bands near the log guard (its
// float32 FFT), and, where a feature's std is ~0 (digital silence), +-0.1..0.2 artefacts from its
// float32 mean that depend on the platform's summation order (AVX2 vs AVX512 vs CUDA); voxrt
// gives exact 0 there. docs/audio.md has the measurements.
//
// Edge cases (reference behaviour on CPU, reproduced): n < hop gives valid = 0 and one frame of
// pad_value; hop <= n < 2*hop gives valid = 1, std NaN -> 0, so every frame is 0. (On CUDA the
// reference raises for valid == 1; voxrt follows the CPU result.) n == 0 is an error (the
// reference raises IndexError).
//
// The per-feature statistics span the whole utterance, as in the reference, so only steps 2-6 can
// run as audio arrives: MelStream does that (each frame as soon as its samples are in) and
// normalises at the end; its result equals compute() on the whole signal, bit for bit.
// MelFrontend is immutable after create(); compute() is const and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "audio/fft.h"
#include "core/status.h"

namespace voxrt {
class ThreadPool;
}

namespace voxrt::audio {

// Filled by the caller from config.json["preprocessor"] (field names as PreprocessorConfig);
// defaults are the LFM2.5-Audio values.
struct MelConfig {
    int sample_rate = 16000;
    int n_fft = 512;
    double window_size = 0.025;   // seconds; win = int(window_size * sample_rate)
    double window_stride = 0.01;  // seconds; hop = int(window_stride * sample_rate)
    int features = 128;
    std::string window = "hann";            // only "hann"
    std::string normalize = "per_feature";  // "per_feature" or "" / "none"
    bool log = true;                        // only true
    int frame_splicing = 1;                 // only 1
    double dither = 1e-5;                   // ignored: eval mode
    int pad_to = 0;
    double pad_value = 0.0;
    double preemph = 0.97;                // NeMo default, not in config.json
    double log_guard = 1.0 / 16777216.0;  // 2^-24, "add" guard
};

// Row-major [features, frames] log-mel.
struct MelSpectrogram {
    std::vector<float> data;  // [features * frames]
    int features = 0;
    int frames = 0;        // 1 + n / hop (rounded up to pad_to when pad_to > 0)
    int valid_frames = 0;  // n / hop: frames used for the statistics
};

class MelFrontend {
public:
    // Validates the config (unsupported options give kUnsupported) and builds the window and the
    // filterbank. `window` (win_length values), when given, replaces the computed symmetric Hann:
    // pass the reference's exact float32 window (torch.hann_window(400, periodic=False), shipped
    // as data by the converter) for bit-level parity. The computed one uses glibc cosf where torch
    // uses SLEEF's vectorised cosf and differs in 10 of 400 values by 1 ulp, which moves the
    // normalised log-mel by up to ~4e-5 in bands near the log guard (docs/audio.md).
    static Expected<MelFrontend> create(const MelConfig& config, const float* window = nullptr);

    // pcm16k: mono samples at config.sample_rate. n >= 1 (n == 0 -> kInvalidArgument).
    // pool (optional): frames are computed in parallel; the result is identical either way.
    Expected<MelSpectrogram> compute(const float* pcm, size_t n, ThreadPool* pool = nullptr) const;

    // Frame counts for n samples: `spectra` computed (1 + n / hop), the first `valid` (n / hop)
    // normalised and kept, `frames` in the output (spectra rounded up to pad_to).
    struct Shape {
        int spectra = 0, valid = 0, frames = 0;
    };
    Shape shape(size_t n) const;

    const MelConfig& config() const { return cfg_; }
    // Per feature, the filterbank's nonzero bins [bin_lo, bin_hi).
    const std::vector<int>& bin_lo() const { return fb_lo_; }
    const std::vector<int>& bin_hi() const { return fb_hi_; }
    int hop() const { return hop_; }
    int win_length() const { return win_; }
    int n_fft() const { return n_fft_; }
    int features() const { return cfg_.features; }
    int n_bins() const { return n_fft_ / 2 + 1; }
    // [features, n_bins] float32 filterbank, as librosa.filters.mel(norm="slaney").
    const std::vector<float>& filterbank() const { return fb_; }
    // [win_length] symmetric Hann window, float32.
    const std::vector<float>& window() const { return window_; }

    // The pieces of compute(), for MelStream. One frame's log-mel (steps 3-6) from the
    // pre-emphasised signal (sample s at yb[s - yb_start], n samples in all), to out[f * stride].
    struct FrameScratch {
        std::vector<Fft::Complex> frame, spec;
        std::vector<double> power;
    };
    void log_mel_frame(const double* yb, int64_t yb_start, int64_t n, int64_t t, FrameScratch& fs,
                       double* out, int64_t stride) const;
    // Signal index of frame t's first windowed sample (may be negative); it reads win_length().
    int64_t frame_first_sample(int64_t t) const;
    // Steps 7-8: logmel (feature f, frame t at f * f_stride + t * t_stride) normalised over
    // `valid` frames into out (sized, pad_value-filled).
    void normalize(const double* logmel, int64_t f_stride, int64_t t_stride, int valid,
                   MelSpectrogram& out) const;

private:
    explicit MelFrontend(const MelConfig& config);

    MelConfig cfg_;
    int win_ = 0;
    int hop_ = 0;
    int n_fft_ = 0;
    Fft fft_{1};
    std::vector<float> window_;       // [win]
    std::vector<float> fb_;           // [features, n_bins]
    std::vector<int> fb_lo_, fb_hi_;  // per feature: nonzero bin range [lo, hi)
};

// The log-mel of a signal that arrives in pieces (16 kHz): push() computes each frame as soon as
// every sample it reads is in; finish() computes the rest (the frames that reach into the right
// padding), normalises, and starts over. Equal to MelFrontend::compute() on the whole signal,
// however it is split. Memory: the frames so far (features × 8 bytes each) and the samples the
// next frame needs. Not thread-safe; the MelFrontend must outlive it.
class MelStream {
public:
    explicit MelStream(const MelFrontend& mel);
    void push(const float* pcm16k, size_t n, ThreadPool* pool = nullptr);
    Expected<MelSpectrogram> finish(ThreadPool* pool = nullptr);
    void reset();
    int64_t samples() const { return n_; }

private:
    void frames_ready(int64_t n_known, bool final, ThreadPool* pool);

    const MelFrontend* mel_;
    std::vector<double> y_;  // pre-emphasised samples from y_start_ on
    int64_t y_start_ = 0;
    int64_t n_ = 0;               // samples pushed
    float last_ = 0;              // the last sample pushed (pre-emphasis)
    std::vector<double> logmel_;  // [frames_done_, F]
    int64_t frames_done_ = 0;
};

// librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney", dtype=float32),
// row-major [n_mels, 1 + n_fft/2].
std::vector<float> mel_filterbank_slaney(int sample_rate, int n_fft, int n_mels, double fmin,
                                         double fmax);

}  // namespace voxrt::audio
