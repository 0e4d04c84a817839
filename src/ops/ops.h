// The operator set the model code is written against. Each op is declared once here, checks its
// arguments, and calls the entry point of the backend that serves ctx.device (backend/
// entry_points.h; an op on a device whose backend this build lacks aborts with a clear message).
//
// Conventions
// - Tensors are contiguous row-major views on ctx.device. "Rows" = all leading dimensions
//   flattened; the last dimension is the feature dimension.
// - Weights may be BF16 or F32 (as stored in the checkpoint); activations use ctx.act_dtype().
//   linear() also takes weight-only quantized matrices (core/quant.h: I8 / F8E4M3 codes with
//   Tensor::scale), computing with the dequantized weights in fp32; activations are unchanged.
// - Numerics: with Precision::kBF16 every op rounds its output to bfloat16 exactly where the
//   PyTorch reference (bf16 model) produces a bf16 tensor, accumulating in fp32 as PyTorch does.
//   On the CPU activations are stored as F32 holding bf16-representable values; on a GPU they are
//   stored as BF16. With Precision::kF32 nothing is rounded.
// - Positions are device-resident I32 tensors so that decode steps can be captured in graphs
//   (backend/device.h) and replayed with new positions without touching the host.
#pragma once

#include <cstdint>

#include "core/arena.h"
#include "core/status.h"
#include "core/tensor.h"

namespace voxrt {
class ThreadPool;
}

namespace voxrt::ops {

enum class Precision : uint8_t { kF32, kBF16 };

struct Context {
    Device device = Device::kCPU;
    Precision precision = Precision::kF32;
    ThreadPool* pool = nullptr;  // CPU worker threads (may be null: single-threaded)
    // What the backend's create_context made (queue, library handles, workspaces), owned by the
    // backend and freed by backend::destroy_context; null for a plain CPU context.
    void* backend_state = nullptr;
    bool fused =
        true;  // allow the fused kernels of ops/fused_ops.h (false: always the op sequence)
    // Of those, the fused LFM2 backbone step (ops::lfm2_decode_step) alone (false: only it off).
    bool fused_backbone = true;
    // CPU linear: products of at least kPackedGemmMinRows rows take the packed-panel GEMM, fewer
    // the tiled GEMV (ops/ops.h linear). The two sum in different orders, so a caller that must get
    // the same bits whatever the row count (the detokenizer's streaming steps against its
    // whole-utterance decode) turns it off.
    bool cpu_packed_gemm = true;

    bool round_bf16() const { return precision == Precision::kBF16; }
    // The dtype activation buffers are allocated with.
    DType act_dtype() const {
        return device != Device::kCPU && precision == Precision::kBF16 ? DType::kBF16 : DType::kF32;
    }
};

enum class RmsStyle : uint8_t {
    kLfm2,   // transformers Lfm2RMSNorm: w * bf16(x * rsqrt(mean(x²) + eps))   (two roundings)
    kFused,  // liquid-audio RMSNorm:     bf16((x * rsqrt(mean(x²) + eps)) * w) (one rounding)
};

enum class RopeStyle : uint8_t {
    kNeox,   // rotate_half over (x[i], x[i + Dh/2]); cos/sin rounded to the activation dtype
    kPairs,  // adjacent pairs (x[2i], x[2i+1]) as complex numbers, computed in fp32
};

// y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias[N]); w may be quantized (w[n][k] = scale[n] · q[n][k]).
void linear(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y);

// Row-wise normalizations over the last dimension; y may alias x.
void rms_norm(const Context& ctx, const Tensor& x, const Tensor& w, float eps, RmsStyle style,
              Tensor& y);
void layer_norm(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b, float eps,
                Tensor& y);

// Elementwise (same shapes; y may alias an input).
void add(const Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);  // a + b
void add_scaled(const Context& ctx, const Tensor& a, const Tensor& b, float alpha,
                Tensor& y);                                                 // a + bf16(alpha·b)
void mul(const Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);  // a ⊙ b
enum class Activation : uint8_t { kSilu, kRelu, kGeluErf, kSigmoid, kExp };
void activation(const Context& ctx, Activation act, const Tensor& x, Tensor& y);
// y = bf16(silu(a)) ⊙ b   (the SwiGLU gate, with PyTorch's intermediate rounding)
void swiglu(const Context& ctx, const Tensor& a, const Tensor& b, Tensor& y);
// x[M, 2C] → y[M, C] = x[:, :C] ⊙ sigmoid(x[:, C:])  (torch.nn.functional.glu over the last dim)
void glu(const Context& ctx, const Tensor& x, Tensor& y);

// Embedding rows: y[n,D] = table[ids[n]] (ids I32 on the device; out-of-range ids are a caller bug
// and are clamped).
void embedding(const Context& ctx, const Tensor& table, const Tensor& ids, Tensor& y);
// y[n,D] = reduce_q table[ids[n,q] + q·stride]   over q = 0..Q-1, accumulated in fp32 and rounded
// once. mean=true divides by Q (the detokenizer's FusedEmbedding), otherwise sums (audio-out
// embedding feedback).
void embedding_bag(const Context& ctx, const Tensor& table, const Tensor& ids, int64_t stride,
                   bool mean, Tensor& y);

// Rotary embedding on x[T,H,Dh] in place, position of row t = pos[t]; cos/sin tables [P, Dh/2] F32.
void rope(const Context& ctx, Tensor& x, const Tensor& pos, const Tensor& cos, const Tensor& sin,
          RopeStyle style);

// Writes k,v [T,Hkv,Dh] into caches [Hkv, S, Dh] at rows pos[t].
void kv_write(const Context& ctx, const Tensor& k, const Tensor& v, const Tensor& pos,
              Tensor& k_cache, Tensor& v_cache);

// Grouped-query attention over a cache. q [T,H,Dh]; caches [Hkv, S, Dh]; query t sits at position
// pos[t] and sees keys j with j <= pos[t] and, if window > 0, j > pos[t] - window. Softmax in fp32,
// output rounded once. out [T,H,Dh].
void attention(const Context& ctx, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
               const Tensor& pos, float scale, int window, Tensor& out);

// The per-row KV caches of a decode batch for one attention layer: row b's caches are k[b], v[b]
// ([Hkv, S_b, Dh], each row its own buffer). `table` (optional, on the context's device, I64
// [B, 3]: k pointer, v pointer, S_b per row) lets a backend write and attend for all rows with one
// kernel each; without it (or where the backend has none) the ops below run per row.
struct RowCaches {
    Tensor* k = nullptr;  // [B]
    Tensor* v = nullptr;  // [B]
    int64_t rows = 0;
    const Tensor* table = nullptr;
    int64_t max_s = 0;  // the largest S_b
};

// kv_write / attention for a decode batch: row b of k, v [B,Hkv,Dh] (q [B,H,Dh], out [B,H,Dh])
// goes to / attends over row b's own caches at position pos[b]. Each row's result equals
// kv_write / attention of that row alone.
void kv_write_rows(const Context& ctx, const Tensor& k, const Tensor& v, const Tensor& pos,
                   const RowCaches& c);
void attention_rows(const Context& ctx, const Tensor& q, const RowCaches& c, const Tensor& pos,
                    float scale, int window, Tensor& out);

// ---- Per-row ops of a decode batch ----------------------------------------------------------
// Each runs as one kernel over all rows where the backend has one (a GPU: the rows' addresses go
// up in a small table, staged through upload_async and placed in `scratch`, which the caller
// keeps until the stream has passed), else as a loop of the single-row ops; either way row b's
// result equals the single-row op of that row alone.

// dst[i] = src[i] for n pairs of tensors of equal dtype and size on ctx.device.
void copy_many(const Context& ctx, const Tensor* src, const Tensor* dst, size_t n, Arena& scratch);
// Adds delta to every element of each of the n I32 tensors t[i] (as increment()).
void increment_many(const Context& ctx, const Tensor* t, size_t n, int32_t delta, Arena& scratch);
// short_conv of a decode batch: row b of x [B, C] with its own state states[b] ([K-1, C]) into
// row b of y.
// table: the states' addresses already on the device (I64 [B], as Lfm2Network::batch_tables
// lays them out): nothing is uploaded, so the call can be captured into a graph.
void short_conv_rows(const Context& ctx, const Tensor& x, const Tensor& w, const Tensor* states,
                     Tensor& y, Arena& scratch, const Tensor* table = nullptr);

// How row b of a batch's logits is chosen (sample_rows): greedy (argmax) when temperature <= 0 or
// top_k == 1, else sample_top_k with this row's temperature, top_k, seed and draw counter
// counters[counter_index] (keyed as row 0: the draw of this row launched alone). forbid >= 0:
// that index is set to -inf first, in the logits themselves (as set_value).
struct RowSampling {
    float temperature = 0.0f;
    int top_k = 0;
    uint64_t seed = 0;
    const Tensor* counters = nullptr;  // device I32 [>= counter_index + 1]
    int64_t forbid = -1;
};
// The per-row choices of a batch, uploaded once and used for several sample_rows calls (the 8
// codebooks of a frame, each with its counter_index).
struct SampleRows {
    const RowSampling* host = nullptr;
    int64_t rows = 0;
    Tensor table;  // on a GPU: I64 [rows, 4] (temperature | top_k, seed, counters address, forbid)
};
SampleRows upload_sample_rows(const Context& ctx, const RowSampling* rows, int64_t n,
                              Arena& scratch);
// logits [B, N] → out I32 [B], row b as rows.host[b] says. Without a table (the CPU, or rows made
// by hand for a step being captured into a graph) it runs the single-row ops row by row.
void sample_rows(const Context& ctx, Tensor& logits, const SampleRows& rows, int counter_index,
                 Tensor& out);

// Causal depthwise short convolution with carried state (LFM2 ShortConv):
//   y[t,c] = Σ_k w[c,k] · xe[t+k, c]   with xe = [state (K-1 rows); x (T rows)]
// then state ← last K-1 rows of xe. x,y [T,C]; w [C,K] (the checkpoint's [C,1,K] viewed);
// state [K-1, C]. Each output is one fp32 dot product rounded once, in prefill and in decode alike
// (transformers 5.x computes both with F.conv1d over [state, x]). pos is reserved for backends
// that need the step index.
void short_conv(const Context& ctx, const Tensor& x, const Tensor& w, Tensor& state,
                const Tensor& pos, Tensor& y);

// Index of the largest value (first on ties) of each row of logits [M, N] → out I32 [M].
void argmax(const Context& ctx, const Tensor& logits, Tensor& out);

// Temperature / top-k sampling of each row of logits [M, N] → out I32 [M], as liquid-audio does:
// logits/T, keep values >= the k-th largest (ties kept), softmax, draw. The draw for row m uses a
// counter-based generator: u = uniform(seed, counter[0], m) so CPU and CUDA give identical draws
// for identical logits. counter is a device I32 [1] the caller advances (graph-friendly).
void sample_top_k(const Context& ctx, const Tensor& logits, float temperature, int top_k,
                  uint64_t seed, const Tensor& counter, Tensor& out);

// t.flat[index] = value (e.g. -inf to forbid a token). index must be inside t.
void set_value(const Context& ctx, Tensor& t, int64_t index, float value);

// t += delta, every element of the I32 tensor t (wrapping like unsigned arithmetic). A decode step
// advances its device-resident position and sampling counters with it, so that a replayed graph
// needs no upload.
void increment(const Context& ctx, Tensor& t, int32_t delta);
// Each row of the I32 tensor t [M, N] whose first element equals value is filled with value: an
// audio frame whose first code is end-of-audio (2048) is an end-of-audio frame, every code 2048.
void fill_rows_led_by(const Context& ctx, Tensor& t, int32_t value);

// Copies between tensors of equal numel, converting dtype (F32 <-> BF16, I32/I64) and device.
// A copy between the host and a device waits for it (and for the work queued before it).
void copy(const Context& ctx, const Tensor& src, Tensor& dst);
// Queues a copy of src (on ctx.device) into the host tensor dst (same dtype and numel) and returns
// at once: dst holds the values after the next synchronize(ctx). On a GPU, dst must be page-locked
// (Buffer::allocate_pinned) for the copy to be asynchronous, and must not be touched before that
// synchronize. On the CPU the copy is done at once.
void copy_to_host_async(const Context& ctx, const Tensor& src, Tensor& dst);
// Queues a copy of the host tensor src into dst (on ctx.device; same dtype and numel) without
// waiting for the device: src may change as soon as this returns (a GPU backend stages it in
// page-locked memory of its own). Meant for the small tables of a batch step; not for use while a
// graph is being captured.
void upload_async(const Context& ctx, const Tensor& src, Tensor& dst);
// Sets every byte of t to zero.
void zero(const Context& ctx, Tensor& t);
// Rounds every element to bfloat16 in place when ctx.round_bf16() (no-op otherwise / for BF16).
void round_to_act(const Context& ctx, Tensor& t);
// y[B,A] = x[A,B]ᵀ
void transpose(const Context& ctx, const Tensor& x, Tensor& y);

// Blocks until all work queued on ctx has finished (the device queue; no-op on the CPU).
Status synchronize(const Context& ctx);

// A named range on ctx's device for an attached profiler (on CUDA an NVTX range, seen by Nsight
// Systems; nothing on the CPU). Costs next to nothing when no profiler is attached. Ranges nest
// and must be popped on the thread that pushed them; ProfileRange does both.
void range_push(const Context& ctx, const char* name);
void range_pop(const Context& ctx);
class ProfileRange {
public:
    ProfileRange(const Context& ctx, const char* name) : ctx_(ctx) { range_push(ctx, name); }
    ~ProfileRange() { range_pop(ctx_); }
    ProfileRange(const ProfileRange&) = delete;
    ProfileRange& operator=(const ProfileRange&) = delete;

private:
    const Context& ctx_;
};

// Uniform [0,1) draw shared by both backends: a stateless hash of (seed, counter, index).
float uniform_draw(uint64_t seed, uint32_t counter, uint32_t index);

}  // namespace voxrt::ops
