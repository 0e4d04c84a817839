#include "ops/ops.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/quant.h"
#include "ops/dispatch.h"
#include "ops/rng.h"

namespace voxrt::ops {

namespace {

int64_t rows_of(const Tensor& t) {
    return t.ndim ? t.numel() / t.shape[t.ndim - 1] : 0;
}
int64_t cols_of(const Tensor& t) {
    return t.ndim ? t.shape[t.ndim - 1] : 0;
}

void check_device(const Context& ctx, const Tensor& t, const char* op, const char* name) {
    VOXRT_ASSERT(t.device == ctx.device, "%s: %s is on %s, context on %s", op, name,
                 device_name(t.device), device_name(ctx.device));
}

void check_act(const Context& ctx, const Tensor& t, const char* op, const char* name) {
    check_device(ctx, t, op, name);
    VOXRT_ASSERT(t.dtype == DType::kF32 || t.dtype == DType::kBF16, "%s: %s has dtype %s", op, name,
                 dtype_name(t.dtype));
}

void check_same(const Tensor& a, const Tensor& b, const char* op) {
    VOXRT_ASSERT(a.numel() == b.numel(), "%s: %s vs %s", op, a.describe().c_str(),
                 b.describe().c_str());
}

}  // namespace

void linear(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
    check_act(ctx, x, "linear", "x");
    check_act(ctx, y, "linear", "y");
    check_device(ctx, w, "linear", "w");
    // Weights: F32 / BF16 as stored, or weight-only quantized codes with their row scales.
    VOXRT_ASSERT(
        w.quantized() ? quant::is_quantized_dtype(w.dtype) : !quant::is_quantized_dtype(w.dtype),
        "linear: w %s %s row scales", w.describe().c_str(),
        w.quantized() ? "is not a quantized dtype but has" : "has no");
    VOXRT_ASSERT(w.ndim == 2 && cols_of(x) == w.shape[1] && cols_of(y) == w.shape[0] &&
                     rows_of(x) == rows_of(y),
                 "linear: x %s, w %s, y %s", x.describe().c_str(), w.describe().c_str(),
                 y.describe().c_str());
    VOXRT_ASSERT(!bias || bias->numel() == w.shape[0], "linear: bias %s", bias->describe().c_str());
    VOXRT_DISPATCH(linear(ctx, x, w, bias, y));
}

void rms_norm(const Context& ctx, const Tensor& x, const Tensor& w, float eps, RmsStyle style,
              Tensor& y) {
    check_act(ctx, x, "rms_norm", "x");
    check_same(x, y, "rms_norm");
    VOXRT_ASSERT(w.numel() == cols_of(x), "rms_norm: w %s for x %s", w.describe().c_str(),
                 x.describe().c_str());
    VOXRT_DISPATCH(rms_norm(ctx, x, w, eps, style, y));
}

void layer_norm(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b, float eps,
                Tensor& y) {
    check_act(ctx, x, "layer_norm", "x");
    check_same(x, y, "layer_norm");
    VOXRT_ASSERT(w.numel() == cols_of(x) && b.numel() == cols_of(x), "layer_norm: w %s b %s x %s",
                 w.describe().c_str(), b.describe().c_str(), x.describe().c_str());
    VOXRT_DISPATCH(layer_norm(ctx, x, w, b, eps, y));
}

void add(const Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    check_act(ctx, a, "add", "a");
    check_same(a, b, "add");
    check_same(a, y, "add");
    VOXRT_DISPATCH(add(ctx, a, b, y));
}

void add_scaled(const Context& ctx, const Tensor& a, const Tensor& b, float alpha, Tensor& y) {
    check_act(ctx, a, "add_scaled", "a");
    check_same(a, b, "add_scaled");
    check_same(a, y, "add_scaled");
    VOXRT_DISPATCH(add_scaled(ctx, a, b, alpha, y));
}

void mul(const Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    check_act(ctx, a, "mul", "a");
    check_same(a, b, "mul");
    check_same(a, y, "mul");
    VOXRT_DISPATCH(mul(ctx, a, b, y));
}

void activation(const Context& ctx, Activation act, const Tensor& x, Tensor& y) {
    check_act(ctx, x, "activation", "x");
    check_same(x, y, "activation");
    VOXRT_DISPATCH(activation(ctx, act, x, y));
}

void swiglu(const Context& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
    check_act(ctx, a, "swiglu", "a");
    check_same(a, b, "swiglu");
    check_same(a, y, "swiglu");
    VOXRT_DISPATCH(swiglu(ctx, a, b, y));
}

void glu(const Context& ctx, const Tensor& x, Tensor& y) {
    check_act(ctx, x, "glu", "x");
    VOXRT_ASSERT(cols_of(x) == 2 * cols_of(y) && rows_of(x) == rows_of(y), "glu: x %s y %s",
                 x.describe().c_str(), y.describe().c_str());
    VOXRT_DISPATCH(glu(ctx, x, y));
}

void embedding(const Context& ctx, const Tensor& table, const Tensor& ids, Tensor& y) {
    check_device(ctx, table, "embedding", "table");
    check_device(ctx, ids, "embedding", "ids");
    VOXRT_ASSERT(ids.dtype == DType::kI32 && table.ndim == 2 && cols_of(y) == table.shape[1] &&
                     rows_of(y) == ids.numel(),
                 "embedding: table %s ids %s y %s", table.describe().c_str(),
                 ids.describe().c_str(), y.describe().c_str());
    VOXRT_DISPATCH(embedding(ctx, table, ids, y));
}

void embedding_bag(const Context& ctx, const Tensor& table, const Tensor& ids, int64_t stride,
                   bool mean, Tensor& y) {
    check_device(ctx, table, "embedding_bag", "table");
    check_device(ctx, ids, "embedding_bag", "ids");
    VOXRT_ASSERT(ids.dtype == DType::kI32 && ids.ndim == 2 && table.ndim == 2 &&
                     cols_of(y) == table.shape[1] && rows_of(y) == ids.shape[0],
                 "embedding_bag: table %s ids %s y %s", table.describe().c_str(),
                 ids.describe().c_str(), y.describe().c_str());
    VOXRT_DISPATCH(embedding_bag(ctx, table, ids, stride, mean, y));
}

void rope(const Context& ctx, Tensor& x, const Tensor& pos, const Tensor& cos, const Tensor& sin,
          RopeStyle style) {
    check_act(ctx, x, "rope", "x");
    VOXRT_ASSERT(x.ndim == 3 && pos.dtype == DType::kI32 && pos.numel() == x.shape[0] &&
                     cos.ndim == 2 && cos.shape[1] * 2 == x.shape[2] && sin.numel() == cos.numel(),
                 "rope: x %s pos %s cos %s", x.describe().c_str(), pos.describe().c_str(),
                 cos.describe().c_str());
    VOXRT_DISPATCH(rope(ctx, x, pos, cos, sin, style));
}

void kv_write(const Context& ctx, const Tensor& k, const Tensor& v, const Tensor& pos,
              Tensor& k_cache, Tensor& v_cache) {
    VOXRT_ASSERT(k.ndim == 3 && k_cache.ndim == 3 && k.shape[1] == k_cache.shape[0] &&
                     k.shape[2] == k_cache.shape[2] && pos.numel() == k.shape[0] &&
                     k.dtype == k_cache.dtype && v.dtype == v_cache.dtype,
                 "kv_write: k %s cache %s pos %s", k.describe().c_str(), k_cache.describe().c_str(),
                 pos.describe().c_str());
    VOXRT_DISPATCH(kv_write(ctx, k, v, pos, k_cache, v_cache));
}

void attention(const Context& ctx, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
               const Tensor& pos, float scale, int window, Tensor& out) {
    VOXRT_ASSERT(q.ndim == 3 && k_cache.ndim == 3 && q.shape[2] == k_cache.shape[2] &&
                     q.shape[1] % k_cache.shape[0] == 0 && pos.numel() == q.shape[0] &&
                     out.numel() == q.numel(),
                 "attention: q %s cache %s pos %s out %s", q.describe().c_str(),
                 k_cache.describe().c_str(), pos.describe().c_str(), out.describe().c_str());
    VOXRT_DISPATCH(attention(ctx, q, k_cache, v_cache, pos, scale, window, out));
}

void kv_write_rows(const Context& ctx, const Tensor& k, const Tensor& v, const Tensor& pos,
                   const RowCaches& c) {
    VOXRT_ASSERT(k.ndim == 3 && k.shape[0] == c.rows && pos.numel() == c.rows && c.k && c.v,
                 "kv_write_rows: k %s, %lld rows, pos %s", k.describe().c_str(),
                 static_cast<long long>(c.rows), pos.describe().c_str());
    if (c.table && VOXRT_DISPATCH(kv_write_rows(ctx, k, v, pos, c))) return;
    for (int64_t b = 0; b < c.rows; ++b)
        kv_write(ctx, k.rows(b, b + 1), v.rows(b, b + 1), pos.rows(b, b + 1), c.k[b], c.v[b]);
}

void attention_rows(const Context& ctx, const Tensor& q, const RowCaches& c, const Tensor& pos,
                    float scale, int window, Tensor& out) {
    VOXRT_ASSERT(q.ndim == 3 && q.shape[0] == c.rows && pos.numel() == c.rows &&
                     out.numel() == q.numel() && c.k && c.v,
                 "attention_rows: q %s, %lld rows, pos %s out %s", q.describe().c_str(),
                 static_cast<long long>(c.rows), pos.describe().c_str(), out.describe().c_str());
    if (c.table && VOXRT_DISPATCH(attention_rows(ctx, q, c, pos, scale, window, out))) return;
    for (int64_t b = 0; b < c.rows; ++b) {
        Tensor ob = out.rows(b, b + 1);
        attention(ctx, q.rows(b, b + 1), c.k[b], c.v[b], pos.rows(b, b + 1), scale, window, ob);
    }
}

namespace {
// The table of a per-row op on a GPU: `values` staged up into scratch (I64 [n]).
Tensor upload_table(const Context& ctx, const std::vector<int64_t>& values, Arena& scratch) {
    const int64_t n = static_cast<int64_t>(values.size());
    Tensor dev = scratch.alloc(DType::kI64, {n});
    upload_async(ctx,
                 Tensor::make(const_cast<int64_t*>(values.data()), DType::kI64, Device::kCPU, {n}),
                 dev);
    return dev;
}
int64_t address(const void* p) {
    return static_cast<int64_t>(reinterpret_cast<intptr_t>(p));
}
}  // namespace

void copy_many(const Context& ctx, const Tensor* src, const Tensor* dst, size_t n, Arena& scratch) {
    if (n == 0) return;
    for (size_t i = 0; i < n; ++i) {
        VOXRT_ASSERT(src[i].dtype == dst[i].dtype && src[i].numel() == dst[i].numel() &&
                         src[i].device == ctx.device && dst[i].device == ctx.device,
                     "copy_many: pair %zu: %s to %s", i, src[i].describe().c_str(),
                     dst[i].describe().c_str());
    }
    if (ctx.device != Device::kCPU) {
        std::vector<int64_t> v(3 * n);
        for (size_t i = 0; i < n; ++i) {
            v[3 * i] = address(src[i].data);
            v[3 * i + 1] = address(dst[i].data);
            v[3 * i + 2] = static_cast<int64_t>(src[i].nbytes());
        }
        const Tensor table = upload_table(ctx, v, scratch);
        if (VOXRT_DISPATCH(copy_many(ctx, table, static_cast<int64_t>(n)))) return;
    }
    for (size_t i = 0; i < n; ++i) {
        Tensor d = dst[i];
        copy(ctx, src[i], d);
    }
}

void increment_many(const Context& ctx, const Tensor* t, size_t n, int32_t delta, Arena& scratch) {
    if (n == 0) return;
    for (size_t i = 0; i < n; ++i) {
        check_device(ctx, t[i], "increment_many", "t");
        VOXRT_ASSERT(t[i].dtype == DType::kI32, "increment_many: t[%zu] %s", i,
                     t[i].describe().c_str());
    }
    if (ctx.device != Device::kCPU) {
        std::vector<int64_t> v(2 * n);
        for (size_t i = 0; i < n; ++i) {
            v[2 * i] = address(t[i].data);
            v[2 * i + 1] = t[i].numel();
        }
        const Tensor table = upload_table(ctx, v, scratch);
        if (VOXRT_DISPATCH(increment_many(ctx, table, static_cast<int64_t>(n), delta))) return;
    }
    for (size_t i = 0; i < n; ++i) {
        Tensor ti = t[i];
        increment(ctx, ti, delta);
    }
}

void short_conv_rows(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor* states,
                     Tensor& y, Arena& scratch, const Tensor* table) {
    const int64_t B = x.ndim == 2 ? x.shape[0] : 0;
    VOXRT_ASSERT(x.ndim == 2 && y.numel() == x.numel(), "short_conv_rows: x %s y %s",
                 x.describe().c_str(), y.describe().c_str());
    for (int64_t b = 0; b < B; ++b) {
        const Tensor& st = states[b];
        VOXRT_ASSERT(st.ndim == 2 && st.shape[1] == x.shape[1] &&
                         st.shape[0] + 1 == w.numel() / x.shape[1] && st.dtype == states[0].dtype,
                     "short_conv_rows: row %lld state %s, x %s w %s", static_cast<long long>(b),
                     st.describe().c_str(), x.describe().c_str(), w.describe().c_str());
    }
    if (B == 0) return;
    if (ctx.device != Device::kCPU) {
        if (table != nullptr) {
            VOXRT_ASSERT(
                table->dtype == DType::kI64 && table->numel() == B && table->device == ctx.device,
                "short_conv_rows: table %s for %lld rows", table->describe().c_str(),
                static_cast<long long>(B));
            if (VOXRT_DISPATCH(short_conv_rows(ctx, x, w, *table, states[0].dtype, y))) return;
        } else {
            std::vector<int64_t> v(static_cast<size_t>(B));
            for (int64_t b = 0; b < B; ++b) v[static_cast<size_t>(b)] = address(states[b].data);
            const Tensor up = upload_table(ctx, v, scratch);
            if (VOXRT_DISPATCH(short_conv_rows(ctx, x, w, up, states[0].dtype, y))) return;
        }
    }
    const Tensor none;
    for (int64_t b = 0; b < B; ++b) {
        Tensor st = states[b], yb = y.rows(b, b + 1);
        short_conv(ctx, x.rows(b, b + 1), w, st, none, yb);
    }
}

SampleRows upload_sample_rows(const Context& ctx, const RowSampling* rows, int64_t n,
                              Arena& scratch) {
    SampleRows r;
    r.host = rows;
    r.rows = n;
    if (ctx.device == Device::kCPU || n == 0) return r;
    std::vector<int64_t> v(static_cast<size_t>(4 * n));
    for (int64_t b = 0; b < n; ++b) {
        const RowSampling& s = rows[b];
        uint32_t tbits = 0;
        std::memcpy(&tbits, &s.temperature, 4);
        const size_t o = static_cast<size_t>(4 * b);
        v[o] = static_cast<int64_t>(static_cast<uint64_t>(tbits) |
                                    (static_cast<uint64_t>(static_cast<uint32_t>(s.top_k)) << 32));
        v[o + 1] = static_cast<int64_t>(s.seed);
        v[o + 2] = s.counters ? address(s.counters->data) : 0;
        v[o + 3] = s.forbid;
    }
    r.table = upload_table(ctx, v, scratch).reshape({n, 4});
    return r;
}

void sample_rows(const Context& ctx, Tensor& logits, const SampleRows& rows, int counter_index,
                 Tensor& out) {
    const int64_t B = rows_of(logits), N = cols_of(logits);
    check_act(ctx, logits, "sample_rows", "logits");
    VOXRT_ASSERT(rows.rows == B && out.dtype == DType::kI32 && out.numel() == B,
                 "sample_rows: logits %s, %lld rows, out %s", logits.describe().c_str(),
                 static_cast<long long>(rows.rows), out.describe().c_str());
    for (int64_t b = 0; b < B; ++b) {
        const RowSampling& s = rows.host[b];
        const bool greedy = s.temperature <= 0.0f || s.top_k == 1;
        VOXRT_ASSERT(s.forbid < N && (greedy || (s.counters && s.counters->dtype == DType::kI32 &&
                                                 s.counters->numel() > counter_index)),
                     "sample_rows: row %lld forbids %lld of %lld, counters %s",
                     static_cast<long long>(b), static_cast<long long>(s.forbid),
                     static_cast<long long>(N),
                     s.counters ? s.counters->describe().c_str() : "none");
    }
    if (B == 0) return;
    if (!rows.table.empty() &&
        VOXRT_DISPATCH(sample_rows(ctx, logits, rows.table, counter_index, out)))
        return;
    for (int64_t b = 0; b < B; ++b) {
        const RowSampling& s = rows.host[b];
        Tensor lg = logits.rows(b, b + 1), ob = out.rows(b, b + 1);
        if (s.forbid >= 0) set_value(ctx, lg, s.forbid, -INFINITY);
        if (s.temperature <= 0.0f || s.top_k == 1) {
            argmax(ctx, lg, ob);
        } else {
            const Tensor ctr = s.counters->rows(counter_index, counter_index + 1);
            sample_top_k(ctx, lg, s.temperature, s.top_k, s.seed, ctr, ob);
        }
    }
}

void short_conv(const Context& ctx, const Tensor& x, const Tensor& w, Tensor& state,
                const Tensor& pos, Tensor& y) {
    VOXRT_ASSERT(x.ndim == 2 && w.numel() % x.shape[1] == 0 && state.ndim == 2 &&
                     state.shape[1] == x.shape[1] && state.shape[0] + 1 == w.numel() / x.shape[1] &&
                     y.numel() == x.numel(),
                 "short_conv: x %s w %s state %s", x.describe().c_str(), w.describe().c_str(),
                 state.describe().c_str());
    VOXRT_DISPATCH(short_conv(ctx, x, w, state, pos, y));
}

void argmax(const Context& ctx, const Tensor& logits, Tensor& out) {
    VOXRT_ASSERT(out.dtype == DType::kI32 && out.numel() == rows_of(logits),
                 "argmax: logits %s out %s", logits.describe().c_str(), out.describe().c_str());
    VOXRT_DISPATCH(argmax(ctx, logits, out));
}

void sample_top_k(const Context& ctx, const Tensor& logits, float temperature, int top_k,
                  uint64_t seed, const Tensor& counter, Tensor& out) {
    VOXRT_ASSERT(out.dtype == DType::kI32 && out.numel() == rows_of(logits) && temperature > 0 &&
                     counter.dtype == DType::kI32,
                 "sample_top_k: logits %s out %s T %g", logits.describe().c_str(),
                 out.describe().c_str(), temperature);
    VOXRT_DISPATCH(sample_top_k(ctx, logits, temperature, top_k, seed, counter, out));
}

void set_value(const Context& ctx, Tensor& t, int64_t index, float value) {
    VOXRT_ASSERT(
        index >= 0 && index < t.numel() && (t.dtype == DType::kF32 || t.dtype == DType::kBF16),
        "set_value: index %lld of %s", static_cast<long long>(index), t.describe().c_str());
    VOXRT_DISPATCH(set_value(ctx, t, index, value));
}

void increment(const Context& ctx, Tensor& t, int32_t delta) {
    check_device(ctx, t, "increment", "t");
    VOXRT_ASSERT(t.dtype == DType::kI32, "increment: t %s", t.describe().c_str());
    VOXRT_DISPATCH(increment(ctx, t, delta));
}

void fill_rows_led_by(const Context& ctx, Tensor& t, int32_t value) {
    check_device(ctx, t, "fill_rows_led_by", "t");
    VOXRT_ASSERT(t.dtype == DType::kI32 && t.ndim >= 1, "fill_rows_led_by: t %s",
                 t.describe().c_str());
    VOXRT_DISPATCH(fill_rows_led_by(ctx, t, value));
}

void copy_to_host_async(const Context& ctx, const Tensor& src, Tensor& dst) {
    check_device(ctx, src, "copy_to_host_async", "src");
    VOXRT_ASSERT(dst.device == Device::kCPU && src.dtype == dst.dtype && src.numel() == dst.numel(),
                 "copy_to_host_async: src %s dst %s", src.describe().c_str(),
                 dst.describe().c_str());
    VOXRT_DISPATCH(copy_to_host_async(ctx, src, dst));
}

void copy(const Context& ctx, const Tensor& src, Tensor& dst) {
    check_same(src, dst, "copy");
    // The backend of the device side does it (the host's for host-to-host copies).
    const Device side = src.device != Device::kCPU ? src.device : dst.device;
    VOXRT_ASSERT(
        src.device == dst.device || src.device == Device::kCPU || dst.device == Device::kCPU,
        "copy: %s to %s", device_name(src.device), device_name(dst.device));
    backend::entry_points_of(side).copy(ctx, src, dst);
}

void upload_async(const Context& ctx, const Tensor& src, Tensor& dst) {
    check_device(ctx, dst, "upload_async", "dst");
    VOXRT_ASSERT(src.device == Device::kCPU && src.dtype == dst.dtype && src.numel() == dst.numel(),
                 "upload_async: src %s dst %s", src.describe().c_str(), dst.describe().c_str());
    VOXRT_DISPATCH(upload_async(ctx, src, dst));
}

void zero(const Context& ctx, Tensor& t) {
    VOXRT_DISPATCH(zero(ctx, t));
}

void round_to_act(const Context& ctx, Tensor& t) {
    if (!ctx.round_bf16() || t.dtype != DType::kF32) return;
    VOXRT_DISPATCH(round_to_act(ctx, t));
}

void transpose(const Context& ctx, const Tensor& x, Tensor& y) {
    VOXRT_ASSERT(x.ndim == 2 && y.ndim == 2 && x.shape[0] == y.shape[1] &&
                     x.shape[1] == y.shape[0] && x.dtype == y.dtype,
                 "transpose: x %s y %s", x.describe().c_str(), y.describe().c_str());
    VOXRT_DISPATCH(transpose(ctx, x, y));
}

Status synchronize(const Context& ctx) {
    return VOXRT_DISPATCH(synchronize(ctx));
}

void range_push(const Context& ctx, const char* name) {
    VOXRT_DISPATCH(range_push(ctx, name));
}

void range_pop(const Context& ctx) {
    VOXRT_DISPATCH(range_pop(ctx));
}

float uniform_draw(uint64_t seed, uint32_t counter, uint32_t index) {
    return uniform_from_key(seed, counter, index);
}

}  // namespace voxrt::ops
