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

    Tensor x;    // [kChunk, D] a prefill chunk's input rows
    Tensor out;  // [kChunk, D] its output rows
    Tensor pos;  // I32 [kChunk] its positions
    Tensor ids;  // I32 [kChunk] its token ids

    // Device bytes the lane holds: its context's (backend::context_device_bytes), the scratches
    // and the chunk's rows.
    size_t device_bytes() const;
    static backend::ContextOptions context_options() { return backend::ContextOptions{}; }

private:
    DeviceLane() = default;
    ops::Context ctx_;
    Arena scratch_;
    Arena enc_scratch_;
    std::vector<Buffer> buffers_;
};

}  // namespace voxrt::runtime
