// LFM2.5 audio detokenizer: audio codes → 24 kHz PCM (liquid_audio/detokenizer.py
// LFM2AudioDetokenizer, loaded as LFM2AudioProcessor.audio_detokenizer does; spec §9.1).
//
//   codes [Tc, Q=8] ── FusedEmbedding: mean over q of emb.emb[code_q + 2048·q]   → [Tc, 512]
//     ── nearest ×6 upsample (each 80 ms frame becomes 6 rows at 75 Hz)           → x [T=6Tc, 512]
//     ── LFM2 (conv + attention layers, attention limited to the last W=30 positions incl.
//        self by the explicit mask, final embedding_norm)                         → [T, 512]
//     ── lin (512 → 1282, bias): [log|X| (641) | ∠X (641)] → X = polar(exp, angle)
//     ── ISTFT n_fft 1280, hop 320, "same" padding, window istft.window   → 320·T = 1920·Tc samples
//
// Everything runs in fp32 (the reference module is never cast; the bf16 weights on disk are widened
// exactly), whatever the precision of the context passed in: each entry point forces
// ops::Precision::kF32. The network runs on ctx.device through ops only. Streaming steps run the
// ISTFT there too (ops::StreamingIstft) and copy PCM to the host; decode() copies the [T, 1282]
// head output to the host and runs the host ISTFT (src/audio/istft.h).
//
// Streaming: every stage is causal (upsample by repetition, causal short conv, causal sliding
// window), so step() on chunks of 1..kDetokMaxStepFrames codec frames reproduces decode() on the
// whole utterance, whatever the chunk sizes: concatenated step() outputs plus flush() equal
// decode() (bit-identical on the CPU backend; the test allows 1e-5 relative elsewhere). Latency: a
// step returns the samples that are final after its last frame — 1440 after the first frame of the
// utterance, then 1920 per frame; flush() returns the last 480 (the ISTFT's right overlap). A step
// of n frames issues the same launches and one synchronize as a step of one (the overhead that
// dominates a one-frame step on a GPU), so callers trade latency for throughput by choosing n.
//
// Dimensions (docs/glossary.md): Tc codec frames, T = 6·Tc positions, Q = 8 codebooks, D = 512,
// H/Hkv/Dh attention heads, W sliding window.
//
// Thread safety: Detokenizer is immutable after load(); its const methods may run concurrently on
// different DetokenizerStates (and contexts whose thread pools are not shared concurrently).
// DetokenizerState is thread-compatible: one session uses it at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "audio/istft.h"
#include "core/arena.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/lfm2.h"
#include "model/weights.h"
#include "ops/istft_ops.h"
#include "ops/ops.h"

namespace voxrt::model {

// Architecture constants hard-coded by the reference module (not in config.json).
constexpr int kDetokCodebooks = 8;        // FusedEmbedding(512) default
constexpr int kDetokCodebookSize = 2048;  // codes 0..2047 (2048 = end-of-audio is rejected)
constexpr int kDetokDim = 512;            // FusedEmbedding(512), Linear(512, 1282)
constexpr int kDetokUpsample = 6;         // interpolate to 6·Tc
constexpr int kDetokNfft = 1280;          // ISTFT(1280, 320, 1280, "same")
constexpr int kDetokHop = 320;
constexpr int kDetokBins = kDetokNfft / 2 + 1;                     // 641
constexpr int kDetokOut = 2 * kDetokBins;                          // 1282: log-magnitude then phase
constexpr int kDetokSamplesPerFrame = kDetokUpsample * kDetokHop;  // 1920 = 80 ms at 24 kHz
// Most codec frames one Detokenizer::step() takes (the state's buffers are sized for it). Sessions
// send chunks of 8 by default; a worker that falls behind joins queued chunks up to this many.
constexpr int kDetokMaxStepFrames = 32;

// Host copies of decode()'s intermediate stages, for parity tests (names as in the dumps).
struct DetokenizerStages {
    std::vector<float> emb;     // [Tc, D]  FusedEmbedding output
    std::vector<float> hidden;  // [T, D]   LFM2 output after embedding_norm
    std::vector<float> spec;    // [T, 1282] lin output
};

// One utterance's streaming memory (conv input history, a KV cache window, the position counter,
// the ISTFT overlap) plus every buffer step() uses, all sized at creation: step() and flush() do
// not allocate (beyond growing the caller's pcm_out). Created by Detokenizer::new_state(); use it
// only with the Detokenizer and the device that made it. Move-only.
class DetokenizerState {
public:
    DetokenizerState(DetokenizerState&&) noexcept = default;
    DetokenizerState& operator=(DetokenizerState&&) noexcept = default;
    DetokenizerState(const DetokenizerState&) = delete;
    DetokenizerState& operator=(const DetokenizerState&) = delete;

    int64_t frames() const { return frames_; }      // codec frames since the last reset/flush
    int cache_rows() const { return cache_rows_; }  // S: KV rows per attention layer
    size_t device_bytes() const {
        return persist_.capacity() + scratch_.capacity() + istft_.device_bytes();
    }

private:
    friend class Detokenizer;
    DetokenizerState() = default;

    Device device_ = Device::kCPU;
    Arena persist_;                          // the tensors below (device)
    Arena scratch_;                          // per-step activations (device), reset by every step
    std::vector<Tensor> conv_state_;         // per layer: [K-1, D] (empty for attention layers)
    std::vector<Tensor> k_cache_, v_cache_;  // per layer: [Hkv, S, Dh] (empty for conv layers)
    // Step buffers hold M = 6·kDetokMaxStepFrames rows; a step of n frames uses the first 6n.
    Tensor iota_;       // I32 [S]: 0..S-1; rows(0, 6n) index the step's RoPE table, rows(fill,
                        // fill + 6n) are the step's cache rows
    Tensor ids_;        // I32 [M, Q] upsampled code ids
    Tensor cos_, sin_;  // F32 [M, Dh/2] RoPE table of the step's absolute positions
    Tensor spec_;       // F32 [M, 1282] head output
    Tensor pcm_;        // F32 [max(M·hop, flush tail)] the ISTFT's output
    std::vector<int32_t> ids_host_;  // [M·Q]
    std::vector<float> rope_host_;   // [2·M·Dh/2] cos then sin
    std::vector<float> pcm_host_;    // pcm_'s samples, copied back
    ops::StreamingIstft istft_;      // on the state's device, reading spec_
    int cache_rows_ = 0;             // S
    int64_t frames_ = 0;             // frames since reset: the next position is 6·frames_
    int64_t fill_ = 0;  // cache rows holding keys (the last min(fill_, W-1) are the live window)
    bool zero_conv_ = true;  // conv states are zeroed at the next step (set by reset)
};

// One conversation's chunk of frames for Detokenizer::step_many.
struct DetokenizerJob {
    DetokenizerState* state = nullptr;
    const int32_t* codes = nullptr;         // host I32 [n_frames, Q], frame-major
    int64_t n_frames = 0;                   // 1 .. kDetokMaxStepFrames
    std::vector<float>* pcm_out = nullptr;  // the samples that became final are appended
    Status status;                          // set by step_many: this job's own outcome
};

// The buffers of Detokenizer::step_many for up to max_rows() rows (6 per frame) of any number of
// conversations, on one device. Made by Detokenizer::new_batch; move-only.
class DetokenizerBatch {
public:
    DetokenizerBatch(DetokenizerBatch&&) noexcept = default;
    DetokenizerBatch& operator=(DetokenizerBatch&&) noexcept = default;
    DetokenizerBatch(const DetokenizerBatch&) = delete;
    DetokenizerBatch& operator=(const DetokenizerBatch&) = delete;

    int64_t max_rows() const { return max_rows_; }
    size_t device_bytes() const { return persist_.capacity() + scratch_.capacity(); }
    // Frees the buffers (before the context they were used on goes).
    void release() { *this = DetokenizerBatch(); }

private:
    friend class Detokenizer;
    DetokenizerBatch() = default;

    Device device_ = Device::kCPU;
    int64_t max_rows_ = 0;
    Arena persist_, scratch_;
    Tensor ids_;        // I32 [M, Q]
    Tensor cos_, sin_;  // F32 [M, Dh/2]
    Tensor rows_;       // I32 [M]: each row's cache row in its conversation's caches
    Tensor iota_;       // I32 [M]: 0..M-1, row r's index into the step's RoPE table
    Tensor spec_;       // F32 [M, 1282]
    Tensor pcm_;        // F32 [M·hop]: every job's samples, one after the other
    std::vector<int32_t> ids_host_, rows_host_;
    std::vector<float> rope_host_, pcm_host_;
};

class Detokenizer {
public:
    // Loads MODEL_DIR/audio_detokenizer: config.json (validated against the hard-coded
    // architecture) and model.safetensors (every tensor name, shape and dtype checked;
    // lfm.embed_tokens, unused by the reference forward, is not read). Weights stay as stored (bf16
    // views of the mmap on the CPU, uploaded to a GPU by `store`); `store` must outlive the
    // Detokenizer.
    static Expected<Detokenizer> load(const std::string& detok_dir, WeightStore& store);

    const Lfm2Config& config() const { return cfg_; }
    int window() const { return window_; }  // W: keys visible to a query, itself included
    // Most frames one step() call takes (kDetokMaxStepFrames).
    int max_step_frames() const { return kDetokMaxStepFrames; }
    // Samples step() returns for n_frames frames added after frames_before (the state's frames()):
    // 1920 per frame, less the lead the ISTFT trims, (n_fft - hop) / 2 = 480, at an utterance's
    // start.
    static int64_t step_samples(int64_t frames_before, int64_t n_frames) {
        return n_frames * kDetokSamplesPerFrame -
               (frames_before == 0 ? (kDetokNfft - kDetokHop) / 2 : 0);
    }

    // Arena bytes decode() needs on ctx.device for Tc frames.
    size_t decode_scratch_bytes(int64_t Tc) const;

    // Whole utterance, as LFM2AudioProcessor.decode: codes host I32 [Tc, Q] frame-major, each in
    // [0, 2047] (anything else, e.g. the 2048 end-of-audio code, is an error and nothing is
    // computed). pcm_out is replaced by 1920·Tc samples. scratch (on ctx.device) needs
    // decode_scratch_bytes(Tc) free bytes (else kOutOfRange); it is returned to its mark.
    Status decode(const ops::Context& ctx, const int32_t* codes, int64_t Tc, Arena& scratch,
                  std::vector<float>& pcm_out, DetokenizerStages* stages = nullptr) const;

    // Streaming state for one utterance at a time, on ctx.device.
    Expected<DetokenizerState> new_state(const ops::Context& ctx) const;
    // Adds n_frames frames (host I32 [n_frames, Q], frame-major; 1 <= n_frames <=
    // max_step_frames()) in one pass through the network and appends the samples that became final
    // after the last of them: 1440 + 1920·(n_frames - 1) for the first call of an utterance,
    // 1920·n_frames after. Any invalid code in any of the frames, or an invalid n_frames, returns
    // an error and leaves the state unchanged.
    Status step(const ops::Context& ctx, DetokenizerState& st, const int32_t* codes,
                int64_t n_frames, std::vector<float>& pcm_out) const;
    // One frame (host I32 [Q]).
    Status step(const ops::Context& ctx, DetokenizerState& st, const int32_t* frame_codes,
                std::vector<float>& pcm_out) const {
        return step(ctx, st, frame_codes, 1, pcm_out);
    }
    // Buffers for step_many() of up to max_rows rows (>= 6 · kDetokMaxStepFrames) on ctx.device.
    Expected<DetokenizerBatch> new_batch(const ops::Context& ctx, int64_t max_rows) const;
    // step() for several conversations in one pass: the jobs' rows (6 per frame) go through the
    // embedding, the norms, the projections, the FFN and the head together (the weights are read
    // once for all); each job's short convolutions, KV writes and attention, and its ISTFT, run on
    // its own state. Every job's state must be distinct. A job with invalid codes or frame count,
    // or a state of another model or device, gets its error in `status` and changes nothing; the
    // others run. Returns an error (and runs nothing) when the valid jobs' rows exceed
    // batch.max_rows() or the batch is on another device. A job's samples are those its own step()
    // gives: the same bits on the CPU (whose fp32 products give a row the same bits whatever the
    // row count); on a GPU the products over all rows may sum in another order (within 1e-5
    // relative).
    Status step_many(const ops::Context& ctx, DetokenizerBatch& batch, DetokenizerJob* jobs,
                     size_t n_jobs) const;
    // flush() for several conversations (the jobs' codes and n_frames are not read): one
    // synchronization for all instead of one each. Every job's state must be distinct; a state of
    // another model or device gets its error in `status`. The samples are flush()'s, bit for bit.
    Status flush_many(const ops::Context& ctx, DetokenizerBatch& batch, DetokenizerJob* jobs,
                      size_t n_jobs) const;
    // Ends the utterance: appends the remaining 480 samples (none if no frame was added) and
    // resets the state for the next utterance.
    Status flush(const ops::Context& ctx, DetokenizerState& st, std::vector<float>& pcm_out) const;
    // Drops the current utterance (e.g. barge-in). Host-only: the device conv state is cleared
    // lazily by the next step().
    void reset(DetokenizerState& st) const;

private:
    using Memory = Lfm2Network::Memory;

    // x [T, D] (clobbered) → out [T, D] after the final norm: the LFM2 network with the sliding
    // window. rope_rows (I32 [T]) index the cos/sin tables [≥T, Dh/2] built for the rows' absolute
    // positions; cache_rows (I32 [T], consecutive) are where the keys go and where the queries sit
    // in the caches.
    void forward(const ops::Context& ctx, Tensor& x, const Tensor& rope_rows, const Tensor& cos,
                 const Tensor& sin, const Tensor& cache_rows, const Memory& mem, Arena& scratch,
                 Tensor& out) const {
        net_->forward_rows(ctx, mem, x, rope_rows, cos, sin, cache_rows, scratch, out);
    }
    size_t forward_scratch_bytes(int64_t T) const;
    // Where run_jobs() puts a step's rows: a state's own buffers (step) or a batch's.
    struct StepBuffers {
        Tensor ids, cos, sin, spec;
        Tensor rows;      // empty: the one job's cache rows are its state's iota
        Tensor rope_idx;  // I32 [>= rows of the step]: 0, 1, 2, …
        Tensor pcm;       // empty: the one job's samples come back from its state's pcm buffer
        Arena* scratch = nullptr;
        std::vector<int32_t>* ids_host = nullptr;
        std::vector<int32_t>* rows_host = nullptr;
        std::vector<float>* rope_host = nullptr;
        std::vector<float>* pcm_host = nullptr;
    };
    // The checks of step() for one job; nothing is touched.
    Status check_job(const ops::Context& ctx, const DetokenizerJob& job) const;
    // Runs validated jobs (distinct states) as one pass; sets nothing in their status.
    Status run_jobs(const ops::Context& ctx, DetokenizerJob* const* jobs, size_t n,
                    StepBuffers& b) const;
    // Copies st.pcm_'s first n samples to the host (synchronizing ctx) and appends them.
    Status take_pcm(const ops::Context& ctx, DetokenizerState& st, int64_t n,
                    std::vector<float>& pcm_out) const;
    // cos/sin [T, Dh/2] for absolute positions base..base+T-1, as transformers computes them.
    void rope_table(int64_t base, int64_t T, float* cos, float* sin) const;
    // Runs lin into spec_dev [T, 1282]; copies it to spec_host when that is given.
    void head(const ops::Context& ctx, const Tensor& hidden, Tensor& spec_dev,
              float* spec_host) const;

    Lfm2Config cfg_;
    int window_ = 30;
    io::SafeTensorsFile file_;                // keeps the mmap behind the CPU weight views alive
    Tensor emb_;                              // [Q·2048, D]
    Tensor lin_w_, lin_b_;                    // [1282, D], [1282]
    std::vector<float> window_host_;          // [n_fft] istft.window as stored (bf16-rounded Hann)
    std::vector<float> inv_freq_;             // [Dh/2] RoPE inverse frequencies (fp32)
    std::shared_ptr<const Lfm2Network> net_;  // lfm.*: the LFM2 layers + final norm
};

}  // namespace voxrt::model
