// voxrt/audio_file.h — WAV files in and out, for frontends that read and write them. Audio files
// are untrusted input: every field is validated and every failure is a Status naming the file and
// the field, never an abort.
//
// Read: PCM 16/24/32-bit integer or 32-bit float, mono or stereo (averaged to mono), 1 kHz ..
// 384 kHz, at most `max_seconds`. Write: 16-bit PCM mono; a regular file is replaced only once the
// new one is complete, a FIFO or device (/dev/null, /dev/stdout) is written through.
// Thread-safe (no shared state).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "voxrt/status.h"

namespace voxrt {

struct AudioClip {
    std::vector<float> samples;  // mono, [-1, 1]
    int sample_rate = 0;         // Hz
    int channels = 0;            // in the file (stereo is averaged into `samples`)
    double seconds() const {
        return sample_rate > 0 ? static_cast<double>(samples.size()) / sample_rate : 0;
    }
};

Expected<AudioClip> read_wav_file(const std::string& path, double max_seconds = 600.0);
Status write_wav_file(const std::string& path, const float* mono, size_t n, int sample_rate);

}  // namespace voxrt
