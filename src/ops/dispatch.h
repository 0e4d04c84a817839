// The one dispatch point from a device-agnostic op to its backend implementation:
// VOXRT_DISPATCH(name(args...)) calls entry point `name` of the backend that serves ctx.device
// (backend/entry_points.h). A device this build has no backend for aborts with a clear message.
#pragma once

#include "backend/entry_points.h"

#define VOXRT_DISPATCH(call) ::voxrt::backend::entry_points_of(ctx.device).call
