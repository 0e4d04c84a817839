// The browser page served at `/` (web/ in the source tree), embedded into the server at build time
// by cmake/embed_web.cmake: the binary needs no files beside it to serve the page.
#pragma once
#include <span>
#include <string_view>

namespace voxrt::server {

struct WebAsset {
    std::string_view name;  // path under web/, e.g. "app.js"
    std::string_view data;  // the file's bytes
    std::string_view etag;  // quoted, from the file's SHA-1
};

// Every embedded file, sorted by name.
std::span<const WebAsset> web_assets();

// The embedded file `name` (path under web/), or null.
const WebAsset* find_web_asset(std::string_view name);

// Content-Type for a file name by its extension (UTF-8 for text types).
std::string_view web_content_type(std::string_view name);

}  // namespace voxrt::server
