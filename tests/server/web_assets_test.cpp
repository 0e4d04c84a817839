// The browser page compiled into the server (web_assets.h): every file of web/ is in the table,
// byte for byte, found by its name; the content types by extension.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/test_paths.h"
#include "web_assets.h"

namespace voxrt::server {
namespace {

// tests/data/../../web: the page's sources
const std::filesystem::path kWeb =
    std::filesystem::path(voxrt::test::data_dir()) / ".." / ".." / "web";

TEST(WebAssets, EveryFileOfWebIsEmbeddedAsItIs) {
    int files = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(kWeb)) {
        if (!e.is_regular_file()) continue;
        const std::string name = std::filesystem::relative(e.path(), kWeb).generic_string();
        if (name.front() == '.') continue;
        std::ifstream f(e.path(), std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        const WebAsset* a = find_web_asset(name);
        ASSERT_NE(a, nullptr) << name;
        EXPECT_EQ(a->data, ss.str()) << name;
        EXPECT_EQ(a->etag.size(), 18u) << name;  // 16 hex digits in quotes
        ++files;
    }
    EXPECT_EQ(size_t(files), web_assets().size());
    ASSERT_NE(find_web_asset("index.html"), nullptr);
}

TEST(WebAssets, TableIsSortedAndLookupIsExact) {
    auto all = web_assets();
    for (size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].name, all[i].name);
    for (const auto& a : all) EXPECT_EQ(find_web_asset(a.name), &a);
    EXPECT_EQ(find_web_asset(""), nullptr);
    EXPECT_EQ(find_web_asset("index.htm"), nullptr);
    EXPECT_EQ(find_web_asset("index.html.bak"), nullptr);
    EXPECT_EQ(find_web_asset("../CMakeLists.txt"), nullptr);
    EXPECT_EQ(find_web_asset("/index.html"), nullptr);
}

TEST(WebAssets, ContentTypes) {
    EXPECT_EQ(web_content_type("index.html"), "text/html; charset=utf-8");
    EXPECT_EQ(web_content_type("app.js"), "text/javascript; charset=utf-8");
    EXPECT_EQ(web_content_type("a/page.css"), "text/css; charset=utf-8");
    EXPECT_EQ(web_content_type("logo.svg"), "image/svg+xml");
    EXPECT_EQ(web_content_type("x.png"), "image/png");
    EXPECT_EQ(web_content_type("js"), "application/octet-stream");
    EXPECT_EQ(web_content_type("archive.tar"), "application/octet-stream");
}

}  // namespace
}  // namespace voxrt::server
