// Internal: the Q8_0 / Q4_0 block kernels shared by int8_neon.cpp (widening multiplies) and
// int8_neon_dotprod.cpp (SDOT), templated on how one block's 32 int8 products are summed to four int32
// lanes (Dot::block). Everything here has internal linkage, so the two files' copies, compiled for
// different architecture levels, never stand in for each other at link time. Include only from those two.
#pragma once

#include <arm_neon.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "util/dtype.h"

namespace llama31::kernels::neon {
namespace {

// Prepared x per row: in int8 values (in / 4 floats), then in / 32 float scales.
inline size_t int8_row_floats(int in) { return static_cast<size_t>(in) / 4 + static_cast<size_t>(in) / 32; }

inline float f16_value(uint16_t bits) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(bits))), 0); }

// Block b of a row's values as int8: elements 0-15 in first, 16-31 in second (Q4_0: levels q - 8, the
// low nibbles of the block's 16 bytes then the high ones).
template <DType T>
inline void load_block(const uint8_t* values, size_t b, int8x16_t& first, int8x16_t& second) {
  if constexpr (T == DType::Q8_0) {
    const auto* p = reinterpret_cast<const int8_t*>(values) + b * 32;
    first = vld1q_s8(p);
    second = vld1q_s8(p + 16);
  } else {
    const uint8x16_t packed = vld1q_u8(values + b * 16);
    const int8x16_t eight = vdupq_n_s8(8);
    first = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0f))), eight);
    second = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), eight);
  }
}

// Rows [o, o + O) of W against R rows of prepared x: per block, the integer sums in four lanes scaled by
// (weight scale * activation scale) into fp32 accumulators, added across lanes at the end. Every output is
// computed the same way whatever R and O are.
template <typename Dot, DType T, int R, int O>
void int8_block_rows(const float* prepared, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  const size_t w_row = row_bytes(T, in);
  const uint16_t* scales[O];
  const uint8_t* values[O];
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    const char* row = static_cast<const char*>(w) + static_cast<size_t>(o + j) * w_row;
    scales[j] = reinterpret_cast<const uint16_t*>(row);
    values[j] = reinterpret_cast<const uint8_t*>(row + quant_values_offset(n_in));
  }
  float32x4_t acc[O][R];
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) acc[j][r] = vdupq_n_f32(0.0f);
  }
  for (size_t b = 0; b < blocks; ++b) {
    int8x16_t x_first[R], x_second[R];
    float dx[R];
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const float* xr = prepared + static_cast<size_t>(r) * x_stride;
      const int8_t* qx = reinterpret_cast<const int8_t*>(xr) + b * 32;
      x_first[r] = vld1q_s8(qx);
      x_second[r] = vld1q_s8(qx + 16);
      dx[r] = xr[n_in / 4 + b];
    }
    #pragma GCC unroll 8
    for (int j = 0; j < O; ++j) {
      int8x16_t w_first, w_second;
      load_block<T>(values[j], b, w_first, w_second);
      const float dw = f16_value(scales[j][b]);
      #pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const int32x4_t sums = Dot::block(w_first, w_second, x_first[r], x_second[r]);
        acc[j][r] = vfmaq_n_f32(acc[j][r], vcvtq_f32_s32(sums), dw * dx[r]);
      }
    }
  }
  #pragma GCC unroll 8
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 4
    for (int r = 0; r < R; ++r) y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = vaddvq_f32(acc[j][r]);
  }
}

template <typename Dot, DType T, int R>
void int8_rows_of(const float* prepared, size_t x_stride, const void* w, int in, int o_begin, int o_end, float* y,
                  size_t ldy) {
  // Output rows per block: as many as the accumulators and the rows of x leave registers for.
  constexpr int kOutRows = R == 1 ? 8 : R == 2 ? 4 : 2;
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) {
    int8_block_rows<Dot, T, R, kOutRows>(prepared, x_stride, w, in, o, y, ldy);
  }
  for (; o < o_end; ++o) int8_block_rows<Dot, T, R, 1>(prepared, x_stride, w, in, o, y, ldy);
}

// Any number of rows, four at a time over this chunk of outputs (later passes find its weights in cache).
template <typename Dot, DType T>
void int8_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
  const size_t x_stride = int8_row_floats(in);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = prepared + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: int8_rows_of<Dot, T, 1>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: int8_rows_of<Dot, T, 2>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: int8_rows_of<Dot, T, 3>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
      default: int8_rows_of<Dot, T, 4>(x_group, x_stride, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

}  // namespace
}  // namespace llama31::kernels::neon
