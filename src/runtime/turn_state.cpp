#include "runtime/turn_state.h"

namespace voxrt::runtime {

void TurnState::start(const Config& config) {
    cfg_ = config;
    text_mode_ = true;
    left_ = cfg_.n_text;
    text_done_ = false;
    steps_ = 0;
    end_ = cfg_.max_steps <= 0 ? TurnEnd::kMaxSteps : TurnEnd::kNone;
}

TurnState::Outcome TurnState::finish_step(Outcome o) {
    ++steps_;
    if (o.end) {
        end_ = TurnEnd::kEndToken;
    } else if (steps_ >= cfg_.max_steps) {
        end_ = TurnEnd::kMaxSteps;
        o.end = true;
    }
    return o;
}

TurnState::Outcome TurnState::on_text(int32_t token) {
    Outcome o;
    if (cfg_.interleaved) {
        --left_;
        if (token == cfg_.im_end) {  // the turn ends; <|im_end|> is not part of it (nor counted)
            o.keep = false;
            o.end = true;
            end_ = TurnEnd::kEndToken;
            return o;
        }
        if (token == cfg_.text_end) text_done_ = true;
        if (left_ <= 0 || text_done_) {
            text_mode_ = false;
            left_ = cfg_.n_audio;
        }
    } else {
        if (token == cfg_.audio_start) text_mode_ = false;
        if (token == cfg_.im_end) o.end = true;  // part of the response, then it ends
    }
    return finish_step(o);
}

TurnState::Outcome TurnState::on_frame(bool end_of_audio) {
    if (cfg_.interleaved) {
        --left_;
        if (left_ <= 0 && !text_done_) {
            text_mode_ = true;
            left_ = cfg_.n_text;
        }
    }
    if (end_of_audio) text_mode_ = true;
    return finish_step(Outcome{});
}

void TurnState::cancel() {
    if (end_ == TurnEnd::kNone) end_ = TurnEnd::kCancelled;
}

}  // namespace voxrt::runtime
