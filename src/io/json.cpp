#include "io/json.h"

#include <cmath>
#include <cstdint>

#include "io/mapped_file.h"

namespace voxrt::io {

Expected<Json> parse_json(const std::string& text, const std::string& label) {
    try {
        auto cb = [](int depth, Json::parse_event_t, Json&) {
            if (depth > 64) throw std::runtime_error("nesting deeper than 64 levels");
            return true;
        };
        return Json::parse(text, cb);
    } catch (const std::exception& e) {
        return make_error(StatusCode::kInvalidFile, "%s: invalid JSON: %s", label.c_str(),
                          e.what());
    }
}

Expected<Json> read_json_file(const std::string& path, size_t max_bytes) {
    VOXRT_ASSIGN_OR_RETURN(std::string text, read_text_file(path, max_bytes));
    return parse_json(text, path);
}

Status JsonView::error(const std::string& key, const std::string& what) const {
    return Status(StatusCode::kInvalidFile, label_ + ": " + field(key) + ": " + what);
}

bool JsonView::has(const std::string& key) const {
    return j_->is_object() && j_->contains(key) && !(*j_)[key].is_null();
}

Expected<JsonView> JsonView::object(const std::string& key) const {
    if (!has(key)) return error(key, "missing");
    const Json& v = (*j_)[key];
    if (!v.is_object()) return error(key, "expected an object");
    return JsonView(&v, label_, field(key));
}

Expected<int64_t> JsonView::integer(const std::string& key, int64_t lo, int64_t hi) const {
    if (!has(key)) return error(key, "missing");
    const Json& v = (*j_)[key];
    int64_t x = 0;
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        // Beyond int64 (up to 2^64-1): out of any range, and printed as written, not wrapped.
        return error(key, "value " + v.dump() + " outside [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]");
    } else if (v.is_number_integer()) {
        x = v.get<int64_t>();
    } else if (v.is_number_float() && std::isfinite(v.get<double>()) &&
               v.get<double>() == std::floor(v.get<double>()) &&
               std::fabs(v.get<double>()) < 9e15) {
        x = static_cast<int64_t>(v.get<double>());
    } else {
        return error(key, "expected an integer, got " + v.dump());
    }
    if (x < lo || x > hi)
        return error(key, "value " + std::to_string(x) + " outside [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]");
    return x;
}

Expected<int64_t> JsonView::integer_or(const std::string& key, int64_t dflt, int64_t lo,
                                       int64_t hi) const {
    if (!has(key)) return dflt;
    return integer(key, lo, hi);
}

Expected<double> JsonView::number(const std::string& key, double lo, double hi) const {
    if (!has(key)) return error(key, "missing");
    const Json& v = (*j_)[key];
    if (!v.is_number()) return error(key, "expected a number, got " + v.dump());
    double x = v.get<double>();
    if (!std::isfinite(x) || x < lo || x > hi)
        return error(key, "value " + v.dump() + " outside [" + std::to_string(lo) + ", " +
                              std::to_string(hi) + "]");
    return x;
}

Expected<double> JsonView::number_or(const std::string& key, double dflt, double lo,
                                     double hi) const {
    if (!has(key)) return dflt;
    return number(key, lo, hi);
}

Expected<bool> JsonView::boolean(const std::string& key) const {
    if (!has(key)) return error(key, "missing");
    const Json& v = (*j_)[key];
    if (!v.is_boolean()) return error(key, "expected true or false, got " + v.dump());
    return v.get<bool>();
}

Expected<bool> JsonView::boolean_or(const std::string& key, bool dflt) const {
    if (!has(key)) return dflt;
    return boolean(key);
}

Expected<std::string> JsonView::string(const std::string& key) const {
    if (!has(key)) return error(key, "missing");
    const Json& v = (*j_)[key];
    if (!v.is_string()) return error(key, "expected a string, got " + v.dump());
    return v.get<std::string>();
}

Expected<std::string> JsonView::string_or(const std::string& key, const std::string& dflt) const {
    if (!has(key)) return dflt;
    return string(key);
}

Expected<std::vector<std::string>> JsonView::string_list(const std::string& key) const {
    if (!has(key)) return error(key, "missing");
    const Json& v = (*j_)[key];
    if (!v.is_array()) return error(key, "expected a list of strings");
    std::vector<std::string> out;
    for (const auto& e : v) {
        if (!e.is_string()) return error(key, "expected a list of strings, found " + e.dump());
        out.push_back(e.get<std::string>());
    }
    return out;
}

Expected<std::vector<int64_t>> JsonView::int_list(const std::string& key) const {
    if (!has(key)) return error(key, "missing");
    const Json& v = (*j_)[key];
    if (!v.is_array()) return error(key, "expected a list of integers");
    std::vector<int64_t> out;
    for (const auto& e : v) {
        if (!e.is_number_integer() ||
            (e.is_number_unsigned() && e.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)))
            return error(key, "expected a list of 64-bit integers, found " + e.dump());
        out.push_back(e.get<int64_t>());
    }
    return out;
}

}  // namespace voxrt::io
