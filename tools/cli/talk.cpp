// voxrt talk: a spoken conversation in the terminal. Microphone → voice activity detection → the
// answer through the speakers, with barge-in (talking over the answer stops it, and the
// conversation keeps only what was heard). The rules are the library's (voxrt/turn_taking.h);
// this file moves audio between them, a Session and the devices (PortAudio) or, with --in/--out,
// two WAV files at real-time pace: the input file is "heard" as time passes and the output file is
// what the speakers would have played, on the input's timeline (docs/talk.md).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#ifdef VOXRT_HAVE_PORTAUDIO
#include <portaudio.h>
#endif

#include "cli_common.h"

namespace voxrt::cli {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void on_sigint(int) {
    g_stop.store(true);
}

// Where the conversation's audio comes from and goes to. The speaker side is a queue: play()
// appends, the speaker consumes it in order (playing it, or dropping it after stop()).
class AudioPort {
public:
    virtual ~AudioPort() = default;
    virtual int input_rate() const = 0;
    virtual int output_rate() const = 0;
    // Appends the input that has arrived since the last call.
    virtual void read(std::vector<float>& out) = 0;
    virtual bool input_ended() = 0;
    virtual void play(const float* x, size_t n) = 0;
    virtual void stop() = 0;             // drop what is queued and not yet played
    virtual int64_t consumed() = 0;      // samples taken from the queue so far (played or dropped)
    virtual int64_t queued_total() = 0;  // samples ever given to play()
    virtual double now_ms() = 0;         // time since the conversation began
    virtual Status finish() { return Status::ok(); }
};

// --in/--out: the input WAV arrives at real-time pace; the speakers are simulated on the same
// clock and recorded (silence where nothing played).
class FilePort : public AudioPort {
public:
    FilePort(AudioClip in, int out_rate, std::string out_path)
        : in_(std::move(in)), out_rate_(out_rate), out_path_(std::move(out_path)) {}
    int input_rate() const override { return in_.sample_rate; }
    int output_rate() const override { return out_rate_; }
    void read(std::vector<float>& out) override {
        advance();
        const auto avail =
            std::min<size_t>(in_.samples.size(), size_t(now_ms() * in_.sample_rate / 1000.0));
        if (avail > pos_)
            out.insert(out.end(), in_.samples.begin() + long(pos_),
                       in_.samples.begin() + long(avail));
        pos_ = std::max(pos_, avail);
    }
    bool input_ended() override { return pos_ >= in_.samples.size(); }
    void play(const float* x, size_t n) override {
        advance();
        q_.insert(q_.end(), x, x + n);
        queued_ += int64_t(n);
    }
    void stop() override {
        advance();
        consumed_ += int64_t(q_.size());
        q_.clear();
    }
    int64_t consumed() override {
        advance();
        return consumed_;
    }
    int64_t queued_total() override { return queued_; }
    double now_ms() override {
        return std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
    }
    Status finish() override {
        advance();
        // at least as long as the input: the recording covers the whole conversation
        const auto min_len = size_t(in_.seconds() * out_rate_);
        if (out_.size() < min_len) out_.resize(min_len, 0.0f);
        return write_wav_file(out_path_, out_.data(), out_.size(), out_rate_);
    }

private:
    // The speaker up to now: one sample per output period, from the queue or silence.
    void advance() {
        const auto target = size_t(now_ms() * out_rate_ / 1000.0);
        while (out_.size() < target) {
            if (q_.empty()) {
                out_.resize(target, 0.0f);
                break;
            }
            out_.push_back(q_.front());
            q_.pop_front();
            ++consumed_;
        }
    }

    AudioClip in_;
    int out_rate_;
    std::string out_path_;
    Clock::time_point t0_ = Clock::now();
    size_t pos_ = 0;          // input samples delivered
    std::vector<float> out_;  // the speakers' recording
    std::deque<float> q_;
    int64_t consumed_ = 0, queued_ = 0;
};

#ifdef VOXRT_HAVE_PORTAUDIO

// A single-producer single-consumer ring of floats (the audio callbacks never lock or allocate).
class Ring {
public:
    explicit Ring(size_t capacity) : buf_(capacity + 1) {}
    size_t push(const float* x, size_t n) {  // producer; returns what fit
        const size_t w = w_.load(std::memory_order_relaxed), r = r_.load(std::memory_order_acquire);
        const size_t cap = buf_.size();
        const size_t space = (r + cap - w - 1) % cap;
        n = std::min(n, space);
        for (size_t i = 0; i < n; ++i) buf_[(w + i) % cap] = x[i];
        w_.store((w + n) % cap, std::memory_order_release);
        return n;
    }
    size_t pop(float* x, size_t n) {  // consumer; x may be null (drop)
        const size_t r = r_.load(std::memory_order_relaxed), w = w_.load(std::memory_order_acquire);
        const size_t cap = buf_.size();
        n = std::min(n, (w + cap - r) % cap);
        if (x)
            for (size_t i = 0; i < n; ++i) x[i] = buf_[(r + i) % cap];
        r_.store((r + n) % cap, std::memory_order_release);
        return n;
    }
    size_t size() const {
        const size_t cap = buf_.size();
        return (w_.load(std::memory_order_acquire) + cap - r_.load(std::memory_order_acquire)) %
               cap;
    }

private:
    std::vector<float> buf_;
    std::atomic<size_t> w_{0}, r_{0};
};

// PortAudio's ALSA and JACK probes print to stderr while they look for devices (on a machine
// without sound cards, a screenful); keep that off the terminal. Errors come back as PaError.
PaError pa_initialize_quietly() {
    std::fflush(stderr);
    const int saved = dup(2);
    const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (saved >= 0 && devnull >= 0) dup2(devnull, 2);
    const PaError e = Pa_Initialize();
    if (saved >= 0) {
        dup2(saved, 2);
        close(saved);
    }
    if (devnull >= 0) close(devnull);
    return e;
}

Status pa_error(const std::string& what, PaError e) {
    return Status(StatusCode::kDevice, "audio device: " + what + ": " + Pa_GetErrorText(e));
}

// Resolves --input-device / --output-device: an index from --list-devices or a part of a name.
Expected<PaDeviceIndex> find_device(const std::string& want, bool input) {
    const PaDeviceIndex def = input ? Pa_GetDefaultInputDevice() : Pa_GetDefaultOutputDevice();
    const char* flag = input ? "--input-device" : "--output-device";
    if (want.empty()) {
        if (def == paNoDevice)
            return Status(StatusCode::kNotFound, std::string("audio device: there is no default ") +
                                                     (input ? "input" : "output") +
                                                     " device (see voxrt talk " +
                                                     "--list-devices)");
        return def;
    }
    const int n = Pa_GetDeviceCount();
    if (want.find_first_not_of("0123456789") == std::string::npos && want.size() < 6) {
        const int i = std::stoi(want);
        if (i < n) {
            const PaDeviceInfo* d = Pa_GetDeviceInfo(i);
            if (d && (input ? d->maxInputChannels : d->maxOutputChannels) > 0) return i;
        }
    } else {
        for (int i = 0; i < n; ++i) {
            const PaDeviceInfo* d = Pa_GetDeviceInfo(i);
            if (d && (input ? d->maxInputChannels : d->maxOutputChannels) > 0 &&
                std::string(d->name).find(want) != std::string::npos)
                return i;
        }
    }
    return Status(StatusCode::kInvalidArgument,
                  std::string("usage: ") + flag + " '" + want + "' is no device with " +
                      (input ? "input" : "output") + " channels (see voxrt talk --list-devices)");
}

// Microphone and speakers through PortAudio: one input and one output stream, each with a
// callback that only moves samples through a ring.
class DevicePort : public AudioPort {
public:
    static Expected<std::unique_ptr<DevicePort>> open(const TalkArgs& a, int out_rate) {
        auto p = std::unique_ptr<DevicePort>(new DevicePort());
        if (PaError e = pa_initialize_quietly(); e != paNoError) return pa_error("initialize", e);
        p->initialized_ = true;
        VOXRT_ASSIGN_OR_RETURN(PaDeviceIndex in_dev, find_device(a.input_device, true));
        VOXRT_ASSIGN_OR_RETURN(PaDeviceIndex out_dev, find_device(a.output_device, false));
        const PaDeviceInfo* in_info = Pa_GetDeviceInfo(in_dev);
        const PaDeviceInfo* out_info = Pa_GetDeviceInfo(out_dev);
        PaStreamParameters ip{in_dev, 1, paFloat32, in_info->defaultLowInputLatency, nullptr};
        PaStreamParameters op{out_dev, 1, paFloat32, out_info->defaultLowOutputLatency, nullptr};
        p->in_rate_ = int(in_info->defaultSampleRate);
        p->out_rate_ = out_rate;
        if (Pa_IsFormatSupported(nullptr, &op, out_rate) != paFormatIsSupported)
            return Status(StatusCode::kInvalidArgument,
                          std::string("audio device: output device '") + out_info->name +
                              "' does not play mono " + std::to_string(out_rate) +
                              " Hz; choose another with --output-device");
        if (PaError e = Pa_OpenStream(&p->in_stream_, &ip, nullptr, p->in_rate_, 0, paNoFlag,
                                      &DevicePort::in_cb, p.get());
            e != paNoError)
            return pa_error(std::string("open input '") + in_info->name + "'", e);
        if (PaError e = Pa_OpenStream(&p->out_stream_, nullptr, &op, out_rate, 0, paNoFlag,
                                      &DevicePort::out_cb, p.get());
            e != paNoError)
            return pa_error(std::string("open output '") + out_info->name + "'", e);
        if (PaError e = Pa_StartStream(p->in_stream_); e != paNoError)
            return pa_error("start input", e);
        // the conversation's clock starts with the input: the VAD's times count input samples,
        // and the latency line subtracts them from now_ms() (opening the devices takes a while)
        p->t0_ = Clock::now();
        if (PaError e = Pa_StartStream(p->out_stream_); e != paNoError)
            return pa_error("start output", e);
        std::fprintf(stderr, "voxrt: listening on '%s' (%d Hz), speaking on '%s'\n", in_info->name,
                     p->in_rate_, out_info->name);
        return p;
    }
    ~DevicePort() override {
        if (in_stream_) Pa_CloseStream(in_stream_);
        if (out_stream_) Pa_CloseStream(out_stream_);
        if (initialized_) Pa_Terminate();
    }
    int input_rate() const override { return in_rate_; }
    int output_rate() const override { return out_rate_; }
    void read(std::vector<float>& out) override {
        const size_t n = in_.size();
        const size_t at = out.size();
        out.resize(at + n);
        out.resize(at + in_.pop(out.data() + at, n));
    }
    bool input_ended() override { return false; }
    void play(const float* x, size_t n) override {
        // the ring holds 60 s; an answer longer than that waits here for room
        while (n > 0 && !g_stop.load()) {
            const size_t k = out_.push(x, n);
            x += k, n -= k, queued_ += int64_t(k);
            if (n > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    void stop() override { flush_.store(true); }
    int64_t consumed() override { return consumed_.load(); }
    int64_t queued_total() override { return queued_; }
    double now_ms() override {
        return std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
    }

private:
    DevicePort() : in_(size_t(48000) * 10), out_(size_t(48000) * 60) {}
    static int in_cb(const void* in, void*, unsigned long n, const PaStreamCallbackTimeInfo*,
                     PaStreamCallbackFlags, void* user) {
        auto* p = static_cast<DevicePort*>(user);
        if (in) p->in_.push(static_cast<const float*>(in), n);  // overflow: the oldest wins
        return paContinue;
    }
    static int out_cb(const void*, void* out, unsigned long n, const PaStreamCallbackTimeInfo*,
                      PaStreamCallbackFlags, void* user) {
        auto* p = static_cast<DevicePort*>(user);
        auto* y = static_cast<float*>(out);
        if (p->flush_.exchange(false)) p->consumed_ += int64_t(p->out_.pop(nullptr, SIZE_MAX));
        const size_t k = p->out_.pop(y, n);
        for (size_t i = k; i < n; ++i) y[i] = 0.0f;
        p->consumed_ += int64_t(k);
        return paContinue;
    }

    bool initialized_ = false;
    PaStream* in_stream_ = nullptr;
    PaStream* out_stream_ = nullptr;
    int in_rate_ = 0, out_rate_ = 0;
    Ring in_, out_;
    std::atomic<bool> flush_{false};
    std::atomic<int64_t> consumed_{0};
    int64_t queued_ = 0;
    Clock::time_point t0_ = Clock::now();
};

Status list_devices() {
    if (PaError e = pa_initialize_quietly(); e != paNoError) return pa_error("initialize", e);
    const int n = Pa_GetDeviceCount();
    std::printf("%d audio device(s) (PortAudio %s)\n", n < 0 ? 0 : n, Pa_GetVersionText());
    for (int i = 0; i < n; ++i) {
        const PaDeviceInfo* d = Pa_GetDeviceInfo(i);
        if (!d) continue;
        const PaHostApiInfo* h = Pa_GetHostApiInfo(d->hostApi);
        std::printf("%3d  in %2d  out %2d  %6.0f Hz  %s%s%s  [%s]\n", i, d->maxInputChannels,
                    d->maxOutputChannels, d->defaultSampleRate, printable(d->name).c_str(),
                    i == Pa_GetDefaultInputDevice() ? "  (default input)" : "",
                    i == Pa_GetDefaultOutputDevice() ? "  (default output)" : "",
                    h ? h->name : "?");
    }
    Pa_Terminate();
    return Status::ok();
}

#else

Status no_devices() {
    return Status(StatusCode::kUnsupported,
                  "this voxrt was built without audio devices (PortAudio was not found at build "
                  "time: install portaudio19-dev and rebuild); --in/--out files work");
}

#endif

// A JSON string literal (the library's text is valid UTF-8).
std::string json_str(std::string_view s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += char(c);
        } else if (c < 0x20) {
            char b[8];
            std::snprintf(b, sizeof b, "\\u%04x", c);
            o += b;
        } else {
            o += char(c);
        }
    }
    return o + "\"";
}

// --events: one JSON object per line, "t_ms" first (time since the conversation began).
class EventLog {
public:
    Status open(const std::string& path) {
        if (path.empty()) return Status::ok();
        f_ = std::fopen(path.c_str(), "w");
        if (!f_)
            return Status(StatusCode::kInvalidArgument, "--events: cannot write '" + path + "'");
        return Status::ok();
    }
    ~EventLog() {
        if (f_) std::fclose(f_);
    }
    void write(double t_ms, const char* type, const std::string& fields = {}) {
        if (!f_) return;
        std::fprintf(f_, "{\"t_ms\":%.1f,\"type\":\"%s\"%s%s}\n", t_ms, type,
                     fields.empty() ? "" : ",", fields.c_str());
        std::fflush(f_);
    }

private:
    std::FILE* f_ = nullptr;
};

std::string kv(const char* k, double v) {
    char b[64];
    std::snprintf(b, sizeof b, "\"%s\":%.1f", k, v);
    return b;
}

// The conversation loop: input → TurnTaking → Session → speakers, one thread.
class Talk {
public:
    Talk(const CommonArgs& c, const TalkArgs& a, Session& s, AudioPort& port, EventLog& log)
        : c_(c), a_(a), s_(s), port_(port), log_(log), tt_(turn_options(a), port.input_rate()) {
        const TaskDefaults d = task_defaults(Task::kSpeechChat);
        opt_ = response_options(a.gen, d);
        system_ = a.system.empty() ? d.system_prompt : a.system;
    }

    Status start() { return s_.add_turn(Role::kSystem, system_); }

    Status run() {
        std::vector<float> in;
        std::vector<TurnDecision> d;
        std::vector<Event> ev;
        while (!g_stop.load()) {
            in.clear();
            port_.read(in);
            if (!in.empty()) {
                d.clear();
                tt_.answer_progress(generated_ms(), played_ms());
                tt_.push_input(in.data(), in.size(), d);
                VOXRT_RETURN_IF_ERROR(decide(d));
            }
            if (responding_) {
                ev.clear();
                auto r = s_.step(ev);
                VOXRT_RETURN_IF_ERROR(on_events(ev));
                if (!r) return r.status();
                if (*r) VOXRT_RETURN_IF_ERROR(end_response());
            } else if (!pending_.empty()) {
                VOXRT_RETURN_IF_ERROR(respond());
            } else if (port_.input_ended() && port_.consumed() >= port_.queued_total()) {
                break;  // --in: the file was heard and the last answer played
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            watch_playback();
        }
        if (responding_) s_.cancel();
        if (status_pending_) status_line();
        return port_.finish();
    }

private:
    static TurnTakingOptions turn_options(const TalkArgs& a) {
        TurnTakingOptions o;
        o.vad.threshold = a.threshold;
        o.vad.silence_duration_ms = a.silence_ms;
        o.vad.prefix_padding_ms = a.prefix_ms;
        o.interrupt_response = !a.no_interrupt;
        return o;
    }
    double generated_ms() const { return double(generated_) * 1000.0 / port_.output_rate(); }
    double played_ms() {
        const int64_t p = std::clamp<int64_t>(port_.consumed() - offset_, 0, heard_limit_);
        return double(std::min(p, generated_)) * 1000.0 / port_.output_rate();
    }

    Status decide(const std::vector<TurnDecision>& d) {
        for (const TurnDecision& x : d) {
            const double t = port_.now_ms();
            switch (x.kind) {
                case TurnDecision::kUserStarted:
                    log_.write(t, "speech_started", kv("audio_start_ms", double(x.at_ms)));
                    break;
                case TurnDecision::kBargeIn:
                    // what is queued was not heard: the answer counts as played up to here
                    heard_limit_ = std::max<int64_t>(0, port_.consumed() - offset_);
                    port_.stop();
                    muted_ = true;
                    if (x.cancel) s_.cancel();
                    log_.write(t, "barge_in",
                               kv("played_ms", double(x.at_ms)) + "," +
                                   kv("generated_ms", generated_ms()) +
                                   ",\"cancel\":" + (x.cancel ? "true" : "false"));
                    end_text_line(" [interrupted]");
                    break;
                case TurnDecision::kTruncate: {
                    Status st = s_.truncate_to_audio_ms(double(x.at_ms));
                    if (!st.is_ok()) return st;
                    log_.write(t, "truncated", kv("audio_end_ms", double(x.at_ms)));
                    break;
                }
                case TurnDecision::kUserEnded: {
                    const std::vector<float>& pcm = tt_.turn_audio();
                    const double speech_end = double(x.at_ms - a_.silence_ms);
                    log_.write(t, "speech_stopped",
                               kv("audio_end_ms", double(x.at_ms)) + "," +
                                   kv("speech_end_ms", speech_end) + "," +
                                   kv("turn_ms", 1000.0 * double(pcm.size()) / port_.input_rate()));
                    pending_.push_back({pcm, speech_end});
                    break;
                }
            }
        }
        return Status::ok();
    }

    // Adds the user turns heard since the last answer and starts the next answer.
    Status respond() {
        if (status_pending_) {  // the last answer still plays (no barge-in): report it now
            status_line();
            status_pending_ = false;
        }
        if (!c_.quiet)
            for (const auto& p : pending_)
                std::fprintf(stderr, "voxrt: heard %.1f s\n",
                             double(p.pcm.size()) / port_.input_rate());
        Status st = add_turns_and_start();
        if (st.code() == StatusCode::kOutOfRange) {
            // The conversation filled the context (--context): go on in a new one that starts
            // with these turns, rather than end the talk.
            if (!c_.quiet)
                std::fprintf(stderr,
                             "voxrt: the conversation filled its %d positions; starting a new "
                             "one (%s)\n",
                             s_.capacity(), st.message().c_str());
            log_.write(port_.now_ms(), "context_reset", kv("positions", double(s_.capacity())));
            VOXRT_RETURN_IF_ERROR(s_.reset());
            VOXRT_RETURN_IF_ERROR(s_.add_turn(Role::kSystem, system_));
            st = add_turns_and_start();
        }
        VOXRT_RETURN_IF_ERROR(st);
        speech_end_ms_ = pending_.back().speech_end_ms;
        pending_.clear();
        ++turn_;
        responding_ = true;
        tt_.answer_started();
        offset_ = port_.queued_total();
        generated_ = 0;
        heard_limit_ = INT64_MAX;
        muted_ = false;
        first_sound_ = false;
        latency_ms_ = -1;
        log_.write(port_.now_ms(), "response_started", "\"turn\":" + std::to_string(turn_));
        return Status::ok();
    }

    Status add_turns_and_start() {
        for (const auto& p : pending_) {
            VOXRT_RETURN_IF_ERROR(s_.begin_user_turn());
            VOXRT_RETURN_IF_ERROR(s_.append_audio(p.pcm.data(), p.pcm.size(), port_.input_rate()));
            VOXRT_RETURN_IF_ERROR(s_.end_user_turn());
        }
        return s_.start_response(opt_);
    }

    Status on_events(const std::vector<Event>& ev) {
        for (const Event& e : ev) {
            if (e.kind == EventKind::kTextDelta && !e.text.empty()) {
                if (!muted_) {
                    if (!line_open_) std::fputs("voxrt: ", stdout);
                    std::fputs(e.text.c_str(), stdout);
                    std::fflush(stdout);
                    line_open_ = true;
                }
                log_.write(
                    port_.now_ms(), "text",
                    "\"delta\":" + json_str(e.text) + ",\"heard\":" + (muted_ ? "false" : "true"));
            } else if (e.kind == EventKind::kAudio) {
                generated_ += int64_t(e.pcm.size());
                if (!muted_) port_.play(e.pcm.data(), e.pcm.size());
            } else if (e.kind == EventKind::kEndOfTurn) {
                end_reason_ = e.reason;
            }
        }
        return Status::ok();
    }

    Status end_response() {
        responding_ = false;
        std::vector<TurnDecision> d;
        tt_.answer_progress(generated_ms(), played_ms());
        log_.write(port_.now_ms(), "response_done",
                   std::string("\"reason\":\"") + end_reason_name(end_reason_) + "\"," +
                       kv("generated_ms", generated_ms()));
        tt_.answer_finished(d);
        VOXRT_RETURN_IF_ERROR(decide(d));
        end_text_line("");
        status_pending_ = true;  // once it has played (watch_playback)
        return Status::ok();
    }

    // The first answer sample leaving the queue: the latency line.
    // The first answer sample leaving the queue (the latency), and the end of the answer's playback
    // (the status line).
    void watch_playback() {
        if (turn_ == 0) return;
        const int64_t c = port_.consumed() - offset_;
        if (status_pending_ && (muted_ || c >= generated_)) {
            status_pending_ = false;
            watch_first_sound(c);
            status_line();
        }
        if (!responding_ && !status_pending_) return;
        watch_first_sound(c);
    }
    void watch_first_sound(int64_t c) {
        if (first_sound_ || muted_ || c <= 0) return;
        first_sound_ = true;
        const double t = port_.now_ms() - double(c) * 1000.0 / port_.output_rate();
        const double latency = t - speech_end_ms_;
        log_.write(t, "first_audio", kv("latency_ms", latency));
        latency_ms_ = latency;
    }

    // One line per answer on stderr, once its text line is complete: the latency (end of speech →
    // first sound) and how much of the answer was generated and heard.
    void status_line() {
        if (c_.quiet) return;
        std::string first = "no sound";
        if (latency_ms_ >= 0) {
            char b[96];
            std::snprintf(b, sizeof b, "first sound %.0f ms after the end of speech", latency_ms_);
            first = b;
        }
        std::fprintf(stderr,
                     "voxrt: turn %d: %s (%d ms of it the silence that ends a turn); "
                     "%.1f s of audio, %s\n",
                     turn_, first.c_str(), a_.silence_ms, generated_ms() / 1000.0,
                     muted_            ? "interrupted"
                     : status_pending_ ? "still playing"
                                       : "played");
    }

    void end_text_line(const char* suffix) {
        if (!line_open_) return;
        std::printf("%s\n", suffix);
        std::fflush(stdout);
        line_open_ = false;
    }

    struct PendingTurn {
        std::vector<float> pcm;
        double speech_end_ms;
    };

    const CommonArgs& c_;
    const TalkArgs& a_;
    Session& s_;
    AudioPort& port_;
    EventLog& log_;
    TurnTaking tt_;
    ResponseOptions opt_;
    std::string system_;
    std::vector<PendingTurn> pending_;
    bool responding_ = false;
    int turn_ = 0;
    int64_t offset_ = 0;               // port_.queued_total() when the answer started
    int64_t generated_ = 0;            // answer samples generated
    int64_t heard_limit_ = INT64_MAX;  // after a barge-in: what had been played by then
    bool muted_ = false;               // barged in: the rest of the answer is not played
    bool first_sound_ = false;
    bool line_open_ = false;
    double speech_end_ms_ = 0;
    double latency_ms_ = -1;       // of the current answer; -1 until its first sound
    bool status_pending_ = false;  // the answer was generated; its status line waits for playback
    EndReason end_reason_ = EndReason::kEndToken;
};

}  // namespace

Status run_talk(const CommonArgs& c, const TalkArgs& a) {
    if (a.list_devices) {
#ifdef VOXRT_HAVE_PORTAUDIO
        return list_devices();
#else
        return no_devices();
#endif
    }
    if (c.model_dir.empty())
        return Status(StatusCode::kInvalidArgument, "usage: --model is required");
    if (a.in.empty() != a.out.empty())
        return Status(StatusCode::kInvalidArgument,
                      "usage: --in and --out go together (files instead of devices)");
    if (a.voice != "default")
        return Status(StatusCode::kInvalidArgument,
                      "usage: --voice '" + a.voice +
                          "': speech chat has one voice, 'default' (the four TTS voices are "
                          "voxrt tts's)");
    EventLog log;
    VOXRT_RETURN_IF_ERROR(log.open(a.events));
    std::unique_ptr<AudioPort> port;
    AudioClip in;
    if (!a.in.empty()) {
        VOXRT_ASSIGN_OR_RETURN(in, read_wav_file(a.in));
    } else {
#ifndef VOXRT_HAVE_PORTAUDIO
        return no_devices();
#endif
    }
    VOXRT_ASSIGN_OR_RETURN(Loaded l, load(c, /*need_detok=*/true));
    const int out_rate = l.model->info().output_sample_rate;
    if (!a.in.empty()) {
        port = std::make_unique<FilePort>(std::move(in), out_rate, a.out);
    } else {
#ifdef VOXRT_HAVE_PORTAUDIO
        VOXRT_ASSIGN_OR_RETURN(port, DevicePort::open(a, out_rate));
        if (!c.quiet)
            std::fprintf(stderr,
                         "voxrt: talk (Ctrl-C ends); use headphones: the model hears the "
                         "speakers otherwise\n");
#endif
    }
    std::signal(SIGINT, on_sigint);
    Talk talk(c, a, *l.session, *port, log);
    VOXRT_RETURN_IF_ERROR(talk.start());
    Status st = talk.run();
    std::signal(SIGINT, SIG_DFL);
    return st;
}

}  // namespace voxrt::cli
