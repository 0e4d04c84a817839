#include "text/stream_decoder.h"

#include <optional>
#include <string_view>

namespace voxrt::text {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

bool StreamDecoder::is_byte_fallback(int32_t token) const {
    const std::optional<std::string> t = tokenizer_->id_to_token(token);
    return t && t->size() == 6 && t->starts_with("<0x") && (*t)[5] == '>' && is_hex((*t)[3]) &&
           is_hex((*t)[4]);
}

void StreamDecoder::restart_after_last() {
    // The context is the last token the decoder sees: a skipped special token would give none.
    for (size_t i = window_.size(); i-- > 0;) {
        if (skip_special_ && tokenizer_->is_special(window_[i])) continue;
        window_.assign(1, window_[i]);
        emitted_ = tokenizer_->decode(window_, skip_special_).size();
        return;
    }
    window_.clear();
    emitted_ = 0;
}

std::string StreamDecoder::push(int32_t token) {
    window_.push_back(token);
    // A byte-fallback run ends at the next token that reaches the decoder (a skipped special token
    // does not).
    if (!(skip_special_ && tokenizer_->is_special(token)))
        in_fallback_run_ = is_byte_fallback(token);
    if (in_fallback_run_ && window_.size() <= kMaxHeldTokens) return {};
    const std::string text = tokenizer_->decode(window_, skip_special_);
    // The settled text: everything before a trailing run of U+FFFD.
    size_t settled = text.size();
    while (settled >= kReplacement.size() &&
           std::string_view(text).substr(settled - kReplacement.size()) == kReplacement)
        settled -= kReplacement.size();
    const bool complete = settled == text.size();
    const bool flush = !complete && window_.size() > kMaxHeldTokens;
    if (flush) settled = text.size();
    std::string out;
    if (settled > emitted_) {
        out = text.substr(emitted_, settled - emitted_);
        emitted_ = settled;
    }
    if (complete || flush) restart_after_last();
    return out;
}

std::string StreamDecoder::finish() {
    std::string out;
    if (!window_.empty()) {
        const std::string text = tokenizer_->decode(window_, skip_special_);
        if (text.size() > emitted_) out = text.substr(emitted_);
    }
    reset();
    return out;
}

void StreamDecoder::reset() {
    window_.clear();
    emitted_ = 0;
    in_fallback_run_ = false;
}

}  // namespace voxrt::text
