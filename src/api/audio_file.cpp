#include "voxrt/audio_file.h"

#include "audio/wav.h"

namespace voxrt {

Expected<AudioClip> read_wav_file(const std::string& path, double max_seconds) {
    audio::WavOptions o;
    o.max_seconds = max_seconds;
    VOXRT_ASSIGN_OR_RETURN(audio::Pcm pcm, audio::read_wav(path, o));
    AudioClip c;
    c.sample_rate = pcm.sample_rate;
    c.channels = pcm.channels;
    c.samples = audio::downmix_mono(pcm);
    return c;
}

Status write_wav_file(const std::string& path, const float* mono, size_t n, int sample_rate) {
    return audio::write_wav(path, mono, n, sample_rate);
}

}  // namespace voxrt
