#include "text/utf8.h"

namespace voxrt::text {

namespace {

// Valid second-byte range for a given lead byte (Unicode Table 3-7); {0, 0} for invalid leads.
struct LeadInfo {
    uint8_t len;
    uint8_t lo;
    uint8_t hi;
};

LeadInfo lead_info(uint8_t b) {
    if (b < 0x80) return {1, 0, 0};
    if (b < 0xC2) return {0, 0, 0};
    if (b < 0xE0) return {2, 0x80, 0xBF};
    if (b == 0xE0) return {3, 0xA0, 0xBF};
    if (b < 0xED) return {3, 0x80, 0xBF};
    if (b == 0xED) return {3, 0x80, 0x9F};
    if (b < 0xF0) return {3, 0x80, 0xBF};
    if (b == 0xF0) return {4, 0x90, 0xBF};
    if (b < 0xF4) return {4, 0x80, 0xBF};
    if (b == 0xF4) return {4, 0x80, 0x8F};
    return {0, 0, 0};
}

std::array<uint32_t, 256> make_byte_to_cp() {
    std::array<uint32_t, 256> t{};
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        t[b] = printable ? b : 256 + n++;
    }
    return t;
}

}  // namespace

size_t utf8_decode(std::string_view s, size_t i, uint32_t* cp) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const size_t n = s.size();
    uint8_t b0 = p[i];
    LeadInfo li = lead_info(b0);
    if (li.len == 0) return 0;
    if (li.len == 1) {
        *cp = b0;
        return 1;
    }
    if (i + li.len > n) return 0;
    if (p[i + 1] < li.lo || p[i + 1] > li.hi) return 0;
    uint32_t v = b0 & (0x7F >> li.len);
    v = (v << 6) | (p[i + 1] & 0x3F);
    for (size_t k = 2; k < li.len; ++k) {
        if ((p[i + k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i + k] & 0x3F);
    }
    *cp = v;
    return li.len;
}

size_t utf8_invalid_prefix_len(std::string_view s, size_t i) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    LeadInfo li = lead_info(p[i]);
    if (li.len <= 1) return 1;
    size_t k = 1;
    if (i + k < s.size() && p[i + k] >= li.lo && p[i + k] <= li.hi) {
        ++k;
        while (k < li.len && i + k < s.size() && (p[i + k] & 0xC0) == 0x80) ++k;
    }
    return k;
}

bool utf8_is_valid(std::string_view s) {
    uint32_t cp;
    for (size_t i = 0; i < s.size();) {
        if (static_cast<uint8_t>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        size_t len = utf8_decode(s, i, &cp);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    uint32_t cp;
    for (size_t i = 0; i < s.size();) {
        size_t len = utf8_decode(s, i, &cp);
        if (len > 0) {
            out.append(s.data() + i, len);
            i += len;
        } else {
            out.append("\xEF\xBF\xBD");
            i += utf8_invalid_prefix_len(s, i);
        }
    }
    return out;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

bool is_unicode_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

const std::array<uint32_t, 256>& byte_to_code_point() {
    static const std::array<uint32_t, 256> table = make_byte_to_cp();
    return table;
}

int code_point_to_byte(uint32_t cp) {
    static const std::array<int16_t, 324> inverse = [] {
        std::array<int16_t, 324> t{};
        t.fill(-1);
        const auto& fwd = byte_to_code_point();
        for (int b = 0; b < 256; ++b) t[fwd[b]] = static_cast<int16_t>(b);
        return t;
    }();
    return cp < inverse.size() ? inverse[cp] : -1;
}

const std::array<std::string, 256>& byte_level_strings() {
    static const std::array<std::string, 256> table = [] {
        std::array<std::string, 256> t;
        for (int b = 0; b < 256; ++b) utf8_append(t[b], byte_to_code_point()[b]);
        return t;
    }();
    return table;
}

}  // namespace voxrt::text
