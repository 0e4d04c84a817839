// The BPE model of a tokenizer.json ("model": {"type": "BPE", ...}) with HF tokenizers semantics.
//
// tokenize() applies the merges to one pre-token with a priority queue keyed by (merge rank,
// position), exactly like tokenizers' Word::merge_all, so the result equals HF's and the cost is
// O(n log n) in the pre-token length n.
//
// Thread-safety: immutable after load; tokenize() may be called concurrently.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace voxrt::text {

// Limits applied while loading (hostile-file protection). Documented in docs/tokenizer.md.
inline constexpr size_t kMaxVocabEntries = size_t{1} << 20;  // 1,048,576 ids (LFM2: 64,400)
inline constexpr size_t kMaxTokenBytes = 65536;              // one vocab string

class BpeModel {
public:
    // Parses and validates the "model" object. Errors name the offending field or entry.
    static Expected<BpeModel> load(const nlohmann::json& model);

    // Appends the ids for one pre-token, given in model space (i.e. after the ByteLevel
    // mapping when the pre-tokenizer has one). Characters with no vocab entry follow HF:
    // byte_fallback tokens "<0xXX>" if enabled and present, else the unk token if set, else they
    // are dropped.
    void tokenize(std::string_view piece, std::vector<int32_t>* out) const;

    std::optional<int32_t> token_to_id(std::string_view token) const;
    // nullptr if id has no vocab entry.
    const std::string* id_to_token(int32_t id) const;
    // Number of ids 0..n-1 (the vocab is checked to be contiguous).
    int32_t size() const { return static_cast<int32_t>(id_to_token_.size()); }

private:
    struct Merge {
        uint32_t rank;
        int32_t new_id;
    };
    static uint64_t pair_key(int32_t a, int32_t b) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
    }
    int32_t char_id(std::string_view ch, bool is_first, bool is_last) const;

    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> id_to_token_;
    std::unordered_map<uint32_t, int32_t> single_char_ids_;  // code point -> id ("plain" chars)
    // Open-addressing hash table of merges keyed by pair_key (kEmptyKey marks a free slot):
    // the hot lookup of tokenize(), kept flat for cache locality.
    struct MergeSlot {
        uint64_t key;
        Merge merge;
    };
    static constexpr uint64_t kEmptyKey = ~uint64_t{0};
    const Merge* find_merge(int32_t a, int32_t b) const;
    void insert_merge(uint64_t key, Merge m);
    std::vector<MergeSlot> merge_table_;
    uint64_t merge_mask_ = 0;
    int merge_shift_ = 64;
    std::optional<int32_t> unk_id_;
    std::string continuing_subword_prefix_;
    std::string end_of_word_suffix_;
    bool fuse_unk_ = false;
    bool byte_fallback_ = false;
    bool ignore_merges_ = false;
    int32_t byte_fallback_ids_[256] = {};  // -1 when "<0xXX>" is missing
};

}  // namespace voxrt::text
