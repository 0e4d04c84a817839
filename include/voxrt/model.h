// voxrt/model.h — a loaded checkpoint: Model::load(dir, options), shared by every Session on it.
//
// The directory is the published Hugging Face layout of LFM2.5-Audio, used unchanged:
//   config.json, model.safetensors, tokenizer.json (+ tokenizer_config.json),
//   audio_detokenizer/{config.json, model.safetensors}
//
// Threads: a Model is immutable after load(); every const method may be called from any thread,
// and any number of Sessions on any number of threads may share one (Session::create takes a
// shared_ptr and keeps the model alive). Sharing is exact (each session produces what it would
// alone) but not free; see "Sharing" in voxrt/session.h.
// Cost: load() maps the weight files and converts them to the device's precision (the 1.5B model:
// ~3 GB in bf16, a few seconds); it allocates no per-conversation state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "voxrt/status.h"
#include "voxrt/tasks.h"

namespace voxrt {

namespace model {
class LfmAudioModel;
}
namespace runtime {
class DeviceLane;
}

// The most positions a session may hold (ModelOptions::max_context, SessionOptions::context); a
// checkpoint's own max_position_embeddings may allow fewer.
inline constexpr int kMaxContextPositions = 1 << 17;

struct ModelOptions {
    // "auto" (CUDA when this build has it and a GPU is present, else the CPU), "cpu" or "cuda".
    std::string device = "auto";
    // "bf16" (what the official pipeline runs), "fp32", or one of two weight-only 8-bit modes that
    // quantize the bf16 checkpoint once at load (no second file) and keep bf16 activations:
    //   "int8"  int8 codes with one fp32 scale per output row (CPU and CUDA);
    //   "fp8"   e4m3 codes with one fp32 scale per output row (meant for Hopper GPUs; the CPU runs
    //           it too, through the same kernels as int8).
    // and one weight-only 4-bit mode, CPU only ("cuda" is refused; "auto" picks the CPU):
    //   "int4"  4-bit codes with one fp32 scale per group of 32 inputs (docs/quantization.md).
    // Quantized: the backbone's projections, the depthformer and its input projection, the text
    // head and the codebook heads. Embeddings, norms, conv taps, the encoder and the detokenizer
    // stay as stored. docs/quantization.md has the format and the measured error.
    std::string precision = "bf16";
    int threads = 0;         // CPU worker threads shared by the model's sessions; 0 = all cores
    int max_context = 4096;  // positions a session on this model may hold (16 .. 131,072)
    // false: no detokenizer is loaded and sessions produce audio codes but no PCM (ASR and text
    // chat never need it).
    bool load_detokenizer = true;
    // Where a CUDA model's detokenizer (and its ISTFT) runs: "same" (on the GPU), "cpu" (host cores
    // beside GPU decode) or "auto" (cpu when at least 8 host threads are available, else same).
    std::string detokenizer_device = "same";
    // Run one short turn inside load() (a second of silence in; six text steps and two audio
    // frames out, through the detokenizer), so that the first conversation's first turn costs what
    // later turns cost: one-time work (GPU libraries' handles and plans, the first launch of each
    // kernel, on the CPU the first touch of the mapped weights) happens here. Adds that turn's time
    // to load() (ModelInfo::warm_up_ms).
    bool warm_up = true;
};

// What load() found; plain values, fixed for the model's lifetime.
struct ModelInfo {
    std::string dir;                    // as given to load()
    std::string name;                   // the directory's last component
    std::string device;                 // "cpu" or the GPU's name
    bool on_gpu = false;                // the model's weights and sessions are on a GPU
    std::string precision;              // "bf16" | "fp32" | "int8" | "fp8" | "int4"
    std::string detokenizer_device;     // "cpu" | "cuda" | "" (not loaded)
    int input_sample_rate = 16000;      // what audio is resampled to (any rate is accepted)
    int output_sample_rate = 24000;     // PCM in Event::pcm
    int max_context = 0;                // ModelOptions::max_context
    double ms_per_audio_position = 80;  // input audio: one backbone position per 80 ms
    double ms_per_audio_frame = 80;     // output audio: one frame per 80 ms of PCM
    int threads = 1;                    // CPU worker threads
    double warm_up_ms = 0;              // the warm-up turn's time inside load() (0: none)
    // Architecture (for inspection).
    int backbone_layers = 0;
    std::string backbone_layer_kinds;  // "conv,conv,attn,…"
    int hidden_size = 0, num_heads = 0, num_kv_heads = 0, ff_dim = 0, vocab_size = 0;
    int encoder_layers = 0, encoder_d_model = 0, encoder_heads = 0, encoder_subsampling = 0;
    int depthformer_layers = 0, depthformer_dim = 0, codebooks = 0, audio_vocab = 0;
    int interleaved_text = 0, interleaved_audio = 0;  // interleaved mode: text tokens : frames
    int tokenizer_size = 0;
    // Bytes.
    size_t weight_bytes = 0;  // weights resident on the model's device
    // int8 / fp8 / int4: bytes the quantized matrices take less than their bf16 originals would
    // (codes and scales counted); 0 otherwise.
    size_t quantization_saved_bytes = 0;
    size_t text_step_bytes = 0;    // weights one text step reads (the decode roofline)
    size_t audio_frame_bytes = 0;  // weights one audio-frame step reads
    // Checkpoint files: tensors and bytes of model.safetensors and of the detokenizer's.
    size_t model_file_tensors = 0, model_file_bytes = 0;
    size_t detok_file_tensors = 0, detok_file_bytes = 0;
};

// Whether this build has a GPU backend (CUDA) and a usable GPU is present (what device "auto"
// asks).
bool gpu_available();

class Model {
public:
    // Loads and validates `dir`. Errors name the file or field at fault (kNotFound, kInvalidFile),
    // the option (kInvalidArgument: "ModelOptions.device …"), or the device (kUnsupported: CUDA
    // asked of a build or machine without it; kOutOfMemory).
    static Expected<std::shared_ptr<Model>> load(const std::string& dir,
                                                 const ModelOptions& options = {});
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelInfo& info() const { return info_; }
    const ModelOptions& options() const { return options_; }

    // Context budgeting: the positions a conversation's pieces take, counted exactly as a Session
    // counts them (tokenizing `text`: its cost).
    //   turn_positions: add_turn(role, text), or a user turn of text
    //   audio_turn_positions: a user turn holding `samples` samples at `sample_rate` Hz
    //   response_positions: start_response() with max_steps, at most
    int turn_positions(Role role, std::string_view text) const;
    int audio_turn_positions(size_t samples, int sample_rate) const;
    int response_positions(int max_steps) const;

    // Free memory on the model's device now, in bytes: the GPU's (what its driver reports), or on
    // the CPU the host's available RAM; 0 when unknown. With Session::memory() this sizes how
    // many sessions fit (voxrt serve's --max-sessions default).
    size_t free_memory_bytes() const;

private:
    friend class Session;
    friend class Batch;
    const model::LfmAudioModel& impl() const { return *impl_; }
    Model() = default;
    static Status warm_up(const std::shared_ptr<const Model>& m);  // ModelOptions::warm_up
    // The lane of the sessions made with SessionOptions::share_device_context: made by the first
    // of them, gone with the last.
    Expected<std::shared_ptr<runtime::DeviceLane>> shared_lane() const;
    mutable std::mutex lane_mu_;
    mutable std::weak_ptr<runtime::DeviceLane> lane_;
    std::unique_ptr<model::LfmAudioModel> impl_;
    ModelOptions options_;
    ModelInfo info_;
};

}  // namespace voxrt
