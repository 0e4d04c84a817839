// Incremental detokenization: text for a stream of token ids, one piece per token, such that the
// pieces concatenate to exactly Tokenizer::decode() of the whole sequence.
//
// Decoding each token on its own is wrong for byte-level vocabularies: a character can be split
// across tokens (an accent, a CJK character, an emoji), and each half alone decodes to U+FFFD.
// StreamDecoder keeps the tokens since the last point where the decoded text ended on a complete
// character (plus one token of left context, so that decoders that strip a leading space see the
// same input as the whole decode) and returns only the text that no later token can change:
//
//   * text that ends in U+FFFD is held back from that U+FFFD on, because the replacement may be a
//     truncated sequence that the next token completes (a U+FFFD that stays one is emitted later,
//     by the push() that follows it or by finish());
//   * after a byte-fallback token ("<0xNN>") nothing new is emitted until a token of another kind
//     ends the run (skipped special tokens do not), because the whole run is valid UTF-8 or turns
//     into one U+FFFD per byte token.
//
// Every piece is valid UTF-8 (a substring of the decoder's output cut at character boundaries).
// Exactness rests on the decoder being prefix-stable at a complete character, which holds for
// every decoder the tokenizer supports (ByteLevel, ByteFallback, Fuse, Strip, Replace, none). One
// exception is bounded on purpose: if kMaxHeldTokens tokens in a row never end a character (a
// model emitting nothing but stray bytes), the held text is flushed as it decodes then, so that the
// cost of a push stays bounded; the flushed tail may differ from the whole decode there.
//
// Not thread-safe: one StreamDecoder per stream. The tokenizer must outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace voxrt::text {

class StreamDecoder {
public:
    // Tokens held before a forced flush (see above).
    static constexpr size_t kMaxHeldTokens = 256;

    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);

    // Appends one token; returns the text it completes (often empty while a character is split).
    std::string push(int32_t token);
    // Ends the stream: returns what is still held (an incomplete sequence becomes U+FFFD, as in the
    // whole decode) and resets the decoder for a new stream.
    std::string finish();
    // Drops whatever is held and starts a new stream.
    void reset();

private:
    bool is_byte_fallback(int32_t token) const;
    // Keeps only the last token the decoder sees as context, its text counted as emitted.
    void restart_after_last();

    const Tokenizer* tokenizer_;
    bool skip_special_;
    std::vector<int32_t> window_;   // [context token?] + tokens not yet settled
    size_t emitted_ = 0;            // bytes of decode(window_) already returned (or context)
    bool in_fallback_run_ = false;  // the last token the decoder sees is a byte-fallback token
};

}  // namespace voxrt::text
