// One step of the streaming ISTFT on the GPU (backend/entry_points.h IstftStepArgs), in two launches:
//
// 1. frames: a block per (row, 128 output pairs). The row's spectrum X = polar(exp(log|X|), ∠X)
//    goes to shared memory as float64 (each value rounded to float32 first, as the host's
//    spectrum_from_logmag_phase computes it), with a float64 table of e^{2πit/n}. Thread j sums
//    the real inverse transform directly over the bins,
//        n·x[j] = X₀ + (−1)^j X_{n/2} + 2 Σ_{k=1}^{n/2−1} (Re X_k cos 2πjk/n − Im X_k sin 2πjk/n),
//    and the same sums give x[n − j] (cos even, sin odd in j). That is 0.8 M multiply-adds per
//    frame of 1280: a few microseconds for a step's 48 frames, with no cuFFT plan or workspace to
//    keep per stream, nothing allocated, and the float64 result rounded to float32 as the host's
//    FFT result is. Then ·(1/n) and the window, in float32.
// 2. overlap-add: a thread per output sample: the carried partial sum, plus this step's frames in
//    frame order; the envelope from zero over every frame covering the sample, from the rounded
//    window² table; the same float32 operations in the same order as audio::IstftStream.
#include <algorithm>

#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"
#include "backend/cuda/handles.h"
#include "core/check.h"

namespace voxrt::cuda {

namespace {

constexpr int kFrameThreads = 128;

// Shared memory of the frames kernel: the table (n) and the spectrum (n/2 + 1), float64 pairs.
size_t frames_smem(int n) {
    return static_cast<size_t>(n + n / 2 + 1) * sizeof(double2);
}

__global__ void __launch_bounds__(kFrameThreads)
    istft_frames_kernel(const float* __restrict__ spec, const float* __restrict__ window, int n,
                        float* __restrict__ frames) {
    extern __shared__ double2 smem[];
    const int half = n / 2, bins = half + 1;
    double2* tw = smem;     // [n]
    double2* X = smem + n;  // [bins]
    const int r = blockIdx.x;
    const float* logmag = spec + static_cast<int64_t>(r) * 2 * bins;
    const float* phase = logmag + bins;
    for (int t = threadIdx.x; t < n; t += blockDim.x) {
        double s, c;
        sincospi(2.0 * t / n, &s, &c);
        tw[t] = make_double2(c, s);
    }
    for (int k = threadIdx.x; k < bins; k += blockDim.x) {
        const float mag = static_cast<float>(exp(static_cast<double>(logmag[k])));
        const float re = mag * static_cast<float>(cos(static_cast<double>(phase[k])));
        const float im = mag * static_cast<float>(sin(static_cast<double>(phase[k])));
        X[k] = make_double2(re, im);
    }
    __syncthreads();
    const int j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j > half) return;
    double a = 0.0, b = 0.0;  // Σ Re X_k cos θ, Σ Im X_k sin θ, θ = 2πjk/n
    int idx = 0;              // j·k mod n
    for (int k = 1; k < half; ++k) {
        idx += j;
        if (idx >= n) idx -= n;
        const double2 x = X[k], w = tw[idx];
        a = fma(x.x, w.x, a);
        b = fma(x.y, w.y, b);
    }
    const double edge = X[0].x + ((j & 1) ? -X[half].x : X[half].x);
    const double inv_n = 1.0 / n;
    float* out = frames + static_cast<int64_t>(r) * n;
    out[j] = __fmul_rn(static_cast<float>((edge + 2.0 * (a - b)) * inv_n), window[j]);
    if (j != 0 && j != half)
        out[n - j] = __fmul_rn(static_cast<float>((edge + 2.0 * (a + b)) * inv_n), window[n - j]);
}

__global__ void istft_overlap_add_kernel(IstftStepArgs a, int64_t base, int64_t end) {
    const int n = a.n_fft, hop = a.hop;
    const int64_t f0 = a.frames_before, f_end = f0 + a.rows;
    const int64_t carried_end = f0 > 0 ? (f0 - 1) * hop + n : base;
    const int64_t pending_begin = f_end * hop;
    for (int64_t s = base + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; s < end;
         s += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t first = s - n + 1 <= 0 ? 0 : (s - n + 1 + hop - 1) / hop;
        const int64_t last = min(f_end - 1, s / hop);
        float acc = s < carried_end ? a.carry_in[s - base] : 0.0f;
        for (int64_t f = max(first, f0); f <= last; ++f)
            acc = __fadd_rn(acc, a.frames[(f - f0) * n + (s - f * hop)]);
        if (s >= a.emit_lo && s < a.emit_hi) {
            float env = 0.0f;
            for (int64_t f = first; f <= last; ++f) env = __fadd_rn(env, a.window_sq[s - f * hop]);
            a.out[s - a.emit_lo] = __fdiv_rn(acc, env);
        }
        if (a.rows > 0 && s >= pending_begin) a.carry_out[s - pending_begin] = acc;
    }
}

}  // namespace

void istft_step(const ops::Context& ctx, const IstftStepArgs& a) {
    VOXRT_ASSERT(a.n_fft >= 2 && a.n_fft % 2 == 0 && frames_smem(a.n_fft) <= 48 * 1024,
                 "istft_step: n_fft %d (the CUDA kernel takes even sizes up to 2046)", a.n_fft);
    cudaStream_t st = stream_of(ctx);
    if (a.rows > 0) {
        const int pairs = a.n_fft / 2 + 1;
        const dim3 grid(static_cast<unsigned>(a.rows),
                        static_cast<unsigned>((pairs + kFrameThreads - 1) / kFrameThreads));
        istft_frames_kernel<<<grid, kFrameThreads, frames_smem(a.n_fft), st>>>(a.spec, a.window, a.n_fft, a.frames);
        check_launch(ctx, "istft frames");
    }
    const int64_t base = a.frames_before * a.hop;
    const int64_t end =
        std::max(a.emit_hi, a.rows > 0 ? (a.frames_before + a.rows - 1) * a.hop + a.n_fft : base);
    if (end <= base) return;
    istft_overlap_add_kernel<<<grid_for(end - base, 256), 256, 0, st>>>(a, base, end);
    check_launch(ctx, "istft overlap-add");
}

}  // namespace voxrt::cuda
