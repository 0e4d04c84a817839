#include "text/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "text/utf8.h"

namespace voxrt::text {

namespace {

constexpr size_t kMaxPatternBytes = 8192;
constexpr uint32_t kMatchLimit = 10'000'000;   // backtracking steps per match attempt
constexpr uint32_t kHeapLimitKiB = 64 * 1024;  // backtracking memory per match attempt

// The Unicode White_Space set, which Oniguruma's \s matches, as class items for PCRE2. PCRE2's
// own \s under UCP differs slightly (e.g. for U+0085 and U+180E across versions).
constexpr const char* kWhiteSpaceItems =
    "\\x{09}-\\x{0D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

std::string escape_literal(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (std::string_view("\\^$.|?*+()[]{}-/#& ").find(c) != std::string_view::npos) {
            out.push_back('\\');
        }
        out.push_back(c);
    }
    return out;
}

// Rewrites Oniguruma (Ruby syntax) escapes whose PCRE2 meaning differs. Returns false and sets
// *why for constructs we do not translate.
bool translate_onig(std::string_view p, std::string* out, std::string* why) {
    int class_depth = 0;
    for (size_t i = 0; i < p.size(); ++i) {
        char c = p[i];
        if (c == '\\') {
            if (i + 1 >= p.size()) {
                *why = "trailing backslash";
                return false;
            }
            char e = p[++i];
            if (e == 's') {
                if (class_depth > 0) {
                    *out += kWhiteSpaceItems;
                } else {
                    *out += "[";
                    *out += kWhiteSpaceItems;
                    *out += "]";
                }
            } else if (e == 'S' && class_depth == 0) {
                *out += "[^";
                *out += kWhiteSpaceItems;
                *out += "]";
            } else if (e == 'h') {
                *out += class_depth > 0 ? "0-9a-fA-F" : "[0-9a-fA-F]";
            } else if (e == 'H') {
                if (class_depth > 0) {
                    *why = "\\H inside a character class";
                    return false;
                }
                *out += "[^0-9a-fA-F]";
            } else if (e == 'Q' || e == 'K' || e == 'C') {
                *why = std::string("unsupported escape \\") + e;
                return false;
            } else {
                out->push_back('\\');
                out->push_back(e);
            }
            continue;
        }
        if (c == '[') {
            if (class_depth > 0) {
                // Oniguruma nested classes / intersections ("[a-z&&[^b]]") have no PCRE2 form.
                if (i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:alpha:]
                    size_t close = p.find(":]", i + 2);
                    if (close != std::string_view::npos) {
                        out->append(p.substr(i, close + 2 - i));
                        i = close + 1;
                        continue;
                    }
                }
                *why = "nested character class";
                return false;
            }
            class_depth = 1;
            out->push_back(c);
            // A ']' right after '[' or '[^' is a literal.
            if (i + 1 < p.size() && p[i + 1] == '^') out->push_back(p[++i]);
            if (i + 1 < p.size() && p[i + 1] == ']') {
                out->append("\\]");
                ++i;
            }
            continue;
        }
        if (c == ']' && class_depth > 0) {
            class_depth = 0;
        } else if (c == '&' && class_depth > 0 && i + 1 < p.size() && p[i + 1] == '&') {
            *why = "class intersection &&";
            return false;
        } else if (c == '(' && class_depth == 0 && p.substr(i).starts_with("(?m")) {
            *why = "(?m) (dot-all in Oniguruma, multi-line in PCRE2)";
            return false;
        }
        out->push_back(c);
    }
    if (class_depth != 0) {
        *why = "unterminated character class";
        return false;
    }
    return true;
}

}  // namespace

struct Regex::Code {
    pcre2_code* code = nullptr;
    pcre2_match_context* mctx = nullptr;
    bool jit = false;
    ~Code() {
        if (mctx) pcre2_match_context_free(mctx);
        if (code) pcre2_code_free(code);
    }
};

Expected<Regex> Regex::compile(std::string_view pattern, bool literal) {
    if (pattern.size() > kMaxPatternBytes) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] regex pattern is %zu bytes (max %zu)", pattern.size(),
                          kMaxPatternBytes);
    }
    if (!utf8_is_valid(pattern)) {
        return make_error(StatusCode::kInvalidFile, "[tokenizer] regex pattern is not valid UTF-8");
    }
    std::string translated;
    if (literal) {
        translated = escape_literal(pattern);
    } else {
        std::string why;
        if (!translate_onig(pattern, &translated, &why)) {
            return make_error(StatusCode::kUnsupported,
                              "[tokenizer] regex pattern '%.200s': %s is not supported",
                              std::string(pattern).c_str(), why.c_str());
        }
    }
    auto code = std::make_shared<Code>();
    pcre2_compile_context* cctx = pcre2_compile_context_create(nullptr);
    pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                               PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C,
                               &err, &err_off, cctx);
    pcre2_compile_context_free(cctx);
    if (!code->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] regex pattern '%.200s' does not compile: %s (offset %zu)",
                          std::string(pattern).c_str(), reinterpret_cast<const char*>(msg),
                          static_cast<size_t>(err_off));
    }
    // JIT where the platform supports it (much faster on long runs); matching falls back to the
    // interpreter, which has the match/heap limits, if the JIT stack runs out.
    code->jit = pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE) == 0;
    code->mctx = pcre2_match_context_create(nullptr);
    pcre2_set_match_limit(code->mctx, kMatchLimit);
    pcre2_set_heap_limit(code->mctx, kHeapLimitKiB);
    Regex r;
    r.code_ = std::move(code);
    r.pattern_ = std::string(pattern);
    return r;
}

bool Regex::find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
    out->clear();
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_->code, nullptr);
    if (!md) return false;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t search_from = 0;
    bool have_last = false;
    size_t last_end = 0;
    bool ok = true;
    while (search_from <= text.size()) {
        int rc = pcre2_match(code_->code, subject, text.size(), search_from, PCRE2_NO_UTF_CHECK, md,
                             code_->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
            rc = pcre2_match(code_->code, subject, text.size(), search_from,
                             PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, code_->mctx);
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            ok = false;
            break;
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t s = ov[0], e = ov[1];
        if (e < s) {  // \K tricks are rejected at compile time, but never trust it.
            ok = false;
            break;
        }
        if (s == e && have_last && last_end == e) {
            // Skip one character, as onig::FindMatches does.
            if (search_from >= text.size()) break;
            uint32_t cp;
            size_t len = utf8_decode(text, search_from, &cp);
            search_from += len ? len : 1;
            continue;
        }
        out->emplace_back(s, e);
        search_from = e;
        have_last = true;
        last_end = e;
    }
    pcre2_match_data_free(md);
    return ok;
}

}  // namespace voxrt::text
