// config.json: the model config and the detokenizer config parsed from the bytes, through the
// same bounded JSON reader and field checks as loading a checkpoint.
#include <string>

#include "common.h"
#include "io/json.h"
#include "model/config.h"

using namespace voxrt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    auto cfg = model::parse_model_config(text, "config.json");
    if (!cfg.is_ok() && cfg.status().message().find("config.json") == std::string::npos)
        fuzz::fail("error does not name the file", cfg.status().message());
    auto det = model::parse_detokenizer_config(text, "audio_detokenizer/config.json");
    if (!det.is_ok() &&
        det.status().message().find("audio_detokenizer/config.json") == std::string::npos)
        fuzz::fail("error does not name the file", det.status().message());
    if (det.is_ok() &&
        (det->sliding_window < 1 || det->sliding_window > model::kMaxDetokenizerWindow))
        fuzz::fail("detokenizer window outside its limit", std::to_string(det->sliding_window));
    return 0;
}
