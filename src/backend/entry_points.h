// The one list of a backend's entry points. A backend (cpu, cuda, ...) defines every function of
// VOXRT_BACKEND_ENTRY_POINTS in its own namespace and publishes them as an EntryPoints table
// (VOXRT_BACKEND_TABLE); ops/*.cpp and backend/device.cpp check arguments and call through the
// table of ctx.device. Semantics are documented once, where the caller-facing function is declared:
// ops/ops.h, ops/conformer_ops.h, ops/fused_ops.h, ops/istft_ops.h, ops/mel_ops.h and
// backend/device.h. Entries a backend has no implementation for still exist and say so:
// depthformer_frame / lfm2_decode_step / kv_write_rows / attention_rows return false (the caller
// runs the op sequence or a per-row loop), log_mel and
// the graph entries return kUnsupported, range_push / range_pop do nothing.
#pragma once

#include <cstdint>
#include <string>

#include "backend/device.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/ops.h"

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

// The log-mel spectrogram of audio::MelFrontend on the device (audio/mel.h, ops::log_mel):
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

namespace ops {
struct DepthformerFrame;
struct Lfm2Step;
}  // namespace ops

}  // namespace voxrt

// X(return type, name, (parameters)) for every entry point, in table order.
// clang-format off
#define VOXRT_BACKEND_ENTRY_POINTS(X)                                                              \
    /* ---- the device (backend/device.h) ---- */                                                 \
    X(bool, available, ())                                                                         \
    X(std::string, hardware_name, (int index))                                                     \
    X(Expected<ops::Context>, create_context,                                                      \
      (ops::Precision precision, int index, const backend::ContextOptions& options))               \
    X(void, destroy_context, (ops::Context & ctx))                                                 \
    /* the capture runs from graph_begin to graph_end, which hands over the instantiated graph */ \
    X(Status, graph_begin, (const ops::Context& ctx))                                              \
    X(Status, graph_end, (const ops::Context& ctx, void** graph))                                  \
    X(Status, graph_replay, (const ops::Context& ctx, void* graph))                                \
    X(void, graph_destroy, (void* graph))                                                          \
    /* named ranges for an attached profiler (ops::ProfileRange); free when none is attached */    \
    X(void, range_push, (const ops::Context& ctx, const char* name))                               \
    X(void, range_pop, (const ops::Context& ctx))                                                  \
    /* ---- ops/ops.h ---- */                                                                      \
    X(void, linear, (const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, \
                     Tensor& y))                                                                   \
    X(void, rms_norm, (const ops::Context& ctx, const Tensor& x, const Tensor& w, float eps,        \
                       ops::RmsStyle style, Tensor& y))                                            \
    X(void, layer_norm, (const ops::Context& ctx, const Tensor& x, const Tensor& w,                \
                         const Tensor& b, float eps, Tensor& y))                                   \
    X(void, add, (const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y))           \
    X(void, add_scaled, (const ops::Context& ctx, const Tensor& a, const Tensor& b, float alpha,   \
                         Tensor& y))                                                               \
    X(void, mul, (const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y))           \
    X(void, activation, (const ops::Context& ctx, ops::Activation act, const Tensor& x,            \
                         Tensor& y))                                                               \
    X(void, swiglu, (const ops::Context& ctx, const Tensor& a, const Tensor& b, Tensor& y))        \
    X(void, glu, (const ops::Context& ctx, const Tensor& x, Tensor& y))                            \
    X(void, embedding, (const ops::Context& ctx, const Tensor& table, const Tensor& ids,           \
                        Tensor& y))                                                                \
    X(void, embedding_bag, (const ops::Context& ctx, const Tensor& table, const Tensor& ids,       \
                            int64_t stride, bool mean, Tensor& y))                                 \
    X(void, rope, (const ops::Context& ctx, Tensor& x, const Tensor& pos, const Tensor& cos,       \
                   const Tensor& sin, ops::RopeStyle style))                                       \
    X(void, kv_write, (const ops::Context& ctx, const Tensor& k, const Tensor& v,                  \
                       const Tensor& pos, Tensor& k_cache, Tensor& v_cache))                       \
    X(void, attention, (const ops::Context& ctx, const Tensor& q, const Tensor& k_cache,           \
                        const Tensor& v_cache, const Tensor& pos, float scale, int window,         \
                        Tensor& out))                                                              \
    X(void, short_conv, (const ops::Context& ctx, const Tensor& x, const Tensor& w,                \
                         Tensor& state, const Tensor& pos, Tensor& y))                             \
    X(void, argmax, (const ops::Context& ctx, const Tensor& logits, Tensor& out))                  \
    X(void, sample_top_k, (const ops::Context& ctx, const Tensor& logits, float temperature,       \
                           int top_k, uint64_t seed, const Tensor& counter, Tensor& out))          \
    X(void, set_value, (const ops::Context& ctx, Tensor& t, int64_t index, float value))           \
    X(void, increment, (const ops::Context& ctx, Tensor& t, int32_t delta))                        \
    X(void, fill_rows_led_by, (const ops::Context& ctx, Tensor& t, int32_t value))                 \
    /* between two tensors of this backend's device, or between it and the host */               \
    X(void, copy, (const ops::Context& ctx, const Tensor& src, Tensor& dst))                       \
    X(void, copy_to_host_async, (const ops::Context& ctx, const Tensor& src, Tensor& dst))         \
    X(void, upload_async, (const ops::Context& ctx, const Tensor& src, Tensor& dst))               \
    X(void, zero, (const ops::Context& ctx, Tensor& t))                                            \
    X(void, round_to_act, (const ops::Context& ctx, Tensor& t))                                    \
    X(void, transpose, (const ops::Context& ctx, const Tensor& x, Tensor& y))                      \
    X(Status, synchronize, (const ops::Context& ctx))                                              \
    /* ---- ops/conformer_ops.h ---- */                                                            \
    X(void, subsample_conv_in, (const ops::Context& ctx, const Tensor& mel, int64_t t_valid,       \
                                const Tensor& w, const Tensor& b, Tensor& y, int64_t y_row0))      \
    X(void, subsample_dw_conv, (const ops::Context& ctx, const Tensor& x, int64_t x_row0,          \
                                int64_t t_valid, const Tensor& w, const Tensor& b, Tensor& y,      \
                                int64_t y_row0))                                                   \
    X(void, subsample_flatten, (const ops::Context& ctx, const Tensor& x, int64_t t_valid,         \
                                Tensor& y))                                                        \
    X(void, rel_pos_embed, (const ops::Context& ctx, const Tensor& table, int64_t T,               \
                            bool round_table, Tensor& y))                                          \
    X(void, rel_pos_attention, (const ops::Context& ctx, const Tensor& q, const Tensor& k,         \
                                const Tensor& v, const Tensor& p, const Tensor& pos_bias_u,        \
                                const Tensor& pos_bias_v, int n_heads, Tensor& out))               \
    X(void, conv_dw_bn_silu, (const ops::Context& ctx, const Tensor& x, const Tensor& w,           \
                              const Tensor& b, const Tensor& bn_scale, const Tensor& bn_shift,     \
                              Tensor& y))                                                          \
    /* ---- ops/istft_ops.h, ops/mel_ops.h ---- */                                                 \
    X(void, istft_step, (const ops::Context& ctx, const IstftStepArgs& a))                         \
    X(Status, log_mel, (const ops::Context& ctx, const LogMelArgs& a))                             \
    /* ---- ops/fused_ops.h: false when there is no fused kernel for these shapes/options ---- */  \
    X(bool, depthformer_frame, (const ops::Context& ctx, const ops::DepthformerFrame& f))          \
    X(bool, kv_write_rows, (const ops::Context& ctx, const Tensor& k, const Tensor& v,             \
                            const Tensor& pos, const ops::RowCaches& c))                           \
    X(bool, attention_rows, (const ops::Context& ctx, const Tensor& q, const ops::RowCaches& c,    \
                             const Tensor& pos, float scale, int window, Tensor& out))             \
    /* a decode batch's per-row ops (ops.h), from a device table; false: the per-row loop */    \
    X(bool, copy_many, (const ops::Context& ctx, const Tensor& table, int64_t n))                  \
    X(bool, increment_many, (const ops::Context& ctx, const Tensor& table, int64_t n,              \
                             int32_t delta))                                                       \
    X(bool, short_conv_rows, (const ops::Context& ctx, const Tensor& x, const Tensor& w,           \
                              const Tensor& table, DType state_dtype, Tensor& y))                  \
    X(bool, sample_rows, (const ops::Context& ctx, Tensor& logits, const Tensor& table,            \
                          int counter_index, Tensor& out))                                         \
    X(bool, lfm2_decode_step, (const ops::Context& ctx, const ops::Lfm2Step& s))
// clang-format on

namespace voxrt::backend {

// A backend's entry points, one function pointer per entry of the list, in list order.
struct EntryPoints {
    const char* backend_name;  // "cpu", "cuda"
#define VOXRT_ENTRY_POINT_MEMBER(ret, name, params) ret(*name) params;
    VOXRT_BACKEND_ENTRY_POINTS(VOXRT_ENTRY_POINT_MEMBER)
#undef VOXRT_ENTRY_POINT_MEMBER
};

// The table of the backend that serves `device`, or nullptr when this build has none.
const EntryPoints* entry_points(Device device);

// Aborts naming the device: an op was called for a device this build has no backend for
// (sessions refuse such a device before any op runs, so reaching this is a bug).
[[noreturn]] void no_backend(Device device);

// The table of the backend that serves `device` (what ops dispatch through).
inline const EntryPoints& entry_points_of(Device device) {
    const EntryPoints* e = entry_points(device);
    if (e == nullptr) [[unlikely]]
        no_backend(device);
    return *e;
}

// Each backend specialises this for the device kind it serves, returning its table (a build
// without that backend links a definition returning nullptr, from backend/none).
template <Device D>
const EntryPoints* backend_for();
template <>
const EntryPoints* backend_for<Device::kCPU>();
template <>
const EntryPoints* backend_for<Device::kCUDA>();

}  // namespace voxrt::backend

// In a backend's namespace: declares every entry point of the list.
#define VOXRT_DECLARE_ENTRY_POINT(ret, name, params) ret name params;
#define VOXRT_DECLARE_BACKEND_ENTRY_POINTS VOXRT_BACKEND_ENTRY_POINTS(VOXRT_DECLARE_ENTRY_POINT)

// The EntryPoints table of the backend whose namespace is VOXRT_BACKEND_TABLE_NS (where every
// entry of the list is defined):
//   #define VOXRT_BACKEND_TABLE_NS cpu
//   const EntryPoints kTable = VOXRT_BACKEND_TABLE("cpu");
#define VOXRT_ENTRY_POINT_ADDRESS(ret, name, params) &VOXRT_BACKEND_TABLE_NS::name,
#define VOXRT_BACKEND_TABLE(label) \
    { label, VOXRT_BACKEND_ENTRY_POINTS(VOXRT_ENTRY_POINT_ADDRESS) }
