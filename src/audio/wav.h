// WAV (RIFF/WAVE) decoding and encoding. Audio files are untrusted input: every field is
// validated against the file size and fixed caps before anything is allocated, and every failure
// is a Status naming the file (or buffer label) and the field, never an abort.
//
// Accepted: PCM 16/24/32-bit integer and 32-bit IEEE float, plain (format tags 1/3) or
// WAVE_FORMAT_EXTENSIBLE (0xFFFE) with the PCM / IEEE_FLOAT sub-format GUID; 1 or 2 channels;
// sample rate in [kMinSampleRate, kMaxSampleRate]; duration <= WavOptions::max_seconds.
// Rejected (kUnsupported): 8-bit and 64-bit samples, other codecs (ADPCM, A-law, ...), RF64/RIFX,
// more than 2 channels. Rejected (kInvalidFile): non-RIFF data, truncated chunks, missing fmt or
// data chunk, inconsistent block alignment, 0 samples, NaN/Inf or absurd (|x| > 1e6) float samples.
//
// Sample conversion (what a user's WAV gives; the Python reference tools use the same):
// int16 / 32768, int24 / 2^23, int32 / 2^31 (rounded to float32), float32 as stored.
//
// Data chunk size: a declared size beyond the end of the file is an error (truncated file) unless
// it is the 0xFFFFFFFF "unknown length" sentinel written by streaming encoders, or
// WavOptions::allow_truncated is set; in both cases the data is clamped to the whole frames
// present. A size that is not a whole number of frames is an error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace voxrt::audio {

constexpr int kMinSampleRate = 1000;
constexpr int kMaxSampleRate = 384000;
constexpr int kMaxChannels = 2;
// Float samples beyond this magnitude (120 dB over full scale) are rejected as corrupt: they would
// overflow the float32 power spectrum downstream.
constexpr float kMaxFloatSample = 1e6f;

struct WavOptions {
    double max_seconds = 600.0;    // duration cap, checked before allocating (reliability row 1)
    bool allow_truncated = false;  // clamp a data chunk that runs past the end of the file
};

// Decoded PCM. Thread-compatible value type.
struct Pcm {
    std::vector<float> samples;  // [frames * channels], interleaved
    int channels = 0;            // 1 or 2
    int sample_rate = 0;         // Hz
    size_t frames() const { return channels > 0 ? samples.size() / channels : 0; }
};

// Decodes a WAV image held in memory. `label` names the source in error messages.
Expected<Pcm> decode_wav(const uint8_t* data, size_t size, const WavOptions& options = {},
                         const std::string& label = "<memory>");

// Reads and decodes a WAV file. The file size is checked against the cap implied by
// options.max_seconds before it is read; the samples are then read kWavChunkBytes at a time into
// the result (the file is never held whole).
Expected<Pcm> read_wav(const std::string& path, const WavOptions& options = {});

// Mono audio at the file's sample rate.
struct MonoAudio {
    std::vector<float> samples;
    int sample_rate = 0;  // Hz
    int channels = 0;     // in the file (mixed down into `samples`)
};

// Bytes of sample data read and converted at a time by read_wav and read_wav_mono.
constexpr size_t kWavChunkBytes = size_t{1} << 18;

// Reads a WAV file and mixes it down to mono: the same samples as
// downmix_mono(*read_wav(path, options)), bit for bit, and the same errors. The file is read and
// converted kWavChunkBytes at a time, so the memory it takes is the mono result (4 bytes a frame)
// plus about 3 * kWavChunkBytes, never the file or its interleaved samples whole. The entry point
// for audio a model will hear.
Expected<MonoAudio> read_wav_mono(const std::string& path, const WavOptions& options = {});

// Mono mix: the channel mean computed in float32 as (c0 + c1 + ...) * (1/C). Mono input is
// copied. voxrt's choice: the official liquid-audio code asserts mono input.
std::vector<float> downmix_mono(const Pcm& pcm);

// Writes 16-bit PCM mono: q = clamp(lrint(x * 32768), -32768, 32767), NaN -> 0, so that a WAV
// decoded by decode_wav is re-encoded losslessly. What `path` is decides how:
//   * nothing, or a regular file (also behind symlinks): the data goes to a temporary file beside
//     the file and is renamed over it only once complete, so a failure never leaves a truncated
//     file under the final name; symlinks stay and lead to the new file; a replaced file's
//     permission bits carry over (not its set-user/group-id bits), a new file gets 0666 less the
//     umask;
//   * a FIFO or a device (/dev/null, /dev/stdout): written through, never replaced; a FIFO waits
//     for a reader;
//   * a dangling symlink: its target is created;
//   * a directory or socket, or an empty path: an error.
Status write_wav(const std::string& path, const float* mono, size_t n, int sample_rate);

}  // namespace voxrt::audio
