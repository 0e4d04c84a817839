#include "ops/istft_ops.h"

#include <algorithm>
#include <vector>

#include "ops/dispatch.h"

namespace voxrt::ops {

Expected<StreamingIstft> StreamingIstft::create(const Context& ctx, const audio::IstftConfig& cfg,
                                                const float* window, int max_rows) {
    VOXRT_RETURN_IF_ERROR(audio::validate_istft_config(cfg));
    if (max_rows < 1 || max_rows > (1 << 20))
        return make_error(StatusCode::kInvalidArgument, "[istft] max_rows %d (1 to %d)", max_rows,
                          1 << 20);
    StreamingIstft s;
    s.cfg_ = cfg;
    s.pad_ = (cfg.win_length - cfg.hop) / 2;
    s.max_rows_ = max_rows;
    s.device_ = ctx.device;
    const int64_t n = cfg.n_fft;
    const size_t bytes = 2 * arena_bytes(DType::kF32, n) +
                         2 * arena_bytes(DType::kF32, n - cfg.hop) +
                         arena_bytes(DType::kF32, static_cast<int64_t>(max_rows) * n);
    if (!s.mem_.reserve(ctx.device, bytes))
        return make_error(StatusCode::kOutOfMemory, "[istft] cannot allocate %zu bytes on %s",
                          bytes, device_name(ctx.device));
    s.window_ = s.mem_.alloc(DType::kF32, {n});
    s.window_sq_ = s.mem_.alloc(DType::kF32, {n});
    s.carry_[0] = s.mem_.alloc(DType::kF32, {n - cfg.hop});
    s.carry_[1] = s.mem_.alloc(DType::kF32, {n - cfg.hop});
    s.frames_buf_ = s.mem_.alloc(DType::kF32, {static_cast<int64_t>(max_rows), n});
    std::vector<float> w = window ? std::vector<float>(window, window + n)
                                  : audio::hann_window(static_cast<int>(n), /*periodic=*/true);
    std::vector<float> w2(w.size());
    for (size_t i = 0; i < w.size(); ++i) w2[i] = w[i] * w[i];
    const Tensor wh = Tensor::make(w.data(), DType::kF32, Device::kCPU, {n});
    const Tensor w2h = Tensor::make(w2.data(), DType::kF32, Device::kCPU, {n});
    copy(ctx, wh, s.window_);
    copy(ctx, w2h, s.window_sq_);
    VOXRT_RETURN_IF_ERROR(synchronize(ctx));  // the host vectors go out of scope
    s.reset();
    return s;
}

int64_t StreamingIstft::max_flush_samples() const {
    return std::max(pad_, cfg_.hop);
}

void StreamingIstft::reset() {
    frames_ = 0;
    emitted_ = pad_;
    cur_ = 0;
}

Status StreamingIstft::check_pcm(const Context& ctx, const Tensor& pcm, int64_t need) const {
    if (ctx.device != device_)
        return make_error(StatusCode::kInvalidArgument, "[istft] made on %s, called on %s",
                          device_name(device_), device_name(ctx.device));
    if (pcm.dtype != DType::kF32 || pcm.device != ctx.device || pcm.data == nullptr ||
        pcm.numel() < need)
        return make_error(StatusCode::kInvalidArgument,
                          "[istft] pcm is %s, expected at least %lld F32 samples on %s",
                          pcm.describe().c_str(), static_cast<long long>(need),
                          device_name(ctx.device));
    return Status::ok();
}

Expected<int64_t> StreamingIstft::step(const Context& ctx, const Tensor& spec, Tensor& pcm) {
    const int64_t rows = spec.ndim == 2 ? spec.shape[0] : -1;
    if (spec.dtype != DType::kF32 || spec.device != ctx.device || spec.ndim != 2 ||
        spec.shape[1] != 2 * n_bins() || rows < 1 || rows > max_rows_ || spec.data == nullptr)
        return make_error(
            StatusCode::kInvalidArgument, "[istft] spec is %s, expected [1..%d, %d] F32 on %s",
            spec.describe().c_str(), max_rows_, 2 * n_bins(), device_name(ctx.device));
    VOXRT_RETURN_IF_ERROR(check_pcm(ctx, pcm, rows * cfg_.hop));
    return run(ctx, &spec, static_cast<int>(rows), pcm);
}

Expected<int64_t> StreamingIstft::flush(const Context& ctx, Tensor& pcm) {
    VOXRT_RETURN_IF_ERROR(check_pcm(ctx, pcm, max_flush_samples()));
    Expected<int64_t> n = frames_ > 0 ? run(ctx, nullptr, 0, pcm) : Expected<int64_t>(0);
    reset();
    return n;
}

Expected<int64_t> StreamingIstft::run(const Context& ctx, const Tensor* spec, int rows,
                                      Tensor& pcm) {
    IstftStepArgs a;
    a.spec = spec ? static_cast<const float*>(spec->data) : nullptr;
    a.window = window_.ptr<float>();
    a.window_sq = window_sq_.ptr<float>();
    a.carry_in = carry_[cur_].ptr<float>();
    a.carry_out = carry_[cur_ ^ 1].ptr<float>();
    a.frames = frames_buf_.ptr<float>();
    a.out = pcm.ptr<float>();
    a.rows = rows;
    a.n_fft = cfg_.n_fft;
    a.hop = cfg_.hop;
    a.frames_before = frames_;
    // A step emits every sample below the end of its last frame's hop; the flush the rest of the
    // trimmed signal, the last frame's right overlap up to pad.
    const int64_t end = rows > 0 ? (frames_ + rows) * cfg_.hop : frames_ * cfg_.hop + pad_;
    a.emit_lo = std::max<int64_t>(emitted_, pad_);
    a.emit_hi = std::max(a.emit_lo, end);
    VOXRT_DISPATCH(istft_step(ctx, a));
    emitted_ = std::max(emitted_, end);
    if (rows > 0) {
        frames_ += rows;
        cur_ ^= 1;
    }
    return a.emit_hi - a.emit_lo;
}

}  // namespace voxrt::ops
