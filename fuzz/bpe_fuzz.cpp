// The BPE model and the pre-tokenizer (Split regex + ByteLevel) of the LFM2-style test tokenizer
// on arbitrary bytes: encode never fails, every id is in the vocabulary, decode gives valid UTF-8,
// and for valid UTF-8 input decode(encode(text)) is the text again. The same bytes read as ids go
// through decode and the streaming decoder.
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "common.h"
#include "text/stream_decoder.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

using namespace voxrt;

namespace {

const text::Tokenizer& tokenizer() {
    static const text::Tokenizer tok = [] {
        auto t = text::Tokenizer::load(VOXRT_TEST_DATA_DIR "/tokenizer/tiny/tokenizer.json");
        if (!t.is_ok()) fuzz::fail("cannot load the test tokenizer", t.status().message());
        return *t;
    }();
    return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const text::Tokenizer& tok = tokenizer();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::vector<int32_t> ids = tok.encode(text);
    for (int32_t id : ids)
        if (id < 0 || id >= tok.vocab_size())
            fuzz::fail("encode produced an id outside the vocabulary", std::to_string(id));
    const std::string back = tok.decode(ids, false);
    if (!text::utf8_is_valid(back)) fuzz::fail("decode produced invalid UTF-8", "");
    if (back != text::utf8_lossy(text))
        fuzz::fail("decode(encode(text)) differs from the (repaired) text", back);
    auto checked = tok.encode_checked(text, 64, "fuzz.text");
    if (checked.is_ok() != (size <= 64) || (checked.is_ok() && *checked != ids))
        fuzz::fail("encode_checked disagrees with encode and its limit", "");

    // The bytes as token ids (any int32, most out of range).
    std::vector<int32_t> raw(size / 4);
    if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
    for (int32_t& id : raw)
        if (data[0] & 1) id = static_cast<int32_t>(static_cast<uint32_t>(id) % 70000u);
    for (bool skip : {false, true}) {
        const std::string whole = tok.decode(raw, skip);
        if (!text::utf8_is_valid(whole)) fuzz::fail("decode of ids produced invalid UTF-8", "");
        text::StreamDecoder sd(tok, skip);
        std::string streamed;
        for (int32_t id : raw) streamed += sd.push(id);
        streamed += sd.finish();
        if (!text::utf8_is_valid(streamed))
            fuzz::fail("streaming decode produced invalid UTF-8", "");
    }
    return 0;
}
