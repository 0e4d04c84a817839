// The server's wire formats (tools/server/protocol.h): every parser on good input and on the bad
// input clients send, with the error naming the field.
#include <gtest/gtest.h>

#include <random>

#include "protocol.h"

using namespace voxrt::server;

namespace {
const std::vector<std::string> kVoices = {"us-female", "us-male", "uk-female", "uk-male"};

template <class T>
const ApiError& err_of(const T& v) {
    EXPECT_TRUE(std::holds_alternative<ApiError>(v));
    return std::get<ApiError>(v);
}

json J(const char* s) {
    return json::parse(s);
}

std::string wav_of(size_t n, int rate) {
    std::vector<int16_t> pcm(n);
    for (size_t i = 0; i < n; ++i) pcm[i] = int16_t((i * 37) % 2000 - 1000);
    return encode_wav(pcm.data(), n, rate);
}
}  // namespace

TEST(Base64, RoundTripsEveryLength) {
    std::mt19937 rng(1);
    for (size_t n = 0; n < 40; ++n) {
        std::string s(n, '\0');
        for (auto& c : s) c = char(rng());
        auto e = base64_encode(s);
        EXPECT_EQ(e.size() % 4, 0u);
        auto d = base64_decode(e, 1 << 20);
        ASSERT_TRUE(d) << n;
        EXPECT_EQ(*d, s);
    }
    EXPECT_EQ(base64_encode(std::string("foobar")), "Zm9vYmFy");
    EXPECT_EQ(*base64_decode("Zm9vYg==", 100), "foob");
}

TEST(Base64, RefusesMalformedAndOversized) {
    EXPECT_FALSE(base64_decode("Zm9", 100));        // length
    EXPECT_FALSE(base64_decode("Zm9v YmFy", 100));  // whitespace
    EXPECT_FALSE(base64_decode("Zm=vYmFy", 100));   // padding inside
    EXPECT_FALSE(base64_decode("Zg==Zg==", 100));   // padding before the end
    EXPECT_FALSE(base64_decode("Z===", 100));
    EXPECT_FALSE(base64_decode("Zh==", 100));  // non-zero unused bits
    EXPECT_FALSE(base64_decode("Zm9=", 100));
    EXPECT_FALSE(base64_decode("Zm9vYmFy", 5));  // 6 bytes > 5
    EXPECT_TRUE(base64_decode("Zm9vYmFy", 6));
}

TEST(Wav, EncodeDecodeRoundTrip) {
    std::vector<int16_t> pcm = {0, 1000, -1000, 32767, -32768};
    auto a = decode_wav(encode_wav(pcm.data(), pcm.size(), 24000), Limits{}, "file");
    ASSERT_TRUE(std::holds_alternative<Audio>(a));
    auto& au = std::get<Audio>(a);
    EXPECT_EQ(au.sample_rate, 24000);
    ASSERT_EQ(au.pcm.size(), pcm.size());
    for (size_t i = 0; i < pcm.size(); ++i) EXPECT_FLOAT_EQ(au.pcm[i], pcm[i] / 32768.0f);
}

TEST(Wav, ErrorsNameTheInput) {
    Limits lim;
    EXPECT_NE(err_of(decode_wav("not a wav", lim, "file")).message.find("file"), std::string::npos);
    EXPECT_EQ(err_of(decode_wav("not a wav", lim, "file")).param, "file");
    std::string w = wav_of(100, 16000);
    w[20] = 2;  // format 2 (ADPCM)
    EXPECT_NE(err_of(decode_wav(w, lim, "x")).message.find("format 2"), std::string::npos);
    std::string t = wav_of(100, 16000).substr(0, 40);  // no data chunk
    EXPECT_NE(err_of(decode_wav(t, lim, "x")).message.find("data"), std::string::npos);
    lim.max_audio_seconds = 1;
    EXPECT_EQ(err_of(decode_wav(wav_of(16001, 16000), lim, "x")).code, "audio_too_long");
    std::string r = wav_of(100, 16000);
    r[24] = char(0x40);  // 64 Hz
    r[25] = r[26] = r[27] = 0;
    EXPECT_NE(err_of(decode_wav(r, Limits{}, "x")).message.find("sample rate"), std::string::npos);
}

TEST(Json, RefusesMalformedDeepAndNonObjects) {
    EXPECT_EQ(err_of(parse_json_object("{bad", 32, "body")).code, "invalid_json");
    EXPECT_EQ(err_of(parse_json_object("[1]", 32, "body")).code, "invalid_json");
    std::string deep(1000, '[');
    EXPECT_NE(err_of(parse_json_object("{\"a\":" + deep, 32, "body")).message.find("nested"),
              std::string::npos);
    EXPECT_TRUE(std::holds_alternative<json>(parse_json_object("{\"a\":\"[[[[\"}", 2, "body")));
}

TEST(Multipart, ParsesFieldsAndFiles) {
    std::string body =
        "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
        "Content-Type: audio/wav\r\n\r\nRIFF\r\n--not-the-boundary\r\n--XyZ--\r\n";
    auto p = parse_multipart(body, "multipart/form-data; boundary=XyZ");
    ASSERT_TRUE(std::holds_alternative<std::vector<FormPart>>(p));
    auto& parts = std::get<std::vector<FormPart>>(p);
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[0].name, "model");
    EXPECT_EQ(parts[0].data, "whisper-1");
    EXPECT_EQ(parts[1].filename, "a.wav");
    EXPECT_EQ(parts[1].data, "RIFF\r\n--not-the-boundary");
    EXPECT_EQ(err_of(parse_multipart(body, "application/json")).code, "invalid_content_type");
    EXPECT_EQ(err_of(parse_multipart(body, "multipart/form-data")).code, "invalid_multipart");
    EXPECT_EQ(err_of(parse_multipart(body.substr(0, 60), "multipart/form-data; boundary=XyZ")).code,
              "invalid_multipart");
}

TEST(Transcription, FieldsAndErrors) {
    std::vector<FormPart> parts = {{"file", "a.wav", "audio/wav", wav_of(1600, 16000)},
                                   {"model", "", "", "m"},
                                   {"response_format", "", "", "verbose_json"}};
    auto r = parse_transcription(parts, Limits{});
    ASSERT_TRUE(std::holds_alternative<TranscriptionRequest>(r));
    EXPECT_EQ(std::get<TranscriptionRequest>(r).format, TranscriptionRequest::kVerboseJson);
    EXPECT_EQ(std::get<TranscriptionRequest>(r).audio.pcm.size(), 1600u);
    parts[2].data = "srt";
    EXPECT_EQ(err_of(parse_transcription(parts, Limits{})).param, "response_format");
    parts[2] = {"timestamp_granularities[]", "", "", "word"};
    EXPECT_EQ(err_of(parse_transcription(parts, Limits{})).param, "timestamp_granularities[]");
    parts[2] = {"language", "", "", "fr"};
    EXPECT_EQ(err_of(parse_transcription(parts, Limits{})).param, "language");
    parts.erase(parts.begin());
    parts.pop_back();
    EXPECT_EQ(err_of(parse_transcription(parts, Limits{})).param, "file");
}

TEST(Speech, FieldsAndErrors) {
    auto r = parse_speech(
        J(R"({"model":"m","input":"hi","voice":"uk-male","response_format":"pcm","stream_format":"sse"})"),
        kVoices, Limits{});
    ASSERT_TRUE(std::holds_alternative<SpeechRequest>(r));
    EXPECT_EQ(std::get<SpeechRequest>(r).voice, "uk-male");
    EXPECT_EQ(std::get<SpeechRequest>(r).format, SpeechRequest::kPcm);
    EXPECT_EQ(std::get<SpeechRequest>(r).stream_format, SpeechRequest::kSse);
    EXPECT_EQ(err_of(parse_speech(J(R"({"input":"hi","voice":"alloy"})"), kVoices, Limits{})).param,
              "voice");
    EXPECT_EQ(err_of(parse_speech(J(R"({"input":"hi","voice":"us-male","response_format":"mp3"})"),
                                  kVoices, Limits{}))
                  .param,
              "response_format");
    EXPECT_EQ(err_of(parse_speech(J(R"({"input":"hi","voice":"us-male","speed":1.5})"), kVoices,
                                  Limits{}))
                  .param,
              "speed");
    EXPECT_EQ(err_of(parse_speech(J(R"({"voice":"us-male"})"), kVoices, Limits{})).param, "input");
    EXPECT_EQ(
        err_of(parse_speech(J(R"({"input":"hi","voice":"us-male","x":1})"), kVoices, Limits{}))
            .param,
        "x");
}

TEST(Chat, MessagesAudioAndErrors) {
    std::string wav = base64_encode(wav_of(800, 16000));
    json body = {
        {"model", "m"},
        {"modalities", {"text", "audio"}},
        {"audio", {{"voice", "default"}, {"format", "wav"}}},
        {"messages",
         {{{"role", "developer"}, {"content", "be brief"}},
          {{"role", "user"}, {"content", "hello"}},
          {{"role", "assistant"}, {"content", "hi"}},
          {{"role", "user"},
           {"content",
            {{{"type", "text"}, {"text", "listen:"}},
             {{"type", "input_audio"}, {"input_audio", {{"data", wav}, {"format", "wav"}}}}}}}}}};
    auto r = parse_chat(body, {"default"}, Limits{});
    ASSERT_TRUE(std::holds_alternative<ChatRequest>(r)) << err_of(r).message;
    auto& c = std::get<ChatRequest>(r);
    EXPECT_TRUE(c.audio_out);
    ASSERT_EQ(c.messages.size(), 4u);
    EXPECT_EQ(c.messages[0].role, "system");
    ASSERT_EQ(c.messages[3].parts.size(), 2u);
    EXPECT_EQ(c.messages[3].parts[1].audio.pcm.size(), 800u);

    auto bad = [&](json b) { return err_of(parse_chat(b, {"default"}, Limits{})).param; };
    json b = body;
    b["n"] = 2;
    EXPECT_EQ(bad(b), "n");
    b = body;
    b["tools"] = json::array({{{"type", "function"}}});
    EXPECT_EQ(bad(b), "tools");
    b = body;
    b["audio"]["voice"] = "alloy";
    EXPECT_EQ(bad(b), "audio.voice");
    b = body;
    b["audio"]["format"] = "mp3";
    EXPECT_EQ(bad(b), "audio.format");
    b = body;
    b["messages"][3]["content"][1]["input_audio"]["data"] = "!!!!";
    EXPECT_EQ(bad(b), "messages[3].content[1].input_audio.data");
    b = body;
    b["messages"][3]["content"][1]["input_audio"]["format"] = "mp3";
    EXPECT_EQ(bad(b), "messages[3].content[1].input_audio.format");
    b = body;
    b["messages"][1]["role"] = "tool";
    EXPECT_EQ(bad(b), "messages[1].role");
    b = body;
    b["stream"] = true;  // streamed audio must be pcm16
    EXPECT_EQ(bad(b), "audio.format");
    b = body;
    b["messages"] = json::array();
    EXPECT_EQ(bad(b), "messages");
    Limits small;
    small.max_audio_bytes = 100;
    EXPECT_EQ(err_of(parse_chat(body, {"default"}, small)).param,
              "messages[3].content[1].input_audio.data");
}

TEST(Realtime, ParsesTheClientEvents) {
    Limits lim;
    auto ok = [&](const std::string& s) {
        auto r = parse_client_event(s, kVoices, lim);
        EXPECT_TRUE(std::holds_alternative<ClientEvent>(r))
            << s << ": " << std::get<ClientEventError>(r).error.message;
        return std::holds_alternative<ClientEvent>(r) ? std::get<ClientEvent>(r) : ClientEvent{};
    };
    auto e = ok(
        R"({"type":"session.update","event_id":"e1","session":{"type":"realtime","instructions":"hi",
        "audio":{"input":{"format":{"type":"audio/pcm","rate":24000},"turn_detection":{"type":"server_vad","threshold":0.7,
        "prefix_padding_ms":200,"silence_duration_ms":400}},"output":{"voice":"uk-female"}}}})");
    EXPECT_EQ(e.event_id, "e1");
    ASSERT_TRUE(e.session.turn_detection);
    EXPECT_FLOAT_EQ(e.session.turn_detection->threshold, 0.7f);
    EXPECT_EQ(e.session.turn_detection->prefix_padding_ms, 200);
    EXPECT_EQ(*e.session.voice, "uk-female");
    EXPECT_EQ(*e.session.instructions, "hi");
    e = ok(R"({"type":"session.update","session":{"turn_detection":null}})");  // beta shape
    EXPECT_FALSE(e.session.turn_detection->server_vad);
    std::vector<int16_t> pcm = {1, -2, 3};
    e = ok(R"({"type":"input_audio_buffer.append","audio":")" + base64_encode(pcm.data(), 3) +
           "\"}");
    ASSERT_EQ(e.audio.size(), 3u);
    EXPECT_FLOAT_EQ(e.audio[1], -2 / 32768.0f);
    EXPECT_EQ(ok(R"({"type":"input_audio_buffer.commit"})").type, ClientEvent::kCommit);
    EXPECT_EQ(ok(R"({"type":"response.cancel"})").type, ClientEvent::kResponseCancel);
    e = ok(
        R"({"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"hey"}]}})");
    EXPECT_EQ(e.content.at(0).text, "hey");
    e = ok(
        R"({"type":"conversation.item.truncate","item_id":"item_3","content_index":0,"audio_end_ms":1500})");
    EXPECT_EQ(e.audio_end_ms, 1500);
    e = ok(R"({"type":"response.create","response":{"output_modalities":["text"]}})");
    EXPECT_FALSE(*e.session.audio_out);
}

TEST(Realtime, ErrorsNameTheField) {
    Limits lim;
    lim.max_audio_bytes = 8;
    auto bad = [&](const std::string& s) {
        auto r = parse_client_event(s, kVoices, lim);
        EXPECT_TRUE(std::holds_alternative<ClientEventError>(r)) << s;
        return std::holds_alternative<ClientEventError>(r) ? std::get<ClientEventError>(r)
                                                           : ClientEventError{};
    };
    EXPECT_EQ(bad(R"({"type":"nope","event_id":"x"})").error.code, "unknown_event_type");
    EXPECT_EQ(bad(R"({"type":"nope","event_id":"x"})").event_id, "x");
    EXPECT_EQ(bad("{").error.code, "invalid_json");
    EXPECT_EQ(bad(R"({"event_id":"x"})").error.param, "type");
    EXPECT_EQ(bad(R"({"type":"input_audio_buffer.append","audio":"AAAAAAAAAAAAAAAA"})").error.param,
              "audio");  // 12 bytes > 8
    EXPECT_EQ(bad(R"({"type":"input_audio_buffer.append","audio":"AA=="})").error.param,
              "audio");  // odd byte count
    EXPECT_EQ(
        bad(R"({"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcmu"}}}}})")
            .error.param,
        "session.audio.input.format.type");
    EXPECT_EQ(bad(R"({"type":"session.update","session":{"input_audio_format":"g711_ulaw"}})")
                  .error.param,
              "session.input_audio_format");
    EXPECT_EQ(
        bad(R"({"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcm","rate":16000}}}}})")
            .error.param,
        "session.audio.input.format.rate");
    EXPECT_EQ(
        bad(R"({"type":"session.update","session":{"turn_detection":{"type":"semantic_vad"}}})")
            .error.param,
        "session.turn_detection.type");
    EXPECT_EQ(bad(R"({"type":"session.update","session":{"voice":"alloy"}})").error.param,
              "session.voice");
    EXPECT_EQ(
        bad(R"({"type":"session.update","session":{"tools":[{"type":"function"}]}})").error.param,
        "session.tools");
    EXPECT_EQ(bad(R"({"type":"conversation.item.truncate","item_id":"a"})").error.param,
              "audio_end_ms");
}

TEST(Utf8, Validity) {
    EXPECT_TRUE(valid_utf8("héllo ☃ 𝄞"));
    EXPECT_FALSE(valid_utf8("\xC3"));              // truncated
    EXPECT_FALSE(valid_utf8("\xC0\xAF"));          // overlong
    EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate
    EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
    EXPECT_FALSE(valid_utf8("\xE2\x98"));
}
