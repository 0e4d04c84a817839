// The tiny random checkpoint (tests/data/tiny/model) as the end-to-end tests load it: `o` with the
// precision and context given (2 CPU threads unless o says otherwise). nullptr, with the load error
// recorded as a test failure, when it does not load.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "model/lfm_audio.h"
#include "util/test_paths.h"

namespace voxrt::test {

inline std::unique_ptr<model::LfmAudioModel> load_tiny_model(ops::Precision precision,
                                                             int max_context,
                                                             model::ModelOptions o = {}) {
    o.precision = precision;
    o.max_context = max_context;
    if (o.threads == 0) o.threads = 2;
    auto m = model::LfmAudioModel::load(data_dir() + "/tiny/model", o);
    EXPECT_TRUE(m.is_ok()) << m.status().message();
    return m.is_ok() ? std::move(*m) : nullptr;
}

}  // namespace voxrt::test
