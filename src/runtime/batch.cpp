#include "runtime/batch.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "backend/device.h"
#include "runtime/util.h"

namespace voxrt::runtime {

Expected<std::unique_ptr<BatchStepper>> BatchStepper::create(const model::LfmAudioModel& model,
                                                             int max_rows) {
    if (max_rows < 1 || max_rows > 4096)
        return make_error(StatusCode::kInvalidArgument,
                          "batch: max_rows must be in [1, 4096], got %d", max_rows);
    std::unique_ptr<BatchStepper> b(new BatchStepper(model));
    VOXRT_RETURN_IF_ERROR(b->init(max_rows));
    return b;
}

BatchStepper::~BatchStepper() {
    prefill_buffers_.clear();
    prefill_scratch_ = Arena();
    buffers_.clear();
    scratch_ = Arena();
    backend::destroy_context(ctx_);
}

Status BatchStepper::init(int max_rows) {
    // The batch's queue comes before the sessions' detokenizers (Session::detok_context_options).
    VOXRT_ASSIGN_OR_RETURN(ctx_, model_.new_context(/*high_priority=*/true));
    max_rows_ = max_rows;
    prefill_rows_ = ctx_.device == Device::kCPU ? 0 : kPrefillRows;
    const size_t bytes = model_.backbone().scratch_bytes(ctx_, max_rows) +
                         model_.audio_head().scratch_bytes(ctx_, max_rows) + (1u << 20) +
                         static_cast<size_t>(max_rows) * 256;  // the per-row ops' tables
    if (!scratch_.reserve(ctx_.device, bytes))
        return make_error(StatusCode::kOutOfMemory, "batch: cannot allocate %zu bytes of scratch",
                          bytes);
    const model::AudioModelConfig& c = model_.config();
    const int64_t D = c.lfm.hidden_size, Q = c.codebooks, V = c.lfm.vocab_size, B = max_rows;
    const DType dt = ctx_.act_dtype();
    auto alloc = [&](DType t, std::initializer_list<int64_t> dims, Tensor* out) {
        return alloc_tensor(ctx_.device, t, dims, buffers_, out, "batch");
    };
    VOXRT_RETURN_IF_ERROR(alloc(dt, {B, D}, &x_));
    VOXRT_RETURN_IF_ERROR(alloc(dt, {B, D}, &h_));
    VOXRT_RETURN_IF_ERROR(alloc(dt, {B, D}, &hb_));
    VOXRT_RETURN_IF_ERROR(alloc(dt, {B, D}, &emb_));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {B}, &pos_));
    VOXRT_RETURN_IF_ERROR(alloc(dt, {B, V}, &logits_));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {B}, &tokens_));
    VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {B, Q}, &codes_));
    Buffer pinned = Buffer::allocate_pinned(static_cast<size_t>(B * Q) * sizeof(int32_t));
    if (!pinned.data())
        return make_error(StatusCode::kOutOfMemory, "batch: cannot allocate page-locked memory");
    choice_host_ = pinned.view(DType::kI32, {B * Q});
    buffers_.push_back(std::move(pinned));
    VOXRT_ASSIGN_OR_RETURN(frames_, model_.audio_head().new_batch_state(ctx_, B));
    if (ctx_.device != Device::kCPU) {
        // The frame's own arena, so that its table and activations sit at the same addresses
        // every time B rows come (a graph replays those addresses).
        VOXRT_RETURN_IF_ERROR(alloc(dt, {B, D}, &hf_));
        const size_t fb = model_.audio_head().scratch_bytes(ctx_, B) + (1u << 16) +
                          static_cast<size_t>(B) * 64;  // the sampling table
        if (!frame_scratch_.reserve(ctx_.device, fb))
            return make_error(StatusCode::kOutOfMemory,
                              "batch: cannot allocate %zu bytes of frame scratch", fb);
        // The backbone step's: its per-row tables and activations at fixed addresses too.
        VOXRT_RETURN_IF_ERROR(
            alloc(DType::kI64, {model_.backbone().batch_table_size(B)}, &backbone_table_));
        const size_t bb = model_.backbone().scratch_bytes(ctx_, B) + (1u << 16);
        if (!backbone_scratch_.reserve(ctx_.device, bb))
            return make_error(StatusCode::kOutOfMemory,
                              "batch: cannot allocate %zu bytes of backbone scratch", bb);
        frame_graphs_.resize(static_cast<size_t>(B) + 1);
        frame_runs_.assign(static_cast<size_t>(B) + 1, 0);
        frame_graph_failed_.assign(static_cast<size_t>(B) + 1, 0);
    }
    return Status::ok();
}

Status BatchStepper::warm_up(int rows) {
    if (ctx_.device == Device::kCPU || !graphs_) return Status::ok();
    const int Q = model_.config().codebooks;
    if (warm_counters_.empty())
        VOXRT_RETURN_IF_ERROR(
            alloc_tensor(ctx_.device, DType::kI32, {Q + 1}, buffers_, &warm_counters_, "batch"));
    const int n = std::min(rows, max_rows_);
    for (int b = 1; b <= n; ++b) {
        model::FrameSampling greedy;
        greedy.counters = &warm_counters_;
        const std::vector<model::FrameSampling> samplings(static_cast<size_t>(b), greedy);
        Tensor c = codes_.rows(0, b);
        for (int k = 0; k < 2 && !frame_graphs_[static_cast<size_t>(b)].captured(); ++k) {
            VOXRT_RETURN_IF_ERROR(run_frames(h_.rows(0, b), samplings, c));
            VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
        }
    }
    return Status::ok();
}

Status BatchStepper::run_frames(Tensor hf, const std::vector<model::FrameSampling>& samplings,
                                Tensor& codes) {
    const model::AudioHead& head = model_.audio_head();
    const int64_t nf = hf.shape[0];
    const int vocab = model_.config().audio_vocab;
    if (ctx_.device == Device::kCPU || !graphs_) {
        head.sample_frames(ctx_, frames_, hf, samplings, scratch_, codes, nullptr);
        ops::fill_rows_led_by(ctx_, codes, vocab - 1);
        return Status::ok();
    }
    // Fixed addresses for what the frame reads: its inputs in hf_, its sampling table and
    // activations from the start of frame_scratch_ (the stream has passed them by the step's end,
    // which synchronizes).
    const size_t n = static_cast<size_t>(nf);
    Tensor in = hf_.rows(0, nf);
    ops::copy(ctx_, hf, in);
    const ArenaMark release(frame_scratch_);
    std::vector<ops::RowSampling> host;
    const ops::SampleRows rows = head.upload_frame_rows(ctx_, samplings, host, frame_scratch_);
    auto frame = [&] {
        head.sample_frames(ctx_, frames_, in, rows, frame_scratch_, codes, nullptr);
        ops::fill_rows_led_by(ctx_, codes, vocab - 1);
    };
    backend::Graph& g = frame_graphs_[n];
    // The first time: op by op (the GEMM library makes its plans outside any capture).
    if (!g.captured() && (frame_runs_[n] == 0 || frame_graph_failed_[n])) {
        frame_runs_[n] = 1;
        frame();
        return Status::ok();
    }
    if (!g.captured()) {
        VOXRT_RETURN_IF_ERROR(g.begin(ctx_));
        frame();
        if (!g.end(ctx_).is_ok()) {  // nothing ran: op by op, now and from then on
            frame_graph_failed_[n] = 1;
            frame();
            return Status::ok();
        }
    }
    ++shape_.frame_graphs;
    return g.replay(ctx_);
}

Status BatchStepper::run_backbone(const std::vector<model::Lfm2Network::Memory>& mems, Tensor x,
                                  Tensor pos, Tensor out) {
    const model::Lfm2Network& net = model_.backbone();
    if (ctx_.device == Device::kCPU || !graphs_) {
        net.forward_batch(ctx_, mems, x, pos, scratch_, out);
        return Status::ok();
    }
    // The rows' cache and state addresses go up before the step, into a table at a fixed address;
    // the step reads them there (so a graph replays with this step's rows), and its activations
    // come from the start of backbone_scratch_ (the stream has passed them by the step's end,
    // which synchronizes).
    const int64_t B = x.shape[0];
    net.batch_tables(mems, tables_);
    Tensor table = backbone_table_.rows(0, net.batch_table_size(B));
    ops::upload_async(
        ctx_, Tensor::make(tables_.host.data(), DType::kI64, Device::kCPU, {table.shape[0]}),
        table);
    const ArenaMark release(backbone_scratch_);
    auto step = [&] {
        net.forward_batch_tables(ctx_, mems, table, tables_.max_s, x, pos, backbone_scratch_, out);
    };
    BackboneGraph& g = backbone_graphs_[{B, tables_.max_s}];
    // The first time: op by op (the GEMM library makes its plans outside any capture).
    if (!g.graph.captured() && (!g.ran || g.failed)) {
        g.ran = true;
        step();
        return Status::ok();
    }
    if (!g.graph.captured()) {
        VOXRT_RETURN_IF_ERROR(g.graph.begin(ctx_));
        step();
        if (!g.graph.end(ctx_).is_ok()) {  // nothing ran: op by op, now and from then on
            g.failed = true;
            step();
            return Status::ok();
        }
    }
    ++shape_.backbone_graphs;
    return g.graph.replay(ctx_);
}

Status BatchStepper::prefill(const std::vector<Session*>& sessions,
                             std::vector<BatchStepResult>& results, std::vector<uint8_t>& skip) {
    std::vector<size_t> order;
    for (size_t i = 0; i < sessions.size(); ++i) {
        Session* s = sessions[i];
        if (s != nullptr && &s->model_ == &model_ && s->responding_ && !s->draining_ &&
            !s->started_)
            order.push_back(i);
    }
    if (order.size() < 2) return Status::ok();  // none, or one: its own chunk in step_prepare
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return sessions[a]->begin_order_ < sessions[b]->begin_order_;
    });
    for (size_t k = 1; k < order.size(); ++k)
        if (sessions[order[k]] == sessions[order[k - 1]])
            return make_error(StatusCode::kInvalidArgument, "batch: session %zu is listed twice",
                              order[k]);
    auto t = Clock::now();
    const model::Lfm2Network& net = model_.backbone();
    const int64_t cap = prefill_rows_;
    if (prefill_x_.empty() || prefill_x_.shape[0] < cap) {  // first use, or a larger bound
        prefill_buffers_.clear();
        prefill_scratch_ = Arena();
        const int64_t D = model_.config().lfm.hidden_size;
        const DType dt = ctx_.act_dtype();
        auto alloc = [&](DType ty, std::initializer_list<int64_t> dims, Tensor* out) {
            return alloc_tensor(ctx_.device, ty, dims, prefill_buffers_, out, "batch prefill");
        };
        VOXRT_RETURN_IF_ERROR(alloc(dt, {cap, D}, &prefill_x_));
        VOXRT_RETURN_IF_ERROR(alloc(dt, {cap, D}, &prefill_out_));
        VOXRT_RETURN_IF_ERROR(alloc(DType::kI32, {cap}, &prefill_pos_));
        const size_t bytes = net.scratch_bytes(ctx_, cap) + (1u << 16);
        if (!prefill_scratch_.reserve(ctx_.device, bytes))
            return make_error(StatusCode::kOutOfMemory,
                              "batch: cannot allocate %zu bytes of prefill scratch", bytes);
    }
    // Each session's next chunk, as it would run alone, into the call's rows; oldest first, while
    // they fit the bound (the first always).
    struct Taken {
        size_t index;
        Session::PrefillTake take;
        int64_t begin;
    };
    std::vector<Taken> taken;
    int64_t rows = 0;
    for (size_t i : order) {
        Session* s = sessions[i];
        if (!s->prefilling_) {  // its prefill's clock starts with its first chance to run
            s->t0_ = Clock::now();
            s->prefilling_ = true;
        }
        const int64_t need = std::min(s->chunk_, s->pending_positions());
        skip[i] = 1;
        if (rows > 0 && rows + need > cap) {
            ++shape_.prefill_deferred;
            continue;
        }
        Session::PrefillTake take;
        Tensor x = prefill_x_.rows(rows, cap);
        const Status st = s->prefill_take(x, &take);
        if (!st) {
            results[i].status = s->fail(st);
            results[i].done = true;
            continue;
        }
        taken.push_back(Taken{i, take, rows});
        rows += take.rows;
    }
    if (taken.empty()) return Status::ok();
    // The rows were written on the sessions' contexts; the call runs on the batch's.
    for (const Taken& k : taken) VOXRT_RETURN_IF_ERROR(ops::synchronize(sessions[k.index]->ctx_));
    std::vector<model::Lfm2Network::Memory> mems;
    std::vector<model::Lfm2Network::Segment> segs;
    std::vector<int32_t> pos(static_cast<size_t>(rows));
    mems.reserve(taken.size());
    for (const Taken& k : taken) {
        Session* s = sessions[k.index];
        model::Lfm2State& st = s->lfm_state_;
        mems.push_back(model::Lfm2Network::Memory{&st.conv_state, &st.k_cache, &st.v_cache});
        for (int64_t r = 0; r < k.take.rows; ++r)
            pos[static_cast<size_t>(k.begin + r)] = static_cast<int32_t>(s->n_past_ + r);
    }
    for (size_t j = 0; j < taken.size(); ++j)
        if (taken[j].take.rows > 0)
            segs.push_back(model::Lfm2Network::Segment{&mems[j], taken[j].begin,
                                                       taken[j].begin + taken[j].take.rows});
    if (rows > 0) {
        const ArenaMark release(scratch_);
        Tensor x = prefill_x_.rows(0, rows), out = prefill_out_.rows(0, rows);
        Tensor p = prefill_pos_.rows(0, rows);
        ops::copy(ctx_, Tensor::make(pos.data(), DType::kI32, Device::kCPU, {rows}), p);
        {
            const ArenaMark scratch(prefill_scratch_);
            net.forward_prefill_many(ctx_, segs.data(), segs.size(), x, p, prefill_scratch_, out);
        }
        // Each session's last row is its h_ (the first step's input to the heads).
        std::vector<Tensor> src, dst;
        for (const Taken& k : taken) {
            if (k.take.rows == 0) continue;
            const int64_t last = k.begin + k.take.rows - 1;
            src.push_back(prefill_out_.rows(last, last + 1));
            dst.push_back(sessions[k.index]->h_);
        }
        ops::copy_many(ctx_, src.data(), dst.data(), src.size(), scratch_);
        VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    }
    shape_.prefill_rows = static_cast<int>(rows);
    shape_.prefill_sessions = static_cast<int>(taken.size());
    for (const Taken& k : taken) {
        Session* s = sessions[k.index];
        s->n_past_ += static_cast<int>(k.take.rows);
        bool done = false;
        const Status st = s->prefill_consume(k.take, &done);
        if (!st) {
            results[k.index].status = s->fail(st);
            results[k.index].done = true;
            continue;
        }
        // Over: its step goes on as usual (step_prepare finds nothing left to prefill and makes
        // the first step); else it waits for the next chunk.
        if (done) skip[k.index] = 0;
    }
    return lap(&phases_.prefill, &t);
}

Status BatchStepper::step(const std::vector<Session*>& sessions,
                          std::vector<std::vector<Event>>& out,
                          std::vector<BatchStepResult>& results) {
    const size_t n = sessions.size();
    out.resize(n);
    results.assign(n, BatchStepResult{});
    shape_ = Shape{};
    auto t_phase = Clock::now();
    if (profile_) ++phases_.steps;
    std::vector<uint8_t> skip(n, 0);
    if (prefill_rows_ > 0) VOXRT_RETURN_IF_ERROR(prefill(sessions, results, skip));
    t_phase = Clock::now();
    std::vector<Row> rows;
    rows.reserve(n);
    size_t first_draining = n;  // a session whose answer is over, its detokenizer finishing
    for (size_t i = 0; i < n; ++i) {
        if (skip[i]) continue;  // its prefill chunk ran joined (not the last), or waits
        Session* s = sessions[i];
        if (s == nullptr || &s->model_ != &model_) {
            results[i].status = make_error(StatusCode::kInvalidArgument, "batch: session %zu is %s",
                                           i, s ? "of another model" : "null");
            results[i].done = true;
            continue;
        }
        if (!s->responding_) {
            results[i].done = true;
            continue;
        }
        Expected<Session::StepPlan> plan = s->step_prepare(out[i]);
        if (!plan.is_ok()) {
            results[i].status = plan.status();
            results[i].done = true;
            continue;
        }
        if (plan->done) {
            results[i].done = true;
            continue;
        }
        if (plan->prefill) continue;  // a chunk of its prefill ran; it joins once that is over
        if (plan->draining) {         // its answer is over; its detokenizer is finishing
            first_draining = std::min(first_draining, i);
            continue;
        }
        rows.push_back(Row{s, i, *plan});
    }
    for (size_t a = 0; a < rows.size(); ++a)
        for (size_t b = a + 1; b < rows.size(); ++b)
            if (rows[a].s == rows[b].s)
                return make_error(StatusCode::kInvalidArgument,
                                  "batch: sessions %zu and %zu are the same session", rows[a].index,
                                  rows[b].index);

    if (rows.empty() && first_draining < n) {
        // Nothing to run but detokenizers finishing: wait for one (a caller stepping only such
        // sessions would otherwise spin until they are done).
        Session* s = sessions[first_draining];
        shape_.drain_wait = 1;
        const Status st = s->drain(out[first_draining], /*wait=*/true);
        if (!st) results[first_draining].status = s->fail(st);
        results[first_draining].done = true;
    }
    VOXRT_RETURN_IF_ERROR(lap(&phases_.prepare, &t_phase));
    // A conversation's first audio frame is detokenized at once, inline, for the first sample's
    // sake, but only for a few per step: a step in which many answers reach audio together (they
    // started together) hands the others' first frames to their workers, so that the step is not
    // held up by one detokenizer call per conversation.
    int inline_first = kInlineFirstFrames;
    auto complete = [&](const Row& r, int32_t tok, const std::array<int32_t, 8>& codes, double ms) {
        DetokStream& d = r.s->detok_;
        if (!r.plan.text && d.enabled() && !d.started()) d.set_first_async(inline_first-- <= 0);
        Expected<bool> done = r.s->step_complete(r.plan, tok, codes, ms, out[r.index]);
        if (!done.is_ok()) {
            results[r.index].status = done.status();
            results[r.index].done = true;
        } else {
            results[r.index].done = *done;
        }
    };

    if (rows.size() == 1) {  // alone: the session's own step (fused kernels, graphs)
        const Row& r = rows[0];
        shape_.alone = 1;
        const auto t0 = Clock::now();
        int32_t tok = 0;
        std::array<int32_t, 8> codes{};
        const Status st =
            r.s->run_step(r.s->gopt_, r.plan.text, r.plan.forward, r.plan.text ? &tok : nullptr,
                          r.plan.text ? nullptr : &codes);
        if (!st) {
            results[r.index].status = r.s->fail(st);
            results[r.index].done = true;
            return Status::ok();
        }
        complete(r, tok, codes, ms_since(t0));
        if (profile_) phases_.backbone += ms_since(t0);  // alone: the whole fused step
        return Status::ok();
    }

    for (size_t first = 0; first < rows.size(); first += static_cast<size_t>(max_rows_)) {
        const size_t last = std::min(rows.size(), first + static_cast<size_t>(max_rows_));
        std::vector<Row> part(rows.begin() + static_cast<std::ptrdiff_t>(first),
                              rows.begin() + static_cast<std::ptrdiff_t>(last));
        // Text rows first, then frame rows (the heads read contiguous rows).
        std::stable_partition(part.begin(), part.end(), [](const Row& r) { return r.plan.text; });
        std::vector<int32_t> tokens;
        std::vector<std::array<int32_t, 8>> codes;
        const auto t0 = Clock::now();
        const Status st = run(part, tokens, codes);
        const double ms = ms_since(t0);
        t_phase = Clock::now();
        for (size_t k = 0; k < part.size(); ++k) {
            const Row& r = part[k];
            if (!st) {
                results[r.index].status = r.s->fail(st);
                results[r.index].done = true;
                continue;
            }
            complete(r, tokens[k], codes[k], ms);
        }
        if (profile_) phases_.complete += ms_since(t_phase);
    }
    return Status::ok();
}

Status BatchStepper::lap(double* acc, Clock::time_point* t) {
    if (!profile_) return Status::ok();
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    const Clock::time_point now = Clock::now();
    *acc += std::chrono::duration<double, std::milli>(now - *t).count();
    *t = now;
    return Status::ok();
}

Status BatchStepper::run(std::vector<Row>& rows, std::vector<int32_t>& tokens,
                         std::vector<std::array<int32_t, 8>>& codes) {
    const model::AudioModelConfig& cfg = model_.config();
    const int Q = cfg.codebooks;
    const int64_t B = static_cast<int64_t>(rows.size());
    int64_t nt = 0;
    while (nt < B && rows[static_cast<size_t>(nt)].plan.text) ++nt;
    const int64_t nf = B - nt;

    // The per-row ops' tables live in scratch_ until the step's end (the stream has used them by
    // then).
    const ArenaMark release(scratch_);
    auto t = Clock::now();
    // The backbone step of every row with an item to run: its input and position gathered into
    // the batch's rows with one copy_many.
    std::vector<model::Lfm2Network::Memory> mems;
    mems.reserve(rows.size());
    std::vector<Tensor> src, dst;
    for (const Row& r : rows) {
        if (!r.plan.forward) continue;
        const int64_t k = static_cast<int64_t>(mems.size());
        src.push_back(r.s->x_.rows(0, 1));
        dst.push_back(x_.rows(k, k + 1));
        src.push_back(r.s->pos_.rows(0, 1));
        dst.push_back(pos_.rows(k, k + 1));
        model::Lfm2State& st = r.s->lfm_state_;
        mems.push_back(model::Lfm2Network::Memory{&st.conv_state, &st.k_cache, &st.v_cache});
    }
    ops::copy_many(ctx_, src.data(), dst.data(), src.size(), scratch_);
    const int64_t nb = static_cast<int64_t>(mems.size());
    shape_.backbone += static_cast<int>(nb);
    shape_.text += static_cast<int>(nt);
    shape_.frames += static_cast<int>(nf);
    VOXRT_RETURN_IF_ERROR(lap(&phases_.gather, &t));
    if (nb > 0) {
        Tensor x = x_.rows(0, nb), p = pos_.rows(0, nb), h = hb_.rows(0, nb);
        VOXRT_RETURN_IF_ERROR(run_backbone(mems, x, p, h));
    }
    VOXRT_RETURN_IF_ERROR(lap(&phases_.backbone, &t));
    // The heads' inputs: the backbone's rows, or (a response's first step) the prefill's last.
    Tensor heads = hb_.rows(0, B);
    src.clear();
    dst.clear();
    if (nb != B) {
        heads = h_.rows(0, B);
        int64_t k = 0;
        for (int64_t i = 0; i < B; ++i) {
            const Row& r = rows[static_cast<size_t>(i)];
            src.push_back(r.plan.forward ? hb_.rows(k, k + 1) : r.s->h_);
            dst.push_back(heads.rows(i, i + 1));
            if (r.plan.forward) ++k;
        }
    }
    // The forwarded rows' next positions, and their conv state kept for truncation.
    std::vector<Tensor> stepped;
    for (const Row& r : rows) {
        if (!r.plan.forward) continue;
        stepped.push_back(r.s->pos_.rows(0, 1));
        ++r.s->n_past_;
        Tensor from, to;
        if (r.s->conv_snapshot(r.s->n_past_ - r.s->resp_start_, &from, &to)) {
            src.push_back(from);
            dst.push_back(to);
        }
    }
    ops::copy_many(ctx_, src.data(), dst.data(), src.size(), scratch_);
    ops::increment_many(ctx_, stepped.data(), stepped.size(), 1, scratch_);

    VOXRT_RETURN_IF_ERROR(lap(&phases_.scatter, &t));
    // Text rows: the text head over all of them, then each row's choice.
    if (nt > 0) {
        Tensor ht = heads.rows(0, nt), logits = logits_.rows(0, nt), tok = tokens_.rows(0, nt);
        ops::linear(ctx_, ht, model_.backbone().text_head(), nullptr, logits);
        std::vector<ops::RowSampling> rs(static_cast<size_t>(nt));
        for (int64_t i = 0; i < nt; ++i) {
            Session& s = *rows[static_cast<size_t>(i)].s;
            const GenerateOptions& o = s.gopt_;
            ops::RowSampling& r = rs[static_cast<size_t>(i)];
            r.temperature = o.text_temperature;
            r.top_k = o.text_top_k;
            r.seed = o.seed;
            r.counters = &s.counters_;  // the text draw's counter is counters_[Q]
            r.forbid = o.suppress_end ? model_.special().im_end : -1;
        }
        const ops::SampleRows sr = ops::upload_sample_rows(ctx_, rs.data(), nt, scratch_);
        ops::sample_rows(ctx_, logits, sr, Q, tok);
        Tensor e = emb_.rows(0, nt);
        ops::embedding(ctx_, model_.backbone().embed_tokens(), tok, e);
    }
    VOXRT_RETURN_IF_ERROR(lap(&phases_.text, &t));
    // Frame rows: one depthformer pass over all of them.
    if (nf > 0) {
        std::vector<model::FrameSampling> samplings;
        for (int64_t i = nt; i < B; ++i) {
            Session& s = *rows[static_cast<size_t>(i)].s;
            const GenerateOptions& o = s.gopt_;
            model::FrameSampling fs;
            fs.temperature = o.audio_temperature;
            fs.top_k = o.audio_top_k;
            fs.seed = o.seed ^ 0xa0d10c0de5ull;  // as Session::step_ops
            fs.counters = &s.counters_;
            fs.suppress_eos = o.suppress_end;
            samplings.push_back(fs);
        }
        Tensor hf = heads.rows(nt, B), c = codes_.rows(0, nf), e = emb_.rows(nt, B);
        VOXRT_RETURN_IF_ERROR(run_frames(hf, samplings, c));
        model_.audio_head().embed_frames(ctx_, c, e);
    }
    VOXRT_RETURN_IF_ERROR(lap(&phases_.frames, &t));
    // Each choice's embedding is its session's next input; the sampling counters advance.
    src.clear();
    dst.clear();
    std::vector<Tensor> counters;
    for (int64_t i = 0; i < B; ++i) {
        Session& s = *rows[static_cast<size_t>(i)].s;
        src.push_back(emb_.rows(i, i + 1));
        dst.push_back(s.x_.rows(0, 1));
        counters.push_back(s.counters_);
    }
    ops::copy_many(ctx_, src.data(), dst.data(), src.size(), scratch_);
    ops::increment_many(ctx_, counters.data(), counters.size(), Q + 1, scratch_);
    if (nt > 0) {
        Tensor dst = choice_host_.rows(0, nt);
        ops::copy_to_host_async(ctx_, tokens_.rows(0, nt), dst);
    }
    if (nf > 0) {
        Tensor dst = choice_host_.rows(nt, nt + nf * Q);
        ops::copy_to_host_async(ctx_, codes_.rows(0, nf).reshape({nf * Q}), dst);
    }
    VOXRT_RETURN_IF_ERROR(ops::synchronize(ctx_));
    VOXRT_RETURN_IF_ERROR(lap(&phases_.scatter, &t));
    const int32_t* got = choice_host_.ptr<int32_t>();
    tokens.assign(rows.size(), 0);
    codes.assign(rows.size(), std::array<int32_t, 8>{});
    for (int64_t i = 0; i < nt; ++i) tokens[static_cast<size_t>(i)] = got[i];
    for (int64_t i = 0; i < nf; ++i)
        std::copy(got + nt + i * Q, got + nt + (i + 1) * Q,
                  codes[static_cast<size_t>(nt + i)].begin());
    return Status::ok();
}

}  // namespace voxrt::runtime
