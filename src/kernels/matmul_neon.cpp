// NEON matmul (AArch64), the same two kernels as matmul_avx2.cpp with 4-float vectors: a matrix-vector
// kernel for a few rows of x and a register-blocked matrix-matrix kernel for many rows. fp32 FMA
// throughout; BF16, F16 and F8_E4M3 weights are widened in registers (BF16 by a 16-bit shift, F16 by
// FCVTL, e4m3 through the f16 bits of value / 256 as fp8_avx2.cpp does). Q8_0 and Q4_0: int8_neon.cpp.
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/attention_tiles.h"
#include "kernels/int8_neon.h"
#include "kernels/isa_table.h"
#include "kernels/scalar.h"
#include "kernels/simd_ops.h"

namespace llama31::kernels::neon {
namespace {

constexpr int kBlock = 16;  // elements of `in` per step of the small-rows kernel (four vectors)

size_t padded_in(int in) { return (static_cast<size_t>(in) + kBlock - 1) / kBlock * kBlock; }

// 16 e4m3 bytes as f16 bits of value / 256: sign-extended to 16 bits, shifted left 7 and masked with 0xbf80
// (the copies of the sign in bits 15 and 14; bit 14 cleared). Exact for normal and subnormal codes.
inline uint16x8_t e4m3_half_bits(int8x8_t bytes) {
  return vandq_u16(vreinterpretq_u16_s16(vshlq_n_s16(vmovl_s8(bytes), 7)), vdupq_n_u16(0xbf80));
}

// Four fp32 vectors holding 16 consecutive weights at p, in order (F8_E4M3: value / 256).
template <DType T>
inline void load_weights(const void* p, float32x4_t (&w)[4]) {
  if constexpr (T == DType::BF16 || T == DType::F16) {
    const auto* h = static_cast<const uint16_t*>(p);
    const uint16x8_t first = vld1q_u16(h);
    const uint16x8_t second = vld1q_u16(h + 8);
    if constexpr (T == DType::BF16) {
      w[0] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(first), 16));
      w[1] = vreinterpretq_f32_u32(vshll_high_n_u16(first, 16));
      w[2] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(second), 16));
      w[3] = vreinterpretq_f32_u32(vshll_high_n_u16(second, 16));
    } else {
      w[0] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(first)));
      w[1] = vcvt_high_f32_f16(vreinterpretq_f16_u16(first));
      w[2] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(second)));
      w[3] = vcvt_high_f32_f16(vreinterpretq_f16_u16(second));
    }
  } else if constexpr (T == DType::F8_E4M3) {
    const int8x16_t bytes = vld1q_s8(static_cast<const int8_t*>(p));
    const uint16x8_t first = e4m3_half_bits(vget_low_s8(bytes));
    const uint16x8_t second = e4m3_half_bits(vget_high_s8(bytes));
    w[0] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(first)));
    w[1] = vcvt_high_f32_f16(vreinterpretq_f16_u16(first));
    w[2] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(second)));
    w[3] = vcvt_high_f32_f16(vreinterpretq_f16_u16(second));
  } else {
    const float* f = static_cast<const float*>(p);
    for (int c = 0; c < 4; ++c) w[c] = vld1q_f32(f + 4 * c);
  }
}

// What the sums of load_weights' values are multiplied by at the end (an exact power of two).
template <DType T>
constexpr float kSumScale = T == DType::F8_E4M3 ? 256.0f : 1.0f;

template <DType T, int R, int O>
void small_rows_block(const float* xp, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  constexpr size_t kSize = dtype_size(T);
  const char* rows[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) rows[j] = static_cast<const char*>(w) + static_cast<size_t>(o + j) * n_in * kSize;
  float32x4_t acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = vdupq_n_f32(0.0f);
  }
  // 16 weights of every row times x[r][i .. i + 16), in the same order whatever R and O are.
  const auto step = [&](const void* const* sources, size_t i) __attribute__((always_inline)) {
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      float32x4_t wv[4];
      load_weights<T>(sources[j], wv);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float* xr = xp + static_cast<size_t>(r) * x_stride + i;
        #pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) acc[j][r] = vfmaq_f32(acc[j][r], wv[c], vld1q_f32(xr + 4 * c));
      }
    }
  };
  const size_t full = n_in / kBlock * kBlock;
  for (size_t i = 0; i < full; i += kBlock) {
    const void* sources[O];
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) sources[j] = rows[j] + i * kSize;
    step(sources, i);
  }
  if (full < n_in) {  // the last partial block, copied into zero-padded buffers
    alignas(16) unsigned char tails[O][kBlock * kSize] = {};
    const void* sources[O];
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      std::copy(rows[j] + full * kSize, rows[j] + n_in * kSize, tails[j]);
      sources[j] = tails[j];
    }
    step(sources, full);
  }
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = vaddvq_f32(acc[j][r]) * kSumScale<T>;
    }
  }
}

template <DType T, int R>
void small_rows_typed(const float* xp, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
  // Output rows per block: as many as the accumulators (O x R vectors) and x leave registers for.
  constexpr int kOutRows = R == 1 ? 8 : R == 2 ? 6 : 4;
  const size_t x_stride = padded_in(in);
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) small_rows_block<T, R, kOutRows>(xp, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) small_rows_block<T, R, 1>(xp, x_stride, w, in, o, y, ldy);
}

template <DType T>
void small_rows_rows(const float* xp, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy) {
  // Four rows at a time over this chunk of outputs: later passes find the chunk's weights in cache.
  const size_t x_stride = padded_in(in);
  for (int r0 = 0; r0 < rows; r0 += 4) {
    const float* x_group = xp + static_cast<size_t>(r0) * x_stride;
    float* y_group = y + static_cast<size_t>(r0) * ldy;
    switch (std::min(4, rows - r0)) {
      case 1: small_rows_typed<T, 1>(x_group, w, in, o_begin, o_end, y_group, ldy); break;
      case 2: small_rows_typed<T, 2>(x_group, w, in, o_begin, o_end, y_group, ldy); break;
      case 3: small_rows_typed<T, 3>(x_group, w, in, o_begin, o_end, y_group, ldy); break;
      default: small_rows_typed<T, 4>(x_group, w, in, o_begin, o_end, y_group, ldy); break;
    }
  }
}

bool is_int8(DType w_type) { return w_type == DType::Q8_0 || w_type == DType::Q4_0; }
bool is_float(DType w_type) {
  return w_type == DType::F32 || w_type == DType::F16 || w_type == DType::BF16 || w_type == DType::F8_E4M3;
}

// Weight types this level has no kernel for take x as given to the scalar twin (both row paths).
size_t small_rows_scratch(int rows, int in, DType w_type) {
  if (is_int8(w_type)) return int8_scratch(rows, in);
  return is_float(w_type) ? static_cast<size_t>(rows) * padded_in(in) : 0;
}

// Copies x into zero-padded rows of a multiple of 16 (int8 weights: quantizes it).
const float* small_rows_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  if (is_int8(w_type)) return int8_prepare(x, rows, in, scratch);
  if (!is_float(w_type)) return x;
  const size_t stride = padded_in(in);
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    const float* src = x + static_cast<size_t>(r) * n_in;
    float* dst = scratch + static_cast<size_t>(r) * stride;
    std::copy(src, src + n_in, dst);
    std::fill(dst + n_in, dst + stride, 0.0f);
  }
  return scratch;
}

void small_rows_range(const float* xp, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                      float* y, size_t ldy) {
  switch (w_type) {
    case DType::BF16: small_rows_rows<DType::BF16>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F16: small_rows_rows<DType::F16>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F32: small_rows_rows<DType::F32>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F8_E4M3: small_rows_rows<DType::F8_E4M3>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0: q8_0_rows(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_0: q4_0_rows(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    default: scalar::matmul_range(xp, rows, w, w_type, in, o_begin, o_end, y, ldy); break;
  }
}

// ---- many rows: W chunk packed to fp32 panels of 16 output rows, x rows broadcast ----

constexpr int kPanel = 16;   // output rows per micro-kernel (four vectors)
constexpr int kMaxRows = 6;  // rows of x per micro-kernel (24 accumulators)
constexpr int kDepth = 256;  // elements of `in` per packed tile

// packed[p][k][j] = W[o_begin + p*16 + j][k0 + k] as fp32, zero for rows at or past o_end.
template <DType T>
void pack_tile(const void* w, int in, int o_begin, int o_end, int k0, int depth, float* packed) {
  const int n_panels = (o_end - o_begin + kPanel - 1) / kPanel;
  const size_t n_in = static_cast<size_t>(in);
  constexpr size_t kSize = dtype_size(T);
  alignas(16) float row[kDepth + kBlock];
  for (int p = 0; p < n_panels; ++p) {
    float* panel = packed + static_cast<size_t>(p) * static_cast<size_t>(depth) * kPanel;
    for (int j = 0; j < kPanel; ++j) {
      const int o = o_begin + p * kPanel + j;
      if (o >= o_end) {
        for (int k = 0; k < depth; ++k) panel[k * kPanel + j] = 0.0f;
        continue;
      }
      // The row's depth weights widened 16 at a time (the last group from a zero-padded copy).
      const char* src = static_cast<const char*>(w) + (static_cast<size_t>(o) * n_in + static_cast<size_t>(k0)) * kSize;
      for (int k = 0; k < depth; k += kBlock) {
        alignas(16) unsigned char tail[kBlock * kSize] = {};
        const void* from = src + static_cast<size_t>(k) * kSize;
        if (depth - k < kBlock) {
          std::memcpy(tail, from, static_cast<size_t>(depth - k) * kSize);
          from = tail;
        }
        float32x4_t wv[4];
        load_weights<T>(from, wv);
        for (int c = 0; c < 4; ++c) vst1q_f32(row + k + 4 * c, vmulq_n_f32(wv[c], kSumScale<T>));
      }
      for (int k = 0; k < depth; ++k) panel[k * kPanel + j] = row[k];
    }
  }
}

template <int R>
void micro_kernel(const float* x, size_t x_stride, const float* panel, int depth, float* y, size_t ldy, int cols,
                  bool accumulate) {
  // A partial panel's outputs go through a full-width copy (the packed columns past cols are zeros).
  alignas(16) float partial[R][kPanel];
  float* out[R];
  for (int r = 0; r < R; ++r) {
    out[r] = y + static_cast<size_t>(r) * ldy;
    if (cols == kPanel) continue;
    std::fill(partial[r], partial[r] + kPanel, 0.0f);
    if (accumulate) std::copy(out[r], out[r] + cols, partial[r]);
    out[r] = partial[r];
  }
  float32x4_t acc[R][4];
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) acc[r][c] = accumulate ? vld1q_f32(out[r] + 4 * c) : vdupq_n_f32(0.0f);
  }
  for (int k = 0; k < depth; ++k) {
    float32x4_t wv[4];
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) wv[c] = vld1q_f32(panel + k * kPanel + 4 * c);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float32x4_t xb = vld1q_dup_f32(x + static_cast<size_t>(r) * x_stride + static_cast<size_t>(k));
      #pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) acc[r][c] = vfmaq_f32(acc[r][c], xb, wv[c]);
    }
  }
  #pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    #pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) vst1q_f32(out[r] + 4 * c, acc[r][c]);
  }
  if (cols < kPanel) {
    for (int r = 0; r < R; ++r) std::copy(partial[r], partial[r] + cols, y + static_cast<size_t>(r) * ldy);
  }
}

using MicroKernel = void (*)(const float*, size_t, const float*, int, float*, size_t, int, bool);
constexpr MicroKernel kMicroKernels[kMaxRows + 1] = {nullptr,         micro_kernel<1>, micro_kernel<2>,
                                                     micro_kernel<3>, micro_kernel<4>, micro_kernel<5>,
                                                     micro_kernel<6>};

template <DType T>
void many_rows_typed(const float* x, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy) {
  thread_local std::vector<float, AlignedAllocator<float>> packed;
  const int n_panels = (o_end - o_begin + kPanel - 1) / kPanel;
  packed.resize(static_cast<size_t>(n_panels) * kPanel * kDepth);
  const size_t x_stride = static_cast<size_t>(in);
  for (int k0 = 0; k0 < in; k0 += kDepth) {
    const int depth = std::min(kDepth, in - k0);
    pack_tile<T>(w, in, o_begin, o_end, k0, depth, packed.data());
    for (int r0 = 0; r0 < rows; r0 += kMaxRows) {
      const int r_count = std::min(kMaxRows, rows - r0);
      const float* x_block = x + static_cast<size_t>(r0) * x_stride + static_cast<size_t>(k0);
      for (int p = 0; p < n_panels; ++p) {
        const int o = o_begin + p * kPanel;
        const float* panel = packed.data() + static_cast<size_t>(p) * kPanel * static_cast<size_t>(depth);
        kMicroKernels[r_count](x_block, x_stride, panel, depth,
                               y + static_cast<size_t>(r0) * ldy + static_cast<size_t>(o), ldy,
                               std::min(kPanel, o_end - o), k0 > 0);
      }
    }
  }
}

// Float weights read x as given; int8 weights take it quantized (rows evenly sized, as dispatch expects).
size_t many_rows_scratch(int rows, int in, DType w_type) { return is_int8(w_type) ? int8_scratch(rows, in) : 0; }
const float* many_rows_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  return is_int8(w_type) ? int8_prepare(x, rows, in, scratch) : x;
}

void many_rows_range(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                     float* y, size_t ldy) {
  switch (w_type) {
    case DType::BF16: many_rows_typed<DType::BF16>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F16: many_rows_typed<DType::F16>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F32: many_rows_typed<DType::F32>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F8_E4M3: many_rows_typed<DType::F8_E4M3>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0: q8_0_rows(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_0: q4_0_rows(x, rows, w, in, o_begin, o_end, y, ldy); break;
    default: scalar::matmul_range(x, rows, w, w_type, in, o_begin, o_end, y, ldy); break;
  }
}

}  // namespace
}  // namespace llama31::kernels::neon

namespace llama31::kernels {

const IsaKernels& neon_kernels() {
  static const IsaKernels table{"neon",
                                neon::small_rows_scratch,
                                neon::small_rows_prepare,
                                neon::small_rows_range,
                                neon::many_rows_scratch,
                                neon::many_rows_prepare,
                                neon::many_rows_range,
                                neon::rmsnorm,
                                neon::rope,
                                neon::softmax,
                                neon::silu_mul,
                                neon::attention,
                                scalar::attention_rows,
                                neon::dot,
                                scalar::xor_words};  // generic 16-byte vectors: NEON registers already
  return table;
}

}  // namespace llama31::kernels
