#include "voxrt/audio_file.h"

#include <utility>

#include "audio/wav.h"

namespace voxrt {

Expected<AudioClip> read_wav_file(const std::string& path, double max_seconds) {
    audio::WavOptions o;
    o.max_seconds = max_seconds;
    // Streamed: the file's interleaved samples are never held whole, only the mono result.
    VOXRT_ASSIGN_OR_RETURN(audio::MonoAudio a, audio::read_wav_mono(path, o));
    AudioClip c;
    c.sample_rate = a.sample_rate;
    c.channels = a.channels;
    c.samples = std::move(a.samples);
    return c;
}

Status write_wav_file(const std::string& path, const float* mono, size_t n, int sample_rate) {
    return audio::write_wav(path, mono, n, sample_rate);
}

}  // namespace voxrt
