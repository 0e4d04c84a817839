// voxrt/batch.h — many conversations advanced together (continuous batching).
//
// A decode step at one conversation reads every weight of the model to produce one token or one
// audio frame. Batch::step() advances every given session that has a response running by one step
// at once: the backbone runs once over all their rows, the text head once over those choosing a
// text token, the depthformer once over those choosing an audio frame. Sessions join (after
// start_response()) and leave (their response ends, or they are simply left out of the list) at
// any step; each keeps its own state, options, events and detokenizer.
//
//   auto batch = Batch::create(model).value();
//   std::vector<Session*> live = {a.get(), b.get(), c.get()};   // each after start_response()
//   std::vector<std::vector<Event>> ev;
//   std::vector<BatchResult> res;
//   while (!live.empty()) {
//       batch->step(live, ev, res);                // ev[i], res[i]: live[i]'s events and outcome
//       /* deliver ev[i] to each; drop the sessions whose res[i].done */
//   }
//
// Results: a session's events are what its own step() would have produced (tokens and frames
// identical in fp32; the batched products sum in another order than the single-conversation
// kernels on CUDA, within the precision's parity bars otherwise). A batch of one session takes the
// session's own step, so one conversation is as fast as it is alone.
//
// Costs: one step costs about one weight read plus each row's own work (its attention over its
// history, its conv state, the depthformer's per-row parts). A session's first steps prefill its
// new input, one chunk of at most 256 positions per step(), before it joins the batch, so a
// newcomer with a long turn delays the others by at most one chunk per step (a cancel() is honoured
// once its prefill is over). On a GPU the chunks of all sessions prefilling in a step run as one
// backbone call of at most set_prefill_rows() positions (the sessions whose responses began first
// go first; the rest wait a step), so that a burst of new turns shares the weight reads and
// lengthens a step by a bounded amount. docs/batching.md has the measurements.
//
// No session holds up the others: at most two sessions a step get their first audio frame
// detokenized at once (the others' on their detokenizer threads, their first kAudio a step or two
// later), and a session made with SessionOptions::share_device_context ends without waiting for its
// detokenizer (its kEndOfTurn, and results[i].done, come at a later step).
//
// Threads: a Batch and the sessions it steps are driven by one thread; cancel() from any thread.
#pragma once

#include <memory>
#include <vector>

#include "voxrt/model.h"
#include "voxrt/session.h"
#include "voxrt/status.h"

namespace voxrt {

struct BatchResult {
    Status status;      // this session's error: its response is over (the others go on)
    bool done = false;  // its response is over (its kEndOfTurn is in its events), or none ran
};

class Batch {
public:
    // max_rows: sessions per batched call (more are stepped in several calls); 1 .. 4096. Allocates
    // the batch's activations for max_rows rows (on CUDA a stream). Errors: kInvalidArgument,
    // kOutOfMemory.
    static Expected<std::unique_ptr<Batch>> create(std::shared_ptr<const Model> model,
                                                   int max_rows = 64);
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    // One step of every session in `sessions` with a response running; out[i] and results[i]
    // (resized to sessions.size()) are session i's events (appended) and outcome. A session of
    // another model, or listed twice, is an error (kInvalidArgument, nothing stepped).
    Status step(const std::vector<Session*>& sessions, std::vector<std::vector<Event>>& out,
                std::vector<BatchResult>& results);

    int max_rows() const;
    // Rows of the last step: backbone rows, text-head rows, depthformer rows, whether a single
    // session took its own step, and whether the depthformer rows' step and the backbone step
    // replayed a device graph.
    struct Shape {
        int backbone = 0, text = 0, frames = 0;
        bool alone = false;
        bool frame_graph = false;
        bool backbone_graph = false;
        int prefill_rows = 0;      // positions of the joined prefill call (0: none)
        int prefill_sessions = 0;  // sessions whose chunk it ran
        int prefill_deferred = 0;  // sessions prefilling that wait for a later step
        // Nothing ran: every listed session was done, prefilling alone or finishing its
        // detokenizer, and the step waited for one of the latter.
        bool drain_wait = false;
    };
    Shape last_shape() const;

    // Profiling: with set_profile(true) every step synchronizes the device between its phases
    // and phases() sums each phase's time (ms) over the steps since reset_phases(). A step that
    // one session took alone counts as backbone time. Slows the steps a little.
    struct Phases {
        double prepare = 0;   // the sessions' own preparation (detokenizer polls, lone chunks)
        double prefill = 0;   // the joined prefill call of the sessions prefilling
        double gather = 0;    // each row's input and position copied into the batch
        double backbone = 0;  // the backbone over all rows
        double text = 0;      // text head, sampling, embedding of the text rows
        double frames = 0;    // depthformer over the frame rows, their embedding
        double scatter = 0;   // per-row bookkeeping on the device, the choices back to the host
        double complete = 0;  // the sessions' events and detokenizer hand-off
        int steps = 0;
    };
    void set_profile(bool on);
    Phases phases() const;
    void reset_phases();
    // GPU: replay the depthformer's frame over the frame rows as a captured graph (one per row
    // count, captured the second time that count comes), and the backbone step likewise (one per
    // row count and longest KV cache). On by default; false runs them op by op (comparisons).
    // The results are the same.
    void set_device_graphs(bool on);
    // Prefill of several sessions in one step: 0 = each session's chunk runs alone (the CPU's
    // default, where a session's bits then do not depend on its batch: the CPU's products take
    // another path by row count); rows > 0 = the chunks of every session prefilling run as one
    // backbone call of at most `rows` positions (at least one chunk: values below 256 count as
    // 256). The GPU's default: 1024.
    void set_prefill_rows(int rows);
    int prefill_rows() const;
    // GPU: makes the depthformer frame's plans and graphs for every count of audio-frame rows up
    // to `rows` (at most max_rows()) now, so that no later step pays for a count's first run
    // (tens of ms at a hundred rows on an H100). Nothing on the CPU. Not yet run on a GPU.
    Status warm_up(int rows);

    struct Impl;

private:
    explicit Batch(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace voxrt
