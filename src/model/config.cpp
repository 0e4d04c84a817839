#include "model/config.h"

#include <algorithm>
#include <cmath>

#include "audio/wav.h"
#include "io/mapped_file.h"

namespace voxrt::model {

namespace {

constexpr int64_t kMaxDim = 1 << 16;
constexpr int64_t kMaxLayers = 256;
constexpr int64_t kMaxVocab = 1 << 20;

Expected<PreprocessorConfig> parse_preprocessor(const io::JsonView& j) {
    PreprocessorConfig c;
    VOXRT_ASSIGN_OR_RETURN(int64_t sr, j.integer("sample_rate", 8000, 48000));
    c.sample_rate = static_cast<int>(sr);
    VOXRT_ASSIGN_OR_RETURN(c.normalize, j.string_or("normalize", "per_feature"));
    if (c.normalize != "per_feature")
        return j.error("normalize", "only \"per_feature\" is supported");
    VOXRT_ASSIGN_OR_RETURN(c.window_size, j.number("window_size", 1e-3, 1.0));
    VOXRT_ASSIGN_OR_RETURN(c.window_stride, j.number("window_stride", 1e-4, 1.0));
    VOXRT_ASSIGN_OR_RETURN(c.window, j.string_or("window", "hann"));
    if (c.window != "hann") return j.error("window", "only \"hann\" is supported");
    VOXRT_ASSIGN_OR_RETURN(int64_t feats, j.integer("features", 1, 1024));
    c.features = static_cast<int>(feats);
    VOXRT_ASSIGN_OR_RETURN(int64_t n_fft, j.integer("n_fft", 16, 1 << 14));
    c.n_fft = static_cast<int>(n_fft);
    VOXRT_ASSIGN_OR_RETURN(c.log, j.boolean_or("log", true));
    if (!c.log) return j.error("log", "only log features are supported");
    VOXRT_ASSIGN_OR_RETURN(int64_t fs, j.integer_or("frame_splicing", 1, 1, 1));
    c.frame_splicing = static_cast<int>(fs);
    VOXRT_ASSIGN_OR_RETURN(c.dither, j.number_or("dither", 0.0, 0.0, 1.0));
    VOXRT_ASSIGN_OR_RETURN(int64_t pad_to, j.integer_or("pad_to", 0, 0, 0));
    c.pad_to = static_cast<int>(pad_to);
    VOXRT_ASSIGN_OR_RETURN(c.pad_value, j.number_or("pad_value", 0.0, -1e6, 1e6));
    const double win = c.window_size * c.sample_rate;
    if (win > c.n_fft) return j.error("window_size", "window longer than n_fft");
    if (const int64_t frames = longest_mel_segment(c); frames > kMaxEncoderFrames)
        return j.error("window_stride", "a hop of " + std::to_string(c.window_stride) +
                                            " s makes " + std::to_string(frames) +
                                            " mel frames of the longest accepted " +
                                            "recording, more than the limit of " +
                                            std::to_string(kMaxEncoderFrames));
    return c;
}

Expected<EncoderConfig> parse_encoder(const io::JsonView& j) {
    EncoderConfig c;
    auto geti = [&](const char* k, int& out, int64_t lo, int64_t hi) -> Status {
        auto v = j.integer(k, lo, hi);
        if (!v.is_ok()) return v.status();
        out = static_cast<int>(*v);
        return Status::ok();
    };
    VOXRT_RETURN_IF_ERROR(geti("feat_in", c.feat_in, 1, 1024));
    VOXRT_RETURN_IF_ERROR(geti("feat_out", c.feat_out, -1, kMaxDim));
    if (c.feat_out != -1 && c.feat_out != 0)
        return j.error("feat_out", "an output projection is not supported");
    VOXRT_RETURN_IF_ERROR(geti("n_layers", c.n_layers, 1, kMaxLayers));
    VOXRT_RETURN_IF_ERROR(geti("d_model", c.d_model, 1, kMaxDim));
    VOXRT_ASSIGN_OR_RETURN(c.subsampling, j.string("subsampling"));
    if (c.subsampling != "dw_striding")
        return j.error("subsampling", "only \"dw_striding\" is supported");
    VOXRT_RETURN_IF_ERROR(geti("subsampling_factor", c.subsampling_factor, 2, 64));
    if (c.subsampling_factor & (c.subsampling_factor - 1))
        return j.error("subsampling_factor", "must be a power of two");
    VOXRT_RETURN_IF_ERROR(geti("subsampling_conv_channels", c.subsampling_conv_channels, 1, 4096));
    VOXRT_RETURN_IF_ERROR(geti("ff_expansion_factor", c.ff_expansion_factor, 1, 16));
    VOXRT_ASSIGN_OR_RETURN(c.self_attention_model, j.string("self_attention_model"));
    if (c.self_attention_model != "rel_pos")
        return j.error("self_attention_model", "only \"rel_pos\" is supported");
    VOXRT_RETURN_IF_ERROR(geti("n_heads", c.n_heads, 1, 256));
    if (c.d_model % c.n_heads) return j.error("n_heads", "d_model is not divisible by n_heads");
    VOXRT_ASSIGN_OR_RETURN(c.xscaling, j.boolean_or("xscaling", false));
    VOXRT_ASSIGN_OR_RETURN(c.untie_biases, j.boolean_or("untie_biases", true));
    if (!c.untie_biases)
        return j.error("untie_biases", "only per-layer (untied) biases are supported");
    VOXRT_RETURN_IF_ERROR(geti("pos_emb_max_len", c.pos_emb_max_len, 1, kMaxEncoderFrames));
    VOXRT_RETURN_IF_ERROR(geti("conv_kernel_size", c.conv_kernel_size, 1, 255));
    if (c.conv_kernel_size % 2 == 0) return j.error("conv_kernel_size", "must be odd");
    VOXRT_ASSIGN_OR_RETURN(c.conv_norm_type, j.string_or("conv_norm_type", "batch_norm"));
    if (c.conv_norm_type != "batch_norm")
        return j.error("conv_norm_type", "only \"batch_norm\" is supported");
    VOXRT_ASSIGN_OR_RETURN(c.causal_downsampling, j.boolean_or("causal_downsampling", false));
    if (c.causal_downsampling)
        return j.error("causal_downsampling", "causal subsampling is not supported");
    if (j.has("att_context_size")) {
        VOXRT_ASSIGN_OR_RETURN(auto ctx, j.int_list("att_context_size"));
        if (ctx.size() != 2 || ctx[0] != -1 || ctx[1] != -1)
            return j.error("att_context_size", "only full context [-1, -1] is supported");
    }
    return c;
}

Expected<DepthformerConfig> parse_depthformer(const io::JsonView& j) {
    DepthformerConfig c;
    VOXRT_ASSIGN_OR_RETURN(int64_t layers, j.integer("layers", 1, kMaxLayers));
    VOXRT_ASSIGN_OR_RETURN(int64_t dim, j.integer("dim", 32, kMaxDim));
    VOXRT_ASSIGN_OR_RETURN(c.tie, j.boolean("tie"));
    c.layers = static_cast<int>(layers);
    c.dim = static_cast<int>(dim);
    if (c.dim % c.num_heads) return j.error("dim", "must be divisible by the 32 attention heads");
    c.head_dim = c.dim / c.num_heads;
    if (c.head_dim % 2) return j.error("dim", "head dimension (dim/32) must be even for RoPE");
    int ff = 4 * c.dim;
    ff = static_cast<int>(2.0 * ff / 3.0);
    ff = static_cast<int>(1.0 * ff);
    c.ff_dim = 256 * ((ff + 255) / 256);
    return c;
}

}  // namespace

Expected<Lfm2Config> parse_lfm2_config(const io::JsonView& j) {
    Lfm2Config c;
    VOXRT_ASSIGN_OR_RETURN(int64_t vocab, j.integer("vocab_size", 1, kMaxVocab));
    VOXRT_ASSIGN_OR_RETURN(int64_t hidden, j.integer("hidden_size", 8, kMaxDim));
    VOXRT_ASSIGN_OR_RETURN(int64_t n_layers, j.integer("num_hidden_layers", 1, kMaxLayers));
    VOXRT_ASSIGN_OR_RETURN(int64_t heads, j.integer("num_attention_heads", 1, 1024));
    VOXRT_ASSIGN_OR_RETURN(int64_t kv_heads, j.integer_or("num_key_value_heads", heads, 1, 1024));
    VOXRT_ASSIGN_OR_RETURN(int64_t inter, j.integer("intermediate_size", 1, 1 << 20));
    VOXRT_ASSIGN_OR_RETURN(bool auto_ff, j.boolean_or("block_auto_adjust_ff_dim", false));
    VOXRT_ASSIGN_OR_RETURN(double mult, j.number_or("block_ffn_dim_multiplier", 1.0, 0.01, 100.0));
    VOXRT_ASSIGN_OR_RETURN(int64_t multiple_of, j.integer_or("block_multiple_of", 256, 1, 1 << 16));
    VOXRT_ASSIGN_OR_RETURN(int64_t conv_l, j.integer_or("conv_L_cache", 3, 1, 64));
    VOXRT_ASSIGN_OR_RETURN(c.conv_bias, j.boolean_or("conv_bias", false));
    if (c.conv_bias) return j.error("conv_bias", "convolution biases are not supported");
    VOXRT_ASSIGN_OR_RETURN(c.norm_eps, j.number_or("norm_eps", 1e-5, 0.0, 1.0));
    VOXRT_ASSIGN_OR_RETURN(int64_t max_pos,
                           j.integer_or("max_position_embeddings", 128000, 1, 1 << 24));
    c.max_position_embeddings = static_cast<int>(max_pos);
    // transformers 5 nests the RoPE base in "rope_parameters"; older files have "rope_theta".
    double theta = 1e6;
    if (j.has("rope_parameters")) {
        VOXRT_ASSIGN_OR_RETURN(io::JsonView rp, j.object("rope_parameters"));
        VOXRT_ASSIGN_OR_RETURN(std::string type, rp.string_or("rope_type", "default"));
        if (type != "default") return rp.error("rope_type", "only \"default\" RoPE is supported");
        VOXRT_ASSIGN_OR_RETURN(theta, rp.number_or("rope_theta", 1e6, 1.0, 1e12));
    } else {
        VOXRT_ASSIGN_OR_RETURN(theta, j.number_or("rope_theta", 1e6, 1.0, 1e12));
    }
    c.rope_theta = theta;
    VOXRT_ASSIGN_OR_RETURN(int64_t window, j.integer_or("sliding_window", 0, 0, 1 << 20));
    c.sliding_window = static_cast<int>(window);

    c.vocab_size = static_cast<int>(vocab);
    c.hidden_size = static_cast<int>(hidden);
    c.num_heads = static_cast<int>(heads);
    c.num_kv_heads = static_cast<int>(kv_heads);
    if (hidden % heads) return j.error("num_attention_heads", "hidden_size is not divisible by it");
    if (heads % kv_heads)
        return j.error("num_key_value_heads", "num_attention_heads is not divisible by it");
    c.head_dim = static_cast<int>(hidden / heads);
    if (j.has("head_dim")) {
        VOXRT_ASSIGN_OR_RETURN(int64_t hd, j.integer("head_dim", 1, 4096));
        if (hd != c.head_dim)
            return j.error("head_dim", "must equal hidden_size / num_attention_heads");
    }
    if (c.head_dim % 2)
        return j.error("num_attention_heads", "head dimension must be even for RoPE");
    c.conv_kernel = static_cast<int>(conv_l);
    int64_t ff = inter;
    if (auto_ff) {  // transformers Lfm2MLP
        ff = static_cast<int64_t>(2.0 * static_cast<double>(ff) / 3.0);
        ff = static_cast<int64_t>(mult * static_cast<double>(ff));
        ff = multiple_of * ((ff + multiple_of - 1) / multiple_of);
    }
    if (ff < 1 || ff > (1 << 20))
        return j.error("intermediate_size", "effective FFN width out of range");
    c.ff_dim = static_cast<int>(ff);

    if (j.has("layer_types")) {
        VOXRT_ASSIGN_OR_RETURN(auto types, j.string_list("layer_types"));
        for (const auto& t : types) {
            if (t == "conv") {
                c.layers.push_back(LayerKind::kConv);
            } else if (t == "full_attention" || t == "sliding_attention") {
                c.layers.push_back(LayerKind::kAttention);
            } else {
                return j.error("layer_types", "unknown layer type \"" + t + "\"");
            }
        }
    } else if (j.has("full_attn_idxs")) {
        VOXRT_ASSIGN_OR_RETURN(auto idxs, j.int_list("full_attn_idxs"));
        c.layers.assign(static_cast<size_t>(n_layers), LayerKind::kConv);
        for (int64_t i : idxs) {
            if (i < 0 || i >= n_layers) return j.error("full_attn_idxs", "index out of range");
            c.layers[static_cast<size_t>(i)] = LayerKind::kAttention;
        }
    } else {
        return j.error("layer_types", "missing (and no full_attn_idxs)");
    }
    if (static_cast<int64_t>(c.layers.size()) != n_layers)
        return j.error("layer_types", "has " + std::to_string(c.layers.size()) +
                                          " entries but num_hidden_layers is " +
                                          std::to_string(n_layers));
    return c;
}

int64_t longest_mel_segment(const PreprocessorConfig& pp) {
    const double max_seconds = audio::WavOptions{}.max_seconds;
    const auto hop = std::max<int64_t>(1, static_cast<int64_t>(pp.window_stride * pp.sample_rate));
    const auto samples = static_cast<int64_t>(std::ceil(max_seconds * pp.sample_rate));
    return samples / hop + 1;
}

Expected<AudioModelConfig> load_model_config(const std::string& path) {
    VOXRT_ASSIGN_OR_RETURN(std::string text, io::read_text_file(path, kMaxConfigBytes));
    return parse_model_config(text, path);
}

Expected<AudioModelConfig> parse_model_config(const std::string& text, const std::string& path) {
    if (text.size() > kMaxConfigBytes)
        return make_error(StatusCode::kInvalidFile, "%s: %zu bytes exceeds the %zu-byte limit",
                          path.c_str(), text.size(), kMaxConfigBytes);
    VOXRT_ASSIGN_OR_RETURN(io::Json json, io::parse_json(text, path));
    io::JsonView j(&json, path, "");
    if (!json.is_object())
        return Status(StatusCode::kInvalidFile, path + ": expected a JSON object");
    AudioModelConfig c;
    VOXRT_ASSIGN_OR_RETURN(int64_t cb, j.integer("codebooks", 1, 64));
    c.codebooks = static_cast<int>(cb);
    VOXRT_ASSIGN_OR_RETURN(c.tie_audio_embeddings, j.boolean_or("tie_audio_embeddings", false));
    VOXRT_ASSIGN_OR_RETURN(int64_t nt, j.integer("interleaved_n_text", 1, 4096));
    VOXRT_ASSIGN_OR_RETURN(int64_t na, j.integer("interleaved_n_audio", 1, 4096));
    c.interleaved_n_text = static_cast<int>(nt);
    c.interleaved_n_audio = static_cast<int>(na);
    VOXRT_ASSIGN_OR_RETURN(io::JsonView pre, j.object("preprocessor"));
    VOXRT_ASSIGN_OR_RETURN(c.preprocessor, parse_preprocessor(pre));
    VOXRT_ASSIGN_OR_RETURN(io::JsonView enc, j.object("encoder"));
    VOXRT_ASSIGN_OR_RETURN(c.encoder, parse_encoder(enc));
    if (c.encoder.feat_in != c.preprocessor.features)
        return enc.error("feat_in", "does not match preprocessor.features");
    VOXRT_ASSIGN_OR_RETURN(io::JsonView lfm, j.object("lfm"));
    VOXRT_ASSIGN_OR_RETURN(c.lfm, parse_lfm2_config(lfm));
    VOXRT_ASSIGN_OR_RETURN(io::JsonView depth, j.object("depthformer"));
    VOXRT_ASSIGN_OR_RETURN(c.depthformer, parse_depthformer(depth));
    return c;
}

Expected<Lfm2Config> load_detokenizer_config(const std::string& path) {
    VOXRT_ASSIGN_OR_RETURN(std::string text, io::read_text_file(path, kMaxConfigBytes));
    return parse_detokenizer_config(text, path);
}

Expected<Lfm2Config> parse_detokenizer_config(const std::string& text, const std::string& path) {
    if (text.size() > kMaxConfigBytes)
        return make_error(StatusCode::kInvalidFile, "%s: %zu bytes exceeds the %zu-byte limit",
                          path.c_str(), text.size(), kMaxConfigBytes);
    VOXRT_ASSIGN_OR_RETURN(io::Json json, io::parse_json(text, path));
    if (!json.is_object())
        return Status(StatusCode::kInvalidFile, path + ": expected a JSON object");
    io::JsonView j(&json, path, "");
    VOXRT_ASSIGN_OR_RETURN(Lfm2Config c, parse_lfm2_config(j));
    if (c.sliding_window == 0)
        c.sliding_window = 30;  // liquid-audio: getattr(cfg, "sliding_window", 30)
    if (c.sliding_window > kMaxDetokenizerWindow)
        return j.error("sliding_window", "value " + std::to_string(c.sliding_window) +
                                             " exceeds the detokenizer limit of " +
                                             std::to_string(kMaxDetokenizerWindow) +
                                             " rows (the model uses 30)");
    return c;
}

}  // namespace voxrt::model
