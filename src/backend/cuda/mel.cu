// The log-mel spectrogram on the GPU (audio::MelFrontend::compute_on): the host's float64
// pipeline (audio/mel.cpp) step for step, with the frames transformed by cuFFT (double, real to
// complex) instead of the host's FFT. The results differ from the host's by float64 rounding only
// (the transforms and sums are ordered differently), far below the float32 output.
#include <cufft.h>

#include <cstdio>

#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"

namespace voxrt::cuda {

namespace {

// frames[t][k] = y[t·hop − n_fft/2 + k]·window[k − left] for k in [left, left + win) and the sample
// inside the signal, else 0, where y is the pre-emphasised signal (y[0] = x[0]).
__global__ void mel_frames_kernel(const float* x, int64_t n, const float* window, int win, int left,
                                  int n_fft, int hop, int T, double preemph, double* frames) {
    const int64_t total = static_cast<int64_t>(T) * n_fft;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t t = i / n_fft;
        const int k = static_cast<int>(i - t * n_fft);
        double v = 0.0;
        if (k >= left && k < left + win) {
            const int64_t s = t * hop - n_fft / 2 + k;
            if (s >= 0 && s < n) {
                const double y = s == 0 ? static_cast<double>(x[0])
                                        : static_cast<double>(x[s]) - preemph * x[s - 1];
                v = y * window[k - left];
            }
        }
        frames[i] = v;
    }
}

// logmel[f][t] = log(Σ_{b in [lo_f, hi_f)} fb[f][b]·|X[t][b]|² + guard), one thread per (f, t).
__global__ void mel_bank_kernel(const cufftDoubleComplex* spec, int nb, const float* fb, const int32_t* lo,
                                const int32_t* hi, int F, int T, double guard, double* logmel) {
    const int64_t total = static_cast<int64_t>(F) * T;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int f = static_cast<int>(i / T);
        const int64_t t = i - static_cast<int64_t>(f) * T;
        const cufftDoubleComplex* X = spec + t * nb;
        const float* row = fb + static_cast<int64_t>(f) * nb;
        double acc = 0.0;
        for (int b = lo[f]; b < hi[f]; ++b) acc += row[b] * (X[b].x * X[b].x + X[b].y * X[b].y);
        logmel[i] = log(acc + guard);
    }
}

// One block per feature: per-feature normalisation over the first `valid` frames (mean with one
// correction pass, unbiased standard deviation + 1e-5), or a plain copy; frames from `valid` on
// are pad_value. out is [F][T_out].
constexpr int kNormThreads = 256;
__global__ void __launch_bounds__(kNormThreads) mel_norm_kernel(const double* logmel, int T, int valid, int T_out,
                                                                bool per_feature, float pad_value, float* out) {
    __shared__ double red[kNormThreads / 32];
    const int f = blockIdx.x;
    const double* x = logmel + static_cast<int64_t>(f) * T;
    float* o = out + static_cast<int64_t>(f) * T_out;
    auto block_sum_d = [&](double v) {
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        __syncthreads();
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
        __syncthreads();
        double r = 0.0;
        for (int w = 0; w < kNormThreads / 32; ++w) r += red[w];
        return r;
    };
    double mean = 0.0, sd = 1.0;
    if (per_feature && valid > 0) {
        double s = 0.0;
        for (int t = threadIdx.x; t < valid; t += blockDim.x) s += x[t];
        mean = block_sum_d(s) / valid;
        double c = 0.0;
        for (int t = threadIdx.x; t < valid; t += blockDim.x) c += x[t] - mean;
        mean += block_sum_d(c) / valid;
        sd = 0.0;  // NaN (valid == 1) -> 0, as the reference
        if (valid > 1) {
            double q = 0.0;
            for (int t = threadIdx.x; t < valid; t += blockDim.x) q += (x[t] - mean) * (x[t] - mean);
            sd = sqrt(block_sum_d(q) / (valid - 1.0));
        }
        sd += 1e-5;
    }
    for (int t = threadIdx.x; t < T_out; t += blockDim.x) {
        float v = pad_value;
        if (t < valid) v = per_feature ? static_cast<float>((x[t] - mean) / sd) : static_cast<float>(x[t]);
        o[t] = v;
    }
}

const char* cufft_error_name(cufftResult r) {
    switch (r) {
        case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
        case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
        case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
        case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
        case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
        case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
        default: return "cuFFT error";
    }
}

int grid_of(int64_t n, int threads) {
    const int64_t b = (n + threads - 1) / threads;
    return static_cast<int>(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

}  // namespace

Status log_mel(const ops::Context& ctx, const LogMelArgs& a) {
    const int nb = a.n_fft / 2 + 1;
    if (a.n < 1 || a.frames < 1 || a.valid < 0 || a.valid > a.frames || a.frames_out < a.valid ||
        a.win < 1 || a.win > a.n_fft || a.features < 1 || !a.pcm || !a.out)
        return make_error(StatusCode::kInvalidArgument, "[mel] bad arguments for the CUDA spectrogram");
    cudaStream_t st = stream_of(ctx);
    // Workspace, stream-ordered: the constants, the frames, their spectra and the log-mel.
    const size_t consts = static_cast<size_t>(a.win) * 4 + static_cast<size_t>(a.features) * nb * 4 +
                          static_cast<size_t>(a.features) * 8;
    const size_t frames_b = static_cast<size_t>(a.frames) * a.n_fft * sizeof(double);
    const size_t spec_b = static_cast<size_t>(a.frames) * nb * sizeof(cufftDoubleComplex);
    const size_t logmel_b = static_cast<size_t>(a.features) * a.frames * sizeof(double);
    auto up = [](size_t v) { return (v + 255) / 256 * 256; };
    const size_t bytes = up(consts) + up(frames_b) + up(spec_b) + up(logmel_b);
    void* ws = nullptr;
    cudaError_t e;
    {
        // Growing the stream-ordered pool maps device memory: not while another thread captures.
        std::unique_lock<std::shared_mutex> guard(capture_guard());
        e = cudaMallocAsync(&ws, bytes, st);
    }
    if (e != cudaSuccess)
        return make_error(StatusCode::kOutOfMemory, "[mel] cannot allocate %zu bytes on the GPU: %s", bytes,
                          cudaGetErrorString(e));
    char* p = static_cast<char*>(ws);
    float* window = reinterpret_cast<float*>(p);
    float* fb = window + a.win;
    int32_t* lo = reinterpret_cast<int32_t*>(fb + static_cast<size_t>(a.features) * nb);
    int32_t* hi = lo + a.features;
    p += up(consts);
    double* frames = reinterpret_cast<double*>(p);
    p += up(frames_b);
    cufftDoubleComplex* spec = reinterpret_cast<cufftDoubleComplex*>(p);
    p += up(spec_b);
    double* logmel = reinterpret_cast<double*>(p);

    cufftHandle plan = 0;
    bool have_plan = false;
    std::unique_lock<std::shared_mutex> plan_guard(capture_guard(), std::defer_lock);
    auto run = [&]() -> Status {
        if (!check(ctx, cudaMemcpyAsync(window, a.window, static_cast<size_t>(a.win) * 4, cudaMemcpyHostToDevice, st),
                   "cudaMemcpyAsync(mel window)") ||
            !check(ctx, cudaMemcpyAsync(fb, a.filterbank, static_cast<size_t>(a.features) * nb * 4,
                                        cudaMemcpyHostToDevice, st),
                   "cudaMemcpyAsync(mel filterbank)") ||
            !check(ctx, cudaMemcpyAsync(lo, a.bin_lo, static_cast<size_t>(a.features) * 4, cudaMemcpyHostToDevice, st),
                   "cudaMemcpyAsync(mel bins)") ||
            !check(ctx, cudaMemcpyAsync(hi, a.bin_hi, static_cast<size_t>(a.features) * 4, cudaMemcpyHostToDevice, st),
                   "cudaMemcpyAsync(mel bins)"))
            return make_error(StatusCode::kInternal, "[mel] upload to the GPU failed");
        const int left = (a.n_fft - a.win) / 2;
        const int64_t nf = static_cast<int64_t>(a.frames) * a.n_fft;
        mel_frames_kernel<<<grid_of(nf, 256), 256, 0, st>>>(a.pcm, a.n, window, a.win, left, a.n_fft, a.hop,
                                                          a.frames, a.preemph, frames);
        check_launch(ctx, "mel frames");
        int n_fft = a.n_fft;
        // Plan creation allocates and its destruction frees (device-synchronizing): not while
        // another thread captures a graph (capture_guard()).
        plan_guard.lock();
        cufftResult r = cufftPlanMany(&plan, 1, &n_fft, nullptr, 1, a.n_fft, nullptr, 1, nb, CUFFT_D2Z, a.frames);
        if (r != CUFFT_SUCCESS)
            return make_error(StatusCode::kInternal, "[mel] cufftPlanMany(%d x %d, D2Z): %s", a.frames, a.n_fft,
                              cufft_error_name(r));
        have_plan = true;
        r = cufftSetStream(plan, st);
        if (r == CUFFT_SUCCESS) r = cufftExecD2Z(plan, frames, spec);
        if (r != CUFFT_SUCCESS) return make_error(StatusCode::kInternal, "[mel] cufftExecD2Z: %s", cufft_error_name(r));
        const int64_t nm = static_cast<int64_t>(a.features) * a.frames;
        mel_bank_kernel<<<grid_of(nm, 256), 256, 0, st>>>(spec, nb, fb, lo, hi, a.features, a.frames, a.log_guard,
                                                        logmel);
        check_launch(ctx, "mel filterbank");
        mel_norm_kernel<<<a.features, kNormThreads, 0, st>>>(logmel, a.frames, a.valid, a.frames_out, a.per_feature,
                                                            a.pad_value, a.out);
        check_launch(ctx, "mel normalisation");
        return Status::ok();
    };
    Status result = run();
    if (have_plan) {
        // The plan's work area must outlive the transform.
        check(ctx, cudaStreamSynchronize(st), "cudaStreamSynchronize(mel)");
        cufftDestroy(plan);
    }
    if (plan_guard.owns_lock()) plan_guard.unlock();
    {
        std::unique_lock<std::shared_mutex> guard(capture_guard());
        check(ctx, cudaFreeAsync(ws, st), "cudaFreeAsync(mel workspace)");
    }
    return result;
}

}  // namespace voxrt::cuda
