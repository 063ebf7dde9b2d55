// AVX2 Q4_0 x int8-activation products: per block of 32, the 16 bytes of nibbles become 32 unsigned
// levels in order (low nibbles, then high nibbles shifted down), vpmaddubsw multiplies them by x into
// 16-bit pairs (at most 2 * 15 * 128, no saturation), vpmaddwd sums those to eight 32-bit lanes, and the
// lanes' prepared corrections (-8 * the sum of their four x values) make them exact sums of (q - 8) * x.
// The block's sums are scaled by (weight scale * activation scale) into fp32 accumulators. Four rows of x
// share each load of the weights; more rows go four at a time over the chunk (later passes from cache).
#include "kernels/q4_0_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/scalar.h"
#include "util/dtype.h"

namespace llama31::kernels::avx2 {
namespace {

// Prepared x per row: in int8 values, then 8 int32 corrections per block, then in / 32 float scales.
size_t row_floats(int in) { return static_cast<size_t>(in) / 4 + 9 * (static_cast<size_t>(in) / 32); }

inline float horizontal_sum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_movehdup_ps(sum2)));
}

template <int R, int O>
void block_rows(const float* prepared, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  const size_t w_row = row_bytes(DType::Q4_0, in);
  const uint16_t* scales[O];
  const uint8_t* nibbles[O];
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    const char* row = static_cast<const char*>(w) + static_cast<size_t>(o + j) * w_row;
    scales[j] = reinterpret_cast<const uint16_t*>(row);
    nibbles[j] = reinterpret_cast<const uint8_t*>(row + quant_values_offset(n_in));
  }
  __m256 acc[O][R];
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[j][r] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const __m128i low_mask = _mm_set1_epi8(0x0f);
  for (size_t b = 0; b < blocks; ++b) {
    __m256i qx[R], correction[R];
    float dx[R];
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const float* xr = prepared + static_cast<size_t>(r) * x_stride;
      qx[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const int8_t*>(xr) + b * 32));
      correction[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + n_in / 4 + b * 8));
      dx[r] = xr[n_in / 4 + blocks * 8 + b];
    }
    #pragma GCC unroll 8
    for (int j = 0; j < O; ++j) {
      // Into L2, three blocks of rows ahead: as in the AVX-512 kernel, rows start new streams.
      _mm_prefetch(reinterpret_cast<const char*>(nibbles[j] + b * 16) + 3 * O * w_row, _MM_HINT_T1);
      const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(nibbles[j] + b * 16));
      const __m256i levels = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low_mask),
                                              _mm_and_si128(packed, low_mask));
      const float dw = _cvtsh_ss(scales[j][b]);
      #pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256i pairs = _mm256_maddubs_epi16(levels, qx[r]);
        const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(pairs, ones), correction[r]);
        acc[j][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(dw * dx[r]), acc[j][r]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = horizontal_sum(acc[j][r]);
  }
}

template <int R>
void rows_of(const float* prepared, size_t x_stride, const void* w, int in, int o_begin, int o_end, float* y,
             size_t ldy) {
  constexpr int kOutRows = R == 1 ? 4 : 2;
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) block_rows<R, kOutRows>(prepared, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) block_rows<R, 1>(prepared, x_stride, w, in, o, y, ldy);
}

}  // namespace

size_t q4_0_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

const float* q4_0_prepare(const float* x, int rows, int in, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  for (int r = 0; r < rows; ++r) {
    float* row = scratch + static_cast<size_t>(r) * row_floats(in);
    auto* values = reinterpret_cast<int8_t*>(row);
    scalar::quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, values, row + n_in / 4 + blocks * 8);
    for (size_t b = 0; b < blocks; ++b) {
      int32_t correction[8];
      for (size_t lane = 0; lane < 8; ++lane) {
        int32_t sum = 0;
        for (size_t t = 0; t < 4; ++t) sum += values[b * 32 + lane * 4 + t];
        correction[lane] = -8 * sum;
      }
      std::memcpy(row + n_in / 4 + b * 8, correction, sizeof correction);
    }
  }
  return scratch;
}

void q4_0_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
  const size_t x_stride = row_floats(in);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = prepared + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: rows_of<1>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: rows_of<2>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: rows_of<3>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      default: rows_of<4>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

}  // namespace llama31::kernels::avx2
