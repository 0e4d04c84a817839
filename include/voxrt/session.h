// voxrt/session.h — one conversation on a Model, advanced one step at a time.
//
// A conversation is a sequence of turns (liquid-audio's ChatState):
//
//   auto s = Session::create(model).value();
//   s->add_turn(Role::kSystem, task_defaults(Task::kSpeechChat).system_prompt);
//   s->begin_user_turn();
//   s->append_audio(pcm, n, 48000);            // as often as audio arrives, any rate
//   s->end_user_turn();                        // runs the audio encoder
//   s->start_response(ResponseOptions::for_task(Task::kSpeechChat));
//   std::vector<Event> ev;
//   for (bool done = false; !done; ev.clear()) {
//       Expected<bool> r = s->step(ev);
//       if (!r) { /* r.status(): the response is over */ break; }
//       done = *r;  /* play ev's audio, show its text */
//   }
//
// or generate(options, sink) for the whole response. What a response produced stays in the
// history (the next turn continues after it), unless truncate_*() cuts it back to what the listener
// heard. A session prefills only what was added since the last response: the backbone state
// carries the conversation.
//
// Threads: a Session is driven by one thread at a time (it is not thread-safe), except cancel(),
// which any thread may call at any time. Different sessions may run on different threads at once,
// sharing one Model; each produces exactly what it would alone. Events are delivered on the thread
// that calls step()/generate().
//
// Sharing (what it costs today): on the CPU, the model's worker pool runs one parallel loop at a
// time, so sessions on different threads take turns inside each op (throughput is shared, not
// multiplied). On CUDA, each session has its own stream, KV cache and scratch (create() allocates
// them); the fused decode kernels are persistent kernels that occupy every SM, so steps of sessions
// on one GPU run one after another rather than side by side. voxrt/batch.h steps many sessions
// together instead (one weight read per step for all of them).
//
// Memory per session, by need (docs/batching.md "Memory per session"; Session::memory() counts it):
// - the KV cache grows with the conversation, 256 positions at a time, up to the context
//   (attention layers × 2 × kv-heads × head-dim × 2 bytes in bf16 per position: 12 KB for the
//   1.5B model, so ~3 MB at first and ~50 MB at 4096 positions); a growth that the device cannot
//   hold fails that session's step with kOutOfMemory (the others go on); reset() shrinks it back;
// - the conv-state history that truncation needs (see truncate_*) grows with the response, 64
//   steps at a time, up to the longest response so far;
// - the user's encoded audio not yet prefilled, sized by the longest user turn so far;
// - the detokenizer's streaming state and, on CUDA, its own context;
// - the device context (on CUDA: a stream, GEMM handles and workspace, op scratch) and the
//   scratch of a prefill chunk and of the audio encoder: the session's own, unless
//   SessionOptions::share_device_context puts them in one lane shared by the model's sessions
//   that set it (on CUDA ~100 MB less per session).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "voxrt/model.h"
#include "voxrt/status.h"
#include "voxrt/tasks.h"

namespace voxrt {

struct SessionOptions {
    int context = 0;  // positions the conversation may hold; 0 = the model's max_context
    // The longest text one add_turn()/append_text() call accepts, in bytes (longer is an error
    // naming the field). The context is the real limit; this bounds the tokenizer's work first.
    size_t max_text_bytes = size_t{512} << 10;
    // Share one device context (on CUDA: a stream, GEMM handles and workspace, op scratch) and the
    // scratch of prefill chunks and of the audio encoder with the model's other sessions that set
    // this, instead of holding them per session (see "Memory per session" above). Such sessions
    // must never run at the same time: drive them from one thread (as voxrt serve's engine thread
    // does, e.g. through a voxrt::Batch); their device work is ordered on one queue. The output is
    // the same either way.
    bool share_device_context = false;

    // For comparisons and benchmarks only (the defaults are what a frontend wants).
    struct Tuning {
        bool device_graphs = true;   // GPU: replay each decode step as one captured graph
        bool fused_kernels = true;   // CUDA: the persistent fused decode kernels
        bool fused_backbone = true;  // of those, the backbone step
        bool mel_on_device = true;   // CUDA: log-mel of user audio on the GPU
    } tuning;
};

struct ResponseOptions {
    Mode mode = Mode::kInterleaved;
    Sampling sampling;
    uint64_t seed = 0;    // same seed + same conversation = same response
    int max_steps = 512;  // text tokens + audio frames; the turn ends with kMaxSteps after them
    bool audio = true;    // run the detokenizer and emit kAudio events (needs the detokenizer)
    // Output frames per detokenizer call after the turn's first frame (which goes alone, at once),
    // 1 .. 32. Larger chunks cost less on a GPU; kAudio events come every this many frames.
    int detok_chunk_frames = 8;
    // Grow the chunks after the first frame: 2, 4, 8, … up to detok_chunk_frames, so that the
    // listener's buffer fills quickly at the start of an answer even when each step waits for other
    // conversations (a server); costs a few more detokenizer calls per turn. The PCM is the same.
    bool detok_ramp = true;
    // Run the detokenizer on its own thread beside generation (false: inside step()). The PCM is
    // the same either way.
    bool detok_async = true;
    // Benchmarks on random weights: never choose end-of-turn or end-of-audio.
    bool suppress_end = false;
    // Continue the last assistant turn (a response, or add_assistant_items) instead of closing it
    // and opening a new one: the response goes on from its last item.
    bool continue_turn = false;

    // A task's mode, sampling and max_steps (task_defaults), audio iff the task outputs audio.
    static ResponseOptions for_task(Task task);
};

enum class EventKind : uint8_t {
    kTextDelta,   // text: valid UTF-8; the deltas of a response concatenate to its whole decode
    kAudioFrame,  // codes: one 80 ms frame of audio codes (before the detokenizer)
    kAudio,       // pcm: output_sample_rate mono float PCM
    kEndOfTurn,   // reason, stats; the last event of a response
};

enum class EndReason : uint8_t {
    kEndToken,   // the model ended its turn (<|im_end|>, or end-of-audio after text in interleaved)
    kMaxSteps,   // ResponseOptions::max_steps reached
    kCancelled,  // cancel(), or the sink returned false
};
const char* end_reason_name(EndReason reason);

// Timings of one response (ms; steady clock). Costs per step are the step totals over the counts.
struct TurnStats {
    double mel_ms = 0;           // resample + log-mel of the user turn's audio
    double encoder_ms = 0;       // audio encoder + adapter
    double prefill_ms = 0;       // the history added since the last response, through the backbone
    double decode_ms = 0;        // generation steps (in-loop detokenization excluded)
    double detok_ms = 0;         // detokenizer time the turn waited for
    double detok_busy_ms = 0;    // detokenizer work of the turn, wherever it ran
    double text_step_ms = 0;     // wall time of the text steps (sum)
    double audio_step_ms = 0;    // wall time of the audio-frame steps (sum)
    double first_frame_ms = -1;  // first audio frame chosen, since the response started
    double first_pcm_ms = -1;    // first PCM out, since the response started
    double total_ms = 0;
    int prefill_positions = 0;
    int text_tokens = 0;
    int audio_frames = 0;
    int steps = 0;
};

struct Event {
    EventKind kind = EventKind::kTextDelta;
    int step = -1;    // the generation step that produced it (-1: the end-of-turn text flush)
    double t_ms = 0;  // since the response started

    // kTextDelta: one per text token (`token`), plus a last one (token -1) with text a split
    // character left over. `text` may be empty while a character spans tokens.
    int32_t token = -1;
    std::string text;

    // kAudioFrame: the frame's codes (the first n_codes valid); an end-of-audio frame has every
    // code = audio_vocab - 1.
    std::array<int32_t, 8> codes{};
    int n_codes = 0;

    // kAudio: an owned copy of the samples (ModelInfo::output_sample_rate, mono, [-1, 1]).
    std::vector<float> pcm;

    // kEndOfTurn.
    EndReason reason = EndReason::kEndToken;
    TurnStats stats;
};

// Return false to cancel the response after this event.
using EventSink = std::function<bool(const Event&)>;

// One item of a response, in order: a text token or an audio frame.
struct ResponseItem {
    bool is_frame = false;
    int32_t token = -1;              // !is_frame
    std::array<int32_t, 8> codes{};  // is_frame (the first ModelInfo::codebooks)
    bool operator==(const ResponseItem& o) const {
        return is_frame == o.is_frame && (is_frame ? codes == o.codes : token == o.token);
    }
};

class Session {
public:
    // Allocates the session's state (KV cache and conv state for `context` positions, scratch,
    // device buffers; on CUDA a stream, graphs are captured at the first step). Keeps `model`
    // alive. Errors: kInvalidArgument (options), kOutOfMemory.
    static Expected<std::unique_ptr<Session>> create(std::shared_ptr<const Model> model,
                                                     const SessionOptions& options = {});
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // ---- building the conversation (cheap: tokenizing and, at end_user_turn, the encoder) ----
    // A whole turn of text: "<|im_start|>{role}\n{text}<|im_end|>\n". An open response is closed
    // first. Errors: text longer than max_text_bytes, more positions than the context holds, a user
    // turn still open.
    Status add_turn(Role role, std::string_view text);
    // Opens a user turn (closing a finished response first); then any mix of:
    Status begin_user_turn();
    Status append_text(std::string_view text);
    // Mono float PCM at `sample_rate` Hz (1 kHz .. 384 kHz; the rate may not change within a turn),
    // in chunks of any size as it arrives; samples must be finite. Resampling to 16 kHz and the
    // log-mel spectrogram are computed incrementally (each call costs its own samples); the
    // features equal those of appending the whole utterance at once. (A CUDA session with
    // Tuning::mel_on_device keeps the samples and computes the mel on the GPU at end_user_turn(),
    // a few ms for a minute of audio.) Errors: the turn no longer fits the context (checked as it
    // grows), a bad rate or sample.
    Status append_audio(const float* pcm, size_t n, int sample_rate);
    // Closes the user turn. If it holds audio, the encoder runs now over the whole utterance
    // (it is full-context): ~the encoder's cost of the utterance.
    Status end_user_turn();

    // An assistant turn made of `items` (e.g. a conversation restored from storage, or the kept
    // part of a response): added like a response that produced them.
    Status add_assistant_items(const std::vector<ResponseItem>& items);

    // ---- responding ----
    // Opens the assistant turn and arms a response. Nothing runs yet: the first step()s prefill
    // what was added since the last response, at most 256 positions per step() (no events; the
    // step() that ends the prefill also makes the first token), each later step() runs one text
    // token or one audio frame through the backbone and heads (on CUDA one graph launch and one
    // synchronize). A cancel() during the prefill takes effect once it is over.
    Status start_response(const ResponseOptions& options);
    // Advances the response by one step and appends its events to `out` (appends; never clears).
    // Returns true once the response is over (its kEndOfTurn is in `out`); further calls are an
    // error until the next start_response(). On an error the response is over (no kEndOfTurn).
    Expected<bool> step(std::vector<Event>& out);
    // start_response + step() until done, each event to `sink` as it comes.
    Status generate(const ResponseOptions& options, const EventSink& sink);
    // Any thread, any time: the response ends (kCancelled) at the next step boundary, after the
    // audio already generated is detokenized and emitted. No effect when no response runs.
    void cancel();
    bool responding() const;  // a response is armed and not over
    bool prefilling() const;  // of which the prefill is not over yet (step() runs its chunks)

    // ---- barge-in: forget what the listener never heard ----
    // Cut the most recent response back to its first `ms` of output audio (frames whose audio
    // starts before `ms`, and the text generated before the first frame dropped), or to its first
    // `chars` Unicode characters of text (the tokens whose text lies within them, and the frames
    // generated before the first token dropped). Everything after the cut is forgotten: KV entries
    // and the LFM2 short-conv state are restored to exactly that position, so the next turn
    // continues as if the response had stopped there. Only between responses; cutting beyond the
    // end keeps everything. Cost: copying the conv state of one position (~80 KB for the 1.5B
    // model); the session keeps the conv state of every position of the most recent response for
    // this (conv layers × 2 × hidden × 2 bytes each: ~80 KB per step, ~40 MB for 512 steps of the
    // 1.5B model in bf16).
    Status truncate_to_audio_ms(double ms);
    Status truncate_to_text(size_t chars);

    // Forgets the conversation (back to the empty history); the KV cache and the conv-state history
    // shrink back to a fresh session's.
    Status reset();

    // ---- inspection ----
    int positions() const;  // positions the conversation holds (prefilled + pending)
    int capacity() const;   // SessionOptions::context, resolved
    // Device bytes (host bytes on the CPU) the session holds, for capacity planning.
    struct Memory {
        size_t now = 0;              // held now
        size_t at_full_context = 0;  // once the KV cache holds capacity() positions and a
                                     // response of `response_steps` steps has run
        size_t kv = 0;               // of `now`: the KV cache
        size_t shared = 0;           // the shared lane (share_device_context), held once for all
                                     // its sessions and counted in neither number above
    };
    Memory memory(int response_steps = 512) const;
    const std::vector<ResponseItem>& last_response() const;  // what the last response produced
    const std::shared_ptr<const Model>& model() const;

    // For tests: keep a host copy of the text logits of each text step (set before a response);
    // the latest one is here after a step() that produced a kTextDelta with a token.
    void set_capture_logits(bool on);
    const std::vector<float>& captured_logits() const;

    struct Impl;

private:
    friend class Batch;
    explicit Session(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace voxrt
