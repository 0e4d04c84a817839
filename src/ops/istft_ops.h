// The detokenizer's streaming inverse STFT on the context's device. It reads the head output where
// the network left it ([rows][2·bins]: log|X| then ∠X) and writes PCM there, so a GPU session
// copies samples to the host instead of spectra, and no transform runs on the host.
//
// Samples: those of audio::IstftStream fed with audio::spectrum_from_logmag_phase of each row —
// bit for bit on the CPU (the same functions; IstftStream's ring of partial sums is the carry
// here). On a GPU the inverse transform is a float64 sum over the bins (backend/cuda/istft.cu)
// rather than the host's float64 FFT, and exp/cos/sin are computed in float64 and rounded, so a
// value can differ from the host's by a float32 rounding step; everything after the transform is
// the same float32 operations in the same order.
#pragma once

#include <cstdint>

#include "audio/istft.h"
#include "core/arena.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace voxrt::ops {

class StreamingIstft {
public:
    StreamingIstft() = default;
    StreamingIstft(StreamingIstft&&) noexcept = default;
    StreamingIstft& operator=(StreamingIstft&&) noexcept = default;

    // cfg must pass audio::validate_istft_config; window: n_fft host values (as IstftStream's);
    // steps take 1..max_rows rows. All device memory is allocated here.
    static Expected<StreamingIstft> create(const Context& ctx, const audio::IstftConfig& cfg,
                                           const float* window, int max_rows);

    int hop() const { return cfg_.hop; }
    int n_bins() const { return cfg_.n_fft / 2 + 1; }
    int max_rows() const { return max_rows_; }
    // Largest count step() (for max_rows rows) and flush() write.
    int64_t max_step_samples() const { return static_cast<int64_t>(max_rows_) * cfg_.hop; }
    int64_t max_flush_samples() const;
    size_t device_bytes() const { return mem_.capacity(); }
    // Frames added since the last reset/flush.
    int64_t frames() const { return frames_; }

    // Adds spec's rows ([rows][2·bins] F32 on ctx's device, 1 <= rows <= max_rows) as the next
    // frames and writes the samples that became final to the start of pcm (F32 on ctx's device,
    // numel >= rows·hop); returns their count (IstftStream::step_batch's). Queued on ctx's stream.
    Expected<int64_t> step(const Context& ctx, const Tensor& spec, Tensor& pcm);
    // Ends the utterance: writes the remaining tail (IstftStream::flush's) and resets.
    Expected<int64_t> flush(const Context& ctx, Tensor& pcm);
    // Drops the utterance (host counters only).
    void reset();

private:
    Status check_pcm(const Context& ctx, const Tensor& pcm, int64_t need) const;
    Expected<int64_t> run(const Context& ctx, const Tensor* spec, int rows, Tensor& pcm);

    audio::IstftConfig cfg_;
    int pad_ = 0;
    int max_rows_ = 0;
    Device device_ = Device::kCPU;
    Arena mem_;
    Tensor window_, window_sq_;  // F32 [n_fft]
    Tensor carry_[2];            // F32 [n_fft - hop]: partial sums of the samples not yet final
    Tensor frames_buf_;          // F32 [max_rows, n_fft] windowed frames of a step
    int cur_ = 0;                // carry_[cur_] holds the current partial sums
    int64_t frames_ = 0;
    int64_t emitted_ = 0;  // absolute samples below this are emitted (or trimmed)
};

}  // namespace voxrt::ops
