#include "text/decoder.h"

#include <nlohmann/json.hpp>

#include "text/utf8.h"

namespace voxrt::text {

namespace {

using nlohmann::json;

constexpr int kMaxSequenceDepth = 8;

Status dec_error(const char* fmt, const std::string& arg) {
    return make_error(StatusCode::kInvalidFile, fmt, arg.c_str());
}

// ByteLevel::decode_chain: every token whose characters are all in the byte-level alphabet
// becomes those bytes, any other token contributes its raw UTF-8; the concatenation is then
// repaired like Rust's String::from_utf8_lossy.
std::vector<std::string> byte_level(const std::vector<std::string>& tokens) {
    std::string bytes;
    for (const std::string& t : tokens) {
        size_t mark = bytes.size();
        bool all = true;
        for (size_t i = 0; i < t.size();) {
            uint32_t cp;
            size_t len = utf8_decode(t, i, &cp);
            int b = len ? code_point_to_byte(cp) : -1;
            if (b < 0) {
                all = false;
                break;
            }
            bytes.push_back(static_cast<char>(b));
            i += len;
        }
        if (!all) {
            bytes.resize(mark);
            bytes += t;
        }
    }
    return {utf8_lossy(bytes)};
}

// ByteFallback::decode_chain: runs of "<0xXX>" tokens become their bytes if those form valid
// UTF-8, else one U+FFFD per byte token.
std::vector<std::string> byte_fallback(const std::vector<std::string>& tokens) {
    std::vector<std::string> out;
    std::string pending;
    size_t n_pending = 0;
    auto flush = [&] {
        if (n_pending == 0) return;
        if (utf8_is_valid(pending)) {
            out.push_back(pending);
        } else {
            for (size_t k = 0; k < n_pending; ++k) out.emplace_back("\xEF\xBF\xBD");
        }
        pending.clear();
        n_pending = 0;
    };
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (const std::string& t : tokens) {
        if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>' && hex(t[3]) >= 0 &&
            hex(t[4]) >= 0) {
            pending.push_back(static_cast<char>(hex(t[3]) * 16 + hex(t[4])));
            ++n_pending;
        } else {
            flush();
            out.push_back(t);
        }
    }
    flush();
    return out;
}

}  // namespace

Status Decoder::add_step(const json& node, Decoder* d, int depth) {
    if (!node.is_object() || !node.contains("type") || !node["type"].is_string()) {
        return dec_error("[tokenizer] decoder: %s", "expected an object with a \"type\"");
    }
    const std::string type = node["type"].get<std::string>();
    if (type == "Sequence") {
        if (depth >= kMaxSequenceDepth) return dec_error("[tokenizer] decoder: %s", "too deep");
        auto it = node.find("decoders");
        if (it == node.end() || !it->is_array()) {
            return dec_error("[tokenizer] decoder.Sequence: %s", "missing \"decoders\"");
        }
        for (const json& child : *it) VOXRT_RETURN_IF_ERROR(add_step(child, d, depth + 1));
        return Status::ok();
    }
    Step step;
    if (type == "ByteLevel") {
        step.kind = Kind::kByteLevel;  // add_prefix_space / trim_offsets / use_regex: no effect
    } else if (type == "ByteFallback") {
        step.kind = Kind::kByteFallback;
    } else if (type == "Fuse") {
        step.kind = Kind::kFuse;
    } else if (type == "Strip") {
        step.kind = Kind::kStrip;
        auto c = node.find("content");
        auto b = node.find("start");
        auto e = node.find("stop");
        if (c == node.end() || !c->is_string() || b == node.end() || !b->is_number_unsigned() ||
            e == node.end() || !e->is_number_unsigned()) {
            return dec_error("[tokenizer] decoder.Strip: %s", "needs content, start, stop");
        }
        step.content = c->get<std::string>();
        uint32_t cp;
        if (step.content.empty() || utf8_decode(step.content, 0, &cp) != step.content.size()) {
            return dec_error("[tokenizer] decoder.Strip.content: %s", "must be one character");
        }
        step.start = b->get<size_t>();
        step.stop = e->get<size_t>();
    } else if (type == "Replace") {
        step.kind = Kind::kReplace;
        auto p = node.find("pattern");
        auto c = node.find("content");
        if (p == node.end() || !p->is_object() || !p->contains("String") ||
            !(*p)["String"].is_string() || c == node.end() || !c->is_string()) {
            return dec_error("[tokenizer] decoder.Replace: %s",
                             "only {\"String\": ...} patterns are supported");
        }
        step.content = (*p)["String"].get<std::string>();
        step.replacement = c->get<std::string>();
    } else {
        return dec_error(
            "[tokenizer] decoder: type '%s' is not supported (supported: ByteLevel, "
            "ByteFallback, Fuse, Strip, Replace, Sequence)",
            type);
    }
    d->steps_.push_back(std::move(step));
    return Status::ok();
}

Expected<Decoder> Decoder::load(const json& node) {
    Decoder d;
    if (node.is_null()) return d;
    d.is_null_ = false;
    VOXRT_RETURN_IF_ERROR(add_step(node, &d, 0));
    return d;
}

std::string Decoder::decode(std::vector<std::string> tokens) const {
    if (is_null_) {
        std::string out;
        for (size_t i = 0; i < tokens.size(); ++i) {
            if (i) out.push_back(' ');
            out += tokens[i];
        }
        return out;
    }
    for (const Step& step : steps_) {
        switch (step.kind) {
            case Kind::kByteLevel:
                tokens = byte_level(tokens);
                break;
            case Kind::kByteFallback:
                tokens = byte_fallback(tokens);
                break;
            case Kind::kFuse: {
                std::string all;
                for (const std::string& t : tokens) all += t;
                tokens.assign(1, std::move(all));
                break;
            }
            case Kind::kStrip:
                for (std::string& t : tokens) {
                    // Strip up to `start` leading and `stop` trailing copies of the character.
                    size_t cl = step.content.size();
                    size_t b = 0, e = t.size();
                    for (size_t k = 0;
                         k < step.start && e - b >= cl && t.compare(b, cl, step.content) == 0;
                         ++k) {
                        b += cl;
                    }
                    for (size_t k = 0;
                         k < step.stop && e - b >= cl && t.compare(e - cl, cl, step.content) == 0;
                         ++k) {
                        e -= cl;
                    }
                    t = t.substr(b, e - b);
                }
                break;
            case Kind::kReplace:
                if (step.content.empty()) break;
                for (std::string& t : tokens) {
                    std::string r;
                    size_t pos = 0;
                    for (size_t f; (f = t.find(step.content, pos)) != std::string::npos;) {
                        r.append(t, pos, f - pos);
                        r += step.replacement;
                        pos = f + step.content.size();
                    }
                    r.append(t, pos, std::string::npos);
                    t = std::move(r);
                }
                break;
        }
    }
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
}

}  // namespace voxrt::text
