#include "audio/wav.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "io/mapped_file.h"

namespace voxrt::audio {

namespace {

constexpr uint16_t kTagPcm = 1;
constexpr uint16_t kTagFloat = 3;
constexpr uint16_t kTagExtensible = 0xFFFE;
constexpr uint32_t kUnknownSize = 0xFFFFFFFFu;
// KSDATAFORMAT_SUBTYPE_{PCM,IEEE_FLOAT} = {0000000X-0000-0010-8000-00AA00389B71}: bytes 4..15.
constexpr uint8_t kGuidTail[12] = {0x00, 0x00, 0x10, 0x00, 0x80, 0x00,
                                   0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

uint16_t rd16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t rd32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// A chunk id made printable for error messages.
std::string fourcc(const uint8_t* p) {
    std::string s(4, '?');
    for (int i = 0; i < 4; ++i)
        s[i] = (p[i] >= 0x20 && p[i] < 0x7F) ? static_cast<char>(p[i]) : '?';
    return s;
}

struct Format {
    uint16_t tag = 0;  // kTagPcm or kTagFloat after resolving EXTENSIBLE
    int channels = 0;
    int sample_rate = 0;
    int bits = 0;
    int block_align = 0;
};

Status parse_fmt(const uint8_t* p, uint32_t size, const char* label, Format* f) {
    if (size < 16) {
        return make_error(StatusCode::kInvalidFile, "[wav] %s: fmt chunk is %u bytes; needs >= 16",
                          label, size);
    }
    uint16_t tag = rd16(p);
    uint16_t channels = rd16(p + 2);
    uint32_t rate = rd32(p + 4);
    uint16_t block_align = rd16(p + 12);
    uint16_t bits = rd16(p + 14);

    if (channels == 0) {
        return make_error(StatusCode::kInvalidFile, "[wav] %s: fmt.channels = 0", label);
    }
    if (channels > kMaxChannels) {
        return make_error(StatusCode::kUnsupported,
                          "[wav] %s: fmt.channels = %u; voxrt accepts mono or stereo", label,
                          channels);
    }
    if (rate < static_cast<uint32_t>(kMinSampleRate) ||
        rate > static_cast<uint32_t>(kMaxSampleRate)) {
        return make_error(StatusCode::kInvalidFile,
                          "[wav] %s: fmt.sample_rate = %u Hz is outside [%d, %d]", label, rate,
                          kMinSampleRate, kMaxSampleRate);
    }
    if (tag == kTagExtensible) {
        if (size < 40) {
            return make_error(StatusCode::kInvalidFile,
                              "[wav] %s: WAVE_FORMAT_EXTENSIBLE fmt chunk is %u bytes; needs 40",
                              label, size);
        }
        uint16_t cb_size = rd16(p + 16);
        uint16_t valid_bits = rd16(p + 18);
        if (cb_size < 22) {
            return make_error(StatusCode::kInvalidFile, "[wav] %s: fmt.cbSize = %u; needs >= 22",
                              label, cb_size);
        }
        if (valid_bits > bits) {
            return make_error(StatusCode::kInvalidFile,
                              "[wav] %s: fmt.wValidBitsPerSample = %u exceeds bits_per_sample %u",
                              label, valid_bits, bits);
        }
        const uint8_t* guid = p + 24;
        uint32_t sub = rd32(guid);
        if (std::memcmp(guid + 4, kGuidTail, sizeof(kGuidTail)) != 0 ||
            (sub != kTagPcm && sub != kTagFloat)) {
            return make_error(StatusCode::kUnsupported,
                              "[wav] %s: fmt.SubFormat GUID is neither KSDATAFORMAT_SUBTYPE_PCM "
                              "nor _IEEE_FLOAT (first dword 0x%08x)",
                              label, sub);
        }
        tag = static_cast<uint16_t>(sub);
    }
    if (tag == kTagPcm) {
        if (bits == 8) {
            return make_error(StatusCode::kUnsupported,
                              "[wav] %s: fmt.bits_per_sample = 8 (8-bit PCM) is not supported; "
                              "use 16, 24 or 32-bit PCM or 32-bit float",
                              label);
        }
        if (bits != 16 && bits != 24 && bits != 32) {
            return make_error(StatusCode::kInvalidFile,
                              "[wav] %s: fmt.bits_per_sample = %u is not valid for PCM", label,
                              bits);
        }
    } else if (tag == kTagFloat) {
        if (bits == 64) {
            return make_error(StatusCode::kUnsupported,
                              "[wav] %s: 64-bit float samples are not supported", label);
        }
        if (bits != 32) {
            return make_error(StatusCode::kInvalidFile,
                              "[wav] %s: fmt.bits_per_sample = %u is not valid for IEEE float",
                              label, bits);
        }
    } else {
        return make_error(StatusCode::kUnsupported,
                          "[wav] %s: fmt.format_tag = 0x%04x is not PCM or IEEE float", label, tag);
    }
    int expect_align = channels * (bits / 8);
    if (block_align != expect_align) {
        return make_error(StatusCode::kInvalidFile,
                          "[wav] %s: fmt.block_align = %u; %u channels of %u bits need %d", label,
                          block_align, channels, bits, expect_align);
    }
    f->tag = tag;
    f->channels = channels;
    f->sample_rate = static_cast<int>(rate);
    f->bits = bits;
    f->block_align = block_align;
    return Status::ok();
}

// Converts n samples at p to float; `first` is the index of p's first sample in the data chunk
// (for error messages).
Status convert(const uint8_t* p, size_t n, const Format& f, const char* label, float* out,
               size_t first) {
    if (f.tag == kTagPcm && f.bits == 16) {
        for (size_t i = 0; i < n; ++i, p += 2) {
            out[i] = static_cast<float>(static_cast<int16_t>(rd16(p))) * (1.0f / 32768.0f);
        }
    } else if (f.tag == kTagPcm && f.bits == 24) {
        for (size_t i = 0; i < n; ++i, p += 3) {
            uint32_t u = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                         (static_cast<uint32_t>(p[2]) << 16);
            int32_t v = static_cast<int32_t>(u << 8) >> 8;  // sign-extend 24 -> 32 bits
            out[i] = static_cast<float>(v) * (1.0f / 8388608.0f);
        }
    } else if (f.tag == kTagPcm && f.bits == 32) {
        for (size_t i = 0; i < n; ++i, p += 4) {
            int32_t v = static_cast<int32_t>(rd32(p));
            out[i] = static_cast<float>(static_cast<double>(v) * (1.0 / 2147483648.0));
        }
    } else {
        for (size_t i = 0; i < n; ++i, p += 4) {
            uint32_t u = rd32(p);
            float v;
            std::memcpy(&v, &u, 4);
            if (!std::isfinite(v) || std::fabs(v) > kMaxFloatSample) {
                return make_error(StatusCode::kInvalidFile,
                                  "[wav] %s: float sample %zu (channel %zu) is %g; samples must be "
                                  "finite and |x| <= %g",
                                  label, (first + i) / f.channels, (first + i) % f.channels,
                                  static_cast<double>(v), static_cast<double>(kMaxFloatSample));
            }
            out[i] = v;
        }
    }
    return Status::ok();
}

Status write_error(const std::string& path, const char* what, int err) {
    return make_error(
        err == ENOENT || err == ENOTDIR ? StatusCode::kNotFound : StatusCode::kInvalidArgument,
        "[wav] %s: %s: %s", path.c_str(), what, std::strerror(err));
}

// Writes all of `buf` to fd; closes fd in every case.
Status write_and_close(int fd, const std::vector<uint8_t>& buf, const std::string& path) {
    size_t off = 0;
    while (off < buf.size()) {
        const ssize_t w = ::write(fd, buf.data() + off, buf.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            const int err = w < 0 ? errno : EIO;
            ::close(fd);
            return write_error(path, "write failed", err);
        }
        off += static_cast<size_t>(w);
    }
    if (::close(fd) != 0) return write_error(path, "write failed", errno);
    return Status::ok();
}

// Writes through an existing FIFO or device (or a dangling symlink) without replacing it.
Status write_through(const std::string& path, const std::vector<uint8_t>& buf, int flags) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0666);
    if (fd < 0) return write_error(path, "cannot open for writing", errno);
    return write_and_close(fd, buf, path);
}

// Replaces the regular file `target` (or creates it) with `buf` through a temporary file in the
// same directory; `path` names it in messages. `mode`: permission bits to give the new file, or
// -1 for the default (0666 less the umask).
Status replace_atomically(const std::string& path, const std::string& target,
                          const std::vector<uint8_t>& buf, int mode) {
    static std::atomic<uint64_t> counter{0};
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
        const uint64_t salt =
            static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        char suffix[64];
        std::snprintf(suffix, sizeof suffix, ".tmp-%d-%llx", static_cast<int>(::getpid()),
                      static_cast<unsigned long long>((salt << 8) ^ counter.fetch_add(1)));
        tmp = target + suffix;
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            return write_error(path, "cannot create a file beside it", errno);
    }
    if (fd < 0) return write_error(path, "cannot create a file beside it", EEXIST);
    if (mode >= 0) (void)::fchmod(fd, static_cast<mode_t>(mode));
    Status st = write_and_close(fd, buf, path);
    if (st.is_ok() && std::rename(tmp.c_str(), target.c_str()) != 0)
        st = write_error(path, "cannot replace it", errno);
    if (!st.is_ok()) ::unlink(tmp.c_str());
    return st;
}

Status write_file(const std::string& path, const std::vector<uint8_t>& buf) {
    if (path.empty())
        return make_error(StatusCode::kInvalidArgument, "[wav] the output path is empty");
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
            return write_through(path, buf, 0);  // a FIFO waits here for its reader
        if (!S_ISREG(st.st_mode))
            return make_error(StatusCode::kInvalidArgument,
                              "[wav] %s: is %s; cannot write a WAV there", path.c_str(),
                              io::file_kind(st));
        // A regular file, possibly behind symlinks: replace the file they lead to, not the links,
        // with its permission bits (not its set-id bits) on the new file.
        char* real = ::realpath(path.c_str(), nullptr);
        if (real == nullptr) return write_error(path, "cannot resolve", errno);
        const std::string target = real;
        std::free(real);
        return replace_atomically(path, target, buf, static_cast<int>(st.st_mode & 0777));
    }
    const int err = errno;
    if (err != ENOENT) return write_error(path, "cannot write", err);
    struct stat lst {};
    if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
        return write_through(path, buf, O_CREAT | O_TRUNC);  // dangling: create its target
    return replace_atomically(path, path, buf, -1);
}

}  // namespace

namespace {

// Random access to the bytes of a WAV image: memory (decode_wav) or a file descriptor (read_wav,
// read_wav_mono), so that one chunk walker serves both and they report the same errors.
class ByteSource {
public:
    explicit ByteSource(size_t size) : size_(size) {}
    virtual ~ByteSource() = default;
    size_t size() const { return size_; }
    // Copies [off, off + n) (inside size()) to dst.
    virtual Status read(size_t off, uint8_t* dst, size_t n) const = 0;

private:
    size_t size_;
};

class MemorySource : public ByteSource {
public:
    MemorySource(const uint8_t* data, size_t size) : ByteSource(size), data_(data) {}
    Status read(size_t off, uint8_t* dst, size_t n) const override {
        std::memcpy(dst, data_ + off, n);
        return Status::ok();
    }
    const uint8_t* data() const { return data_; }

private:
    const uint8_t* data_;
};

class FdSource : public ByteSource {
public:
    FdSource(int fd, size_t size, const char* label) : ByteSource(size), fd_(fd), label_(label) {}
    Status read(size_t off, uint8_t* dst, size_t n) const override {
        size_t got = 0;
        while (got < n) {
            const ssize_t r = ::pread(fd_, dst + got, n - got, static_cast<off_t>(off + got));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                return make_error(StatusCode::kInvalidFile,
                                  "[wav] %s: read %zu of %zu bytes at offset %zu%s%s", label_, got,
                                  n, off, r < 0 ? ": " : " (file shrank?)",
                                  r < 0 ? std::strerror(errno) : "");
            }
            got += static_cast<size_t>(r);
        }
        return Status::ok();
    }

private:
    int fd_;
    const char* label_;
};

// Where the samples of a WAV image are, once its chunks are walked and validated.
struct Layout {
    Format fmt;
    size_t data_offset = 0;  // of the first sample
    size_t frames = 0;       // whole frames, >= 1, within options.max_seconds
};

// Walks the RIFF chunks up to the data chunk, validating everything decode_wav documents, and
// touches nothing else: fmt bodies are read (at most 40 bytes), other chunks skipped by offset.
Expected<Layout> walk(const ByteSource& src, const WavOptions& options, const char* label) {
    const size_t size = src.size();
    if (size < 12) {
        return make_error(StatusCode::kInvalidFile,
                          "[wav] %s: %zu bytes is too short for a RIFF/WAVE header", label, size);
    }
    uint8_t riff[12];
    VOXRT_RETURN_IF_ERROR(src.read(0, riff, 12));
    if (std::memcmp(riff, "RF64", 4) == 0 || std::memcmp(riff, "RIFX", 4) == 0) {
        return make_error(StatusCode::kUnsupported, "[wav] %s: %s files are not supported", label,
                          fourcc(riff).c_str());
    }
    if (std::memcmp(riff, "RIFF", 4) != 0) {
        return make_error(StatusCode::kInvalidFile, "[wav] %s: not a RIFF file (starts with '%s')",
                          label, fourcc(riff).c_str());
    }
    if (std::memcmp(riff + 8, "WAVE", 4) != 0) {
        return make_error(StatusCode::kInvalidFile,
                          "[wav] %s: RIFF form type is '%s', expected 'WAVE'", label,
                          fourcc(riff + 8).c_str());
    }
    // The RIFF size field is not trusted (streaming writers leave it 0 or 0xFFFFFFFF); chunks are
    // walked against the real size instead.
    Layout out;
    bool have_fmt = false;
    size_t pos = 12;
    for (;;) {
        if (pos >= size || size - pos < 8) {
            if (pos < size) {
                return make_error(StatusCode::kInvalidFile,
                                  "[wav] %s: truncated chunk header at offset %zu", label, pos);
            }
            return make_error(StatusCode::kInvalidFile, "[wav] %s: no %s chunk", label,
                              have_fmt ? "data" : "fmt");
        }
        uint8_t head[8];
        VOXRT_RETURN_IF_ERROR(src.read(pos, head, 8));
        const uint32_t csize = rd32(head + 4);
        const size_t body = pos + 8;
        const size_t avail = size - body;
        if (std::memcmp(head, "data", 4) == 0) {
            if (!have_fmt) {
                return make_error(StatusCode::kInvalidFile,
                                  "[wav] %s: data chunk at offset %zu precedes the fmt chunk",
                                  label, pos);
            }
            size_t bytes = csize;
            const auto align = static_cast<size_t>(out.fmt.block_align);
            if (csize == kUnknownSize || (bytes > avail && options.allow_truncated)) {
                bytes = avail - avail % align;
            } else if (bytes > avail) {
                return make_error(StatusCode::kInvalidFile,
                                  "[wav] %s: data chunk declares %u bytes but only %zu remain "
                                  "(truncated file)",
                                  label, csize, avail);
            } else if (bytes % align != 0) {
                return make_error(StatusCode::kInvalidFile,
                                  "[wav] %s: data chunk size %u is not a multiple of the frame "
                                  "size %zu",
                                  label, csize, align);
            }
            out.frames = bytes / align;
            if (out.frames == 0) {
                return make_error(StatusCode::kInvalidFile, "[wav] %s: data chunk has 0 samples",
                                  label);
            }
            const double seconds = static_cast<double>(out.frames) / out.fmt.sample_rate;
            if (seconds > options.max_seconds) {
                return make_error(StatusCode::kOutOfRange,
                                  "[wav] %s: %zu frames at %d Hz (%.6f s) are longer than the cap "
                                  "of %g s",
                                  label, out.frames, out.fmt.sample_rate, seconds,
                                  options.max_seconds);
            }
            out.data_offset = body;
            return out;
        }
        if (csize > avail) {
            return make_error(StatusCode::kInvalidFile,
                              "[wav] %s: '%s' chunk at offset %zu declares %u bytes but only %zu "
                              "remain (truncated file)",
                              label, fourcc(head).c_str(), pos, csize, avail);
        }
        if (std::memcmp(head, "fmt ", 4) == 0) {
            if (have_fmt) {
                return make_error(StatusCode::kInvalidFile, "[wav] %s: second fmt chunk", label);
            }
            // parse_fmt reads at most 40 bytes, and only as many as csize says are there.
            uint8_t fmt_body[40] = {};
            VOXRT_RETURN_IF_ERROR(src.read(body, fmt_body, std::min<size_t>(csize, 40)));
            VOXRT_RETURN_IF_ERROR(parse_fmt(fmt_body, csize, label, &out.fmt));
            have_fmt = true;
        }
        pos = body + csize + (csize & 1u);  // chunks are padded to even sizes
    }
}

// Opens a WAV file for the streaming readers: a regular file (io::open_regular_file) no larger
// than the duration cap allows. Returns the descriptor (the caller closes it) and its size.
Expected<int> open_wav(const std::string& path, const WavOptions& options, size_t* size) {
    struct stat st {};
    Expected<int> opened = io::open_regular_file(path, &st);
    if (!opened) return Status(opened.status().code(), "[wav] " + opened.status().message());
    const int fd = opened.value();
    // The largest legitimate file: the duration cap at the highest rate, 2 channels of 4 bytes,
    // plus 64 MiB of other chunks (metadata, pictures). Checked before reading anything.
    const double cap = options.max_seconds * kMaxSampleRate * kMaxChannels * 4.0 + (64 << 20);
    *size = static_cast<size_t>(st.st_size);
    if (static_cast<double>(*size) > cap) {
        ::close(fd);
        return make_error(StatusCode::kOutOfRange,
                          "[wav] %s: file is %zu bytes, more than %.0f s of audio can take",
                          path.c_str(), *size, options.max_seconds);
    }
    return fd;
}

// Reads the samples of `lay` from `src` in chunks of at most kWavChunkBytes and hands each
// converted chunk to sink(first_frame, samples, n_frames).
template <class Sink>
Status stream_samples(const ByteSource& src, const Layout& lay, const char* label, Sink&& sink) {
    const auto align = static_cast<size_t>(lay.fmt.block_align);
    const size_t chunk_frames = std::max<size_t>(1, kWavChunkBytes / align);
    const auto ch = static_cast<size_t>(lay.fmt.channels);
    std::vector<uint8_t> raw(std::min(chunk_frames, lay.frames) * align);
    std::vector<float> conv(std::min(chunk_frames, lay.frames) * ch);
    for (size_t f0 = 0; f0 < lay.frames; f0 += chunk_frames) {
        const size_t n = std::min(chunk_frames, lay.frames - f0);
        VOXRT_RETURN_IF_ERROR(src.read(lay.data_offset + f0 * align, raw.data(), n * align));
        VOXRT_RETURN_IF_ERROR(convert(raw.data(), n * ch, lay.fmt, label, conv.data(), f0 * ch));
        sink(f0, conv.data(), n);
    }
    return Status::ok();
}

}  // namespace

Expected<Pcm> decode_wav(const uint8_t* data, size_t size, const WavOptions& options,
                         const std::string& label_str) {
    const char* label = label_str.c_str();
    if (data == nullptr) size = 0;
    const MemorySource src(data, size);
    VOXRT_ASSIGN_OR_RETURN(Layout lay, walk(src, options, label));
    Pcm pcm;
    pcm.channels = lay.fmt.channels;
    pcm.sample_rate = lay.fmt.sample_rate;
    pcm.samples.resize(lay.frames * static_cast<size_t>(lay.fmt.channels));
    VOXRT_RETURN_IF_ERROR(
        convert(data + lay.data_offset, pcm.samples.size(), lay.fmt, label, pcm.samples.data(), 0));
    return pcm;
}

Expected<Pcm> read_wav(const std::string& path, const WavOptions& options) {
    size_t size = 0;
    VOXRT_ASSIGN_OR_RETURN(int fd, open_wav(path, options, &size));
    const FdSource src(fd, size, path.c_str());
    Expected<Layout> lay = walk(src, options, path.c_str());
    if (!lay) {
        ::close(fd);
        return lay.status();
    }
    Pcm pcm;
    pcm.channels = lay->fmt.channels;
    pcm.sample_rate = lay->fmt.sample_rate;
    const auto ch = static_cast<size_t>(pcm.channels);
    pcm.samples.resize(lay->frames * ch);
    Status st = stream_samples(src, *lay, path.c_str(), [&](size_t f0, const float* x, size_t n) {
        std::memcpy(pcm.samples.data() + f0 * ch, x, n * ch * sizeof(float));
    });
    ::close(fd);
    if (!st) return st;
    return pcm;
}

Expected<MonoAudio> read_wav_mono(const std::string& path, const WavOptions& options) {
    size_t size = 0;
    VOXRT_ASSIGN_OR_RETURN(int fd, open_wav(path, options, &size));
    const FdSource src(fd, size, path.c_str());
    Expected<Layout> lay = walk(src, options, path.c_str());
    if (!lay) {
        ::close(fd);
        return lay.status();
    }
    MonoAudio out;
    out.sample_rate = lay->fmt.sample_rate;
    out.channels = lay->fmt.channels;
    out.samples.resize(lay->frames);
    const int c = lay->fmt.channels;
    const float inv = 1.0f / static_cast<float>(c);
    Status st = stream_samples(src, *lay, path.c_str(), [&](size_t f0, const float* x, size_t n) {
        float* y = out.samples.data() + f0;
        if (c == 1) {
            std::memcpy(y, x, n * sizeof(float));
            return;
        }
        // Exactly downmix_mono's arithmetic.
        for (size_t i = 0; i < n; ++i) {
            const float* s = x + i * static_cast<size_t>(c);
            float acc = s[0];
            for (int k = 1; k < c; ++k) acc += s[k];
            y[i] = acc * inv;
        }
    });
    ::close(fd);
    if (!st) return st;
    return out;
}

std::vector<float> downmix_mono(const Pcm& pcm) {
    const size_t frames = pcm.frames();
    const int c = pcm.channels;
    if (c <= 1) return pcm.samples;
    std::vector<float> out(frames);
    const float inv = 1.0f / static_cast<float>(c);
    for (size_t i = 0; i < frames; ++i) {
        const float* s = &pcm.samples[i * c];
        float acc = s[0];
        for (int k = 1; k < c; ++k) acc += s[k];
        out[i] = acc * inv;
    }
    return out;
}

Status write_wav(const std::string& path, const float* mono, size_t n, int sample_rate) {
    if (sample_rate < kMinSampleRate || sample_rate > kMaxSampleRate) {
        return make_error(StatusCode::kInvalidArgument,
                          "[wav] %s: sample_rate %d is outside [%d, %d]", path.c_str(), sample_rate,
                          kMinSampleRate, kMaxSampleRate);
    }
    if (n > (0xFFFFFFFFull - 36) / 2 || (n > 0 && mono == nullptr)) {
        return make_error(StatusCode::kInvalidArgument,
                          "[wav] %s: %zu samples do not fit a 16-bit WAV", path.c_str(), n);
    }
    const uint32_t data_bytes = static_cast<uint32_t>(n * 2);
    std::vector<uint8_t> buf(44 + static_cast<size_t>(data_bytes));
    auto put16 = [&](size_t at, uint32_t v) {
        buf[at] = static_cast<uint8_t>(v);
        buf[at + 1] = static_cast<uint8_t>(v >> 8);
    };
    auto put32 = [&](size_t at, uint32_t v) {
        put16(at, v & 0xFFFF);
        put16(at + 2, v >> 16);
    };
    std::memcpy(&buf[0], "RIFF", 4);
    put32(4, 36 + data_bytes);
    std::memcpy(&buf[8], "WAVEfmt ", 8);
    put32(16, 16);
    put16(20, kTagPcm);
    put16(22, 1);
    put32(24, static_cast<uint32_t>(sample_rate));
    put32(28, static_cast<uint32_t>(sample_rate) * 2);
    put16(32, 2);
    put16(34, 16);
    std::memcpy(&buf[36], "data", 4);
    put32(40, data_bytes);
    for (size_t i = 0; i < n; ++i) {
        float x = mono[i];
        long q = std::isnan(x) ? 0 : std::lrint(std::fmax(-2.0f, std::fmin(2.0f, x)) * 32768.0f);
        q = q < -32768 ? -32768 : (q > 32767 ? 32767 : q);
        put16(44 + 2 * i, static_cast<uint16_t>(static_cast<int16_t>(q)));
    }

    return write_file(path, buf);
}

}  // namespace voxrt::audio
