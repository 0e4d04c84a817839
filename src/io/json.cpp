#include "io/json.h"

#include <cmath>
#include <cstdint>
#include <unordered_set>
#include <vector>

#include "io/mapped_file.h"

namespace voxrt::io {

namespace {

// A SAX handler that builds nothing and enforces JsonLimits.
class LimitChecker {
public:
    explicit LimitChecker(const JsonLimits& limits) : limits_(limits) {}
    const std::string& error() const { return error_; }

    bool null() { return value(); }
    bool boolean(bool) { return value(); }
    bool number_integer(Json::number_integer_t) { return value(); }
    bool number_unsigned(Json::number_unsigned_t) { return value(); }
    bool number_float(Json::number_float_t, const Json::string_t&) { return value(); }
    bool string(Json::string_t&) { return value(); }
    bool binary(Json::binary_t&) { return value(); }
    bool start_object(std::size_t) {
        if (!open()) return false;
        if (limits_.reject_duplicate_keys) keys_.emplace_back();
        return true;
    }
    bool key(Json::string_t& k) {
        if (!count()) return false;
        if (limits_.reject_duplicate_keys && !keys_.back().insert(k).second)
            return fail("duplicate key \"" + k + "\"");
        return true;
    }
    bool end_object() {
        --depth_;
        if (limits_.reject_duplicate_keys) keys_.pop_back();
        return true;
    }
    bool start_array(std::size_t) { return open(); }
    bool end_array() {
        --depth_;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
        syntax_ = true;
        return fail(e.what());
    }
    bool syntax_error() const { return syntax_; }

private:
    bool fail(std::string what) {
        if (error_.empty()) error_ = std::move(what);
        return false;
    }
    bool count() {
        if (++values_ > limits_.max_values)
            return fail("more than " + std::to_string(limits_.max_values) +
                        " JSON values and keys (the limit)");
        return true;
    }
    bool value() { return count(); }
    bool open() {
        if (++depth_ > limits_.max_depth)
            return fail("nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
        return count();
    }

    const JsonLimits& limits_;
    std::string error_;
    bool syntax_ = false;
    int depth_ = 0;
    size_t values_ = 0;
    std::vector<std::unordered_set<std::string>> keys_;  // per open object
};

}  // namespace

Status check_json(std::string_view text, const JsonLimits& limits, const std::string& label) {
    LimitChecker checker(limits);
    bool ok = false;
    try {
        ok = Json::sax_parse(text.begin(), text.end(), &checker);
    } catch (const std::exception& e) {
        return make_error(StatusCode::kInvalidFile, "%s: not valid JSON: %s", label.c_str(),
                          e.what());
    }
    if (ok) return Status::ok();
    if (checker.syntax_error() || checker.error().empty())
        return make_error(StatusCode::kInvalidFile, "%s: not valid JSON: %s", label.c_str(),
                          checker.error().c_str());
    return make_error(StatusCode::kInvalidFile, "%s: %s", label.c_str(), checker.error().c_str());
}

Expected<Json> parse_json(std::string_view text, const std::string& label,
                          const JsonLimits& limits) {
    VOXRT_RETURN_IF_ERROR(check_json(text, limits, label));
    try {
        return Json::parse(text.begin(), text.end());
    } catch (const std::exception& e) {
        return make_error(StatusCode::kInvalidFile, "%s: not valid JSON: %s", label.c_str(),
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
