// voxrt — the library's public interface (the only headers a frontend includes):
//
//   voxrt/status.h      Status, Expected<T>: errors as values (no voxrt call throws)
//   voxrt/model.h       Model::load(dir, options): a checkpoint, shared by sessions
//   voxrt/tasks.h       Task, Voice, Mode, Sampling, task_defaults(): prompts and defaults
//   voxrt/session.h     Session: one conversation, step-driven responses, Event, cancel, truncate
//   voxrt/batch.h       Batch: many sessions advanced together, one weight read per step
//   voxrt/audio_file.h  WAV in and out
//   voxrt/vad.h         Vad: voice activity detection on a live input stream
//   voxrt/turn_taking.h TurnTaking: user turns, barge-in and truncation for a live conversation
//
// docs/api.md is the guide; each header states its contracts (threads, ownership, units, costs).
#pragma once

#include "voxrt/audio_file.h"
#include "voxrt/batch.h"
#include "voxrt/model.h"
#include "voxrt/session.h"
#include "voxrt/status.h"
#include "voxrt/tasks.h"
#include "voxrt/turn_taking.h"
#include "voxrt/vad.h"

namespace voxrt {

// The library's version ("0.1.0").
const char* version();

}  // namespace voxrt
