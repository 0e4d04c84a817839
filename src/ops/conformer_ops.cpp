#include "ops/conformer_ops.h"

#include <algorithm>

#include "core/check.h"
#include "ops/dispatch.h"

namespace voxrt::ops {

namespace {

void check_act(const Context& ctx, const Tensor& t, const char* op, const char* name) {
    VOXRT_ASSERT(t.device == ctx.device && t.dtype == ctx.act_dtype(),
                 "%s: %s is %s, context wants %s on %s", op, name, t.describe().c_str(),
                 dtype_name(ctx.act_dtype()), device_name(ctx.device));
}

void check_param(const Context& ctx, const Tensor& t, int64_t numel, const char* op,
                 const char* name) {
    VOXRT_ASSERT(t.device == ctx.device && t.dtype == DType::kF32 && t.numel() == numel,
                 "%s: %s is %s, want %lld F32 values on %s", op, name, t.describe().c_str(),
                 static_cast<long long>(numel), device_name(ctx.device));
}

// Output size of a kernel-3, stride-2, padding-1 convolution.
int64_t half_up(int64_t n) {
    return (n + 1) / 2;
}

}  // namespace

void subsample_conv_in(const Context& ctx, const Tensor& mel, int64_t t_valid, const Tensor& w,
                       const Tensor& b, Tensor& y, int64_t y_row0) {
    VOXRT_ASSERT(mel.device == ctx.device && mel.dtype == DType::kF32 && mel.ndim == 2,
                 "subsample_conv_in: mel %s", mel.describe().c_str());
    check_act(ctx, y, "subsample_conv_in", "y");
    const int64_t F = mel.shape[0], T = mel.shape[1];
    VOXRT_ASSERT(
        y.ndim == 3 && y_row0 >= 0 && y_row0 + y.shape[0] <= half_up(T) && y.shape[1] == half_up(F),
        "subsample_conv_in: mel %s y %s from row %lld", mel.describe().c_str(),
        y.describe().c_str(), static_cast<long long>(y_row0));
    const int64_t C = y.shape[2];
    check_param(ctx, w, C * 9, "subsample_conv_in", "w");
    check_param(ctx, b, C, "subsample_conv_in", "b");
    VOXRT_ASSERT(t_valid >= 0 && t_valid <= T, "subsample_conv_in: t_valid %lld of %lld",
                 static_cast<long long>(t_valid), static_cast<long long>(T));
    VOXRT_DISPATCH(subsample_conv_in(ctx, mel, t_valid, w, b, y, y_row0));
}

void subsample_dw_conv(const Context& ctx, const Tensor& x, int64_t x_row0, int64_t t_valid,
                       const Tensor& w, const Tensor& b, Tensor& y, int64_t y_row0) {
    check_act(ctx, x, "subsample_dw_conv", "x");
    check_act(ctx, y, "subsample_dw_conv", "y");
    VOXRT_ASSERT(x.ndim == 3 && y.ndim == 3 && y.shape[1] == half_up(x.shape[1]) &&
                     y.shape[2] == x.shape[2] && x_row0 >= 0 && y_row0 >= 0 && t_valid >= 0,
                 "subsample_dw_conv: x %s y %s", x.describe().c_str(), y.describe().c_str());
    // Valid input rows the output rows read: [2·y_row0 - 1, 2·y_end) ∩ [0, t_valid).
    const int64_t need0 = std::max<int64_t>(0, 2 * y_row0 - 1);
    const int64_t need1 = std::min<int64_t>(t_valid, 2 * (y_row0 + y.shape[0]));
    VOXRT_ASSERT(need0 >= need1 || (need0 >= x_row0 && need1 <= x_row0 + x.shape[0]),
                 "subsample_dw_conv: output rows [%lld, %lld) read input rows [%lld, %lld), x "
                 "holds [%lld, %lld)",
                 static_cast<long long>(y_row0), static_cast<long long>(y_row0 + y.shape[0]),
                 static_cast<long long>(need0), static_cast<long long>(need1),
                 static_cast<long long>(x_row0), static_cast<long long>(x_row0 + x.shape[0]));
    check_param(ctx, w, x.shape[2] * 9, "subsample_dw_conv", "w");
    check_param(ctx, b, x.shape[2], "subsample_dw_conv", "b");
    VOXRT_DISPATCH(subsample_dw_conv(ctx, x, x_row0, t_valid, w, b, y, y_row0));
}

void subsample_flatten(const Context& ctx, const Tensor& x, int64_t t_valid, Tensor& y) {
    check_act(ctx, x, "subsample_flatten", "x");
    check_act(ctx, y, "subsample_flatten", "y");
    VOXRT_ASSERT(x.ndim == 3 && y.ndim == 2 && y.shape[0] == x.shape[0] &&
                     y.shape[1] == x.shape[1] * x.shape[2],
                 "subsample_flatten: x %s y %s", x.describe().c_str(), y.describe().c_str());
    VOXRT_ASSERT(t_valid >= 0 && t_valid <= x.shape[0], "subsample_flatten: t_valid %lld of %lld",
                 static_cast<long long>(t_valid), static_cast<long long>(x.shape[0]));
    VOXRT_DISPATCH(subsample_flatten(ctx, x, t_valid, y));
}

void rel_pos_embed(const Context& ctx, const Tensor& table, int64_t T, bool round_table,
                   Tensor& y) {
    VOXRT_ASSERT(table.device == ctx.device && table.dtype == DType::kF32 && table.ndim == 2 &&
                     table.shape[0] % 2 == 1,
                 "rel_pos_embed: table %s", table.describe().c_str());
    check_act(ctx, y, "rel_pos_embed", "y");
    const int64_t P = (table.shape[0] + 1) / 2;
    VOXRT_ASSERT(
        T >= 1 && T <= P && y.ndim == 2 && y.shape[0] == 2 * T - 1 && y.shape[1] == table.shape[1],
        "rel_pos_embed: T %lld, table %s (positions up to %lld), y %s", static_cast<long long>(T),
        table.describe().c_str(), static_cast<long long>(P - 1), y.describe().c_str());
    VOXRT_DISPATCH(rel_pos_embed(ctx, table, T, round_table, y));
}

void rel_pos_attention(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& p, const Tensor& pos_bias_u, const Tensor& pos_bias_v,
                       int n_heads, Tensor& out) {
    check_act(ctx, q, "rel_pos_attention", "q");
    check_act(ctx, k, "rel_pos_attention", "k");
    check_act(ctx, v, "rel_pos_attention", "v");
    check_act(ctx, p, "rel_pos_attention", "p");
    check_act(ctx, out, "rel_pos_attention", "out");
    VOXRT_ASSERT(q.ndim == 2 && n_heads > 0 && q.shape[1] % n_heads == 0 && k.ndim == 2 &&
                     v.ndim == 2 && out.ndim == 2 && p.ndim == 2 && k.shape[0] == q.shape[0] &&
                     v.shape[0] == q.shape[0] && out.shape[0] == q.shape[0] &&
                     k.shape[1] == q.shape[1] && v.shape[1] == q.shape[1] &&
                     out.shape[1] == q.shape[1] && p.shape[1] == q.shape[1] &&
                     p.shape[0] == 2 * q.shape[0] - 1,
                 "rel_pos_attention: q %s k %s v %s p %s out %s H %d", q.describe().c_str(),
                 k.describe().c_str(), v.describe().c_str(), p.describe().c_str(),
                 out.describe().c_str(), n_heads);
    VOXRT_ASSERT(out.data != q.data && out.data != k.data && out.data != v.data,
                 "rel_pos_attention: out must not alias an input");
    check_param(ctx, pos_bias_u, q.shape[1], "rel_pos_attention", "pos_bias_u");
    check_param(ctx, pos_bias_v, q.shape[1], "rel_pos_attention", "pos_bias_v");
    VOXRT_DISPATCH(rel_pos_attention(ctx, q, k, v, p, pos_bias_u, pos_bias_v, n_heads, out));
}

void conv_dw_bn_silu(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                     const Tensor& bn_scale, const Tensor& bn_shift, Tensor& y) {
    check_act(ctx, x, "conv_dw_bn_silu", "x");
    check_act(ctx, y, "conv_dw_bn_silu", "y");
    VOXRT_ASSERT(x.ndim == 2 && y.ndim == 2 && x.shape[0] == y.shape[0] &&
                     x.shape[1] == y.shape[1] && x.data != y.data,
                 "conv_dw_bn_silu: x %s y %s (must not alias)", x.describe().c_str(),
                 y.describe().c_str());
    const int64_t C = x.shape[1];
    VOXRT_ASSERT(w.ndim == 2 && w.shape[0] == C && w.shape[1] % 2 == 1,
                 "conv_dw_bn_silu: w %s for %lld channels (odd kernel)", w.describe().c_str(),
                 static_cast<long long>(C));
    check_param(ctx, w, C * w.shape[1], "conv_dw_bn_silu", "w");
    check_param(ctx, b, C, "conv_dw_bn_silu", "b");
    check_param(ctx, bn_scale, C, "conv_dw_bn_silu", "bn_scale");
    check_param(ctx, bn_shift, C, "conv_dw_bn_silu", "bn_shift");
    VOXRT_DISPATCH(conv_dw_bn_silu(ctx, x, w, b, bn_scale, bn_shift, y));
}

}  // namespace voxrt::ops
