// Ops specific to the FastConformer audio encoder (NeMo ConformerEncoder as vendored by
// liquid-audio). Same contract as ops/ops.h: each op checks its arguments and calls the entry
// point of the backend that serves ctx.device (backend/entry_points.h). Activations
// use ctx.act_dtype(); with Precision::kBF16 every op rounds to bfloat16 exactly where the
// bf16 PyTorch reference holds a bf16 tensor (noted per op as "round(...)").
//
// Layouts. The subsampling stack works channel-last, x[t, f, c] (time, frequency, channel), so
// that its 1×1 convolutions are plain ops::linear calls over rows t·F + f. The reference works in
// NCHW (1, C, T, F); the layouts hold the same values.
//
// Lengths. NeMo's MaskedConvSequential zeroes time steps >= the running valid length before every
// layer and at the end. The subsampling ops take that length (t_valid): input rows t >= t_valid
// are read as zero, and output rows >= the next valid length are written as zero. For one
// unpadded segment the lengths equal the tensor sizes and nothing is masked.
//
// Chunks. The stride-2 convolutions can run on a window of time rows: x_row0 / y_row0 give the
// global index of a tensor's first row (time indices, padding and t_valid are global). The input
// window must hold every valid row the output window reads (checked).
//
// Small parameters (convolution kernels and biases, pos_bias_u/v, BatchNorm scale/shift) are F32
// tensors on ctx.device; the encoder converts them at load.
#pragma once

#include <cstdint>

#include "ops/ops.h"

namespace voxrt::ops {

// Conv2d(1 → C, kernel 3×3, stride 2, padding 1) + bias, then ReLU, over the log-mel image.
// mel [F, T] F32 (the whole encoder input: features × frames; element (t, f) of the reference's
// (T, F) image is mel[f, t]); values are rounded to bfloat16 on read when ctx.round_bf16() (the
// reference casts the mel to the model dtype). w [C, 9] F32, b [C] F32.
// y [rows, F1, C] act holds output rows y_row0 … y_row0+rows-1 of the [ceil(T/2), ceil(F/2), C]
// result y = relu(round(conv + b)).
void subsample_conv_in(const Context& ctx, const Tensor& mel, int64_t t_valid, const Tensor& w,
                       const Tensor& b, Tensor& y, int64_t y_row0);

// Depthwise Conv2d(C, kernel 3×3, stride 2, padding 1, groups C) + bias: y = round(conv + b).
// x [rows_x, F, C] act = input rows x_row0 …; y [rows_y, ceil(F/2), C] = output rows y_row0 ….
// w [C, 9] F32, b [C] F32. t_valid is the input's valid length (global).
void subsample_dw_conv(const Context& ctx, const Tensor& x, int64_t x_row0, int64_t t_valid,
                       const Tensor& w, const Tensor& b, Tensor& y, int64_t y_row0);

// NeMo's flatten before pre_encode.out: x [T, F, C] → y [T, C·F] with y[t, c·F + f] = x[t, f, c]
// (the reference's x.transpose(1, 2).reshape(b, t, c·f) on (B, C, T, F)). Rows >= t_valid are 0.
void subsample_flatten(const Context& ctx, const Tensor& x, int64_t t_valid, Tensor& y);

// Relative positional embeddings for T frames: y[r] = table[c - T + 1 + r], r = 0 .. 2T-2, where
// table [2P-1, D] F32 holds positions P-1 … -(P-1) (row i = position P-1-i, c = P-1 the row of
// position 0), so y holds positions T-1 … -(T-1) like NeMo's pe[:, center-T : center+T-1].
// Values are rounded to bfloat16 when round_table (the reference stores pe in the model dtype),
// independently of ctx.precision. y [2T-1, D] act.
void rel_pos_embed(const Context& ctx, const Tensor& table, int64_t T, bool round_table, Tensor& y);

// Transformer-XL relative-position self-attention (NeMo RelPositionMultiHeadAttention, eager
// path), no mask (one unpadded segment). Per head h, with Dk = D / H:
//   qu = round(q + u[h]), qv = round(q + v_bias[h])
//   ac[i, j] = round(qu_i · k_j),  bd[i, j] = round(qv_i · p[T-1-i+j])     (rel_shift)
//   s[i, j]  = round(round(ac + bd) / s_d_k)                                 (s_d_k = sqrt(Dk))
//   a = round(softmax_j(s))  (fp32 inside),  out_i = round(Σ_j a[i, j] v_j)
// q, k, v, out [T, D] act (heads interleaved as h·Dk + d, the layout of linear_q/k/v output);
// p [2T-1, D] act (linear_pos of rel_pos_embed, row r = position T-1-r); pos_bias_u/v [H, Dk] F32.
void rel_pos_attention(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& p, const Tensor& pos_bias_u, const Tensor& pos_bias_v,
                       int n_heads, Tensor& out);

// The middle of the Conformer convolution module, over time for each channel:
//   d = round(Σ_k w[c, k] · x[t + k - (K-1)/2, c] + b[c])     depthwise Conv1d, zero padding
//   n = round(d · bn_scale[c] + bn_shift[c])                    BatchNorm1d (eval), folded
//   y = round(silu(n))
// x, y [T, C] act (y must not alias x); w [C, K] F32 (K odd); b, bn_scale, bn_shift [C] F32.
// bn_scale = weight / sqrt(running_var + eps), bn_shift = bias - running_mean · bn_scale, which
// is how PyTorch's CPU kernel evaluates BatchNorm (fp32 alpha/beta, one rounding of the output).
void conv_dw_bn_silu(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b,
                     const Tensor& bn_scale, const Tensor& bn_shift, Tensor& y);

}  // namespace voxrt::ops
