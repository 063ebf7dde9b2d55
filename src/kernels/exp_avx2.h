// Internal: the AVX2 e^x that softmax, silu_mul (ops_avx2.cpp) and the tiled attention
// (attention_avx2.cpp) share. Include only from files compiled for AVX2.
#pragma once

#include <immintrin.h>

namespace llama31::kernels::avx2 {

// e^x to about 1 ulp for x in [-87.3, 88.3]: x = n ln2 + r, a degree-6 polynomial for e^r, times 2^n
// built in the exponent bits. Inputs outside are clamped (tiny results come out as ~1e-38 instead of
// smaller, huge ones as ~3e38 instead of inf); NaN stays NaN.
inline __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3365478515625f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n is in [-126, 127] after the clamps except n = 128 at the top; split 2^n = 2^(n-1) * 2 there.
  const __m256 top = _mm256_cmp_ps(n, _mm256_set1_ps(127.5f), _CMP_GT_OQ);
  const __m256 n_used = _mm256_sub_ps(n, _mm256_and_ps(top, _mm256_set1_ps(1.0f)));
  p = _mm256_mul_ps(p, _mm256_blendv_ps(_mm256_set1_ps(1.0f), _mm256_set1_ps(2.0f), top));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n_used), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

}  // namespace llama31::kernels::avx2
