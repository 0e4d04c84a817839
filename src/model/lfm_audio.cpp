#include "model/lfm_audio.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "backend/device.h"

namespace voxrt::model {

namespace {

// OK if p is a directory; else why not ("not found", a symlink loop, no permission, a file).
Status check_dir(const std::string& p, const char* what) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) {
        const int err = errno;
        if (err == ENOENT || err == ENOTDIR)
            return make_error(StatusCode::kNotFound, "%s: %s not found", p.c_str(), what);
        return make_error(StatusCode::kInvalidFile, "%s: cannot open the %s: %s", p.c_str(), what,
                          std::strerror(err));
    }
    if (!S_ISDIR(st.st_mode))
        return make_error(StatusCode::kInvalidFile, "%s: the %s is not a directory", p.c_str(),
                          what);
    return Status::ok();
}

Expected<int32_t> special_id(const text::Tokenizer& tok, const std::string& path,
                             const char* name) {
    auto id = tok.token_to_id(name);
    if (!id)
        return make_error(StatusCode::kInvalidFile, "%s: special token %s is not in the vocabulary",
                          path.c_str(), name);
    return *id;
}

}  // namespace

LfmAudioModel::~LfmAudioModel() {
    // Weights and tokenizers go before the context that owns the device they live on.
    detok_.reset();
    host_store_.reset();
    head_.reset();
    backbone_.reset();
    encoder_.reset();
    store_.reset();
    backend::destroy_context(load_ctx_);
}

Expected<std::unique_ptr<LfmAudioModel>> LfmAudioModel::load(const std::string& dir,
                                                             const ModelOptions& opt) {
    VOXRT_RETURN_IF_ERROR(check_dir(dir, "model directory"));
    if (opt.max_context < 16)
        return make_error(StatusCode::kInvalidArgument,
                          "max_context: %d positions is outside [16, %d]", opt.max_context,
                          kMaxContext);
    if (opt.threads < 0 || opt.threads > kMaxThreads)
        return make_error(StatusCode::kInvalidArgument,
                          "threads: %d is outside [0, %d] (0: all cores)", opt.threads,
                          kMaxThreads);
    std::unique_ptr<LfmAudioModel> m(new LfmAudioModel());
    m->dir_ = dir;
    m->opt_ = opt;
    VOXRT_ASSIGN_OR_RETURN(m->cfg_, load_model_config(dir + "/config.json"));
    if (opt.max_context > m->cfg_.lfm.max_position_embeddings)
        return make_error(
            StatusCode::kInvalidArgument,
            "context of %d positions exceeds %s/config.json lfm.max_position_embeddings (%d)",
            opt.max_context, dir.c_str(), m->cfg_.lfm.max_position_embeddings);
    // Checked after the checkpoint's own limit, whose message says more about a given model.
    if (opt.max_context > kMaxContext)
        return make_error(StatusCode::kInvalidArgument,
                          "max_context: %d positions is outside [16, %d]", opt.max_context,
                          kMaxContext);

    const std::string tok_path = dir + "/tokenizer.json";
    VOXRT_ASSIGN_OR_RETURN(text::Tokenizer tok, text::Tokenizer::load(tok_path));
    m->tokenizer_ = std::make_unique<text::Tokenizer>(std::move(tok));
    if (m->tokenizer_->vocab_size() > m->cfg_.lfm.vocab_size)
        return make_error(StatusCode::kInvalidFile,
                          "%s: %d tokens but config.json lfm.vocab_size is %d", tok_path.c_str(),
                          m->tokenizer_->vocab_size(), m->cfg_.lfm.vocab_size);
    VOXRT_ASSIGN_OR_RETURN(m->special_.start_of_text,
                           special_id(*m->tokenizer_, tok_path, "<|startoftext|>"));
    VOXRT_ASSIGN_OR_RETURN(m->special_.im_start,
                           special_id(*m->tokenizer_, tok_path, "<|im_start|>"));
    VOXRT_ASSIGN_OR_RETURN(m->special_.im_end, special_id(*m->tokenizer_, tok_path, "<|im_end|>"));
    VOXRT_ASSIGN_OR_RETURN(m->special_.audio_start,
                           special_id(*m->tokenizer_, tok_path, "<|audio_start|>"));
    VOXRT_ASSIGN_OR_RETURN(m->special_.text_end,
                           special_id(*m->tokenizer_, tok_path, "<|text_end|>"));

    const PreprocessorConfig& pc = m->cfg_.preprocessor;
    audio::MelConfig mc;
    mc.sample_rate = pc.sample_rate;
    mc.n_fft = pc.n_fft;
    mc.window_size = pc.window_size;
    mc.window_stride = pc.window_stride;
    mc.features = pc.features;
    mc.window = pc.window;
    mc.normalize = pc.normalize;
    mc.log = pc.log;
    mc.frame_splicing = pc.frame_splicing;
    mc.dither = pc.dither;
    mc.pad_to = pc.pad_to;
    mc.pad_value = pc.pad_value;
    auto mel = audio::MelFrontend::create(mc);
    if (!mel.is_ok()) return mel.status().with_context(dir + "/config.json: preprocessor");
    m->mel_ = std::make_unique<audio::MelFrontend>(std::move(*mel));

    m->pool_ = std::make_unique<ThreadPool>(opt.threads);
    if (!backend::device_available(opt.device))
        return make_error(StatusCode::kUnsupported,
                          "%s was requested but no %s device is available to this build (use "
                          "--device cpu)",
                          device_name(opt.device), device_name(opt.device));
    VOXRT_ASSIGN_OR_RETURN(m->load_ctx_, backend::create_context(opt.device, opt.precision));
    m->load_ctx_.pool = m->pool_.get();

    VOXRT_ASSIGN_OR_RETURN(io::SafeTensorsFile mf,
                           io::SafeTensorsFile::open(dir + "/model.safetensors"));
    m->model_file_ = std::make_unique<io::SafeTensorsFile>(std::move(mf));
    m->store_ = std::make_unique<WeightStore>(m->load_ctx_, opt.weight_quant);
    VOXRT_ASSIGN_OR_RETURN(
        AudioEncoder enc,
        AudioEncoder::load(m->cfg_, *m->model_file_, *m->store_, opt.bf16_rounded_tables));
    m->encoder_ = std::make_unique<AudioEncoder>(std::move(enc));
    Lfm2Network::Options bo;
    // The official loader builds the model in the requested dtype, the RoPE buffer included: bf16
    // rounds inv_freq, float32 keeps it exact.
    bo.bf16_inv_freq = opt.precision == ops::Precision::kBF16 || opt.bf16_rounded_tables;
    bo.max_positions = opt.max_context;
    bo.quantize = opt.weight_quant != WeightQuant::kNone;
    VOXRT_ASSIGN_OR_RETURN(Lfm2Network net,
                           Lfm2Network::load(m->cfg_.lfm, *m->model_file_, "lfm.", *m->store_, bo));
    m->backbone_ = std::make_unique<Lfm2Network>(std::move(net));
    VOXRT_ASSIGN_OR_RETURN(AudioHead head, AudioHead::load(m->cfg_, *m->model_file_, *m->store_));
    m->head_ = std::make_unique<AudioHead>(std::move(head));

    const std::string detok_dir = dir + "/audio_detokenizer";
    if (opt.load_detokenizer) {
        VOXRT_RETURN_IF_ERROR(check_dir(detok_dir, "audio detokenizer directory"));
        WeightStore* ds = m->store_.get();
        if (opt.detokenizer_on_cpu && opt.device != Device::kCPU) {
            m->host_ctx_.device = Device::kCPU;
            m->host_ctx_.precision = ops::Precision::kF32;
            m->host_ctx_.pool = m->pool_.get();
            m->host_store_ = std::make_unique<WeightStore>(m->host_ctx_);
            m->detok_on_host_ = true;
            ds = m->host_store_.get();
        }
        VOXRT_ASSIGN_OR_RETURN(Detokenizer det, Detokenizer::load(detok_dir, *ds));
        m->detok_ = std::make_unique<Detokenizer>(std::move(det));
    }
    VOXRT_RETURN_IF_ERROR(ops::synchronize(m->load_ctx_));

    // Decode roofline bytes (weights as placed, one read per step).
    size_t total = 0;
    for (const auto& t : m->model_file_->tensors()) total += t.end - t.begin;
    // With quantization: what the model reads, the checkpoint less what quantization saved (on
    // the CPU the bf16 originals of quantized matrices stay mapped but are not read again).
    m->weight_bytes_ = total - std::min(total, m->store_->quantization_saved_bytes());
    const Lfm2Config& c = m->cfg_.lfm;
    const size_t es = 2;  // bf16 checkpoints
    const bool q8 = opt.weight_quant != WeightQuant::kNone;
    const bool q4 = opt.weight_quant == WeightQuant::kI4;
    // A matrix [rows, cols] as one step reads it: bf16, one-byte codes + an F32 scale per row, or
    // half-byte codes + an F32 scale per kI4Group inputs.
    auto mat = [&](size_t rows, size_t cols) {
        if (q4) return rows * cols / 2 + rows * (cols / kI4Group) * sizeof(float);
        return q8 ? rows * cols + rows * sizeof(float) : rows * cols * es;
    };
    size_t layers = 0;
    for (LayerKind k : c.layers) {
        const size_t D = static_cast<size_t>(c.hidden_size), F = static_cast<size_t>(c.ff_dim);
        size_t n = 2 * D * es + 2 * mat(F, D) + mat(D, F);
        if (k == LayerKind::kConv) {
            n += mat(3 * D, D) + D * static_cast<size_t>(c.conv_kernel) * es + mat(D, D);
        } else {
            const size_t HD = static_cast<size_t>(c.num_heads * c.head_dim),
                         KD = static_cast<size_t>(c.num_kv_heads * c.head_dim);
            n +=
                mat(HD, D) + mat(D, HD) + 2 * mat(KD, D) + 2 * static_cast<size_t>(c.head_dim) * es;
        }
        layers += n;
    }
    const size_t head_bytes = mat(static_cast<size_t>(c.vocab_size), c.hidden_size);
    m->text_step_bytes_ = layers + head_bytes;
    const DepthformerConfig& d = m->cfg_.depthformer;
    const size_t Dd = static_cast<size_t>(d.dim), F = static_cast<size_t>(d.ff_dim),
                 KV = static_cast<size_t>(d.num_kv_heads * d.head_dim);
    const size_t depth_layer =
        2 * Dd * es + mat(Dd + 2 * KV, Dd) + mat(Dd, Dd) + 2 * mat(F, Dd) + mat(Dd, F);
    const size_t Q = static_cast<size_t>(m->cfg_.codebooks),
                 V = static_cast<size_t>(m->cfg_.audio_vocab);
    m->audio_frame_bytes_ =
        layers + mat(Q * Dd, c.hidden_size) +
        Q * (static_cast<size_t>(d.layers) * depth_layer + mat(V, Dd) + Dd * es);
    return m;
}

Expected<ops::Context> LfmAudioModel::new_context(bool high_priority) const {
    ops::Context ctx;
    if (opt_.device == Device::kCUDA) {
        backend::ContextOptions o;
        o.high_priority = high_priority;
        VOXRT_ASSIGN_OR_RETURN(ctx, backend::create_context(Device::kCUDA, opt_.precision, 0, o));
    } else {
        ctx.device = Device::kCPU;
        ctx.precision = opt_.precision;
    }
    ctx.pool = pool_.get();
    return ctx;
}

}  // namespace voxrt::model
