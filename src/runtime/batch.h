// BatchStepper: advances many sessions of one model by one generation step each, together
// (continuous batching). The backbone step of every session that has an item to run is one
// Lfm2Network::forward_batch call, the text head one linear over the sessions choosing a text
// token, and the depthformer one AudioHead::sample_frames call over the sessions choosing an audio
// frame: each weight is read once per engine step for the whole batch. Everything that belongs to
// one conversation (prefill, the turn state, events, the detokenizer, truncation history) stays in
// its Session, which does the first and last part of its step (Session::step_prepare /
// step_complete) exactly as when it steps alone.
//
// A session's output does not depend on who shares its batch: the batched ops give a row what the
// same ops give it alone (bit for bit on the CPU up to 8 rows, where the linear kernels are
// row-invariant; to summation order on CUDA and for larger CPU batches). A batch of one session
// takes the session's own step (fused kernels and graphs on CUDA), so one conversation is never
// slower than stepping alone.
//
// A session's first steps prefill what was added since its last response, one chunk (<= 256
// positions) a step, before it joins the batch. On a GPU the chunks of the sessions prefilling in
// a step run as one backbone call (set_prefill_rows), oldest response first, so that new turns
// share the weight reads as the answers do and a burst of them lengthens a step by a bounded
// amount.
//
// Not thread-safe; the sessions must not be stepped by anyone else while a step() runs.
#pragma once

#include <chrono>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "backend/device.h"
#include "core/arena.h"
#include "core/status.h"
#include "model/lfm_audio.h"
#include "runtime/session.h"

namespace voxrt::runtime {

struct BatchStepResult {
    Status status;      // this session's error (the others go on)
    bool done = false;  // its response ended in this step (or had already ended / not begun)
};

class BatchStepper {
public:
    // max_rows: sessions per batched call; a step over more sessions runs several calls.
    static Expected<std::unique_ptr<BatchStepper>> create(const model::LfmAudioModel& model,
                                                          int max_rows = 64);
    ~BatchStepper();
    BatchStepper(const BatchStepper&) = delete;
    BatchStepper& operator=(const BatchStepper&) = delete;

    // One step of every session in `sessions` that is responding (the others: done, nothing
    // appended). out[i] receives session i's events, results[i] its outcome. The sessions must
    // belong to this stepper's model and be distinct.
    Status step(const std::vector<Session*>& sessions, std::vector<std::vector<Event>>& out,
                std::vector<BatchStepResult>& results);

    int max_rows() const { return max_rows_; }
    // GPU: runs the depthformer's batched frame for every frame-row count 1 .. min(rows,
    // max_rows()) now, on placeholder rows (greedy, zero inputs), twice each: the first run makes
    // the GEMM plans, the second captures the count's graph. So no later step pays for a row
    // count's first run (at 128 rows that first run took 43–46 ms on an H100, against ~10 ms
    // replayed). Nothing on the CPU or with device graphs off. The results of later steps do not
    // change (a replay equals the op-by-op run bit for bit).
    Status warm_up(int rows);
    // First audio frames per step detokenized inline (the rest go to the sessions' workers).
    static constexpr int kInlineFirstFrames = 2;
    // Rows of the last step's batched calls (backbone rows, text rows, frame rows), for benches.
    struct Shape {
        int backbone = 0, text = 0, frames = 0, alone = 0;
        int prefill_rows = 0;      // positions of the joined prefill call (0: none ran joined)
        int prefill_sessions = 0;  // sessions whose chunk was in it
        int prefill_deferred = 0;  // sessions left for a later step (over the rows' bound)
        int drain_wait = 0;        // nothing ran: the step waited for a finishing detokenizer
        int frame_graphs = 0;      // batched calls whose frame rows replayed a graph
        int backbone_graphs = 0;   // batched calls whose backbone step replayed a graph
    };
    const Shape& last_shape() const { return shape_; }
    // Where the steps' time went, summed since reset_phases(), in ms. Only with set_profile(true),
    // which synchronizes the device between the phases (so the total is a little slower).
    struct Phases {
        double prepare = 0;   // the sessions' step_prepare (detokenizer polls; lone prefill chunks)
        double prefill = 0;   // the joined prefill call (set_prefill_rows)
        double gather = 0;    // copying each row's input and position into the batch
        double backbone = 0;  // forward_batch
        double text = 0;      // text head, sampling, embedding
        double frames = 0;    // the depthformer over the frame rows, their embedding
        double scatter = 0;   // per-row positions, conv snapshots, next inputs, counters, copy back
        double complete = 0;  // the sessions' step_complete (events, detokenizer hand-off)
        int steps = 0;
    };
    void set_profile(bool on) { profile_ = on; }
    // GPU: the depthformer's frame over B rows is captured into a CUDA graph the second time B
    // frame rows come (the first runs op by op, which also makes the GEMM plans), then replayed
    // (~860 launches become one). So is the backbone step over B rows, per B and longest KV
    // cache (~270 launches). On by default; false: always op by op (for comparisons).
    void set_device_graphs(bool on) { graphs_ = on; }
    bool device_graphs() const { return graphs_; }
    // Prefill: 0 = each session runs its chunk alone, in its step_prepare (the CPU's default:
    // its products take another path by row count, and a CPU session's bits are promised not to
    // depend on its batch); > 0 = the chunks of every session prefilling in a step run as one
    // backbone call (Lfm2Network::forward_prefill_many) of at most `rows` positions, the sessions
    // taken in the order their responses began, always at least one; the rest wait a step. The
    // GPU's default: kPrefillRows. Values below one chunk (256) are raised to it.
    void set_prefill_rows(int rows) { prefill_rows_ = rows <= 0 ? 0 : std::max(rows, 256); }
    int prefill_rows() const { return prefill_rows_; }
    static constexpr int kPrefillRows = 1024;
    const Phases& phases() const { return phases_; }
    void reset_phases() { phases_ = Phases{}; }

private:
    explicit BatchStepper(const model::LfmAudioModel& m) : model_(m) {}
    Status init(int max_rows);
    struct Row {
        Session* s;
        size_t index;  // in the step's session list
        Session::StepPlan plan;
    };
    // The joined prefill (prefill_rows_ > 0): runs one chunk of each session prefilling (in the
    // order their responses began, within the bound) as one backbone call. skip[i]: session i
    // ran a chunk that did not end its prefill, or waits for a later step; its step is over.
    Status prefill(const std::vector<Session*>& sessions, std::vector<BatchStepResult>& results,
                   std::vector<uint8_t>& skip);
    int prefill_rows_ = 0;
    Tensor prefill_x_, prefill_out_, prefill_pos_;  // [prefill_rows_, D] / I32: made on first use
    Arena prefill_scratch_;
    std::vector<Buffer> prefill_buffers_;
    // The device work of one batch of prepared rows; fills tokens / codes per row.
    Status run(std::vector<Row>& rows, std::vector<int32_t>& tokens,
               std::vector<std::array<int32_t, 8>>& codes);

    const model::LfmAudioModel& model_;
    ops::Context ctx_;
    int max_rows_ = 0;
    Arena scratch_;
    std::vector<Buffer> buffers_;
    Tensor x_, h_, hb_;   // [max_rows, D]: backbone inputs, head inputs, backbone outputs
    Tensor pos_;          // I32 [max_rows]
    Tensor logits_;       // [max_rows, V]
    Tensor tokens_;       // I32 [max_rows]
    Tensor codes_;        // I32 [max_rows, Q]
    Tensor emb_;          // [max_rows, D] the choices' embeddings
    Tensor choice_host_;  // I32 [max_rows · Q] page-locked
    model::AudioHeadBatchState frames_;  // the depthformer's frame cache for the batch
    // The frame rows' step, op by op or as a graph per row count (run_frames).
    Status run_frames(Tensor hf, const std::vector<model::FrameSampling>& samplings, Tensor& codes);
    bool graphs_ = true;
    Tensor hf_;                                 // [max_rows, D]: the frame rows' inputs
    Tensor warm_counters_;                      // I32 [Q + 1]: warm_up's placeholder rows
    Arena frame_scratch_;                       // the frame's sampling table and activations
    std::vector<backend::Graph> frame_graphs_;  // [max_rows + 1], by frame rows
    std::vector<uint8_t> frame_runs_;           // op-by-op runs so far, by frame rows
    std::vector<uint8_t> frame_graph_failed_;   // a capture failed: op by op from then on
    // The backbone step over the rows, op by op or as a graph per (rows, longest KV cache).
    Status run_backbone(const std::vector<model::Lfm2Network::Memory>& mems, Tensor x, Tensor pos,
                        Tensor out);
    struct BackboneGraph {
        backend::Graph graph;
        bool ran = false;     // an op-by-op run came first (the GEMM plans are made)
        bool failed = false;  // a capture failed: op by op from then on
    };
    std::map<std::pair<int64_t, int64_t>, BackboneGraph> backbone_graphs_;
    model::Lfm2Network::BatchTables tables_;  // the last step's per-row tables, on the host
    Tensor backbone_table_;                   // I64 [batch_table_size(max_rows)]: fixed address
    Arena backbone_scratch_;                  // the step's activations, from its start each time
    Shape shape_;
    bool profile_ = false;
    Phases phases_;
    // With profile_: synchronizes and adds the time since *t to *acc, then restarts *t.
    Status lap(double* acc, std::chrono::steady_clock::time_point* t);
};

}  // namespace voxrt::runtime
