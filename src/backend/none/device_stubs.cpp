// device_api.h in a build without CUDA: no device is ever available, and everything that would
// need one returns kUnsupported (nothing aborts: callers check cuda_available() or the Status).
#include <utility>

#include "backend/device_api.h"

namespace voxrt::backend {

namespace {
Status no_cuda(const char* what) {
    return make_error(StatusCode::kUnsupported,
                      "[cuda] %s: this build of voxrt has no CUDA backend", what);
}
}  // namespace

bool cuda_available() {
    return false;
}

std::string cuda_device_name(int) {
    return "";
}

Expected<ops::Context> create_cuda_context(ops::Precision, int, const CudaContextOptions&) {
    return no_cuda("create_cuda_context");
}

void destroy_cuda_context(ops::Context&) {}

GraphCapture::~GraphCapture() = default;
GraphCapture::GraphCapture(GraphCapture&& o) noexcept {
    *this = std::move(o);
}
GraphCapture& GraphCapture::operator=(GraphCapture&&) noexcept {
    return *this;
}
Status GraphCapture::begin(const ops::Context&) {
    return no_cuda("GraphCapture::begin");
}
Status GraphCapture::end(const ops::Context&) {
    return no_cuda("GraphCapture::end");
}
Status GraphCapture::replay(const ops::Context&) const {
    return no_cuda("GraphCapture::replay");
}
void GraphCapture::reset() {}

}  // namespace voxrt::backend
