#include "text/bpe.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "text/utf8.h"

namespace voxrt::text {

namespace {

using nlohmann::json;

Status field_error(const char* field, const char* what) {
    return make_error(StatusCode::kInvalidFile, "[tokenizer] model.%s: %s", field, what);
}

// Reads an optional boolean field (absent or null -> def).
Status read_bool(const json& m, const char* key, bool def, bool* out) {
    auto it = m.find(key);
    if (it == m.end() || it->is_null()) {
        *out = def;
        return Status::ok();
    }
    if (!it->is_boolean()) return field_error(key, "expected a boolean");
    *out = it->get<bool>();
    return Status::ok();
}

// Reads an optional string field (absent or null -> nullopt).
Status read_opt_string(const json& m, const char* key, std::optional<std::string>* out) {
    auto it = m.find(key);
    if (it == m.end() || it->is_null()) return Status::ok();
    if (!it->is_string()) return field_error(key, "expected a string or null");
    *out = it->get<std::string>();
    return Status::ok();
}

// Escapes a token for an error message (tokens are untrusted: keep logs printable and short).
std::string printable(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size() && out.size() < 80; ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7F || c == '\\') {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\x%02X", c);
            out += buf;
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    if (s.size() > 80) out += "...";
    return out;
}

struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    uint32_t len;  // bytes covered; 0 once merged into its left neighbour
};

struct QueueEntry {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
};

// Min-heap on (rank, pos): std heap functions build a max-heap, so "less" means "later".
bool queue_later(const QueueEntry& a, const QueueEntry& b) {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.pos > b.pos;
}

}  // namespace

Expected<BpeModel> BpeModel::load(const json& m) {
    if (!m.is_object()) return field_error("type", "model is not an object");
    BpeModel bpe;

    if (auto it = m.find("dropout"); it != m.end() && !it->is_null()) {
        if (!it->is_number()) return field_error("dropout", "expected a number or null");
        if (it->get<double>() != 0.0) {
            return make_error(StatusCode::kUnsupported,
                              "[tokenizer] model.dropout: BPE dropout is not supported "
                              "(non-deterministic)");
        }
    }
    std::optional<std::string> unk, prefix, suffix;
    VOXRT_RETURN_IF_ERROR(read_opt_string(m, "unk_token", &unk));
    VOXRT_RETURN_IF_ERROR(read_opt_string(m, "continuing_subword_prefix", &prefix));
    VOXRT_RETURN_IF_ERROR(read_opt_string(m, "end_of_word_suffix", &suffix));
    VOXRT_RETURN_IF_ERROR(read_bool(m, "fuse_unk", false, &bpe.fuse_unk_));
    VOXRT_RETURN_IF_ERROR(read_bool(m, "byte_fallback", false, &bpe.byte_fallback_));
    VOXRT_RETURN_IF_ERROR(read_bool(m, "ignore_merges", false, &bpe.ignore_merges_));
    bpe.continuing_subword_prefix_ = prefix.value_or("");
    bpe.end_of_word_suffix_ = suffix.value_or("");
    if (bpe.continuing_subword_prefix_.size() > kMaxTokenBytes ||
        bpe.end_of_word_suffix_.size() > kMaxTokenBytes) {
        return field_error("continuing_subword_prefix", "too long");
    }

    // ---- vocab: string -> id, ids must be exactly 0..n-1 ----
    auto vit = m.find("vocab");
    if (vit == m.end() || !vit->is_object())
        return field_error("vocab", "missing or not an object");
    const json& vocab = *vit;
    if (vocab.size() > kMaxVocabEntries) {
        return make_error(StatusCode::kInvalidFile,
                          "[tokenizer] model.vocab: %zu entries (max %zu)", vocab.size(),
                          kMaxVocabEntries);
    }
    if (vocab.empty()) return field_error("vocab", "is empty");
    bpe.id_to_token_.assign(vocab.size(), std::string());
    std::vector<bool> seen(vocab.size(), false);
    bpe.vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const std::string& tok = it.key();
        if (!it.value().is_number_integer()) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.vocab['%s']: id is not an integer",
                              printable(tok).c_str());
        }
        int64_t id = it.value().get<int64_t>();
        if (id < 0 || static_cast<uint64_t>(id) >= vocab.size()) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.vocab['%s']: id %lld is outside 0..%zu (ids must "
                              "be contiguous)",
                              printable(tok).c_str(), static_cast<long long>(id), vocab.size() - 1);
        }
        if (seen[id]) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.vocab: id %lld is used by both '%s' and '%s'",
                              static_cast<long long>(id), printable(bpe.id_to_token_[id]).c_str(),
                              printable(tok).c_str());
        }
        if (tok.empty() || tok.size() > kMaxTokenBytes || !utf8_is_valid(tok)) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.vocab: token with id %lld is empty, longer than "
                              "%zu bytes or not UTF-8",
                              static_cast<long long>(id), kMaxTokenBytes);
        }
        seen[id] = true;
        bpe.id_to_token_[id] = tok;
        bpe.vocab_.emplace(tok, static_cast<int32_t>(id));
        uint32_t cp;
        if (utf8_decode(tok, 0, &cp) == tok.size()) bpe.single_char_ids_.emplace(cp, id);
    }

    if (unk) {
        auto it = bpe.vocab_.find(*unk);
        if (it == bpe.vocab_.end()) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.unk_token '%s' is not in the vocab",
                              printable(*unk).c_str());
        }
        bpe.unk_id_ = it->second;
    }
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        auto it = bpe.vocab_.find(name);
        bpe.byte_fallback_ids_[b] = it == bpe.vocab_.end() ? -1 : it->second;
    }

    // ---- merges: ["a b", ...] or [["a", "b"], ...]; rank = index, later duplicates win ----
    auto mit = m.find("merges");
    if (mit == m.end() || !mit->is_array()) return field_error("merges", "missing or not an array");
    if (mit->size() > kMaxVocabEntries) return field_error("merges", "too many entries");
    {
        size_t cap = 16;
        while (cap < mit->size() * 2 + 16) cap <<= 1;
        bpe.merge_table_.assign(cap, MergeSlot{kEmptyKey, Merge{0, 0}});
        bpe.merge_mask_ = cap - 1;
        bpe.merge_shift_ = 64 - __builtin_ctzll(cap);
    }
    const size_t prefix_len = bpe.continuing_subword_prefix_.size();
    uint32_t rank = 0;
    std::string merged;
    for (const json& entry : *mit) {
        std::string a, b;
        if (entry.is_string()) {
            const std::string& line = entry.get_ref<const std::string&>();
            if (line.starts_with("#version")) continue;
            size_t sp = line.find(' ');
            if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos) {
                return make_error(StatusCode::kInvalidFile,
                                  "[tokenizer] model.merges[%u]: '%s' is not two tokens separated "
                                  "by one space",
                                  rank, printable(line).c_str());
            }
            a = line.substr(0, sp);
            b = line.substr(sp + 1);
        } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
                   entry[1].is_string()) {
            a = entry[0].get<std::string>();
            b = entry[1].get<std::string>();
        } else {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.merges[%u]: expected \"a b\" or [\"a\", \"b\"]",
                              rank);
        }
        auto ia = bpe.vocab_.find(a);
        auto ib = bpe.vocab_.find(b);
        if (ia == bpe.vocab_.end() || ib == bpe.vocab_.end()) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.merges[%u]: token '%s' is not in the vocab", rank,
                              printable(ia == bpe.vocab_.end() ? a : b).c_str());
        }
        if (b.size() < prefix_len) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.merges[%u]: '%s' is shorter than the "
                              "continuing_subword_prefix",
                              rank, printable(b).c_str());
        }
        merged.assign(a);
        merged.append(b, prefix_len, std::string::npos);
        auto im = bpe.vocab_.find(merged);
        if (im == bpe.vocab_.end()) {
            return make_error(StatusCode::kInvalidFile,
                              "[tokenizer] model.merges[%u]: merged token '%s' is not in the vocab",
                              rank, printable(merged).c_str());
        }
        bpe.insert_merge(pair_key(ia->second, ib->second), Merge{rank, im->second});
        ++rank;
    }
    return bpe;
}

void BpeModel::insert_merge(uint64_t key, Merge m) {
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> merge_shift_;; i = (i + 1) & merge_mask_) {
        MergeSlot& slot = merge_table_[i];
        if (slot.key == kEmptyKey || slot.key == key) {  // a later duplicate wins, as in HF
            slot.key = key;
            slot.merge = m;
            return;
        }
    }
}

const BpeModel::Merge* BpeModel::find_merge(int32_t a, int32_t b) const {
    if (merge_table_.empty()) return nullptr;
    const uint64_t key = pair_key(a, b);
    for (uint64_t i = (key * 0x9E3779B97F4A7C15ull) >> merge_shift_;; i = (i + 1) & merge_mask_) {
        const MergeSlot& slot = merge_table_[i];
        if (slot.key == key) return &slot.merge;
        if (slot.key == kEmptyKey) return nullptr;
    }
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
    auto it = vocab_.find(std::string(token));
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return nullptr;
    return &id_to_token_[id];
}

int32_t BpeModel::char_id(std::string_view ch, bool is_first, bool is_last) const {
    bool add_prefix = !is_first && !continuing_subword_prefix_.empty();
    bool add_suffix = is_last && !end_of_word_suffix_.empty();
    if (!add_prefix && !add_suffix) {
        uint32_t cp;
        if (utf8_decode(ch, 0, &cp) == ch.size()) {
            auto it = single_char_ids_.find(cp);
            return it == single_char_ids_.end() ? -1 : it->second;
        }
        auto it = vocab_.find(std::string(ch));
        return it == vocab_.end() ? -1 : it->second;
    }
    std::string s;
    if (add_prefix) s += continuing_subword_prefix_;
    s += ch;
    if (add_suffix) s += end_of_word_suffix_;
    auto it = vocab_.find(s);
    return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::tokenize(std::string_view piece, std::vector<int32_t>* out) const {
    if (piece.empty()) return;
    if (ignore_merges_) {
        auto it = vocab_.find(std::string(piece));
        if (it != vocab_.end()) {
            out->push_back(it->second);
            return;
        }
    }

    // ---- initial symbols: one per character (HF BPE::merge_word) ----
    std::vector<Symbol> sym;
    sym.reserve(piece.size());
    auto add = [&sym](int32_t id, uint32_t len) {
        int32_t n = static_cast<int32_t>(sym.size());
        sym.push_back(Symbol{id, n - 1, n + 1, len});
    };
    int32_t pending_unk = -1;
    uint32_t pending_unk_len = 0;
    for (size_t i = 0; i < piece.size();) {
        uint32_t cp;
        size_t len = utf8_decode(piece, i, &cp);
        if (len == 0) len = 1;  // pieces are valid UTF-8; stay safe regardless
        bool is_last = i + len >= piece.size();
        int32_t id = char_id(piece.substr(i, len), i == 0, is_last);
        if (id >= 0) {
            if (pending_unk >= 0) {
                add(pending_unk, pending_unk_len);
                pending_unk = -1;
            }
            add(id, static_cast<uint32_t>(len));
        } else {
            bool done = false;
            if (byte_fallback_) {
                // HF checks the fallback on the decorated string (prefix/suffix included).
                std::string s;
                if (i > 0) s += continuing_subword_prefix_;
                s.append(piece.substr(i, len));
                if (is_last) s += end_of_word_suffix_;
                bool all = true;
                for (unsigned char c : s) all = all && byte_fallback_ids_[c] >= 0;
                if (all) {
                    for (unsigned char c : s) add(byte_fallback_ids_[c], 1);
                    done = true;
                }
            }
            if (!done && unk_id_) {
                if (pending_unk >= 0 && fuse_unk_) {
                    pending_unk_len += static_cast<uint32_t>(len);
                } else {
                    if (pending_unk >= 0) add(pending_unk, pending_unk_len);
                    pending_unk = *unk_id_;
                    pending_unk_len = static_cast<uint32_t>(len);
                }
            }
        }
        i += len;
    }
    if (pending_unk >= 0) add(pending_unk, pending_unk_len);
    if (sym.empty()) return;
    sym.back().next = -1;

    // ---- merge lowest rank first, leftmost first among equal ranks (Word::merge_all) ----
    std::vector<QueueEntry> queue;
    queue.reserve(sym.size());
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
        if (const Merge* m = find_merge(sym[i].id, sym[i + 1].id)) {
            queue.push_back({m->rank, static_cast<uint32_t>(i), m->new_id});
        }
    }
    std::make_heap(queue.begin(), queue.end(), queue_later);
    while (!queue.empty()) {
        std::pop_heap(queue.begin(), queue.end(), queue_later);
        QueueEntry top = queue.back();
        queue.pop_back();
        Symbol& cur = sym[top.pos];
        if (cur.len == 0 || cur.next < 0) continue;
        const int32_t next_pos = cur.next;
        const Symbol right = sym[next_pos];
        const Merge* m = find_merge(cur.id, right.id);
        if (!m || m->new_id != top.new_id) continue;  // stale entry

        cur.id = top.new_id;
        cur.len += right.len;
        cur.next = right.next;
        sym[next_pos].len = 0;
        if (right.next >= 0) sym[right.next].prev = static_cast<int32_t>(top.pos);

        if (cur.prev >= 0) {
            if (const Merge* pm = find_merge(sym[cur.prev].id, cur.id)) {
                queue.push_back({pm->rank, static_cast<uint32_t>(cur.prev), pm->new_id});
                std::push_heap(queue.begin(), queue.end(), queue_later);
            }
        }
        if (cur.next >= 0) {
            if (const Merge* nm = find_merge(cur.id, sym[cur.next].id)) {
                queue.push_back({nm->rank, top.pos, nm->new_id});
                std::push_heap(queue.begin(), queue.end(), queue_later);
            }
        }
    }
    for (const Symbol& s : sym) {
        if (s.len != 0) out->push_back(s.id);
    }
}

}  // namespace voxrt::text
