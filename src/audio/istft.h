// Inverse STFT of the LFM2.5 audio detokenizer (liquid_audio/detokenizer.py `ISTFT`, Vocos-style,
// padding="same"): per frame, x = irfft(X, n_fft) (1/N scaling; imaginary parts of the DC and
// Nyquist bins ignored, as torch/pocketfft c2r) times a periodic Hann window; overlap-add with
// `hop`; trim pad = (win - hop) / 2 samples at both ends; divide by the overlap-added window^2
// envelope (trimmed the same way). F frames give exactly F * hop samples.
//
// Spectrum layout everywhere: one frame is n_bins = n_fft/2 + 1 complex values stored as
// interleaved float pairs (re, im): [n_bins][2]. F frames are [F][n_bins][2], frame-major.
//
// Streaming (IstftStream): absolute output sample a (before trimming) receives contributions from
// frames f with f*hop <= a < f*hop + n_fft, so once frame f has been added every sample below
// (f+1)*hop is final, including its envelope (later frames do not touch it). step(f) therefore
// emits the final samples [(f)*hop, (f+1)*hop) minus the leading `pad` that the batch version
// trims: with the detokenizer's 1280/320, step 0 emits 0 samples, step 1 emits 160 and every later
// step 320. flush() emits the tail [F*hop, F*hop + pad) that only the last frames cover (the batch
// version keeps it and trims only beyond it): 480 samples, or 320 when F == 1. Concatenated step
// outputs + flush equal istft_same() exactly (same float32 operations in the same order).
//
// Precision: the inverse FFT runs in float64 and is rounded to float32; windowing, overlap-add and
// the envelope division are float32 like the reference.
#pragma once

#include <cstddef>
#include <vector>

#include "audio/fft.h"
#include "core/status.h"

namespace voxrt {
class ThreadPool;
}

namespace voxrt::audio {

struct IstftConfig {
    int n_fft = 1280;
    int hop = 320;
    int win_length = 1280;  // must equal n_fft (the reference's irfft frame is the window)
};

// Checks n_fft == win_length, hop in [1, win], (win - hop) even, n_fft even with prime factors
// <= 7.
Status validate_istft_config(const IstftConfig& cfg);

// Batch ISTFT ("same" padding). spec: [n_frames][n_fft/2+1][2]. Returns n_frames * hop samples
// (empty for n_frames == 0). cfg must pass validate_istft_config (checked).
// `window` as for IstftStream.
std::vector<float> istft_same(const float* spec, size_t n_frames, const IstftConfig& cfg = {},
                              const float* window = nullptr);

// One frame's windowed inverse transform: frame_out[i] = float(irfft(X, n)[i]) * window[i] for
// i < n = fft.size(), X [n/2+1][2], with the transform in float64 (imaginary parts of the DC and
// Nyquist bins ignored). in/out: n values of scratch each.
void irfft_windowed(const Fft& fft, const float* X, const float* window, Fft::Complex* in,
                    Fft::Complex* out, float* frame_out);

// Detokenizer head output -> spectrum: X = polar(exp(logmag), phase) computed as torch.polar in
// float32: (exp(m) * cos(p), exp(m) * sin(p)). logmag, phase: [n_bins]; out: [n_bins][2].
void spectrum_from_logmag_phase(const float* logmag, const float* phase, int n_bins, float* out);

// Streaming ISTFT with the batch version's exact edge handling. All buffers are sized at
// construction: step() and flush() do not allocate. Not thread-safe; one per session.
class IstftStream {
public:
    // cfg must pass validate_istft_config (checked). `window` (n_fft values), when given,
    // replaces the computed periodic Hann, e.g. with the checkpoint's `istft.window` buffer.
    explicit IstftStream(const IstftConfig& cfg = {}, const float* window = nullptr);

    int hop() const { return cfg_.hop; }
    int n_bins() const { return cfg_.n_fft / 2 + 1; }
    // Largest number of samples one step() or flush() writes.
    int max_step_samples() const { return cfg_.hop; }
    int max_flush_samples() const;

    // Adds one frame spectrum [n_bins][2]; writes the newly final samples to out (capacity
    // max_step_samples()) and returns their count.
    size_t step(const float* frame, float* out);
    // Adds `count` frames ([count][n_bins][2], consecutive) at once: the same samples as `count`
    // step() calls, concatenated in out (capacity count·max_step_samples()). The inverse transforms
    // run on `pool` (optional); the overlap-add runs in frame order. Batches larger than
    // reserve_batch() are done in pieces of that size; no allocation beyond reserve_batch().
    size_t step_batch(const float* frames, int count, float* out, ThreadPool* pool);
    void reserve_batch(int count);
    // Ends the utterance: writes the remaining tail (capacity max_flush_samples()), returns its
    // count, and resets the stream for the next utterance.
    size_t flush(float* out);
    // Drops all state (start of a new utterance).
    void reset();

    // Frames added since the last reset/flush.
    size_t frames() const { return frames_; }

private:
    // Emits absolute samples [emitted_, end) from the rings into out.
    size_t emit_until(int64_t end, float* out);
    // Overlap-adds one windowed inverse transform (n_fft samples) as the next frame; returns the
    // newly final samples written to out.
    size_t add_windowed(const float* w, float* out);

    IstftConfig cfg_;
    int pad_ = 0;
    Fft fft_{1};
    std::vector<float> window_;          // [n_fft] periodic Hann
    std::vector<float> window_sq_;       // [n_fft]
    std::vector<Fft::Complex> buf_in_;   // [n_fft] scratch
    std::vector<Fft::Complex> buf_out_;  // [n_fft] scratch
    std::vector<float> frame_;           // [n_fft] scratch: windowed irfft of the frame
    int batch_cap_ = 0;                  // frames step_batch() transforms at once
    std::vector<Fft::Complex> batch_in_, batch_out_;  // [batch_cap_][n_fft]
    std::vector<float> batch_frames_;                 // [batch_cap_][n_fft]
    // Overlap-add rings over absolute sample index a (slot a % n_fft): samples in
    // [emitted_, frames_*hop + n_fft) are live.
    std::vector<float> acc_;  // [n_fft] sum of windowed frames
    std::vector<float> env_;  // [n_fft] sum of window^2
    size_t frames_ = 0;
    int64_t emitted_ = 0;  // next absolute sample to emit (>= pad)
};

}  // namespace voxrt::audio
