#include "runtime/lane.h"

#include "runtime/util.h"

namespace voxrt::runtime {

DeviceLane::~DeviceLane() {
    detok_.reset();  // its sessions are gone: no worker is left
    buffers_.clear();
    scratch_ = Arena();
    enc_scratch_ = Arena();
    backend::destroy_context(ctx_);
}

Expected<std::shared_ptr<DeviceLane>> DeviceLane::create(const model::LfmAudioModel& model) {
    std::shared_ptr<DeviceLane> lane(new DeviceLane());
    VOXRT_ASSIGN_OR_RETURN(lane->ctx_, model.new_context());
    const ops::Context& ctx = lane->ctx_;
    const size_t bb = model.backbone().scratch_bytes(ctx, kChunk) +
                      model.audio_head().scratch_bytes(ctx) + (1u << 20);
    if (!lane->scratch_.reserve(ctx.device, bb))
        return make_error(StatusCode::kOutOfMemory, "session: cannot allocate %zu bytes of scratch",
                          bb);
    const int64_t D = model.config().lfm.hidden_size;
    const DType dt = ctx.act_dtype();
    auto alloc = [&](DType t, std::initializer_list<int64_t> dims, Tensor* out) {
        return alloc_tensor(ctx.device, t, dims, lane->buffers_, out, "session");
    };
    VOXRT_RETURN_IF_ERROR(alloc(dt, {kChunk, D}, &lane->x));
    VOXRT_RETURN_IF_ERROR(alloc(dt, {kChunk, D}, &lane->out));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {kChunk}, &lane->pos));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {kChunk}, &lane->ids));
    return lane;
}

Status DeviceLane::reserve_encoder(size_t bytes) {
    if (bytes <= enc_scratch_.capacity()) return Status::ok();
    // The old scratch may still be read by queued work: wait before it is freed.
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    enc_scratch_ = Arena();
    if (!enc_scratch_.reserve(ctx_.device, bytes))
        return make_error(StatusCode::kOutOfMemory,
                          "audio encoder: cannot allocate %zu bytes of scratch", bytes);
    return Status::ok();
}

Expected<DetokBatcher*> DeviceLane::detok_batcher(const model::Detokenizer& det,
                                                  const ops::Context& like,
                                                  const backend::ContextOptions& gpu_options) {
    if (detok_) return detok_.get();
    ops::Context c = like;
    c.precision = ops::Precision::kF32;
    bool own = false;
    if (like.device == Device::kCUDA) {
        VOXRT_ASSIGN_OR_RETURN(
            c, backend::create_context(Device::kCUDA, ops::Precision::kF32, 0, gpu_options));
        c.pool = like.pool;
        c.fused = like.fused;
        c.fused_backbone = like.fused_backbone;
        own = true;
        detok_ctx_bytes_ = backend::context_device_bytes(Device::kCUDA, gpu_options);
    }
    // On a GPU one step takes 64 conversations' chunks of 8 frames; on the CPU 32.
    const int64_t rows =
        int64_t{model::kDetokUpsample} * 8 * (like.device == Device::kCUDA ? 64 : 32);
    VOXRT_ASSIGN_OR_RETURN(detok_, DetokBatcher::create(det, c, own, rows));
    return detok_.get();
}

size_t DeviceLane::device_bytes() const {
    size_t n = backend::context_device_bytes(ctx_.device, context_options()) + scratch_.capacity() +
               enc_scratch_.capacity() + detok_ctx_bytes_ + (detok_ ? detok_->device_bytes() : 0);
    for (const Buffer& b : buffers_) n += b.size();
    return n;
}

}  // namespace voxrt::runtime
