// DeviceLane: what a session needs only while its own work runs, apart from the state it keeps
// between turns: the device context (on CUDA: a stream, the GEMM library handles and workspace,
// the op scratch), the backbone + heads scratch, the audio encoder's scratch, and the rows of one
// prefill chunk (input, output, positions, ids).
//
// A session makes a lane of its own, unless it is given one to share (SessionOptions::lane).
// Sessions that are never driven at the same time (one engine thread, like voxrt serve's) may share
// one lane and then hold none of this per session: everything on a lane runs in order on its one
// queue, so the next session reuses the scratch with no synchronization. The backbone scratch has
// a fixed size (replayed graphs hold its addresses); the encoder's grows to the longest audio so
// far (graphs never see it).
//
// Not thread-safe: the sessions that share a lane must not run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/device.h"
#include "core/arena.h"
#include "core/status.h"
#include "model/lfm_audio.h"
#include "runtime/detok_worker.h"

namespace voxrt::runtime {

class DeviceLane {
public:
    static constexpr int kChunk = 256;  // rows of one prefill chunk

    static Expected<std::shared_ptr<DeviceLane>> create(const model::LfmAudioModel& model);
    ~DeviceLane();
    DeviceLane(const DeviceLane&) = delete;
    DeviceLane& operator=(const DeviceLane&) = delete;

    const ops::Context& context() const { return ctx_; }
    Arena& scratch() { return scratch_; }  // backbone over kChunk rows + the heads (one row)
    Arena& encoder_scratch() { return enc_scratch_; }
    // Grows the encoder's scratch to at least `bytes` (kOutOfMemory if the device has no room).
    Status reserve_encoder(size_t bytes);
    // The detokenizer thread of the lane's sessions (DetokBatcher), made by the first session
    // that asks. `like` is the context a session's own detokenizer would run on: on the CPU the
    // batcher uses it as is; on CUDA it gets a context of its own (`gpu_options`; pool and kernel
    // choices copied from `like`).
    Expected<DetokBatcher*> detok_batcher(const model::Detokenizer& det, const ops::Context& like,
                                          const backend::ContextOptions& gpu_options);

    Tensor x;    // [kChunk, D] a prefill chunk's input rows
    Tensor out;  // [kChunk, D] its output rows
    Tensor pos;  // I32 [kChunk] its positions
    Tensor ids;  // I32 [kChunk] its token ids

    // Device bytes the lane holds: its context's (backend::context_device_bytes), the scratches,
    // the chunk's rows, and the detokenizer batcher's context and buffers.
    size_t device_bytes() const;
    static backend::ContextOptions context_options() { return backend::ContextOptions{}; }

private:
    DeviceLane() = default;
    ops::Context ctx_;
    Arena scratch_;
    Arena enc_scratch_;
    std::vector<Buffer> buffers_;
    std::unique_ptr<DetokBatcher> detok_;
    size_t detok_ctx_bytes_ = 0;
};

}  // namespace voxrt::runtime
