// VoxrtEngine: the server's Engine over voxrt's public API (include/voxrt).
#pragma once

#include <memory>
#include <string>

#include "engine.h"

namespace voxrt::server {

struct VoxrtEngineOptions {
    std::string model_dir;
    std::string device = "auto";
    int threads = 0;
    int context = 0;
};

// Loads the model; returns an error message naming what failed.
std::string make_voxrt_engine(const VoxrtEngineOptions& opt, std::unique_ptr<Engine>* out);

}  // namespace voxrt::server
