// AVX2 matmul, the same two kernels as matmul_avx512.cpp with 8-float vectors: a matrix-vector kernel
// for a few rows of x and a register-blocked matrix-matrix kernel for many rows. fp32 FMA throughout.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/aligned_buffer.h"
#include "kernels/avx2_reduce.h"
#include "kernels/fp8_avx2.h"
#include "kernels/isa_table.h"
#include "kernels/kquant_avx2.h"
#include "kernels/q4_0_avx2.h"
#include "kernels/q8_0_avx2.h"
#include "kernels/r16_panels_avx2.h"
#include "kernels/scalar.h"
#include "kernels/simd_ops.h"

namespace llama31::kernels::avx2 {
namespace {

constexpr int kBlock = 16;  // elements of `in` per step of the small-rows kernel

size_t padded_in(int in) { return (static_cast<size_t>(in) + kBlock - 1) / kBlock * kBlock; }

// Two fp32 vectors holding 16 consecutive weights at p: for BF16 the even and the odd elements (x is
// rearranged the same way by prepare), for F16 and F32 the first and second 8.
template <DType T>
inline void load_weights(const void* p, __m256& first, __m256& second) {
  if constexpr (T == DType::BF16) {
    const __m256i packed = _mm256_loadu_si256(static_cast<const __m256i*>(p));
    first = _mm256_castsi256_ps(_mm256_slli_epi32(packed, 16));
    second = _mm256_castsi256_ps(_mm256_and_si256(packed, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  } else if constexpr (T == DType::F16) {
    const auto* h = static_cast<const __m128i*>(p);
    first = _mm256_cvtph_ps(_mm_loadu_si128(h));
    second = _mm256_cvtph_ps(_mm_loadu_si128(h + 1));
  } else {
    const float* f = static_cast<const float*>(p);
    first = _mm256_loadu_ps(f);
    second = _mm256_loadu_ps(f + 8);
  }
}

template <DType T, int R, int O>
void small_rows_block(const float* xp, size_t x_stride, const void* w, int in, int o, float* y, size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  constexpr size_t kSize = dtype_size(T);
  const char* rows[O];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) rows[j] = static_cast<const char*>(w) + static_cast<size_t>(o + j) * n_in * kSize;
  __m256 acc[O][R];
  #pragma GCC unroll 16
  for (int j = 0; j < O; ++j) {
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[j][r] = _mm256_setzero_ps();
  }
  const size_t full = n_in / kBlock * kBlock;
  const auto step = [&](const void* const* sources, size_t i) {
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) {
      __m256 w_first, w_second;
      load_weights<T>(sources[j], w_first, w_second);
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const float* xr = xp + static_cast<size_t>(r) * x_stride + i;
        acc[j][r] = _mm256_fmadd_ps(w_first, _mm256_loadu_ps(xr), acc[j][r]);
        acc[j][r] = _mm256_fmadd_ps(w_second, _mm256_loadu_ps(xr + 8), acc[j][r]);
      }
    }
  };
  for (size_t i = 0; i < full; i += kBlock) {
    const void* sources[O];
    #pragma GCC unroll 16
    for (int j = 0; j < O; ++j) sources[j] = rows[j] + i * kSize;
    step(sources, i);
  }
  if (full < n_in) {  // the last partial block, copied into zero-padded buffers
    alignas(32) unsigned char tails[O][kBlock * kSize] = {};
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
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o + j)] = horizontal_sum(acc[j][r]);
    }
  }
}

template <DType T, int R>
void small_rows_typed(const float* xp, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
  // Output rows per block: as many as the accumulators (O x R vectors) leave registers for.
  constexpr int kOutRows = R == 1 ? 6 : R == 2 ? 4 : 2;
  const size_t x_stride = padded_in(in);
  int o = o_begin;
  for (; o + kOutRows <= o_end; o += kOutRows) small_rows_block<T, R, kOutRows>(xp, x_stride, w, in, o, y, ldy);
  for (; o < o_end; ++o) small_rows_block<T, R, 1>(xp, x_stride, w, in, o, y, ldy);
}

template <DType T>
void small_rows_rows(const float* xp, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                     size_t ldy) {
  // Four rows at a time over this chunk of outputs: later passes find the chunk's weights in L2.
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

// The panel layouts Q8_0_R16 and Q4_0_R16 have their own kernel (r16_panels_avx2.cpp) for any rows.
bool is_r16(DType w_type) { return w_type == DType::Q8_0_R16 || w_type == DType::Q4_0_R16; }

size_t small_rows_scratch(int rows, int in, DType w_type) {
  if (is_r16(w_type)) return r16_scratch(rows, in);
  if (is_kquant_dtype(w_type)) return kquant_scratch(rows, in);
  if (w_type == DType::Q8_0) return q8_0_scratch(rows, in);
  if (w_type == DType::Q4_0) return q4_0_scratch(rows, in);
  return static_cast<size_t>(rows) * padded_in(in);
}

// Copies x into zero-padded rows of a multiple of 16; for BF16 weights each block of 16 is stored as
// its 8 even elements then its 8 odd elements, matching load_weights.
const float* small_rows_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  if (is_r16(w_type)) return r16_prepare(x, rows, in, scratch);
  if (is_kquant_dtype(w_type)) return kquant_prepare(x, rows, in, w_type, scratch);
  if (w_type == DType::Q8_0) return q8_0_prepare(x, rows, in, scratch);
  if (w_type == DType::Q4_0) return q4_0_prepare(x, rows, in, scratch);
  const size_t stride = padded_in(in);
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    const float* src = x + static_cast<size_t>(r) * n_in;
    float* dst = scratch + static_cast<size_t>(r) * stride;
    std::fill(dst + n_in, dst + stride, 0.0f);
    if (w_type != DType::BF16) {
      std::copy(src, src + n_in, dst);
      continue;
    }
    for (size_t k = 0; k < n_in; ++k) {
      const size_t block = k / kBlock * kBlock;
      const size_t within = k - block;
      dst[block + within / 2 + (within % 2) * 8] = src[k];
    }
  }
  return scratch;
}

void small_rows_range(const float* xp, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                      float* y, size_t ldy) {
  switch (w_type) {
    case DType::BF16: small_rows_rows<DType::BF16>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F16: small_rows_rows<DType::F16>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F32: small_rows_rows<DType::F32>(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0: q8_0_rows(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_0: q4_0_rows(xp, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: kquant_rows(xp, rows, w, w_type, in, o_begin, o_end, y, ldy); break;
    case DType::F8_E4M3: fp8_small_rows(xp, padded_in(in), rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0_R16:
    case DType::Q4_0_R16: r16_rows(xp, rows, w, w_type, in, o_begin, o_end, y, ldy); break;
    case DType::I32: break;  // rejected by kernels::matmul
  }
}

// ---- many rows: W chunk packed to fp32 panels of 16 output rows, x rows broadcast ----

constexpr int kPanel = 16;    // output rows per micro-kernel (two vectors)
constexpr int kMaxRows = 6;   // rows of x per micro-kernel (12 accumulators)
constexpr int kDepth = 256;   // elements of `in` per packed tile

template <DType T>
float weight_value(const void* w, size_t index) {
  if constexpr (T == DType::BF16) {
    return bf16_to_f32(static_cast<const uint16_t*>(w)[index]);
  } else if constexpr (T == DType::F16) {
    return _cvtsh_ss(static_cast<const uint16_t*>(w)[index]);
  } else if constexpr (T == DType::F8_E4M3) {
    return f8e4m3_to_f32(static_cast<const uint8_t*>(w)[index]);
  } else {
    return static_cast<const float*>(w)[index];
  }
}

// packed[p][k][j] = W[o_begin + p*16 + j][k0 + k] as fp32, zero for rows at or past o_end.
template <DType T>
void pack_tile(const void* w, int in, int o_begin, int o_end, int k0, int depth, float* packed) {
  const int n_panels = (o_end - o_begin + kPanel - 1) / kPanel;
  const size_t n_in = static_cast<size_t>(in);
  for (int p = 0; p < n_panels; ++p) {
    float* panel = packed + static_cast<size_t>(p) * static_cast<size_t>(depth) * kPanel;
    for (int j = 0; j < kPanel; ++j) {
      const int o = o_begin + p * kPanel + j;
      if (o >= o_end) {
        for (int k = 0; k < depth; ++k) panel[k * kPanel + j] = 0.0f;
        continue;
      }
      const size_t start = static_cast<size_t>(o) * n_in + static_cast<size_t>(k0);
      for (int k = 0; k < depth; ++k) panel[k * kPanel + j] = weight_value<T>(w, start + static_cast<size_t>(k));
    }
  }
}

inline __m256i lane_mask(int count) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), index);
}

template <int R>
void micro_kernel(const float* x, size_t x_stride, const float* panel, int depth, float* y, size_t ldy,
                  int cols, bool accumulate) {
  const __m256i first_mask = lane_mask(cols);
  const __m256i second_mask = lane_mask(cols - 8);
  __m256 acc[R][2];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    if (accumulate) {
      acc[r][0] = _mm256_maskload_ps(y + static_cast<size_t>(r) * ldy, first_mask);
      acc[r][1] = _mm256_maskload_ps(y + static_cast<size_t>(r) * ldy + 8, second_mask);
    } else {
      acc[r][0] = _mm256_setzero_ps();
      acc[r][1] = _mm256_setzero_ps();
    }
  }
  for (int k = 0; k < depth; ++k) {
    const __m256 w_first = _mm256_load_ps(panel + k * kPanel);
    const __m256 w_second = _mm256_load_ps(panel + k * kPanel + 8);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 xb = _mm256_broadcast_ss(x + static_cast<size_t>(r) * x_stride + static_cast<size_t>(k));
      acc[r][0] = _mm256_fmadd_ps(xb, w_first, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(xb, w_second, acc[r][1]);
    }
  }
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    _mm256_maskstore_ps(y + static_cast<size_t>(r) * ldy, first_mask, acc[r][0]);
    _mm256_maskstore_ps(y + static_cast<size_t>(r) * ldy + 8, second_mask, acc[r][1]);
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

size_t many_rows_scratch(int rows, int in, DType w_type) {
  if (is_kquant_dtype(w_type)) return kquant_scratch(rows, in);
  if (w_type == DType::Q8_0) return q8_0_scratch(rows, in);
  if (is_r16(w_type)) return r16_scratch(rows, in);
  return w_type == DType::Q4_0 ? q4_0_scratch(rows, in) : 0;
}
const float* many_rows_prepare(const float* x, int rows, int in, DType w_type, float* scratch) {
  if (is_kquant_dtype(w_type)) return kquant_prepare(x, rows, in, w_type, scratch);
  if (w_type == DType::Q8_0) return q8_0_prepare(x, rows, in, scratch);
  if (is_r16(w_type)) return r16_prepare(x, rows, in, scratch);
  return w_type == DType::Q4_0 ? q4_0_prepare(x, rows, in, scratch) : x;
}

void many_rows_range(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                     float* y, size_t ldy) {
  switch (w_type) {
    case DType::BF16: many_rows_typed<DType::BF16>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F16: many_rows_typed<DType::F16>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::F32: many_rows_typed<DType::F32>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0: q8_0_rows(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_0: q4_0_rows(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: kquant_rows(x, rows, w, w_type, in, o_begin, o_end, y, ldy); break;
    case DType::F8_E4M3: many_rows_typed<DType::F8_E4M3>(x, rows, w, in, o_begin, o_end, y, ldy); break;
    case DType::Q8_0_R16:
    case DType::Q4_0_R16: r16_rows(x, rows, w, w_type, in, o_begin, o_end, y, ldy); break;
    case DType::I32: break;  // rejected by kernels::matmul
  }
}

}  // namespace
}  // namespace llama31::kernels::avx2

namespace llama31::kernels {

const IsaKernels& avx2_kernels() {
  static const IsaKernels table{"avx2",
                                avx2::small_rows_scratch,
                                avx2::small_rows_prepare,
                                avx2::small_rows_range,
                                avx2::many_rows_scratch,
                                avx2::many_rows_prepare,
                                avx2::many_rows_range,
                                avx2::rmsnorm,
                                scalar::rope,
                                avx2::softmax,
                                avx2::silu_mul,
                                avx2::attention,
                                avx2::attention_rows,
                                avx2::dot,
                                avx2::xor_words};
  return table;
}

}  // namespace llama31::kernels
