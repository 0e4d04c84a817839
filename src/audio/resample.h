// Band-limited resampling identical in algorithm to torchaudio.functional.resample with its
// defaults (torchaudio 2.11: resampling_method "sinc_interp_hann", lowpass_filter_width 6,
// rolloff 0.99), which the official pipeline applies to every input (ChatState.add_audio).
//
// torchaudio reduces the rates by their gcd (orig = sr_in/g, new = sr_out/g), builds `new`
// polyphase filters of length 2*width + orig with width = ceil(6 * orig / base), base = min(orig,
// new) * 0.99, zero-pads the input by width on the left and width + orig on the right, convolves
// with stride orig and keeps ceil(n * new / orig) outputs. The kernel is computed in the waveform's
// dtype (float32), op by op; this implementation repeats those float32 steps (with glibc sinf/cosf
// in place of torch's vectorised ones) and accumulates each output in float64.
//
// Only the taps inside the sinc's +-6 zero-crossing support are kept: torchaudio's kernel outside
// it is cos^2 evaluated at float32(pi/2) (~1.9e-15) times sinc (~1e-7), below 1e-21, and dropping
// it is the only deliberate difference. Cost: ~2 * 6 * orig/base + 1 taps per output sample
// (13 for 48k->16k, 34 for 44.1k->16k, 25 for 8k->16k), independent of how unbalanced the rates
// are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace voxrt {
class ThreadPool;
}

namespace voxrt::audio {

// Resamples x[0..n) from sr_in to sr_out Hz (both > 0). Returns ceil(n * sr_out / sr_in) samples;
// a copy of the input when the rates are equal. Input samples must be finite (decode_wav ensures
// it): as in torchaudio, a NaN/Inf would spread to every output whose support includes it.
// pool (optional): output blocks are computed in parallel; the result is identical either way.
std::vector<float> resample(const float* x, size_t n, int sr_in, int sr_out,
                            ThreadPool* pool = nullptr);

// A precomputed polyphase filter bank for one rate pair, for callers that resample many buffers.
// Immutable after construction; thread-compatible.
class Resampler {
public:
    Resampler(int sr_in, int sr_out);

    int orig() const { return orig_; }  // sr_in / gcd
    int next() const { return new_; }   // sr_out / gcd
    // Number of outputs for n inputs: ceil(n * new / orig).
    size_t output_size(size_t n) const;
    // Writes output_size(n) samples to y.
    void process(const float* x, size_t n, float* y, ThreadPool* pool = nullptr) const;

    int width() const { return width_; }
    // Output k * next() + j: its value when the input has n samples, sample s at xb[s - xb_start]
    // (every tap of the output inside [xb_start, n) or outside [0, n)); and the input index its
    // last tap reads + 1 (the output is final once that many samples are in).
    float output(const float* xb, int64_t xb_start, int64_t n, int64_t k, int j) const;
    int64_t input_end(int64_t k, int j) const;

private:
    int orig_ = 1;
    int new_ = 1;
    int width_ = 0;
    // Phase j's taps cover padded-input offsets [first_[j], first_[j] + count_[j]) within its
    // window of length 2 * width + orig; taps_ holds them back to back from offset_[j].
    std::vector<int> first_, count_;
    std::vector<size_t> offset_;
    std::vector<float> taps_;
};

// Resampling of a signal that arrives in pieces: push() returns each output as soon as every input
// it depends on is in, finish() the rest (those whose taps reach past the end, where the signal is
// zero-padded). The outputs equal Resampler::process on the whole signal, bit for bit, however
// the input is split. Keeps only the input later outputs still need. Not thread-safe.
class ResampleStream {
public:
    ResampleStream(int sr_in, int sr_out);
    void push(const float* x, size_t n, std::vector<float>& out);  // appends to out
    void finish(std::vector<float>& out);                          // appends the tail
    void reset();
    int64_t samples_in() const { return n_in_; }

private:
    void ready(int64_t n_known, bool final, std::vector<float>& out);

    bool same_ = false;
    Resampler r_;
    std::vector<float> buf_;  // input samples from buf_start_ on
    int64_t buf_start_ = 0;
    int64_t n_in_ = 0;
    int64_t next_ = 0;  // next output index
};

}  // namespace voxrt::audio
