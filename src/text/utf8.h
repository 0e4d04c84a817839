// UTF-8 helpers for the tokenizer: strict decoding, lossy repair, and the GPT-2 byte-level
// alphabet (the byte <-> code point map used by the ByteLevel pre-tokenizer and decoder).
//
// All functions are pure and thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace voxrt::text {

// Decodes one UTF-8 sequence starting at s[i] (i < s.size()). On success stores the code point in
// *cp and returns its length in bytes (1..4). Returns 0 for an ill-formed sequence: a stray
// continuation byte, a truncated sequence, an overlong form, a surrogate (U+D800..U+DFFF) or a
// value above U+10FFFF.
size_t utf8_decode(std::string_view s, size_t i, uint32_t* cp);

// Length of the maximal prefix of s[i..] that is a *truncated but otherwise valid* UTF-8
// sequence (the "maximal subpart" of Unicode §3.9 / WHATWG). Always >= 1 when i < s.size().
// Used to replace each ill-formed subsequence with exactly one U+FFFD, as Rust's
// String::from_utf8_lossy (and therefore HF tokenizers' ByteLevel decoder) does.
size_t utf8_invalid_prefix_len(std::string_view s, size_t i);

// True if s is entirely well-formed UTF-8.
bool utf8_is_valid(std::string_view s);

// Copy of s with every maximal ill-formed subsequence replaced by U+FFFD (EF BF BD).
// Identical to Rust's String::from_utf8_lossy.
std::string utf8_lossy(std::string_view s);

// Appends the UTF-8 encoding of cp (must be a valid scalar value) to out.
void utf8_append(std::string& out, uint32_t cp);

// Unicode White_Space property (the set Oniguruma's and Rust regex's \s match).
bool is_unicode_white_space(uint32_t cp);

// GPT-2 byte-level alphabet: byte b is represented by code point byte_to_code_point()[b]
// (printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100..U+0143).
const std::array<uint32_t, 256>& byte_to_code_point();

// Inverse of byte_to_code_point(): the byte for cp, or -1 if cp is not in the alphabet.
int code_point_to_byte(uint32_t cp);

// UTF-8 encodings of the byte-level alphabet, indexed by byte (each 1 or 2 bytes long).
const std::array<std::string, 256>& byte_level_strings();

}  // namespace voxrt::text
