// AVX-512 twin of scalar::quantize_activations_q8 (tests/kernels/quantize_activations_test.cpp checks
// that both give the same bits). The scalar version rounds with the add-and-subtract-1.5*2^23 trick;
// here vrndscaleps rounds to nearest even directly, which is the same rounding for |v| <= 127 and cannot
// be contracted into a fused multiply-add by the compiler.
// GCC 12's _mm512_reduce_* helpers start from _mm512_undefined_* values and trip these warnings.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/quantize_avx512.h"

#include <immintrin.h>

#include <cstddef>

namespace llama31::kernels::avx512 {

void quantize_activations_q8(const float* x, int n, int8_t* q, float* scales, int32_t* block_sums) {
  const __m512 sign_bit = _mm512_set1_ps(-0.0f);
  for (int b = 0; b < n / 32; ++b) {
    const float* block = x + static_cast<size_t>(b) * 32;
    const __m512 lo = _mm512_loadu_ps(block);
    const __m512 hi = _mm512_loadu_ps(block + 16);
    // max is exact, so the order of the reduction does not matter (NaNs are skipped, as std::max
    // with the running maximum first skips them).
    const __m512 abs_max = _mm512_max_ps(_mm512_andnot_ps(sign_bit, lo), _mm512_andnot_ps(sign_bit, hi));
    const float max_abs = _mm512_reduce_max_ps(abs_max);
    const float inverse = max_abs > 0.0f ? 127.0f / max_abs : 0.0f;
    scales[b] = max_abs / 127.0f;
    const __m512 scale = _mm512_set1_ps(inverse);
    constexpr int kNearestEven = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m512i q_lo = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(lo, scale), kNearestEven));
    const __m512i q_hi = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(hi, scale), kNearestEven));
    int8_t* out = q + static_cast<size_t>(b) * 32;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(q_lo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm512_cvtepi32_epi8(q_hi));
    if (block_sums != nullptr) block_sums[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q_lo, q_hi));
  }
}

void prepare_panel_rows(const float* x, int rows, int in, int32_t level_offset, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t row_floats = n_in / 4 + 2 * (n_in / 32);
  for (int r = 0; r < rows; ++r) {
    float* row = scratch + static_cast<size_t>(r) * row_floats;
    auto* corrections = reinterpret_cast<int32_t*>(row + n_in / 4 + n_in / 32);
    quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, reinterpret_cast<int8_t*>(row), row + n_in / 4,
                            corrections);
    for (size_t b = 0; b < n_in / 32; ++b) corrections[b] *= -level_offset;
  }
}

}  // namespace llama31::kernels::avx512
