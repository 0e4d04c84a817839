// Native reader for Hugging Face `tokenizer.json` files of the kind LFM2 / LFM2.5 ship: byte-level
// BPE with a Split(regex) + ByteLevel pre-tokenizer (see docs/tokenizer.md for the field map).
//
// Semantics follow HF tokenizers 0.23:
//   encode(text)  == tokenizer.encode(text, add_special_tokens=False).ids
//                    (added tokens are split out first, then normalizer, pre-tokenizer, BPE; the
//                    post-processor is not applied, so no BOS is added)
//   decode(ids)   == tokenizer.decode(ids, skip_special_tokens=skip_special)
//                    (the tokenizers-level decode; transformers' optional
//                    clean_up_tokenization_spaces pass is not applied)
//
// Input text that is not valid UTF-8 (which HF cannot receive: Python str is always valid) is
// first repaired by replacing each maximal ill-formed subsequence with U+FFFD, then encoded.
//
// Everything in tokenizer.json is untrusted: load() validates ids, merges, byte coverage and
// size limits and returns an error Status naming the field instead of crashing. Fields this
// implementation does not support (e.g. an NFC normalizer, a WordPiece model, truncation) are
// rejected at load rather than silently ignored.
//
// Thread-safety: a Tokenizer is immutable after load(); all const methods may be called
// concurrently. Copies are cheap and share the loaded tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace voxrt::text {

// Hostile-file limits (see docs/tokenizer.md and docs/reliability.md). The published LFM2.5 file
// is 4.73 MB with 64,400 ids and about 300,000 JSON values; the JSON tree of a file at the limits
// takes a few hundred MB at most (tested).
inline constexpr size_t kMaxTokenizerFileBytes = size_t{64} << 20;
inline constexpr int kMaxJsonDepth = 64;
// JSON values and object keys, counted (as an upper bound) before parsing.
inline constexpr size_t kMaxJsonValues = size_t{1} << 22;
inline constexpr size_t kMaxAddedTokenBytes = 4096;
// All added tokens' content together: the matcher's byte trie takes about 64 bytes a byte of it
// (the published file has 509 added tokens, under 16 KB).
inline constexpr size_t kMaxAddedTokenTotalBytes = size_t{1} << 20;
// The longest text encode_checked() takes by default (TTS input, a chat message): 512 KiB, more
// than the longest context holds (131,072 tokens of at least one byte, ~4 bytes on average).
inline constexpr size_t kMaxTextBytes = size_t{512} << 10;

class Tokenizer {
public:
    // Reads and validates a tokenizer.json. Errors: kNotFound (missing file), kInvalidFile
    // (malformed or inconsistent content), kUnsupported (a valid feature we do not implement).
    static Expected<Tokenizer> load(const std::string& tokenizer_json_path);
    // Same, from the file's contents (`origin` names it in error messages).
    static Expected<Tokenizer> load_from_string(std::string_view json_text,
                                                const std::string& origin = "tokenizer.json");

    // Token ids of `text`, as HF encode(text, add_special_tokens=False). Never fails: invalid
    // UTF-8 is repaired (see above); if a regex hits its match limit, the rest of that piece is
    // tokenized as one pre-token (counted in regex_failures()).
    std::vector<int32_t> encode(std::string_view text) const;
    // encode(text) for text from a user (a TTS input, a chat message): refused with kOutOfRange
    // and a message naming `field` when it is longer than max_bytes, before any work is done.
    Expected<std::vector<int32_t>> encode_checked(std::string_view text,
                                                  size_t max_bytes = kMaxTextBytes,
                                                  const std::string& field = "text") const;

    // Text of `ids`, as HF decode(ids, skip_special_tokens=skip_special). Ids outside the
    // vocabulary are skipped, as HF does. Output is always valid UTF-8.
    std::string decode(const int32_t* ids, size_t n, bool skip_special) const;
    std::string decode(const std::vector<int32_t>& ids, bool skip_special) const {
        return decode(ids.data(), ids.size(), skip_special);
    }

    // Id of a token string (added tokens first, then the model vocab), as HF token_to_id.
    std::optional<int32_t> token_to_id(std::string_view token) const;
    // Token string of an id (the vocab form, e.g. "Ġthe"), or nullopt.
    std::optional<std::string> id_to_token(int32_t id) const;
    // True if id is an added token marked "special": true.
    bool is_special(int32_t id) const;

    // Number of ids; all ids 0..vocab_size()-1 are valid (contiguity is checked at load).
    int32_t vocab_size() const;

    // Number of regex match-limit failures seen by encode() so far (diagnostics; expected 0).
    uint64_t regex_failures() const;

private:
    struct Impl;
    std::shared_ptr<const Impl> impl_;
};

}  // namespace voxrt::text
