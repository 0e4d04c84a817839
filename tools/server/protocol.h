// The server's wire formats as pure functions on bytes: base64, WAV, multipart/form-data, SSE,
// OpenAI-shaped errors, the REST request bodies and the Realtime client events. Nothing here does
// I/O or touches the engine, so all of it is unit-tested and fuzzed (fuzz/server_fuzz.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace voxrt::server {

using nlohmann::json;

// Limits every parser enforces (the HTTP layer limits whole bodies and frames before these).
struct Limits {
    size_t max_audio_bytes = 25u << 20;  // decoded audio of one request or one append
    int max_audio_seconds = 600;         // one WAV (the engine's cap)
    size_t max_text_bytes = 1u << 20;    // text of one message / input
    size_t max_messages = 256;           // chat messages in one request
    int max_json_depth = 32;
};

// An error for the client: HTTP status, message, and the field it is about (OpenAI's `param`).
struct ApiError {
    int status = 400;
    std::string message;
    std::string param;  // empty: none
    std::string type = "invalid_request_error";
    std::string code;  // empty: null
};
// {"error":{"message","type","param","code"}}
json error_body(const ApiError& e);

// ---- base64 (RFC 4648, padding required when the length is not a multiple of 4; no whitespace) --
std::string base64_encode(std::string_view bytes);
std::string base64_encode(const int16_t* pcm, size_t n);  // little-endian PCM16
// Empty optional on bad input or when the decoded size would exceed `max_bytes`.
std::optional<std::string> base64_decode(std::string_view text, size_t max_bytes);

// ---- audio ------------------------------------------------------------------------------------
struct Audio {
    std::vector<float> pcm;  // mono, [-1, 1]
    int sample_rate = 0;
};
// RIFF/WAVE with PCM 16/24/32-bit or float32 (also WAVE_FORMAT_EXTENSIBLE), 1 or 2 channels
// (averaged), 8 kHz .. 192 kHz; `what` names the input in errors.
std::variant<Audio, ApiError> decode_wav(std::string_view bytes, const Limits& lim,
                                         std::string_view what);
std::string encode_wav(const int16_t* pcm, size_t n, int sample_rate);  // 16-bit mono
// Little-endian PCM16 bytes (an odd trailing byte is an error) → float samples.
std::variant<std::vector<float>, ApiError> pcm16_to_float(std::string_view bytes,
                                                          std::string_view what);
std::string pcm16_bytes(const int16_t* pcm, size_t n);
std::vector<int16_t> float_to_pcm16(const float* x, size_t n);

// ---- JSON -----------------------------------------------------------------------------------
// Parses an object, refusing malformed JSON, other top-level values and nesting deeper than
// `max_depth` (checked before parsing).
std::variant<json, ApiError> parse_json_object(std::string_view body, int max_depth,
                                               std::string_view what);

// ---- multipart/form-data (RFC 7578) -----------------------------------------------------------
struct FormPart {
    std::string name;
    std::string filename;  // empty: a plain field
    std::string content_type;
    std::string data;
};
// `content_type` is the request's Content-Type header value (boundary taken from it).
std::variant<std::vector<FormPart>, ApiError> parse_multipart(std::string_view body,
                                                              std::string_view content_type,
                                                              size_t max_parts = 64);

// ---- server-sent events ------------------------------------------------------------------------
std::string sse_data(const json& j);                           // "data: {...}\n\n"
std::string sse_event(std::string_view event, const json& j);  // "event: …\ndata: {...}\n\n"
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// ---- POST /v1/audio/transcriptions -------------------------------------------------------------
struct TranscriptionRequest {
    Audio audio;
    std::string model;
    enum Format : uint8_t { kJson, kText, kVerboseJson } format = kJson;
    bool stream = false;
    float temperature = -1;
};
std::variant<TranscriptionRequest, ApiError> parse_transcription(const std::vector<FormPart>& parts,
                                                                 const Limits& lim);

// ---- POST /v1/audio/speech ---------------------------------------------------------------------
struct SpeechRequest {
    std::string model;
    std::string input;
    std::string voice;
    enum Format : uint8_t { kWav, kPcm } format = kWav;
    enum Stream : uint8_t { kAudio, kSse } stream_format = kAudio;
};
std::variant<SpeechRequest, ApiError> parse_speech(const json& body,
                                                   const std::vector<std::string>& voices,
                                                   const Limits& lim);

// ---- POST /v1/chat/completions -----------------------------------------------------------------
struct MessagePart {
    std::string text;  // a text part, or
    Audio audio;       // an input_audio part (sample_rate > 0)
};
struct ChatMessage {
    std::string role;  // system (also "developer"), user, assistant
    std::vector<MessagePart> parts;
};
struct ChatRequest {
    std::string model;
    std::vector<ChatMessage> messages;
    bool audio_out = false;  // modalities includes "audio"
    std::string voice;
    enum Format : uint8_t { kWav, kPcm16 } audio_format = kWav;
    bool stream = false;
    bool include_usage = false;
    int max_tokens = 0;
    float temperature = -1;
    uint64_t seed = 0;
};
std::variant<ChatRequest, ApiError> parse_chat(const json& body,
                                               const std::vector<std::string>& voices,
                                               const Limits& lim);

// ---- Realtime (GET /v1/realtime) client events -------------------------------------------------
struct TurnDetection {
    bool server_vad = true;  // false: "turn_detection": null / {"type":"none"}
    float threshold = 0.5f;
    int prefix_padding_ms = 300;
    int silence_duration_ms = 500;
    bool create_response = true;
    bool interrupt_response = true;
};
struct SessionUpdate {
    std::optional<std::string> instructions;
    std::optional<std::string> voice;
    std::optional<TurnDetection> turn_detection;
    std::optional<bool> audio_out;         // output modalities include "audio"
    std::optional<int> max_output_tokens;  // 0: "inf"
};
struct RtContent {
    std::string text;        // input_text / text
    std::vector<float> pcm;  // input_audio: pcm16 24 kHz
    bool is_audio = false;
};
struct ClientEvent {
    enum Type : uint8_t {
        kSessionUpdate,
        kAppend,
        kCommit,
        kClear,
        kItemCreate,
        kResponseCreate,
        kResponseCancel,
        kTruncate,
    } type = kSessionUpdate;
    std::string event_id;
    SessionUpdate session;     // kSessionUpdate; kResponseCreate (instructions, modalities, …)
    std::vector<float> audio;  // kAppend: 24 kHz samples
    std::string role;          // kItemCreate
    std::vector<RtContent> content;
    std::string item_id;  // kTruncate, kItemCreate (optional)
    int content_index = 0;
    int64_t audio_end_ms = 0;
};
struct ClientEventError {
    ApiError error;
    std::string event_id;  // when the event got that far
};
std::variant<ClientEvent, ClientEventError> parse_client_event(
    std::string_view bytes, const std::vector<std::string>& voices, const Limits& lim);

// Valid UTF-8 (no overlongs, no surrogates): text deltas are checked before they are sent.
bool valid_utf8(std::string_view s);

}  // namespace voxrt::server
