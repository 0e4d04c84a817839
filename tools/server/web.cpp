// Lookup in the embedded page (web_assets.h); the table itself is generated at build time.
#include <algorithm>

#include "web_assets.h"

namespace voxrt::server {

const WebAsset* find_web_asset(std::string_view name) {
    auto all = web_assets();
    auto it = std::lower_bound(all.begin(), all.end(), name,
                               [](const WebAsset& a, std::string_view n) { return a.name < n; });
    return it != all.end() && it->name == name ? &*it : nullptr;
}

std::string_view web_content_type(std::string_view name) {
    struct Type {
        std::string_view ext, type;
    };
    static constexpr Type kTypes[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    for (const auto& t : kTypes)
        if (name.size() >= t.ext.size() && name.substr(name.size() - t.ext.size()) == t.ext)
            return t.type;
    return "application/octet-stream";
}

}  // namespace voxrt::server
