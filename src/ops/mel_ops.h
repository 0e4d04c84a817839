// The log-mel spectrogram on the context's device. On the host the spectrogram is
// audio::MelFrontend::compute (float64, parallel over frames); a GPU computes the same pipeline
// (backend/cuda/mel.cu), so that the encoder's input need not be made on the host and uploaded.
#pragma once

#include "audio/mel.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/ops.h"

namespace voxrt::ops {

// out [features, mel.shape(n).frames] F32 = the spectrogram of pcm [n] F32 (16 kHz samples), both
// on ctx's device, as mel.compute() would give it (to float64 rounding). kUnsupported where the
// device has no implementation (the host: use mel.compute()); kInvalidArgument for bad tensors.
// Work is queued on ctx's stream; the call synchronizes it once.
Status log_mel(const Context& ctx, const audio::MelFrontend& mel, const Tensor& pcm, Tensor& out);

}  // namespace voxrt::ops
