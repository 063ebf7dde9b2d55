// AVX-512 VNNI Q8_0 x int8-activation products for a few rows (decode). Each 64-byte step covers two
// blocks of 32 weights. vpdpbusd needs one unsigned operand: the weights are offset to w + 128 (one xor),
// and the accumulator starts at -128 * (the matching four x values), prepared once per row of x, so each
// 32-bit lane ends with the exact sum of four w * x. Lanes 0-7 hold the first block's partial sums and
// lanes 8-15 the second's; they are scaled by (weight scale * activation scale) of their block and summed
// in fp32. Weight scales are converted sixteen at a time and spread to the lanes by one permute per step.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/q8_0_avx512.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/scalar.h"
#include "util/dtype.h"

namespace llama31::kernels::avx512 {
namespace {

// Prepared x, per row, per pair of blocks (the last padded with zeros): the 64 int8 values, 16 int32
// corrections (-128 * the sum of each lane's four values) and 16 floats (the first block's activation
// scale in lanes 0-7, the second's in lanes 8-15).
constexpr size_t kPairFloats = 48;
constexpr size_t kAheadBlocks = 3;  // weight prefetch distance, in blocks of O rows
size_t pairs_of(int in) { return (static_cast<size_t>(in) / 32 + 1) / 2; }
size_t row_floats(int in) { return pairs_of(in) * kPairFloats; }

template <int R, int O>
void q8_0_block(const float* prepared, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  const size_t w_row = row_bytes(DType::Q8_0, in);
  const uint16_t* scales[O];
  const int8_t* values[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    const char* row = static_cast<const char*>(w) + static_cast<size_t>(o + j) * w_row;
    scales[j] = reinterpret_cast<const uint16_t*>(row);
    values[j] = reinterpret_cast<const int8_t*>(row + quant_values_offset(n_in));
  }
  __m512 acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
  // One pair of blocks (b, b + 1); dw[j] holds row j's two scales spread over the lanes. Inlined by force:
  // called from two places, GCC would otherwise keep the accumulators in memory.
  auto pair_step = [&](size_t b, const __m512* dw, __mmask64 bytes) __attribute__((always_inline)) {
    const float* x_pair = prepared + b / 2 * kPairFloats;
    __m512i qx[R], correction[R];
    __m512 dx[R];
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float* xr = x_pair + static_cast<size_t>(r) * x_stride;
      qx[r] = _mm512_loadu_si512(xr);
      correction[r] = _mm512_loadu_si512(xr + 16);
      dx[r] = _mm512_loadu_ps(xr + 32);
    }
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      // The same place kAheadBlocks blocks of rows further, into L2: each row starts a new stream, which
      // the hardware prefetcher picks up only after a few misses (decode ran at half the bandwidth), and a
      // short distance or L1 as the target measured slower (tools: bench/kernels_bench Decode/Q8_0).
      _mm_prefetch(reinterpret_cast<const char*>(values[j] + b * 32) + kAheadBlocks * O * w_row, _MM_HINT_T1);
      const __m512i w_unsigned = _mm512_xor_si512(_mm512_maskz_loadu_epi8(bytes, values[j] + b * 32), offset);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512i sums = _mm512_dpbusd_epi32(correction[r], w_unsigned, qx[r]);
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(dw[j], dx[r]), acc[j][r]);
      }
    }
  };
  // Main loop: sixteen blocks (eight pairs) per group, their scales converted at once.
  const __m512i first_index = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i two = _mm512_set1_epi32(2);
  size_t b = 0;
  for (; b + 16 <= blocks; b += 16) {
    __m512 group_scales[O];
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      group_scales[j] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales[j] + b)));
      _mm_prefetch(reinterpret_cast<const char*>(scales[j] + b) + kAheadBlocks * O * w_row, _MM_HINT_T1);
    }
    __m512i index = first_index;
    for (size_t p = 0; p < 8; ++p) {
      __m512 dw[O];
      #pragma GCC unroll 16
      for (int j = 0; j < O; ++j) dw[j] = _mm512_permutexvar_ps(index, group_scales[j]);
      pair_step(b + 2 * p, dw, ~__mmask64{0});
      index = _mm512_add_epi32(index, two);
    }
  }
  // The rest: pair by pair, the last block alone when the count is odd (its second half masked off).
  for (; b < blocks; b += 2) {
    const bool pair = b + 1 < blocks;
    __m512 dw[O];
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      const float first = _cvtsh_ss(scales[j][b]);
      const float second = pair ? _cvtsh_ss(scales[j][b + 1]) : 0.0f;
      dw[j] = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(first), _mm512_set1_ps(second));
    }
    pair_step(b, dw, pair ? ~__mmask64{0} : __mmask64{0xffffffffu});
  }
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = _mm512_reduce_add_ps(acc[j][r]);
    }
  }
}

template <int R>
void q8_0_rows(const float* prepared, size_t x_stride, const void* w, int in, int o_begin, int o_end, float* y,
               size_t ldy) {
  constexpr int kOutRows = R == 1 ? 8 : 4;
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) q8_0_block<R, kOutRows>(prepared, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) q8_0_block<R, 1>(prepared, x_stride, w, in, o, y, ldy);
}

}  // namespace

size_t q8_0_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

const float* q8_0_prepare(const float* x, int rows, int in, float* scratch) {
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
      std::memcpy(pair, q.data() + p * 64, 64);
      int32_t correction[16];
      for (int lane = 0; lane < 16; ++lane) {
        int32_t sum = 0;
        for (int k = 0; k < 4; ++k) sum += q[p * 64 + static_cast<size_t>(lane) * 4 + static_cast<size_t>(k)];
        correction[lane] = -128 * sum;
      }
      std::memcpy(pair + 16, correction, sizeof correction);
      std::fill(pair + 32, pair + 40, block_scales[2 * p]);
      std::fill(pair + 40, pair + 48, block_scales[2 * p + 1]);
    }
  }
  return scratch;
}

void q8_0_small_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy) {
  const size_t x_stride = row_floats(in);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = prepared + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: q8_0_rows<1>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: q8_0_rows<2>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: q8_0_rows<3>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      default: q8_0_rows<4>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

}  // namespace llama31::kernels::avx512
