// AVX2 Q4_0 x int8-activation products. One 32-byte load of a row's nibbles covers two blocks of 32
// weights (a pair): masking gives both blocks' values 0-15, a shift and mask their values 16-31, unsigned
// levels 0..15. x is prepared in the same order (per pair: the two blocks' first halves, then their second
// halves). vpmaddubsw multiplies levels by x into 16-bit pairs (at most 2 * 15 * 128 each, 4 * 15 * 128 once
// the two halves' pairs are added: no saturation), vpmaddwd sums those to eight 32-bit lanes (lanes 4k..4k+3:
// block k), and the lanes' prepared corrections (-8 * the sum of their eight x values) make them exact
// sums of (q - 8) * x. Per pair the sums are scaled by (weight scale * activation scale) of their block and
// summed in fp32; weight scales are converted eight at a time (with one row of x, multiplied by its eight
// activation scales at once) and spread to the lanes by one permute per pair. Four rows of x share each
// load of the weights; more rows go four at a time over the chunk (later passes from cache).
#include "kernels/q4_0_avx2.h"

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

// Prepared x, per row: per pair of blocks (the last padded with zeros) 32 int8 of the blocks' first
// halves, 32 of their second halves, 8 int32 corrections and 8 floats (block k's activation scale in
// lanes 4k..4k+3); then the blocks' activation scales in order.
constexpr size_t kPairFloats = 32;
size_t pairs_of(int in) { return (static_cast<size_t>(in) / 32 + 1) / 2; }
size_t row_floats(int in) { return pairs_of(in) * kPairFloats + static_cast<size_t>(in) / 32; }

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
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  // One pair of blocks from b (the second absent when `single`); scale[j][r] holds (weight scale *
  // activation scale) of the pair's blocks, each over its four lanes.
  auto pair_step = [&](size_t b, const __m256 (&scale)[O][R], bool single) __attribute__((always_inline)) {
    const float* x_pair = prepared + b / 2 * kPairFloats;
    #pragma GCC unroll 8
    for (int j = 0; j < O; ++j) {
      // Into L2, three blocks of rows ahead: as in the AVX-512 kernel, rows start new streams.
      _mm_prefetch(reinterpret_cast<const char*>(nibbles[j] + b * 16) + 3 * O * w_row, _MM_HINT_T1);
      const __m256i packed =
          single ? _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(nibbles[j] + b * 16)))
                 : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(nibbles[j] + b * 16));
      const __m256i first = _mm256_and_si256(packed, low_mask);
      const __m256i second = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_mask);
      #pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const float* xr = x_pair + static_cast<size_t>(r) * x_stride;
        const __m256i pairs = _mm256_add_epi16(
            _mm256_maddubs_epi16(first, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr))),
            _mm256_maddubs_epi16(second, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + 8))));
        const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(pairs, ones),
                                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr + 16)));
        acc[j][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale[j][r], acc[j][r]);
      }
    }
  };
  // Activation scales of pair b's blocks over their lanes, row r.
  auto dx_lanes = [&](size_t b, int r) {
    return _mm256_loadu_ps(prepared + b / 2 * kPairFloats + static_cast<size_t>(r) * x_stride + 24);
  };
  const float* group_dx = prepared + pairs_of(in) * kPairFloats;  // row 0's activation scales
  const __m256i first_index = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0);
  const __m256i two = _mm256_set1_epi32(2);
  size_t b = 0;
  // Main loop: eight blocks (four pairs) per group, their scales converted at once.
  for (; b + 8 <= blocks; b += 8) {
    __m256 group_scales[O];
    #pragma GCC unroll 8
    for (int j = 0; j < O; ++j) {
      group_scales[j] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales[j] + b)));
      if constexpr (R == 1) group_scales[j] = _mm256_mul_ps(group_scales[j], _mm256_loadu_ps(group_dx + b));
    }
    __m256i index = first_index;
    for (size_t q = 0; q < 4; ++q) {
      __m256 scale[O][R];
      #pragma GCC unroll 8
      for (int j = 0; j < O; ++j) {
        const __m256 dw = _mm256_permutevar8x32_ps(group_scales[j], index);
        #pragma GCC unroll 4
        for (int r = 0; r < R; ++r) scale[j][r] = R == 1 ? dw : _mm256_mul_ps(dw, dx_lanes(b + 2 * q, r));
      }
      pair_step(b + 2 * q, scale, false);
      index = _mm256_add_epi32(index, two);
    }
  }
  // The rest: pair by pair, the last block alone when the count is odd.
  for (; b < blocks; b += 2) {
    const bool single = b + 1 == blocks;
    __m256 scale[O][R];
    #pragma GCC unroll 8
    for (int j = 0; j < O; ++j) {
      const float first = _cvtsh_ss(scales[j][b]);
      const float second = single ? 0.0f : _cvtsh_ss(scales[j][b + 1]);
      const __m256 dw = _mm256_setr_ps(first, first, first, first, second, second, second, second);
      #pragma GCC unroll 4
      for (int r = 0; r < R; ++r) scale[j][r] = _mm256_mul_ps(dw, dx_lanes(b, r));
    }
    pair_step(b, scale, single);
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
  const size_t pairs = pairs_of(in);
  thread_local std::vector<int8_t> q;
  thread_local std::vector<float> block_scales;
  q.assign(pairs * 64, 0);
  block_scales.assign(pairs * 2, 0.0f);
  for (int r = 0; r < rows; ++r) {
    scalar::quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, q.data(), block_scales.data());
    float* row = scratch + static_cast<size_t>(r) * row_floats(in);
    for (size_t p = 0; p < pairs; ++p) {
      float* pair = row + p * kPairFloats;
      int8_t halves[64];  // [first halves of the two blocks][second halves]
      for (size_t k = 0; k < 2; ++k) {
        std::memcpy(halves + 16 * k, q.data() + p * 64 + 32 * k, 16);
        std::memcpy(halves + 32 + 16 * k, q.data() + p * 64 + 32 * k + 16, 16);
      }
      std::memcpy(pair, halves, sizeof halves);
      int32_t correction[8];
      float dx[8];
      for (size_t lane = 0; lane < 8; ++lane) {
        int32_t sum = 0;
        for (size_t t = 0; t < 4; ++t) sum += halves[lane * 4 + t] + halves[32 + lane * 4 + t];
        correction[lane] = -8 * sum;
        dx[lane] = block_scales[p * 2 + lane / 4];
      }
      std::memcpy(pair + 16, correction, sizeof correction);
      std::memcpy(pair + 24, dx, sizeof dx);
    }
    std::copy(block_scales.begin(), block_scales.begin() + static_cast<std::ptrdiff_t>(n_in / 32), row + pairs * kPairFloats);
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
