// Pre-tokenization (tokenizer.json "pre_tokenizer") with HF tokenizers semantics.
//
// Supported: Split (String or Regex pattern, all five behaviours, invert), ByteLevel
// (add_prefix_space, use_regex, trim_offsets) and Sequence of those, with ByteLevel last.
// Anything else is rejected at load with an error naming the type.
//
// Thread-safety: immutable after load; run() may be called concurrently.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "text/regex.h"

namespace voxrt::text {

// Pre-tokens longer than this many bytes are cut into chunks of at most this size (at UTF-8
// character boundaries) before BPE. HF has no such cap; it only changes results for a single
// "word" longer than 1 MiB and bounds the per-piece scratch memory of BPE.
inline constexpr size_t kMaxPreTokenBytes = size_t{1} << 20;

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
public:
    // `pre_tokenizer` may be null (no pre-tokenization: the whole segment is one pre-token).
    static Expected<PreTokenizer> load(const nlohmann::json& pre_tokenizer);

    // Splits one text segment (valid UTF-8, no added tokens inside) into pre-tokens and appends
    // them to `out` in model space: if there is a ByteLevel step, each byte is already mapped to
    // its byte-level character. Returns the number of regex failures (match limit hit); on a
    // failure the unmatched remainder of that piece is kept as a single pre-token.
    int run(std::string_view segment, std::vector<std::string>* out) const;

    bool has_byte_level() const { return byte_level_.has_value(); }

private:
    struct SplitStep {
        Regex regex;
        SplitBehavior behavior;
        bool invert;
    };
    struct ByteLevelStep {
        bool add_prefix_space;
        std::optional<Regex> gpt2_regex;  // set when use_regex
    };
    static Status add_step(const nlohmann::json& node, PreTokenizer* pt, int depth);
    static int apply_split(const Regex& re, SplitBehavior behavior, bool invert,
                           std::string_view piece, std::vector<std::string>* out);

    std::vector<SplitStep> splits_;
    std::optional<ByteLevelStep> byte_level_;
};

}  // namespace voxrt::text
