// The per-device entry points behind ops/ops.h. Each backend (cpu, cuda) defines every function
// of this list in its own namespace; ops/ops.cpp checks arguments and dispatches. Semantics are
// documented once, in ops/ops.h.
#pragma once

#include <string>

#include "ops/ops.h"

#define VOXRT_BACKEND_OPS_DECLARATIONS                                                             \
    void linear(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,     \
                Tensor& y);                                                                        \
    void rms_norm(const ops::Context& ctx, const Tensor& x, const Tensor& w, float eps,            \
                  ops::RmsStyle style, Tensor& y);                                                 \
    void layer_norm(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,    \
                    float eps, Tensor& y);                                                         \
    void add(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);                \
    void add_scaled(const ops::Context& ctx, const Tensor& a, const Tensor& b, float alpha,        \
                    Tensor& y);                                                                    \
    void mul(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);                \
    void activation(const ops::Context& ctx, ops::Activation act, const Tensor& x, Tensor& y);     \
    void swiglu(const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);             \
    void glu(const ops::Context& ctx, const Tensor& x, Tensor& y);                                 \
    void embedding(const ops::Context& ctx, const Tensor& table, const Tensor& ids, Tensor& y);    \
    void embedding_bag(const ops::Context& ctx, const Tensor& table, const Tensor& ids,            \
                       int64_t stride, bool mean, Tensor& y);                                      \
    void rope(const ops::Context& ctx, Tensor& x, const Tensor& pos, const Tensor& cos,            \
              const Tensor& sin, ops::RopeStyle style);                                            \
    void kv_write(const ops::Context& ctx, const Tensor& k, const Tensor& v, const Tensor& pos,    \
                  Tensor& k_cache, Tensor& v_cache);                                               \
    void attention(const ops::Context& ctx, const Tensor& q, const Tensor& k_cache,                \
                   const Tensor& v_cache, const Tensor& pos, float scale, int window,              \
                   Tensor& out);                                                                   \
    void short_conv(const ops::Context& ctx, const Tensor& x, const Tensor& w, Tensor& state,      \
                    const Tensor& pos, Tensor& y);                                                 \
    void argmax(const ops::Context& ctx, const Tensor& logits, Tensor& out);                       \
    void sample_top_k(const ops::Context& ctx, const Tensor& logits, float temperature, int top_k, \
                      uint64_t seed, const Tensor& counter, Tensor& out);                          \
    void set_value(const ops::Context& ctx, Tensor& t, int64_t index, float value);                \
    void increment(const ops::Context& ctx, Tensor& t, int32_t delta);                             \
    void fill_rows_led_by(const ops::Context& ctx, Tensor& t, int32_t value);                      \
    void copy(const ops::Context& ctx, const Tensor& src, Tensor& dst);                            \
    void zero(const ops::Context& ctx, Tensor& t);                                                 \
    void round_to_act(const ops::Context& ctx, Tensor& t);                                         \
    void transpose(const ops::Context& ctx, const Tensor& x, Tensor& y);                           \
    Status synchronize(const ops::Context& ctx);

namespace voxrt {
// One step of the streaming ISTFT (ops/istft_ops.h, ops::StreamingIstft), all pointers on the
// context's device. `rows` new frames follow `frames_before` earlier ones: each row of spec
// [rows][2·bins] (log|X| then ∠X, bins = n_fft/2 + 1) becomes X = polar(exp(log|X|), ∠X), is
// inverse-transformed (float64), windowed into frames [rows][n_fft], and overlap-added after
// carry_in [n_fft − hop], the partial sums that earlier frames left for samples
// [frames_before·hop, (frames_before − 1)·hop + n_fft). Absolute samples [emit_lo, emit_hi) (all at
// or after frames_before·hop) go to out, divided by the window² envelope; when rows > 0 the partial
// sums of the samples from (frames_before + rows)·hop on go to carry_out (never carry_in).
struct IstftStepArgs {
    const float* spec = nullptr;
    const float* window = nullptr;     // [n_fft]
    const float* window_sq = nullptr;  // [n_fft] window[i]·window[i], rounded to float
    const float* carry_in = nullptr;
    float* carry_out = nullptr;
    float* frames = nullptr;  // scratch [rows][n_fft]
    float* out = nullptr;     // [emit_hi − emit_lo]
    int rows = 0, n_fft = 0, hop = 0;
    int64_t frames_before = 0, emit_lo = 0, emit_hi = 0;
};
}  // namespace voxrt

namespace voxrt::cpu {
VOXRT_BACKEND_OPS_DECLARATIONS
void istft_step(const ops::Context& ctx, const IstftStepArgs& a);
}  // namespace voxrt::cpu

namespace voxrt::ops {
struct DepthformerFrame;
struct Lfm2Step;
}  // namespace voxrt::ops

namespace voxrt::cuda {
VOXRT_BACKEND_OPS_DECLARATIONS
// The log-mel spectrogram of audio::MelFrontend on the GPU (audio/mel.h, MelFrontend::compute_on):
// pcm [n] F32 and out [features, frames_out] F32 on the device; window, filterbank and the bins
// on the host (uploaded per call). frames = 1 + valid spectra are computed, the first `valid`
// normalised, the rest of out is pad_value.
struct LogMelArgs {
    const float* pcm = nullptr;
    int64_t n = 0;
    const float* window = nullptr;      // [win]
    const float* filterbank = nullptr;  // [features, n_fft/2 + 1]
    const int32_t* bin_lo = nullptr;    // [features]: nonzero bins [lo, hi)
    const int32_t* bin_hi = nullptr;
    int win = 0, n_fft = 0, hop = 0, features = 0, frames = 0, valid = 0, frames_out = 0;
    double preemph = 0, log_guard = 0;
    bool per_feature = true;
    float pad_value = 0;
    float* out = nullptr;
};
Status log_mel(const ops::Context& ctx, const LogMelArgs& a);
void istft_step(const ops::Context& ctx, const IstftStepArgs& a);
// Device -> host without waiting (ops::copy_to_host_async; the CPU backend's is cpu::copy).
void copy_to_host_async(const ops::Context& ctx, const Tensor& src, Tensor& dst);
// Fused kernels (ops/fused_ops.h): false when there is none for these shapes/options.
bool depthformer_frame(const ops::Context& ctx, const ops::DepthformerFrame& f);
bool lfm2_decode_step(const ops::Context& ctx, const ops::Lfm2Step& s);
// Block 0's phase timings of the last streamed depthformer launch made with VOXRT_DF_PROFILE=1
// (a diagnostic; synchronizes the context's stream).
std::string depthformer_profile_report(const ops::Context& ctx);
// Block 0's phase stamps of the last fused LFM2 step made with VOXRT_STEP_PROFILE=1 (a diagnostic;
// synchronizes the context's stream).
std::string lfm2_step_profile_report(const ops::Context& ctx);
// Microseconds per grid barrier of the persistent kernels (mode: persistent.cuh BarrierMode), from
// one launch doing `iters` barriers; < 0 on failure. For tests and tuning.
double grid_barrier_bench_us(const ops::Context& ctx, int mode, int iters);
}  // namespace voxrt::cuda
