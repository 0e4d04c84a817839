// Session: one conversation with an LfmAudioModel. Owns every mutable thing of the conversation —
// the backbone's KV and conv state, the depthformer cache, the detokenizer's streaming state,
// device buffers for positions / ids / codes, the sampling counters — sized by need: the KV cache
// grows 256 positions at a time up to the context, the truncation snapshots 64 steps at a time, the
// pending audio rows with the longest user turn (each growth one allocation, between steps; a
// failure is kOutOfMemory for this session). What only matters while the session's own work runs
// (the device context, prefill-chunk and encoder scratch) is in a DeviceLane (lane.h): its own, or
// one shared with sessions that are never driven at the same time. memory() counts it all.
//
// A conversation is built like liquid-audio's ChatState (each call is its own tokenizer segment):
//   s.add_text("<|startoftext|>") is done by create(); then
//   s.new_turn("system"); s.add_text(task_defaults(task).system_prompt); s.end_turn();
//   s.new_turn("user");   s.add_audio(pcm, n, rate);                            s.end_turn();
//   s.new_turn("assistant");
//   s.generate(opts, sink);            // or: s.begin(opts); while (!s.step(events)) …
// A response is step-driven: begin() arms it, each step() runs one generation step (the first
// also prefills) and returns its events, so that a caller can interleave many sessions;
// generate() is a loop over step(). The modality state machine is TurnState (turn_state.h), the
// audio frames' way to PCM is DetokStream (detok_stream.h); the session holds the model state.
// Unlike liquid-audio, which re-prefills the whole history for every turn, a session prefills only
// what was added since the last generate(): the backbone state carries the conversation (tests
// prove the two agree). What generate() yields becomes part of the history, exactly as the
// reference's chat.append(...) would add it.
//
// Not thread-safe: one thread drives a session; many sessions may share one model.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/arena.h"
#include "core/status.h"
#include "backend/device.h"
#include "model/lfm_audio.h"
#include "runtime/detok_stream.h"
#include "runtime/detok_worker.h"
#include "runtime/lane.h"
#include "runtime/turn_state.h"

namespace voxrt::runtime {

enum class GenerationMode : uint8_t {
    kInterleaved,  // speech chat: 6 text tokens, 12 audio frames, … (liquid-audio
                   // generate_interleaved)
    kSequential,   // ASR / TTS: the model switches modality itself (generate_sequential)
};

struct SessionOptions {
    int context = 0;  // positions the conversation may hold; 0 = the model's max_context
    // The device context and the scratch of one session's own work (lane.h), shared with other
    // sessions that are never driven at the same time; null: the session makes its own.
    std::shared_ptr<DeviceLane> lane;
    // KV positions allocated at creation (0: one growth step, 256; the cache grows by need up to
    // the context either way). For tests and the accounting: context = the old up-front cache.
    int kv_reserve = 0;
    bool device_graphs = true;  // GPU: replay each decode step as one captured graph
    // CUDA: run the backbone step and the depthformer frame as single persistent kernels
    // (ops/fused_ops.h); false: op by op (the definition; for comparisons).
    bool fused_kernels = true;
    bool fused_backbone = true;  // of those, the backbone step (false: only it runs op by op)
    // CUDA: compute the log-mel spectrogram of added audio on the GPU (ops::log_mel; false: on
    // the host, MelFrontend::compute, then uploaded). Resampling stays on the host.
    bool mel_on_device = true;
};

struct GenerateOptions {
    GenerationMode mode = GenerationMode::kInterleaved;
    int max_new_tokens = 512;    // text tokens + audio frames
    float text_temperature = 0;  // <= 0: greedy
    int text_top_k = 0;          // 0: no top-k
    float audio_temperature = 0;
    int audio_top_k = 0;
    uint64_t seed = 0;
    bool decode_audio = true;  // run the streaming detokenizer on the audio frames, emit PCM
    // Frames per detokenizer call, 1 .. Detokenizer::max_step_frames() (32). The first decodable
    // frame of a turn is detokenized alone, at once (first-sample latency does not depend on
    // this); later frames are buffered and detokenized `detok_chunk_frames` at a time, and what is
    // left is detokenized when the turn ends, however it ends. Each call yields one kPcm event.
    // A call's fixed cost (launches, one synchronize) dominates on a GPU, so larger chunks save
    // time; 1 = one call per frame.
    int detok_chunk_frames = 8;
    // Grow the chunks after the first frame: 2, 4, 8, … frames up to detok_chunk_frames. The
    // listener's buffer then fills faster at the start of an answer, which matters when several
    // conversations share the device and each step waits for the others (the server); it costs
    // a few more detokenizer calls per turn. The PCM is the same.
    bool detok_ramp = false;
    // Run the detokenizer on its own thread (on CUDA: its own context and stream) while generation
    // goes on; a chunk's kPcm event comes at the first step boundary after it is done (and all
    // are in before kEndOfTurn). The turn's first frame is still detokenized in the loop, at once,
    // for the first sample's sake (in a batch step, for at most BatchStepper::kInlineFirstFrames
    // sessions a step; the others' first frames go to their workers). false: every chunk is
    // detokenized inside the loop, its event right after its last frame. The PCM is the same either
    // way.
    bool detok_async = true;
    // Benchmarks on random weights: never pick <|im_end|> or an end-of-audio frame, so every engine
    // does the same amount of work.
    bool suppress_end = false;
};

enum class EventKind : uint8_t { kText, kAudioFrame, kPcm, kEndOfTurn };

struct Event {
    EventKind kind = EventKind::kText;
    int step = 0;                    // generation step that produced it
    int32_t token = -1;              // kText
    std::array<int32_t, 8> codes{};  // kAudioFrame (first `n_codes` valid)
    int n_codes = 0;
    std::vector<float> pcm;        // kPcm: 24 kHz mono samples (owned); `step` is that of the
                                   // detokenizer call's last frame (the step count for the tail)
    TurnEnd end = TurnEnd::kNone;  // kEndOfTurn: why
    double t_ms = 0;               // since the response's first step began (prefill included)
};

// Return false to stop generation after this event.
using EventSink = std::function<bool(const Event&)>;

struct TurnStats {
    double mel_ms = 0;      // resample + log-mel of the add_audio() calls since the last turn
    double encoder_ms = 0;  // encoder + adapter of those calls
    double prefill_ms = 0;
    double decode_ms = 0;  // generation steps; with a synchronous detokenizer, its time excluded
    double detok_ms = 0;   // detokenizer time the turn waited for (async: only after the last step)
    double detok_busy_ms = 0;  // detokenizer work of the turn, wherever it ran
    // Wall time of the turn's text steps and audio-frame steps (each from the step's start to its
    // choice being embedded for the next; in-loop detokenization excluded): per-step costs are
    // these over text_tokens and audio_frames.
    double text_step_ms = 0;
    double audio_step_ms = 0;
    double first_frame_ms = -1;  // first audio frame chosen (since generate() began)
    double first_pcm_ms = -1;    // first PCM samples out
    double total_ms = 0;
    int prefill_positions = 0;
    int text_tokens = 0;
    int audio_frames = 0;
    int steps = 0;
};

// Device bytes one session holds, by component (Session::memory()): the accounting behind
// docs/batching.md "Memory per session" and the server's --max-sessions default. Counted from
// the session's own buffers on its device; a CPU session has no device context, so `context` and
// `detok_context` are 0 there (backend::context_device_bytes gives a GPU context's).
struct SessionMemory {
    size_t kv = 0;               // the backbone's KV cache as allocated now
    size_t kv_full = 0;          // the KV cache at the context limit
    size_t conv_state = 0;       // the backbone's conv state
    size_t conv_history = 0;     // truncation: conv-state snapshots as allocated now
    size_t conv_step = 0;        // one response step's snapshot
    size_t buffers = 0;          // pending audio rows, step inputs / outputs, logits
    size_t scratch = 0;          // backbone + heads scratch and prefill-chunk rows held by this
                                 // session (0 when its lane is shared)
    size_t encoder_scratch = 0;  // audio encoder scratch held by this session (0: shared lane)
    size_t head_state = 0;       // depthformer cache
    size_t detok_state = 0;      // detokenizer streaming state and its step buffers
    size_t context = 0;          // the session's device context (GPU: op scratch, GEMM workspace;
                                 // 0 when its lane is shared)
    size_t detok_context = 0;    // the detokenizer's own device context
    size_t shared = 0;           // a shared lane's bytes, held once for all its sessions (not in
                                 // total())
    size_t total() const {
        return kv + conv_state + conv_history + buffers + scratch + encoder_scratch + head_state +
               detok_state + context + detok_context;
    }
    // What the session holds once its KV cache has reached the context limit and it has run a
    // response of `response_steps` steps (their conv snapshots): what admission must budget.
    size_t at_full_context(int response_steps) const {
        const size_t hist = conv_step * static_cast<size_t>(response_steps + 1);
        return total() - kv + kv_full - conv_history + std::max(conv_history, hist);
    }
};

// One item of the conversation that generate() produced, in order.
struct GeneratedItem {
    bool is_frame = false;
    int32_t token = -1;
    std::array<int32_t, 8> codes{};
};

class Session {
public:
    static Expected<std::unique_ptr<Session>> create(const model::LfmAudioModel& model,
                                                     const SessionOptions& opt);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Conversation building; nothing runs through the backbone until generate().
    Status add_text(std::string_view text);
    Status add_tokens(const std::vector<int32_t>& ids);
    Status new_turn(std::string_view role);  // "<|im_start|>{role}\n"
    Status end_turn();                       // "<|im_end|>\n"
    // Mono PCM at any rate: resampled to 16 kHz, mel, encoder + adapter (run now).
    Status add_audio(const float* pcm, size_t n, int sample_rate);
    // A user's audio as its log-mel spectrogram (MelFrontend::compute or MelStream): the encoder
    // runs now. `mel_ms` is reported as the turn's mel time, `seconds` names the audio in errors.
    Status add_mel(const audio::MelSpectrogram& mel, double mel_ms, double seconds);
    // Whether add_audio computes the mel on the device (CUDA with SessionOptions::mel_on_device).
    bool mel_on_device() const { return mel_on_device_ && ctx_.device != Device::kCPU; }
    // An audio-out frame (8 codes) as the reference's chat.append would add it.
    Status add_frame(const std::array<int32_t, 8>& codes);

    // Arms a response (validates opt; nothing runs). The assistant turn must be open.
    Status begin(const GenerateOptions& opt);
    // One generation step (the first calls prefill, one chunk of <= 256 positions each, no events;
    // the one that ends the prefill also makes the first step): appends its events to `out`; true
    // once the response is over (its kEndOfTurn in `out`). On an error the response is over.
    Expected<bool> step(std::vector<Event>& out);
    // The response ends (kCancelled) at the next step(). Any thread.
    void cancel() { cancel_.store(true, std::memory_order_relaxed); }
    bool responding() const { return responding_; }
    bool prefilling() const { return responding_ && !started_; }  // the prefill is not over
    // Stats of the last finished response.
    const TurnStats& last_stats() const { return stats_; }
    // begin() + step() until done; each event to sink (false: cancel after it).
    Status generate(const GenerateOptions& opt, const EventSink& sink, TurnStats* stats = nullptr);

    // Cuts the last response back to its first `keep` items (last_turn()), restoring the
    // backbone's KV and conv state to that position. Only right after a response, before anything
    // else is added. keep >= last_turn().size(): no change.
    Status truncate_last_turn(size_t keep);

    // Forgets the conversation (back to just "<|startoftext|>").
    Status reset();

    int positions() const { return n_past_; }  // positions in the backbone state
    int pending_positions() const;             // added but not yet prefilled
    int capacity() const { return capacity_; }
    const std::vector<GeneratedItem>& last_turn() const { return last_turn_; }
    const ops::Context& context() const { return ctx_; }
    SessionMemory memory() const;
    // Whether the session's device context is its own (else shared with other sessions).
    bool owns_context() const { return own_lane_; }
    // Positions the KV cache holds now (it grows by need up to capacity()).
    int kv_positions() const { return lfm_state_.capacity; }
    // The options of the detokenizer's own context (CUDA, detokenizer on the GPU); `batched`: of a
    // shared lane's DetokBatcher (its queue does not get the high priority; default scratch).
    static backend::ContextOptions detok_context_options(bool batched = false);

    // Teacher-forcing hook for tests: the text logits [V] and the last hidden state of the most
    // recent step (host copies), when enabled.
    void set_capture(bool on) { capture_ = on; }
    const std::vector<float>& captured_text_logits() const { return cap_logits_; }

private:
    friend class BatchStepper;  // steps many sessions together (batch.h)

    // step() in three parts, so that BatchStepper can run the middle one for many sessions at
    // once: step_prepare() (the first calls prefill, a chunk each; polls the detokenizer; ends a
    // finished or cancelled response: done), the step's device work (run_step, or BatchStepper's
    // batch), then step_complete() with the choice (events, the turn state, the detokenizer).
    struct StepPlan {
        bool done = false;     // the response ended (its kEndOfTurn is in the events)
        bool prefill = false;  // the call ran a chunk of the prefill and nothing else
        // The answer is over but its detokenizer is still finishing (a session on a shared lane
        // does not wait for it): nothing to run; a later step ends the response.
        bool draining = false;
        bool text = false;     // the step chooses a text token (else an audio frame)
        bool forward = false;  // x_ row 0 holds the last item, to run through the backbone first
        int step = 0;
        double detok_before = 0;
    };
    Expected<StepPlan> step_prepare(std::vector<Event>& out);
    // step_ms: the step's device work, wall time.
    Expected<bool> step_complete(const StepPlan& plan, int32_t token,
                                 const std::array<int32_t, 8>& codes, double step_ms,
                                 std::vector<Event>& out);
    void pcm_events(std::vector<Event>& out);

    struct Pending {
        enum Kind : uint8_t { kText, kAudioIn, kFrame } kind;
        std::vector<int32_t> ids;  // kText
        int64_t audio_row = 0;     // kAudioIn: first row in audio_in_
        int64_t audio_rows = 0;
        std::array<int32_t, 8> codes{};
    };

    explicit Session(const model::LfmAudioModel& m) : model_(m) {}
    Status init(const SessionOptions& opt);
    // Runs up to chunk_ of the pending positions through the backbone (the last one's output row
    // in h_) and drops them from pending_; *done once none is left.
    Status prefill_chunk(bool* done);
    // prefill_chunk in halves, so that BatchStepper can run several sessions' chunks as one
    // backbone call: prefill_take() makes room in the KV cache and writes the next chunk's rows
    // (<= chunk_) into x from row 0 (on this session's context); once they ran (n_past_ advanced,
    // h_ holding the last row's output) prefill_consume() drops them from pending_ and says
    // whether the prefill is over (then synchronizing this session's context).
    struct PrefillTake {
        int64_t rows = 0;
        size_t whole = 0;     // items consumed entirely
        int64_t partial = 0;  // rows consumed of pending_[whole]
    };
    Status prefill_take(Tensor& x, PrefillTake* take);
    Status prefill_consume(const PrefillTake& take, bool* done);
    Status forward_rows(Tensor& x, int64_t rows);
    // Memory by need: the KV cache to hold `positions` (in kKvChunk steps; graphs made again),
    // room for truncation snapshot `index`, audio_in_ to hold `rows` pending rows.
    Status ensure_kv(int positions);
    Status ensure_snapshot(int index);
    Status ensure_audio_rows(int64_t rows);
    // One generation step: (if `forward`) run the item embedded in x_ row 0 through the backbone
    // at position pos_[0], then choose the next text token or audio frame from h_, embed it into
    // x_ row 0 (the next step's input) and advance pos_[0] (if `forward`) and counters_ on the
    // device. On CUDA the whole step is one replayed graph; its inputs live on the device
    // (generate() uploads them once per turn), and the host only reads the choice back (into
    // page-locked memory, one synchronize).
    Status run_step(const GenerateOptions& opt, bool text, bool forward, int32_t* token,
                    std::array<int32_t, 8>* codes);
    Status start_response();  // after the prefill's last chunk: graph keys, device counters
    // The end of the response: on a shared lane (a batch) without waiting for the detokenizer
    // (draining_ until drain() finds it done), else at once.
    Status finish_response(std::vector<Event>& out);
    Status drain(std::vector<Event>& out, bool wait);
    void end_response(std::vector<Event>& out);
    void snapshot_conv(const ops::Context& ctx,
                       int index);  // conv state after the response's forwarded positions
    // snapshot_conv as a copy for the caller to queue (a batch queues all its rows' at once):
    // false when there is nothing to keep.
    bool conv_snapshot(int index, Tensor* src, Tensor* dst);
    Tensor conv_all() const;
    Tensor conv_slot(int index) const;
    size_t conv_first_layer() const;
    Status fail(Status st);
    void step_ops(const GenerateOptions& opt, bool text, bool forward);

    static constexpr int kKvChunk = 256;       // KV positions added at a time
    static constexpr int kSnapshotChunk = 64;  // truncation snapshots per history buffer

    const model::LfmAudioModel& model_;
    std::shared_ptr<DeviceLane> lane_;  // context, scratch, prefill-chunk rows (own or shared)
    bool own_lane_ = true;
    ops::Context ctx_;        // the lane's context (the session's own fused / graph flags)
    ops::Context detok_ctx_;  // fp32 (the reference runs the detokenizer in fp32); on CUDA its own
                              // context (stream, scratch), so the worker runs beside generation
    bool own_detok_ctx_ = false;
    int capacity_ = 0;
    int n_past_ = 0;
    int chunk_ = 256;  // prefill rows per backbone call (and per step() while prefilling)
    bool prefilling_ = false;
    std::vector<Pending> pending_;
    int64_t audio_rows_used_ = 0;
    std::vector<GeneratedItem> last_turn_;
    double pending_mel_ms_ = 0;
    double pending_enc_ms_ = 0;

    model::Lfm2State lfm_state_;
    model::AudioHeadState head_state_;
    std::unique_ptr<model::DetokenizerState> detok_state_;
    std::unique_ptr<DetokWorker> detok_worker_;  // runs on detok_ctx_ / detok_state_
    std::vector<Buffer> buffers_;
    Buffer audio_buf_;    // audio_in_'s; grows by need
    Tensor audio_in_;     // [rows, D] adapter outputs not yet prefilled (rows <= capacity)
    Tensor x_;            // [1, D] the next step's input (the prefill's rows: lane_->x)
    Tensor h_;            // [1, D] last output row
    Tensor pos_;          // I32 [1] the next step's position, n_past_
    Tensor codes_;        // I32 [1, Q] frame to embed / chosen frame
    Tensor token_;        // I32 [1] chosen token
    Tensor counters_;     // I32 [Q + 1] sampling counters of the current step: s·(Q+1) + i
    Tensor text_logits_;  // [1, V]
    Tensor choice_host_;  // I32 [Q] page-locked host copy of the step's token / codes
    bool capture_ = false;
    bool use_graphs_ = false;
    bool mel_on_device_ = true;  // SessionOptions::mel_on_device
    backend::Graph text_graph_, frame_graph_;
    std::string graph_key_;  // sampling options the graphs were captured with
    std::vector<float> cap_logits_;

    // The response in progress.
    GenerateOptions gopt_;
    bool responding_ = false;
    bool draining_ = false;  // responding_, the answer over, the detokenizer finishing
    bool started_ = false;   // the first step() ran
    uint64_t begin_order_ =
        0;  // begin()'s rank among all sessions' (a batch prefills oldest first)
    std::atomic<bool> cancel_{false};
    TurnState turn_;
    DetokStream detok_;
    std::vector<DetokStream::Chunk> chunks_;
    TurnStats stats_;
    std::chrono::steady_clock::time_point t0_;
    double step_ms_ = 0;         // generation steps' wall time (in-step detokenizer waits excluded)
    bool need_forward_ = false;  // x_ row 0 holds the embedding of the last item, not yet run

    // Truncation: the conv state after each forwarded position of the last response, [hist, L,
    // K-1, D] (L conv layers), hist[j] = after the response's first j positions.
    int64_t conv_layers_ = 0;
    Buffer conv_block_;  // every conv layer's state, back to back (lfm_state_.conv_state views)
    size_t conv_snapshot_bytes_ = 0;  // all conv layers' state, one position
    std::vector<Buffer> conv_hist_;   // kSnapshotChunk snapshots each, allocated as steps need
    int64_t conv_hist_cap_ = 0;
    int conv_hist_n_ = 0;  // snapshots taken
    int resp_start_ = 0;   // n_past_ when the last response's generation began
    bool can_truncate_ = false;
};

}  // namespace voxrt::runtime
