// Voice activity detection (include/voxrt/vad.h): energy per 10 ms frame against a tracked noise
// floor.
#include "voxrt/vad.h"

#include <algorithm>
#include <cmath>

namespace voxrt {

namespace {
constexpr int kOnsetFrames = 6;  // 60 ms
constexpr float kFloorRise = 0.05f;
constexpr float kMinSpeechDb = -55.0f;
}  // namespace

Vad::Vad(VadOptions opt, int sample_rate) : opt_(opt), frame_len_(std::max(1, sample_rate / 100)) {}

void Vad::push(const float* x, size_t n, std::vector<VadEvent>& out) {
    size_t i = 0;
    while (i < n) {
        size_t take = std::min(n - i, size_t(frame_len_) - pending_.size());
        pending_.insert(pending_.end(), x + i, x + i + take);
        i += take;
        if (pending_.size() == size_t(frame_len_)) {
            double e = 0;
            for (float v : pending_) {
                double s = std::isfinite(v) ? v : 0.0;
                e += s * s;
            }
            pending_.clear();
            frame(e / frame_len_, out);
        }
    }
}

void Vad::frame(double energy, std::vector<VadEvent>& out) {
    const float db = float(10.0 * std::log10(energy + 1e-12));
    // the first frame sets the floor (clamped below)
    const float floor = frames_ == 0 ? std::clamp(db, -75.0f, -25.0f) : floor_db_;
    const float score = std::clamp((db - floor - 3.0f) / 24.0f, 0.0f, 1.0f);
    const bool speech = db > kMinSpeechDb && score >= opt_.threshold && score > 0;
    if (frames_ == 0 || db < floor_db_)
        floor_db_ = db;
    else
        floor_db_ += kFloorRise;
    floor_db_ = std::clamp(floor_db_, -75.0f, -25.0f);
    ++frames_;
    const int64_t now = frames_ * 10;
    if (!in_speech_) {
        run_ = speech ? run_ + 1 : 0;
        if (run_ >= kOnsetFrames) {
            in_speech_ = true;
            run_ = 0;
            const int64_t first = now - kOnsetFrames * 10;
            out.push_back(
                {VadEvent::kSpeechStarted, std::max<int64_t>(0, first - opt_.prefix_padding_ms)});
        }
    } else {
        run_ = speech ? 0 : run_ + 1;
        if (run_ * 10 >= std::max(10, opt_.silence_duration_ms)) {
            in_speech_ = false;
            run_ = 0;
            out.push_back({VadEvent::kSpeechStopped, now});
        }
    }
}

}  // namespace voxrt
