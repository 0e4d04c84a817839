// Hyperparameters of an LFM2.5-Audio checkpoint, read from its config.json (and
// audio_detokenizer/config.json). Nothing here is hard-coded per model: every value comes from the
// files, with ranges checked so that later size arithmetic cannot overflow. Field names follow
// the files; comments give the published model's values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "io/json.h"

namespace voxrt::model {

// config.json "preprocessor" (NeMo AudioToMelSpectrogramPreprocessor arguments).
struct PreprocessorConfig {
    int sample_rate = 16000;
    std::string normalize = "per_feature";
    double window_size = 0.025;   // seconds → win_length 400
    double window_stride = 0.01;  // seconds → hop 160
    std::string window = "hann";
    int features = 128;
    int n_fft = 512;
    bool log = true;
    int frame_splicing = 1;
    double dither = 1e-5;  // training only
    int pad_to = 0;
    double pad_value = 0.0;
};

// config.json "encoder" (NeMo ConformerEncoder arguments).
struct EncoderConfig {
    int feat_in = 128;
    int feat_out = -1;
    int n_layers = 17;
    int d_model = 512;
    std::string subsampling = "dw_striding";
    int subsampling_factor = 8;
    int subsampling_conv_channels = 256;
    int ff_expansion_factor = 4;
    std::string self_attention_model = "rel_pos";
    int n_heads = 8;
    bool xscaling = false;
    bool untie_biases = true;
    int pos_emb_max_len = 5000;
    int conv_kernel_size = 9;
    std::string conv_norm_type = "batch_norm";
    bool causal_downsampling = false;
};

enum class LayerKind : uint8_t { kConv, kAttention };

// transformers Lfm2Config: the backbone ("lfm") and the detokenizer's network.
struct Lfm2Config {
    int vocab_size = 65536;
    int hidden_size = 2048;
    int num_heads = 32;
    int num_kv_heads = 8;
    int head_dim = 64;
    int ff_dim = 8192;    // effective width after block_auto_adjust_ff_dim
    int conv_kernel = 3;  // conv_L_cache
    bool conv_bias = false;
    double norm_eps = 1e-5;
    double rope_theta = 1e6;
    int max_position_embeddings = 128000;
    int sliding_window = 0;  // 0: none (backbone); the detokenizer uses 30
    std::vector<LayerKind> layers;

    int n_layers() const { return static_cast<int>(layers.size()); }
};

// config.json "depthformer" plus the constants of liquid-audio's MHA/GLU defaults.
struct DepthformerConfig {
    int layers = 6;
    int dim = 1024;
    bool tie = true;
    int num_heads = 32;    // MHA default in liquid-audio
    int num_kv_heads = 8;  // gqa_dim default
    int head_dim = 32;
    int ff_dim = 2816;  // SwiGLU: 4·dim → ·2/3 → round up to 256
    double norm_eps = 1e-5;
    double rope_theta = 1e6;
};

struct AudioModelConfig {
    int codebooks = 8;
    int audio_vocab = 2049;  // 2048 codes + end-of-audio (a class constant in liquid-audio)
    bool tie_audio_embeddings = false;
    int interleaved_n_text = 6;
    int interleaved_n_audio = 12;
    PreprocessorConfig preprocessor;
    EncoderConfig encoder;
    Lfm2Config lfm;
    DepthformerConfig depthformer;
};

// Limits on values that size allocations, beyond the published model's by a wide margin but far
// below what would ask for gigabytes (docs/reliability.md, "Limits"). Each is refused with an
// error naming the file and the field.
//
// config.json and audio_detokenizer/config.json: at most this many bytes.
constexpr size_t kMaxConfigBytes = size_t{1} << 20;
// The detokenizer's attention window in rows (liquid-audio: 30). Its KV cache holds about
// window + 6 * 64 rows per attention layer.
constexpr int kMaxDetokenizerWindow = 4096;
// encoder.pos_emb_max_len (published: 5000), and the longest segment in mel frames that the
// preprocessor makes of the longest accepted recording (600 s at a 10 ms hop: 60,001). The encoder
// builds its relative-position table for the larger of the two at load: [2 * ceil(T / 8) - 1,
// d_model] floats.
constexpr int64_t kMaxEncoderFrames = int64_t{1} << 17;

// ModelOptions: the most positions a session may hold (the published lfm.max_position_embeddings
// is 128,000; a context's KV cache and RoPE tables are sized for it at session creation: 1.6 GB
// in bf16 for the published model at this limit) and the most CPU threads.
constexpr int kMaxContext = 1 << 17;
constexpr int kMaxThreads = 1024;

// Parses MODEL_DIR/config.json.
Expected<AudioModelConfig> load_model_config(const std::string& path);
// Same, from the file's text; `label` names the file in errors. (Used by the fuzz target.)
Expected<AudioModelConfig> parse_model_config(const std::string& text, const std::string& label);
// Parses an Lfm2Config object (the "lfm" block, or the detokenizer's whole config.json).
Expected<Lfm2Config> parse_lfm2_config(const io::JsonView& j);
// Parses audio_detokenizer/config.json.
Expected<Lfm2Config> load_detokenizer_config(const std::string& path);
Expected<Lfm2Config> parse_detokenizer_config(const std::string& text, const std::string& label);
// Mel frames the preprocessor makes of the longest recording the WAV reader accepts
// (WavOptions::max_seconds), resampled to its rate: one per hop, plus one.
int64_t longest_mel_segment(const PreprocessorConfig& pp);

}  // namespace voxrt::model
