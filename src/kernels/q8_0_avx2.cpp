// AVX2 Q8_0 x int8-activation products: per block of 32, vpmaddubsw multiplies |w| by x carrying w's
// sign into 16-bit pairs (at most 2 * 128 * 127, no saturation), vpmaddwd sums them to eight 32-bit lanes,
// and the block's sums are scaled by (weight scale * activation scale) into fp32 accumulators. Four rows of
// x share each load of the weights; more rows go four at a time over the chunk (later passes from cache).
#include "kernels/q8_0_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/avx2_reduce.h"
#include "kernels/scalar.h"
#include "util/dtype.h"

namespace llama31::kernels::avx2 {
namespace {

// Prepared x per row: in int8 values, then in / 32 float scales.
size_t row_floats(int in) { return static_cast<size_t>(in) / 4 + static_cast<size_t>(in) / 32; }

template <int R, int O>
void block_rows(const float* prepared, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  const size_t w_row = row_bytes(DType::Q8_0, in);
  const uint16_t* scales[O];
  const int8_t* values[O];
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    const char* row = static_cast<const char*>(w) + static_cast<size_t>(o + j) * w_row;
    scales[j] = reinterpret_cast<const uint16_t*>(row);
    values[j] = reinterpret_cast<const int8_t*>(row + quant_values_offset(n_in));
  }
  __m256 acc[O][R];
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[j][r] = _mm256_setzero_ps();
  }
  const __m256i ones = _mm256_set1_epi16(1);
  for (size_t b = 0; b < blocks; ++b) {
    __m256i qx[R];
    float dx[R];
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const float* xr = prepared + static_cast<size_t>(r) * x_stride;
      qx[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const int8_t*>(xr) + b * 32));
      dx[r] = xr[n_in / 4 + b];
    }
    #pragma GCC unroll 8
    for (int j = 0; j < O; ++j) {
      // Into L2, three blocks of rows ahead: as in the AVX-512 kernel, rows start new streams.
      _mm_prefetch(reinterpret_cast<const char*>(values[j] + b * 32) + 3 * O * w_row, _MM_HINT_T1);
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values[j] + b * 32));
      const __m256i magnitude = _mm256_sign_epi8(wv, wv);
      const float dw = _cvtsh_ss(scales[j][b]);
      #pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(qx[r], wv));
        const __m256 sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
        acc[j][r] = _mm256_fmadd_ps(sums, _mm256_set1_ps(dw * dx[r]), acc[j][r]);
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

size_t q8_0_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

const float* q8_0_prepare(const float* x, int rows, int in, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    float* row = scratch + static_cast<size_t>(r) * row_floats(in);
    scalar::quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, reinterpret_cast<int8_t*>(row), row + n_in / 4);
  }
  return scratch;
}

void q8_0_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
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
