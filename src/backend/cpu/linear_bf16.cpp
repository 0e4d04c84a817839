// The bf16 dot-product GEMM of backend/cpu/linear_bf16.h (numerics argued there).
//
// Layout. The product is computed transposed: weight rows are read in place ([N, K] bf16, two
// adjacent k values = one 32-bit word, broadcast to all lanes), and x is packed into blocks of
// 16 rows, [block][k-pair][16 rows] words of two bf16 (row-major pairs (k, k+1), the low half k),
// so one 64-byte load holds a k-pair of 16 rows. A register tile is NW weight rows × V blocks
// (NW·V ≤ 24 accumulators of 16 fp32 lanes, lane = row of x). BF16 weights need no packing per
// call (the fp32 GEMM repacks every matrix it multiplies); quantized ones are widened to bf16 a
// block of rows at a time.
// Blocking: weight rows in blocks of kRowBlock (one task of the thread pool), k-pairs in blocks of
// kPairBlock, so that the block's weight slice, x slice and partial sums stay in L2. Partial sums
// are kept in fp32 between k blocks, which leaves each output's chain of additions unchanged.
#include "backend/cpu/linear_bf16.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_common.h"
#include "backend/cpu/simd_x86.h"
#include "core/quant.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define VOXRT_BF16_X86 1
#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define VOXRT_AMX 1
#endif
#endif

namespace voxrt::cpu {

namespace {

std::atomic<bool> g_enabled{true};
std::atomic<bool> g_amx_enabled{true};

#if defined(VOXRT_BF16_X86)

constexpr int64_t kRowBlock = 48;    // weight rows per task (a multiple of every NW below)
constexpr int64_t kPairBlock = 256;  // k-pairs per k block (512 values of k)
static_assert(kPairBlock % (kI4Group / 2) == 0, "a k block holds whole int4 groups");
constexpr int kMaxV = 4;  // 16-row blocks of x per register tile

#define VOXRT_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
// GCC 12 reports its own AVX-512 intrinsics' _mm512_undefined_* placeholders as uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// Weight rows per register tile for V blocks of x: NW·V accumulators + V x vectors + one
// broadcast within the 32 vector registers.
constexpr int tile_rows(int v) {
    return v == 1 ? 12 : v == 2 ? 12 : v == 3 ? 8 : 6;
}

// a[j][v] += Σ_{p in [pb, pe)} w[j][2p, 2p+1] · x[v][p]: the register tile's chain of vdpbf16ps
// over whole k-pairs, shared by tile() and tile_grouped().
template <int V, int NW>
__attribute__((always_inline, target("avx512f,avx512bw,avx512bf16"))) inline void dot_pairs(
    __m512 (&a)[NW][V], const uint16_t* w, int64_t K, const uint32_t* x, int64_t xs, int64_t pb,
    int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) {
        __m512i xv[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) xv[v] = _mm512_loadu_si512(x + v * xs + p * 16);
#pragma GCC unroll 16
        for (int j = 0; j < NW; ++j) {
            uint32_t pair;
            std::memcpy(&pair, w + j * K + 2 * p, 4);
            const __m512i b = _mm512_set1_epi32(static_cast<int>(pair));
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v)
                a[j][v] = _mm512_dpbf16_ps(a[j][v], (__m512bh)xv[v], (__m512bh)b);
        }
    }
}

// acc[j][v] (16 lanes = 16 rows of x) += Σ_{p in [p0, p1)} w[j][2p, 2p+1] · x[v][p] for NW weight
// rows w (row stride K) and V blocks of packed x (stride xs words). Pair P (present when p1 > P)
// is the last k of an odd K, paired with the zero that the packing put into x; the weight's half
// of it is zero-extended (the next row's first element is not read).
template <int V, int NW>
VOXRT_BF16_TARGET void tile(const uint16_t* w, int64_t K, const uint32_t* x, int64_t xs, int64_t p0,
                            int64_t p1, int64_t P, float* acc, int64_t ld, bool first) {
    __m512 a[NW][V];
#pragma GCC unroll 16
    for (int j = 0; j < NW; ++j)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v)
            a[j][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + j * ld + v * 16);
    dot_pairs<V, NW>(a, w, K, x, xs, p0, std::min(p1, P));
    if (p1 > P) {
        __m512i xv[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) xv[v] = _mm512_loadu_si512(x + v * xs + P * 16);
#pragma GCC unroll 16
        for (int j = 0; j < NW; ++j) {
            const __m512i b = _mm512_set1_epi32(static_cast<int>(w[j * K + 2 * P]));
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v)
                a[j][v] = _mm512_dpbf16_ps(a[j][v], (__m512bh)xv[v], (__m512bh)b);
        }
    }
#pragma GCC unroll 16
    for (int j = 0; j < NW; ++j)
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) _mm512_storeu_ps(acc + j * ld + v * 16, a[j][v]);
}

// int4 weights (groups of kI4Group along k, one fp32 scale each): per group, the NW × V dot
// products of its 16 k-pairs are summed from zero in registers, then multiplied by the group's
// scale and added to the partial sums in acc (acc = partial · s for the first group of the
// product):
//   acc[j][m] = Σ_g s[j][g] · Σ_{k in g} x[m][k] · q[j][k]
// The codes are exact bf16 values and x is bf16, so every product is exact. [p0, p1) is a whole
// number of groups; s points at row j0's scales, ss scales per row.
template <int V, int NW>
VOXRT_BF16_TARGET void tile_grouped(const uint16_t* w, int64_t K, const uint32_t* x, int64_t xs,
                                    int64_t p0, int64_t p1, const float* s, int64_t ss, float* acc,
                                    int64_t ld, bool first) {
    constexpr int64_t kGroupPairs = kI4Group / 2;
    for (int64_t g0 = p0; g0 < p1; g0 += kGroupPairs) {
        __m512 a[NW][V];
#pragma GCC unroll 16
        for (int j = 0; j < NW; ++j)
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) a[j][v] = _mm512_setzero_ps();
        dot_pairs<V, NW>(a, w, K, x, xs, g0, g0 + kGroupPairs);
        const int64_t g = g0 / kGroupPairs;
        const bool init = first && g0 == p0;
#pragma GCC unroll 16
        for (int j = 0; j < NW; ++j) {
            const __m512 sv = _mm512_set1_ps(s[j * ss + g]);
#pragma GCC unroll 4
            for (int v = 0; v < V; ++v) {
                float* o = acc + j * ld + v * 16;
                _mm512_storeu_ps(o, init ? _mm512_mul_ps(a[j][v], sv)
                                         : _mm512_fmadd_ps(a[j][v], sv, _mm512_loadu_ps(o)));
            }
        }
    }
}

struct TileArgs {
    const uint16_t* w;
    int64_t K;
    const uint32_t* x;
    int64_t xs, p0, p1, P;
    float* acc;
    int64_t ld;
    bool first;
    const float* s = nullptr;  // int4: row j0's group scales (tile_grouped), ss per row
    int64_t ss = 0;
};

// tile<V, nw> for nw <= NW (the last rows of the matrix).
template <int V, int NW>
VOXRT_BF16_TARGET void tile_n(int nw, const TileArgs& t) {
    if constexpr (NW > 1) {
        if (nw < NW) return tile_n<V, NW - 1>(nw, t);
    }
    if (t.s)
        tile_grouped<V, NW>(t.w, t.K, t.x, t.xs, t.p0, t.p1, t.s, t.ss, t.acc, t.ld, t.first);
    else
        tile<V, NW>(t.w, t.K, t.x, t.xs, t.p0, t.p1, t.P, t.acc, t.ld, t.first);
}

VOXRT_BF16_TARGET void tile_vn(int v, int nw, const TileArgs& t) {
    switch (v) {
        case 4:
            return tile_n<4, tile_rows(4)>(nw, t);
        case 3:
            return tile_n<3, tile_rows(3)>(nw, t);
        case 2:
            return tile_n<2, tile_rows(2)>(nw, t);
        default:
            return tile_n<1, tile_rows(1)>(nw, t);
    }
}
// dst[i] = the bf16 value of code q[i] (int8 or e4m3), exactly: an int8 code has at most 8
// significant bits and an e4m3 value 4, within bf16's 8 and its exponent range. Decoded to fp32 as
// the quantized GEMV does (backend/cpu/linear_quant.h) and narrowed, which is exact.
VOXRT_BF16_TARGET void codes_to_bf16(DType dt, const uint8_t* q, int64_t n, uint16_t* dst) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i c =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
        __m512 f;
        if (dt == DType::kI8) {
            f = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(c, 24), 24));
        } else {  // e4m3: exponent and mantissa moved into a float's, rescaled by 2^120
            const __m512i mag = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x7f)), 20);
            const __m512i sign =
                _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
            f = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(mag, sign)),
                              _mm512_set1_ps(0x1p120f));
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)_mm512_cvtneps_pbh(f));
    }
    for (; i < n; ++i) dst[i] = f32_to_bf16(quant::decode(dt, q[i]));
}

// dst[k] = the bf16 value of int4 code k of n (a multiple of kI4Group): per block of 32 codes,
// byte b holds code b in its low nibble and code b + 16 in its high one, stored as q + 8
// (core/quant.h). A 16-byte load widens to 16 words; the low and the high nibbles side by side
// index a table of bf16(i - 8) (vpermw), which gives the 32 values in order, exactly.
VOXRT_BF16_TARGET void i4_codes_to_bf16(const uint8_t* q, int64_t n, uint16_t* dst) {
    static const std::array<uint16_t, 32> kTable = [] {
        std::array<uint16_t, 32> t{};
        for (int i = 0; i < 16; ++i)
            t[static_cast<size_t>(i)] = f32_to_bf16(static_cast<float>(i - 8));
        return t;
    }();
    const __m512i table = _mm512_loadu_si512(kTable.data());
    const __m256i nib = _mm256_set1_epi16(0x0f);
    for (int64_t i = 0; i < n; i += kI4Group) {
        const __m256i c =
            _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i / 2)));
        const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(c, nib)),
                                               _mm256_srli_epi16(c, 4), 1);
        _mm512_storeu_si512(dst + i, _mm512_permutexvar_epi16(idx, table));
    }
}

// ---- GEMV (fewer than kBf16GemmMinRows rows of x), BF16 weights ----------------------------
// Tiles of kGemvRows weight rows (contiguous in the matrix); each row of x packed once as bf16 in
// k order, so a 64-byte load of a weight row and of x hold the same 16 k-pairs. Per 32 values of
// k: one load per weight row and one vdpbf16ps per (row of x, weight row). Lane l of an
// accumulator sums pairs l, l + 16, l + 32, ... of its row in that order, then the 16 lanes are
// summed as hsum512 does: one fixed chain per output, whatever M is.
constexpr int kGemvRows = 4;
constexpr int kGemvX = 4;                  // rows of x per call of gemv_tile
constexpr int64_t kGemvPrefetchTiles = 2;  // tiles ahead (a thread's tiles are consecutive)

// out[r][j] = Σ_k x[r][k] · w[j][k] for R rows of packed x and the kGemvRows rows of w starting at
// w (row stride K; the tile's rows past the matrix are given as repeats of its last row).
template <int R>
VOXRT_BF16_TARGET void gemv_tile(const uint16_t* const* x, const uint16_t* const* w, int64_t K,
                                 const char* prefetch, float (*out)[kGemvRows]) {
    __m512 acc[R][kGemvRows];
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kGemvRows; ++j) acc[r][j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        // The tile kGemvPrefetchTiles ahead, walked in step with this one (4 lines a chunk).
        for (int l = 0; l < kGemvRows; ++l)
            _mm_prefetch(prefetch + k * 2 * kGemvRows + 64 * l, _MM_HINT_T0);
        __m512bh xv[R];
        for (int r = 0; r < R; ++r) xv[r] = (__m512bh)_mm512_loadu_si512(x[r] + k);
        for (int j = 0; j < kGemvRows; ++j) {
            const __m512bh wv = (__m512bh)_mm512_loadu_si512(w[j] + k);
            for (int r = 0; r < R; ++r) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], xv[r], wv);
        }
    }
    if (k < K) {  // the last K % 32 values, zero past K (a zero pair adds +0)
        const __mmask32 m = static_cast<__mmask32>((1ull << (K - k)) - 1);
        __m512bh xv[R];
        for (int r = 0; r < R; ++r) xv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, x[r] + k);
        for (int j = 0; j < kGemvRows; ++j) {
            const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w[j] + k);
            for (int r = 0; r < R; ++r) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], xv[r], wv);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int j = 0; j < kGemvRows; ++j) out[r][j] = hsum512(acc[r][j]);
}
using GemvTileFn = void (*)(const uint16_t* const*, const uint16_t* const*, int64_t, const char*,
                            float (*)[kGemvRows]);

#if defined(VOXRT_AMX)
// AMX (tdpbf16ps on 16 × 16 fp32 tiles). The product is computed as in tile(): C[j][m] = weight
// row j · x row m, with A = 16 weight rows × 32 k (the rows as they lie, stride K) and B = 16
// k-pairs × 16 rows of x, which is one block of the packed x (stride 64 bytes). Tiles 0-3 are C
// (weight rows j0 / j0 + 16 × x blocks 0 / 1), 4-5 A, 6-7 B. Every tile is 16 rows of 64 bytes,
// configured once per thread.
#define VOXRT_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16")))

struct alignas(64) AmxTileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

// Configures the tiles of the calling thread; amx_release_thread() hands them back at the end of
// each product, so that threads between products (decode, other work) carry no tile state: with
// the tiles back in their initial state, a context switch saves and restores none of their 8 KB
// (XSAVE's init optimization). Measured at full size: prefill and decode unchanged within noise.
VOXRT_AMX_TARGET void amx_configure_thread() {
    AmxTileConfig c;
    for (int t = 0; t < 8; ++t) {
        c.colsb[t] = 64;
        c.rows[t] = 16;
    }
    // Not _tile_loadconfig: GCC 12's macro hands the asm an 8-byte operand, so the compiler
    // drops the stores to the rest of the 64-byte configuration as dead (measured: the tiles were
    // left unconfigured and the first tile instruction raised SIGILL).
    asm volatile("ldtilecfg %0" : : "m"(c));
}

VOXRT_AMX_TARGET void amx_release_thread() {
    _tile_release();
}

// acc rows j0 .. j0 + 32 (stride ld floats) × x blocks 0 .. V (16 floats each) += the product over
// pairs [p0, p1) (a multiple of 16). w: 32 weight rows as a panel (amx_panel: per 32 k, rows 0-15
// then 16-31, 64 bytes a row, so a tile loads 1 KB in one piece), x: V packed blocks (stride xs).
// Without group scales (bf16 / int8 codes) the sums run on in the C tiles (loaded from acc unless
// first). With int4 group scales s (row j's at s + j·ss), each group's tiles start from zero and
// are stored to tmp (4 KB), then scaled and added to acc with AVX-512, as tile_grouped does (rows
// of acc past `rows`, the panel's zero padding, are left as they are).
template <int V>
VOXRT_AMX_TARGET void amx_tile(const uint16_t* w, int64_t K, const uint32_t* x, int64_t xs,
                               int64_t p0, int64_t p1, float* acc, int64_t ld, bool first,
                               const float* s, int64_t ss, int rows, float* tmp) {
    const int64_t cst = ld * 4;
    if (!s) {
        if (first) {
            _tile_zero(0);
            _tile_zero(2);
            if constexpr (V == 2) {
                _tile_zero(1);
                _tile_zero(3);
            }
        } else {
            _tile_loadd(0, acc, cst);
            _tile_loadd(2, acc + 16 * ld, cst);
            if constexpr (V == 2) {
                _tile_loadd(1, acc + 16, cst);
                _tile_loadd(3, acc + 16 * ld + 16, cst);
            }
        }
        for (int64_t p = p0; p < p1; p += 16) {
            _tile_loadd(4, w + p * 64, 64);
            _tile_loadd(5, w + p * 64 + 512, 64);
            _tile_loadd(6, x + p * 16, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(2, 5, 6);
            if constexpr (V == 2) {
                _tile_loadd(7, x + xs + p * 16, 64);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(3, 5, 7);
            }
        }
        _tile_stored(0, acc, cst);
        _tile_stored(2, acc + 16 * ld, cst);
        if constexpr (V == 2) {
            _tile_stored(1, acc + 16, cst);
            _tile_stored(3, acc + 16 * ld + 16, cst);
        }
        return;
    }
    constexpr int64_t kGroupPairs = kI4Group / 2;
    static_assert(kGroupPairs == 16, "an AMX tile's k is one int4 group");
    for (int64_t p = p0; p < p1; p += kGroupPairs) {
        _tile_zero(0);
        _tile_zero(2);
        _tile_loadd(4, w + p * 64, 64);
        _tile_loadd(5, w + p * 64 + 512, 64);
        _tile_loadd(6, x + p * 16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
        _tile_stored(0, tmp, 64);
        _tile_stored(2, tmp + 512, 64);
        if constexpr (V == 2) {
            _tile_zero(1);
            _tile_zero(3);
            _tile_loadd(7, x + xs + p * 16, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
            _tile_stored(1, tmp + 256, 64);
            _tile_stored(3, tmp + 768, 64);
        }
        const int64_t g = p / kGroupPairs;
        const bool init = first && p == p0;
        for (int half = 0; half < 2; ++half) {
            for (int r = 0; r < 16 && half * 16 + r < rows; ++r) {
                const int j = half * 16 + r;  // the panel's zero rows past `rows` have no scales
                const __m512 sv = _mm512_set1_ps(s[j * ss + g]);
                for (int v = 0; v < V; ++v) {
                    const __m512 t = _mm512_loadu_ps(tmp + half * 512 + v * 256 + r * 16);
                    float* o = acc + j * ld + v * 16;
                    _mm512_storeu_ps(o, init ? _mm512_mul_ps(t, sv)
                                             : _mm512_fmadd_ps(t, sv, _mm512_loadu_ps(o)));
                }
            }
        }
    }
}
// The 32-row panel of weight rows [n0, n0 + rows) for amx_tile: for each 32 k (kb), the 32 rows'
// 32 values (64 bytes each) one after another, so that the A tiles of one k step are 2 × 1 KB in
// one piece (read in place, the rows lie K·2 bytes apart: 16 rows, 16 pages). Rows past `rows` are
// zeros. bf16 weights are copied; int8 / e4m3 / int4 codes are widened to their bf16 values.
VOXRT_AMX_TARGET void amx_panel(const Tensor& w, int64_t n0, int64_t rows, int64_t K,
                                uint16_t* panel) {
    const int64_t kbs = K / 32;
    for (int64_t r = 0; r < 32; ++r) {
        uint16_t* dst = panel + r * 32;
        if (r >= rows) {
            for (int64_t kb = 0; kb < kbs; ++kb) std::memset(dst + kb * 1024, 0, 64);
            continue;
        }
        const int64_t n = n0 + r;
        if (w.dtype == DType::kI4) {
            const uint8_t* q = static_cast<const uint8_t*>(w.data) + n * (K / 2);
            for (int64_t kb = 0; kb < kbs; ++kb) i4_codes_to_bf16(q + kb * 16, 32, dst + kb * 1024);
        } else if (w.dtype == DType::kBF16) {
            const uint16_t* src = static_cast<const uint16_t*>(w.data) + n * K;
            for (int64_t kb = 0; kb < kbs; ++kb)
                _mm512_storeu_si512(dst + kb * 1024, _mm512_loadu_si512(src + kb * 32));
        } else {
            const uint8_t* q = static_cast<const uint8_t*>(w.data) + n * K;
            for (int64_t kb = 0; kb < kbs; ++kb)
                codes_to_bf16(w.dtype, q + kb * 32, 32, dst + kb * 1024);
        }
    }
}
#endif  // VOXRT_AMX

#pragma GCC diagnostic pop

#endif  // VOXRT_BF16_X86

}  // namespace

bool bf16_gemm_supported() {
#if defined(VOXRT_BF16_X86)
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

bool bf16_gemm_enabled() {
    return bf16_gemm_supported() && g_enabled.load(std::memory_order_relaxed);
}

void set_bf16_gemm_enabled(bool on) {
    g_enabled.store(on, std::memory_order_relaxed);
}

bool bf16_gemm_amx_supported() {
#if defined(VOXRT_AMX)
    static const bool ok = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (!bf16_gemm_supported() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
        if (!(d & (1u << 24)) || !(d & (1u << 22))) return false;  // AMX-TILE, AMX-BF16
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
        unsigned lo = 0, hi = 0;
        asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        if ((lo & (3u << 17)) != (3u << 17)) return false;  // XTILECFG, XTILEDATA enabled
        // Linux hands out the tile data state only on request (ARCH_REQ_XCOMP_PERM, feature 18)
        return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    }();
    return ok;
#else
    return false;
#endif
}

bool bf16_gemm_amx_enabled() {
    return bf16_gemm_amx_supported() && g_amx_enabled.load(std::memory_order_relaxed);
}

void set_bf16_gemm_amx_enabled(bool on) {
    g_amx_enabled.store(on, std::memory_order_relaxed);
}

bool linear_bf16_gemm(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                      Tensor& y) {
#if defined(VOXRT_BF16_X86)
    const bool i4 = w.dtype == DType::kI4;
    const bool quantized = i4 || w.dtype == DType::kI8 || w.dtype == DType::kF8E4M3;
    if (!bf16_gemm_supported() || !(w.dtype == DType::kBF16 || (quantized && w.scale)))
        return false;
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    if (M == 0 || N == 0 || K == 0 || (i4 && K % kI4Group != 0)) return false;
    const float* xp = act(x);
    const int64_t P = K / 2, Pp = (K + 1) / 2;  // full pairs; pairs with the odd K's last one
    const int64_t nv = (M + 15) / 16;           // 16-row blocks of x
    const int64_t xs = Pp * 16;                 // words per block

    // Pack x: word (k, k+1) of row m = bf16(x[m][k]) | bf16(x[m][k+1]) << 16, zero past K and M.
    // A value whose low 16 bits are not zero is not a bf16 value: the kernel declines.
    thread_local std::vector<uint32_t> t_xpk;
    const size_t xpk_words = static_cast<size_t>(nv * xs);
    if (t_xpk.size() < xpk_words) t_xpk.resize(xpk_words);
    uint32_t* const xpk = t_xpk.data();
    std::vector<uint8_t> inexact(static_cast<size_t>(nv), 0);
    parallel(ctx, nv, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t blk = b0; blk < b1; ++blk) {
            uint32_t* dst = xpk + blk * xs;
            uint32_t low = 0;
            for (int r = 0; r < 16; ++r) {
                const int64_t m = blk * 16 + r;
                if (m >= M) {
                    for (int64_t p = 0; p < Pp; ++p) dst[p * 16 + r] = 0;
                    continue;
                }
                const float* row = xp + m * K;
                for (int64_t p = 0; p < P; ++p) {
                    uint32_t lo, hi;
                    std::memcpy(&lo, row + 2 * p, 4);
                    std::memcpy(&hi, row + 2 * p + 1, 4);
                    low |= (lo | hi) & 0xffffu;
                    dst[p * 16 + r] = (hi & 0xffff0000u) | (lo >> 16);
                }
                if (Pp > P) {
                    uint32_t last;
                    std::memcpy(&last, row + K - 1, 4);
                    low |= last & 0xffffu;
                    dst[P * 16 + r] = last >> 16;
                }
            }
            inexact[static_cast<size_t>(blk)] = low != 0;
        }
    });
    for (uint8_t e : inexact)
        if (e) return false;

    std::vector<float> b(static_cast<size_t>(N), 0.0f);
    if (bias)
        for (int64_t n = 0; n < N; ++n) b[static_cast<size_t>(n)] = load(*bias, n);
    const Rounder rnd = rounder(ctx);
    float* yp = act(y);
    const int64_t ld = nv * 16;  // partial sums: [weight row of the block][row of x]
    // y from the finished partial sums of weight rows [n0, n1): the row scale (int8 / e4m3), the
    // bias and the output rounding.
    auto finish = [&](const float* acc, int64_t n0, int64_t n1) {
        for (int64_t m = 0; m < M; ++m) {
            float* yr = yp + m * N;
            if (quantized && !i4) {  // the row scale on the finished dot product, as the GEMV does
                for (int64_t n = n0; n < n1; ++n)
                    yr[n] = rnd(w.scale[n] * acc[(n - n0) * ld + m] + b[static_cast<size_t>(n)]);
            } else {
                for (int64_t n = n0; n < n1; ++n)
                    yr[n] = rnd(acc[(n - n0) * ld + m] + b[static_cast<size_t>(n)]);
            }
        }
    };

#if defined(VOXRT_AMX)
    if (K % 32 == 0 && bf16_gemm_amx_enabled()) {
        // Tasks of 32 weight rows (two A tiles), widened to bf16 (codes) or copied (the last rows
        // of a bf16 matrix) into a 32-row panel padded with zeros, so no tile reads past the
        // matrix.
        constexpr int64_t kAmxRows = 32;
        const int64_t n_tasks = (N + kAmxRows - 1) / kAmxRows;
        parallel(ctx, n_tasks, 1, [&](int64_t t0, int64_t t1) {
            amx_configure_thread();
            float* acc = thread_scratch(1, static_cast<size_t>(kAmxRows * ld + 1024));
            float* tmp = acc + kAmxRows * ld;
            thread_local std::vector<uint16_t> t_panel;
            if (t_panel.size() < static_cast<size_t>(kAmxRows * K))
                t_panel.resize(static_cast<size_t>(kAmxRows * K));
            for (int64_t task = t0; task < t1; ++task) {
                const int64_t n0 = task * kAmxRows, n1 = std::min(N, n0 + kAmxRows);
                amx_panel(w, n0, n1 - n0, K, t_panel.data());
                const uint16_t* wblk = t_panel.data();
                const float* srow = i4 ? w.scale + n0 * (K / kI4Group) : nullptr;
                for (int64_t p0 = 0; p0 < Pp; p0 += kPairBlock) {
                    const int64_t p1 = std::min(Pp, p0 + kPairBlock);
                    for (int64_t v0 = 0; v0 < nv; v0 += 2) {
                        float* a = acc + v0 * 16;
                        if (v0 + 1 < nv)
                            amx_tile<2>(wblk, K, xpk + v0 * xs, xs, p0, p1, a, ld, p0 == 0, srow,
                                        K / kI4Group, static_cast<int>(n1 - n0), tmp);
                        else
                            amx_tile<1>(wblk, K, xpk + v0 * xs, xs, p0, p1, a, ld, p0 == 0, srow,
                                        K / kI4Group, static_cast<int>(n1 - n0), tmp);
                    }
                }
                finish(acc, n0, n1);
            }
            amx_release_thread();
        });
        return true;
    }
#endif

    // Groups of at most kMaxV blocks, as even as possible (73 rows: 5 blocks → 3 + 2).
    const int64_t n_groups = (nv + kMaxV - 1) / kMaxV;
    std::vector<int64_t> g_begin(static_cast<size_t>(n_groups + 1));
    for (int64_t g = 0; g <= n_groups; ++g) g_begin[static_cast<size_t>(g)] = g * nv / n_groups;

    const uint16_t* wp = quantized ? nullptr : static_cast<const uint16_t*>(w.data);
    const int64_t n_tasks = (N + kRowBlock - 1) / kRowBlock;
    parallel(ctx, n_tasks, 1, [&](int64_t t0, int64_t t1) {
        float* acc = thread_scratch(1, static_cast<size_t>(kRowBlock * ld));
        // Quantized weights: the block's codes as bf16 values, [rows][K] as a BF16 matrix.
        thread_local std::vector<uint16_t> t_wq;
        if (quantized && t_wq.size() < static_cast<size_t>(kRowBlock * K))
            t_wq.resize(static_cast<size_t>(kRowBlock * K));
        for (int64_t task = t0; task < t1; ++task) {
            const int64_t n0 = task * kRowBlock, n1 = std::min(N, n0 + kRowBlock);
            const uint16_t* wblk = t_wq.data();
            if (i4) {
                i4_codes_to_bf16(static_cast<const uint8_t*>(w.data) + n0 * (K / 2), (n1 - n0) * K,
                                 t_wq.data());
            } else if (quantized) {
                codes_to_bf16(w.dtype, static_cast<const uint8_t*>(w.data) + n0 * K, (n1 - n0) * K,
                              t_wq.data());
            } else {
                wblk = wp + n0 * K;
            }
            for (int64_t p0 = 0; p0 < Pp; p0 += kPairBlock) {
                const int64_t p1 = std::min(Pp, p0 + kPairBlock);
                for (int64_t g = 0; g < n_groups; ++g) {
                    const int64_t v0 = g_begin[static_cast<size_t>(g)];
                    const int v = static_cast<int>(g_begin[static_cast<size_t>(g + 1)] - v0);
                    const int nw_max = tile_rows(v);
                    for (int64_t j0 = n0; j0 < n1; j0 += nw_max) {
                        const int nw = static_cast<int>(std::min<int64_t>(nw_max, n1 - j0));
                        TileArgs t{wblk + (j0 - n0) * K,           K,  xpk + v0 * xs, xs, p0, p1, P,
                                   acc + (j0 - n0) * ld + v0 * 16, ld, p0 == 0};
                        if (i4) {
                            t.ss = K / kI4Group;
                            t.s = w.scale + j0 * t.ss;
                        }
                        tile_vn(v, nw, t);
                    }
                }
            }
            finish(acc, n0, n1);
        }
    });
    return true;
#else
    (void)ctx, (void)x, (void)w, (void)bias, (void)y;
    return false;
#endif
}

bool linear_bf16_gemv(const ops::Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
                      Tensor& y) {
#if defined(VOXRT_BF16_X86)
    if (!bf16_gemm_supported() || w.dtype != DType::kBF16 || w.ndim != 2) return false;
    const int64_t M = rows_of(x), K = cols_of(x), N = w.shape[0];
    if (M == 0 || N == 0 || K == 0) return false;
    // x as bf16 in k order; a value whose low 16 bits are not zero is not a bf16 value: decline.
    const float* xp = act(x);
    thread_local std::vector<uint16_t> t_xpk;
    if (t_xpk.size() < static_cast<size_t>(M * K)) t_xpk.resize(static_cast<size_t>(M * K));
    uint16_t* const xpk = t_xpk.data();
    uint32_t low = 0;
    for (int64_t i = 0; i < M * K; ++i) {
        uint32_t b;
        std::memcpy(&b, xp + i, 4);
        low |= b & 0xffffu;
        xpk[i] = static_cast<uint16_t>(b >> 16);
    }
    if (low != 0) return false;
    static constexpr GemvTileFn kFns[kGemvX] = {gemv_tile<1>, gemv_tile<2>, gemv_tile<3>,
                                                gemv_tile<4>};
    const uint16_t* wp = static_cast<const uint16_t*>(w.data);
    const Rounder rnd = rounder(ctx);
    float* yp = act(y);
    const int64_t tiles = (N + kGemvRows - 1) / kGemvRows;
    parallel(ctx, tiles, 4, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t n0 = t * kGemvRows;
            const int n = static_cast<int>(std::min<int64_t>(kGemvRows, N - n0));
            const uint16_t* wr[kGemvRows];  // a short last tile repeats its last row (dropped)
            for (int j = 0; j < kGemvRows; ++j) wr[j] = wp + (n0 + std::min(j, n - 1)) * K;
            // Past the matrix's end the prefetch address is only a hint (nothing is read).
            const char* pf =
                reinterpret_cast<const char*>(wp) + (n0 + kGemvPrefetchTiles * kGemvRows) * K * 2;
            float b[kGemvRows] = {};
            for (int j = 0; j < n; ++j) b[j] = bias ? load(*bias, n0 + j) : 0.0f;
            float out[kGemvX][kGemvRows];
            for (int64_t m = 0; m < M; m += kGemvX) {
                const int rows = static_cast<int>(std::min<int64_t>(kGemvX, M - m));
                const uint16_t* xr[kGemvX];
                for (int r = 0; r < rows; ++r) xr[r] = xpk + (m + r) * K;
                kFns[rows - 1](xr, wr, K, pf, out);
                for (int r = 0; r < rows; ++r)
                    for (int j = 0; j < n; ++j) yp[(m + r) * N + n0 + j] = rnd(out[r][j] + b[j]);
            }
        }
    });
    return true;
#else
    (void)ctx, (void)x, (void)w, (void)bias, (void)y;
    return false;
#endif
}

}  // namespace voxrt::cpu
