// A compiled regular expression for tokenizer pre-tokenization (PCRE2, UTF + UCP mode).
//
// tokenizer.json patterns are written for Oniguruma (HF tokenizers compiles them with the Ruby
// syntax). compile() translates the few constructs whose meaning differs between the two engines
// (\s, \S and \h; see regex.cpp) and rejects the ones PCRE2 cannot express. Matching runs with a
// match limit and a heap limit, so a pathological pattern fails instead of hanging.
//
// Thread-safety: a Regex is immutable after compile(); find_all() may be called concurrently
// (each call allocates its own match data). Copies share the compiled code.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace voxrt::text {

class Regex {
public:
    // Compiles an Oniguruma-style pattern. If `literal` is true the pattern is matched verbatim
    // (the tokenizer.json {"String": ...} form). Errors name the pattern and the PCRE2 message.
    static Expected<Regex> compile(std::string_view pattern, bool literal);

    // All non-overlapping matches in `text` (valid UTF-8), as [begin, end) byte offsets, with the
    // iteration rules of Rust's onig::FindMatches: an empty match directly after the previous
    // match is skipped by advancing one character. Returns false if PCRE2 gave up (match or heap
    // limit); `out` then holds the matches found before the failure.
    bool find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

    const std::string& pattern() const { return pattern_; }

private:
    struct Code;
    std::shared_ptr<const Code> code_;
    std::string pattern_;
};

}  // namespace voxrt::text
