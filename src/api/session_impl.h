// voxrt::Session's state (src/api only): what session.cpp and batch.cpp share.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "audio/mel.h"
#include "audio/resample.h"
#include "model/lfm_audio.h"
#include "runtime/session.h"
#include "text/stream_decoder.h"
#include "voxrt/session.h"

namespace voxrt {

struct Session::Impl {
    enum class Turn : uint8_t {
        kNone,       // between turns
        kUser,       // begin_user_turn() .. end_user_turn()
        kResponse,   // start_response() .. the response is over
        kResponded,  // the response is over; its assistant turn still open (closed lazily)
    };

    std::shared_ptr<const Model> model;
    const model::LfmAudioModel* m = nullptr;
    SessionOptions opt;
    std::unique_ptr<runtime::Session> rt;
    Turn turn = Turn::kNone;

    // The user turn's audio: resampled and turned into log-mel frames as it arrives (the encoder
    // runs at end_user_turn()); or, when the session computes the mel on the GPU, kept as it came.
    std::vector<float> audio;  // mel on the device: the samples so far
    int audio_rate = 0;
    size_t audio_samples = 0;
    std::unique_ptr<audio::ResampleStream> resampler;
    std::unique_ptr<audio::MelStream> mel;
    std::vector<float> pcm16;  // staging
    double mel_ms = 0;

    // The response.
    ResponseOptions ropt;
    std::vector<runtime::Event> rt_events;
    std::vector<ResponseItem> last;
    std::unique_ptr<text::StreamDecoder> text;
    bool capture = false;
    std::vector<float> captured;

    void clear_audio() {
        audio.clear();
        audio.shrink_to_fit();
        audio_rate = 0;
        audio_samples = 0;
        resampler.reset();
        if (mel) mel->reset();
        mel_ms = 0;
    }

    Status check_text(std::string_view field, std::string_view t) const {
        if (t.size() > opt.max_text_bytes)
            return make_error(StatusCode::kInvalidArgument,
                              "%.*s: text of %zu bytes exceeds SessionOptions.max_text_bytes (%zu)",
                              static_cast<int>(field.size()), field.data(), t.size(),
                              opt.max_text_bytes);
        return Status::ok();
    }

    // Closes a finished response's assistant turn before anything else is added.
    Status close_response() {
        if (turn == Turn::kResponse)
            return make_error(
                StatusCode::kInvalidArgument,
                "a response is still running: step() it to its end (after cancel(), one more "
                "step() ends it)");
        if (turn == Turn::kResponded) {
            // A response that ended with a generated <|im_end|> (sequential mode yields it) has
            // only the newline left to add.
            const bool ended =
                !last.empty() && !last.back().is_frame && last.back().token == m->special().im_end;
            VOXRT_RETURN_IF_ERROR(ended ? rt->add_text("\n") : rt->end_turn());
            turn = Turn::kNone;
        }
        return Status::ok();
    }

    // The public events of a runtime step's result r and rt_events (Session::step, Batch::step).
    Expected<bool> deliver(Expected<bool> r, std::vector<Event>& out);

    void sync_last() {
        last.clear();
        for (const runtime::GeneratedItem& it : rt->last_turn())
            last.push_back(ResponseItem{it.is_frame, it.token, it.codes});
    }
    Status truncate(size_t keep);
    bool restored = false;  // `last` came from add_assistant_items (nothing to truncate)
};

}  // namespace voxrt
