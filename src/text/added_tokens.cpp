#include "text/added_tokens.h"

#include <algorithm>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/utf8.h"

namespace voxrt::text {

namespace {

// Rust regex's Unicode \w (used by HF for single_word): alphabetic, marks, decimal numbers,
// connector punctuation, join controls. PCRE2's UCP \w is the same set for our purposes.
bool is_word_char(uint32_t cp) {
    static pcre2_code* re = [] {
        int err;
        PCRE2_SIZE off;
        return pcre2_compile(reinterpret_cast<PCRE2_SPTR>("^[\\w\\p{M}\\x{200C}\\x{200D}]"),
                             PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    }();
    if (cp < 0x80) {
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               cp == '_';
    }
    if (!re) return false;
    std::string s;
    utf8_append(s, cp);
    pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
    int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, md, nullptr);
    pcre2_match_data_free(md);
    return rc >= 0;
}

// Last / first code point of s (s is valid UTF-8 and non-empty).
uint32_t last_code_point(std::string_view s) {
    size_t i = s.size() - 1;
    while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
    uint32_t cp = 0xFFFD;
    utf8_decode(s, i, &cp);
    return cp;
}

uint32_t first_code_point(std::string_view s) {
    uint32_t cp = 0xFFFD;
    utf8_decode(s, 0, &cp);
    return cp;
}

// Start of the trailing run of white space in s (s.size() if none).
size_t trailing_space_begin(std::string_view s) {
    size_t end = s.size();
    while (end > 0) {
        size_t i = end - 1;
        while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
        uint32_t cp;
        if (utf8_decode(s, i, &cp) == 0 || !is_unicode_white_space(cp)) break;
        end = i;
    }
    return end;
}

// Length of the leading run of white space in s.
size_t leading_space_len(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        uint32_t cp;
        size_t len = utf8_decode(s, i, &cp);
        if (len == 0 || !is_unicode_white_space(cp)) break;
        i += len;
    }
    return i;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<const AddedToken*>& tokens) {
    nodes_.emplace_back();
    for (const AddedToken* t : tokens) {
        if (t->content.empty()) continue;
        int32_t node = 0;
        for (unsigned char c : t->content) {
            int32_t next = child(node, c);
            if (next < 0) {
                next = static_cast<int32_t>(nodes_.size());
                nodes_.emplace_back();
                auto& ch = nodes_[node].children;
                auto pos = std::lower_bound(ch.begin(), ch.end(), std::make_pair(c, int32_t{-1}));
                ch.insert(pos, {c, next});
            }
            node = next;
        }
        if (nodes_[node].token < 0) {  // first token with this content wins (HF keys by content)
            nodes_[node].token = static_cast<int32_t>(tokens_.size());
            tokens_.push_back(*t);
            first_byte_[static_cast<unsigned char>(t->content[0])] = true;
        }
    }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
    const auto& ch = nodes_[node].children;
    auto it = std::lower_bound(ch.begin(), ch.end(), std::make_pair(byte, int32_t{-1}));
    return (it != ch.end() && it->first == byte) ? it->second : -1;
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t pos, size_t* len) const {
    int32_t node = 0;
    int32_t best = -1;
    for (size_t i = pos; i < text.size(); ++i) {
        node = child(node, static_cast<uint8_t>(text[i]));
        if (node < 0) break;
        if (nodes_[node].token >= 0) {
            best = nodes_[node].token;
            *len = i + 1 - pos;
        }
    }
    return best;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSegment>* out) const {
    size_t start_offset = 0;
    size_t pos = 0;
    while (pos < text.size() && !tokens_.empty()) {
        if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
            ++pos;
            continue;
        }
        size_t len = 0;
        int32_t ti = longest_at(text, pos, &len);
        if (ti < 0) {
            ++pos;
            continue;
        }
        const AddedToken& tok = tokens_[ti];
        size_t start = pos;
        size_t stop = pos + len;
        pos = stop;  // the match is consumed even when single_word rejects it (as in HF)
        if (tok.single_word) {
            bool start_space = start == 0 || !is_word_char(last_code_point(text.substr(0, start)));
            bool stop_space =
                stop == text.size() || !is_word_char(first_code_point(text.substr(stop)));
            if (!start_space || !stop_space) continue;
        }
        if (tok.lstrip) start = std::max(trailing_space_begin(text.substr(0, start)), start_offset);
        if (tok.rstrip) {
            stop += leading_space_len(text.substr(stop));
            pos = std::max(pos, stop);
        }
        if (start_offset < start) out->push_back({start_offset, start, -1});
        out->push_back({start, stop, tok.id});
        start_offset = stop;
    }
    if (start_offset < text.size()) out->push_back({start_offset, text.size(), -1});
}

}  // namespace voxrt::text
