#include "text/tokenizer.h"

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "text/added_tokens.h"
#include "text/bpe.h"
#include "text/decoder.h"
#include "text/pre_tokenizer.h"
#include "text/utf8.h"

namespace voxrt::text {

using nlohmann::json;

struct Tokenizer::Impl {
    BpeModel model;
    PreTokenizer pre_tokenizer;
    Decoder decoder;
    std::vector<AddedToken> added;                              // in file order
    std::unordered_map<std::string, int32_t> added_by_content;  // -> index into `added`
    std::vector<int32_t> added_index_by_id;                     // id -> index into `added`, or -1
    AddedTokenMatcher raw_matcher;                              // normalized == false
    AddedTokenMatcher normalized_matcher;                       // normalized == true
    int32_t n_ids = 0;
    mutable std::atomic<uint64_t> regex_failures{0};

    void encode_plain(std::string_view segment, std::vector<std::string>* scratch,
                      std::vector<int32_t>* out) const;
};

namespace {

Status file_error(const std::string& origin, const char* what) {
    return make_error(StatusCode::kInvalidFile, "[tokenizer] %s: %s", origin.c_str(), what);
}

// Maximum nesting of JSON arrays/objects, computed without recursion (strings are skipped), so a
// file of a million '[' is rejected before the parser sees it; and an upper bound on the number of
// values and keys (every one but the first follows a '[', '{', ',' or ':'), which bounds the size
// of the parsed tree.
struct JsonShape {
    int depth = 0;
    size_t values = 1;
};
JsonShape json_shape(std::string_view s) {
    JsonShape shape;
    int depth = 0, max_depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (in_string) {
            if (c == '\\') {
                ++i;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            ++shape.values;
            if (++depth > max_depth) max_depth = depth;
        } else if (c == ']' || c == '}') {
            --depth;
        } else if (c == ',' || c == ':') {
            ++shape.values;
        }
    }
    shape.depth = max_depth;
    return shape;
}

Status check_normalizer(const json& n, int depth) {
    if (n.is_null()) return Status::ok();
    if (!n.is_object() || !n.contains("type") || !n["type"].is_string()) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] normalizer: expected an object "
                          "with a \"type\"");
    }
    const std::string type = n["type"].get<std::string>();
    if (type == "Sequence" && depth < 8 && n.contains("normalizers") &&
        n["normalizers"].is_array()) {
        for (const json& child : n["normalizers"])
            VOXRT_RETURN_IF_ERROR(check_normalizer(child, depth + 1));
        return Status::ok();
    }
    return make_error(StatusCode::kUnsupported,
                      "[tokenizer] normalizer: type '%s' is not supported (only null or an empty "
                      "Sequence; LFM2 files have none)",
                      type.c_str());
}

Status check_post_processor(const json& p, int depth) {
    if (p.is_null()) return Status::ok();
    if (!p.is_object() || !p.contains("type") || !p["type"].is_string()) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] post_processor: expected an "
                          "object with a \"type\"");
    }
    const std::string type = p["type"].get<std::string>();
    if (type == "Sequence" && depth < 8 && p.contains("processors") && p["processors"].is_array()) {
        for (const json& c : p["processors"])
            VOXRT_RETURN_IF_ERROR(check_post_processor(c, depth + 1));
        return Status::ok();
    }
    // None of these changes the ids of encode(add_special_tokens=False); they are accepted and
    // not applied.
    if (type == "ByteLevel" || type == "TemplateProcessing" || type == "RobertaProcessing" ||
        type == "BertProcessing") {
        return Status::ok();
    }
    return make_error(StatusCode::kUnsupported,
                      "[tokenizer] post_processor: type '%s' is not supported", type.c_str());
}

Status read_added_flag(const json& t, const char* key, bool def, bool* out, size_t index) {
    auto it = t.find(key);
    if (it == t.end() || it->is_null()) {
        *out = def;
        return Status::ok();
    }
    if (!it->is_boolean()) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] added_tokens[%zu].%s: expected a boolean", index, key);
    }
    *out = it->get<bool>();
    return Status::ok();
}

}  // namespace

Expected<Tokenizer> Tokenizer::load(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
        const int err = errno;
        return make_error(
            err == ENOENT || err == ENOTDIR ? StatusCode::kNotFound : StatusCode::kInvalidFile,
            "[tokenizer] %s: cannot open: %s", path.c_str(), std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        return make_error(StatusCode::kInvalidFile, "[tokenizer] %s: not a regular file",
                          path.c_str());
    }
    if (static_cast<uint64_t>(st.st_size) > kMaxTokenizerFileBytes) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] %s: %lld bytes exceeds the %zu "
                          "byte limit",
                          path.c_str(), static_cast<long long>(st.st_size), kMaxTokenizerFileBytes);
    }
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return make_error(StatusCode::kNotFound, "[tokenizer] %s: cannot open", path.c_str());
    std::string text(static_cast<size_t>(st.st_size), '\0');
    size_t got = text.empty() ? 0 : std::fread(text.data(), 1, text.size(), f);
    std::fclose(f);
    if (got != text.size()) return file_error(path, "short read");
    return load_from_string(text, path);
}

Expected<Tokenizer> Tokenizer::load_from_string(std::string_view text, const std::string& origin) {
    if (text.size() > kMaxTokenizerFileBytes) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] %s: %zu bytes exceeds the %zu byte limit", origin.c_str(),
                          text.size(), kMaxTokenizerFileBytes);
    }
    const JsonShape shape = json_shape(text);
    if (shape.depth > kMaxJsonDepth) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] %s: JSON nested %d levels deep, more than the limit of %d",
                          origin.c_str(), shape.depth, kMaxJsonDepth);
    }
    if (shape.values > kMaxJsonValues) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] %s: up to %zu JSON values and keys, more than the limit of "
                          "%zu",
                          origin.c_str(), shape.values, kMaxJsonValues);
    }
    json root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (root.is_discarded()) return file_error(origin, "not valid JSON");
    if (!root.is_object()) return file_error(origin, "top level is not a JSON object");

    auto impl = std::make_shared<Impl>();
    auto field = [&root](const char* key) -> const json& {
        static const json null_json;
        auto it = root.find(key);
        return it == root.end() ? null_json : *it;
    };
    auto with_origin = [&origin](const Status& s) { return s.with_context(origin); };

    if (!field("truncation").is_null()) {
        return make_error(StatusCode::kUnsupported,
                          "[tokenizer] %s: truncation: must be null "
                          "(encode() never truncates)",
                          origin.c_str());
    }
    if (!field("padding").is_null()) {
        return make_error(StatusCode::kUnsupported, "[tokenizer] %s: padding: must be null",
                          origin.c_str());
    }
    if (Status s = check_normalizer(field("normalizer"), 0); !s) return with_origin(s);
    if (Status s = check_post_processor(field("post_processor"), 0); !s) return with_origin(s);

    // ---- model ----
    const json& model = field("model");
    if (!model.is_object() || !model.contains("type") || !model["type"].is_string()) {
        return file_error(origin, "model: missing or without a \"type\"");
    }
    if (model["type"].get<std::string>() != "BPE") {
        return make_error(StatusCode::kUnsupported,
                          "[tokenizer] %s: model.type '%s' is not "
                          "supported (only BPE)",
                          origin.c_str(), model["type"].get<std::string>().c_str());
    }
    {
        auto m = BpeModel::load(model);
        if (!m) return with_origin(m.status());
        impl->model = std::move(m.value());
    }
    {
        auto p = PreTokenizer::load(field("pre_tokenizer"));
        if (!p) return with_origin(p.status());
        impl->pre_tokenizer = std::move(p.value());
    }
    {
        auto d = Decoder::load(field("decoder"));
        if (!d) return with_origin(d.status());
        impl->decoder = std::move(d.value());
    }
    if (impl->pre_tokenizer.has_byte_level()) {
        // Every byte must be representable, or text would be silently dropped.
        const auto& cps = byte_to_code_point();
        for (int b = 0; b < 256; ++b) {
            if (!impl->model.token_to_id(byte_level_strings()[b])) {
                return make_error(StatusCode::kInvalidFile,
                                  "[tokenizer] %s: model.vocab lacks the byte-level token for "
                                  "byte 0x%02X (U+%04X)",
                                  origin.c_str(), b, cps[b]);
            }
        }
    }

    // ---- added tokens: ids as HF AddedVocabulary::add_tokens assigns them ----
    const json& added = field("added_tokens");
    if (!added.is_null() && !added.is_array())
        return file_error(origin, "added_tokens: not an array");
    if (added.size() > kMaxVocabEntries) return file_error(origin, "added_tokens: too many");
    int32_t next_id = impl->model.size();
    size_t index = 0, added_bytes = 0;
    for (const json& t : added.is_array() ? added : json::array()) {
        if (!t.is_object() || !t.contains("content") || !t["content"].is_string() ||
            !t.contains("id") || !t["id"].is_number_integer()) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] %s: added_tokens[%zu]: needs "
                              "string \"content\" and integer \"id\"",
                              origin.c_str(), index);
        }
        AddedToken tok;
        tok.content = t["content"].get<std::string>();
        if (tok.content.empty() || tok.content.size() > kMaxAddedTokenBytes ||
            !utf8_is_valid(tok.content)) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] %s: added_tokens[%zu]: "
                              "content is empty, longer than %zu bytes or not UTF-8",
                              origin.c_str(), index, kMaxAddedTokenBytes);
        }
        added_bytes += tok.content.size();
        if (added_bytes > kMaxAddedTokenTotalBytes) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] %s: added_tokens[%zu]: the added tokens' content "
                              "exceeds %zu bytes in all (the limit)",
                              origin.c_str(), index, kMaxAddedTokenTotalBytes);
        }
        VOXRT_RETURN_IF_ERROR(read_added_flag(t, "special", false, &tok.special, index));
        VOXRT_RETURN_IF_ERROR(read_added_flag(t, "single_word", false, &tok.single_word, index));
        VOXRT_RETURN_IF_ERROR(read_added_flag(t, "lstrip", false, &tok.lstrip, index));
        VOXRT_RETURN_IF_ERROR(read_added_flag(t, "rstrip", false, &tok.rstrip, index));
        VOXRT_RETURN_IF_ERROR(
            read_added_flag(t, "normalized", !tok.special, &tok.normalized, index));
        if (impl->added_by_content.count(tok.content)) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] %s: added_tokens[%zu]: "
                              "duplicate content",
                              origin.c_str(), index);
        }
        int64_t file_id = t["id"].get<int64_t>();
        if (auto model_id = impl->model.token_to_id(tok.content)) {
            tok.id = *model_id;
        } else {
            tok.id = next_id++;
        }
        if (file_id != tok.id) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] %s: added_tokens[%zu]: id "
                              "%lld does not match the id %d that the vocabulary implies",
                              origin.c_str(), index, static_cast<long long>(file_id), tok.id);
        }
        impl->added_by_content.emplace(tok.content, static_cast<int32_t>(impl->added.size()));
        impl->added.push_back(std::move(tok));
        ++index;
    }
    impl->n_ids = next_id;
    impl->added_index_by_id.assign(static_cast<size_t>(next_id), -1);
    std::vector<const AddedToken*> raw, normalized;
    for (size_t i = 0; i < impl->added.size(); ++i) {
        const AddedToken& t = impl->added[i];
        impl->added_index_by_id[t.id] = static_cast<int32_t>(i);
        (t.normalized ? normalized : raw).push_back(&t);
    }
    impl->raw_matcher = AddedTokenMatcher(raw);
    impl->normalized_matcher = AddedTokenMatcher(normalized);

    Tokenizer tok;
    tok.impl_ = std::move(impl);
    return tok;
}

void Tokenizer::Impl::encode_plain(std::string_view segment, std::vector<std::string>* scratch,
                                   std::vector<int32_t>* out) const {
    scratch->clear();
    int failures = pre_tokenizer.run(segment, scratch);
    if (failures) regex_failures.fetch_add(failures, std::memory_order_relaxed);
    for (const std::string& piece : *scratch) model.tokenize(piece, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
    std::vector<int32_t> ids;
    if (!impl_ || text.empty()) return ids;
    std::string repaired;
    if (!utf8_is_valid(text)) {
        repaired = utf8_lossy(text);
        text = repaired;
    }
    const Impl& im = *impl_;
    std::vector<TextSegment> outer, inner;
    std::vector<std::string> scratch;
    im.raw_matcher.split(text, &outer);
    for (const TextSegment& seg : outer) {
        if (seg.id >= 0) {
            ids.push_back(seg.id);
            continue;
        }
        // The normalizer is the identity (checked at load), so normalized added tokens are
        // matched directly on the raw piece.
        std::string_view piece = text.substr(seg.begin, seg.end - seg.begin);
        inner.clear();
        im.normalized_matcher.split(piece, &inner);
        for (const TextSegment& sub : inner) {
            if (sub.id >= 0) {
                ids.push_back(sub.id);
            } else {
                im.encode_plain(piece.substr(sub.begin, sub.end - sub.begin), &scratch, &ids);
            }
        }
    }
    return ids;
}

Expected<std::vector<int32_t>> Tokenizer::encode_checked(std::string_view text, size_t max_bytes,
                                                         const std::string& field) const {
    if (text.size() > max_bytes) {
        return make_error(StatusCode::kOutOfRange,
                          "%s: %zu bytes of text exceed the limit of %zu bytes", field.c_str(),
                          text.size(), max_bytes);
    }
    return encode(text);
}

std::string Tokenizer::decode(const int32_t* ids, size_t n, bool skip_special) const {
    if (!impl_) return {};
    const Impl& im = *impl_;
    std::vector<std::string> tokens;
    tokens.reserve(n);
    for (size_t i = 0; i < n; ++i) {
        int32_t id = ids[i];
        if (id < 0 || id >= im.n_ids) continue;
        int32_t ai = im.added_index_by_id[id];
        if (ai >= 0) {
            if (skip_special && im.added[ai].special) continue;
            tokens.push_back(im.added[ai].content);
        } else if (const std::string* t = im.model.id_to_token(id)) {
            tokens.push_back(*t);
        }
    }
    return im.decoder.decode(std::move(tokens));
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
    if (!impl_) return std::nullopt;
    auto it = impl_->added_by_content.find(std::string(token));
    if (it != impl_->added_by_content.end()) return impl_->added[it->second].id;
    return impl_->model.token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
    if (!impl_ || id < 0 || id >= impl_->n_ids) return std::nullopt;
    int32_t ai = impl_->added_index_by_id[id];
    if (ai >= 0) return impl_->added[ai].content;
    if (const std::string* t = impl_->model.id_to_token(id)) return *t;
    return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
    if (!impl_ || id < 0 || id >= impl_->n_ids) return false;
    int32_t ai = impl_->added_index_by_id[id];
    return ai >= 0 && impl_->added[ai].special;
}

int32_t Tokenizer::vocab_size() const {
    return impl_ ? impl_->n_ids : 0;
}

uint64_t Tokenizer::regex_failures() const {
    return impl_ ? impl_->regex_failures.load(std::memory_order_relaxed) : 0;
}

}  // namespace voxrt::text
