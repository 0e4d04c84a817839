// VoxrtEngine: the server's Engine over voxrt's public API (include/voxrt).
#pragma once

#include <memory>
#include <string>

#include "engine.h"

namespace voxrt::server {

struct VoxrtEngineOptions {
    std::string model_dir;
    std::string device = "auto";
    std::string precision = "bf16";  // ModelOptions::precision: bf16 | fp32 | int8 | fp8
    int threads = 0;
    int context = 0;
    // Benchmarks on random weights only: responses never choose end-of-turn or end-of-audio, so
    // each runs to its max steps (ResponseOptions::suppress_end) and every run does the same work.
    bool suppress_end = false;
    // New turns' prefill chunks joined into one backbone call of at most this many positions a
    // step (voxrt::Batch::set_prefill_rows); 0: each alone; -1: the Batch's default.
    int prefill_rows = -1;
    // Answers per batched call (voxrt::Batch::create's max_rows); a round over more answers runs
    // several calls, each reading the weights once.
    int batch_rows = 64;
};

// Loads the model; returns an error message naming what failed.
std::string make_voxrt_engine(const VoxrtEngineOptions& opt, std::unique_ptr<Engine>* out);

}  // namespace voxrt::server
