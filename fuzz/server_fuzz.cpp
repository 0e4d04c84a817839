// libFuzzer target: every parser of voxrt serve's wire formats (tools/server/protocol.h) on
// arbitrary bytes. The first byte picks the parser; the rest is its input. Parsers must return a
// value or an ApiError, never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol.h"
#include <voxrt/vad.h>

using namespace voxrt::server;
using voxrt::Vad;
using voxrt::VadEvent;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
    static const std::vector<std::string> voices = {"us-female", "us-male", "uk-female", "uk-male"};
    Limits lim;
    lim.max_audio_bytes = 1 << 20;
    lim.max_audio_seconds = 30;
    switch (data[0] % 8) {
        case 0:
            (void)parse_client_event(in, voices, lim);
            break;
        case 1: {
            auto j = parse_json_object(in, lim.max_json_depth, "body");
            if (auto* o = std::get_if<json>(&j)) {
                (void)parse_chat(*o, {"default"}, lim);
                (void)parse_speech(*o, voices, lim);
            }
            break;
        }
        case 2: {
            auto parts = parse_multipart(in, "multipart/form-data; boundary=b");
            if (auto* p = std::get_if<std::vector<FormPart>>(&parts))
                (void)parse_transcription(*p, lim);
            break;
        }
        case 3: {
            // the Content-Type header is client input too: first line of the input
            size_t nl = in.find('\n');
            if (nl != std::string_view::npos)
                (void)parse_multipart(in.substr(nl + 1), in.substr(0, nl));
            break;
        }
        case 4:
            (void)decode_wav(in, lim, "file");
            break;
        case 5: {
            auto d = base64_decode(in, 1 << 20);
            if (d && base64_encode(*d) != in)
                __builtin_trap();  // decode accepts only canonical text
            break;
        }
        case 6: {
            auto pcm = pcm16_to_float(in, "audio");
            if (auto* x = std::get_if<std::vector<float>>(&pcm)) {
                Vad vad({0.5f, 300, 500}, 24000);
                std::vector<VadEvent> ev;
                vad.push(x->data(), x->size(), ev);
            }
            break;
        }
        case 7:
            (void)valid_utf8(in);
            break;
    }
    return 0;
}
