#include "model/audio_encoder.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "audio/wav.h"
#include "ops/conformer_ops.h"

namespace voxrt::model {

namespace {

// Output frames per chunk of the subsampling stack, which runs in time chunks so that its
// full-resolution first stage (T/2 × F/2 × C values) never exists whole.
constexpr int64_t kSubsampleChunk = 64;

// Longest segment encode() accepts, in mel frames: the longest recording the WAV reader accepts
// (WavOptions::max_seconds, 600 s), resampled to the preprocessor's rate and cut into frames as
// MelFrontend::shape does (one per hop, plus one). The reference has no limit (it rebuilds its
// table past pos_emb_max_len); the table this sizes is [2·T'-1, D] F32 with T' = ceil(T / 8):
// 60001 frames at d_model 512 is 31 MB.
int64_t longest_segment(const PreprocessorConfig& pp) {
    const double max_seconds = audio::WavOptions{}.max_seconds;
    const auto hop = std::max<int64_t>(1, static_cast<int64_t>(pp.window_stride * pp.sample_rate));
    const auto samples = static_cast<int64_t>(std::ceil(max_seconds * pp.sample_rate));
    return samples / hop + 1;
}
constexpr float kNormEps = 1e-5f;  // nn.LayerNorm / nn.BatchNorm1d default
constexpr double kBatchNormEps = 1e-5;

// Output length of a kernel-3, stride-2, padding-1 convolution: (L + 2 - 3) // 2 + 1.
int64_t half_up(int64_t n) {
    return (n + 1) / 2;
}

// Fetches tensors for one component and keeps the first error, so that load() reads as a list.
class Loader {
public:
    Loader(const io::SafeTensorsFile& file, WeightStore& store) : file_(file), store_(store) {}

    // As stored (BF16 or F32), with an exact shape check; `view` reshapes ([N, K, 1] → [N, K]).
    Tensor get(const std::string& name, std::vector<int64_t> shape,
               std::initializer_list<int64_t> view = {}) {
        if (!status_.is_ok()) return {};
        Expected<Tensor> t = store_.fetch(file_, name, shape);
        if (!t.is_ok()) {
            status_ = t.status();
            return {};
        }
        return view.size() ? t->reshape(view) : *t;
    }

    // Converted to F32 on the host and uploaded (small parameters read by the conformer ops).
    Tensor get_f32(const std::string& name, std::vector<int64_t> shape,
                   std::initializer_list<int64_t> view) {
        std::vector<float> v = host_f32(name, std::move(shape));
        return upload(std::move(v), view);
    }

    std::vector<float> host_f32(const std::string& name, std::vector<int64_t> shape) {
        if (!status_.is_ok()) return {};
        Expected<std::vector<float>> v = store_.fetch_host_f32(file_, name, shape);
        if (!v.is_ok()) {
            status_ = v.status();
            return {};
        }
        return std::move(v).value();
    }

    Tensor upload(std::vector<float> v, std::initializer_list<int64_t> shape) {
        if (!status_.is_ok()) return {};
        Expected<Tensor> t = store_.upload_f32(std::move(v), shape);
        if (!t.is_ok()) {
            status_ = t.status();
            return {};
        }
        return *t;
    }

    const Status& status() const { return status_; }

private:
    const io::SafeTensorsFile& file_;
    WeightStore& store_;
    Status status_;
};

Status unsupported(const char* field, const std::string& value) {
    return make_error(StatusCode::kUnsupported, "[encoder] encoder.%s = %s is not supported", field,
                      value.c_str());
}

}  // namespace

std::vector<float> conformer_pos_table(int64_t n_pos, int d_model) {
    // torch: div_term = exp(arange(0, d, 2, float32) * -(log(10000) / d)), the scalar rounded
    // to float first; pe = sin/cos(position * div_term) in float32.
    const float scale = static_cast<float>(-(std::log(10000.0) / d_model));
    std::vector<float> div(static_cast<size_t>(d_model / 2));
    for (int m = 0; m < d_model / 2; ++m) div[m] = std::exp(static_cast<float>(2 * m) * scale);
    const int64_t rows = 2 * n_pos - 1;
    std::vector<float> pe(static_cast<size_t>(rows * d_model));
    for (int64_t i = 0; i < rows; ++i) {
        const float pos = static_cast<float>(n_pos - 1 - i);
        float* r = pe.data() + i * d_model;
        for (int m = 0; m < d_model / 2; ++m) {
            const float a = pos * div[m];
            r[2 * m] = std::sin(a);
            r[2 * m + 1] = std::cos(a);
        }
    }
    return pe;
}

// Per-encode sizes.
struct AudioEncoder::Dims {
    int64_t T = 0;              // mel frames
    std::vector<int64_t> t, f;  // time / frequency size after each subsampling stage (t[0] = T)
    std::vector<int64_t> cap;   // rows of stage s output held per chunk (cap[0] unused)
    int64_t n = 0;              // T' (frames after subsampling)
};

// Every per-encode buffer. The residual stream is enc_out itself. Subsampling temporaries are
// carved after the layer buffers; they are dead once the layers run, but releasing them would not
// lower the arena's peak, so all are carved once.
struct AudioEncoder::Buffers {
    Tensor h;             // [n, D]  normalized input of a branch
    Tensor ff;            // [n, Dff]
    Tensor t;             // [n, D]  branch output
    Tensor q, k, v, att;  // [n, D]
    Tensor pos;           // [2n-1, D] positional table slice
    Tensor p;             // [2n-1, D] linear_pos(pos)
    Tensor pw;            // [n, 2D] pointwise_conv1 output
    Tensor glu;           // [n, D]
    Tensor dw;            // [n, D]  depthwise → BatchNorm → SiLU
    Tensor ad;            // [n, hidden] adapter hidden layer
    // pre_encode, per time chunk (see Dims::cap)
    Tensor mel;                  // [F, T] F32 on the device (GPU only; the CPU reads the host mel)
    std::vector<Tensor> stage;   // [s-1]: stage s output after ReLU [cap_s, f_s, C]
    std::vector<Tensor> dw_out;  // [s-2]: stage s ≥ 2 depthwise output [cap_s, f_s, C]
    Tensor flat;                 // [cap_last, C·f_last]
};

AudioEncoder::Buffers AudioEncoder::carve(Arena* arena, const Dims& d, const ops::Context& ctx,
                                          size_t* bytes) const {
    const DType at = ctx.act_dtype();
    const Device dev = ctx.device;
    const int64_t n = d.n, D = d_model_, C = conv_channels_;
    size_t total = 0;
    auto take = [&](DType dt, std::initializer_list<int64_t> dims) {
        Tensor t = Tensor::make(nullptr, dt, dev, dims);
        total += arena_bytes(dt, t.numel());
        return arena ? arena->alloc(dt, dims) : t;
    };
    Buffers b;
    b.h = take(at, {n, D});
    b.ff = take(at, {n, d_ff_});
    b.t = take(at, {n, D});
    b.q = take(at, {n, D});
    b.k = take(at, {n, D});
    b.v = take(at, {n, D});
    b.att = take(at, {n, D});
    b.pos = take(at, {2 * n - 1, D});
    b.p = take(at, {2 * n - 1, D});
    b.pw = take(at, {n, 2 * D});
    b.glu = take(at, {n, D});
    b.dw = take(at, {n, D});
    b.ad = take(at, {n, adapter_dim_});
    if (dev != Device::kCPU) b.mel = take(DType::kF32, {feat_in_, d.T});
    for (int s = 1; s <= n_stages_; ++s) {
        if (s > 1) b.dw_out.push_back(take(at, {d.cap[s], d.f[s], C}));
        b.stage.push_back(take(at, {d.cap[s], d.f[s], C}));
    }
    b.flat = take(at, {d.cap[n_stages_], C * d.f.back()});
    if (bytes) *bytes = total;
    return b;
}

AudioEncoder::Dims AudioEncoder::dims_for(int64_t T) const {
    Dims d;
    d.T = T;
    d.t.push_back(T);
    d.f.push_back(feat_in_);
    for (int s = 0; s < n_stages_; ++s) {
        d.t.push_back(half_up(d.t.back()));
        d.f.push_back(half_up(d.f.back()));
    }
    d.n = d.t.back();
    // A chunk of c output rows of stage s reads at most 2c + 1 rows of stage s - 1.
    d.cap.assign(d.t.size(), 0);
    d.cap[n_stages_] = std::min(d.n, kSubsampleChunk);
    for (int s = n_stages_; s > 1; --s) d.cap[s - 1] = std::min(d.t[s - 1], 2 * d.cap[s] + 1);
    return d;
}

int64_t AudioEncoder::output_frames(int64_t n_mel_frames) const {
    return dims_for(n_mel_frames).n;
}

Expected<AudioEncoder> AudioEncoder::load(const AudioModelConfig& config,
                                          const io::SafeTensorsFile& model_file, WeightStore& store,
                                          bool bf16_pos_table) {
    const EncoderConfig& ec = config.encoder;
    if (ec.subsampling != "dw_striding") return unsupported("subsampling", ec.subsampling);
    if (ec.self_attention_model != "rel_pos")
        return unsupported("self_attention_model", ec.self_attention_model);
    if (ec.conv_norm_type != "batch_norm") return unsupported("conv_norm_type", ec.conv_norm_type);
    if (ec.xscaling) return unsupported("xscaling", "true");
    if (ec.causal_downsampling) return unsupported("causal_downsampling", "true");
    if (ec.feat_out > 0 && ec.feat_out != ec.d_model)
        return unsupported("feat_out", std::to_string(ec.feat_out));
    const int factor = ec.subsampling_factor;
    if (factor < 2 || (factor & (factor - 1)) != 0)
        return unsupported("subsampling_factor", std::to_string(factor));
    if (ec.d_model <= 0 || ec.n_heads <= 0 || ec.d_model % ec.n_heads != 0 || ec.d_model % 2 != 0)
        return make_error(StatusCode::kInvalidFile, "[encoder] d_model %d, n_heads %d", ec.d_model,
                          ec.n_heads);
    if (ec.conv_kernel_size <= 0 || ec.conv_kernel_size % 2 == 0)
        return unsupported("conv_kernel_size", std::to_string(ec.conv_kernel_size));

    AudioEncoder e;
    e.feat_in_ = ec.feat_in;
    e.d_model_ = ec.d_model;
    e.d_ff_ = ec.d_model * ec.ff_expansion_factor;
    e.n_heads_ = ec.n_heads;
    e.conv_channels_ = ec.subsampling_conv_channels > 0 ? ec.subsampling_conv_channels : ec.d_model;
    e.n_stages_ = 0;
    for (int f = factor; f > 1; f /= 2) ++e.n_stages_;
    e.conv_kernel_ = ec.conv_kernel_size;
    e.adapter_dim_ = config.lfm.hidden_size;
    e.pos_emb_max_len_ = ec.pos_emb_max_len;
    e.bf16_pos_table_ = bf16_pos_table;
    e.max_mel_frames_ = std::max<int64_t>(ec.pos_emb_max_len, longest_segment(config.preprocessor));

    const int64_t D = e.d_model_, C = e.conv_channels_, Dff = e.d_ff_, H = e.n_heads_;
    const int64_t Dk = D / H, K = e.conv_kernel_, A = e.adapter_dim_;
    Loader ld(model_file, store);

    // pre_encode: conv.0 (full 1→C), then per stage s ≥ 1 conv.{3s-1} (depthwise) and conv.{3s}
    // (pointwise); ReLUs at conv.1, conv.4, conv.7, … carry no weights.
    const std::string pre = "conformer.pre_encode.";
    e.sub_conv0_w_ = ld.get_f32(pre + "conv.0.weight", {C, 1, 3, 3}, {C, 9});
    e.sub_conv0_b_ = ld.get_f32(pre + "conv.0.bias", {C}, {C});
    for (int s = 1; s < e.n_stages_; ++s) {
        const std::string dw = pre + "conv." + std::to_string(3 * s - 1) + ".";
        const std::string pw = pre + "conv." + std::to_string(3 * s) + ".";
        e.sub_dw_w_.push_back(ld.get_f32(dw + "weight", {C, 1, 3, 3}, {C, 9}));
        e.sub_dw_b_.push_back(ld.get_f32(dw + "bias", {C}, {C}));
        e.sub_pw_w_.push_back(ld.get(pw + "weight", {C, C, 1, 1}, {C, C}));
        e.sub_pw_b_.push_back(ld.get(pw + "bias", {C}));
    }
    const int64_t f_out = e.dims_for(1).f.back();
    e.sub_out_w_ = ld.get(pre + "out.weight", {D, C * f_out});
    e.sub_out_b_ = ld.get(pre + "out.bias", {D});

    const int64_t n_pos = e.output_frames(e.max_mel_frames_);
    e.pos_table_ = ld.upload(conformer_pos_table(n_pos, e.d_model_), {2 * n_pos - 1, D});

    for (int i = 0; i < ec.n_layers; ++i) {
        const std::string p = "conformer.layers." + std::to_string(i) + ".";
        Layer l;
        l.ff1_norm_w = ld.get(p + "norm_feed_forward1.weight", {D});
        l.ff1_norm_b = ld.get(p + "norm_feed_forward1.bias", {D});
        l.ff1_w1 = ld.get(p + "feed_forward1.linear1.weight", {Dff, D});
        l.ff1_b1 = ld.get(p + "feed_forward1.linear1.bias", {Dff});
        l.ff1_w2 = ld.get(p + "feed_forward1.linear2.weight", {D, Dff});
        l.ff1_b2 = ld.get(p + "feed_forward1.linear2.bias", {D});
        l.att_norm_w = ld.get(p + "norm_self_att.weight", {D});
        l.att_norm_b = ld.get(p + "norm_self_att.bias", {D});
        l.wq = ld.get(p + "self_attn.linear_q.weight", {D, D});
        l.bq = ld.get(p + "self_attn.linear_q.bias", {D});
        l.wk = ld.get(p + "self_attn.linear_k.weight", {D, D});
        l.bk = ld.get(p + "self_attn.linear_k.bias", {D});
        l.wv = ld.get(p + "self_attn.linear_v.weight", {D, D});
        l.bv = ld.get(p + "self_attn.linear_v.bias", {D});
        l.wo = ld.get(p + "self_attn.linear_out.weight", {D, D});
        l.bo = ld.get(p + "self_attn.linear_out.bias", {D});
        l.w_pos = ld.get(p + "self_attn.linear_pos.weight", {D, D});
        l.pos_bias_u = ld.get_f32(p + "self_attn.pos_bias_u", {H, Dk}, {H, Dk});
        l.pos_bias_v = ld.get_f32(p + "self_attn.pos_bias_v", {H, Dk}, {H, Dk});
        l.conv_norm_w = ld.get(p + "norm_conv.weight", {D});
        l.conv_norm_b = ld.get(p + "norm_conv.bias", {D});
        l.pw1_w = ld.get(p + "conv.pointwise_conv1.weight", {2 * D, D, 1}, {2 * D, D});
        l.pw1_b = ld.get(p + "conv.pointwise_conv1.bias", {2 * D});
        l.dw_w = ld.get_f32(p + "conv.depthwise_conv.weight", {D, 1, K}, {D, K});
        l.dw_b = ld.get_f32(p + "conv.depthwise_conv.bias", {D}, {D});
        // BatchNorm1d (eval) as PyTorch's CPU kernel evaluates it: alpha = invstd · weight,
        // beta = bias - mean · alpha, in fp32 from the stored (bf16) parameters.
        {
            std::vector<float> g = ld.host_f32(p + "conv.batch_norm.weight", {D});
            std::vector<float> bb = ld.host_f32(p + "conv.batch_norm.bias", {D});
            std::vector<float> mean = ld.host_f32(p + "conv.batch_norm.running_mean", {D});
            std::vector<float> var = ld.host_f32(p + "conv.batch_norm.running_var", {D});
            std::vector<float> scale(static_cast<size_t>(D)), shift(static_cast<size_t>(D));
            if (ld.status().is_ok()) {
                for (int64_t c = 0; c < D; ++c) {
                    const float invstd =
                        1.0f / std::sqrt(var[c] + static_cast<float>(kBatchNormEps));
                    scale[c] = invstd * g[c];
                    shift[c] = bb[c] - mean[c] * scale[c];
                }
            }
            l.bn_scale = ld.upload(std::move(scale), {D});
            l.bn_shift = ld.upload(std::move(shift), {D});
        }
        l.pw2_w = ld.get(p + "conv.pointwise_conv2.weight", {D, D, 1}, {D, D});
        l.pw2_b = ld.get(p + "conv.pointwise_conv2.bias", {D});
        l.ff2_norm_w = ld.get(p + "norm_feed_forward2.weight", {D});
        l.ff2_norm_b = ld.get(p + "norm_feed_forward2.bias", {D});
        l.ff2_w1 = ld.get(p + "feed_forward2.linear1.weight", {Dff, D});
        l.ff2_b1 = ld.get(p + "feed_forward2.linear1.bias", {Dff});
        l.ff2_w2 = ld.get(p + "feed_forward2.linear2.weight", {D, Dff});
        l.ff2_b2 = ld.get(p + "feed_forward2.linear2.bias", {D});
        l.out_norm_w = ld.get(p + "norm_out.weight", {D});
        l.out_norm_b = ld.get(p + "norm_out.bias", {D});
        e.layers_.push_back(l);
    }

    e.ad_norm_w_ = ld.get("audio_adapter.model.0.weight", {D});
    e.ad_norm_b_ = ld.get("audio_adapter.model.0.bias", {D});
    e.ad_w1_ = ld.get("audio_adapter.model.1.weight", {A, D});
    e.ad_b1_ = ld.get("audio_adapter.model.1.bias", {A});
    e.ad_w2_ = ld.get("audio_adapter.model.3.weight", {A, A});
    e.ad_b2_ = ld.get("audio_adapter.model.3.bias", {A});

    if (!ld.status().is_ok()) return ld.status().with_context("[encoder] load");
    return e;
}

size_t AudioEncoder::workspace_bytes(int64_t n_mel_frames, const ops::Context& ctx) const {
    size_t bytes = 0;
    carve(nullptr, dims_for(n_mel_frames), ctx, &bytes);
    return bytes;
}

void AudioEncoder::subsample(const ops::Context& ctx, const Tensor& mel, const Dims& d,
                             const Buffers& b, Tensor& x) const {
    const int S = n_stages_;
    const int64_t C = conv_channels_;
    // Valid lengths of MaskedConvSequential per stage; equal to the sizes for one unpadded segment.
    std::vector<int64_t> len(S + 1);
    len[0] = d.T;
    for (int s = 1; s <= S; ++s) len[s] = half_up(len[s - 1]);

    // Time chunks of the output; each stage computes the rows the next one reads.
    std::vector<int64_t> lo(S + 1), hi(S + 1);
    for (int64_t o0 = 0; o0 < d.n; o0 += kSubsampleChunk) {
        lo[S] = o0;
        hi[S] = std::min(d.n, o0 + kSubsampleChunk);
        for (int s = S; s > 1; --s) {
            lo[s - 1] = std::max<int64_t>(0, 2 * lo[s] - 1);
            hi[s - 1] = std::min(d.t[s - 1], 2 * hi[s]);
        }
        // conv.0 (1 → C, 3×3 stride 2) + ReLU: mel [F, T] → stage 1 rows [lo1, hi1) [·, f1, C]
        Tensor s_in = b.stage[0].rows(0, hi[1] - lo[1]);
        ops::subsample_conv_in(ctx, mel, len[0], sub_conv0_w_, sub_conv0_b_, s_in, lo[1]);
        for (int s = 2; s <= S; ++s) {
            // depthwise 3×3 stride 2 → pointwise 1×1 → ReLU: stage s-1 rows → stage s rows
            const int64_t rows = hi[s] - lo[s];
            Tensor dw = b.dw_out[s - 2].rows(0, rows);
            ops::subsample_dw_conv(ctx, s_in, lo[s - 1], len[s - 1], sub_dw_w_[s - 2],
                                   sub_dw_b_[s - 2], dw, lo[s]);
            Tensor dw_rows = dw.reshape({rows * d.f[s], C});
            Tensor pw_rows = b.stage[s - 1].rows(0, rows).reshape({rows * d.f[s], C});
            ops::linear(ctx, dw_rows, sub_pw_w_[s - 2], &sub_pw_b_[s - 2], pw_rows);
            ops::activation(ctx, ops::Activation::kRelu, pw_rows, pw_rows);
            s_in = b.stage[s - 1].rows(0, rows);
        }
        // Flatten channel-major, then out: [rows, C·f] → x rows [o0, o1) of [n, D]
        const int64_t rows = hi[S] - lo[S];
        Tensor flat = b.flat.rows(0, rows);
        ops::subsample_flatten(ctx, s_in, std::clamp<int64_t>(len[S] - lo[S], 0, rows), flat);
        Tensor x_rows = x.rows(lo[S], hi[S]);
        ops::linear(ctx, flat, sub_out_w_, &sub_out_b_, x_rows);
    }
}

void AudioEncoder::conformer_layer(const ops::Context& ctx, const Layer& l, const Buffers& b,
                                   Tensor& x) const {
    Tensor h = b.h, ff = b.ff, t = b.t, q = b.q, k = b.k, v = b.v, att = b.att;
    Tensor p = b.p, pw = b.pw, glu = b.glu, dw = b.dw;

    // x += ½ · FF1(LN(x)),  FF = Linear → SiLU → Linear
    ops::layer_norm(ctx, x, l.ff1_norm_w, l.ff1_norm_b, kNormEps, h);
    ops::linear(ctx, h, l.ff1_w1, &l.ff1_b1, ff);
    ops::activation(ctx, ops::Activation::kSilu, ff, ff);
    ops::linear(ctx, ff, l.ff1_w2, &l.ff1_b2, t);
    ops::add_scaled(ctx, x, t, 0.5f, x);

    // x += MHSA_relpos(LN(x))
    ops::layer_norm(ctx, x, l.att_norm_w, l.att_norm_b, kNormEps, h);
    ops::linear(ctx, h, l.wq, &l.bq, q);
    ops::linear(ctx, h, l.wk, &l.bk, k);
    ops::linear(ctx, h, l.wv, &l.bv, v);
    ops::linear(ctx, b.pos, l.w_pos, nullptr, p);  // [2n-1, D]
    ops::rel_pos_attention(ctx, q, k, v, p, l.pos_bias_u, l.pos_bias_v, n_heads_, att);
    ops::linear(ctx, att, l.wo, &l.bo, t);
    ops::add(ctx, x, t, x);

    // x += Conv(LN(x)),  Conv = pointwise → GLU → depthwise → BatchNorm → SiLU → pointwise
    ops::layer_norm(ctx, x, l.conv_norm_w, l.conv_norm_b, kNormEps, h);
    ops::linear(ctx, h, l.pw1_w, &l.pw1_b, pw);  // [n, 2D]
    ops::glu(ctx, pw, glu);                      // [n, D]
    ops::conv_dw_bn_silu(ctx, glu, l.dw_w, l.dw_b, l.bn_scale, l.bn_shift, dw);
    ops::linear(ctx, dw, l.pw2_w, &l.pw2_b, t);
    ops::add(ctx, x, t, x);

    // x += ½ · FF2(LN(x))
    ops::layer_norm(ctx, x, l.ff2_norm_w, l.ff2_norm_b, kNormEps, h);
    ops::linear(ctx, h, l.ff2_w1, &l.ff2_b1, ff);
    ops::activation(ctx, ops::Activation::kSilu, ff, ff);
    ops::linear(ctx, ff, l.ff2_w2, &l.ff2_b2, t);
    ops::add_scaled(ctx, x, t, 0.5f, x);

    // x = LN_out(x)
    ops::layer_norm(ctx, x, l.out_norm_w, l.out_norm_b, kNormEps, x);
}

Status AudioEncoder::encode(const ops::Context& ctx, const float* mel, int64_t T, Arena& scratch,
                            Tensor& enc_out, Tensor& adapter_out) const {
    if (!mel) return make_error(StatusCode::kInvalidArgument, "[encoder] mel is null");
    if (T < 1 || T > max_mel_frames_)
        return make_error(StatusCode::kOutOfRange,
                          "[encoder] %lld mel frames; one segment must have 1 to %lld",
                          static_cast<long long>(T), static_cast<long long>(max_mel_frames_));
    const Tensor m =
        Tensor::make(const_cast<float*>(mel), DType::kF32, Device::kCPU, {feat_in_, T});
    return encode(ctx, m, scratch, enc_out, adapter_out);
}

Status AudioEncoder::encode(const ops::Context& ctx, const Tensor& mel, Arena& scratch,
                            Tensor& enc_out, Tensor& adapter_out) const {
    if (mel.dtype != DType::kF32 || mel.ndim != 2 || mel.shape[0] != feat_in_ ||
        mel.data == nullptr || (mel.device != Device::kCPU && mel.device != ctx.device))
        return make_error(StatusCode::kInvalidArgument,
                          "[encoder] mel is %s, expected [%lld, T] F32 on the host or %s",
                          mel.describe().c_str(), static_cast<long long>(feat_in_),
                          device_name(ctx.device));
    const int64_t T = mel.shape[1];
    if (T < 1 || T > max_mel_frames_)
        return make_error(StatusCode::kOutOfRange,
                          "[encoder] %lld mel frames; one segment must have 1 to %lld",
                          static_cast<long long>(T), static_cast<long long>(max_mel_frames_));
    const Dims d = dims_for(T);
    const DType at = ctx.act_dtype();
    auto check_out = [&](const Tensor& t, int64_t cols, const char* name) -> Status {
        if (t.data == nullptr || t.device != ctx.device || t.dtype != at || t.ndim != 2 ||
            t.shape[0] != d.n || t.shape[1] != cols)
            return make_error(
                StatusCode::kInvalidArgument, "[encoder] %s is %s, expected [%lld, %lld] %s on %s",
                name, t.describe().c_str(), static_cast<long long>(d.n),
                static_cast<long long>(cols), dtype_name(at), device_name(ctx.device));
        return Status::ok();
    };
    VOXRT_RETURN_IF_ERROR(check_out(enc_out, d_model_, "enc_out"));
    VOXRT_RETURN_IF_ERROR(check_out(adapter_out, adapter_dim_, "adapter_out"));
    const size_t need = workspace_bytes(T, ctx), free_bytes = scratch.capacity() - scratch.mark();
    if (scratch.device() != ctx.device || free_bytes < need)
        return make_error(StatusCode::kInvalidArgument,
                          "[encoder] scratch arena on %s has %zu bytes free, needs %zu on %s",
                          device_name(scratch.device()), free_bytes, need, device_name(ctx.device));

    ops::ProfileRange range(ctx, "encoder");
    const size_t mark = scratch.mark();
    const Buffers b = carve(&scratch, d, ctx, nullptr);
    Tensor& x = enc_out;  // the residual stream [n, D]

    // pre_encode: mel [F, T] → x [n, D]. The mel is read as F32 and rounded to the activation
    // precision inside the first convolution (the reference casts it to the model dtype).
    Tensor mel_in = mel;
    if (ctx.device != Device::kCPU && mel.device == Device::kCPU) {
        Tensor mel_dev = b.mel;
        ops::copy(ctx, mel_in, mel_dev);
        mel_in = mel_dev;
    }
    {
        ops::ProfileRange r(ctx, "subsampling");
        subsample(ctx, mel_in, d, b, x);
    }

    // Positional table slice for positions n-1 … -(n-1). The reference's pe buffer is in the model
    // dtype (bf16 in the bf16 load, exact in the float32 load) and is rebuilt in the parameter
    // dtype past pos_emb_max_len; the bf16 load cast to float keeps its rounded buffer below that.
    const bool round_table = ctx.round_bf16() || (bf16_pos_table_ && T <= pos_emb_max_len_);
    Tensor pos = b.pos;
    ops::rel_pos_embed(ctx, pos_table_, d.n, round_table, pos);

    for (const Layer& l : layers_) {
        ops::ProfileRange r(ctx, "conformer layer");
        conformer_layer(ctx, l, b, x);
    }

    // Adapter: LN → Linear → GELU(erf) → Linear
    ops::ProfileRange adapter_range(ctx, "adapter");
    Tensor h = b.h, ad = b.ad;
    ops::layer_norm(ctx, x, ad_norm_w_, ad_norm_b_, kNormEps, h);
    ops::linear(ctx, h, ad_w1_, &ad_b1_, ad);
    ops::activation(ctx, ops::Activation::kGeluErf, ad, ad);
    ops::linear(ctx, ad, ad_w2_, &ad_b2_, adapter_out);

    scratch.release(mark);
    return Status::ok();
}

}  // namespace voxrt::model
