// The server's view of the inference engine: conversations that are built from messages and then
// answered one generation step at a time. The server never calls the engine from a network
// thread: one scheduler thread (scheduler.h) owns every Conversation and steps the active ones in
// turn. Two implementations: VoxrtEngine (voxrt_engine.h, over the public API in include/voxrt)
// and FakeEngine (fake_engine.h: deterministic text and tones, no model) for protocol, fault and
// load tests that need no checkpoint.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace voxrt::server {

// What an answer is made of.
enum class Task : uint8_t {
    kSpeechChat,  // interleaved text + 24 kHz speech
    kTextChat,    // text only
    kTranscribe,  // the last user turn's audio → its transcript
    kSpeak,       // the last user turn's text → speech in `voice`
};

// What a conversation is for; the engine puts the task's prompt (and `instructions`, the client's
// system message, where the task takes one) at its start.
struct ConversationOptions {
    Task task = Task::kSpeechChat;
    std::string voice;         // kSpeak (and speech chat where the model has several voices)
    std::string instructions;  // the client's system prompt; empty: none
};

struct ResponseOptions {
    Task task = Task::kSpeechChat;
    std::string voice;       // one of Engine::voices(); empty: the engine's default
    int max_steps = 0;       // text tokens + audio frames; 0: the engine's default for the task
    float temperature = -1;  // < 0: the task's default
    uint64_t seed = 0;
};

struct EngineEvent {
    enum Kind : uint8_t { kText, kAudio, kDone } kind = kText;
    std::string text;          // kText: whole UTF-8 characters; all of a response's concatenate to
                               // exactly the decode of its tokens
    std::vector<int16_t> pcm;  // kAudio: 24 kHz mono
    // kDone: "stop" (the model ended its turn), "length" (max_steps), "cancelled", "error".
    std::string finish;
    std::string error;          // kDone with finish == "error"
    int prompt_tokens = 0;      // kDone: positions prefilled for this answer
    int completion_tokens = 0;  // kDone: text tokens + audio frames generated
};

// One conversation's state (on the real engine: the KV cache). Not thread-safe: only the
// scheduler thread touches it. Every method returns an empty string on success, else a message
// for the client.
class Conversation {
public:
    virtual ~Conversation() = default;
    // History: begin(role) · add_text / add_audio … · end(). Role: system, user, assistant.
    virtual std::string begin(std::string_view role) = 0;
    virtual std::string add_text(std::string_view text) = 0;
    virtual std::string add_audio(const float* pcm, size_t n, int sample_rate) = 0;
    virtual std::string end() = 0;
    // Opens the assistant turn and prepares the answer (prefill of what was added may run here or
    // in the first step()).
    virtual std::string start(const ResponseOptions& opt) = 0;
    // One generation step; appends what it produced to `out`. Returns false once the answer has
    // ended, with a kDone event as the last one appended.
    virtual bool step(std::vector<EngineEvent>& out) = 0;
    // Ends the answer now (a kDone "cancelled" comes from the next step(), or at once into `out`).
    virtual void cancel(std::vector<EngineEvent>& out) = 0;
    // Keeps only the first `audio_ms` of the last answer's audio (and the text generated before
    // it) in the history: what the listener heard before interrupting.
    virtual std::string truncate(int64_t audio_ms) = 0;
};

class Engine {
public:
    virtual ~Engine() = default;
    virtual std::string model_id() const = 0;
    // Voices of Task::kSpeak (first: the default) and of the speech in Task::kSpeechChat answers
    // (the model may have fewer for chat than for reading text aloud).
    virtual std::vector<std::string> voices() const = 0;
    virtual std::vector<std::string> chat_voices() const = 0;
    virtual int output_rate() const { return 24000; }
    // Where the engine runs and in which precision (shown in /v1/models).
    virtual std::string device() const { return "cpu"; }
    virtual std::string precision() const { return "fp32"; }
    // Whether an answer advanced in a batch equals the same answer alone bit for bit (CPU; CUDA
    // in fp32). Elsewhere (CUDA bf16/8-bit) the batched products sum in another order than a lone
    // session's fused kernels, so a sampled or near-tied choice may differ.
    virtual bool batch_exact() const { return true; }
    // How many conversations fit in the memory of the engine's device (voxrt serve's
    // --max-sessions default): `sessions` = the free memory after load, less a tenth for headroom,
    // over what one conversation holds at its full context; 0 when the engine cannot tell.
    struct MemoryCapacity {
        int sessions = 0;
        size_t free_bytes = 0;         // free on the device now
        size_t per_session_bytes = 0;  // one conversation at its full context
        size_t shared_bytes = 0;       // held once for all conversations (already in use)
    };
    virtual MemoryCapacity memory_capacity(int /*max_sessions_cap*/) { return {}; }
    virtual std::string open(const ConversationOptions& opt,
                             std::unique_ptr<Conversation>* out) = 0;
    // One step of each of `convs` (conversations this engine opened, each with an answer running);
    // out[i] and more[i] as convs[i]->step(out[i]) would give them. An engine that batches runs
    // them together (one weight read for all); this default steps them one after another.
    // Returns how many answers the last device pass advanced together (1: no batching).
    virtual int step_many(const std::vector<Conversation*>& convs,
                          std::vector<std::vector<EngineEvent>>& out, std::vector<char>& more) {
        out.resize(convs.size());
        more.assign(convs.size(), 0);
        for (size_t i = 0; i < convs.size(); ++i) more[i] = convs[i]->step(out[i]) ? 1 : 0;
        return 1;
    }
};

}  // namespace voxrt::server
