#include "text/pre_tokenizer.h"

#include <nlohmann/json.hpp>

#include "text/utf8.h"

namespace voxrt::text {

namespace {

using nlohmann::json;

// The GPT-2 split regex that ByteLevel uses when use_regex is true.
constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

constexpr int kMaxSequenceDepth = 8;

Status pt_error(const char* fmt, const std::string& arg) {
    return make_error(StatusCode::kInvalidFile, fmt, arg.c_str());
}

Status read_flag(const json& node, const char* key, bool def, bool* out) {
    auto it = node.find(key);
    if (it == node.end() || it->is_null()) {
        *out = def;
        return Status::ok();
    }
    if (!it->is_boolean()) {
        return pt_error("[tokenizer] pre_tokenizer.%s: expected a boolean", key);
    }
    *out = it->get<bool>();
    return Status::ok();
}

// Appends s (raw UTF-8) to out, cut into chunks of at most kMaxPreTokenBytes at character
// boundaries, mapping bytes to the byte-level alphabet when byte_level is set.
void emit(std::string_view s, bool byte_level, std::vector<std::string>* out) {
    while (!s.empty()) {
        size_t n = s.size();
        if (n > kMaxPreTokenBytes) {
            n = kMaxPreTokenBytes;
            while (n > 0 && (static_cast<uint8_t>(s[n]) & 0xC0) == 0x80) --n;
            if (n == 0) n = kMaxPreTokenBytes;
        }
        std::string_view chunk = s.substr(0, n);
        if (byte_level) {
            const auto& strings = byte_level_strings();
            std::string mapped;
            mapped.reserve(chunk.size() * 2);
            for (unsigned char c : chunk) mapped += strings[c];
            out->push_back(std::move(mapped));
        } else {
            out->emplace_back(chunk);
        }
        s.remove_prefix(n);
    }
}

}  // namespace

Status PreTokenizer::add_step(const json& node, PreTokenizer* pt, int depth) {
    if (!node.is_object()) return pt_error("[tokenizer] pre_tokenizer: %s", "expected an object");
    auto tit = node.find("type");
    if (tit == node.end() || !tit->is_string()) {
        return pt_error("[tokenizer] pre_tokenizer: %s", "missing \"type\"");
    }
    const std::string type = tit->get<std::string>();
    if (pt->byte_level_) {
        return pt_error(
            "[tokenizer] pre_tokenizer: '%s' after ByteLevel is not supported "
            "(ByteLevel must be the last step)",
            type);
    }
    if (type == "Sequence") {
        if (depth >= kMaxSequenceDepth) {
            return pt_error("[tokenizer] pre_tokenizer: %s", "Sequence nested too deeply");
        }
        auto it = node.find("pretokenizers");
        if (it == node.end() || !it->is_array()) {
            return pt_error("[tokenizer] pre_tokenizer.Sequence: %s", "missing \"pretokenizers\"");
        }
        for (const json& child : *it) VOXRT_RETURN_IF_ERROR(add_step(child, pt, depth + 1));
        return Status::ok();
    }
    if (type == "Split") {
        auto pit = node.find("pattern");
        if (pit == node.end() || !pit->is_object() || pit->size() != 1) {
            return pt_error("[tokenizer] pre_tokenizer.Split.pattern: %s",
                            "expected {\"Regex\": ...} or {\"String\": ...}");
        }
        bool literal;
        if (pit->contains("Regex") && (*pit)["Regex"].is_string()) {
            literal = false;
        } else if (pit->contains("String") && (*pit)["String"].is_string()) {
            literal = true;
        } else {
            return pt_error("[tokenizer] pre_tokenizer.Split.pattern: %s",
                            "expected {\"Regex\": ...} or {\"String\": ...}");
        }
        const std::string& pat = pit->begin()->get_ref<const std::string&>();
        VOXRT_ASSIGN_OR_RETURN(Regex re, Regex::compile(pat, literal));
        auto bit = node.find("behavior");
        if (bit == node.end() || !bit->is_string()) {
            return pt_error("[tokenizer] pre_tokenizer.Split.behavior: %s", "missing");
        }
        const std::string b = bit->get<std::string>();
        SplitBehavior behavior;
        if (b == "Removed") {
            behavior = SplitBehavior::kRemoved;
        } else if (b == "Isolated") {
            behavior = SplitBehavior::kIsolated;
        } else if (b == "MergedWithPrevious") {
            behavior = SplitBehavior::kMergedWithPrevious;
        } else if (b == "MergedWithNext") {
            behavior = SplitBehavior::kMergedWithNext;
        } else if (b == "Contiguous") {
            behavior = SplitBehavior::kContiguous;
        } else {
            return pt_error("[tokenizer] pre_tokenizer.Split.behavior: unknown value '%s'", b);
        }
        bool invert;
        VOXRT_RETURN_IF_ERROR(read_flag(node, "invert", false, &invert));
        pt->splits_.push_back(SplitStep{std::move(re), behavior, invert});
        return Status::ok();
    }
    if (type == "ByteLevel") {
        ByteLevelStep bl;
        bool use_regex, trim_offsets;
        VOXRT_RETURN_IF_ERROR(read_flag(node, "add_prefix_space", true, &bl.add_prefix_space));
        VOXRT_RETURN_IF_ERROR(read_flag(node, "use_regex", true, &use_regex));
        VOXRT_RETURN_IF_ERROR(
            read_flag(node, "trim_offsets", true, &trim_offsets));  // offsets only
        if (use_regex) {
            VOXRT_ASSIGN_OR_RETURN(Regex re, Regex::compile(kGpt2Regex, false));
            bl.gpt2_regex = std::move(re);
        }
        pt->byte_level_ = std::move(bl);
        return Status::ok();
    }
    return pt_error(
        "[tokenizer] pre_tokenizer: type '%s' is not supported (supported: Split, "
        "ByteLevel, Sequence)",
        type);
}

Expected<PreTokenizer> PreTokenizer::load(const json& node) {
    PreTokenizer pt;
    if (node.is_null()) return pt;
    VOXRT_RETURN_IF_ERROR(add_step(node, &pt, 0));
    return pt;
}

int PreTokenizer::apply_split(const Regex& re, SplitBehavior behavior, bool invert,
                              std::string_view piece, std::vector<std::string>* out) {
    struct Part {
        size_t b, e;
        bool match;
    };
    std::vector<std::pair<size_t, size_t>> found;
    int failures = re.find_all(piece, &found) ? 0 : 1;
    std::vector<Part> parts;  // the Pattern::find_matches list
    parts.reserve(found.size() * 2 + 1);
    size_t prev = 0;
    for (auto [s, e] : found) {
        if (prev != s) parts.push_back({prev, s, false});
        parts.push_back({s, e, true});
        prev = e;
    }
    if (prev != piece.size()) parts.push_back({prev, piece.size(), false});
    if (invert) {
        for (Part& p : parts) p.match = !p.match;
    }

    std::vector<Part> res;  // NormalizedString::split, "match" now meaning "remove"
    res.reserve(parts.size());
    bool previous_match = false;
    switch (behavior) {
        case SplitBehavior::kIsolated:
            for (const Part& p : parts) res.push_back({p.b, p.e, false});
            break;
        case SplitBehavior::kRemoved:
            res = parts;
            break;
        case SplitBehavior::kContiguous:
            for (const Part& p : parts) {
                if (p.match == previous_match && !res.empty()) {
                    res.back().e = p.e;
                } else {
                    res.push_back({p.b, p.e, false});
                }
                previous_match = p.match;
            }
            break;
        case SplitBehavior::kMergedWithPrevious:
            for (const Part& p : parts) {
                if (p.match && !previous_match && !res.empty()) {
                    res.back().e = p.e;
                } else {
                    res.push_back({p.b, p.e, false});
                }
                previous_match = p.match;
            }
            break;
        case SplitBehavior::kMergedWithNext:
            for (size_t k = parts.size(); k-- > 0;) {
                const Part& p = parts[k];
                if (p.match && !previous_match && !res.empty()) {
                    res.back().b = p.b;
                } else {
                    res.push_back({p.b, p.e, false});
                }
                previous_match = p.match;
            }
            std::reverse(res.begin(), res.end());
            break;
    }
    for (const Part& p : res) {
        if (!p.match && p.e > p.b) out->emplace_back(piece.substr(p.b, p.e - p.b));
    }
    return failures;
}

int PreTokenizer::run(std::string_view segment, std::vector<std::string>* out) const {
    if (segment.empty()) return 0;
    int failures = 0;
    std::vector<std::string> cur{std::string(segment)};
    std::vector<std::string> next;
    for (const SplitStep& step : splits_) {
        next.clear();
        for (const std::string& piece : cur) {
            failures += apply_split(step.regex, step.behavior, step.invert, piece, &next);
        }
        cur.swap(next);
    }
    if (byte_level_) {
        next.clear();
        for (std::string& piece : cur) {
            if (byte_level_->add_prefix_space && !piece.starts_with(' ')) piece = ' ' + piece;
            if (byte_level_->gpt2_regex) {
                failures += apply_split(*byte_level_->gpt2_regex, SplitBehavior::kIsolated, false,
                                        piece, &next);
            } else {
                next.push_back(std::move(piece));
            }
        }
        cur.swap(next);
    }
    for (const std::string& piece : cur) emit(piece, byte_level_.has_value(), out);
    return failures;
}

}  // namespace voxrt::text
