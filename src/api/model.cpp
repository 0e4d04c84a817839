// voxrt::Model: ModelOptions validated and mapped onto model::LfmAudioModel; ModelInfo filled once.
#include "voxrt/model.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include <thread>

#include "backend/device.h"
#include "io/safetensors.h"
#include "model/lfm_audio.h"
#include "runtime/lane.h"
#include "voxrt/session.h"

namespace voxrt {

namespace {

// --detokenizer-device auto puts the detokenizer of a CUDA model on the host from this many
// threads.
constexpr int kHostDetokMinThreads = 8;

Expected<model::ModelOptions> internal_options(const ModelOptions& o) {
    model::ModelOptions m;
    if (o.device == "auto") {
        m.device = backend::device_available(Device::kCUDA) ? Device::kCUDA : Device::kCPU;
    } else if (o.device == "cpu") {
        m.device = Device::kCPU;
    } else if (o.device == "cuda") {
        m.device = Device::kCUDA;
    } else {
        return make_error(StatusCode::kInvalidArgument,
                          "ModelOptions.device must be auto, cpu or cuda, got \"%s\"",
                          o.device.c_str());
    }
    // The 8-bit modes quantize weights only; activations keep bf16's numerics.
    if (o.precision == "bf16") {
        m.precision = ops::Precision::kBF16;
    } else if (o.precision == "fp32") {
        m.precision = ops::Precision::kF32;
    } else if (o.precision == "int8") {
        m.precision = ops::Precision::kBF16;
        m.weight_quant = model::WeightQuant::kI8;
    } else if (o.precision == "fp8") {
        m.precision = ops::Precision::kBF16;
        m.weight_quant = model::WeightQuant::kF8E4M3;
    } else if (o.precision == "int4") {
        m.precision = ops::Precision::kBF16;
        m.weight_quant = model::WeightQuant::kI4;
        if (o.device == "auto") m.device = Device::kCPU;  // the one device int4 has kernels for
        if (m.device != Device::kCPU)
            return make_error(StatusCode::kInvalidArgument,
                              "ModelOptions.precision int4 runs on the CPU only (device \"%s\" "
                              "is a GPU); use int8 or fp8 there",
                              o.device.c_str());
    } else {
        return make_error(
            StatusCode::kInvalidArgument,
            "ModelOptions.precision must be bf16, fp32, int8, fp8 or int4, got \"%s\"",
            o.precision.c_str());
    }
    if (o.threads < 0 || o.threads > 1024)
        return make_error(StatusCode::kInvalidArgument,
                          "ModelOptions.threads must be in [0, 1024], got %d", o.threads);
    static_assert(kMaxContextPositions == model::kMaxContext);
    if (o.max_context < 16 || o.max_context > kMaxContextPositions)
        return make_error(StatusCode::kInvalidArgument,
                          "ModelOptions.max_context must be in [16, %d], got %d",
                          kMaxContextPositions, o.max_context);
    m.threads = o.threads;
    m.max_context = o.max_context;
    m.load_detokenizer = o.load_detokenizer;
    if (o.detokenizer_device == "auto") {
        // The host beside GPU decode when there are enough threads: it leaves the GPU to decode,
        // but the turn then depends on those threads staying free (docs/detokenizer.md).
        const int threads =
            o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
        m.detokenizer_on_cpu = m.device == Device::kCUDA && threads >= kHostDetokMinThreads;
    } else if (o.detokenizer_device == "same" || o.detokenizer_device == "cpu") {
        m.detokenizer_on_cpu = o.detokenizer_device == "cpu";
    } else {
        return make_error(StatusCode::kInvalidArgument,
                          "ModelOptions.detokenizer_device must be auto, same or cpu, got \"%s\"",
                          o.detokenizer_device.c_str());
    }
    return m;
}

void file_summary(const std::string& path, size_t* tensors, size_t* bytes) {
    auto f = io::SafeTensorsFile::open(path);
    if (!f.is_ok()) return;
    size_t b = 0;
    for (const auto& t : f->tensors()) b += t.end - t.begin;
    *tensors = f->tensors().size();
    *bytes = b;
}

}  // namespace

bool gpu_available() {
    return backend::device_available(Device::kCUDA);
}

Model::~Model() = default;

Expected<std::shared_ptr<Model>> Model::load(const std::string& dir, const ModelOptions& options) {
    if (dir.empty())
        return make_error(StatusCode::kInvalidArgument, "model directory: the path is empty");
    VOXRT_ASSIGN_OR_RETURN(model::ModelOptions mo, internal_options(options));
    std::shared_ptr<Model> m(new Model());
    VOXRT_ASSIGN_OR_RETURN(m->impl_, model::LfmAudioModel::load(dir, mo));
    m->options_ = options;
    const model::LfmAudioModel& lm = *m->impl_;
    const model::AudioModelConfig& c = lm.config();
    ModelInfo& i = m->info_;
    i.dir = dir;
    {
        std::string d = dir;
        while (d.size() > 1 && d.back() == '/') d.pop_back();
        const size_t slash = d.find_last_of('/');
        i.name = slash == std::string::npos ? d : d.substr(slash + 1);
    }
    i.on_gpu = mo.device == Device::kCUDA;
    i.device = i.on_gpu ? backend::hardware_name(Device::kCUDA) : "cpu";
    i.precision = mo.weight_quant == model::WeightQuant::kI8       ? "int8"
                  : mo.weight_quant == model::WeightQuant::kF8E4M3 ? "fp8"
                  : mo.weight_quant == model::WeightQuant::kI4     ? "int4"
                  : mo.precision == ops::Precision::kBF16          ? "bf16"
                                                                   : "fp32";
    i.detokenizer_device =
        lm.detokenizer() ? (lm.detokenizer_device() == Device::kCUDA ? "cuda" : "cpu") : "";
    i.input_sample_rate = c.preprocessor.sample_rate;
    i.output_sample_rate = 24000;
    i.max_context = mo.max_context;
    i.ms_per_audio_position = 1000.0 * c.preprocessor.window_stride * c.encoder.subsampling_factor;
    i.ms_per_audio_frame = 80;
    i.threads = lm.pool() ? lm.pool()->size() : 1;
    i.backbone_layers = c.lfm.n_layers();
    for (int l = 0; l < c.lfm.n_layers(); ++l) {
        if (l) i.backbone_layer_kinds += ",";
        i.backbone_layer_kinds +=
            c.lfm.layers[static_cast<size_t>(l)] == model::LayerKind::kConv ? "conv" : "attn";
    }
    i.hidden_size = c.lfm.hidden_size;
    i.num_heads = c.lfm.num_heads;
    i.num_kv_heads = c.lfm.num_kv_heads;
    i.ff_dim = c.lfm.ff_dim;
    i.vocab_size = c.lfm.vocab_size;
    i.encoder_layers = c.encoder.n_layers;
    i.encoder_d_model = c.encoder.d_model;
    i.encoder_heads = c.encoder.n_heads;
    i.encoder_subsampling = c.encoder.subsampling_factor;
    i.depthformer_layers = c.depthformer.layers;
    i.depthformer_dim = c.depthformer.dim;
    i.codebooks = c.codebooks;
    i.audio_vocab = c.audio_vocab;
    i.interleaved_text = c.interleaved_n_text;
    i.interleaved_audio = c.interleaved_n_audio;
    i.tokenizer_size = lm.tokenizer().vocab_size();
    i.weight_bytes = lm.weight_bytes();
    i.quantization_saved_bytes = lm.quantization_saved_bytes();
    i.text_step_bytes = lm.text_step_bytes();
    i.audio_frame_bytes = lm.audio_frame_bytes();
    file_summary(dir + "/model.safetensors", &i.model_file_tensors, &i.model_file_bytes);
    file_summary(dir + "/audio_detokenizer/model.safetensors", &i.detok_file_tensors,
                 &i.detok_file_bytes);
    if (options.warm_up) {
        const auto t0 = std::chrono::steady_clock::now();
        VOXRT_RETURN_IF_ERROR(warm_up(m));
        i.warm_up_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
    }
    return m;
}

// One speech-chat turn on a throwaway session: a second of silence, then six text steps and two
// audio frames (the interleaved pattern's first audio), the first frame detokenized at once and the
// second at the end. End tokens are suppressed so that every checkpoint, random or trained, runs
// the same kernels.
Status Model::warm_up(const std::shared_ptr<const Model>& m) {
    SessionOptions so;
    so.context = std::min(m->info_.max_context, 512);
    VOXRT_ASSIGN_OR_RETURN(std::unique_ptr<Session> s, Session::create(m, so));
    const int rate = m->info_.input_sample_rate;
    const std::vector<float> silence(static_cast<size_t>(rate), 0.0f);
    VOXRT_RETURN_IF_ERROR(s->begin_user_turn());
    VOXRT_RETURN_IF_ERROR(s->append_audio(silence.data(), silence.size(), rate));
    VOXRT_RETURN_IF_ERROR(s->end_user_turn());
    ResponseOptions ro = ResponseOptions::for_task(Task::kSpeechChat);
    ro.max_steps = 8;
    ro.suppress_end = true;
    ro.audio = m->impl_->detokenizer() != nullptr;
    VOXRT_RETURN_IF_ERROR(s->generate(ro, [](const Event&) { return true; }));
    return Status::ok();
}

namespace {
const char* role_header(Role r) {
    switch (r) {
        case Role::kSystem:
            return "<|im_start|>system\n";
        case Role::kUser:
            return "<|im_start|>user\n";
        case Role::kAssistant:
            return "<|im_start|>assistant\n";
    }
    return "";
}
}  // namespace

int Model::turn_positions(Role role, std::string_view text) const {
    const text::Tokenizer& t = impl_->tokenizer();
    return static_cast<int>(t.encode(role_header(role)).size() + t.encode(text).size() +
                            t.encode("<|im_end|>\n").size());
}

int Model::audio_turn_positions(size_t samples, int sample_rate) const {
    const text::Tokenizer& t = impl_->tokenizer();
    const int target = impl_->config().preprocessor.sample_rate;
    if (sample_rate <= 0 || samples == 0) return 0;
    // As resample() counts its output: ceil(n * target / rate).
    const size_t n16 =
        sample_rate == target
            ? samples
            : static_cast<size_t>((static_cast<unsigned long long>(samples) * target +
                                   static_cast<unsigned long long>(sample_rate) - 1) /
                                  static_cast<unsigned long long>(sample_rate));
    const int64_t rows = impl_->encoder().output_frames(impl_->mel().shape(n16).frames);
    return static_cast<int>(t.encode(role_header(Role::kUser)).size() + rows +
                            t.encode("<|im_end|>\n").size());
}

size_t Model::free_memory_bytes() const {
    return backend::free_memory_bytes(impl_->options().device);
}

Expected<std::shared_ptr<runtime::DeviceLane>> Model::shared_lane() const {
    std::lock_guard<std::mutex> lock(lane_mu_);
    std::shared_ptr<runtime::DeviceLane> lane = lane_.lock();
    if (!lane) {
        VOXRT_ASSIGN_OR_RETURN(lane, runtime::DeviceLane::create(*impl_));
        lane_ = lane;
    }
    return lane;
}

int Model::response_positions(int max_steps) const {
    return static_cast<int>(impl_->tokenizer().encode(role_header(Role::kAssistant)).size()) +
           max_steps;
}

}  // namespace voxrt
