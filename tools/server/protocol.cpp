#include "protocol.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace voxrt::server {
namespace {

ApiError bad(std::string message, std::string param = {}, std::string code = {}) {
    ApiError e;
    e.message = std::move(message);
    e.param = std::move(param);
    e.code = std::move(code);
    return e;
}

uint32_t rd_u32(const unsigned char* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint16_t rd_u16(const unsigned char* p) {
    return uint16_t(p[0] | p[1] << 8);
}

void put_u32(std::string& s, uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u16(std::string& s, uint16_t v) {
    s.push_back(char(v & 0xff));
    s.push_back(char(v >> 8));
}

std::string lower(std::string_view s) {
    std::string r(s);
    for (auto& c : r) c = char(std::tolower(static_cast<unsigned char>(c)));
    return r;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

// Value of `key=` in a header parameter list ("form-data; name=\"file\"; filename=\"a.wav\"").
std::optional<std::string> header_param(std::string_view header, std::string_view key) {
    size_t i = 0;
    while (i < header.size()) {
        size_t semi = header.find(';', i);
        if (semi == std::string_view::npos) break;
        i = semi + 1;
        while (i < header.size() && (header[i] == ' ' || header[i] == '\t')) ++i;
        size_t eq = header.find('=', i);
        if (eq == std::string_view::npos) break;
        std::string k = lower(trim(header.substr(i, eq - i)));
        size_t v = eq + 1;
        std::string value;
        if (v < header.size() && header[v] == '"') {
            size_t j = v + 1;
            while (j < header.size() && header[j] != '"') {
                if (header[j] == '\\' && j + 1 < header.size()) ++j;
                value.push_back(header[j++]);
            }
            i = j + 1;
        } else {
            size_t end = header.find(';', v);
            value = std::string(trim(header.substr(
                v, end == std::string_view::npos ? std::string_view::npos : end - v)));
            i = end == std::string_view::npos ? header.size() : end;
        }
        if (k == key) return value;
    }
    return std::nullopt;
}

// Depth of the deepest [ or { nesting, outside strings.
int json_depth(std::string_view s) {
    int depth = 0, max_depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            max_depth = std::max(max_depth, ++depth);
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return max_depth;
}

const json* field(const json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

// Reads an optional string field; returns an error message when present but not a string.
std::optional<ApiError> get_string(const json& obj, const char* key, std::string* out,
                                   const std::string& param, size_t max_bytes) {
    const json* f = field(obj, key);
    if (!f) return std::nullopt;
    if (!f->is_string()) return bad("'" + param + "' must be a string", param);
    const auto& s = f->get_ref<const std::string&>();
    if (s.size() > max_bytes)
        return bad("'" + param + "' is longer than " + std::to_string(max_bytes) + " bytes", param);
    if (!valid_utf8(s)) return bad("'" + param + "' is not valid UTF-8", param);
    *out = s;
    return std::nullopt;
}

std::optional<ApiError> get_number(const json& obj, const char* key, double* out,
                                   const std::string& param, double lo, double hi) {
    const json* f = field(obj, key);
    if (!f) return std::nullopt;
    if (!f->is_number()) return bad("'" + param + "' must be a number", param);
    double v = f->get<double>();
    if (!(v >= lo && v <= hi))
        return bad(
            "'" + param + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi),
            param);
    *out = v;
    return std::nullopt;
}

std::optional<ApiError> get_bool(const json& obj, const char* key, bool* out,
                                 const std::string& param) {
    const json* f = field(obj, key);
    if (!f) return std::nullopt;
    if (!f->is_boolean()) return bad("'" + param + "' must be true or false", param);
    *out = f->get<bool>();
    return std::nullopt;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

std::string join(const std::vector<std::string>& v) {
    std::string r;
    for (size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + v[i];
    return r;
}

// Fields OpenAI defines that voxrt cannot honour: present and not null/default → 400 naming it.
std::optional<ApiError> refuse_fields(const json& obj, std::initializer_list<const char*> keys,
                                      const std::string& prefix = {}) {
    for (const char* k : keys) {
        const json* f = field(obj, k);
        if (!f) continue;
        if (f->is_array() && f->empty()) continue;
        if (f->is_boolean() && !f->get<bool>()) continue;
        return bad("'" + prefix + k + "' is not supported by this server", prefix + k,
                   "unsupported_parameter");
    }
    return std::nullopt;
}

}  // namespace

json error_body(const ApiError& e) {
    json err = {{"message", e.message}, {"type", e.type}};
    err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
    err["code"] = e.code.empty() ? json(nullptr) : json(e.code);
    return json{{"error", err}};
}

// ---- base64
// ---------------------------------------------------------------------------------------

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}
}  // namespace

std::string base64_encode(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        uint32_t v =
            uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        out.push_back(kB64[v >> 18]);
        out.push_back(kB64[(v >> 12) & 63]);
        out.push_back(kB64[(v >> 6) & 63]);
        out.push_back(kB64[v & 63]);
    }
    if (i < in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        if (i + 1 < in.size()) v |= uint32_t(uint8_t(in[i + 1])) << 8;
        out.push_back(kB64[v >> 18]);
        out.push_back(kB64[(v >> 12) & 63]);
        out.push_back(i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

std::string base64_encode(const int16_t* pcm, size_t n) {
    return base64_encode(pcm16_bytes(pcm, n));
}

std::optional<std::string> base64_decode(std::string_view in, size_t max_bytes) {
    if (in.size() % 4 != 0) return std::nullopt;
    if (in.size() / 4 * 3 > max_bytes + 2) return std::nullopt;
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (size_t i = 0; i < in.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            unsigned char c = static_cast<unsigned char>(in[i + k]);
            if (c == '=') {
                // padding only in the last quantum's last one or two places
                if (i + 4 != in.size() || k < 2) return std::nullopt;
                v[k] = 0;
                ++pad;
            } else {
                if (pad) return std::nullopt;
                v[k] = b64_value(c);
                if (v[k] < 0) return std::nullopt;
            }
        }
        // the bits a padded quantum leaves unused must be zero (canonical encoding only)
        if ((pad == 2 && (v[1] & 0xF)) || (pad == 1 && (v[2] & 0x3))) return std::nullopt;
        uint32_t w = uint32_t(v[0]) << 18 | uint32_t(v[1]) << 12 | uint32_t(v[2]) << 6 | v[3];
        out.push_back(char(w >> 16));
        if (pad < 2) out.push_back(char((w >> 8) & 0xff));
        if (pad < 1) out.push_back(char(w & 0xff));
    }
    if (out.size() > max_bytes) return std::nullopt;
    return out;
}

// ---- audio
// ----------------------------------------------------------------------------------------

std::variant<Audio, ApiError> decode_wav(std::string_view bytes, const Limits& lim,
                                         std::string_view what) {
    const std::string w(what);
    auto p = reinterpret_cast<const unsigned char*>(bytes.data());
    if (bytes.size() < 12 || std::memcmp(p, "RIFF", 4) != 0 || std::memcmp(p + 8, "WAVE", 4) != 0)
        return bad(w + ": not a WAV file (no RIFF/WAVE header)", w, "invalid_audio");
    size_t pos = 12;
    int format = -1, channels = 0, bits = 0;
    uint32_t rate = 0;
    const unsigned char* data = nullptr;
    size_t data_len = 0;
    while (pos + 8 <= bytes.size()) {
        uint32_t len = rd_u32(p + pos + 4);
        const unsigned char* body = p + pos + 8;
        size_t avail = bytes.size() - pos - 8;
        if (std::memcmp(p + pos, "fmt ", 4) == 0) {
            if (len < 16 || len > avail) return bad(w + ": bad fmt chunk", w, "invalid_audio");
            format = rd_u16(body);
            channels = rd_u16(body + 2);
            rate = rd_u32(body + 4);
            bits = rd_u16(body + 14);
            if (format == 0xFFFE) {
                if (len < 40)
                    return bad(w + ": bad WAVE_FORMAT_EXTENSIBLE chunk", w, "invalid_audio");
                format = rd_u16(body + 24);
            }
        } else if (std::memcmp(p + pos, "data", 4) == 0) {
            data = body;
            data_len = std::min<size_t>(len, avail);  // streamed WAVs may carry a bogus length
            break;
        }
        if (len > avail) break;
        pos += 8 + size_t(len) + (len & 1);
    }
    if (format < 0) return bad(w + ": WAV has no fmt chunk", w, "invalid_audio");
    if (!data) return bad(w + ": WAV has no data chunk", w, "invalid_audio");
    if (channels < 1 || channels > 2)
        return bad(w + ": " + std::to_string(channels) + " channels (1 or 2 supported)", w,
                   "invalid_audio");
    if (rate < 8000 || rate > 192000)
        return bad(w + ": sample rate " + std::to_string(rate) + " Hz (8000..192000 supported)", w,
                   "invalid_audio");
    const bool is_float = format == 3 && bits == 32;
    const bool is_pcm = format == 1 && (bits == 16 || bits == 24 || bits == 32);
    if (!is_float && !is_pcm)
        return bad(w + ": WAV format " + std::to_string(format) + " with " + std::to_string(bits) +
                       " bits (PCM 16/24/32-bit or float32 supported)",
                   w, "invalid_audio");
    const size_t frame = size_t(channels) * size_t(bits / 8);
    const size_t frames = data_len / frame;
    if (frames > size_t(lim.max_audio_seconds) * rate)
        return bad(w + ": longer than " + std::to_string(lim.max_audio_seconds) + " s", w,
                   "audio_too_long");
    if (frames == 0) return bad(w + ": WAV has no samples", w, "invalid_audio");
    Audio a;
    a.sample_rate = int(rate);
    a.pcm.resize(frames);
    for (size_t i = 0; i < frames; ++i) {
        float acc = 0;
        for (int c = 0; c < channels; ++c) {
            const unsigned char* s = data + i * frame + size_t(c) * (bits / 8);
            float v;
            if (is_float) {
                uint32_t u = rd_u32(s);
                std::memcpy(&v, &u, 4);
                if (!std::isfinite(v)) v = 0;
                v = std::clamp(v, -1.0f, 1.0f);
            } else if (bits == 16) {
                v = float(int16_t(rd_u16(s))) / 32768.0f;
            } else if (bits == 24) {
                int32_t x =
                    int32_t(uint32_t(s[0]) << 8 | uint32_t(s[1]) << 16 | uint32_t(s[2]) << 24);
                v = float(x >> 8) / 8388608.0f;
            } else {
                v = float(int32_t(rd_u32(s))) / 2147483648.0f;
            }
            acc += v;
        }
        a.pcm[i] = acc / float(channels);
    }
    return a;
}

std::string encode_wav(const int16_t* pcm, size_t n, int rate) {
    std::string s;
    s.reserve(44 + 2 * n);
    s += "RIFF";
    put_u32(s, uint32_t(36 + 2 * n));
    s += "WAVEfmt ";
    put_u32(s, 16);
    put_u16(s, 1);
    put_u16(s, 1);
    put_u32(s, uint32_t(rate));
    put_u32(s, uint32_t(rate * 2));
    put_u16(s, 2);
    put_u16(s, 16);
    s += "data";
    put_u32(s, uint32_t(2 * n));
    s += pcm16_bytes(pcm, n);
    return s;
}

std::variant<std::vector<float>, ApiError> pcm16_to_float(std::string_view bytes,
                                                          std::string_view what) {
    if (bytes.size() % 2)
        return bad(std::string(what) + ": pcm16 audio has an odd number of bytes",
                   std::string(what), "invalid_audio");
    std::vector<float> out(bytes.size() / 2);
    auto p = reinterpret_cast<const unsigned char*>(bytes.data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = float(int16_t(rd_u16(p + 2 * i))) / 32768.0f;
    return out;
}

std::string pcm16_bytes(const int16_t* pcm, size_t n) {
    std::string s(2 * n, '\0');
    for (size_t i = 0; i < n; ++i) {
        s[2 * i] = char(uint16_t(pcm[i]) & 0xff);
        s[2 * i + 1] = char(uint16_t(pcm[i]) >> 8);
    }
    return s;
}

std::vector<int16_t> float_to_pcm16(const float* x, size_t n) {
    std::vector<int16_t> out(n);
    for (size_t i = 0; i < n; ++i) {
        float v = std::isfinite(x[i]) ? std::clamp(x[i], -1.0f, 1.0f) : 0.0f;
        out[i] = int16_t(std::lround(v * 32767.0f));
    }
    return out;
}

// ---- JSON
// -----------------------------------------------------------------------------------------

std::variant<json, ApiError> parse_json_object(std::string_view body, int max_depth,
                                               std::string_view what) {
    const std::string w(what);
    if (json_depth(body) > max_depth)
        return bad(w + ": JSON nested deeper than " + std::to_string(max_depth) + " levels", {},
                   "invalid_json");
    json j = json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded()) return bad(w + ": malformed JSON", {}, "invalid_json");
    if (!j.is_object()) return bad(w + ": expected a JSON object", {}, "invalid_json");
    return j;
}

// ---- multipart
// ------------------------------------------------------------------------------------

std::variant<std::vector<FormPart>, ApiError> parse_multipart(std::string_view body,
                                                              std::string_view content_type,
                                                              size_t max_parts) {
    std::string ct = lower(content_type);
    if (ct.rfind("multipart/form-data", 0) != 0)
        return bad("Content-Type must be multipart/form-data", {}, "invalid_content_type");
    auto boundary = header_param(content_type, "boundary");
    if (!boundary || boundary->empty() || boundary->size() > 200)
        return bad("multipart/form-data without a valid boundary", {}, "invalid_multipart");
    const std::string delim = "--" + *boundary;
    std::vector<FormPart> parts;
    size_t pos = body.find(delim);
    if (pos == std::string_view::npos)
        return bad("multipart body has no parts", {}, "invalid_multipart");
    pos += delim.size();
    for (;;) {
        if (body.substr(pos, 2) == "--") return parts;  // closing delimiter
        if (body.substr(pos, 2) != "\r\n")
            return bad("malformed multipart delimiter", {}, "invalid_multipart");
        pos += 2;
        size_t hdr_end = body.find("\r\n\r\n", pos);
        if (hdr_end == std::string_view::npos)
            return bad("multipart part without a header end", {}, "invalid_multipart");
        FormPart part;
        std::string_view headers = body.substr(pos, hdr_end - pos);
        bool have_disposition = false;
        while (!headers.empty()) {
            size_t eol = headers.find("\r\n");
            std::string_view line = headers.substr(0, eol);
            headers = eol == std::string_view::npos ? std::string_view{} : headers.substr(eol + 2);
            size_t colon = line.find(':');
            if (colon == std::string_view::npos)
                return bad("malformed multipart header", {}, "invalid_multipart");
            std::string name = lower(trim(line.substr(0, colon)));
            std::string_view value = trim(line.substr(colon + 1));
            if (name == "content-disposition") {
                if (lower(value).rfind("form-data", 0) != 0)
                    return bad("multipart part is not form-data", {}, "invalid_multipart");
                auto n = header_param(value, "name");
                if (!n) return bad("multipart part without a name", {}, "invalid_multipart");
                part.name = *n;
                if (auto f = header_param(value, "filename")) part.filename = *f;
                have_disposition = true;
            } else if (name == "content-type") {
                part.content_type = std::string(value);
            }
        }
        if (!have_disposition)
            return bad("multipart part without Content-Disposition", {}, "invalid_multipart");
        size_t data_start = hdr_end + 4;
        size_t next = body.find("\r\n" + delim, data_start);
        if (next == std::string_view::npos)
            return bad("multipart body is not terminated", {}, "invalid_multipart");
        part.data = std::string(body.substr(data_start, next - data_start));
        parts.push_back(std::move(part));
        if (parts.size() > max_parts)
            return bad("more than " + std::to_string(max_parts) + " multipart parts", {},
                       "invalid_multipart");
        pos = next + 2 + delim.size();
    }
}

// ---- SSE
// ------------------------------------------------------------------------------------------

std::string sse_data(const json& j) {
    return "data: " + j.dump() + "\n\n";
}
std::string sse_event(std::string_view event, const json& j) {
    return "event: " + std::string(event) + "\ndata: " + j.dump() + "\n\n";
}

// ---- requests
// -------------------------------------------------------------------------------------

std::variant<TranscriptionRequest, ApiError> parse_transcription(const std::vector<FormPart>& parts,
                                                                 const Limits& lim) {
    TranscriptionRequest r;
    const FormPart* file = nullptr;
    for (const auto& p : parts) {
        const std::string& n = p.name;
        if (n == "file") {
            file = &p;
        } else if (n == "model") {
            r.model = p.data;
        } else if (n == "response_format") {
            if (p.data == "json")
                r.format = TranscriptionRequest::kJson;
            else if (p.data == "text")
                r.format = TranscriptionRequest::kText;
            else if (p.data == "verbose_json")
                r.format = TranscriptionRequest::kVerboseJson;
            else
                return bad(
                    "response_format '" + p.data + "' is not supported (json, text, verbose_json)",
                    "response_format", "unsupported_value");
        } else if (n == "stream") {
            if (p.data == "true")
                r.stream = true;
            else if (p.data == "false")
                r.stream = false;
            else
                return bad("'stream' must be true or false", "stream");
        } else if (n == "temperature") {
            char* end = nullptr;
            std::string v = p.data;
            double t = std::strtod(v.c_str(), &end);
            if (v.empty() || *end || !(t >= 0 && t <= 2))
                return bad("'temperature' must be a number between 0 and 2", "temperature");
            r.temperature = float(t);
        } else if (n == "language") {
            if (p.data != "en" && !p.data.empty())
                return bad("language '" + p.data + "' is not supported (en)", "language",
                           "unsupported_value");
        } else if (n == "prompt" || n == "timestamp_granularities[]" ||
                   n == "timestamp_granularities" || n == "chunking_strategy" || n == "include[]" ||
                   n == "include" || n == "known_speaker_names[]" ||
                   n == "known_speaker_references[]") {
            if (!p.data.empty())
                return bad("'" + n + "' is not supported by this server", n,
                           "unsupported_parameter");
        } else {
            return bad("unknown field '" + n + "'", n, "unknown_parameter");
        }
    }
    if (!file) return bad("the 'file' field is required", "file");
    if (r.stream && r.format == TranscriptionRequest::kVerboseJson)
        return bad("verbose_json cannot be streamed", "response_format", "unsupported_value");
    if (file->data.size() > lim.max_audio_bytes)
        return bad("'file' is larger than " + std::to_string(lim.max_audio_bytes) + " bytes",
                   "file", "file_too_large");
    auto a = decode_wav(file->data, lim, "file");
    if (auto* e = std::get_if<ApiError>(&a)) return *e;
    r.audio = std::move(std::get<Audio>(a));
    return r;
}

std::variant<SpeechRequest, ApiError> parse_speech(const json& body,
                                                   const std::vector<std::string>& voices,
                                                   const Limits& lim) {
    SpeechRequest r;
    for (auto it = body.begin(); it != body.end(); ++it) {
        static const char* known[] = {"model", "input",        "voice",        "response_format",
                                      "speed", "instructions", "stream_format"};
        if (std::none_of(std::begin(known), std::end(known),
                         [&](const char* k) { return it.key() == k; }))
            return bad("unknown field '" + it.key() + "'", it.key(), "unknown_parameter");
    }
    if (auto e = get_string(body, "model", &r.model, "model", 256)) return *e;
    if (!field(body, "input")) return bad("'input' is required", "input");
    if (auto e = get_string(body, "input", &r.input, "input",
                            std::min<size_t>(lim.max_text_bytes, 4096)))
        return *e;
    if (r.input.empty()) return bad("'input' is empty", "input");
    if (!field(body, "voice")) return bad("'voice' is required (" + join(voices) + ")", "voice");
    const json& v = body["voice"];
    if (!v.is_string())
        return bad("'voice' must be one of " + join(voices), "voice", "unsupported_value");
    r.voice = v.get<std::string>();
    if (!contains(voices, r.voice))
        return bad("voice '" + r.voice + "' is not one of " + join(voices), "voice",
                   "unsupported_value");
    std::string fmt = "wav";
    if (auto e = get_string(body, "response_format", &fmt, "response_format", 32)) return *e;
    if (fmt == "wav")
        r.format = SpeechRequest::kWav;
    else if (fmt == "pcm")
        r.format = SpeechRequest::kPcm;
    else
        return bad("response_format '" + fmt + "' is not supported (wav, pcm)", "response_format",
                   "unsupported_value");
    double speed = 1.0;
    if (auto e = get_number(body, "speed", &speed, "speed", 0.25, 4.0)) return *e;
    if (speed != 1.0)
        return bad("'speed' other than 1.0 is not supported", "speed", "unsupported_value");
    std::string instructions;
    if (auto e =
            get_string(body, "instructions", &instructions, "instructions", lim.max_text_bytes))
        return *e;
    if (!instructions.empty())
        return bad("'instructions' is not supported for speech (the voice is chosen by 'voice')",
                   "instructions", "unsupported_parameter");
    std::string sf = "audio";
    if (auto e = get_string(body, "stream_format", &sf, "stream_format", 32)) return *e;
    if (sf == "audio")
        r.stream_format = SpeechRequest::kAudio;
    else if (sf == "sse")
        r.stream_format = SpeechRequest::kSse;
    else
        return bad("stream_format '" + sf + "' is not supported (audio, sse)", "stream_format",
                   "unsupported_value");
    return r;
}

std::variant<ChatRequest, ApiError> parse_chat(const json& body,
                                               const std::vector<std::string>& voices,
                                               const Limits& lim) {
    ChatRequest r;
    if (auto e = refuse_fields(body, {"tools", "tool_choice", "functions", "function_call",
                                      "response_format", "logprobs", "top_logprobs", "logit_bias",
                                      "prediction", "web_search_options", "parallel_tool_calls"}))
        return *e;
    if (auto e = get_string(body, "model", &r.model, "model", 256)) return *e;
    double n = 1;
    if (auto e = get_number(body, "n", &n, "n", 1, 128)) return *e;
    if (n != 1) return bad("'n' other than 1 is not supported", "n", "unsupported_value");
    if (const json* stop = field(body, "stop"); stop && !(stop->is_array() && stop->empty()))
        return bad("'stop' is not supported by this server", "stop", "unsupported_parameter");
    if (auto e = get_bool(body, "stream", &r.stream, "stream")) return *e;
    if (const json* so = field(body, "stream_options")) {
        if (!so->is_object()) return bad("'stream_options' must be an object", "stream_options");
        if (auto e =
                get_bool(*so, "include_usage", &r.include_usage, "stream_options.include_usage"))
            return *e;
    }
    double t = -1;
    if (auto e = get_number(body, "temperature", &t, "temperature", 0, 2)) return *e;
    r.temperature = float(t);
    double mt = 0;
    if (auto e = get_number(body, "max_tokens", &mt, "max_tokens", 1, 1 << 20)) return *e;
    if (auto e =
            get_number(body, "max_completion_tokens", &mt, "max_completion_tokens", 1, 1 << 20))
        return *e;
    r.max_tokens = int(mt);
    double seed = 0;
    if (auto e = get_number(body, "seed", &seed, "seed", -9.2e18, 9.2e18)) return *e;
    r.seed = uint64_t(int64_t(seed));
    // modalities
    if (const json* m = field(body, "modalities")) {
        if (!m->is_array()) return bad("'modalities' must be an array", "modalities");
        bool text = false;
        for (const auto& x : *m) {
            if (x == "text")
                text = true;
            else if (x == "audio")
                r.audio_out = true;
            else
                return bad("modality " + x.dump() + " is not supported (text, audio)", "modalities",
                           "unsupported_value");
        }
        if (!text)
            return bad(
                "'modalities' must include \"text\" (audio answers come with their transcript)",
                "modalities", "unsupported_value");
    }
    if (const json* a = field(body, "audio")) {
        if (!r.audio_out)
            return bad("'audio' is given but 'modalities' does not include \"audio\"", "audio");
        if (!a->is_object()) return bad("'audio' must be an object", "audio");
        if (!field(*a, "voice"))
            return bad("'audio.voice' is required (" + join(voices) + ")", "audio.voice");
        if (auto e = get_string(*a, "voice", &r.voice, "audio.voice", 64)) return *e;
        if (!contains(voices, r.voice))
            return bad("voice '" + r.voice + "' is not one of " + join(voices), "audio.voice",
                       "unsupported_value");
        std::string fmt = "wav";
        if (auto e = get_string(*a, "format", &fmt, "audio.format", 32)) return *e;
        if (fmt == "wav")
            r.audio_format = ChatRequest::kWav;
        else if (fmt == "pcm16")
            r.audio_format = ChatRequest::kPcm16;
        else
            return bad("audio format '" + fmt + "' is not supported (wav, pcm16)", "audio.format",
                       "unsupported_value");
        if (r.stream && r.audio_format != ChatRequest::kPcm16)
            return bad("streamed audio must use format pcm16", "audio.format", "unsupported_value");
    } else if (r.audio_out) {
        return bad("'audio' ({voice, format}) is required when modalities include \"audio\"",
                   "audio");
    }
    // messages
    const json* msgs = field(body, "messages");
    if (!msgs || !msgs->is_array() || msgs->empty())
        return bad("'messages' must be a non-empty array", "messages");
    if (msgs->size() > lim.max_messages)
        return bad("more than " + std::to_string(lim.max_messages) + " messages", "messages");
    size_t audio_bytes = 0;
    for (size_t i = 0; i < msgs->size(); ++i) {
        const json& m = (*msgs)[i];
        const std::string at = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) return bad(at + " must be an object", at);
        ChatMessage cm;
        if (auto e = get_string(m, "role", &cm.role, at + ".role", 32)) return *e;
        if (cm.role == "developer") cm.role = "system";
        if (cm.role != "system" && cm.role != "user" && cm.role != "assistant")
            return bad(at + ".role '" + cm.role +
                           "' is not supported (system, developer, user, assistant)",
                       at + ".role", "unsupported_value");
        if (auto e =
                refuse_fields(m, {"tool_calls", "function_call", "tool_call_id", "name"}, at + "."))
            return *e;
        if (field(m, "audio"))
            return bad(at + ".audio: earlier answers' audio is not kept by this server; send the "
                            "assistant message's transcript as its content",
                       at + ".audio", "unsupported_parameter");
        const json* c = field(m, "content");
        if (!c) return bad(at + ".content is required", at + ".content");
        if (c->is_string()) {
            const auto& s = c->get_ref<const std::string&>();
            if (s.size() > lim.max_text_bytes || !valid_utf8(s))
                return bad(at + ".content is too long or not UTF-8", at + ".content");
            cm.parts.push_back({s, {}});
        } else if (c->is_array()) {
            for (size_t k = 0; k < c->size(); ++k) {
                const json& p = (*c)[k];
                const std::string pat = at + ".content[" + std::to_string(k) + "]";
                if (!p.is_object()) return bad(pat + " must be an object", pat);
                std::string type;
                if (auto e = get_string(p, "type", &type, pat + ".type", 32)) return *e;
                if (type == "text") {
                    MessagePart mp;
                    if (!field(p, "text")) return bad(pat + ".text is required", pat + ".text");
                    if (auto e = get_string(p, "text", &mp.text, pat + ".text", lim.max_text_bytes))
                        return *e;
                    cm.parts.push_back(std::move(mp));
                } else if (type == "input_audio") {
                    if (cm.role != "user")
                        return bad(pat + ": input_audio is allowed in user messages only", pat);
                    const json* ia = field(p, "input_audio");
                    if (!ia || !ia->is_object())
                        return bad(pat + ".input_audio must be an object", pat + ".input_audio");
                    std::string fmt, data;
                    if (auto e = get_string(*ia, "format", &fmt, pat + ".input_audio.format", 32))
                        return *e;
                    if (fmt != "wav")
                        return bad(pat + ".input_audio.format '" + fmt + "' is not supported (wav)",
                                   pat + ".input_audio.format", "unsupported_value");
                    const json* d = field(*ia, "data");
                    if (!d || !d->is_string())
                        return bad(pat + ".input_audio.data must be a base64 string",
                                   pat + ".input_audio.data");
                    const auto& ds = d->get_ref<const std::string&>();
                    auto raw = base64_decode(
                        ds, lim.max_audio_bytes - std::min(audio_bytes, lim.max_audio_bytes));
                    if (!raw)
                        return bad(pat + ".input_audio.data is not valid base64 or larger than " +
                                       std::to_string(lim.max_audio_bytes) + " bytes in all",
                                   pat + ".input_audio.data", "invalid_audio");
                    audio_bytes += raw->size();
                    auto a = decode_wav(*raw, lim, pat + ".input_audio.data");
                    if (auto* e = std::get_if<ApiError>(&a)) return *e;
                    MessagePart mp;
                    mp.audio = std::move(std::get<Audio>(a));
                    cm.parts.push_back(std::move(mp));
                } else {
                    return bad(pat + ".type '" + type + "' is not supported (text, input_audio)",
                               pat + ".type", "unsupported_value");
                }
            }
        } else {
            return bad(at + ".content must be a string or an array of parts", at + ".content");
        }
        r.messages.push_back(std::move(cm));
    }
    if (r.messages.back().role != "user")
        return bad("the last message must be the user's", "messages");
    return r;
}

// ---- realtime
// -------------------------------------------------------------------------------------

namespace {

std::optional<ApiError> parse_turn_detection(const json& td, const std::string& at,
                                             TurnDetection* out) {
    TurnDetection d;
    if (td.is_null()) {
        d.server_vad = false;
        *out = d;
        return std::nullopt;
    }
    if (!td.is_object()) return bad(at + " must be an object or null", at);
    std::string type = "server_vad";
    if (auto e = get_string(td, "type", &type, at + ".type", 32)) return *e;
    if (type == "none") {
        d.server_vad = false;
        *out = d;
        return std::nullopt;
    }
    if (type != "server_vad")
        return bad(at + ".type '" + type + "' is not supported (server_vad, none)", at + ".type",
                   "unsupported_value");
    double v = d.threshold;
    if (auto e = get_number(td, "threshold", &v, at + ".threshold", 0, 1)) return *e;
    d.threshold = float(v);
    v = d.prefix_padding_ms;
    if (auto e = get_number(td, "prefix_padding_ms", &v, at + ".prefix_padding_ms", 0, 10000))
        return *e;
    d.prefix_padding_ms = int(v);
    v = d.silence_duration_ms;
    if (auto e = get_number(td, "silence_duration_ms", &v, at + ".silence_duration_ms", 0, 10000))
        return *e;
    d.silence_duration_ms = int(v);
    if (auto e = get_bool(td, "create_response", &d.create_response, at + ".create_response"))
        return *e;
    if (auto e =
            get_bool(td, "interrupt_response", &d.interrupt_response, at + ".interrupt_response"))
        return *e;
    if (field(td, "idle_timeout_ms"))
        return bad(at + ".idle_timeout_ms is not supported", at + ".idle_timeout_ms",
                   "unsupported_parameter");
    *out = d;
    return std::nullopt;
}

std::optional<ApiError> parse_audio_format(const json& f, const std::string& at) {
    if (f.is_string()) {
        if (f == "pcm16") return std::nullopt;
        return bad(at + " " + f.dump() + " is not supported (pcm16 at 24 kHz)", at,
                   "unsupported_value");
    }
    if (!f.is_object()) return bad(at + " must be an object", at);
    std::string type;
    if (auto e = get_string(f, "type", &type, at + ".type", 32)) return *e;
    if (type != "audio/pcm")
        return bad(at + ".type '" + type + "' is not supported (audio/pcm)", at + ".type",
                   "unsupported_value");
    double rate = 24000;
    if (auto e = get_number(f, "rate", &rate, at + ".rate", 0, 1e6)) return *e;
    if (rate != 24000) return bad(at + ".rate must be 24000", at + ".rate", "unsupported_value");
    return std::nullopt;
}

std::optional<ApiError> parse_modalities(const json& m, const std::string& at, bool* audio_out) {
    if (!m.is_array() || m.empty()) return bad(at + " must be a non-empty array", at);
    bool audio = false, text = false;
    for (const auto& x : m) {
        if (x == "audio")
            audio = true;
        else if (x == "text")
            text = true;
        else
            return bad(at + ": modality " + x.dump() + " is not supported (audio, text)", at,
                       "unsupported_value");
    }
    (void)text;
    *audio_out = audio;
    return std::nullopt;
}

std::optional<ApiError> parse_max_tokens(const json& obj, const char* key, const std::string& at,
                                         std::optional<int>* out) {
    const json* f = field(obj, key);
    if (!f) return std::nullopt;
    if (*f == "inf") {
        *out = 0;
        return std::nullopt;
    }
    if (!f->is_number_integer() || f->get<int64_t>() < 1 || f->get<int64_t>() > 4096)
        return bad(at + " must be an integer 1..4096 or \"inf\"", at);
    *out = f->get<int>();
    return std::nullopt;
}

// session.update's session / response.create's response.
std::optional<ApiError> parse_session(const json& s, const std::string& at, bool is_response,
                                      const std::vector<std::string>& voices, const Limits& lim,
                                      SessionUpdate* out) {
    if (!s.is_object()) return bad(at + " must be an object", at);
    for (auto it = s.begin(); it != s.end(); ++it) {
        static const char* known[] = {"type",
                                      "model",
                                      "instructions",
                                      "voice",
                                      "output_modalities",
                                      "modalities",
                                      "audio",
                                      "turn_detection",
                                      "input_audio_format",
                                      "output_audio_format",
                                      "max_output_tokens",
                                      "max_response_output_tokens",
                                      "temperature",
                                      "conversation",
                                      "metadata",
                                      "input_audio_transcription",
                                      "tools",
                                      "tool_choice",
                                      "include",
                                      "tracing",
                                      "truncation",
                                      "prompt",
                                      "input_audio_noise_reduction",
                                      "speed",
                                      "object",
                                      "id",
                                      "expires_at"};
        if (std::none_of(std::begin(known), std::end(known),
                         [&](const char* k) { return it.key() == k; }))
            return bad(at + "." + it.key() + " is not a known field", at + "." + it.key(),
                       "unknown_parameter");
    }
    if (auto e = refuse_fields(s,
                               {"input_audio_transcription", "tools", "tracing", "prompt",
                                "input_audio_noise_reduction"},
                               at + "."))
        return *e;
    if (const json* tc = field(s, "tool_choice"); tc && *tc != "auto" && *tc != "none")
        return bad(at + ".tool_choice is not supported", at + ".tool_choice",
                   "unsupported_parameter");
    if (const json* c = field(s, "conversation"); c && is_response && *c != "auto")
        return bad(at + ".conversation: only \"auto\" (the session's conversation) is supported",
                   at + ".conversation", "unsupported_value");
    if (const json* sp = field(s, "speed"); sp && !(sp->is_number() && sp->get<double>() == 1.0))
        return bad(at + ".speed other than 1.0 is not supported", at + ".speed",
                   "unsupported_value");
    if (const json* f = field(s, "instructions")) {
        std::string v;
        if (auto e = get_string(s, "instructions", &v, at + ".instructions", lim.max_text_bytes))
            return *e;
        out->instructions = v;
        (void)f;
    }
    auto take_voice = [&](const json& obj, const std::string& p) -> std::optional<ApiError> {
        if (!field(obj, "voice")) return std::nullopt;
        std::string v;
        if (auto e = get_string(obj, "voice", &v, p, 64)) return *e;
        if (!contains(voices, v))
            return bad("voice '" + v + "' is not one of " + join(voices), p, "unsupported_value");
        out->voice = v;
        return std::nullopt;
    };
    if (auto e = take_voice(s, at + ".voice")) return *e;
    bool audio_out = true;
    if (const json* m = field(s, "output_modalities")) {
        if (auto e = parse_modalities(*m, at + ".output_modalities", &audio_out)) return *e;
        out->audio_out = audio_out;
    }
    if (const json* m = field(s, "modalities")) {
        if (auto e = parse_modalities(*m, at + ".modalities", &audio_out)) return *e;
        out->audio_out = audio_out;
    }
    if (const json* f = field(s, "input_audio_format"))
        if (auto e = parse_audio_format(*f, at + ".input_audio_format")) return *e;
    if (const json* f = field(s, "output_audio_format"))
        if (auto e = parse_audio_format(*f, at + ".output_audio_format")) return *e;
    if (s.contains("turn_detection")) {
        if (is_response)
            return bad(at + ".turn_detection belongs in session.update", at + ".turn_detection");
        TurnDetection td;
        if (auto e = parse_turn_detection(s["turn_detection"], at + ".turn_detection", &td))
            return *e;
        out->turn_detection = td;
    }
    if (const json* a = field(s, "audio")) {
        if (!a->is_object()) return bad(at + ".audio must be an object", at + ".audio");
        if (const json* in = field(*a, "input")) {
            if (!in->is_object())
                return bad(at + ".audio.input must be an object", at + ".audio.input");
            if (auto e =
                    refuse_fields(*in, {"transcription", "noise_reduction"}, at + ".audio.input."))
                return *e;
            if (const json* f = field(*in, "format"))
                if (auto e = parse_audio_format(*f, at + ".audio.input.format")) return *e;
            if (in->contains("turn_detection")) {
                TurnDetection td;
                if (auto e = parse_turn_detection((*in)["turn_detection"],
                                                  at + ".audio.input.turn_detection", &td))
                    return *e;
                out->turn_detection = td;
            }
        }
        if (const json* o = field(*a, "output")) {
            if (!o->is_object())
                return bad(at + ".audio.output must be an object", at + ".audio.output");
            if (const json* f = field(*o, "format"))
                if (auto e = parse_audio_format(*f, at + ".audio.output.format")) return *e;
            if (auto e = take_voice(*o, at + ".audio.output.voice")) return *e;
            if (const json* sp = field(*o, "speed");
                sp && !(sp->is_number() && sp->get<double>() == 1.0))
                return bad(at + ".audio.output.speed other than 1.0 is not supported",
                           at + ".audio.output.speed", "unsupported_value");
        }
    }
    if (auto e = parse_max_tokens(s, "max_output_tokens", at + ".max_output_tokens",
                                  &out->max_output_tokens))
        return *e;
    if (auto e = parse_max_tokens(s, "max_response_output_tokens",
                                  at + ".max_response_output_tokens", &out->max_output_tokens))
        return *e;
    return std::nullopt;
}

}  // namespace

std::variant<ClientEvent, ClientEventError> parse_client_event(
    std::string_view bytes, const std::vector<std::string>& voices, const Limits& lim) {
    ClientEvent ev;
    auto fail = [&](ApiError e) { return ClientEventError{std::move(e), ev.event_id}; };
    auto parsed = parse_json_object(bytes, lim.max_json_depth, "event");
    if (auto* e = std::get_if<ApiError>(&parsed)) return fail(*e);
    const json& j = std::get<json>(parsed);
    if (const json* id = field(j, "event_id")) {
        if (!id->is_string() || id->get_ref<const std::string&>().size() > 128 ||
            !valid_utf8(id->get_ref<const std::string&>()))
            return fail(bad("'event_id' must be a string of at most 128 bytes", "event_id"));
        ev.event_id = id->get<std::string>();
    }
    std::string type;
    if (auto e = get_string(j, "type", &type, "type", 64)) return fail(*e);
    if (type.empty()) return fail(bad("'type' is required", "type", "missing_required_parameter"));

    if (type == "session.update") {
        ev.type = ClientEvent::kSessionUpdate;
        const json* s = field(j, "session");
        if (!s) return fail(bad("'session' is required", "session"));
        if (auto e = parse_session(*s, "session", false, voices, lim, &ev.session)) return fail(*e);
    } else if (type == "input_audio_buffer.append") {
        ev.type = ClientEvent::kAppend;
        const json* a = field(j, "audio");
        if (!a || !a->is_string()) return fail(bad("'audio' must be a base64 string", "audio"));
        auto raw = base64_decode(a->get_ref<const std::string&>(), lim.max_audio_bytes);
        if (!raw)
            return fail(bad("'audio' is not valid base64 or decodes to more than " +
                                std::to_string(lim.max_audio_bytes) + " bytes",
                            "audio", "invalid_audio"));
        auto pcm = pcm16_to_float(*raw, "audio");
        if (auto* e = std::get_if<ApiError>(&pcm)) return fail(*e);
        ev.audio = std::move(std::get<std::vector<float>>(pcm));
    } else if (type == "input_audio_buffer.commit") {
        ev.type = ClientEvent::kCommit;
    } else if (type == "input_audio_buffer.clear") {
        ev.type = ClientEvent::kClear;
    } else if (type == "conversation.item.create") {
        ev.type = ClientEvent::kItemCreate;
        if (const json* prev = field(j, "previous_item_id"); prev && *prev != "root")
            return fail(
                bad("'previous_item_id': items can only be added at the end of the "
                    "conversation",
                    "previous_item_id", "unsupported_value"));
        const json* item = field(j, "item");
        if (!item || !item->is_object()) return fail(bad("'item' must be an object", "item"));
        std::string itype = "message";
        if (auto e = get_string(*item, "type", &itype, "item.type", 32)) return fail(*e);
        if (itype != "message")
            return fail(bad("item.type '" + itype + "' is not supported (message)", "item.type",
                            "unsupported_value"));
        if (auto e = get_string(*item, "id", &ev.item_id, "item.id", 64)) return fail(*e);
        if (auto e = get_string(*item, "role", &ev.role, "item.role", 32)) return fail(*e);
        if (ev.role != "user" && ev.role != "system" && ev.role != "assistant")
            return fail(bad("item.role must be user, system or assistant", "item.role"));
        const json* c = field(*item, "content");
        if (!c || !c->is_array() || c->empty())
            return fail(bad("item.content must be a non-empty array", "item.content"));
        if (c->size() > 64) return fail(bad("item.content has more than 64 parts", "item.content"));
        size_t audio_bytes = 0;
        for (size_t k = 0; k < c->size(); ++k) {
            const json& p = (*c)[k];
            const std::string at = "item.content[" + std::to_string(k) + "]";
            if (!p.is_object()) return fail(bad(at + " must be an object", at));
            std::string ptype;
            if (auto e = get_string(p, "type", &ptype, at + ".type", 32)) return fail(*e);
            RtContent rc;
            if (ptype == "input_text" || ptype == "text" || ptype == "output_text") {
                if (!field(p, "text")) return fail(bad(at + ".text is required", at + ".text"));
                if (auto e = get_string(p, "text", &rc.text, at + ".text", lim.max_text_bytes))
                    return fail(*e);
            } else if (ptype == "input_audio") {
                if (ev.role != "user")
                    return fail(bad(at + ": input_audio is allowed in user items only", at));
                const json* a = field(p, "audio");
                if (!a || !a->is_string())
                    return fail(bad(at + ".audio must be a base64 string", at + ".audio"));
                auto raw =
                    base64_decode(a->get_ref<const std::string&>(),
                                  lim.max_audio_bytes - std::min(audio_bytes, lim.max_audio_bytes));
                if (!raw)
                    return fail(bad(at + ".audio is not valid base64 or too large", at + ".audio",
                                    "invalid_audio"));
                audio_bytes += raw->size();
                auto pcm = pcm16_to_float(*raw, at + ".audio");
                if (auto* e = std::get_if<ApiError>(&pcm)) return fail(*e);
                rc.pcm = std::move(std::get<std::vector<float>>(pcm));
                rc.is_audio = true;
            } else {
                return fail(
                    bad(at + ".type '" + ptype +
                            "' is not supported (input_text, text, output_text, input_audio)",
                        at + ".type", "unsupported_value"));
            }
            ev.content.push_back(std::move(rc));
        }
    } else if (type == "response.create") {
        ev.type = ClientEvent::kResponseCreate;
        if (const json* r = field(j, "response"))
            if (auto e = parse_session(*r, "response", true, voices, lim, &ev.session))
                return fail(*e);
    } else if (type == "response.cancel") {
        ev.type = ClientEvent::kResponseCancel;
    } else if (type == "conversation.item.truncate") {
        ev.type = ClientEvent::kTruncate;
        if (!field(j, "item_id")) return fail(bad("'item_id' is required", "item_id"));
        if (auto e = get_string(j, "item_id", &ev.item_id, "item_id", 64)) return fail(*e);
        double ci = 0, ms = -1;
        if (auto e = get_number(j, "content_index", &ci, "content_index", 0, 1 << 20))
            return fail(*e);
        ev.content_index = int(ci);
        if (!field(j, "audio_end_ms"))
            return fail(bad("'audio_end_ms' is required", "audio_end_ms"));
        if (auto e = get_number(j, "audio_end_ms", &ms, "audio_end_ms", 0, 1e9)) return fail(*e);
        ev.audio_end_ms = int64_t(ms);
    } else {
        return fail(bad("unknown event type '" + type + "'", "type", "unknown_event_type"));
    }
    return ev;
}

bool valid_utf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        int n;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (int k = 1; k <= n; ++k) {
            if (i + k >= s.size()) return false;
            unsigned char d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xC0) != 0x80) return false;
            cp = cp << 6 | (d & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

}  // namespace voxrt::server
