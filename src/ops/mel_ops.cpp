#include "ops/mel_ops.h"

#include <climits>

#include "ops/dispatch.h"

namespace voxrt::ops {

Status log_mel(const Context& ctx, const audio::MelFrontend& mel, const Tensor& pcm, Tensor& out) {
    if (ctx.device == Device::kCPU)
        return make_error(StatusCode::kUnsupported,
                          "[mel] no %s implementation (use MelFrontend::compute)",
                          device_name(ctx.device));
    const int64_t n = pcm.numel();
    if (pcm.dtype != DType::kF32 || pcm.device != ctx.device || n < 1 || pcm.data == nullptr)
        return make_error(StatusCode::kInvalidArgument,
                          "[mel] pcm is %s, expected F32 samples on %s", pcm.describe().c_str(),
                          device_name(ctx.device));
    if (n / mel.hop() >= INT_MAX / std::max(mel.features(), 1) - 1)
        return make_error(StatusCode::kOutOfRange, "[mel] %lld samples is too long",
                          static_cast<long long>(n));
    const audio::MelFrontend::Shape s = mel.shape(static_cast<size_t>(n));
    if (out.dtype != DType::kF32 || out.device != ctx.device || out.ndim != 2 ||
        out.shape[0] != mel.features() || out.shape[1] != s.frames || out.data == nullptr)
        return make_error(StatusCode::kInvalidArgument,
                          "[mel] out is %s, expected [%d, %d] F32 on %s", out.describe().c_str(),
                          mel.features(), s.frames, device_name(ctx.device));
    ProfileRange range(ctx, "log-mel");
    const audio::MelConfig& c = mel.config();
    static_assert(sizeof(int) == sizeof(int32_t), "filterbank bins are passed as int32");
    LogMelArgs a;
    a.pcm = static_cast<const float*>(pcm.data);
    a.n = n;
    a.window = mel.window().data();
    a.filterbank = mel.filterbank().data();
    a.bin_lo = reinterpret_cast<const int32_t*>(mel.bin_lo().data());
    a.bin_hi = reinterpret_cast<const int32_t*>(mel.bin_hi().data());
    a.win = mel.win_length();
    a.n_fft = mel.n_fft();
    a.hop = mel.hop();
    a.features = mel.features();
    a.frames = s.spectra;
    a.valid = s.valid;
    a.frames_out = s.frames;
    a.preemph = c.preemph;
    a.log_guard = c.log_guard;
    a.per_feature = c.normalize == "per_feature";
    a.pad_value = static_cast<float>(c.pad_value);
    a.out = static_cast<float*>(out.data);
    return VOXRT_DISPATCH(log_mel(ctx, a));
}

}  // namespace voxrt::ops
