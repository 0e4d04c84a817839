// CPU GEMV over quantized weights (backend/cpu/linear_quant.h): AVX-512 and AVX2 kernels chosen
// at run time, and a scalar path that dequantizes tiles of rows.
#include "backend/cpu/linear_quant.h"

#include <algorithm>
#include <bit>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define VOXRT_QUANT_X86 1
#endif

#include "backend/cpu/cpu_common.h"
#include "backend/cpu/simd_x86.h"
#include "core/quant.h"

namespace voxrt::cpu {

namespace {

// decode(dt, code) for every byte, per dtype: the scalar tails and the dequantizing paths read
// these (each entry is exactly quant::decode).
struct DecodeTables {
    float i8[256];
    float e4m3[256];
    DecodeTables() {
        for (int c = 0; c < 256; ++c) {
            i8[c] = quant::decode(DType::kI8, static_cast<uint8_t>(c));
            e4m3[c] = quant::decode(DType::kF8E4M3, static_cast<uint8_t>(c));
        }
    }
};

const float* decode_table(DType dt) {
    static const DecodeTables t;
    return dt == DType::kI8 ? t.i8 : t.e4m3;
}

constexpr int kTileRows = 4;  // weight rows per tile: each k-chunk of x is loaded once for them
constexpr int kXRows = 3;     // rows of x per block: 3 × 4 accumulators (+ 3 x + 1 w registers)
constexpr int64_t kI4PrefetchTiles = 2;  // int4 kernels: software prefetch distance in tiles
constexpr int64_t kPrefetchTiles = 2;    // int8 / e4m3 AVX-512 kernel: the same, in tiles

// The scalar end of one product: the codes past the vector loop, in order.
inline float tail(const float* x, const uint8_t* q, int64_t k, int64_t K, const float* lut) {
    float r = 0.0f;
    for (; k < K; ++k) r += x[k] * lut[q[k]];
    return r;
}

#if defined(__AVX2__) && defined(__FMA__)
inline __m256 decode8_i8(const uint8_t* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

// e4m3 S.EEEE.MMM → the float with bits S at 31 and EEEE.MMM at 26..20: its value is the e4m3
// value · 2^-120 (the exponent biases differ by 120; e4m3 subnormals land on float subnormals),
// so one multiply by 2^120 gives the exact value.
inline __m256 decode8_e4m3(const uint8_t* p) {
    const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i mag = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x7f)), 20);
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24);
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_or_si256(mag, sign)), _mm256_set1_ps(0x1p120f));
}

inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

// out[r][j] = Σ_k x[r][k] · decode(q[j][k]) for R rows of x and kTileRows rows of codes.
template <bool kE4m3, int R>
void block_avx2(const float* const* x, const uint8_t* const* q, int64_t K, const float* lut,
                float (*out)[kTileRows]) {
    __m256 acc[R][kTileRows];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j) acc[r][j] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv[R];
        for (int r = 0; r < R; ++r) xv[r] = _mm256_loadu_ps(x[r] + k);
        for (int j = 0; j < kTileRows; ++j) {
            const __m256 wv = kE4m3 ? decode8_e4m3(q[j] + k) : decode8_i8(q[j] + k);
            for (int r = 0; r < R; ++r) acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j)
            out[r][j] = hsum256(acc[r][j]) + tail(x[r], q[j], k, K, lut);
}
// int4 (core/quant.h): per block of 32 codes, byte b holds code b (low nibble) and b + 16 (high),
// as nibble = code + 8. A code widens to n - 8 in float and its weight is fma(n, s, -8·s), which
// is s · (n - 8) rounded once: the dequantized weight bit for bit (s · (n - 8) is exact before
// rounding, and so is -8·s while |w| < 2.9e38). Each weight is then FMA-ed against x.
// out[r][j] = Σ_k x[r][k] · w[j][k] for R rows of x and kTileRows rows of codes; s[j] points at
// row j's group scales. K is a multiple of 32.
inline __m256 i4_weights8(__m256i nibbles, __m256 s, __m256 neg8s) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(nibbles), s, neg8s);
}

template <int R>
void block_i4_avx2(const float* const* x, const uint8_t* const* q, const float* const* s, int64_t K,
                   float (*out)[kTileRows]) {
    __m256 acc[R][kTileRows];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j) acc[r][j] = _mm256_setzero_ps();
    const __m256i lo4 = _mm256_set1_epi32(0xf);
    for (int64_t k = 0; k < K; k += 32) {
        // The tile kI4PrefetchTiles ahead, 64 bytes a step (as block_i4_bf16).
        _mm_prefetch(reinterpret_cast<const char*>(q[0]) + kI4PrefetchTiles * 2 * K + k * 2,
                     _MM_HINT_T0);
        for (int half = 0; half < 2; ++half) {  // codes k+8h .. +8 (low), k+16+8h .. +8 (high)
            const int64_t kl = k + 8 * half, kh = kl + 16;
            __m256 xl[R], xh[R];
            for (int r = 0; r < R; ++r) {
                xl[r] = _mm256_loadu_ps(x[r] + kl);
                xh[r] = _mm256_loadu_ps(x[r] + kh);
            }
            for (int j = 0; j < kTileRows; ++j) {
                const __m256i b = _mm256_cvtepu8_epi32(
                    _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q[j] + k / 2 + 8 * half)));
                const __m256 sv = _mm256_set1_ps(s[j][k / kI4Group]);
                const __m256 n8 = _mm256_mul_ps(sv, _mm256_set1_ps(-8.0f));
                const __m256 wl = i4_weights8(_mm256_and_si256(b, lo4), sv, n8);
                const __m256 wh = i4_weights8(_mm256_srli_epi32(b, 4), sv, n8);
                for (int r = 0; r < R; ++r) {
                    acc[r][j] = _mm256_fmadd_ps(xl[r], wl, acc[r][j]);
                    acc[r][j] = _mm256_fmadd_ps(xh[r], wh, acc[r][j]);
                }
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j) out[r][j] = hsum256(acc[r][j]);
}
#endif  // AVX2 && FMA

#if defined(VOXRT_QUANT_X86)
#define VOXRT_AVX512 __attribute__((target("avx512f")))
// GCC 12 reports its own AVX-512 intrinsics' _mm512_undefined_* placeholders as uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

VOXRT_AVX512 inline __m512 decode16_i8(const uint8_t* p) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
}

VOXRT_AVX512 inline __m512 decode16_e4m3(const uint8_t* p) {  // as decode8_e4m3
    const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i mag = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x7f)), 20);
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(mag, sign)), _mm512_set1_ps(0x1p120f));
}

template <bool kE4m3, int R>
VOXRT_AVX512 void block_avx512(const float* const* x, const uint8_t* const* q, int64_t K,
                               const float* lut, float (*out)[kTileRows]) {
    __m512 acc[R][kTileRows];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j) acc[r][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        // The tile kPrefetchTiles ahead (rows are contiguous: kTileRows × K codes per tile),
        // walked in step with this one: 64 bytes per 16 codes. Past the matrix's end the address
        // is only a hint.
        _mm_prefetch(
            reinterpret_cast<const char*>(q[0]) + kPrefetchTiles * kTileRows * K + k * kTileRows,
            _MM_HINT_T0);
        __m512 xv[R];
        for (int r = 0; r < R; ++r) xv[r] = _mm512_loadu_ps(x[r] + k);
        for (int j = 0; j < kTileRows; ++j) {
            const __m512 wv = kE4m3 ? decode16_e4m3(q[j] + k) : decode16_i8(q[j] + k);
            for (int r = 0; r < R; ++r) acc[r][j] = _mm512_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j)
            out[r][j] = hsum512(acc[r][j]) + tail(x[r], q[j], k, K, lut);
}
// As block_i4_avx2 with 16 lanes: one 16-byte load widens to codes k .. k+16 (low nibbles) and
// k+16 .. k+32 (high nibbles).
template <int R>
VOXRT_AVX512 void block_i4_avx512(const float* const* x, const uint8_t* const* q,
                                  const float* const* s, int64_t K, float (*out)[kTileRows]) {
    __m512 acc[R][kTileRows];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j) acc[r][j] = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi32(0xf);
    for (int64_t k = 0; k < K; k += 32) {
        __m512 xl[R], xh[R];
        for (int r = 0; r < R; ++r) {
            xl[r] = _mm512_loadu_ps(x[r] + k);
            xh[r] = _mm512_loadu_ps(x[r] + k + 16);
        }
        if (k % 64 == 0)  // as block_i4_bf16: the tile kI4PrefetchTiles ahead, 128 bytes a step
            for (int l = 0; l < 2; ++l)
                _mm_prefetch(
                    reinterpret_cast<const char*>(q[0]) + kI4PrefetchTiles * 2 * K + k * 2 + 64 * l,
                    _MM_HINT_T0);
        for (int j = 0; j < kTileRows; ++j) {
            const __m512i b = _mm512_cvtepu8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(q[j] + k / 2)));
            const __m512 sv = _mm512_set1_ps(s[j][k / kI4Group]);
            const __m512 n8 = _mm512_mul_ps(sv, _mm512_set1_ps(-8.0f));
            const __m512 wl = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(b, lo4)), sv, n8);
            const __m512 wh = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4)), sv, n8);
            for (int r = 0; r < R; ++r) {
                acc[r][j] = _mm512_fmadd_ps(xl[r], wl, acc[r][j]);
                acc[r][j] = _mm512_fmadd_ps(xh[r], wh, acc[r][j]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j) out[r][j] = hsum512(acc[r][j]);
}
// int4 against bf16 activations with the AVX-512 bf16 dot product (vdpbf16ps): x is packed once
// per call as bf16 pairs, and per chunk of 64 codes a 32-byte load widens to 32 words whose low
// and high nibbles become the bf16 values of codes - 8 through one vpermw each (a 32-entry table
// indexed by the word's low 5 bits, entry i = bf16((i & 15) - 8); the codes are small integers, so
// exact). Two dot products give per-lane sums over the chunk (lanes 0–7: its first 32 codes,
// 8–15: the next 32), which are scaled by their group's scale and added to the row's
// accumulator. Products are exact, so the result differs from the fp32 kernels by the sum order
// only. Packed x order per chunk c: lo = x[64c .. +16), x[64c+32 .. +16); hi = x[64c+16 .. +16),
// x[64c+48 .. +16) (the order of the codes' low and high nibbles). K is a multiple of 64.
#define VOXRT_I4_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

template <int R>
VOXRT_I4_BF16 void block_i4_bf16(const uint16_t* const* xp, const uint8_t* const* q,
                                 const float* const* s, int64_t K, float (*out)[kTileRows]) {
    alignas(64) static const uint16_t kTable[32] = {
        0xc100, 0xc0e0, 0xc0c0, 0xc0a0, 0xc080, 0xc040, 0xc000, 0xbf80,  // -8 .. -1
        0x0000, 0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0, 0x40e0,  // 0 .. 7
        0xc100, 0xc0e0, 0xc0c0, 0xc0a0, 0xc080, 0xc040, 0xc000, 0xbf80,
        0x0000, 0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0, 0x40e0};
    const __m512i table = _mm512_load_si512(kTable);
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 acc[R][kTileRows];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j) acc[r][j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < K / 64; ++c) {
        __m512bh xl[R], xh[R];
        for (int r = 0; r < R; ++r) {
            xl[r] = (__m512bh)_mm512_loadu_si512(xp[r] + c * 64);
            xh[r] = (__m512bh)_mm512_loadu_si512(xp[r] + c * 64 + 32);
        }
        // The tile kI4PrefetchTiles ahead (rows are contiguous: 4 rows × K / 2 bytes per tile),
        // walked in step with this one: 128 bytes per chunk.
        const char* pf = reinterpret_cast<const char*>(q[0]) + kI4PrefetchTiles * 2 * K + c * 128;
        _mm_prefetch(pf, _MM_HINT_T0);
        _mm_prefetch(pf + 64, _MM_HINT_T0);
        for (int j = 0; j < kTileRows; ++j) {
            const __m512i wd = _mm512_cvtepu8_epi16(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q[j] + c * 32)));
            const __m512bh wl = (__m512bh)_mm512_permutexvar_epi16(wd, table);
            const __m512bh wh = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(wd, 4), table);
            const float* sg = s[j] + (c * 64) / kI4Group;
            const __m512 sv = kI4Group >= 64
                                  ? _mm512_set1_ps(sg[0])
                                  : _mm512_permutexvar_ps(
                                        halves, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd(
                                                    reinterpret_cast<const double*>(sg)))));
            for (int r = 0; r < R; ++r) {
                __m512 d = _mm512_dpbf16_ps(_mm512_setzero_ps(), xl[r], wl);
                d = _mm512_dpbf16_ps(d, xh[r], wh);
                acc[r][j] = _mm512_fmadd_ps(d, sv, acc[r][j]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kTileRows; ++j) out[r][j] = hsum512(acc[r][j]);
}
#endif  // x86

using I4Bf16BlockFn = void (*)(const uint16_t* const*, const uint8_t* const*, const float* const*,
                               int64_t, float (*)[kTileRows]);

using I4BlockFn = void (*)(const float* const*, const uint8_t* const*, const float* const*, int64_t,
                           float (*)[kTileRows]);

// The int4 block kernels of one ISA, indexed by rows of x - 1.
bool i4_block_kernels(QuantIsa isa, I4BlockFn (&fns)[kXRows]) {
    switch (isa) {
#if defined(__AVX2__) && defined(__FMA__)
        case QuantIsa::kAvx2:
            fns[0] = block_i4_avx2<1>, fns[1] = block_i4_avx2<2>, fns[2] = block_i4_avx2<3>;
            return true;
#endif
#if defined(VOXRT_QUANT_X86)
        case QuantIsa::kAvx512:
            fns[0] = block_i4_avx512<1>, fns[1] = block_i4_avx512<2>, fns[2] = block_i4_avx512<3>;
            return true;
#endif
        default:
            return false;
    }
}

using BlockFn = void (*)(const float* const*, const uint8_t* const*, int64_t, const float*,
                         float (*)[kTileRows]);

// The block kernels of one ISA and code type, indexed by rows of x - 1.
bool block_kernels(QuantIsa isa, bool e4m3, BlockFn (&fns)[kXRows]) {
    switch (isa) {
#if defined(__AVX2__) && defined(__FMA__)
        case QuantIsa::kAvx2:
            if (e4m3) {
                fns[0] = block_avx2<true, 1>, fns[1] = block_avx2<true, 2>;
                fns[2] = block_avx2<true, 3>;
            } else {
                fns[0] = block_avx2<false, 1>, fns[1] = block_avx2<false, 2>;
                fns[2] = block_avx2<false, 3>;
            }
            return true;
#endif
#if defined(VOXRT_QUANT_X86)
        case QuantIsa::kAvx512:
            if (e4m3) {
                fns[0] = block_avx512<true, 1>, fns[1] = block_avx512<true, 2>;
                fns[2] = block_avx512<true, 3>;
            } else {
                fns[0] = block_avx512<false, 1>, fns[1] = block_avx512<false, 2>;
                fns[2] = block_avx512<false, 3>;
            }
            return true;
#endif
        default:
            return false;
    }
}

#if defined(VOXRT_QUANT_X86)
#pragma GCC diagnostic pop
#endif

}  // namespace

QuantIsa best_quant_isa() {
#if defined(VOXRT_QUANT_X86)
    static const QuantIsa isa = [] {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) return QuantIsa::kAvx512;
#if defined(__AVX2__) && defined(__FMA__)
        return QuantIsa::kAvx2;
#else
        return QuantIsa::kScalar;
#endif
    }();
    return isa;
#else
    return QuantIsa::kScalar;
#endif
}

const char* quant_isa_name(QuantIsa isa) {
    switch (isa) {
        case QuantIsa::kAvx512:
            return "avx512";
        case QuantIsa::kAvx2:
            return "avx2";
        default:
            return "scalar";
    }
}

void dequantize_row(const Tensor& w, int64_t row, float* dst) {
    const int64_t K = w.shape[w.ndim - 1];
    if (w.dtype == DType::kI4) {
        quant::dequantize_rows_i4(static_cast<const uint8_t*>(w.data) + row * (K / 2),
                                  w.scale + row * (K / kI4Group), 1, K, kI4Group, dst);
        return;
    }
    const uint8_t* q = static_cast<const uint8_t*>(w.data) + row * K;
    const float s = w.scale[row];
    const float* lut = decode_table(w.dtype);
    for (int64_t k = 0; k < K; ++k) dst[k] = s * lut[q[k]];
}

namespace {

bool i4_bf16_supported() {
#if defined(VOXRT_QUANT_X86)
    static const bool ok = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512bf16");
    }();
    return ok;
#else
    return false;
#endif
}

// linear_quantized_gemv for kI4: as the 8-bit GEMV, with each tile's group scales beside its codes.
void gemv_i4(const ops::Context& ctx, QuantIsa isa, bool bf16_dot, const Tensor& x, const Tensor& w,
             const Tensor* bias, Tensor& y) {
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    VOXRT_ASSERT(K % kI4Group == 0, "linear: int4 weights %s: K not a multiple of %lld",
                 w.describe().c_str(), static_cast<long long>(kI4Group));
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    const uint8_t* codes = static_cast<const uint8_t*>(w.data);
    const int64_t row_bytes = K / 2, row_scales = K / kI4Group;
    I4BlockFn fns[kXRows] = {};
    const bool simd = i4_block_kernels(isa, fns);
    const int64_t tiles = (N + kTileRows - 1) / kTileRows;
#if defined(VOXRT_QUANT_X86)
    // bf16 activations on a host with the bf16 dot product: x packed once, then block_i4_bf16.
    if (bf16_dot && isa == QuantIsa::kAvx512 && K % 64 == 0 && i4_bf16_supported()) {
        thread_local std::vector<uint16_t> t_xpk;
        if (t_xpk.size() < static_cast<size_t>(M * K)) t_xpk.resize(static_cast<size_t>(M * K));
        uint16_t* xpk = t_xpk.data();
        bool exact = true;
        for (int64_t m = 0; m < M && exact; ++m)
            for (int64_t c = 0; c < K / 64 && exact; ++c)
                for (int i = 0; i < 64; ++i) {
                    // lo: codes 0–15 and 32–47 of the chunk; hi: 16–31 and 48–63
                    const int src = (i < 32 ? 0 : 16) + (i % 32 < 16 ? i % 16 : 32 + i % 16);
                    const uint32_t b = std::bit_cast<uint32_t>(xp[m * K + c * 64 + src]);
                    exact = exact && (b & 0xffffu) == 0;
                    xpk[m * K + c * 64 + i] = static_cast<uint16_t>(b >> 16);
                }
        if (exact) {
            I4Bf16BlockFn bfns[kXRows] = {block_i4_bf16<1>, block_i4_bf16<2>, block_i4_bf16<3>};
            parallel(ctx, tiles, 4, [&](int64_t t0, int64_t t1) {
                for (int64_t t = t0; t < t1; ++t) {
                    const int64_t n0 = t * kTileRows;
                    const int n = static_cast<int>(std::min<int64_t>(kTileRows, N - n0));
                    const uint8_t* q[kTileRows];
                    const float* s[kTileRows];
                    for (int j = 0; j < kTileRows; ++j) {
                        const int64_t row = n0 + std::min(j, n - 1);
                        q[j] = codes + row * row_bytes;
                        s[j] = w.scale + row * row_scales;
                    }
                    float out[kXRows][kTileRows];
                    for (int64_t m = 0; m < M; m += kXRows) {
                        const int rows = static_cast<int>(std::min<int64_t>(kXRows, M - m));
                        const uint16_t* xr[kXRows];
                        for (int r = 0; r < rows; ++r) xr[r] = xpk + (m + r) * K;
                        bfns[rows - 1](xr, q, s, K, out);
                        for (int r = 0; r < rows; ++r)
                            for (int j = 0; j < n; ++j) {
                                const float b = bias ? load(*bias, n0 + j) : 0.0f;
                                yp[(m + r) * N + n0 + j] = rnd(out[r][j] + b);
                            }
                    }
                }
            });
            return;
        }
    }
#endif
    parallel(ctx, tiles, 4, [&](int64_t t0, int64_t t1) {
        float* wbuf = simd ? nullptr : thread_scratch(0, static_cast<size_t>(kTileRows * K));
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t n0 = t * kTileRows;
            const int n = static_cast<int>(std::min<int64_t>(kTileRows, N - n0));
            float b[kTileRows] = {};
            for (int j = 0; j < n; ++j) b[j] = bias ? load(*bias, n0 + j) : 0.0f;
            if (!simd) {
                for (int j = 0; j < n; ++j) dequantize_row(w, n0 + j, wbuf + j * K);
                for (int64_t m = 0; m < M; ++m)
                    for (int j = 0; j < n; ++j)
                        yp[m * N + n0 + j] = rnd(dot(xp + m * K, wbuf + j * K, K) + b[j]);
                continue;
            }
            // A short last tile repeats its last row; those outputs are dropped.
            const uint8_t* q[kTileRows];
            const float* s[kTileRows];
            for (int j = 0; j < kTileRows; ++j) {
                const int64_t row = n0 + std::min(j, n - 1);
                q[j] = codes + row * row_bytes;
                s[j] = w.scale + row * row_scales;
            }
            float out[kXRows][kTileRows];
            for (int64_t m = 0; m < M; m += kXRows) {
                const int rows = static_cast<int>(std::min<int64_t>(kXRows, M - m));
                const float* xr[kXRows];
                for (int r = 0; r < rows; ++r) xr[r] = xp + (m + r) * K;
                fns[rows - 1](xr, q, s, K, out);
                for (int r = 0; r < rows; ++r)
                    for (int j = 0; j < n; ++j) yp[(m + r) * N + n0 + j] = rnd(out[r][j] + b[j]);
            }
        }
    });
}

}  // namespace

bool int4_bf16_dot_supported() {
    return i4_bf16_supported();
}

void linear_int4_gemv(const ops::Context& ctx, QuantIsa isa, bool bf16_dot, const Tensor& x,
                      const Tensor& w, const Tensor* bias, Tensor& y) {
    VOXRT_ASSERT(w.quantized() && w.dtype == DType::kI4 && w.ndim == 2,
                 "linear: int4 weights expected, got %s", w.describe().c_str());
    gemv_i4(ctx, isa, bf16_dot, x, w, bias, y);
}

void linear_quantized_gemv(const ops::Context& ctx, QuantIsa isa, const Tensor& x, const Tensor& w,
                           const Tensor* bias, Tensor& y) {
    VOXRT_ASSERT(w.quantized() && quant::is_quantized_dtype(w.dtype) && w.ndim == 2,
                 "linear: quantized weights expected, got %s", w.describe().c_str());
    if (w.dtype == DType::kI4) {
        gemv_i4(ctx, isa, ctx.round_bf16(), x, w, bias, y);
        return;
    }
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    const float* xp = act(x);
    float* yp = act(y);
    const Rounder rnd = rounder(ctx);
    const float* lut = decode_table(w.dtype);
    const uint8_t* codes = static_cast<const uint8_t*>(w.data);
    const float* scale = w.scale;
    BlockFn fns[kXRows] = {};
    const bool simd = block_kernels(isa, w.dtype == DType::kF8E4M3, fns);
    const int64_t tiles = (N + kTileRows - 1) / kTileRows;
    // Parallel over tiles of weight rows; each tile's codes (4 · K bytes) stay in L1/L2 while every
    // row of x passes over them.
    parallel(ctx, tiles, 4, [&](int64_t t0, int64_t t1) {
        float* wbuf = simd ? nullptr : thread_scratch(0, static_cast<size_t>(kTileRows * K));
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t n0 = t * kTileRows;
            const int n = static_cast<int>(std::min<int64_t>(kTileRows, N - n0));
            float b[kTileRows] = {};
            for (int j = 0; j < n; ++j) b[j] = bias ? load(*bias, n0 + j) : 0.0f;
            if (!simd) {
                for (int j = 0; j < n; ++j) dequantize_row(w, n0 + j, wbuf + j * K);
                for (int64_t m = 0; m < M; ++m)
                    for (int j = 0; j < n; ++j)
                        yp[m * N + n0 + j] = rnd(dot(xp + m * K, wbuf + j * K, K) + b[j]);
                continue;
            }
            // A short last tile repeats its last row; those outputs are dropped.
            const uint8_t* q[kTileRows];
            for (int j = 0; j < kTileRows; ++j) q[j] = codes + (n0 + std::min(j, n - 1)) * K;
            float out[kXRows][kTileRows];
            for (int64_t m = 0; m < M; m += kXRows) {
                const int rows = static_cast<int>(std::min<int64_t>(kXRows, M - m));
                const float* xr[kXRows];
                for (int r = 0; r < rows; ++r) xr[r] = xp + (m + r) * K;
                fns[rows - 1](xr, q, K, lut, out);
                for (int r = 0; r < rows; ++r)
                    for (int j = 0; j < n; ++j)
                        yp[(m + r) * N + n0 + j] = rnd(scale[n0 + j] * out[r][j] + b[j]);
            }
        }
    });
}

}  // namespace voxrt::cpu
