// Decoders (tokenizer.json "decoder") with HF tokenizers semantics: each step maps a list of
// token strings to a new list (Decoder::decode_chain) and the result is concatenated.
//
// Supported: ByteLevel, ByteFallback, Fuse, Strip, Replace (String pattern), Sequence.
// null means "join the tokens with a space" (HF's behaviour without a decoder).
//
// Thread-safety: immutable after load; decode() may be called concurrently.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace voxrt::text {

class Decoder {
public:
    static Expected<Decoder> load(const nlohmann::json& decoder);

    std::string decode(std::vector<std::string> tokens) const;

private:
    enum class Kind { kByteLevel, kByteFallback, kFuse, kStrip, kReplace };
    struct Step {
        Kind kind;
        std::string content;  // Strip: the character; Replace: the pattern
        std::string replacement;
        size_t start = 0;
        size_t stop = 0;
    };
    static Status add_step(const nlohmann::json& node, Decoder* d, int depth);

    std::vector<Step> steps_;
    bool is_null_ = true;
};

}  // namespace voxrt::text
