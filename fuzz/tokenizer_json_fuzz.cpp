// tokenizer.json: Tokenizer::load_from_string on the bytes; a file that loads must then encode and
// decode without failing, with every id inside the vocabulary and valid UTF-8 out.
#include <string>
#include <string_view>

#include "common.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

using namespace voxrt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    auto tok = text::Tokenizer::load_from_string(text, "fuzz/tokenizer.json");
    if (!tok.is_ok()) {
        if (tok.status().message().find("fuzz/tokenizer.json") == std::string::npos)
            fuzz::fail("error does not name the file", tok.status().message());
        return 0;
    }
    // The file's own first bytes and a few fixed strings as input text.
    const std::string_view inputs[] = {text.substr(0, 256), "Hello world! 123 ", "\xff\xfe a\n\n b",
                                       "<|im_start|>user\n"};
    for (std::string_view in : inputs) {
        const std::vector<int32_t> ids = tok->encode(in);
        for (int32_t id : ids)
            if (id < 0 || id >= tok->vocab_size())
                fuzz::fail("encode produced an id outside the vocabulary", std::to_string(id));
        for (bool skip : {false, true})
            if (!text::utf8_is_valid(tok->decode(ids, skip)))
                fuzz::fail("decode produced invalid UTF-8", "");
    }
    return 0;
}
