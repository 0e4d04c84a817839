// WAV reader: decode_wav on the bytes, and the streaming readers (read_wav, read_wav_mono) on the
// same bytes as a file. All three must agree: the same success or the same error, and the same
// samples (read_wav_mono equal to downmix_mono of decode_wav, bit for bit).
#include <cstring>
#include <string>

#include "audio/wav.h"
#include "common.h"

using namespace voxrt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    audio::WavOptions opt;
    opt.max_seconds = 30.0;  // keeps accepted inputs small: the fuzzer looks for crashes
    opt.allow_truncated = size > 0 && (data[size - 1] & 1);
    auto mem = audio::decode_wav(data, size, opt, "fuzz.wav");
    fuzz::MemFile file(data, size);
    auto whole = audio::read_wav(file.path(), opt);
    auto mono = audio::read_wav_mono(file.path(), opt);
    if (mem.is_ok() != whole.is_ok() || mem.is_ok() != mono.is_ok())
        fuzz::fail("decode_wav, read_wav and read_wav_mono disagree",
                   std::string(mem.is_ok() ? "ok" : mem.status().message()) + " | " +
                       (whole.is_ok() ? "ok" : whole.status().message()) + " | " +
                       (mono.is_ok() ? "ok" : mono.status().message()));
    if (!mem.is_ok()) {
        if (mem.status().message().find("fuzz.wav") == std::string::npos)
            fuzz::fail("error does not name the input", mem.status().message());
        return 0;
    }
    const audio::Pcm& p = *mem;
    if (p.channels < 1 || p.channels > audio::kMaxChannels || p.frames() == 0 ||
        p.samples.size() != p.frames() * static_cast<size_t>(p.channels))
        fuzz::fail("decoded PCM has an impossible shape", std::to_string(p.samples.size()));
    if (whole->samples.size() != p.samples.size() || whole->sample_rate != p.sample_rate ||
        (!p.samples.empty() &&
         std::memcmp(whole->samples.data(), p.samples.data(), p.samples.size() * 4) != 0))
        fuzz::fail("read_wav differs from decode_wav", "");
    const std::vector<float> ref = audio::downmix_mono(p);
    if (mono->samples.size() != ref.size() || mono->sample_rate != p.sample_rate ||
        std::memcmp(mono->samples.data(), ref.data(), ref.size() * 4) != 0)
        fuzz::fail("read_wav_mono differs from downmix_mono(decode_wav)", "");
    return 0;
}
