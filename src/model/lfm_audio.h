// LfmAudioModel: everything loaded from one LFM2.5-Audio checkpoint directory, immutable after
// load and shared by every session: the config, the text tokenizer, the mel front end, the audio
// encoder + adapter, the LFM2 backbone with its tied text head, the depthformer audio head, and the
// LFM2.5 detokenizer.
//
// The directory is the published Hugging Face layout, used unchanged:
//   config.json, model.safetensors, tokenizer.json (+ tokenizer_config.json),
//   audio_detokenizer/{config.json, model.safetensors}
// Thread-safe for concurrent sessions (all methods const after load).
#pragma once

#include <memory>
#include <string>

#include "audio/mel.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "model/audio_decoder.h"
#include "model/audio_encoder.h"
#include "model/audio_head.h"
#include "model/config.h"
#include "model/lfm2.h"
#include "model/weights.h"
#include "ops/ops.h"
#include "text/tokenizer.h"

namespace voxrt::model {

struct ModelOptions {
    Device device = Device::kCPU;
    ops::Precision precision = ops::Precision::kBF16;
    // Weight-only 8-bit quantization at load of the backbone's projections, its tied text head,
    // the depth input projection, the depthformer and the codebook heads (activations keep
    // `precision`); kNone: every weight as stored.
    WeightQuant weight_quant = WeightQuant::kNone;
    int max_context = 4096;  // positions a session may hold (RoPE tables, cache sizes)
    int threads = 0;         // CPU worker threads; 0 = all cores
    bool load_detokenizer = true;
    // GPU models: keep the detokenizer on the host (views of its weights, the CPU backend), where
    // a session runs it on otherwise idle cores beside the GPU's decode instead of sharing the GPU.
    bool detokenizer_on_cpu = false;
    // Internal, for parity tests only: with kF32, reproduce the official bf16 load cast back to
    // float (from_pretrained(dir).float()), whose RoPE inv_freq and the encoder's positional table
    // are bf16-rounded. Default (false): kF32 equals from_pretrained(dir, dtype=torch.float32).
    bool bf16_rounded_tables = false;
};

// Token ids the generation loop needs, resolved by name from the tokenizer at load.
struct SpecialTokens {
    int32_t start_of_text = 1;  // <|startoftext|>
    int32_t im_start = 6;       // <|im_start|>
    int32_t im_end = 7;         // <|im_end|>   end of turn
    int32_t audio_start = 128;  // <|audio_start|> sequential mode switches to audio
    int32_t text_end = 130;     // <|text_end|>  interleaved mode: text is done
};

class LfmAudioModel {
public:
    static Expected<std::unique_ptr<LfmAudioModel>> load(const std::string& dir,
                                                         const ModelOptions& opt);
    ~LfmAudioModel();

    const std::string& dir() const { return dir_; }
    const ModelOptions& options() const { return opt_; }
    const AudioModelConfig& config() const { return cfg_; }
    const SpecialTokens& special() const { return special_; }
    const text::Tokenizer& tokenizer() const { return *tokenizer_; }
    const audio::MelFrontend& mel() const { return *mel_; }
    const AudioEncoder& encoder() const { return *encoder_; }
    const Lfm2Network& backbone() const { return *backbone_; }
    const AudioHead& audio_head() const { return *head_; }
    const Detokenizer* detokenizer() const { return detok_.get(); }
    // Where the detokenizer's weights live (and so where it runs).
    Device detokenizer_device() const { return detok_on_host_ ? Device::kCPU : opt_.device; }
    ThreadPool* pool() const { return pool_.get(); }
    // A new context to run this model on (a session's or a batch's): on a GPU its own queue, on
    // the CPU the model's thread pool; the model's precision. `high_priority`: the GPU queue gets
    // the device's highest priority (backend::ContextOptions). Free a GPU one with
    // backend::destroy_context.
    Expected<ops::Context> new_context(bool high_priority = false) const;
    // The context used for uploads (on a GPU: its queue); sessions make their own.
    const ops::Context& load_context() const { return load_ctx_; }

    // Bytes of weights one text step reads (backbone + tied head) and one audio frame reads
    // (backbone + depth_linear + 8 depthformer passes + 8 logit heads): the decode roofline.
    size_t text_step_bytes() const { return text_step_bytes_; }
    size_t audio_frame_bytes() const { return audio_frame_bytes_; }
    // Total bytes of weights resident for inference on the model's device.
    size_t weight_bytes() const { return weight_bytes_; }
    // With weight_quant: bytes the quantized matrices take less than as stored; 0 otherwise.
    size_t quantization_saved_bytes() const {
        return store_ ? store_->quantization_saved_bytes() : 0;
    }

private:
    LfmAudioModel() = default;

    std::string dir_;
    ModelOptions opt_;
    AudioModelConfig cfg_;
    SpecialTokens special_;
    std::unique_ptr<ThreadPool> pool_;
    ops::Context load_ctx_;
    std::unique_ptr<io::SafeTensorsFile> model_file_, detok_file_;
    std::unique_ptr<WeightStore> store_;
    ops::Context host_ctx_;                    // CPU context of host_store_
    std::unique_ptr<WeightStore> host_store_;  // the detokenizer's, with detokenizer_on_cpu
    bool detok_on_host_ = false;
    std::unique_ptr<text::Tokenizer> tokenizer_;
    std::unique_ptr<audio::MelFrontend> mel_;
    std::unique_ptr<AudioEncoder> encoder_;
    std::unique_ptr<Lfm2Network> backbone_;
    std::unique_ptr<AudioHead> head_;
    std::unique_ptr<Detokenizer> detok_;
    size_t text_step_bytes_ = 0, audio_frame_bytes_ = 0, weight_bytes_ = 0;
};

}  // namespace voxrt::model
