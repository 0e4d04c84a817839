// x86 SIMD helpers shared by the CPU kernels that pick their instruction set at run time (each
// function carries its own target attribute, so the file builds without -mavx512f).
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace voxrt::cpu {

// GCC 12 reports its own AVX-512 intrinsics' _mm512_undefined_* placeholders as uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The 16 lanes summed in a fixed order: the upper 8 folded onto the lower 8, then 4, 2, 1 (not
// _mm512_reduce_add_ps, whose GCC 12 expansion warns about an uninitialized register).
__attribute__((target("avx512f"))) inline float hsum512(__m512 v) {
    const __m512 folded = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xee));
    const __m256 lo = _mm512_castps512_ps256(folded);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

#pragma GCC diagnostic pop

}  // namespace voxrt::cpu
#endif
