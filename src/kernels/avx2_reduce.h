// Internal: the horizontal sum the AVX2 kernels share. Include only from files compiled for AVX2
// (src/kernels/*_avx2*.cpp get -mavx2 -mfma -mf16c).
#pragma once

#include <immintrin.h>

namespace llama31::kernels::avx2 {

// Lanes added in one fixed order (i + 4, then i + 2, then i + 1), so every kernel's sums agree bitwise.
inline float horizontal_sum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_movehdup_ps(sum2)));
}

}  // namespace llama31::kernels::avx2
