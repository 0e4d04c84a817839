// Matching of added tokens (tokenizer.json "added_tokens") inside raw text, with the semantics of
// HF tokenizers' AddedVocabulary::find_matches: leftmost-longest, non-overlapping matches, plus
// the per-token single_word / lstrip / rstrip rules.
//
// Thread-safety: immutable after construction; split() may be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace voxrt::text {

struct AddedToken {
    std::string content;
    int32_t id = -1;
    bool special = false;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = false;
};

// A piece of text: either an added token (id >= 0) or plain text to be tokenized (id < 0).
struct TextSegment {
    size_t begin = 0;
    size_t end = 0;
    int32_t id = -1;
};

class AddedTokenMatcher {
public:
    AddedTokenMatcher() = default;
    // `tokens` must outlive the matcher only during construction (contents are copied).
    explicit AddedTokenMatcher(const std::vector<const AddedToken*>& tokens);

    bool empty() const { return tokens_.empty(); }

    // Splits text into segments covering [0, text.size()) in order; empty segments are omitted.
    void split(std::string_view text, std::vector<TextSegment>* out) const;

private:
    struct Node {
        std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
        int32_t token = -1;                                 // index into tokens_ if terminal
    };
    int32_t child(int32_t node, uint8_t byte) const;
    // Longest token starting at text[pos], or -1.
    int32_t longest_at(std::string_view text, size_t pos, size_t* len) const;

    std::vector<Node> nodes_;
    std::vector<AddedToken> tokens_;
    bool first_byte_[256] = {};
};

}  // namespace voxrt::text
