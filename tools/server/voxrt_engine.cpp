#include "voxrt_engine.h"

namespace voxrt::server {

std::string make_voxrt_engine(const VoxrtEngineOptions& opt, std::unique_ptr<Engine>* out) {
    return "the voxrt engine is not built into this server yet (use --engine fake)";
}

}  // namespace voxrt::server
