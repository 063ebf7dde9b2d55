// AVX-512 VNNI Q4_0 x int8-activation products for a few rows (decode). Each 64-byte load of a row's
// nibbles covers four blocks of 32 weights (a quad): masking gives each block's values 0-15, a shift and
// mask its values 16-31, both unsigned levels 0..15 as vpdpbusd wants. x is prepared in the same order
// (per quad: the four blocks' first halves, then their second halves), so two vpdpbusd add eight products
// to each 32-bit lane; lanes 4k..4k+3 belong to block k. The accumulator starts at -8 * (the eight x values
// of the lane), prepared once per row of x, so each lane ends with the exact sum of (q - 8) * x. Per quad
// the sums are scaled by (weight scale * activation scale) of their block and summed in fp32; weight scales
// are converted sixteen at a time (with one row of x, multiplied by its sixteen activation scales at once)
// and spread to the lanes by one permute per quad.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/q4_0_avx512.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/scalar.h"
#include "util/dtype.h"

namespace llama31::kernels::avx512 {
namespace {

// Prepared x, per row: per quad of blocks (the last padded with zeros) 64 int8 of the blocks' first
// halves, 64 of their second halves, 16 int32 corrections and 16 floats (block k's activation scale in
// lanes 4k..4k+3); then the blocks' activation scales in order (for whole groups of 16 blocks).
constexpr size_t kQuadFloats = 64;
constexpr size_t kAheadBlocks = 3;  // weight prefetch distance, in blocks of O rows (see q8_0_avx512.cpp)
size_t quads_of(int in) { return (static_cast<size_t>(in) / 32 + 3) / 4; }
size_t row_floats(int in) { return quads_of(in) * kQuadFloats + static_cast<size_t>(in) / 32; }

template <int R, int O>
void q4_0_block(const float* prepared, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  const size_t w_row = row_bytes(DType::Q4_0, in);
  const uint16_t* scales[O];
  const uint8_t* nibbles[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    const char* row = static_cast<const char*>(w) + static_cast<size_t>(o + j) * w_row;
    scales[j] = reinterpret_cast<const uint16_t*>(row);
    nibbles[j] = reinterpret_cast<const uint8_t*>(row + quant_values_offset(n_in));
  }
  __m512 acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = _mm512_setzero_ps();
  }
  const __m512i low_mask = _mm512_set1_epi8(0x0f);
  // One quad of blocks from b; scale[j][r] holds (weight scale * activation scale) of the quad's four
  // blocks, each over its four lanes. Inlined by force: called from two places, GCC would otherwise keep
  // the accumulators in memory.
  auto quad_step = [&](size_t b, const __m512 (&scale)[O][R], __mmask64 bytes) __attribute__((always_inline)) {
    const float* x_quad = prepared + b / 4 * kQuadFloats;
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      _mm_prefetch(reinterpret_cast<const char*>(nibbles[j] + b * 16) + kAheadBlocks * O * w_row, _MM_HINT_T1);
      const __m512i packed = _mm512_maskz_loadu_epi8(bytes, nibbles[j] + b * 16);
      const __m512i first = _mm512_and_si512(packed, low_mask);
      const __m512i second = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_mask);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float* xr = x_quad + static_cast<size_t>(r) * x_stride;
        __m512i sums = _mm512_dpbusd_epi32(_mm512_loadu_si512(xr + 32), first, _mm512_loadu_si512(xr));
        sums = _mm512_dpbusd_epi32(sums, second, _mm512_loadu_si512(xr + 16));
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale[j][r], acc[j][r]);
      }
    }
  };
  // Activation scales of quad b's blocks over their lanes, row r.
  auto dx_lanes = [&](size_t b, int r) {
    return _mm512_loadu_ps(prepared + b / 4 * kQuadFloats + static_cast<size_t>(r) * x_stride + 48);
  };
  // Main loop: sixteen blocks (four quads) per group, their scales converted at once. With one row of x
  // the group's sixteen products of scales are formed at once (lane k: block k), one permute per quad.
  const __m512i first_index = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i four = _mm512_set1_epi32(4);
  const float* group_dx = prepared + quads_of(in) * kQuadFloats;  // row 0's per-group activation scales
  size_t b = 0;
  for (; b + 16 <= blocks; b += 16) {
    __m512 group_scales[O];
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      group_scales[j] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales[j] + b)));
      if constexpr (R == 1) group_scales[j] = _mm512_mul_ps(group_scales[j], _mm512_loadu_ps(group_dx + b));
      _mm_prefetch(reinterpret_cast<const char*>(scales[j] + b) + kAheadBlocks * O * w_row, _MM_HINT_T1);
    }
    __m512i index = first_index;
    for (size_t q = 0; q < 4; ++q) {
      __m512 scale[O][R];
      #pragma GCC unroll 16
      for (int j = 0; j < O; ++j) {
        const __m512 dw = _mm512_permutexvar_ps(index, group_scales[j]);
        #pragma GCC unroll 16
        for (int r = 0; r < R; ++r) scale[j][r] = R == 1 ? dw : _mm512_mul_ps(dw, dx_lanes(b + 4 * q, r));
      }
      quad_step(b + 4 * q, scale, ~__mmask64{0});
      index = _mm512_add_epi32(index, four);
    }
  }
  // The rest: quad by quad, the last one's missing blocks masked off (their x and scales are zero).
  for (; b < blocks; b += 4) {
    const size_t count = std::min<size_t>(4, blocks - b);
    __m512 scale[O][R];
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      alignas(64) float lanes[16] = {};
      for (size_t k = 0; k < count; ++k) std::fill(lanes + 4 * k, lanes + 4 * k + 4, _cvtsh_ss(scales[j][b + k]));
      const __m512 dw = _mm512_load_ps(lanes);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) scale[j][r] = _mm512_mul_ps(dw, dx_lanes(b, r));
    }
    quad_step(b, scale, count == 4 ? ~__mmask64{0} : (__mmask64{1} << (16 * count)) - 1);
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
void q4_0_rows(const float* prepared, size_t x_stride, const void* w, int in, int o_begin, int o_end, float* y,
               size_t ldy) {
  constexpr int kOutRows = R == 1 ? 8 : 4;
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) q4_0_block<R, kOutRows>(prepared, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) q4_0_block<R, 1>(prepared, x_stride, w, in, o, y, ldy);
}

}  // namespace

size_t q4_0_scratch(int rows, int in) { return static_cast<size_t>(rows) * row_floats(in); }

const float* q4_0_prepare(const float* x, int rows, int in, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t quads = quads_of(in);
  thread_local std::vector<int8_t> q;
  thread_local std::vector<float> block_scales;
  q.assign(quads * 128, 0);
  block_scales.assign(quads * 4, 0.0f);
  for (int r = 0; r < rows; ++r) {
    scalar::quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, q.data(), block_scales.data());
    float* row = scratch + static_cast<size_t>(r) * row_floats(in);
    for (size_t p = 0; p < quads; ++p) {
      float* quad = row + p * kQuadFloats;
      int8_t halves[128];  // [first halves of the four blocks][second halves]
      for (size_t k = 0; k < 4; ++k) {
        std::memcpy(halves + 16 * k, q.data() + p * 128 + 32 * k, 16);
        std::memcpy(halves + 64 + 16 * k, q.data() + p * 128 + 32 * k + 16, 16);
      }
      std::memcpy(quad, halves, sizeof halves);
      int32_t correction[16];
      float dx[16];
      for (size_t lane = 0; lane < 16; ++lane) {
        int32_t sum = 0;
        for (size_t t = 0; t < 4; ++t) sum += halves[lane * 4 + t] + halves[64 + lane * 4 + t];
        correction[lane] = -8 * sum;
        dx[lane] = block_scales[p * 4 + lane / 4];
      }
      std::memcpy(quad + 32, correction, sizeof correction);
      std::memcpy(quad + 48, dx, sizeof dx);
    }
    std::copy(block_scales.begin(), block_scales.begin() + static_cast<std::ptrdiff_t>(n_in / 32), row + quads * kQuadFloats);
  }
  return scratch;
}

void q4_0_small_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy) {
  const size_t x_stride = row_floats(in);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = prepared + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: q4_0_rows<1>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: q4_0_rows<2>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: q4_0_rows<3>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      default: q4_0_rows<4>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

}  // namespace llama31::kernels::avx512
