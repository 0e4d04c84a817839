// CUDA linear layer y[M,N] = x[M,K] · w[N,K]ᵀ (+ bias), fp32 accumulation, output rounded once.
//
// Three paths, chosen per call:
// - M <= 8 (decode): a memory-bound GEMV kernel. Each weight row is read once with 16-byte
//   streaming loads (ld.global.nc.L1::no_allocate), split over 32..256 threads in steps of four loads
//   per thread, partial sums reduced with warp shuffles (+ shared memory across warps).
//   Rows per block are chosen so that the grid has >= 4 blocks per SM where the shape allows.
//   x is read through L1 (it is small and shared by every block).
// - M > 8, x and w both BF16 or both F32: cuBLASLt (BF16 tensor cores with fp32 accumulation, or
//   plain fp32 with compute type 32F, no TF32). The bias goes in the epilogue for F32 outputs; for
//   BF16 outputs the product goes to the scratch in F32 and a kernel adds the bias and rounds once
//   (the epilogue was seen rounding twice). Descriptors and the chosen algorithm are cached per
//   shape/dtype/alignment in the context.
// - anything else (mixed x/w dtypes with M > 8, misaligned or K not a multiple of the vector
//   width, cuBLASLt finding no algorithm, bias dtype unlike y): a tiled fp32 SIMT GEMM.
// - 8-bit weights (kI8 / kF8E4M3 codes with per-row F32 scales, core/quant.h): the GEMV decodes 16
//   codes per load in registers and multiplies each row's finished sum by its scale; M > 8 (or a
//   shape the GEMV refuses) decodes row chunks into the scratch in the activation dtype (exact),
//   runs cuBLASLt / SIMT into the scratch in F32, then applies scale, bias and the rounding; with
//   no room in the scratch, a warp-per-output kernel (docs/cuda.md, "8-bit weights").
#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "backend/cuda/handles.h"
#include "backend/cuda/common.cuh"

namespace voxrt::cuda {

namespace {

// ---- GEMV (M <= 8) ---------------------------------------------------------------------------------

constexpr int kGemvThreads = 256;
constexpr int kGemvUnroll = 4;

template <class TW>
struct WeightVec;
template <>
struct WeightVec<__nv_bfloat16> {
    static constexpr int kN = 8;
    __device__ __forceinline__ static void unpack(const uint4& u, float (&f)[8]) {
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            f[2 * j] = __uint_as_float(w[j] << 16);
            f[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
        }
    }
};
template <>
struct WeightVec<float> {
    static constexpr int kN = 4;
    __device__ __forceinline__ static void unpack(const uint4& u, float (&f)[4]) {
        f[0] = __uint_as_float(u.x);
        f[1] = __uint_as_float(u.y);
        f[2] = __uint_as_float(u.z);
        f[3] = __uint_as_float(u.w);
    }
};
// 8-bit codes: the decoded values before the row scale (common.cuh).
template <>
struct WeightVec<QI8> {
    static constexpr int kN = 16;
    __device__ __forceinline__ static void unpack(const uint4& u, float (&f)[16]) { unpack_i8x16(u, f); }
};
template <>
struct WeightVec<QE4M3> {
    static constexpr int kN = 16;
    __device__ __forceinline__ static void unpack(const uint4& u, float (&f)[16]) { unpack_e4m3x16(u, f); }
};

// VEC consecutive activations as floats (p aligned to VEC elements).
template <int VEC>
__device__ __forceinline__ void load_x(const __nv_bfloat16* p, float (&f)[VEC]) {
    if constexpr (VEC == 16) {
        float lo[8], hi[8];
        WeightVec<__nv_bfloat16>::unpack(__ldg(reinterpret_cast<const uint4*>(p)), lo);
        WeightVec<__nv_bfloat16>::unpack(__ldg(reinterpret_cast<const uint4*>(p + 8)), hi);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            f[j] = lo[j];
            f[8 + j] = hi[j];
        }
    } else if constexpr (VEC == 8) {
        const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
        WeightVec<__nv_bfloat16>::unpack(u, f);
    } else {
        const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
        f[0] = __uint_as_float(u.x << 16);
        f[1] = __uint_as_float(u.x & 0xffff0000u);
        f[2] = __uint_as_float(u.y << 16);
        f[3] = __uint_as_float(u.y & 0xffff0000u);
    }
}
template <int VEC>
__device__ __forceinline__ void load_x(const float* p, float (&f)[VEC]) {
#pragma unroll
    for (int j = 0; j < VEC; j += 4) {
        const float4 v = __ldg(reinterpret_cast<const float4*>(p + j));
        f[j] = v.x;
        f[j + 1] = v.y;
        f[j + 2] = v.z;
        f[j + 3] = v.w;
    }
}

struct GemvArgs {
    const void* x;
    const void* w;
    const float* scale;  // 8-bit weights: [N] row scales, applied to each finished dot product
    Ptr bias;  // p == nullptr: none
    Ptr y;
    bool round;
    int M, N, K;
    int tpr_log2;  // log2(threads per output row), 5..8
};

// One output row n (all M activations rows) per group of 2^tpr_log2 threads.
template <int MT, class TX, class TW>
__global__ void __launch_bounds__(kGemvThreads) gemv_kernel(GemvArgs a) {
    constexpr int VEC = WeightVec<TW>::kN;
    const int tpr = 1 << a.tpr_log2;
    const int r = threadIdx.x >> a.tpr_log2;
    const int t = threadIdx.x & (tpr - 1);
    const int64_t n = static_cast<int64_t>(blockIdx.x) * (kGemvThreads >> a.tpr_log2) + r;
    const bool valid = n < a.N;
    const int K = a.K;
    const TW* wr = static_cast<const TW*>(a.w) + (valid ? n : 0) * static_cast<int64_t>(K);
    const TX* xp[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) xp[m] = static_cast<const TX*>(a.x) + static_cast<int64_t>(m < a.M ? m : a.M - 1) * K;

    float acc[MT];
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[m] = 0.0f;

    const int step = tpr * VEC;
    int k = t * VEC;
    if (valid) {
        for (; k + (kGemvUnroll - 1) * step < K; k += kGemvUnroll * step) {
            uint4 wv[kGemvUnroll];
#pragma unroll
            for (int u = 0; u < kGemvUnroll; ++u) wv[u] = ld_stream16(wr + k + u * step);
#pragma unroll
            for (int u = 0; u < kGemvUnroll; ++u) {
                float wf[VEC];
                WeightVec<TW>::unpack(wv[u], wf);
#pragma unroll
                for (int m = 0; m < MT; ++m) {
                    float xf[VEC];
                    load_x<VEC>(xp[m] + k + u * step, xf);
#pragma unroll
                    for (int j = 0; j < VEC; ++j) acc[m] = fmaf(wf[j], xf[j], acc[m]);
                }
            }
        }
        for (; k < K; k += step) {
            float wf[VEC];
            WeightVec<TW>::unpack(ld_stream16(wr + k), wf);
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                float xf[VEC];
                load_x<VEC>(xp[m] + k, xf);
#pragma unroll
                for (int j = 0; j < VEC; ++j) acc[m] = fmaf(wf[j], xf[j], acc[m]);
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[m] = warp_sum(acc[m]);

    if (tpr > 32) {  // combine the warps of one row (uniform branch)
        __shared__ float part[kGemvThreads / 32][MT];
        const int warp = threadIdx.x >> 5;
        if ((threadIdx.x & 31) == 0) {
#pragma unroll
            for (int m = 0; m < MT; ++m) part[warp][m] = acc[m];
        }
        __syncthreads();
        if (t == 0) {
            const int wpr = tpr >> 5;
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                float s = 0.0f;
                for (int i = 0; i < wpr; ++i) s += part[warp + i][m];
                acc[m] = s;
            }
        }
    }
    if (t == 0 && valid) {
        const float b = a.bias.p ? a.bias.load(n) : 0.0f;
        if constexpr (kQuantized<TW>) {
            const float sc = a.scale[n];
#pragma unroll
            for (int m = 0; m < MT; ++m)
                if (m < a.M) a.y.store(static_cast<int64_t>(m) * a.N + n, acc[m] * sc + b, a.round);
        } else {
#pragma unroll
            for (int m = 0; m < MT; ++m)
                if (m < a.M) a.y.store(static_cast<int64_t>(m) * a.N + n, acc[m] + b, a.round);
        }
    }
}

template <class TX, class TW>
void launch_gemv(const GemvArgs& a, int blocks, cudaStream_t s) {
    if (a.M == 1) {
        gemv_kernel<1, TX, TW><<<blocks, kGemvThreads, 0, s>>>(a);
    } else if (a.M == 2) {
        gemv_kernel<2, TX, TW><<<blocks, kGemvThreads, 0, s>>>(a);
    } else if (a.M <= 4) {
        gemv_kernel<4, TX, TW><<<blocks, kGemvThreads, 0, s>>>(a);
    } else {
        gemv_kernel<8, TX, TW><<<blocks, kGemvThreads, 0, s>>>(a);
    }
}

// Returns false if the shape/alignment does not suit the vector kernel.
bool try_gemv(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int M,
              int N, int K) {
    const int vec = static_cast<int>(16 / dtype_size(w.dtype));
    // Weight loads are 16 bytes; x loads are VEC elements (8, 4 or 16) wide, so with K a multiple
    // of VEC and both base pointers 16-byte aligned every load is aligned.
    if (K % vec != 0 || !aligned16(w.data) || !aligned16(x.data)) return false;
    const Handles& h = handles(ctx);
    // Rows per block: as many as 8 while the grid keeps >= 4 blocks per SM, and never more
    // threads per row than the row has vectors.
    int rows = 8;
    while (rows > 1 && (static_cast<int64_t>(N) + rows - 1) / rows < 4LL * h.sm_count) rows /= 2;
    while (rows < 8 && (kGemvThreads / rows) * vec > K) rows *= 2;
    int tpr_log2 = 0;
    while ((1 << tpr_log2) < kGemvThreads / rows) ++tpr_log2;

    GemvArgs a;
    a.x = x.data;
    a.w = w.data;
    a.scale = w.scale;
    a.bias = bias ? ptr_of(*bias) : Ptr{nullptr, false};
    a.y = ptr_of(y);
    a.round = ctx.round_bf16();
    a.M = M;
    a.N = N;
    a.K = K;
    a.tpr_log2 = tpr_log2;
    const int blocks = (N + rows - 1) / rows;
    const bool xb = x.dtype == DType::kBF16, wb = w.dtype == DType::kBF16;
    if (w.dtype == DType::kI8) {
        if (xb) launch_gemv<__nv_bfloat16, QI8>(a, blocks, h.stream);
        else launch_gemv<float, QI8>(a, blocks, h.stream);
    } else if (w.dtype == DType::kF8E4M3) {
        if (xb) launch_gemv<__nv_bfloat16, QE4M3>(a, blocks, h.stream);
        else launch_gemv<float, QE4M3>(a, blocks, h.stream);
    } else {
        if (xb && wb) launch_gemv<__nv_bfloat16, __nv_bfloat16>(a, blocks, h.stream);
        if (!xb && wb) launch_gemv<float, __nv_bfloat16>(a, blocks, h.stream);
        if (xb && !wb) launch_gemv<__nv_bfloat16, float>(a, blocks, h.stream);
        if (!xb && !wb) launch_gemv<float, float>(a, blocks, h.stream);
    }
    check_launch(ctx, "linear (gemv)");
    return true;
}

// ---- SIMT fallback GEMM ----------------------------------------------------------------------------

constexpr int kTile = 64, kTileK = 16;

struct GemmArgs {
    Ptr x, w, bias, y;
    bool round;
    int M, N, K;
};

// 64x64 output tile per 256-thread block, 4x4 outputs per thread, operands staged in shared
// memory as fp32.
__global__ void __launch_bounds__(256) gemm_simt_kernel(GemmArgs a) {
    __shared__ float xs[kTileK][kTile + 4];
    __shared__ float ws[kTileK][kTile + 4];
    const int tm = threadIdx.x / 16, tn = threadIdx.x % 16;
    const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTile, n0 = static_cast<int64_t>(blockIdx.x) * kTile;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < a.K; k0 += kTileK) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int idx = threadIdx.x + i * 256;
            const int row = idx / kTileK, kk = idx % kTileK;
            const bool kin = k0 + kk < a.K;
            xs[kk][row] = (kin && m0 + row < a.M) ? a.x.load((m0 + row) * a.K + k0 + kk) : 0.0f;
            ws[kk][row] = (kin && n0 + row < a.N) ? a.w.load((n0 + row) * a.K + k0 + kk) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTileK; ++kk) {
            float xv[4], wv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                xv[i] = xs[kk][tm * 4 + i];
                wv[i] = ws[kk][tn * 4 + i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int64_t m = m0 + tm * 4 + i;
        if (m >= a.M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int64_t n = n0 + tn * 4 + j;
            if (n >= a.N) continue;
            const float b = a.bias.p ? a.bias.load(n) : 0.0f;
            a.y.store(m * a.N + n, acc[i][j] + b, a.round);
        }
    }
}

// round: y's stores round to bf16 values (ctx.round_bf16() for an op's output; false for fp32
// partial results that are finished elsewhere).
void gemm_simt(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int M,
               int N, int K, bool round) {
    GemmArgs a{ptr_of(x), ptr_of(w), bias ? ptr_of(*bias) : Ptr{nullptr, false}, ptr_of(y), round, M, N, K};
    const dim3 grid((N + kTile - 1) / kTile, (M + kTile - 1) / kTile);
    gemm_simt_kernel<<<grid, 256, 0, stream_of(ctx)>>>(a);
    check_launch(ctx, "linear (simt gemm)");
}

}  // namespace

// ---- cuBLASLt --------------------------------------------------------------------------------------

struct LtKey {
    int64_t M, N, K;
    int x_bf16, y_bf16, has_bias, align;  // align: min pointer alignment (bytes, <= 16)
    bool operator==(const LtKey& o) const { return std::memcmp(this, &o, sizeof *this) == 0; }
};
struct LtKeyHash {
    size_t operator()(const LtKey& k) const {
        size_t h = 1469598103934665603ull;
        const unsigned char* p = reinterpret_cast<const unsigned char*>(&k);
        for (size_t i = 0; i < sizeof k; ++i) h = (h ^ p[i]) * 1099511628211ull;
        return h;
    }
};
struct LtPlan {
    bool ok = false;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    cublasLtMatmulAlgo_t algo{};
};
struct LtPlanCache {
    std::unordered_map<LtKey, LtPlan, LtKeyHash> plans;
};

void destroy_lt_plans(LtPlanCache* cache) {
    if (!cache) return;
    for (auto& [key, p] : cache->plans) {
        if (p.desc) cublasLtMatmulDescDestroy(p.desc);
        if (p.a) cublasLtMatrixLayoutDestroy(p.a);
        if (p.b) cublasLtMatrixLayoutDestroy(p.b);
        if (p.d) cublasLtMatrixLayoutDestroy(p.d);
    }
    delete cache;
}

namespace {

int alignment_of(const void* p) {
    const uintptr_t v = reinterpret_cast<uintptr_t>(p);
    int a = 16;
    while (a > 1 && (v % a) != 0) a /= 2;
    return a;
}

// Builds (once per key) the descriptors and picks the algorithm. Column-major view: D[N,M] =
// op(A)[N,K] · B[K,M] with A = w stored K×N (ld K, transposed), B = x stored K×M (ld K).
const LtPlan& lt_plan(const ops::Context& ctx, Handles& h, const LtKey& key) {
    if (!h.lt_plans) h.lt_plans = new LtPlanCache();
    auto [it, inserted] = h.lt_plans->plans.try_emplace(key);
    LtPlan& p = it->second;
    if (!inserted) return p;
    const cudaDataType_t ab = key.x_bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cudaDataType_t dt = key.y_bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
    bool ok = check(ctx, cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate") &&
              check(ctx, cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a),
                    "cublasLtMatmulDescSetAttribute(TRANSA)") &&
              check(ctx, cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b),
                    "cublasLtMatmulDescSetAttribute(TRANSB)");
    if (ok && key.has_bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        const int32_t bias_type = dt;
        ok = check(ctx, cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi),
                   "cublasLtMatmulDescSetAttribute(EPILOGUE)") &&
             check(ctx,
                   cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                  sizeof bias_type),
                   "cublasLtMatmulDescSetAttribute(BIAS_DATA_TYPE)");
    }
    ok = ok && check(ctx, cublasLtMatrixLayoutCreate(&p.a, ab, key.K, key.N, key.K), "cublasLtMatrixLayoutCreate(w)") &&
         check(ctx, cublasLtMatrixLayoutCreate(&p.b, ab, key.K, key.M, key.K), "cublasLtMatrixLayoutCreate(x)") &&
         check(ctx, cublasLtMatrixLayoutCreate(&p.d, dt, key.N, key.M, key.N), "cublasLtMatrixLayoutCreate(y)");
    if (!ok) return p;
    cublasLtMatmulPreference_t pref = nullptr;
    if (!check(ctx, cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate")) return p;
    const uint64_t ws = h.gemm_workspace_bytes;
    const uint32_t align = static_cast<uint32_t>(key.align);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align, sizeof align);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align, sizeof align);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align, sizeof align);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align, sizeof align);
    cublasLtMatmulHeuristicResult_t result{};
    int n_results = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(h.lt, p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &n_results);
    cublasLtMatmulPreferenceDestroy(pref);
    // No algorithm is not an error: the SIMT kernel takes the shape.
    if (st == CUBLAS_STATUS_SUCCESS && n_results > 0) {
        p.algo = result.algo;
        p.ok = true;
    }
    return p;
}

__global__ void bias_store_kernel(const float* acc, Ptr bias, Ptr y, int64_t n, int64_t N, bool round) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        y.store(i, acc[i] + bias.load(i % N), round);
}

bool run_lt(const ops::Context& ctx, Handles& h, const void* x, const void* w, const void* bias, void* y,
            const LtKey& key) {
    const LtPlan& p = lt_plan(ctx, h, key);
    if (!p.ok) return false;
    if (bias &&
        !check(ctx, cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
               "cublasLtMatmulDescSetAttribute(BIAS_POINTER)"))
        return true;
    const float alpha = 1.0f, beta = 0.0f;
    check(ctx,
          cublasLtMatmul(h.lt, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.d, y, p.d, &p.algo, h.gemm_workspace,
                         h.gemm_workspace_bytes, h.stream),
          "cublasLtMatmul");
    return true;
}

// With a bias and a BF16 output, cuBLASLt's epilogue may round the product to bf16 before adding
// the bias (seen on H100: ~5% of outputs 2 ulps off the CPU's single rounding for some shapes). So
// the product goes to the scratch in F32, in row chunks that fit, and a kernel adds the bias and
// rounds once.
bool lt_bias_bf16(const ops::Context& ctx, Handles& h, const Tensor& x, const Tensor& w, const Tensor& bias,
                  Tensor& y, int M, int N, int K) {
    const int64_t chunk = std::min<int64_t>(M, static_cast<int64_t>(h.scratch_bytes / (sizeof(float) * N)));
    if (chunk < 1) return false;
    const size_t xs = dtype_size(x.dtype), ys = dtype_size(y.dtype);
    for (int64_t m0 = 0; m0 < M; m0 += chunk) {
        const int64_t mc = std::min<int64_t>(chunk, M - m0);
        const char* xp = static_cast<const char*>(x.data) + static_cast<size_t>(m0) * K * xs;
        const int align = std::min({alignment_of(xp), alignment_of(w.data), 16});
        const LtKey key{mc, N, K, x.dtype == DType::kBF16, /*y_bf16=*/0, /*has_bias=*/0, align};
        if (!run_lt(ctx, h, xp, w.data, nullptr, h.scratch, key)) {
            if (m0 == 0) return false;
            // No algorithm for the last, shorter chunk: the SIMT kernel takes the remaining rows.
            Tensor xr = Tensor::make(const_cast<char*>(xp), x.dtype, x.device, {M - m0, K});
            Tensor yr = Tensor::make(static_cast<char*>(y.data) + static_cast<size_t>(m0) * N * ys, y.dtype,
                                     y.device, {M - m0, N});
            gemm_simt(ctx, xr, w, &bias, yr, static_cast<int>(M - m0), N, K, ctx.round_bf16());
            return true;
        }
        Ptr yp = ptr_of(y);
        yp.p = static_cast<char*>(y.data) + static_cast<size_t>(m0) * N * ys;
        bias_store_kernel<<<grid_for(mc * N, 256), 256, 0, h.stream>>>(static_cast<const float*>(h.scratch),
                                                                       ptr_of(bias), yp, mc * N, N, ctx.round_bf16());
        check_launch(ctx, "linear (bias)");
    }
    return true;
}

bool try_cublaslt(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int M,
                  int N, int K) {
    if (x.dtype != w.dtype) return false;
    Handles& h = handles(ctx);
    if (bias && y.dtype == DType::kBF16) return lt_bias_bf16(ctx, h, x, w, *bias, y, M, N, K);
    if (bias && bias->dtype != y.dtype) return false;  // cuBLASLt wants the bias in D's type
    int align = alignment_of(x.data);
    align = std::min(align, alignment_of(w.data));
    align = std::min(align, alignment_of(y.data));
    if (bias) align = std::min(align, alignment_of(bias->data));
    const LtKey key{M, N, K, x.dtype == DType::kBF16, y.dtype == DType::kBF16, bias != nullptr, align};
    return run_lt(ctx, h, x.data, w.data, bias ? bias->data : nullptr, y.data, key);
}

// ---- fp32 activations with bf16 weights ------------------------------------------------------------

// x = hi + mid + lo with each part a bf16 value (8 mantissa bits each: the three hold x's 24 bits
// exactly, subnormal corners aside). Written as three row blocks [3 · M, K].
__global__ void split3_kernel(const float* x, __nv_bfloat16* out, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = x[i];
        const __nv_bfloat16 hi = __float2bfloat16_rn(v);
        const float r1 = v - __bfloat162float(hi);
        const __nv_bfloat16 mid = __float2bfloat16_rn(r1);
        const __nv_bfloat16 lo = __float2bfloat16_rn(r1 - __bfloat162float(mid));
        out[i] = hi;
        out[n + i] = mid;
        out[2 * n + i] = lo;
    }
}

// y = (p_lo + p_mid) + p_hi (+ bias), the three partial products as row blocks [3 · M, N].
__global__ void sum3_kernel(const float* p, Ptr bias, Ptr y, int64_t n, int N, bool round) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = (p[2 * n + i] + p[n + i]) + p[i];
        if (bias.p) v += bias.load(i % N);
        y.store(i, v, round);
    }
}

// fp32 x [M, K] times bf16 w [N, K] on the tensor cores: x is split into three bf16 parts exactly
// (split3_kernel), each part's product with w is a bf16 GEMM accumulated in fp32 (cuBLASLt), and
// the three are summed. The products of bf16 weights with the parts are exact in fp32, so this
// differs from an fp32 GEMM only in summation order, at 3× the bf16 work instead of the SIMT
// kernel's fp32 FMAs (the detokenizer's products over many conversations' rows; the fp32
// model's prefill). Rows go in chunks that fit the context's scratch.
bool split3_linear(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int M,
                   int N, int K) {
    if (x.dtype != DType::kF32 || w.dtype != DType::kBF16 || (bias && bias->device != Device::kCUDA)) return false;
    Handles& h = handles(ctx);
    const size_t row_bytes = 3 * (static_cast<size_t>(K) * sizeof(__nv_bfloat16) + static_cast<size_t>(N) * sizeof(float));
    const int64_t chunk = std::min<int64_t>(M, static_cast<int64_t>(h.scratch_bytes / (row_bytes + 64)));
    if (chunk < 16) return false;
    const size_t ys = dtype_size(y.dtype);
    for (int64_t m0 = 0; m0 < M; m0 += chunk) {
        const int64_t mc = std::min<int64_t>(chunk, M - m0);
        __nv_bfloat16* parts = static_cast<__nv_bfloat16*>(h.scratch);
        const size_t parts_bytes = (3 * static_cast<size_t>(mc) * K * sizeof(__nv_bfloat16) + 255) / 256 * 256;
        float* prod = reinterpret_cast<float*>(static_cast<char*>(h.scratch) + parts_bytes);
        const float* xp = static_cast<const float*>(x.data) + static_cast<size_t>(m0) * K;
        const int64_t nx = mc * K, ny = mc * N;
        split3_kernel<<<grid_for(nx, 256), 256, 0, h.stream>>>(xp, parts, nx);
        const int align = std::min({alignment_of(parts), alignment_of(w.data), alignment_of(prod), 16});
        const LtKey key{3 * mc, N, K, /*x_bf16=*/1, /*y_bf16=*/0, /*has_bias=*/0, align};
        if (!run_lt(ctx, h, parts, w.data, nullptr, prod, key)) {
            if (m0 == 0) return false;
            Tensor xr = Tensor::make(const_cast<float*>(xp), x.dtype, x.device, {M - m0, K});
            Tensor yr = Tensor::make(static_cast<char*>(y.data) + static_cast<size_t>(m0) * N * ys, y.dtype,
                                     y.device, {M - m0, N});
            gemm_simt(ctx, xr, w, bias, yr, static_cast<int>(M - m0), N, K, ctx.round_bf16());
            return true;
        }
        Ptr yp = ptr_of(y);
        yp.p = static_cast<char*>(y.data) + static_cast<size_t>(m0) * N * ys;
        sum3_kernel<<<grid_for(ny, 256), 256, 0, h.stream>>>(prod, bias ? ptr_of(*bias) : Ptr{nullptr, false}, yp,
                                                             ny, N, ctx.round_bf16());
    }
    check_launch(ctx, "linear (fp32 x bf16, three bf16 parts)");
    return true;
}

// ---- 8-bit weights (core/quant.h) beyond the GEMV --------------------------------------------------

__device__ __forceinline__ float decode_code(uint8_t byte, bool e4m3) {
    return e4m3 ? decode_e4m3(byte) : decode_i8(byte);
}

// out[i] = decode(q[i]) in the activation dtype (exact: int8 values and e4m3 values are bf16
// values), n elements.
__global__ void decode_codes_kernel(const uint8_t* q, bool e4m3, Ptr out, int64_t n) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
        out.store(i, decode_code(q[i], e4m3), false);
}

// y[m, n0 + j] = acc[m, j]·scale[n0 + j] + bias[n0 + j] for the chunk's nc columns, rounded once.
__global__ void scale_store_kernel(const float* acc, const float* scale, Ptr bias, Ptr y, int64_t M, int64_t nc,
                                   int64_t n0, int64_t N, bool round) {
    const int64_t n = M * nc, stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const int64_t m = i / nc, c = n0 + i % nc;
        const float b = bias.p ? bias.load(c) : 0.0f;
        y.store(m * N + c, acc[i] * scale[c] + b, round);
    }
}

// T > 8 (prefill): in chunks of weight rows, the codes decoded into the scratch in the activation
// dtype, the unscaled product by cuBLASLt (or the SIMT kernel) into the scratch in F32, then the
// row scales, the bias and the one rounding. False when the scratch cannot hold one row's chunk.
bool quant_gemm(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int M,
                int N, int K) {
    Handles& h = handles(ctx);
    const size_t es = dtype_size(x.dtype);
    const size_t per_row = static_cast<size_t>(K) * es + static_cast<size_t>(M) * sizeof(float) + 16;
    if (!h.scratch || h.scratch_bytes < 512 + per_row) return false;
    int64_t chunk = std::min<int64_t>(N, static_cast<int64_t>((h.scratch_bytes - 512) / per_row));
    if (chunk >= 128 && chunk < N) chunk = chunk / 64 * 64;  // whole GEMM tiles
    const bool e4m3 = w.dtype == DType::kF8E4M3;
    const bool lt_ok = x.dtype == DType::kBF16 || x.dtype == DType::kF32;
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        const int64_t nc = std::min<int64_t>(chunk, N - n0);
        // the decoded rows at the scratch's start, the F32 product after them (256-byte aligned)
        const size_t tile_bytes = (static_cast<size_t>(nc) * K * es + 255) & ~static_cast<size_t>(255);
        Tensor tile = Tensor::make(h.scratch, x.dtype, Device::kCUDA, {nc, K});
        Tensor acc = Tensor::make(static_cast<char*>(h.scratch) + tile_bytes, DType::kF32, Device::kCUDA, {M, nc});
        const uint8_t* q = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(n0) * K;
        decode_codes_kernel<<<grid_for(nc * K, 256), 256, 0, h.stream>>>(q, e4m3, ptr_of(tile), nc * K);
        check_launch(ctx, "linear (decode 8-bit weights)");
        const int align = std::min({alignment_of(x.data), alignment_of(tile.data), alignment_of(acc.data)});
        const LtKey key{M, nc, K, x.dtype == DType::kBF16, /*y_bf16=*/0, /*has_bias=*/0, align};
        if (!lt_ok || !run_lt(ctx, h, x.data, tile.data, nullptr, acc.data, key))
            gemm_simt(ctx, x, tile, nullptr, acc, M, static_cast<int>(nc), K, /*round=*/false);
        scale_store_kernel<<<grid_for(M * nc, 256), 256, 0, h.stream>>>(
            static_cast<const float*>(acc.data), w.scale, bias ? ptr_of(*bias) : Ptr{nullptr, false}, ptr_of(y), M, nc,
            n0, N, ctx.round_bf16());
        check_launch(ctx, "linear (8-bit weights, scale)");
    }
    return true;
}

// Any shape, any alignment (the last resort for 8-bit weights): one warp per output, lanes
// striding over k, fp32 sums, the row scale on the warp's total.
__global__ void quant_linear_simple_kernel(Ptr x, const uint8_t* q, bool e4m3, const float* scale, Ptr bias, Ptr y,
                                           int64_t M, int64_t N, int64_t K, bool round) {
    const int64_t o = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (o >= M * N) return;  // uniform per warp
    const int64_t m = o / N, n = o % N;
    float acc = 0.0f;
    for (int64_t k = lane; k < K; k += 32) acc = fmaf(decode_code(q[n * K + k], e4m3), x.load(m * K + k), acc);
    acc = warp_sum(acc);
    if (lane == 0) y.store(m * N + n, acc * scale[n] + (bias.p ? bias.load(n) : 0.0f), round);
}

void quant_linear(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y, int M,
                  int N, int K) {
    VOXRT_ASSERT(w.scale != nullptr && w.ndim == 2, "linear: 8-bit weights %s without row scales",
                 w.describe().c_str());
    if (M <= 8 && try_gemv(ctx, x, w, bias, y, M, N, K)) return;
    if (quant_gemm(ctx, x, w, bias, y, M, N, K)) return;
    const int64_t threads = static_cast<int64_t>(M) * N * 32;
    quant_linear_simple_kernel<<<grid_for(threads, 256, INT32_MAX), 256, 0, stream_of(ctx)>>>(
        ptr_of(x), static_cast<const uint8_t*>(w.data), w.dtype == DType::kF8E4M3, w.scale,
        bias ? ptr_of(*bias) : Ptr{nullptr, false}, ptr_of(y), M, N, K, ctx.round_bf16());
    check_launch(ctx, "linear (8-bit weights, simple)");
}

}  // namespace

void linear(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    if (M == 0 || N == 0) return;
    VOXRT_ASSERT(M < (1LL << 31) && N < (1LL << 31) && K < (1LL << 31), "linear: shape too large");
    // int4 has CPU kernels only; loading refuses it on a GPU, so this is a caller's error.
    VOXRT_ASSERT(w.dtype != DType::kI4, "linear: int4 weights %s run on the CPU only", w.describe().c_str());
    if (w.dtype == DType::kI8 || w.dtype == DType::kF8E4M3) {
        quant_linear(ctx, x, w, bias, y, int(M), int(N), int(K));
        return;
    }
    if (M <= 8 && try_gemv(ctx, x, w, bias, y, int(M), int(N), int(K))) return;
    // cuBLASLt writes y unrounded: usable when y is BF16 or nothing is rounded.
    const bool lt_ok = y.dtype == DType::kBF16 || !ctx.round_bf16();
    if (M > 8 && lt_ok && try_cublaslt(ctx, x, w, bias, y, int(M), int(N), int(K))) return;
    if (M > 8 && split3_linear(ctx, x, w, bias, y, int(M), int(N), int(K))) return;
    gemm_simt(ctx, x, w, bias, y, int(M), int(N), int(K), ctx.round_bf16());
}

}  // namespace voxrt::cuda
