// JSON files with bounded size and depth, and typed field access whose errors name the file and
// the field path ("config.json: lfm.hidden_size: expected a positive integer, got -3").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace voxrt::io {

using Json = nlohmann::json;

// Limits on a JSON text, checked in one streaming pass before a tree is built (see check_json).
struct JsonLimits {
    int max_depth = 64;                   // arrays and objects open at once
    size_t max_values = size_t{1} << 22;  // values (containers included) and object keys
    bool reject_duplicate_keys = false;   // a key twice in one object is an error
};

// Checks `text` against `limits` with nlohmann's SAX parser: no tree, no recursion, linear time,
// stopping at the first excess. Errors (kInvalidFile) name `label` and the limit or the duplicate
// key ("LABEL: nesting deeper than 8 levels"), or the syntax error ("LABEL: not valid JSON: ...").
// Parsing with nlohmann's callback parser is not used anywhere: it rescans the enclosing object at
// the end of every nested object, quadratic in the entries.
Status check_json(std::string_view text, const JsonLimits& limits, const std::string& label);

// Parses a JSON file (at most max_bytes, within the default JsonLimits).
Expected<Json> read_json_file(const std::string& path, size_t max_bytes = 64u << 20);
// Parses JSON text after check_json(text, limits, label).
Expected<Json> parse_json(std::string_view text, const std::string& label,
                          const JsonLimits& limits = {});

// A read-only cursor into a JSON object that remembers its file label and path for errors.
class JsonView {
public:
    JsonView(const Json* j, std::string label, std::string path)
        : j_(j), label_(std::move(label)), path_(std::move(path)) {}

    bool has(const std::string& key) const;
    Expected<JsonView> object(const std::string& key) const;
    // Integers: must be present (unless a default is given), integral, and within [lo, hi].
    Expected<int64_t> integer(const std::string& key, int64_t lo, int64_t hi) const;
    Expected<int64_t> integer_or(const std::string& key, int64_t dflt, int64_t lo,
                                 int64_t hi) const;
    Expected<double> number(const std::string& key, double lo, double hi) const;
    Expected<double> number_or(const std::string& key, double dflt, double lo, double hi) const;
    Expected<bool> boolean(const std::string& key) const;
    Expected<bool> boolean_or(const std::string& key, bool dflt) const;
    Expected<std::string> string(const std::string& key) const;
    Expected<std::string> string_or(const std::string& key, const std::string& dflt) const;
    Expected<std::vector<std::string>> string_list(const std::string& key) const;
    Expected<std::vector<int64_t>> int_list(const std::string& key) const;

    const Json& json() const { return *j_; }
    std::string field(const std::string& key) const {
        return path_.empty() ? key : path_ + "." + key;
    }
    Status error(const std::string& key, const std::string& what) const;

private:
    const Json* j_;
    std::string label_;
    std::string path_;
};

}  // namespace voxrt::io
