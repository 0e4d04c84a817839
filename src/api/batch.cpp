// voxrt::Batch over runtime::BatchStepper: the public sessions' runtime sessions stepped together,
// their events translated as Session::step() translates them.
#include "voxrt/batch.h"

#include <utility>

#include "api/session_impl.h"
#include "runtime/batch.h"

namespace voxrt {

struct Batch::Impl {
    std::shared_ptr<const Model> model;
    std::unique_ptr<runtime::BatchStepper> stepper;
    std::vector<runtime::Session*> rt;
    std::vector<std::vector<runtime::Event>> rt_out;
    std::vector<runtime::BatchStepResult> rt_res;
    std::vector<size_t> index;  // rt[k] is sessions[index[k]]
};

Batch::Batch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Batch::~Batch() = default;

Expected<std::unique_ptr<Batch>> Batch::create(std::shared_ptr<const Model> model, int max_rows) {
    if (!model) return make_error(StatusCode::kInvalidArgument, "Batch::create: no model");
    auto impl = std::make_unique<Impl>();
    VOXRT_ASSIGN_OR_RETURN(impl->stepper, runtime::BatchStepper::create(model->impl(), max_rows));
    impl->model = std::move(model);
    return std::unique_ptr<Batch>(new Batch(std::move(impl)));
}

int Batch::max_rows() const {
    return impl_->stepper->max_rows();
}

void Batch::set_profile(bool on) {
    impl_->stepper->set_profile(on);
}

void Batch::set_device_graphs(bool on) {
    impl_->stepper->set_device_graphs(on);
}

Status Batch::warm_up(int rows) {
    return impl_->stepper->warm_up(rows);
}

void Batch::set_prefill_rows(int rows) {
    impl_->stepper->set_prefill_rows(rows);
}

int Batch::prefill_rows() const {
    return impl_->stepper->prefill_rows();
}

Batch::Phases Batch::phases() const {
    const runtime::BatchStepper::Phases& p = impl_->stepper->phases();
    Phases r;
    r.prepare = p.prepare;
    r.prefill = p.prefill;
    r.gather = p.gather;
    r.backbone = p.backbone;
    r.text = p.text;
    r.frames = p.frames;
    r.scatter = p.scatter;
    r.complete = p.complete;
    r.steps = p.steps;
    return r;
}

void Batch::reset_phases() {
    impl_->stepper->reset_phases();
}

Batch::Shape Batch::last_shape() const {
    const runtime::BatchStepper::Shape& s = impl_->stepper->last_shape();
    Shape r;
    r.backbone = s.backbone;
    r.text = s.text;
    r.frames = s.frames;
    r.alone = s.alone > 0;
    r.frame_graph = s.frame_graphs > 0;
    r.backbone_graph = s.backbone_graphs > 0;
    r.prefill_rows = s.prefill_rows;
    r.prefill_sessions = s.prefill_sessions;
    r.prefill_deferred = s.prefill_deferred;
    r.drain_wait = s.drain_wait > 0;
    return r;
}

Status Batch::step(const std::vector<Session*>& sessions, std::vector<std::vector<Event>>& out,
                   std::vector<BatchResult>& results) {
    Impl& b = *impl_;
    const size_t n = sessions.size();
    out.resize(n);
    results.assign(n, BatchResult{});
    b.rt.clear();
    b.index.clear();
    for (size_t i = 0; i < n; ++i) {
        Session* s = sessions[i];
        if (s == nullptr)
            return make_error(StatusCode::kInvalidArgument, "Batch::step: session %zu is null", i);
        if (s->impl_->model.get() != b.model.get())
            return make_error(StatusCode::kInvalidArgument,
                              "Batch::step: session %zu belongs to another model", i);
        for (size_t j = 0; j < i; ++j)
            if (sessions[j] == s)
                return make_error(StatusCode::kInvalidArgument,
                                  "Batch::step: sessions %zu and %zu are the same session", j, i);
    }
    for (size_t i = 0; i < n; ++i) {
        Session::Impl& s = *sessions[i]->impl_;
        if (s.turn != Session::Impl::Turn::kResponse) {
            results[i].done = true;  // no response running
            continue;
        }
        s.rt_events.clear();
        b.rt.push_back(s.rt.get());
        b.index.push_back(i);
    }
    b.rt_out.resize(b.rt.size());
    for (auto& v : b.rt_out) v.clear();
    VOXRT_RETURN_IF_ERROR(b.stepper->step(b.rt, b.rt_out, b.rt_res));
    for (size_t k = 0; k < b.rt.size(); ++k) {
        const size_t i = b.index[k];
        Session::Impl& s = *sessions[i]->impl_;
        s.rt_events = std::move(b.rt_out[k]);
        const runtime::BatchStepResult& r = b.rt_res[k];
        Expected<bool> got = r.status.is_ok() ? Expected<bool>(r.done) : Expected<bool>(r.status);
        Expected<bool> d = s.deliver(std::move(got), out[i]);
        if (d.is_ok()) {
            results[i].done = *d;
        } else {
            results[i].status = d.status();
            results[i].done = true;
        }
    }
    return Status::ok();
}

}  // namespace voxrt
