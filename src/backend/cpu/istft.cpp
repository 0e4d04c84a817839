// One step of the streaming ISTFT on the host (backend/entry_points.h IstftStepArgs): the same
// functions and the same float32 operations in the same order as audio::IstftStream (its ring of
// partial sums is the carry here), so the samples are bit-identical to it.
#include <algorithm>
#include <vector>

#include "audio/fft.h"
#include "audio/istft.h"
#include "backend/entry_points.h"
#include "backend/cpu/cpu_common.h"

namespace voxrt::cpu {

namespace {

// Per-thread transform plan and buffers, made on a thread's first step (and again if n changes).
struct IstftScratch {
    int n = 0;
    audio::Fft fft{1};
    std::vector<audio::Fft::Complex> in, out;
    std::vector<float> spectrum;
    void ensure(int size) {
        if (n == size) return;
        n = size;
        fft = audio::Fft(size);
        in.resize(static_cast<size_t>(size));
        out.resize(static_cast<size_t>(size));
        spectrum.resize(static_cast<size_t>(2 * (size / 2 + 1)));
    }
};

}  // namespace

void istft_step(const ops::Context& ctx, const IstftStepArgs& a) {
    const int n = a.n_fft, hop = a.hop, bins = n / 2 + 1;
    auto transform = [&](int64_t b, int64_t e) {
        thread_local IstftScratch s;
        s.ensure(n);
        for (int64_t r = b; r < e; ++r) {
            const float* row = a.spec + r * 2 * bins;
            audio::spectrum_from_logmag_phase(row, row + bins, bins, s.spectrum.data());
            audio::irfft_windowed(s.fft, s.spectrum.data(), a.window, s.in.data(), s.out.data(),
                                  a.frames + r * n);
        }
    };
    if (ctx.pool && a.rows > 1) {
        ctx.pool->parallel_for(a.rows, 1, transform);
    } else if (a.rows > 0) {
        transform(0, a.rows);
    }

    // Overlap-add, sample by sample: the carried partial sum (frames before this step), then this
    // step's frames in order; the envelope from zero over every frame covering the sample (window²
    // comes rounded from a table, as IstftStream's, so that no compiler can fuse it into the sum).
    const int64_t f0 = a.frames_before, f_end = f0 + a.rows;
    const int64_t base = f0 * hop;
    const int64_t carried_end = f0 > 0 ? (f0 - 1) * hop + n : base;
    const int64_t pending_begin = f_end * hop;
    const int64_t end = std::max(a.emit_hi, a.rows > 0 ? (f_end - 1) * hop + n : base);
    for (int64_t s = base; s < end; ++s) {
        const int64_t first = s - n + 1 <= 0 ? 0 : (s - n + 1 + hop - 1) / hop;
        const int64_t last = std::min(f_end - 1, s / hop);
        float acc = s < carried_end ? a.carry_in[s - base] : 0.0f;
        for (int64_t f = std::max(first, f0); f <= last; ++f)
            acc += a.frames[(f - f0) * n + (s - f * hop)];
        if (s >= a.emit_lo && s < a.emit_hi) {
            float env = 0.0f;
            for (int64_t f = first; f <= last; ++f) env += a.window_sq[s - f * hop];
            a.out[s - a.emit_lo] = acc / env;
        }
        if (a.rows > 0 && s >= pending_begin) a.carry_out[s - pending_begin] = acc;
    }
}

}  // namespace voxrt::cpu
