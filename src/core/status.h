// Status / Expected<T> and their propagation macros are part of the public API
// (include/voxrt/status.h); the library includes them through this header.
#pragma once

#include "voxrt/status.h"
